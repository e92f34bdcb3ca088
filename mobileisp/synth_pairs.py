"""``mobileisp synth``: sRGB images in, (DNG, sRGB) training pairs out.

For every input image a camera is drawn (:func:`mobileisp.synth.random_params`, seeded by ``[seed, index]``;
``--iso`` and the other EXIF options override its settings), and the image becomes the clean RAW that camera
would have recorded, by one of two methods:

- ``unprocess`` (default): Brooks et al.'s fixed inverse pipeline (:mod:`mobileisp.synth`);
- ``--inverse MODEL``: a learned sRGB -> RAW network (``paramisp-inverse-lite``), conditioned on the drawn
  camera's white balance, colour matrix and EXIF, run in tiles like ``mobileisp run``.

Shot and read noise of the camera's ISO are then added (``--no-noise`` keeps the clean RAW), and the result is
written as a 14-bit RGGB DNG (``black 512``, ``white 16383``) carrying the camera's metadata, next to the sRGB
target as a PNG of the same name (centre-cropped to what the model accepts), plus ``synth.json`` recording the
method, weights and every camera. The folder is a ``pairs:DIR`` dataset for ``train`` and ``evaluate``.

Every input is read and checked before anything is written; each file is written atomically.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from mobileisp.errors import ImageSizeError, MobileISPError, ModelError

#: DNG levels of the synthetic files: a 14-bit sensor with a typical phone black level.
BLACK_LEVEL = 512
WHITE_LEVEL = 16383
#: Read noise of an ISO override: the mean of Brooks et al.'s law ``log(read) = 2.18 log(shot) + 1.20``.
_READ_SLOPE, _READ_OFFSET = 2.18, 1.20
METHODS = ("unprocess", "inverse")


@dataclass
class SynthPair:
    """One written pair: its files, size and the simulated camera."""

    name: str
    source: str
    dng: str
    srgb: str
    size: tuple[int, int]
    camera: dict[str, Any]


@dataclass
class SynthResult:
    """What ``mobileisp synth`` wrote."""

    method: str
    model: str | None
    weights: str | None
    output: str
    noise: bool
    seed: int
    seconds: float
    pairs: list[SynthPair] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def table(self) -> str:
        how = "unprocessing (Brooks et al.)" if self.model is None else f"{self.model} ({self.weights})"
        lines = [f"{len(self.pairs)} pairs in {self.output}  [{how}, noise {'on' if self.noise else 'off'}, "
                 f"{self.seconds:.1f} s]"]
        for p in self.pairs:
            c = p.camera
            lines.append(f"  {p.name}: {p.size[0]}x{p.size[1]}  ISO {c['iso']:.0f}  {c['exposure_time']:.4g} s  "
                         f"f/{c['f_number']:.1f}  {c['focal_length']:.2f} mm")
        return "\n".join(lines)


def synthesize(
    images: Sequence[str | Path],
    output: str | Path,
    inverse: str | None = None,
    weights: str | None = "default",
    noise: bool = True,
    seed: int = 0,
    overrides: dict[str, float] | None = None,
    tile: int = 512,
    force: bool = False,
) -> SynthResult:
    """Turn sRGB ``images`` into DNG + PNG pairs in the folder ``output`` (see the module docstring).

    Args:
        images: PNG / JPEG / TIFF files, 8 or 16 bits.
        output: folder (created); existing pair files are refused unless ``force``.
        inverse: registered sRGB -> RAW model, or None for unprocessing.
        weights: that model's weights (``default``: shipped).
        noise: add the camera's shot and read noise.
        seed: camera and noise seed.
        overrides: EXIF settings replacing the drawn ones: ``iso``, ``exposure_time``, ``f_number``,
            ``focal_length`` (ISO also sets the noise level).
        tile: tile edge in packed pixels for the model (0: whole image).
        force: overwrite existing files.

    Raises:
        MobileISPError: unreadable image, image too small, a forward model given as ``inverse``, bad
            override, or existing output files (before anything is written).
    """
    from mobileisp import synth
    from mobileisp.images import load_srgb

    t0 = time.perf_counter()
    overrides = _check_overrides(overrides or {})
    model, spec, label = _load_inverse(inverse, weights)
    multiple, smallest = _size_rule(spec)
    out_dir = Path(output)
    paths = [Path(p) for p in images]
    if not paths:
        raise MobileISPError("synth needs at least one image")
    stems = [p.stem for p in paths]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise MobileISPError(f"two inputs would write the same pair name: {twice[0]}")
    loaded = []
    for p in paths:
        rgb = load_srgb(p)
        loaded.append(_crop_to(rgb, multiple, smallest, p))
    if not force:
        names = [f"{stem}{ext}" for stem in stems for ext in (".dng", ".png")] + ["synth.json"]
        existing = [out_dir / n for n in names if (out_dir / n).exists()]
        if existing:
            raise MobileISPError(f"{existing[0]} exists; pass --force to overwrite")
    out_dir.mkdir(parents=True, exist_ok=True)

    result = SynthResult(method="unprocess" if model is None else "inverse", model=inverse, weights=label,
                         output=str(out_dir), noise=bool(noise), seed=int(seed), seconds=0.0)
    for i, (path, rgb) in enumerate(zip(paths, loaded)):
        rng = np.random.default_rng([int(seed), i])
        params = _with_overrides(synth.random_params(rng), overrides)
        clean = _clean_raw(rgb, params, model, spec, tile, path.name)
        raw = synth.add_noise(clean, params.shot_noise, params.read_noise, rng) if noise else np.clip(clean, 0.0, 1.0)
        result.pairs.append(_write_pair(out_dir, path, rgb, raw, params, force))
    result.seconds = round(time.perf_counter() - t0, 3)
    from mobileisp._io import atomic_write_json

    atomic_write_json(out_dir / "synth.json", result.to_dict(), force=True)
    return result


# ------------------------------------------------------------------------------------------------ steps


def _load_inverse(name: str | None, weights: str | None):
    """(model, spec, weights label) of an sRGB -> RAW model, or (None, None, None) for unprocessing."""
    if name is None:
        return None, None, None
    from mobileisp.evaluate import weights_label
    from mobileisp.models import create_model, get_spec, list_models

    spec = get_spec(name)
    if not spec.inverse:
        inverses = [m for m in list_models() if get_spec(m).inverse]
        raise ModelError(f"{name} is a RAW -> sRGB model; --inverse needs an sRGB -> RAW model: {', '.join(inverses)}")
    def has_weights(m) -> bool:
        path = get_spec(m).weights_path()
        return path is not None and path.is_file()

    if weights == "default" and not has_weights(name):
        shipped = [m for m in list_models() if get_spec(m).inverse and get_spec(m).trainable and has_weights(m)]
        raise ModelError(f"{name} ships no weights, and a random network makes useless data: train it "
                         f"(mobileisp train {name} ...) and pass --weights FILE, or use "
                         f"{', '.join(shipped) or 'a trained model'}")
    return create_model(name, weights=weights), spec, weights_label(spec, weights)


def _size_rule(spec) -> tuple[int, int]:
    """(multiple, smallest) full-resolution side the method accepts."""
    if spec is None:
        return 2, 2
    return 2 * max(1, spec.size_multiple), 2 * max(spec.min_size, spec.size_multiple)


def _crop_to(rgb: np.ndarray, multiple: int, smallest: int, path: Path) -> np.ndarray:
    """Centre-crop (H, W, 3) to multiples of ``multiple`` (even offsets); refuse images under ``smallest``."""
    h, w = rgb.shape[:2]
    if min(h, w) < smallest:
        raise ImageSizeError(f"{path.name}: {h}x{w} is smaller than the {smallest}x{smallest} pixels this needs")
    nh, nw = h - h % multiple, w - w % multiple
    y, x = 2 * ((h - nh) // 4), 2 * ((w - nw) // 4)
    return np.ascontiguousarray(rgb[y : y + nh, x : x + nw])


def _check_overrides(overrides: dict[str, float]) -> dict[str, float]:
    known = ("iso", "exposure_time", "f_number", "focal_length")
    out = {}
    for k, v in overrides.items():
        if v is None:
            continue
        if k not in known:
            raise MobileISPError(f"unknown camera setting {k!r}; known: {', '.join(known)}")
        if not np.isfinite(v) or v <= 0:
            raise MobileISPError(f"--{k.replace('_', '-')} must be a positive number, got {v}")
        out[k] = float(v)
    return out


def _with_overrides(params, overrides: dict[str, float]):
    """The drawn camera with EXIF overrides; an ISO override sets the shot noise and the mean read noise."""
    if not overrides:
        return params
    from mobileisp import synth

    changes = dict(overrides)
    if "iso" in changes:
        shot = changes["iso"] / 100.0 * synth.SHOT_NOISE_AT_ISO100
        changes.update(shot_noise=shot, read_noise=float(np.exp(_READ_SLOPE * np.log(shot) + _READ_OFFSET)))
    return dataclasses.replace(params, **changes)


def _clean_raw(rgb: np.ndarray, params, model, spec, tile: int, source: str) -> np.ndarray:
    """The noise-free packed RGGB (4, H/2, W/2) float in [0, 1] of ``rgb`` (H, W, 3) under camera ``params``."""
    from mobileisp import synth

    if model is None:
        return synth.mosaic(synth.unprocess_linear(rgb, params)).astype(np.float32)
    from mobileisp.infer import process_packed

    return process_packed(model, spec, rgb.transpose(2, 0, 1), params.metadata(), tile=tile, source=source)


def _write_pair(out_dir: Path, source: Path, rgb: np.ndarray, raw: np.ndarray, params, force: bool) -> SynthPair:
    from mobileisp.dng import mosaic_from_packed, write_dng
    from mobileisp.images import save_srgb

    meta = dataclasses.replace(params.metadata(), make="mobileisp", model="synthetic camera")
    mosaic = mosaic_from_packed(raw, "RGGB", black_level=BLACK_LEVEL, white_level=WHITE_LEVEL)
    dng = write_dng(out_dir / f"{source.stem}.dng", mosaic, "RGGB", black_level=BLACK_LEVEL, white_level=WHITE_LEVEL,
                    metadata=meta, force=force)
    png = save_srgb(out_dir / f"{source.stem}.png", rgb, bits=16, force=force)  # lossless for 8- and 16-bit inputs
    camera = {k: float(v) for k, v in (("iso", params.iso), ("exposure_time", params.exposure_time),
                                        ("f_number", params.f_number), ("focal_length", params.focal_length),
                                        ("red_gain", params.red_gain), ("blue_gain", params.blue_gain),
                                        ("rgb_gain", params.rgb_gain), ("shot_noise", params.shot_noise),
                                        ("read_noise", params.read_noise))}
    camera["xyz2cam"] = np.asarray(params.xyz2cam).round(6).tolist()
    return SynthPair(name=source.stem, source=str(source), dng=str(dng), srgb=str(png), size=tuple(rgb.shape[:2]),
                     camera=camera)


__all__ = ["SynthPair", "SynthResult", "synthesize", "BLACK_LEVEL", "WHITE_LEVEL"]
