"""The export pipeline as numbered steps, and validation of an exported artefact.

``export(model, format, precision)`` runs:

1. **trace**: build the network (shipped or given weights; a random init is seeded so it can be rebuilt),
   apply the export-friendly rewrites and check them against the original on a held-out example;
2. **convert**: torch -> ONNX (opset 17, simplified) -> onnx2tf, or torch -> coremltools mlprogram;
3. **quantize**: pick onnx2tf's calibrated variant, or quantize Core ML weights (w8) / calibrate
   activations in PyTorch (w8a8), on ``calib`` representative RAW samples of the training distribution;
4. **validate**: run the candidate and the fp32 PyTorch reference on held-out RAW, compare, enforce the floor;
5. **write**: embed the metadata (including step 4's numbers) and move the artefact into place atomically.

Nothing is written when any step fails. :func:`validate` repeats step 4 for an artefact on disk, reading
everything it needs from the artefact's metadata.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mobileisp._io import atomic_path, atomic_write_bytes, check_writable
from mobileisp.errors import MobileISPError, ModelError
from mobileisp.export import artefact as art
from mobileisp.export.calibrate import InputSet, calibration_set, check_size, evaluation_set, example_inputs
from mobileisp.export.formats import (
    FormatSpec,
    PrecisionSpec,
    UnsupportedExportError,
    artefact_filename,
    floor_for,
    resolve,
)
from mobileisp.export.parity import ParityError, ParityResult, measure, save_visuals

#: Largest difference allowed between the rewritten and the original network (fp32, whole network).
REWRITE_TOLERANCE = 1e-4
DEFAULT_CALIB = 32
DEFAULT_VALIDATE = 8


# ------------------------------------------------------------------------------------------------ results


@dataclass
class ExportResult:
    """One written artefact.

    Attributes:
        artefact: its path.
        model, format, precision: identity.
        size: full-resolution (H, W) of the static export.
        parity: the validation measured at export (also stored in the artefact).
        seconds: wall time per step (``trace``, ``convert``, ``quantize``, ``validate``, ``write``).
        bytes: artefact size on disk.
    """

    artefact: Path
    model: str
    format: str
    precision: str
    size: tuple[int, int]
    parity: ParityResult
    seconds: dict[str, float] = field(default_factory=dict)
    bytes: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "artefact": str(self.artefact), "model": self.model, "format": self.format, "precision": self.precision,
            "size": list(self.size), "bytes": self.bytes, "seconds": dict(self.seconds), "parity": self.parity.to_dict(),
        }

    def table(self) -> str:
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in self.seconds.items())
        return f"wrote {self.artefact} ({self.bytes / 1e6:.2f} MB; {steps})\n{self.parity.table()}"


@dataclass
class Traced:
    """Step 1's output: the reference network, its export-friendly copy and the example input."""

    spec: Any
    size: tuple[int, int]
    reference: nn.Module
    model: nn.Module
    example: dict[str, torch.Tensor]
    weights: dict[str, Any]
    target: str


@dataclass
class Candidate:
    """A converted (not yet written) artefact of one precision and how to run it."""

    precision: str
    path: Path | None = None  # .tflite / .onnx working file
    mlmodel: Any = None  # coremltools MLModel
    torch_simulation: nn.Module | None = None  # Core ML w8a8: the calibrated torch network
    io: dict[str, Any] | None = None  # TFLite: input/output names, shapes, dtypes, (scale, zero point)
    quantization: dict[str, Any] | None = None  # what stayed float (TFLite int8)


# ------------------------------------------------------------------------------------------------ weights


def load_reference(spec, weights: str | Path | None = "default") -> tuple[nn.Module, dict[str, Any]]:
    """The fp32 PyTorch network and a JSON description of its weights.

    Args:
        spec: the ModelSpec.
        weights: ``"default"`` (the shipped file if present, else a random init), a safetensors path, or None
            (random init). A random init is built under ``torch.manual_seed(RANDOM_INIT_SEED)`` (without
            touching the caller's RNG) so validation can rebuild the same network.
    """
    from mobileisp.models import create_model

    path: Path | None
    if weights == "default":
        path = spec.weights_path()
        path = path if path is not None and path.exists() else None
    else:
        path = None if weights is None else Path(weights)
    if path is None:
        with torch.random.fork_rng():
            torch.manual_seed(art.RANDOM_INIT_SEED)
            model = create_model(spec.name, weights=None)
        info = {"file": None, "sha256": None, "trained": False, "init_seed": art.RANDOM_INIT_SEED}
    else:
        model = create_model(spec.name, weights=path)
        info = {"file": str(path), "name": path.name, "sha256": art.sha256_file(path), "trained": True}
    return model.eval(), info


