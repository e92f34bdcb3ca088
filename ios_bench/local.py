"""Core ML on this Mac through coremltools: latency (``bench --device mac``) and predictions for parity.

``coremltools.models.MLModel(path, compute_units=...)`` compiles and loads the model with the Core ML
framework, which only macOS has (the Linux wheel can convert and save, not predict). Inputs are the
model's own: names, shapes and dtypes come from its spec, values are deterministic uniform [0, 1) draws,
the range of packed RAW and of every metadata input the networks take.
"""

from __future__ import annotations

import platform
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from mobileisp.bench import BenchResult
from mobileisp.ios_bench.artefact import COMPUTE_UNITS, artefact_identity, check_artefact, check_compute_units, check_counts
from mobileisp.ios_bench.platform import AppleBenchError, require_macos

#: Core ML ArrayFeatureType.ArrayDataType enum values (FeatureTypes.proto) -> numpy dtype.
_ARRAY_DTYPES = {65568: np.float32, 65552: np.float16, 65600: np.float64, 131104: np.int32}


def coreml_inputs(spec: Any) -> list[tuple[str, tuple[int, ...], np.dtype]]:
    """(name, shape, dtype) of each input of a Core ML model spec (``MLModel.get_spec()``).

    A flexible input uses its default shape. Raises :class:`AppleBenchError` for image or other
    non-array inputs (mobileisp exports RAW as float tensors, never as images).
    """
    out = []
    for feature in spec.description.input:
        kind = feature.type.WhichOneof("Type")
        if kind != "multiArrayType":
            raise AppleBenchError(f"input {feature.name!r} is a Core ML {kind}; only multi-array inputs are supported")
        arr = feature.type.multiArrayType
        shape = tuple(int(d) for d in arr.shape)
        if not shape and arr.WhichOneof("ShapeFlexibility") == "enumeratedShapes":
            shape = tuple(int(d) for d in arr.enumeratedShapes.shapes[0].shape)
        elif not shape and arr.WhichOneof("ShapeFlexibility") == "shapeRange":
            shape = tuple(int(r.lowerBound) for r in arr.shapeRange.sizeRanges)
        if not shape:
            raise AppleBenchError(f"input {feature.name!r} has no default shape")
        dtype = _ARRAY_DTYPES.get(int(arr.dataType))
        if dtype is None:
            raise AppleBenchError(f"input {feature.name!r} has unsupported Core ML array type {arr.dataType}")
        out.append((feature.name, shape, np.dtype(dtype)))
    return out


def make_inputs(inputs: Sequence[tuple[str, tuple[int, ...], np.dtype]], seed: int = 0) -> dict[str, np.ndarray]:
    """Deterministic uniform [0, 1) arrays of the given names, shapes and dtypes."""
    rng = np.random.default_rng(seed)
    return {name: rng.random(shape, dtype=np.float64).astype(dtype) for name, shape, dtype in inputs}


def time_predictions(predict: Callable[[Mapping[str, np.ndarray]], Any], inputs: Mapping[str, np.ndarray],
                     warmup: int, runs: int) -> tuple[list[float], list[float]]:
    """Call ``predict(inputs)`` ``warmup`` times, then ``runs`` timed times.

    Returns:
        (warm-up times, timed times), each in milliseconds per call (``time.perf_counter_ns``).
    """
    def once() -> float:
        t0 = time.perf_counter_ns()
        predict(inputs)
        return (time.perf_counter_ns() - t0) / 1e6

    warm = [once() for _ in range(warmup)]
    timed = [once() for _ in range(runs)]
    return warm, timed


def _load(artefact: Path, compute_units: str) -> tuple[Any, float]:
    """Load (and compile) ``artefact`` with coremltools; returns (model, load milliseconds)."""
    try:
        import coremltools as ct
    except ImportError:
        raise AppleBenchError("coremltools is not installed; pip install 'mobileisp[export]'") from None
    units = getattr(ct.ComputeUnit, COMPUTE_UNITS[compute_units][0])
    t0 = time.perf_counter_ns()
    try:
        model = ct.models.MLModel(str(artefact), compute_units=units)
    except Exception as e:  # coremltools raises bare Exception/RuntimeError for unloadable models
        raise AppleBenchError(f"Core ML could not load {artefact}: {_first_line(e)}") from None
    return model, (time.perf_counter_ns() - t0) / 1e6


