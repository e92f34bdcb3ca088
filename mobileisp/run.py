"""``mobileisp run``: one RAW file in, one sRGB image out."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mobileisp._io import check_writable
from mobileisp.errors import ModelError


@dataclass
class RunResult:
    """What ``run`` wrote and how long it took."""

    model: str
    weights: str
    input: str
    output: str
    cfa: str
    raw_size: tuple[int, int]
    output_size: tuple[int, int]
    bits: int
    tiles: int
    seconds: float
    metadata: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_file(
    model_name: str,
    rawfile: str | Path,
    output: str | Path,
    weights: str | None = "default",
    bits: int = 8,
    tile: int = 512,
    overlap: int = 32,
    force: bool = False,
    progress: bool = False,
) -> RunResult:
    """Decode ``rawfile`` with LibRaw, process it with ``model_name`` and write ``output`` atomically.

    Everything that can fail on user input (unknown model, unreadable RAW, existing output, missing
    metadata) fails before anything is written.
    """
    from mobileisp.evaluate import weights_label
    from mobileisp.images import check_image_name, save_srgb
    from mobileisp.infer import process_packed
    from mobileisp.models import create_model, get_spec
    from mobileisp.raw import read_raw

    spec = get_spec(model_name)
    if spec.inverse:
        raise ModelError(f"{model_name} turns sRGB into RAW; `run` develops RAW files. "
                         f"Make RAW from images with `mobileisp synth IMAGES -o DIR --inverse {model_name}`")
    output = check_writable(output, force)
    check_image_name(output, bits)
    image = read_raw(rawfile)
    model = create_model(model_name, weights=weights)
    bar = _progress_bar(progress)
    t0 = time.perf_counter()
    srgb = process_packed(
        model, spec, image.packed, image.metadata, tile=tile, overlap=overlap,
        progress=bar.update_to if bar else None, source=Path(rawfile).name,
    )
    seconds = time.perf_counter() - t0
    if bar:
        bar.close()
    save_srgb(output, srgb, bits=bits, force=force)
    h, w = image.packed.shape[1:]
    ph = -(-h // tile) if tile > 0 and max(h, w) > tile else 1
    pw = -(-w // tile) if tile > 0 and max(h, w) > tile else 1
    return RunResult(
        model=model_name,
        weights=weights_label(spec, weights),
        input=str(rawfile),
        output=str(output),
        cfa=image.cfa,
        raw_size=(2 * h, 2 * w),
        output_size=tuple(srgb.shape[1:]),
        bits=bits,
        tiles=ph * pw,
        seconds=round(seconds, 3),
        metadata=image.metadata.to_dict(),
    )


def _progress_bar(enabled: bool):
    """A tqdm bar with an ``update_to(done, total)`` callback, or None when disabled or not a terminal."""
    import sys

    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    class _Bar(tqdm):
        def update_to(self, done: int, total: int) -> None:
            self.total = total
            self.update(done - self.n)

    return _Bar(desc="tiles", unit="tile", leave=False)