def weights_for_artefact(meta: Mapping[str, Any], weights: str | Path | None = None) -> str | Path | None:
    """Which weights rebuild an artefact's reference: ``weights`` if given, else the recorded file or the
    model's shipped file when its SHA-256 matches, else the seeded random init.

    Raises:
        ModelError: the artefact was exported from trained weights that are nowhere to be found.
    """
    if weights is not None:
        return weights
    info = meta.get("weights") or {}
    sha = info.get("sha256")
    if not sha:
        return None  # seeded random init
    from mobileisp.models import get_spec

    candidates = [Path(info["file"])] if info.get("file") else []
    shipped = get_spec(meta["model"]).weights_path()
    if shipped is not None:
        candidates.append(shipped)
    for c in candidates:
        if c.is_file() and art.sha256_file(c) == sha:
            return c
    raise ModelError(
        f"the artefact was exported from weights {info.get('name') or info.get('file')} (sha256 {sha[:12]}...), "
        "which are not here; pass --weights FILE"
    )


# ------------------------------------------------------------------------------------------------ steps


def step1_trace(model: str, weights: str | Path | None, size: Sequence[int] | None, target: str) -> Traced:
    """Build the reference and its export-friendly copy; check they agree on a held-out example."""
    from mobileisp.export.rewrite import export_friendly
    from mobileisp.models import get_spec

    spec = get_spec(model)
    if not spec.exportable:
        raise UnsupportedExportError(f"{spec.name} is not exportable (it runs outside PyTorch: {spec.description})")
    hw = check_size(spec, size if size is not None else spec.export_size)
    reference, info = load_reference(spec, weights)
    rewritten = export_friendly(reference, target)
    example = example_inputs(spec, hw)
    with torch.no_grad():
        a = _call(reference, example)
        b = _call(rewritten, example)
    diff = float((a - b).abs().max())
    if not diff <= REWRITE_TOLERANCE:
        raise MobileISPError(f"{spec.name}: the export-friendly rewrite differs from the network by {diff:.2e} (bug)")
    return Traced(spec, hw, reference, rewritten, example, info, target)


def step2_convert(traced: Traced, fmt: FormatSpec, precisions: Sequence[str], work: Path,
                  calib: InputSet | None) -> dict[str, Any]:
    """Convert the float graph: ONNX (+ every onnx2tf variant) or the fp16 Core ML mlprogram.

    Returns a dict with ``onnx`` (path), ``tflite`` (precision -> path) and/or ``coreml`` (MLModel).
    """
    out: dict[str, Any] = {}
    if fmt.name in ("tflite", "onnx"):
        from mobileisp.export import onnx as onnx_export

        out["onnx"] = onnx_export.export(traced.model, traced.example, work / f"{traced.spec.name}.onnx",
                                         output_name=traced.spec.output.name)
        if fmt.name == "tflite":
            from mobileisp.export import tflite

            quantized = [p for p in precisions if p in tflite.QUANTIZED]  # need the calibration set
            out["tflite"] = tflite.convert(
                out["onnx"], work / "tflite", precisions, calibration=calib.numpy() if quantized else None,
                image_inputs=(traced.spec.image_input.name,),
            )
    elif any(p in ("fp16", "w8") for p in precisions):
        from mobileisp.export import coreml

        out["coreml"] = coreml.convert(traced.model, traced.example, "fp16", output_name=traced.spec.output.name)
    return out


