"""Parity: an artefact's output against the PyTorch fp32 reference on held-out RAW, and the floors it must meet.

Both outputs are clipped to the displayable [0, 1] before comparison (what a user sees; unclamped networks
overshoot slightly). Reported against the reference: PSNR, SSIM, mean CIEDE2000 and max absolute error
(metrics averaged over images, :func:`mobileisp.metrics.compare`); against ground truth, the task PSNR of
the artefact and of the reference and the drop between them. The floor is
``ModelSpec.parity_floors[<format row's floor key>]`` (data beside the spec); the task-PSNR drop limit is the
format table's. A result below either fails with :class:`ParityError` (exit code 3).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch

from mobileisp.errors import MobileISPError

Runner = Callable[[Mapping[str, np.ndarray]], np.ndarray]


class ParityError(MobileISPError):
    """An artefact whose output is further from the fp32 reference than its floor allows."""

    exit_code = 3


@dataclass
class ParityResult:
    """Parity of one artefact on ``n`` held-out images of ``size``.

    Attributes:
        artefact: path (or label) of what was validated.
        model, format, precision: the artefact's identity.
        runtime: what produced the artefact's output (``litert``, ``onnxruntime``, ``coreml``,
            ``torch-simulation``).
        simulated: True when the output is a torch simulation (Core ML off macOS), not the artefact itself.
        n, size: number of images and full-resolution (H, W).
        psnr_db, ssim, delta_e2000, max_abs_error: artefact vs the fp32 PyTorch reference (``delta_e2000`` is
            None for an inverse model, whose output is camera RAW, not a colour space).
        task_psnr_db, reference_task_psnr_db: artefact and reference vs ground truth.
        task_drop_db: ``reference_task_psnr_db - task_psnr_db``.
        floor_db: the parity floor (None: the model sets none for this row).
        max_task_drop_db: allowed task drop (None: not enforced).
        passed: both limits met.
        notes: how the output was obtained (e.g. why it is a simulation).
    """

    artefact: str
    model: str
    format: str
    precision: str
    runtime: str
    simulated: bool
    n: int
    size: tuple[int, int]
    psnr_db: float
    ssim: float
    delta_e2000: float | None
    max_abs_error: float
    task_psnr_db: float
    reference_task_psnr_db: float
    task_drop_db: float
    floor_db: float | None
    max_task_drop_db: float | None
    passed: bool
    notes: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["size"] = list(self.size)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "ParityResult":
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["size"] = tuple(kw["size"])
        return cls(**kw)

    def failure(self) -> str | None:
        """One line saying which limit is missed, or None when both are met."""
        what = f"{self.model} {self.format} {self.precision}"
        sim = " (torch simulation)" if self.simulated else ""
        if self.floor_db is not None and not self.psnr_db >= self.floor_db:
            return (f"{what}: parity {self.psnr_db:.2f} dB{sim} against the fp32 PyTorch reference is below the "
                    f"floor {self.floor_db:.1f} dB ({self.n} held-out images, {self.size[0]}x{self.size[1]})")
        if self.max_task_drop_db is not None and not self.task_drop_db <= self.max_task_drop_db:
            return (f"{what}: task PSNR drops {self.task_drop_db:.2f} dB{sim} against the fp32 reference "
                    f"({self.reference_task_psnr_db:.2f} -> {self.task_psnr_db:.2f} dB), more than {self.max_task_drop_db:.1f} dB")
        return None

    def check(self) -> "ParityResult":
        """Return self, or raise :class:`ParityError` with :meth:`failure`'s line."""
        message = self.failure()
        if message:
            raise ParityError(message)
        return self

    def table(self) -> str:
        """Human-readable summary (what ``mobileisp validate`` prints)."""
        floor = "none" if self.floor_db is None else f"{self.floor_db:.1f} dB"
        status = "PASS" if self.passed else "FAIL"
        lines = [
            f"{self.artefact}  [{self.model} {self.format} {self.precision}, {self.runtime}"
            + (" (SIMULATION)" if self.simulated else "") + "]",
            f"  vs fp32 PyTorch on {self.n} held-out images {self.size[0]}x{self.size[1]}:",
            f"    PSNR {self.psnr_db:.2f} dB (floor {floor})   SSIM {self.ssim:.5f}   "
            + (f"mean dE2000 {self.delta_e2000:.3f}   " if self.delta_e2000 is not None else "(RAW output)   ")
            + f"max |err| {self.max_abs_error:.4f}",
            f"  task PSNR vs ground truth: artefact {self.task_psnr_db:.2f} dB, reference "
            f"{self.reference_task_psnr_db:.2f} dB (drop {self.task_drop_db:+.2f} dB)",
            f"  {status}" + (f": {self.failure()}" if not self.passed else ""),
        ]
        if self.notes:
            lines.insert(1, f"  note: {self.notes}")
        return "\n".join(lines)


