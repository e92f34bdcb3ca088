"""Model inputs for export: example, calibration (training distribution) and evaluation (held-out) sets.

Every set is a dict ``input name -> float32 tensor`` in the ModelSpec's input order: ``raw`` (N, 4, H/2, W/2)
packed RGGB in [0, 1] (an inverse model's ``srgb`` (N, 3, H, W) instead), then one tensor per metadata field
(``white_balance`` (N, 3), ``color_matrix`` (N, 3, 3), ...). Calibration samples come from
:class:`mobileisp.data.SyntheticRawDataset` (training split, never the held-out set); evaluation samples from
:func:`mobileisp.data.heldout_set`, with their targets (sRGB; the clean packed RAW for an inverse model).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from mobileisp.errors import ImageSizeError, MobileISPError

#: Seed of the calibration stream (training split) and of the held-out set (mobileisp.data's default).
CALIB_SEED = 0
HELDOUT_SEED = 1234
#: heldout_set's largest image side (the short side of its held-out photos).
_HELDOUT_MAX = 300


@dataclass
class InputSet:
    """Named model inputs (and optional sRGB targets) with a description of where they came from.

    Attributes:
        inputs: input name -> (N, ...) float32 tensor, in spec order.
        targets: (N, 3, H, W) ground-truth sRGB in [0, 1] (an inverse model's clean packed RAW
            (N, 4, H/2, W/2)), or None.
        source: JSON-ready description (dataset, split, n, size, seed) recorded in artefact metadata.
    """

    inputs: dict[str, torch.Tensor]
    targets: torch.Tensor | None = None
    source: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(next(iter(self.inputs.values())).shape[0])

    def numpy(self) -> dict[str, np.ndarray]:
        return {k: v.numpy() for k, v in self.inputs.items()}

    def slice(self, start: int, stop: int) -> dict[str, torch.Tensor]:
        return {k: v[start:stop] for k, v in self.inputs.items()}


def check_size(spec, size: Sequence[int]) -> tuple[int, int]:
    """Validate a full-resolution export size (H, W) against ``spec``; returns it as ints.

    Raises:
        ImageSizeError: odd, smaller than the model's minimum or not a multiple of its size multiple.
    """
    h, w = (int(s) for s in size)
    need = 2 * max(1, spec.size_multiple)
    smallest = 2 * max(spec.min_size, spec.size_multiple)
    if h % need or w % need or min(h, w) < smallest:
        raise ImageSizeError(
            f"{spec.name}: export size {h}x{w} must be a multiple of {need} pixels and at least {smallest}x{smallest}"
        )
    return h, w


def parse_size(text: str) -> tuple[int, int]:
    """``"512x768"`` (H x W) or ``"512"`` -> (512, 768) / (512, 512)."""
    parts = str(text).lower().replace("*", "x").split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise ImageSizeError(f"--size must be HxW in pixels (e.g. 256x256), got {text!r}") from None
    if len(values) == 1:
        values *= 2
    if len(values) != 2 or min(values) <= 0:
        raise ImageSizeError(f"--size must be HxW in pixels (e.g. 256x256), got {text!r}")
    return values[0], values[1]


def stack_inputs(spec, samples: Sequence[dict[str, Any]], size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """Batch samples (dicts as mobileisp.data yields) into the model's named inputs, centre-cropped to ``size``."""
    h, w = size
    k = spec.input_scale
    images = [_crop(torch.as_tensor(spec.sample_input(s)), k * h // 2, k * w // 2, k) for s in samples]
    out: dict[str, torch.Tensor] = {spec.image_input.name: torch.stack(images).float()}
    fields = {}
    for f in spec.metadata_sources:
        missing = [i for i, s in enumerate(samples) if f not in s]
        if missing:
            raise MobileISPError(f"{spec.name} needs metadata {f!r}, which sample {missing[0]} lacks")
        fields[f] = torch.stack([torch.as_tensor(s[f]) for s in samples]).float()
    out.update({k: torch.as_tensor(v).float() for k, v in spec.metadata_inputs(fields).items()})
    return out


def _crop(x: torch.Tensor, h: int, w: int, unit: int = 1) -> torch.Tensor:
    """Centre crop of the last two dims to (h, w) at offsets that are multiples of ``unit``.

    Packed tensors use ``unit`` 1; full-resolution ones 2, so that the crop stays on the packed grid
    (the same region as the packed crop, and the Bayer phase of the full-resolution image).
    """
    y0 = unit * ((x.shape[-2] // unit - h // unit) // 2)
    x0 = unit * ((x.shape[-1] // unit - w // unit) // 2)
    if y0 < 0 or x0 < 0:
        raise ImageSizeError(f"cannot crop {tuple(x.shape[-2:])} to {(h, w)}")
    return x[..., y0 : y0 + h, x0 : x0 + w]


def calibration_set(spec, n: int, size: tuple[int, int], seed: int = CALIB_SEED) -> InputSet:
    """``n`` representative inputs from the synthetic training distribution (never the held-out set).

    Args:
        spec: the model's ModelSpec (which metadata inputs to include).
        n: number of samples (``--calib``), >= 1.
        size: full-resolution (H, W).
        seed: SyntheticRawDataset seed.
    """
    from mobileisp.data import SyntheticRawDataset

    if int(n) < 1:
        raise MobileISPError(f"--calib must be at least 1 sample, got {n}")
    h, w = size
    crop = max(h, w)
    ds = SyntheticRawDataset(int(n), crop=crop, seed=seed, split="train")
    samples = [ds[i] for i in range(int(n))]
    source = {"dataset": "SyntheticRawDataset", "split": "train", "n": int(n), "crop": crop, "size": [h, w], "seed": seed}
    return InputSet(stack_inputs(spec, samples, size), None, source)


def evaluation_set(spec, n: int, size: tuple[int, int], seed: int = HELDOUT_SEED) -> InputSet:
    """``n`` held-out inputs with their ground-truth sRGB at full resolution ``size``.

    Square sizes up to 300 px are :func:`mobileisp.data.heldout_set` itself; other sizes take held-out
    samples of the larger side (``SyntheticRawDataset(split="heldout")`` above 300 px), centre-cropped.
    """
    from mobileisp.data import SyntheticRawDataset, heldout_set

    if int(n) < 1:
        raise MobileISPError(f"--set must be at least 1 image, got {n}")
    h, w = size
    side = max(h, w)
    if side <= _HELDOUT_MAX:
        samples = heldout_set(int(n), side, seed)
        source = {"dataset": "heldout_set", "n": int(n), "size": [h, w], "seed": seed}
    else:
        ds = SyntheticRawDataset(int(n), crop=side, seed=seed, split="heldout")
        samples = [ds[i] for i in range(int(n))]
        source = {"dataset": "SyntheticRawDataset", "split": "heldout", "n": int(n), "size": [h, w], "seed": seed}
    k = 1 if spec.inverse else 2  # target pixels per packed pixel
    targets = torch.stack([_crop(torch.as_tensor(spec.sample_target(s)), k * h // 2, k * w // 2, k)
                           for s in samples]).float()
    return InputSet(stack_inputs(spec, samples, size), targets, source)


def example_inputs(spec, size: tuple[int, int]) -> dict[str, torch.Tensor]:
    """One realistic input (the first held-out sample) for tracing, batch 1."""
    return evaluation_set(spec, 1, size).inputs