def _predict(model: Any, feed: Mapping[str, np.ndarray], artefact: Path) -> dict[str, Any]:
    """``model.predict(feed)`` with Core ML's failures (unsupported op on a unit, no framework) as one line."""
    try:
        return model.predict(feed)
    except Exception as e:
        raise AppleBenchError(f"Core ML prediction failed on {artefact.name}: {_first_line(e)}") from None


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _mac_info() -> tuple[str | None, str | None]:
    """(``macOS 14.5``, ``Apple M2 Pro``) of this Mac, None where unknown."""
    version = platform.mac_ver()[0]
    try:
        done = subprocess.run(
            ["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True, timeout=10, check=False
        )
        soc = done.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        soc = None
    return (f"macOS {version}" if version else None), soc


def bench_coreml_on_mac(artefact: str | Path, compute_units: str = "all", warmup: int = 5, runs: int = 20) -> BenchResult:
    """Latency of a Core ML model on this Mac.

    Args:
        artefact: ``.mlpackage`` folder or ``.mlmodel`` file.
        compute_units: ``all``, ``cpu``, ``cpu-gpu`` or ``cpu-ne``.
        warmup, runs: untimed and timed predictions.

    Raises:
        PlatformError: not macOS (checked before anything else).
        AppleBenchError: bad arguments or a model Core ML cannot load.
    """
    require_macos("mobileisp bench --device mac")
    artefact = check_artefact(artefact)
    compute_units = check_compute_units(compute_units)
    warmup, runs = check_counts(warmup, runs)
    model, load_ms = _load(artefact, compute_units)
    spec = model.get_spec()
    io = coreml_inputs(spec)
    inputs = make_inputs(io)
    warm, timed = time_predictions(lambda feed: _predict(model, feed, artefact), inputs, warmup, runs)
    name, precision = artefact_identity(artefact, dict(spec.description.metadata.userDefined))
    os_version, soc = _mac_info()
    shape = next((s for n, s, _ in io if n == "raw"), io[0][1])
    notes = f"load+compile {load_ms:.1f} ms" + (f"; first prediction {warm[0]:.1f} ms" if warm else "")
    return BenchResult.from_samples(
        timed, warmup=warmup, artefact=str(artefact), model=name, format="coreml", precision=precision,
        runtime="coreml", device="mac", soc=soc, os_version=os_version, accelerator=compute_units,
        input_shape=shape, load_ms=load_ms, notes=notes,
    )


def validate_coreml_on_mac(artefact: str | Path, inputs: Sequence[Mapping[str, np.ndarray]],
                           compute_units: str = "all") -> list[dict[str, np.ndarray]]:
    """Core ML predictions on this Mac, for parity against the PyTorch reference.

    Args:
        artefact: ``.mlpackage`` folder or ``.mlmodel`` file.
        inputs: one dict per sample: input name -> NCHW array (cast to the model's input dtype here).
        compute_units: ``all``, ``cpu``, ``cpu-gpu`` or ``cpu-ne``.

    Returns:
        One dict per sample: output name -> float32 array (Core ML keeps NCHW).

    Raises:
        PlatformError: not macOS (checked before anything else).
        AppleBenchError: bad arguments, missing inputs, or a model Core ML cannot load or run.
    """
    require_macos("mobileisp validate (Core ML)")
    artefact = check_artefact(artefact)
    compute_units = check_compute_units(compute_units)
    model, _ = _load(artefact, compute_units)
    io = coreml_inputs(model.get_spec())
    feeds = []
    for i, sample in enumerate(inputs):  # check every sample before the first (slow) prediction
        missing = [n for n, _, _ in io if n not in sample]
        if missing:
            raise AppleBenchError(f"sample {i} lacks input(s) {', '.join(missing)} of {artefact.name}")
        feed = {n: np.ascontiguousarray(np.asarray(sample[n]), dtype=dt) for n, _, dt in io}
        wrong = [f"{n} {feed[n].shape} != {shape}" for n, shape, _ in io if feed[n].shape != shape]
        if wrong:
            raise AppleBenchError(f"sample {i} has the wrong shape for {artefact.name}: {'; '.join(wrong)}")
        feeds.append(feed)
    outputs = []
    for feed in feeds:
        pred = _predict(model, feed, artefact)
        outputs.append({k: np.asarray(v, dtype=np.float32) for k, v in pred.items()})
    return outputs