def measure(
    run: Runner,
    reference: np.ndarray,
    targets: torch.Tensor | np.ndarray,
    inputs: Mapping[str, np.ndarray],
    *,
    artefact: str,
    model: str,
    format: str,
    precision: str,
    runtime: str,
    simulated: bool,
    floor_db: float | None,
    max_task_drop_db: float | None,
    notes: str = "",
    raw_output: bool = False,
) -> tuple[ParityResult, np.ndarray]:
    """Run ``run`` on ``inputs`` and compare with ``reference`` (fp32 torch output) and ``targets``.

    Args:
        run: NCHW inputs -> (N, 3, H, W) float32 output ((N, 4, H/2, W/2) packed RAW for an inverse model).
        reference: the fp32 PyTorch output on the same inputs, same shape.
        targets: ground truth in [0, 1], same shape.
        inputs: name -> (N, ...) float32 arrays.
        raw_output: the outputs are packed RAW (an inverse model): no colour difference, size doubled.

    Returns:
        (result, the artefact's output clipped to [0, 1]).
    """
    from mobileisp.metrics import compare, compare_raw, psnr

    out = np.asarray(run(inputs), dtype=np.float32)
    if out.shape != reference.shape:
        raise MobileISPError(f"{artefact}: output shape {out.shape} differs from the reference {reference.shape}")
    pred = torch.from_numpy(np.clip(out, 0.0, 1.0))
    ref = torch.from_numpy(np.clip(reference, 0.0, 1.0))
    gt = torch.as_tensor(targets, dtype=torch.float32)
    if raw_output:
        m = compare_raw(pred, ref)
        task, task_ref = float(compare_raw(pred, gt).psnr), float(compare_raw(ref, gt).psnr)
    else:
        m = compare(pred, ref)
        task, task_ref = float(psnr(pred, gt).mean()), float(psnr(ref, gt).mean())
    k = 2 if raw_output else 1
    result = ParityResult(
        artefact=str(artefact), model=model, format=format, precision=precision, runtime=runtime,
        simulated=bool(simulated), n=int(out.shape[0]), size=(k * int(out.shape[2]), k * int(out.shape[3])),
        psnr_db=float(m.psnr), ssim=float(m.ssim), delta_e2000=None if raw_output else float(m.delta_e2000),
        max_abs_error=float(m.max_abs_error), task_psnr_db=task, reference_task_psnr_db=task_ref,
        task_drop_db=task_ref - task, floor_db=floor_db, max_task_drop_db=max_task_drop_db, passed=True, notes=notes,
    )
    result.passed = result.failure() is None
    return result, pred.numpy()


def save_visuals(
    out_dir: str | Path,
    stem: str,
    artefact_out: np.ndarray,
    reference: np.ndarray,
    target: np.ndarray,
    force: bool = False,
) -> tuple[Path, Path]:
    """Write ``<stem>-side-by-side.png`` (reference | artefact | ground truth) and ``<stem>-error.png``.

    Args:
        artefact_out, reference, target: (3, H, W) float arrays in [0, 1] (the first validation image), or
            packed RAW (4, H/2, W/2), shown as camera RGB (R, mean G, B) with a 1/2.2 display gamma.

    The error map is ``max_c |artefact - reference|`` scaled so that full white is 1/16 (16 8-bit levels),
    in the magma colormap, with a one-line label of the scale.
    """
    from matplotlib import colormaps

    from mobileisp.images import save_srgb

    out_dir = Path(out_dir)
    ref, art, gt = (_viewable(np.clip(np.asarray(a, dtype=np.float32), 0, 1)) for a in (reference, artefact_out, target))
    gap = np.ones((3, ref.shape[1], 4), np.float32)
    side = np.concatenate([ref, gap, art, gap, gt], axis=2)
    err = np.abs(art - ref).max(axis=0)
    rgba = colormaps["magma"](np.clip(err * 16.0, 0, 1))[..., :3].astype(np.float32)
    p1 = save_srgb(out_dir / f"{stem}-side-by-side.png", side, force=force)
    p2 = save_srgb(out_dir / f"{stem}-error.png", rgba, force=force)
    return p1, p2


def _viewable(image: np.ndarray) -> np.ndarray:
    """(3, H, W) as is; packed RAW (4, h, w) -> (3, h, w) camera RGB (R, mean of the greens, B) ** (1/2.2)."""
    if image.shape[0] != 4:
        return image
    rgb = np.stack([image[0], 0.5 * (image[1] + image[2]), image[3]])
    return np.power(rgb, 1 / 2.2).astype(np.float32)