def step3_quantize(traced: Traced, fmt: FormatSpec, precision: str, converted: Mapping[str, Any],
                   calib: InputSet | None) -> Candidate:
    """The candidate of one precision (quantized where the precision asks)."""
    if fmt.name == "onnx":
        return Candidate(precision, path=converted["onnx"])
    if fmt.name == "tflite":
        from mobileisp.export.tflite import TFLiteRunner

        path = converted["tflite"][precision]
        info = path.with_suffix(".json")
        quant = json.loads(info.read_text()) if info.is_file() else None
        return Candidate(precision, path=path, io=TFLiteRunner(path).io_quantization(), quantization=quant)
    from mobileisp.export import coreml
    from mobileisp.export.onnx import NamedInputs

    if precision == "fp16":
        return Candidate(precision, mlmodel=converted["coreml"])
    if precision == "w8":
        with coreml._quiet():
            return Candidate(precision, mlmodel=coreml.quantize_weights(converted["coreml"]))
    names = list(traced.example)
    with coreml._quiet():
        sim = coreml.quantize_activations(NamedInputs(traced.model, names[1:]).eval(), tuple(traced.example.values()),
                                          calib.inputs)
    mlmodel = coreml.convert(traced.model, traced.example, "w8a8", quantized=sim, output_name=traced.spec.output.name)
    return Candidate(precision, mlmodel=mlmodel, torch_simulation=sim)


def step4_validate(traced: Traced, fmt: FormatSpec, prec: PrecisionSpec, candidate: Candidate,
                   eval_set: InputSet, reference_out: np.ndarray, label: str, calib: InputSet | None,
                   threads: int | None = None) -> tuple[ParityResult, np.ndarray]:
    """Run the candidate on the held-out set and compare with the fp32 reference."""
    run, runtime, simulated, notes = _candidate_runner(traced, fmt, candidate, calib, threads)
    return measure(
        run, reference_out, eval_set.targets, eval_set.numpy(), artefact=label, model=traced.spec.name,
        format=fmt.name, precision=prec.name, runtime=runtime, simulated=simulated,
        floor_db=floor_for(traced.spec.parity_floors, fmt.name, prec.name), max_task_drop_db=prec.max_task_drop_db,
        notes=notes, raw_output=traced.spec.inverse,
    )


def step5_write(fmt: FormatSpec, candidate: Candidate, metadata: Mapping[str, Any], dest: Path, force: bool) -> Path:
    """Embed ``metadata`` and move the artefact to ``dest`` atomically."""
    if fmt.name == "tflite":
        from mobileisp.export.tflite import embed_metadata

        return atomic_write_bytes(dest, embed_metadata(candidate.path.read_bytes(), metadata), force=force)
    if fmt.name == "onnx":
        from mobileisp.export.onnx import set_metadata

        with atomic_path(dest, force) as tmp:
            set_metadata(candidate.path, metadata, out=tmp)
        return dest
    from mobileisp.export.coreml import _quiet, set_metadata

    set_metadata(candidate.mlmodel, metadata)
    with atomic_path(dest, force) as tmp, _quiet():
        candidate.mlmodel.save(str(tmp))
    return dest


# ------------------------------------------------------------------------------------------------ export


