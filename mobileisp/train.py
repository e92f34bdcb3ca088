"""Training: the paper's loss and optimiser, deterministic data order, exact resume, DDP via torchrun.

One process or many: launched by ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` set) the run
initialises a process group (NCCL on CUDA, Gloo on CPU), wraps the model in DistributedDataParallel and
gives each rank its slice of every batch; only rank 0 writes files. ``batch_size`` is the *global* batch,
so a run gives the same result (up to float summation order) on 1 or 8 GPUs.

Data order is a pure function of ``(seed, step)``: global sample ``p = step * batch_size + k`` (rank
``r`` takes ``k`` in ``[r * b, (r + 1) * b)``, ``b = batch_size / world``) is synthetic sample ``p``, or,
for a finite dataset of ``n`` samples, entry ``p mod n`` of a permutation of epoch ``p // n`` seeded by
``(seed, epoch)``. Nothing else is random during training, so ``--resume`` reproduces the exact batches,
and with ``deterministic=True`` the exact loss curve and weights of an uninterrupted run.

Outputs in ``out_dir``: ``log.jsonl`` (one JSON object per line: ``event`` = ``start``, ``train``,
``val``, ``end``), ``checkpoints/step-*/`` (see :mod:`mobileisp.checkpoint`), and at the end
``<model>.safetensors`` (the final weights, loadable with ``create_model(name, weights=path)``) with its
model card ``<model>.json``.

The optimiser and schedule come from ``ModelSpec.train_config`` (the paper's), with the schedule's
decay points given as fractions of the run so that a short run decays at the same relative points:

- ``optimizer``: ``"adam"`` (default) or ``"adamw"``; ``lr``; ``betas``; ``eps``; ``weight_decay``;
  ``batch_size`` and ``crop`` (defaults when the run does not set them); ``loss_alpha`` (DeepISP's alpha);
- ``schedule``: ``"constant"`` (default); ``"step"`` (multiply by ``gamma`` every ``step_fraction`` of
  the run; ``step_fraction=0.5, gamma=0.5`` halves the LR at half of training); ``"multistep"`` (by
  ``gamma`` at each fraction in ``milestones``); ``"cosine"`` (to ``min_factor`` x lr at the end);
- two-stage models (CameraNet): ``stages`` (the stages ``--stage`` may pick), ``stage_lr`` (stage -> lr),
  ``lr_decay`` (``{"gamma", "at_fraction", "stages"}``: one decay at that fraction for those stages,
  constant LR for the others), ``lambda_restore`` (joint-loss weight), ``restore_log_eps`` and
  ``enhance_ssim_weight`` (adds ``w * (1 - SSIM)`` on sRGB to the enhance term; default 0). The
  paper's three steps chain through ``init_weights``: ``--stage restore``, then ``--stage enhance
  --init-weights <restore run>/cameranet.safetensors`` (Restore-Net rides along untouched), then
  ``--stage joint --init-weights <enhance run>/cameranet.safetensors``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from mobileisp.errors import MobileISPError, OutputExistsError

LOG_FILE = "log.jsonl"
STAGES = ("restore", "enhance", "joint")
DEFAULT_BATCH_SIZE = 8
DEFAULT_CROP = 128
#: TrainConfig fields that define the trajectory of a run: a resumed run must keep them.
_RUN_IDENTITY = ("model", "data", "batch_size", "crop", "seed", "lr", "stage", "init_weights", "scene_bank")


class TrainingError(MobileISPError):
    """A training run that cannot start or continue (bad settings, diverged loss, mismatched resume)."""


@dataclass
class TrainConfig:
    """Settings of one training run.

    Attributes:
        model: registry name.
        steps: total optimizer steps of the run.
        out_dir: run folder (log, checkpoints, final weights); default ``out/train-<model>``.
        data: dataset spec for :func:`mobileisp.data.open_dataset` (``synthetic``, ``zrr:PATH``, ``pairs:PATH``).
        batch_size: global batch (split evenly over the ranks); None takes the spec's (default 8).
        crop: full-resolution side of the sRGB training crops (RAW crops are half of it); None takes the
            spec's (default 128).
        lr: peak learning rate; None takes the paper's from the spec.
        checkpoint_every, validate_every, log_every: in steps (0 turns validation/logging off except at the end).
        resume: continue from the newest checkpoint in ``out_dir`` (a fresh start when there is none).
        force: start over in an ``out_dir`` that holds a previous run (its files are deleted).
        seed: seed of the data order and of the model initialisation.
        num_workers: DataLoader worker processes per rank.
        scene_bank: synthetic data only: draw dead-leaves crops from a bank of this many generated scenes
            (0: a fresh scene per sample; see :class:`mobileisp.data.SyntheticRawDataset`).
        init_weights: safetensors weights to start from (fine-tuning, or CameraNet's next stage).
        stage: CameraNet training step: ``restore``, ``enhance`` or ``joint`` (default: see :func:`resolve_stage`).
        heldout_n, heldout_size: the validation set (:func:`mobileisp.data.heldout_set`).
        threads: torch intra-op threads (None: torch's default).
        deterministic: ``torch.use_deterministic_algorithms(True)`` (bit-exact resume on one device).
        stop_at: end this invocation after this step with a checkpoint (time-limited jobs), to be continued
            with ``resume``; the LR schedule still spans ``steps``.
        keep_checkpoints: how many of the newest checkpoints to keep.
        device: ``"cpu"``, ``"cuda"`` or ``"cuda:1"``; None picks ``cuda:LOCAL_RANK`` when CUDA is available.
    """

    model: str
    steps: int
    out_dir: Path | None = None
    data: str = "synthetic"
    batch_size: int | None = None
    crop: int | None = None
    lr: float | None = None
    checkpoint_every: int = 1000
    validate_every: int = 1000
    log_every: int = 10
    resume: bool = False
    force: bool = False
    seed: int = 0
    num_workers: int = 0
    scene_bank: int = 0
    init_weights: Path | None = None
    stage: str | None = None
    heldout_n: int = 16
    heldout_size: int = 128
    threads: int | None = None
    deterministic: bool = False
    stop_at: int | None = None
    keep_checkpoints: int = 2
    device: str | None = None

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir) if self.out_dir is not None else Path("out") / f"train-{self.model}"
        self.init_weights = None if self.init_weights is None else Path(self.init_weights)

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(self).items()}


@dataclass
class TrainResult:
    """What a run (or one invocation of it) achieved. Metrics are on the held-out set, None on ranks > 0."""

    model: str
    step: int
    steps: int
    steps_run: int
    complete: bool
    final_loss: float | None
    psnr: float | None
    ssim: float | None
    delta_e2000: float | None
    wall_time_s: float
    train_time_s: float
    samples_per_s: float
    batch_size: int
    crop: int
    world_size: int
    device: str
    resumed_from: int | None
    checkpoint: str | None
    weights: str | None
    log: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ------------------------------------------------------------------------------------------ command line


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``train`` arguments to ``parser`` (shared by ``mobileisp train`` and ``python -m mobileisp.train``)."""
    p = parser
    p.add_argument("model", help="registered model name")
    p.add_argument("--data", default="synthetic", help="synthetic | zrr:PATH | pairs:PATH (default: synthetic)")
    p.add_argument("--steps", type=int, default=20000, help="optimizer steps of the whole run (default: 20000)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="global batch, split over the ranks (default: the model's, else 8)")
    p.add_argument("--crop", type=int, default=None, help="sRGB crop side in pixels, even (default: the model's, else 128)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the paper's)")
    p.add_argument("-o", "--out-dir", type=Path, default=None, help="run folder (default: out/train-MODEL)")
    p.add_argument("--checkpoint-every", type=int, default=1000, help="steps between checkpoints (default: 1000)")
    p.add_argument("--validate-every", type=int, default=1000, help="steps between held-out validations (default: 1000)")
    p.add_argument("--log-every", type=int, default=10, help="steps between log lines (default: 10)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out-dir from its newest checkpoint")
    p.add_argument("--force", action="store_true", help="delete a previous run in --out-dir and start over")
    p.add_argument("--seed", type=int, default=0, help="data order and initialisation seed (default: 0)")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers per process (default: 0)")
    p.add_argument("--scene-bank", type=int, default=0,
                   help="synthetic data: reuse a bank of N dead-leaves scenes (fresh crops, cameras and noise); "
                        "~10x cheaper samples for CPU training (default: 0, a fresh scene per sample)")
    p.add_argument("--init-weights", type=Path, default=None, help="safetensors weights to start from")
    p.add_argument("--stage", choices=STAGES, default=None, help="CameraNet training step (default: end-to-end joint loss)")
    p.add_argument("--heldout-n", type=int, default=16, help="held-out validation images (default: 16)")
    p.add_argument("--heldout-size", type=int, default=128, help="held-out image side (default: 128)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads per process")
    p.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bit-exact resume)")
    p.add_argument("--stop-at", type=int, default=None, help="stop this invocation after this step (resume later)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="newest checkpoints to keep (default: 2)")
    p.add_argument("--device", default=None, help="cpu | cuda | cuda:N (default: cuda:LOCAL_RANK if available)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The :class:`TrainConfig` of parsed :func:`add_train_arguments` arguments."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    return TrainConfig(**{k: v for k, v in vars(args).items() if k in names})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m mobileisp.train MODEL ...`` (what ``torchrun`` launches). Prints the result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m mobileisp.train", description="Train a registered model.")
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    try:
        result = train(config_from_args(args))
    except MobileISPError as e:
        print(f"mobileisp: error: {e}", file=sys.stderr)
        return e.exit_code
    if int(os.environ.get("RANK", "0")) == 0:
        print(json.dumps(result.to_dict(), indent=2))
    return 0


# ------------------------------------------------------------------------------------------ schedule


def resolve_train_config(train_config: dict[str, Any], stage: str | None = None) -> dict[str, Any]:
    """Normalise a spec's ``train_config`` for ``stage`` (see the module docstring for the keys read).

    Returns:
        dict with ``optimizer``, ``lr``, ``betas``, ``eps``, ``weight_decay``, ``schedule`` (+ its
        ``step_fraction`` / ``milestones`` / ``gamma`` / ``min_factor``), ``lambda`` and ``log_eps``
        and ``ssim_weight`` (CameraNet), ``loss_alpha`` (DeepISP, when given), and the paper's ``batch_size``
        and ``crop``.
    """
    tc = dict(train_config)
    out = {k: tc[k] for k in ("optimizer", "lr", "betas", "eps", "weight_decay", "schedule", "step_fraction",
                              "milestones", "gamma", "min_factor") if k in tc}
    out.setdefault("lr", 1e-4)
    if stage is not None and stage in tc.get("stage_lr", {}):
        out["lr"] = tc["stage_lr"][stage]
    decay = tc.get("lr_decay")
    if decay:  # CameraNet form: one decay at a fraction of the run, for the listed stages only
        if stage is None or stage in decay.get("stages", [stage]):
            out.update(schedule="multistep", milestones=[float(decay["at_fraction"])], gamma=float(decay["gamma"]))
        else:
            out["schedule"] = "constant"
    out["lambda"] = float(tc.get("lambda_restore", tc.get("lambda", 0.5)))
    out["log_eps"] = float(tc.get("restore_log_eps", 1e-3))
    out["ssim_weight"] = float(tc.get("enhance_ssim_weight", 0.0))
    if "loss_alpha" in tc:
        out["loss_alpha"] = float(tc["loss_alpha"])
    out["batch_size"] = int(tc.get("batch_size", DEFAULT_BATCH_SIZE))
    out["crop"] = int(tc.get("crop", DEFAULT_CROP))
    return out


def resolve_stage(spec, stage: str | None) -> str | None:
    """The CameraNet stage a run trains (None for single-stage models).

    ``stage=None`` picks the spec's only stage when it lists one (a pruned model's joint fine-tune), else
    end-to-end training with the joint loss at the base LR (the paper's "without steps 1, 2" ablation).
    """
    if spec.loss != "cameranet":
        if stage is not None:
            raise TrainingError(f"--stage applies to two-stage models; {spec.name} trains with loss {spec.loss!r}")
        return None
    listed = spec.train_config.get("stages")
    allowed = list(listed) if isinstance(listed, (list, tuple)) and listed else list(STAGES)
    if stage is None:
        return allowed[0] if len(allowed) == 1 else None
    if stage not in allowed:
        raise TrainingError(f"{spec.name} trains in stages {', '.join(allowed)}, not {stage!r}")
    return stage


def lr_factor(step: int, total: int, tc: dict[str, Any]) -> float:
    """Multiplier of the peak LR after ``step`` of ``total`` steps under ``tc["schedule"]``."""
    kind = tc.get("schedule") or "constant"
    frac = step / max(total, 1)
    if kind == "constant":
        return 1.0
    if kind == "step":
        every = float(tc.get("step_fraction", 0.5))
        return float(tc.get("gamma", 0.1)) ** int(frac / every + 1e-9)
    if kind == "multistep":
        passed = sum(frac + 1e-9 >= m for m in tc.get("milestones", ()))
        return float(tc.get("gamma", 0.1)) ** passed
    if kind == "cosine":
        lo = float(tc.get("min_factor", 0.0))
        import math

        return lo + (1.0 - lo) * 0.5 * (1.0 + math.cos(math.pi * min(frac, 1.0)))
    raise TrainingError(f"unknown LR schedule {kind!r} in the model's train_config (constant, step, multistep, cosine)")


def build_optimizer(params, tc: dict[str, Any], lr: float):
    """The optimizer named by ``tc`` over ``params``."""
    import torch

    name = str(tc.get("optimizer", "adam")).lower()
    kw = {"lr": lr, "betas": tuple(tc.get("betas", (0.9, 0.999))), "eps": float(tc.get("eps", 1e-8)),
          "weight_decay": float(tc.get("weight_decay", 0.0))}
    if name == "adam":
        return torch.optim.Adam(params, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, **kw)
    raise TrainingError(f"unknown optimizer {name!r} in the model's train_config (adam, adamw)")


# ------------------------------------------------------------------------------------------ data order


def sample_positions(step: int, batch_size: int, rank: int = 0, world: int = 1) -> range:
    """Global sample positions of ``rank``'s share of batch ``step``."""
    per = batch_size // world
    start = step * batch_size + rank * per
    return range(start, start + per)


@functools.lru_cache(maxsize=4)
def _epoch_permutation(seed: int, epoch: int, n: int) -> tuple[int, ...]:
    import torch

    g = torch.Generator().manual_seed(int(seed) * 1_000_003 + int(epoch))
    return tuple(torch.randperm(n, generator=g).tolist())


def dataset_index(position: int, n: int | None, seed: int) -> int:
    """Dataset index of a global sample position: itself for an endless dataset (``n`` None), else a
    per-epoch seeded permutation."""
    if n is None:
        return position
    epoch, k = divmod(position, n)
    return _epoch_permutation(seed, epoch, n)[k]


class StepBatchSampler:
    """Batch sampler yielding ``rank``'s dataset indices for steps ``start .. stop - 1``."""

    def __init__(self, start: int, stop: int, batch_size: int, rank: int, world: int, n: int | None, seed: int):
        self.start, self.stop, self.batch_size, self.rank, self.world, self.n, self.seed = (
            start, stop, batch_size, rank, world, n, seed)

    def __len__(self) -> int:
        return max(self.stop - self.start, 0)

    def __iter__(self):
        for step in range(self.start, self.stop):
            positions = sample_positions(step, self.batch_size, self.rank, self.world)
            yield [dataset_index(p, self.n, self.seed) for p in positions]


def collate_batch(samples: list[dict[str, Any]], fields: tuple[str, ...], encode=None) -> dict[str, Any]:
    """Stack ``raw``, ``srgb``, ``linear`` and ``raw_clean`` (if present) and the metadata ``fields``.

    ``encode`` (``ModelSpec.metadata_inputs``) turns the stacked fields into the model's metadata inputs
    (host-side encodings such as ParamISP's equalized optics); the batch then holds those instead.
    """
    import torch

    keys = ["raw", "srgb"] + [k for k in ("linear", "raw_clean") if k in samples[0]] + list(fields)
    batch = {k: torch.stack([torch.as_tensor(s[k], dtype=torch.float32) for s in samples]) for k in keys}
    if encode is not None:
        inputs = encode({f: batch.pop(f) for f in fields})
        batch.update({k: v.float() for k, v in inputs.items()})
    return batch


# ------------------------------------------------------------------------------------------ training


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _init_distributed(device_type: str) -> _Dist:
    """Join the torchrun process group when launched by torchrun with more than one process."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or "RANK" not in os.environ:
        return _Dist()
    owns = False
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
        owns = True
    return _Dist(rank=dist.get_rank(), world=dist.get_world_size(),
                 local_rank=int(os.environ.get("LOCAL_RANK", "0")), owns_group=owns)


def _pick_device(cfg: TrainConfig):
    import torch

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if cfg.device:
        device = torch.device(cfg.device)
        return torch.device("cuda", local) if device.type == "cuda" and device.index is None else device
    return torch.device("cuda", local) if torch.cuda.is_available() else torch.device("cpu")


def loss_module(model, loss_fn):
    """The nn.Module that DDP wraps: ``forward(batch) -> (loss, logs)``, so that every forward path a loss
    takes (``model(...)``, ``model.forward_stages``, ``model.enhance``) runs under DDP's gradient hooks."""
    import torch

    class LossModule(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, batch):
            return loss_fn(self.model, batch)

    return LossModule()


def _check_settings(cfg: TrainConfig, spec, world: int) -> None:
    if not spec.trainable:
        raise TrainingError(f"model {spec.name} is a fixed pipeline; there is nothing to train")
    for name in ("steps", "batch_size"):
        if getattr(cfg, name) < 1:
            raise TrainingError(f"{name} must be >= 1, got {getattr(cfg, name)}")
    if cfg.batch_size % world:
        raise TrainingError(f"batch size {cfg.batch_size} does not split evenly over {world} processes")
    for what, side in (("crop", cfg.crop), ("held-out size", cfg.heldout_size)):
        packed = side // 2
        if side % 2 or packed % spec.size_multiple or packed < spec.min_size:
            raise TrainingError(
                f"{what} {side}: {spec.name} needs an even side whose half is a multiple of {spec.size_multiple} "
                f"and at least {spec.min_size}")
    if cfg.stop_at is not None and cfg.stop_at < 1:
        raise TrainingError(f"stop-at must be >= 1, got {cfg.stop_at}")


def _previous_run_files(out_dir: Path, model: str) -> list[Path]:
    from mobileisp.checkpoint import CHECKPOINTS

    names = [CHECKPOINTS, LOG_FILE, f"{model}.safetensors", f"{model}.json"]
    return [out_dir / n for n in names if (out_dir / n).exists()]


def _truncate_log(path: Path, step: int) -> None:
    """Drop log lines of steps after ``step`` (written after the checkpoint we resume from)."""
    from mobileisp._io import atomic_write_text

    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if rec.get("step", 0) <= step:
            kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept), force=True)


def validate(model, spec, samples: Sequence[dict[str, Any]], device) -> dict[str, float]:
    """Mean per-image PSNR, SSIM and CIEDE2000 of ``model`` on ``samples`` (outputs clipped to [0, 1]).

    An inverse model is scored on the clean packed RAW (PSNR, SSIM; CIEDE2000 None).

    Same protocol as :func:`mobileisp.evaluate.evaluate_model`: one image at a time, padded to the
    model's size multiple.
    """
    import numpy as np
    import torch

    from mobileisp.infer import forward_padded
    from mobileisp.metrics import compare_for

    was_training = model.training
    model.eval()
    scores = []
    try:
        for s in samples:
            image = torch.as_tensor(spec.sample_input(s))[None].to(device)
            meta = {k: v.to(device) for k, v in
                    spec.metadata_inputs({f: torch.as_tensor(s[f])[None] for f in spec.metadata_sources}).items()}
            pred = forward_padded(model, spec, image, meta)
            scores.append(compare_for(spec, pred.float().cpu(), torch.as_tensor(spec.sample_target(s))[None]))
    finally:
        model.train(was_training)
    means = {k: float(np.mean([getattr(m, k) for m in scores])) for k in ("psnr", "ssim", "delta_e2000")}
    return {k: (v if v == v else None) for k, v in means.items()}  # NaN (no colour difference on RAW) -> None


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or continue) the training run ``cfg`` describes; see the module docstring.

    Raises:
        TrainingError: bad settings, a diverged loss, or a resume whose checkpoint belongs to another run.
        OutputExistsError: ``out_dir`` holds a previous run and neither ``resume`` nor ``force`` is set.
    """
    import torch
    import torch.distributed as tdist

    from mobileisp.models import get_spec

    t_start = time.perf_counter()
    saved = (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled(), torch.backends.cudnn.benchmark)
    spec = get_spec(cfg.model)
    stage = resolve_stage(spec, cfg.stage)
    tc = resolve_train_config(spec.train_config, stage)
    cfg = dataclasses.replace(cfg, batch_size=cfg.batch_size or tc["batch_size"], crop=cfg.crop or tc["crop"])
    device = _pick_device(cfg)
    dist = _init_distributed(device.type)
    try:
        _check_settings(cfg, spec, dist.world)
        _apply_torch_settings(cfg, device)
        resume_from = _prepare_out_dir(cfg, dist)
        run = _Run(cfg, spec, stage, tc, device, dist, t_start)
        run.restore(resume_from)
        return run.loop()
    finally:
        torch.set_num_threads(saved[0])
        torch.use_deterministic_algorithms(saved[1])
        torch.backends.cudnn.benchmark = saved[2]
        if dist.owns_group and tdist.is_initialized():
            tdist.destroy_process_group()


def _apply_torch_settings(cfg: TrainConfig, device) -> None:
    import torch

    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if cfg.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True)
        torch.backends.cudnn.benchmark = False
    if device.type == "cuda":
        torch.cuda.set_device(device)


def _prepare_out_dir(cfg: TrainConfig, dist: _Dist) -> Path | None:
    """Refuse to mix runs, clear a forced one, and return the checkpoint to resume from (or None)."""
    from mobileisp.checkpoint import latest_checkpoint

    out_dir = Path(cfg.out_dir)
    previous = _previous_run_files(out_dir, cfg.model)
    if previous and not (cfg.resume or cfg.force):
        raise OutputExistsError(f"{out_dir} holds a training run ({previous[0].name}); "
                                "pass --resume to continue it or --force to start over")
    if cfg.resume:
        return latest_checkpoint(out_dir)
    if cfg.force and dist.main:
        for p in previous:
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    return None


class _Run:
    """The state of one training invocation: model, optimizer, data, and the bookkeeping of the loop."""

    def __init__(self, cfg: TrainConfig, spec, stage: str | None, tc: dict[str, Any], device, dist: _Dist,
                 t_start: float):
        import torch

        from mobileisp.losses import get_loss
        from mobileisp.models import create_model
        from mobileisp.models.registry import load_weights

        self.cfg, self.spec, self.stage, self.tc, self.device, self.dist = cfg, spec, stage, tc, device, dist
        self.t_start = t_start
        self.out_dir = Path(cfg.out_dir)
        self.log_path = self.out_dir / LOG_FILE
        self.lr = float(cfg.lr if cfg.lr is not None else tc["lr"])
        loss_opts: dict[str, Any] = {}
        if spec.loss == "cameranet":
            loss_opts = {"stage": stage or "joint", "lam": tc["lambda"], "log_eps": tc["log_eps"],
                         "ssim_weight": tc["ssim_weight"]}
        elif "loss_alpha" in tc:
            loss_opts = {"alpha": tc["loss_alpha"]}
        self.loss_fn = get_loss(spec.loss, **loss_opts)

        torch.manual_seed(cfg.seed)
        self.model = create_model(cfg.model, weights=None)
        if cfg.init_weights is not None:
            load_weights(self.model, cfg.init_weights)
        self.model.to(device).train()
        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise TrainingError(f"model {spec.name} has no trainable parameters")
        self.optimizer = build_optimizer(params, tc, self.lr)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: lr_factor(s, cfg.steps, tc))
        self.start, self.resume_from = 0, None

    def restore(self, resume_from: Path | None) -> None:
        """Load ``resume_from`` (if any), check it belongs to this run, and drop later log lines."""
        from mobileisp.checkpoint import load_checkpoint

        if resume_from is not None:
            state = load_checkpoint(resume_from, self.model, self.optimizer, self.scheduler)
            old, new = state.get("config", {}), self.cfg.to_dict()
            changed = [k for k in _RUN_IDENTITY if old.get(k) != new.get(k)]
            if changed:
                raise TrainingError(f"{resume_from} belongs to a run with other settings "
                                    f"({', '.join(f'{k}={old.get(k)!r}' for k in changed)}); use a new --out-dir")
            self.start, self.resume_from = int(state["step"]), resume_from
        if self.dist.main and self.cfg.resume:
            _truncate_log(self.log_path, self.start)

    def loader(self, end: int):
        """DataLoader over this rank's share of steps ``start + 1 .. end``."""
        import torch
        from torch.utils.data import DataLoader

        from mobileisp import data as data_mod

        cfg = self.cfg
        dataset = data_mod.open_dataset(cfg.data, crop=cfg.crop, seed=cfg.seed, length=max(cfg.steps * cfg.batch_size, 1),
                                        deadleaves_bank=cfg.scene_bank)
        missing = [f for f in self.spec.metadata_sources if f not in dataset[0]]
        if missing:
            raise TrainingError(f"{cfg.data}: samples lack {', '.join(missing)}, which {self.spec.name} needs as input")
        endless = isinstance(dataset, data_mod.SyntheticRawDataset)
        sampler = StepBatchSampler(self.start, end, cfg.batch_size, self.dist.rank, self.dist.world,
                                   None if endless else len(dataset), cfg.seed)
        # A private generator: the DataLoader must not draw from the global RNG that checkpoints restore.
        return DataLoader(dataset, batch_sampler=sampler, num_workers=cfg.num_workers,
                          collate_fn=functools.partial(collate_batch, fields=tuple(self.spec.metadata_sources),
                                                     encode=self.spec.metadata_inputs),
                          pin_memory=self.device.type == "cuda", generator=torch.Generator())

    def network(self):
        """The loss module, wrapped in DistributedDataParallel when there are several processes."""
        net = loss_module(self.model, self.loss_fn)
        if self.dist.world > 1:
            from torch.nn.parallel import DistributedDataParallel as DDP

            net = DDP(net, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                      find_unused_parameters=not self.loss_fn.uses_all_parameters)
        return net

    def loop(self) -> TrainResult:
        import torch
        import torch.distributed as tdist
        from tqdm import tqdm

        from mobileisp import data as data_mod
        from mobileisp.checkpoint import save_checkpoint

        cfg, dist, start = self.cfg, self.dist, self.start
        end = cfg.steps if cfg.stop_at is None else min(cfg.steps, max(cfg.stop_at, start))
        loader, net = self.loader(end), self.network()
        heldout = data_mod.heldout_set(n=cfg.heldout_n, size=cfg.heldout_size) if dist.main and cfg.heldout_n else []
        if dist.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            self.log({"event": "start", "step": start, "config": cfg.to_dict(), "lr": self.lr, "loss": self.loss_fn.name,
                      "stage": self.stage, "train_config": self.tc, "world_size": dist.world, "device": str(self.device),
                      "resumed_from": str(self.resume_from) if self.resume_from else None})
        bar = tqdm(total=cfg.steps, initial=start, disable=not (dist.main and sys.stderr.isatty()),
                   desc=cfg.model, unit="step", dynamic_ncols=True)
        metrics: dict[str, float] | None = None
        last_loss: float | None = None
        last_ckpt = self.resume_from
        train_time, step = 0.0, start
        t_step = time.perf_counter()
        for step, batch in enumerate(loader, start=start + 1):
            batch = {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}
            self.optimizer.zero_grad(set_to_none=True)
            loss, logs = net(batch)
            loss.backward()
            step_lr = self.optimizer.param_groups[0]["lr"]
            self.optimizer.step()
            self.scheduler.step()
            values = torch.tensor([loss.item(), *logs.values()], dtype=torch.float64, device=self.device)
            if dist.world > 1:
                tdist.all_reduce(values)
                values /= dist.world
            values = values.tolist()
            last_loss = values[0]
            if not all(map(_finite, values)):
                raise TrainingError(f"loss diverged at step {step} ({values[0]}); try a lower --lr")
            now = time.perf_counter()
            train_time += now - t_step
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", **({"psnr": f"{metrics['psnr']:.2f}"} if metrics else {}))
            if dist.main:
                if cfg.log_every and (step % cfg.log_every == 0 or step == end):
                    self.log({"event": "train", "step": step, "loss": last_loss, "lr": step_lr,
                              **dict(zip(logs, values[1:])), "time_s": round(now - self.t_start, 3)})
                if heldout and (step == end or (cfg.validate_every and step % cfg.validate_every == 0)):
                    metrics = self.validate(heldout, step)
                if step == end or (cfg.checkpoint_every and step % cfg.checkpoint_every == 0):
                    last_ckpt = save_checkpoint(self.out_dir, step, self.model, self.optimizer, self.scheduler,
                                                cfg.to_dict(), extra={"validation": metrics}, keep_last=cfg.keep_checkpoints)
            t_step = time.perf_counter()
        bar.close()

        steps_run, complete = step - start, step >= cfg.steps
        weights = None
        if dist.main:
            if heldout and steps_run == 0:  # resumed a finished run: nothing to train, still report
                metrics = self.validate(heldout, step)
            if complete:
                weights = _export(self.out_dir, self.model, self.spec, step)
        result = TrainResult(
            model=cfg.model, step=step, steps=cfg.steps, steps_run=steps_run, complete=complete, final_loss=last_loss,
            psnr=_get(metrics, "psnr"), ssim=_get(metrics, "ssim"), delta_e2000=_get(metrics, "delta_e2000"),
            wall_time_s=round(time.perf_counter() - self.t_start, 3), train_time_s=round(train_time, 3),
            samples_per_s=round(steps_run * cfg.batch_size / train_time, 3) if train_time > 0 else 0.0,
            batch_size=cfg.batch_size, crop=cfg.crop, world_size=dist.world, device=str(self.device),
            resumed_from=start if self.resume_from else None, checkpoint=str(last_ckpt) if last_ckpt else None,
            weights=str(weights) if weights else None, log=str(self.log_path),
        )
        if dist.main:
            self.log({"event": "end", **result.to_dict()})
            if weights is not None:
                write_model_card(self.out_dir, cfg.to_dict(), result.to_dict(), self.loss_fn.name)
        if dist.world > 1:
            tdist.barrier()
        return result

    def validate(self, heldout, step: int) -> dict[str, float]:
        metrics = validate(self.model, self.spec, heldout, self.device)
        self.log({"event": "val", "step": step, **metrics})
        return metrics

    def log(self, record: dict[str, Any]) -> None:
        with open(self.log_path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")


def _export(out_dir: Path, model, spec, step: int) -> Path:
    """Write the final weights ``<out_dir>/<model>.safetensors`` (the card follows in :func:`write_model_card`)."""
    from safetensors.torch import save_file

    from mobileisp._io import atomic_path

    path = out_dir / f"{spec.name}.safetensors"
    state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
    with atomic_path(path, force=True) as tmp:
        save_file(state, str(tmp), metadata={"model": spec.name, "step": str(step)})
    return path


def write_model_card(out_dir: Path, config: dict[str, Any], result: dict[str, Any], loss_name: str) -> Path:
    """Write ``<out_dir>/<model>.json``: how the weights were made and what they scored on the held-out set.

    Args:
        out_dir: the run folder holding ``<model>.safetensors``.
        config: :meth:`TrainConfig.to_dict` of the run.
        result: :meth:`TrainResult.to_dict` of its final invocation.
        loss_name: the training loss.
    """
    import platform
    import subprocess

    import torch

    from mobileisp import __version__
    from mobileisp._io import atomic_write_json

    try:
        git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10,
                             cwd=Path(__file__).resolve().parent).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    device = result.get("device", "cpu")
    if str(device).startswith("cuda") and torch.cuda.is_available():
        hardware = f"{result.get('world_size', 1)} x {torch.cuda.get_device_name()}"
    else:
        hardware = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores, {config.get('threads') or torch.get_num_threads()} threads"
    init = config.get("init_weights")
    card = {
        "model": result["model"],
        "weights": f"{result['model']}.safetensors",
        "data": config["data"],
        "scene_bank": config.get("scene_bank", 0),
        "steps": result["step"],
        "batch_size": result["batch_size"],
        "crop": result["crop"],
        "lr": config.get("lr"),
        "loss": loss_name,
        "stage": config.get("stage"),
        "seed": config["seed"],
        "init_weights": Path(init).name if init else None,
        "heldout": {"n": config["heldout_n"], "size": config["heldout_size"], "psnr": result.get("psnr"),
                    "ssim": result.get("ssim"), "delta_e2000": result.get("delta_e2000")},
        "hardware": hardware,
        "wall_time_s": result.get("wall_time_s"),
        "samples_per_s": result.get("samples_per_s"),
        "torch": torch.__version__,
        "mobileisp_version": __version__,
        "git": git,
        "date": time.strftime("%Y-%m-%d"),
    }
    return atomic_write_json(Path(out_dir) / f"{result['model']}.json", card, force=True)


def _finite(x: float) -> bool:
    return x == x and x not in (float("inf"), float("-inf"))


def _get(d: dict[str, float] | None, k: str) -> float | None:
    return None if d is None else d.get(k)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
