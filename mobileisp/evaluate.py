"""Scoring models against ground truth on an evaluation set (PSNR, SSIM, ΔE2000)."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable, Sequence

import numpy as np
import torch

from mobileisp.errors import DatasetError, ModelError


@dataclass
class EvalRow:
    """Mean metrics of one model over an evaluation set. PSNR in dB, SSIM in [0, 1], ΔE2000 and ΔE76 in CIELAB units
    (NaN for an inverse model, scored on packed RAW)."""

    model: str
    weights: str
    psnr: float
    ssim: float
    delta_e2000: float
    ms_per_image: float
    images: int
    delta_e76: float


@dataclass
class EvalResult:
    """What ``mobileisp evaluate`` measured."""

    dataset: str
    rows: list[EvalRow] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "rows": [asdict(r) for r in self.rows]}

    def table(self) -> str:
        """Plain-text table, best PSNR first."""
        head = f"{'model':<21} {'PSNR dB':>8} {'SSIM':>7} {'dE2000':>7} {'dE76':>6} {'ms/img':>8}  weights"
        lines = [f"dataset: {self.dataset}", head, "-" * len(head)]
        for r in sorted(self.rows, key=lambda r: -r.psnr):
            de2000 = f"{r.delta_e2000:7.2f}" if r.delta_e2000 == r.delta_e2000 else f"{'-':>7}"  # NaN: RAW output
            de76 = f"{r.delta_e76:6.2f}" if r.delta_e76 == r.delta_e76 else f"{'-':>6}"
            lines.append(f"{r.model:<21} {r.psnr:8.2f} {r.ssim:7.4f} {de2000} {de76} {r.ms_per_image:8.1f}  {r.weights}")
        return "\n".join(lines)


def load_eval_set(name: str, n: int, size: int) -> list[dict[str, Any]]:
    """Samples of an evaluation set: ``heldout`` (synthetic held-out), ``zrr:PATH`` or ``pairs:PATH``.

    Each sample is a dict with ``raw`` (4, h, w), ``srgb`` (3, 2h, 2w) tensors and metadata tensors.
    """
    from mobileisp import data

    if size < 16 or size % 2:
        raise DatasetError(f"--size must be an even number of pixels >= 16, got {size}")
    if n < 1:
        raise DatasetError(f"--n must be at least 1, got {n}")
    if name == "heldout":
        return list(data.heldout_set(n=n, size=size))
    ds = data.open_dataset(name, crop=size, seed=0, split="test")
    count = min(n, len(ds))
    if count == 0:
        raise DatasetError(f"{name}: no samples")
    return [ds[i] for i in range(count)]


def evaluate_model(model, spec, samples: Sequence[dict[str, Any]], weights_label: str) -> EvalRow:
    """Run ``model`` on every sample (batch of one) and average the metrics against ``srgb`` (an inverse model:
    against the clean packed RAW; its colour differences are NaN)."""
    from mobileisp.infer import forward_padded
    from mobileisp.metrics import compare_for

    import sys

    from tqdm import tqdm

    scores, seconds = [], 0.0
    for s in tqdm(samples, desc=spec.name, unit="img", leave=False, disable=not sys.stderr.isatty()):
        image = torch.as_tensor(spec.sample_input(s))[None]
        missing = [f for f in spec.metadata_sources if f not in s]
        if missing:
            raise DatasetError(f"{spec.name} needs {', '.join(missing)}, which this dataset does not provide")
        meta = spec.metadata_inputs({f: torch.as_tensor(s[f])[None] for f in spec.metadata_sources})
        t0 = time.perf_counter()
        pred = forward_padded(model, spec, image, meta)
        seconds += time.perf_counter() - t0
        scores.append(compare_for(spec, pred, torch.as_tensor(spec.sample_target(s))[None]))
    mean = lambda key: float(np.mean([getattr(m, key) for m in scores]))  # noqa: E731
    return EvalRow(
        model=spec.name,
        weights=weights_label,
        psnr=mean("psnr"),
        ssim=mean("ssim"),
        delta_e2000=mean("delta_e2000"),
        ms_per_image=1000.0 * seconds / max(len(samples), 1),
        images=len(samples),
        delta_e76=mean("delta_e76"),
    )


def evaluate(models: Iterable[tuple[str, str | None]], dataset: str = "heldout", n: int = 16, size: int = 128) -> EvalResult:
    """Evaluate each ``(model_name, weights)`` pair (weights: ``"default"``, None or a path) on ``dataset``.

    Forward models are scored on sRGB, inverse models on the clean packed RAW; one call takes one kind.
    """
    from mobileisp.models import create_model, get_spec

    models = list(models)
    directions = {get_spec(name).direction for name, _ in models}
    if len(directions) > 1:
        raise ModelError("evaluate RAW -> sRGB and sRGB -> RAW models in separate calls: "
                         "one is scored on sRGB, the other on packed RAW")
    samples = load_eval_set(dataset, n, size)
    result = EvalResult(dataset=f"{dataset} ({len(samples)} images, {size}x{size})" if dataset == "heldout" else dataset)
    for name, weights in models:
        spec = get_spec(name)
        model = create_model(name, weights=weights)
        result.rows.append(evaluate_model(model, spec, samples, weights_label(spec, weights)))
    return result


def weights_label(spec, weights: str | None) -> str:
    """Human-readable description of which weights a model ran with."""
    if not spec.trainable:
        return "fixed pipeline"
    if weights == "default":
        p = spec.weights_path()
        return p.name if p is not None and p.exists() else "random init (no shipped weights)"
    return "random init" if weights is None else str(weights)


__all__ = ["EvalRow", "EvalResult", "evaluate", "evaluate_model", "load_eval_set", "weights_label"]
