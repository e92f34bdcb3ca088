"""Checks and identity of a Core ML artefact, and the compute-unit names shared with the Swift test.

Pure functions: nothing here needs macOS or coremltools, so the checks run before any Apple-only work
and are tested on Linux.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Mapping

from mobileisp.ios_bench.platform import AppleBenchError

#: ``--compute-units`` value -> (coremltools ``ct.ComputeUnit`` member, Swift ``MLComputeUnits`` case).
#: The Swift test (``MobileISPBench/Sources/MobileISPBench/Bench.swift``) parses the same four names.
COMPUTE_UNITS: dict[str, tuple[str, str]] = {
    "all": ("ALL", "all"),
    "cpu": ("CPU_ONLY", "cpuOnly"),
    "cpu-gpu": ("CPU_AND_GPU", "cpuAndGPU"),
    "cpu-ne": ("CPU_AND_NE", "cpuAndNeuralEngine"),
}

#: Precision suffixes the exporter puts at the end of a file name (``liteisp-mobile-int8.mlpackage``).
_PRECISION_SUFFIX = re.compile(r"^(?P<model>.+?)[-_](?P<precision>fp32|fp16|int8|w8a8|w8a16|16x8|w8|int4)$", re.I)
#: User-defined metadata keys read for the model name and precision, most specific first.
_MODEL_KEYS = ("mobileisp.model", "mobileisp_model", "model")
_PRECISION_KEYS = ("mobileisp.precision", "mobileisp_precision", "precision")


def check_compute_units(value: str) -> str:
    """Return the canonical compute-units name, or raise :class:`AppleBenchError` naming the choices."""
    name = str(value).strip().lower().replace("_", "-")
    if name not in COMPUTE_UNITS:
        raise AppleBenchError(f"unknown compute units {value!r}; use one of {', '.join(COMPUTE_UNITS)}")
    return name


def check_counts(warmup: int, runs: int) -> tuple[int, int]:
    """Validate the number of warm-up (>= 0) and timed (>= 1) predictions."""
    if int(warmup) != warmup or int(runs) != runs or warmup < 0 or runs < 1:
        raise AppleBenchError(f"need warmup >= 0 and runs >= 1 predictions (got warmup={warmup}, runs={runs})")
    return int(warmup), int(runs)


def check_artefact(path: str | Path) -> Path:
    """Return ``path`` if it is a Core ML model: an ``.mlpackage`` folder (with Manifest.json) or ``.mlmodel`` file.

    Raises:
        AppleBenchError: missing, or not a Core ML model.
    """
    path = Path(path)
    if not path.exists():
        raise AppleBenchError(f"{path}: no such Core ML model")
    if path.suffix == ".mlpackage":
        if not (path / "Manifest.json").is_file():
            raise AppleBenchError(f"{path} is not a valid .mlpackage (no Manifest.json inside)")
        return path
    if path.suffix == ".mlmodel" and path.is_file():
        return path
    raise AppleBenchError(f"{path} is not a Core ML model (expected an .mlpackage folder or an .mlmodel file)")


def artefact_identity(path: str | Path, user_metadata: Mapping[str, str] | None = None) -> tuple[str, str]:
    """The (model name, precision) of an artefact.

    Read from the model's user-defined metadata when the exporter wrote it: a JSON object under
    ``"mobileisp"`` with ``model``/``precision``, or flat keys (``mobileisp.model``, ``model``, ...).
    Otherwise taken from the file name ``<model>-<precision>.mlpackage``; ``"unknown"`` where neither says.
    """
    meta = {str(k): v for k, v in (user_metadata or {}).items()}
    blob: dict = {}
    if isinstance(meta.get("mobileisp"), str):
        try:
            parsed = json.loads(meta["mobileisp"])
        except json.JSONDecodeError:
            parsed = None
        blob = parsed if isinstance(parsed, dict) else {}
    model = blob.get("model") or next((meta[k] for k in _MODEL_KEYS if meta.get(k)), None)
    precision = blob.get("precision") or next((meta[k] for k in _PRECISION_KEYS if meta.get(k)), None)
    stem = Path(path).name.rsplit(".", 1)[0]
    m = _PRECISION_SUFFIX.match(stem)
    if model is None:
        model = m.group("model") if m else stem
    if precision is None:
        precision = m.group("precision").lower() if m else "unknown"
    return str(model), str(precision)