def export(
    model: str,
    format: str,
    precision: str | Sequence[str],
    *,
    weights: str | Path | None = "default",
    size: Sequence[int] | None = None,
    calib: int = DEFAULT_CALIB,
    out_dir: str | Path = "out",
    force: bool = False,
    validate_n: int = DEFAULT_VALIDATE,
    enforce: bool = True,
    threads: int | None = None,
) -> list[ExportResult]:
    """Export ``model`` to ``format`` at one or several precisions (one conversion shared by all).

    Args:
        model: registry name.
        format: ``tflite``, ``coreml`` or ``onnx``.
        precision: one precision or a list (see :mod:`mobileisp.export.formats`).
        weights: ``"default"`` (shipped weights, else a seeded random init), a safetensors path, or None.
        size: full-resolution (H, W); default the spec's ``export_size``.
        calib: number of representative RAW samples for calibrated precisions.
        out_dir: destination folder; files are named ``<model>-<precision><suffix>``.
        force: overwrite existing artefacts.
        validate_n: held-out images for the parity check.
        enforce: a precision that misses its parity floor or task-drop limit is not written, and after the
            other precisions are done :class:`~mobileisp.export.parity.ParityError` is raised.
        threads: interpreter threads for validation.

    Returns:
        One :class:`ExportResult` per precision, in the order asked.

    Raises:
        UnsupportedExportError: an unsupported format/precision (before any work), or a non-exportable model.
        ParityError: ``enforce`` and a precision misses its floor (the passing precisions are written).
        OutputExistsError: an artefact exists and ``force`` is False (before any work).
    """
    precisions = [precision] if isinstance(precision, str) else list(precision)
    if not precisions:
        raise UnsupportedExportError("no precision given")
    rows = [resolve(format, p) for p in precisions]
    fmt = rows[0][0]
    dests = [Path(out_dir) / artefact_filename(model, fmt.name, p) for p in precisions]
    for d in dests:
        check_writable(d, force)

    seconds: dict[str, float] = {}
    with _timer(seconds, "trace"):
        traced = step1_trace(model, weights, size, "coreml" if fmt.name == "coreml" else fmt.name)
    spec, hw = traced.spec, traced.size
    calib_set = calibration_set(spec, calib, hw) if any(p.calibrated for _, p in rows) else None
    eval_set = evaluation_set(spec, validate_n, hw)
    with torch.no_grad():
        reference_out = _call(traced.reference, eval_set.inputs).numpy()

    results, failures = [], []
    with tempfile.TemporaryDirectory(prefix="mobileisp-export-") as tmp:
        work = Path(tmp)
        with _timer(seconds, "convert"):
            converted = step2_convert(traced, fmt, precisions, work, calib_set)
        for (_, prec), dest in zip(rows, dests):
            times = dict(seconds)
            with _timer(times, "quantize"):
                candidate = step3_quantize(traced, fmt, prec.name, converted, calib_set)
            with _timer(times, "validate"):
                parity, _ = step4_validate(traced, fmt, prec, candidate, eval_set, reference_out, str(dest),
                                           calib_set, threads)
            if enforce and not parity.passed:
                failures.append(parity.failure())
                continue
            metadata = art.build_metadata(
                spec=spec, format=fmt.name, precision=prec.name, size=hw, layout=fmt.layout,
                inputs=_io_spec(spec, traced.example, fmt), output=_output_spec(spec, hw, fmt, candidate.io),
                weights=traced.weights,
                calibration=calib_set.source if (calib_set is not None and prec.calibrated) else None,
                parity=parity.to_dict(), rewrites=f"mobileisp.export.rewrite.export_friendly(target={traced.target!r})",
                io_quantization=candidate.io if prec.name == "int8-io" else None,
            )
            if candidate.quantization is not None:
                metadata["quantization"] = candidate.quantization
            with _timer(times, "write"):
                path = step5_write(fmt, candidate, metadata, dest, force)
            results.append(ExportResult(path, spec.name, fmt.name, prec.name, hw, parity, times, _size_of(path)))
    if failures:
        written = f" (written: {', '.join(r.precision for r in results)})" if results else "; nothing written"
        raise ParityError("; ".join(failures) + written)
    return results


# ------------------------------------------------------------------------------------------------ validate


def validate(
    artefact: str | Path,
    n: int = DEFAULT_VALIDATE,
    *,
    weights: str | Path | None = None,
    threads: int | None = None,
    save_images: str | Path | None = None,
    force: bool = False,
) -> ParityResult:
    """Parity of an artefact on disk against the PyTorch fp32 reference on ``n`` held-out images.

    Runs the artefact with LiteRT (.tflite), onnxruntime (.onnx) or Core ML predict (.mlpackage on macOS;
    elsewhere the torch simulation of its quantization, labelled as such). The reference network,
    export size, rewrites and calibration set come from the artefact's metadata.

    Args:
        artefact: .tflite, .onnx or .mlpackage written by :func:`export`.
        n: number of held-out images.
        weights: weights to rebuild the reference with (default: those recorded, checked by SHA-256).
        threads: interpreter threads.
        save_images: folder for ``<artefact>-side-by-side.png`` and ``<artefact>-error.png`` (first image).
        force: overwrite existing images.

    Returns:
        The :class:`ParityResult`; call ``.check()`` to raise :class:`ParityError` below the floor.
    """
    from mobileisp.export.calibrate import calibration_set as calib_fn
    from mobileisp.export.rewrite import export_friendly
    path = Path(artefact)
    meta = art.read_metadata(path)
    fmt, prec = resolve(meta["format"], meta["precision"])
    spec = art.spec_for_artefact(meta)
    hw = tuple(meta["size"])
    reference, info = load_reference(spec, weights_for_artefact(meta, weights))
    target = "coreml" if fmt.name == "coreml" else fmt.name
    traced = Traced(spec, hw, reference, export_friendly(reference, target), example_inputs(spec, hw), info, target)
    eval_set = evaluation_set(spec, n, hw)
    with torch.no_grad():
        reference_out = _call(reference, eval_set.inputs).numpy()
    calib = None
    if prec.calibrated and meta.get("calibration"):
        src = meta["calibration"]
        calib = calib_fn(spec, int(src["n"]), hw, int(src.get("seed", 0)))
    candidate = Candidate(prec.name, path=path)
    result, out = step4_validate(traced, fmt, prec, candidate, eval_set, reference_out, str(path), calib, threads)
    if save_images is not None:
        save_visuals(save_images, path.name, out[0], np.clip(reference_out[0], 0, 1), eval_set.targets[0].numpy(), force)
    return result


