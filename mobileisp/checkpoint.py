"""Training checkpoints without pickle: safetensors for tensors, JSON for everything else.

A checkpoint is a folder ``<run_dir>/checkpoints/step-<step:09d>/`` holding

- ``model.safetensors``: the model's state dict (parameters and buffers);
- ``optimizer.safetensors``: every tensor of the optimizer state under ``state.<param_index>.<name>``
  (``exp_avg``, ``exp_avg_sq``, Adam's ``step``), plus the RNG states: ``rng.torch`` (the CPU generator,
  uint8) and ``rng.cuda`` (the current CUDA device's generator, when CUDA is in use);
- ``state.json``: the step, the optimizer's ``param_groups`` and non-tensor state values, the LR
  scheduler's state dict, the training config and any extra JSON the caller passes.

The folder is written under a temporary name and renamed into place, so a crash never leaves a partial
checkpoint; :func:`latest_checkpoint` only sees complete ones.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import torch

from mobileisp._io import atomic_path
from mobileisp.errors import MobileISPError

FORMAT = "mobileisp-checkpoint/1"
CHECKPOINTS = "checkpoints"
MODEL_FILE = "model.safetensors"
TENSORS_FILE = "optimizer.safetensors"
STATE_FILE = "state.json"
_STEP_DIR = re.compile(r"^step-(\d{9})$")


class CheckpointError(MobileISPError):
    """A checkpoint that is missing, unreadable or does not fit the model/optimizer."""


def checkpoint_dir(run_dir: str | Path, step: int) -> Path:
    """``<run_dir>/checkpoints/step-<step:09d>``."""
    return Path(run_dir) / CHECKPOINTS / f"step-{step:09d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoint folders of a run, oldest first."""
    root = Path(run_dir) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := _STEP_DIR.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of ``run_dir``, or None."""
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    config: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    keep_last: int | None = None,
) -> Path:
    """Write a checkpoint of ``step`` and return its folder.

    Args:
        run_dir: the run's output folder.
        step: optimizer steps completed.
        model: the bare model (not a DistributedDataParallel wrapper).
        optimizer, scheduler: saved when given (scheduler: anything with a JSON-able ``state_dict()``).
        config: the training config as JSON-able dict.
        extra: more JSON-able state (e.g. the last validation metrics).
        keep_last: delete all but the newest ``keep_last`` checkpoints afterwards (None keeps all).
    """
    from safetensors.torch import save_file

    tensors: dict[str, torch.Tensor] = {"rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    state: dict[str, Any] = {"format": FORMAT, "step": int(step), "config": config or {}, "extra": extra or {},
                             "torch": torch.__version__, "optimizer": None, "scheduler": None}
    if optimizer is not None:
        opt_tensors, state["optimizer"] = flatten_optimizer_state(optimizer.state_dict())
        tensors.update(opt_tensors)
    if scheduler is not None:
        state["scheduler"] = _jsonable(scheduler.state_dict(), "scheduler state")

    path = checkpoint_dir(run_dir, step)
    with atomic_path(path, force=True, suffix="") as tmp:
        tmp.mkdir()
        save_file(_detached(model.state_dict()), str(tmp / MODEL_FILE))
        save_file(_detached(tensors), str(tmp / TENSORS_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(state, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    if keep_last is not None:
        for old in list_checkpoints(run_dir)[:-max(keep_last, 1)]:
            shutil.rmtree(old, ignore_errors=True)
    return path


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load a checkpoint folder into the given objects and return its ``state.json`` content.

    Tensors are loaded onto the device of the model's / optimizer's parameters by ``load_state_dict``.

    Raises:
        CheckpointError: the folder is incomplete or unreadable, or the state does not fit the objects.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    try:
        state = json.loads((path / STATE_FILE).read_text(encoding="utf-8"))
        tensors = load_file(str(path / TENSORS_FILE))
        weights = load_file(str(path / MODEL_FILE)) if model is not None else None
    except (OSError, ValueError, SafetensorError) as e:
        raise CheckpointError(f"cannot read checkpoint {path}: {e}") from None
    if state.get("format") != FORMAT:
        raise CheckpointError(f"{path / STATE_FILE} is not a {FORMAT} checkpoint (format {state.get('format')!r})")
    try:
        if model is not None:
            model.load_state_dict(weights, strict=True)
        if optimizer is not None:
            if state.get("optimizer") is None:
                raise ValueError("it holds no optimizer state")
            optimizer.load_state_dict(unflatten_optimizer_state(tensors, state["optimizer"]))
        if scheduler is not None and state.get("scheduler") is not None:
            scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError) as e:
        first = (str(e).splitlines() or ["mismatch"])[0]
        raise CheckpointError(f"checkpoint {path} does not fit: {first}") from None
    if restore_rng:
        torch.set_rng_state(tensors["rng.torch"])
        if "rng.cuda" in tensors and torch.cuda.is_available():
            torch.cuda.set_rng_state(tensors["rng.cuda"])
    return state


def flatten_optimizer_state(opt_state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split ``optimizer.state_dict()`` into tensors (``state.<idx>.<name>``) and a JSON-able rest.

    Returns:
        ``(tensors, meta)`` with ``meta = {"param_groups": [...], "scalars": {"<idx>": {name: value}}}``.
    """
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, per_param in opt_state["state"].items():
        for name, value in per_param.items():
            if "." in name:
                raise ValueError(f"optimizer state name {name!r} contains '.'")
            if isinstance(value, torch.Tensor):
                tensors[f"state.{idx}.{name}"] = value
            else:
                scalars.setdefault(str(idx), {})[name] = _jsonable(value, f"optimizer state {name}")
    groups = _jsonable(opt_state["param_groups"], "optimizer param_groups")
    return tensors, {"param_groups": groups, "scalars": scalars}


def unflatten_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`flatten_optimizer_state` (extra keys such as ``rng.*`` are ignored)."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if not key.startswith("state."):
            continue
        _, idx, name = key.split(".", 2)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta.get("scalars", {}).items():
        state.setdefault(int(idx), {}).update(values)
    groups = []
    for g in meta["param_groups"]:
        g = dict(g)
        for k in ("betas",):  # tuples in torch's own state dicts; JSON turns them into lists
            if isinstance(g.get(k), list):
                g[k] = tuple(g[k])
        groups.append(g)
    return {"state": state, "param_groups": groups}


def _detached(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    # Clones break storage sharing (tied weights), which safetensors refuses to write.
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


def _jsonable(obj: Any, what: str) -> Any:
    """Round-trip ``obj`` through JSON, raising ValueError for values JSON cannot hold."""
    def convert(o: Any) -> Any:
        if isinstance(o, torch.Tensor) and o.numel() == 1:
            return o.item()
        raise TypeError(type(o).__name__)

    try:
        return json.loads(json.dumps(obj, default=convert))
    except (TypeError, ValueError) as e:
        raise ValueError(f"{what} is not JSON-serialisable ({e})") from None
