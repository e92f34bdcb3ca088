"""Running a registered model on one image, in overlapping tiles when it is large.

The image is a packed RAW for a forward (RAW -> sRGB) model and an sRGB image for an inverse one.
Memory stays bounded by the tile size: the network only ever sees (1, C, k * (tile + 2*overlap), ...) inputs.
Tiles are processed with ``overlap`` packed pixels of context on each side and only their centres are
kept, so seams do not show for convolutional networks. Networks with a global path (CameraNet's global
branch, DeepISP's per-image colour transform) see per-tile statistics when tiled; pass a larger ``tile``
(or 0 for none) to process such images whole.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from mobileisp.errors import ImageSizeError, MobileISPError
from mobileisp.metadata import CameraMetadata, metadata_arrays


def metadata_tensors(spec, metas: Sequence[CameraMetadata], source: str = "input") -> dict[str, torch.Tensor]:
    """The metadata tensors ``spec`` consumes for a batch, as float32 torch tensors.

    Raises:
        MobileISPError: a field the model needs is missing from the file (named in the message).
    """
    sources = spec.metadata_sources
    missing = sorted({f for m in metas for f in m.missing(sources)})
    if missing:
        raise MobileISPError(
            f"{source}: model {spec.name} needs camera metadata {', '.join(missing)}, which the file does not record"
        )
    values = {k: torch.from_numpy(v) for k, v in metadata_arrays(metas, sources).items()}
    try:
        return spec.metadata_inputs(values)
    except ValueError as e:  # EncodingError: e.g. an ISO of 0 written by a camera app
        raise MobileISPError(f"{source}: {e}") from None


def forward_padded(model, spec, image: torch.Tensor, meta: dict[str, torch.Tensor]) -> torch.Tensor:
    """Run ``model`` on its image input, reflect-padding the sides to the model's size multiple.

    Args:
        image: packed RAW (N, 4, h, w) for a forward model; sRGB (N, 3, 2h, 2w) for an inverse one.

    Returns:
        sRGB (N, 3, scale*h, scale*w) (forward) or packed RAW (N, 4, h, w) (inverse), clipped to [0, 1].
    """
    k = spec.input_scale
    h, w = image.shape[-2] // k, image.shape[-1] // k
    if image.shape[-2] % k or image.shape[-1] % k:
        raise ImageSizeError(f"{spec.name} needs an even image height and width, got {tuple(image.shape[-2:])}")
    if min(h, w) < spec.min_size:
        raise ImageSizeError(
            f"{spec.name} needs at least {spec.min_size * 2}x{spec.min_size * 2} pixels, got {2 * h}x{2 * w}"
        )
    m = spec.size_multiple
    ph, pw = k * ((-h) % m), k * ((-w) % m)
    x = image
    if ph or pw:
        mode = "reflect" if ph < image.shape[-2] and pw < image.shape[-1] else "replicate"
        x = F.pad(image, (0, pw, 0, ph), mode=mode)
    with torch.inference_mode():
        y = model(x, **meta)
    s = spec.scale
    return y[..., : s * h, : s * w].clamp(0.0, 1.0)


def process_packed(
    model,
    spec,
    packed: np.ndarray,
    metadata: CameraMetadata | None = None,
    tile: int = 512,
    overlap: int = 32,
    progress: Callable[[int, int], None] | None = None,
    source: str = "input",
) -> np.ndarray:
    """Process one image: a packed RAW through a forward model, or an sRGB image through an inverse one.

    Args:
        model: a network from :func:`mobileisp.models.create_model` (eval mode).
        spec: its ModelSpec.
        packed: the model's image input without batch axis: (4, h, w) float32 RGGB in [0, 1] for a forward
            model, (3, 2h, 2w) sRGB in [0, 1] for an inverse one.
        metadata: the camera metadata (needed when ``spec.metadata_fields`` is not empty).
        tile: tile edge in packed pixels; 0 processes the image whole.
        overlap: context kept around each tile, in packed pixels.
        progress: called as ``progress(done, total)`` after each tile.
        source: name of the file, for error messages.

    Returns:
        sRGB (3, 2h, 2w) float32 in [0, 1] (forward), or packed RAW (4, h, w) in [0, 1] (inverse).
    """
    meta = metadata_tensors(spec, [metadata or CameraMetadata()], source)
    image = torch.from_numpy(np.ascontiguousarray(packed, dtype=np.float32))[None]
    k = spec.input_scale
    if image.shape[-2] % k or image.shape[-1] % k:
        raise ImageSizeError(f"{source}: {spec.name} needs an even image height and width, got {tuple(image.shape[-2:])}")
    h, w = image.shape[-2] // k, image.shape[-1] // k
    s = spec.scale
    if tile <= 0 or (h <= tile and w <= tile):
        out = forward_padded(model, spec, image, meta)[0]
        if progress:
            progress(1, 1)
        return out.numpy()
    tile = max(tile, spec.min_size)
    overlap = min(overlap, tile // 2)
    result = np.zeros((spec.output.shape[1], s * h, s * w), dtype=np.float32)
    ys = list(range(0, h, tile))
    xs = list(range(0, w, tile))
    total, done = len(ys) * len(xs), 0
    for y0 in ys:
        for x0 in xs:
            y1, x1 = min(y0 + tile, h), min(x0 + tile, w)
            # context window, grown to at least min_size where the image allows
            cy0, cy1 = max(0, y0 - overlap), min(h, y1 + overlap)
            cx0, cx1 = max(0, x0 - overlap), min(w, x1 + overlap)
            cy0, cy1 = _grow(cy0, cy1, spec.min_size, h)
            cx0, cx1 = _grow(cx0, cx1, spec.min_size, w)
            out = forward_padded(model, spec, image[..., k * cy0 : k * cy1, k * cx0 : k * cx1], meta)[0]
            oy, ox = s * (y0 - cy0), s * (x0 - cx0)
            result[:, s * y0 : s * y1, s * x0 : s * x1] = out[:, oy : oy + s * (y1 - y0), ox : ox + s * (x1 - x0)].numpy()
            done += 1
            if progress:
                progress(done, total)
    return result


def _grow(a: int, b: int, size: int, limit: int) -> tuple[int, int]:
    """Widen [a, b) to at least ``size`` inside [0, limit)."""
    while b - a < size and (a > 0 or b < limit):
        if b < limit:
            b += 1
        if b - a < size and a > 0:
            a -= 1
    return a, b