# ------------------------------------------------------------------------------------------------ helpers


def _call(model: nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
    names = list(inputs)
    return model(inputs[names[0]], **{k: inputs[k] for k in names[1:]})


def _candidate_runner(traced: Traced, fmt: FormatSpec, candidate: Candidate, calib: InputSet | None,
                      threads: int | None):
    """(run function, runtime name, simulated, notes) for a candidate or an artefact on disk."""
    if fmt.name == "tflite":
        from mobileisp.export.tflite import TFLiteRunner

        return TFLiteRunner(candidate.path, threads), "litert", False, "LiteRT interpreter (XNNPACK)"
    if fmt.name == "onnx":
        from mobileisp.export.onnx import ONNXRunner

        return ONNXRunner(candidate.path, threads), "onnxruntime", False, "onnxruntime CPU"
    from mobileisp.export import coreml

    if coreml.predict_available():
        if candidate.mlmodel is not None and candidate.path is None:
            tmp = Path(tempfile.mkdtemp(prefix="mobileisp-coreml-")) / "candidate.mlpackage"
            candidate.mlmodel.save(str(tmp))
            candidate.path = tmp
        return coreml.CoreMLRunner(candidate.path), "coreml", False, "Core ML predict"
    note = ("Core ML predict needs macOS; this is the torch-side simulation of the same quantization ("
            + {"fp16": "network in float16", "w8": "int8 per-channel weights, float16 compute",
               "w8a8": "coremltools LinearQuantizer int8 weights and activations"}[candidate.precision] + ")")
    if candidate.torch_simulation is not None:
        names = list(traced.example)
        sim = candidate.torch_simulation

        def run(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
            tensors = [torch.as_tensor(inputs[k]) for k in names]
            with torch.no_grad():
                return torch.cat([sim(*(t[i : i + 1] for t in tensors)) for i in range(tensors[0].shape[0])]).numpy()

        return run, "torch-simulation", True, note
    calibration = calib.inputs if calib is not None else None
    return coreml.simulate(traced.model, candidate.precision, calibration, traced.example), "torch-simulation", True, note


def _io_spec(spec, example: Mapping[str, torch.Tensor], fmt: FormatSpec) -> list[dict[str, Any]]:
    out = []
    for t in spec.inputs:
        shape = list(example[t.name].shape)
        layout = t.layout
        if fmt.layout == "NHWC" and len(shape) == 4:
            shape = [shape[0], shape[2], shape[3], shape[1]]
            layout = "NHWC"
        out.append({"name": t.name, "shape": shape, "layout": layout, "dtype": "float32",
                    "range": list(t.range) if t.range else None, "description": t.description})
    return out


def _output_spec(spec, hw: tuple[int, int], fmt: FormatSpec, io: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The output tensor as the artefact writes it (TFLite: as the interpreter reports it)."""
    t = spec.output
    c = 4 if spec.inverse else 3
    h, w = (hw[0] // 2, hw[1] // 2) if spec.inverse else hw
    shape, layout, dtype = ([1, h, w, c], "NHWC", "float32") if fmt.layout == "NHWC" else ([1, c, h, w], "NCHW", "float32")
    if io:
        out = io["outputs"][0]
        shape, dtype = out["shape"], out["dtype"]
        layout = "NCHW" if shape[1] == c and shape[-1] != c else "NHWC"
    return {"name": t.name, "shape": shape, "layout": layout, "dtype": dtype, "range": [0.0, 1.0],
            "description": f"{t.description} (clip to [0, 1])"}


def _size_of(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


@contextlib.contextmanager
def _timer(store: dict[str, float], key: str) -> Iterator[None]:
    t0 = time.perf_counter()
    try:
        yield
    finally:
        store[key] = store.get(key, 0.0) + time.perf_counter() - t0
