"""The format table: every (format, precision) the exporter writes, and what each row means.

One table drives export, validation and benchmarking (Ultralytics-style): a row names the artefact suffix,
its tensor layout, the runtime that executes it, and per precision the key of the parity floor in
:attr:`mobileisp.models.ModelSpec.parity_floors`, whether calibration data is needed, and the largest
allowed drop of task PSNR (against ground truth) relative to the fp32 PyTorch reference.

==========  ==========  =================================================================================
format      precision   artefact
==========  ==========  =================================================================================
tflite      fp32        ``<model>-fp32.tflite``: float32 weights and activations
tflite      fp16        ``<model>-fp16.tflite``: float16 weights (dequantized at load), float32 compute/I/O
tflite      int8        ``<model>-int8.tflite``: int8 weights and activations, float32 I/O
tflite      int16x8     ``<model>-int16x8.tflite``: int16 activations, int8 weights, float32 I/O
tflite      int8-io     ``<model>-int8-io.tflite``: int8 throughout incl. I/O (NPUs); I/O scales in metadata
coreml      fp16        ``<model>-fp16.mlpackage``: mlprogram, fp16 compute, float32 TensorType I/O
coreml      w8          ``<model>-w8.mlpackage``: int8 weights (linear symmetric, per channel), fp16 compute
coreml      w8a8        ``<model>-w8a8.mlpackage``: int8 weights and activations (calibrated in PyTorch), iOS17
onnx        fp32        ``<model>-fp32.onnx``: the ONNX graph the TFLite path starts from (opset 17, simplified)
==========  ==========  =================================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobileisp.errors import MobileISPError


class UnsupportedExportError(MobileISPError):
    """A format/precision combination the exporter does not write, or a model that cannot be exported."""


@dataclass(frozen=True)
class PrecisionSpec:
    """One precision of one format.

    Attributes:
        name: the ``--precision`` value.
        floor_key: key of the parity floor in ``ModelSpec.parity_floors``; a model without that key has no
            enforced floor for this row (validation still measures and reports).
        calibrated: needs representative inputs (``--calib N`` samples of the training distribution).
        max_task_drop_db: largest allowed task-PSNR drop against the fp32 reference, None: not enforced.
        description: one line for the table.
    """

    name: str
    floor_key: str | None
    calibrated: bool
    max_task_drop_db: float | None
    description: str


@dataclass(frozen=True)
class FormatSpec:
    """One artefact format.

    Attributes:
        name: the ``--format`` value.
        suffix: artefact file suffix (``.mlpackage`` is a folder).
        layout: image tensor layout of the artefact's I/O (``NHWC`` for TFLite, ``NCHW`` otherwise).
        runtime: what runs it on this host (``litert``, ``onnxruntime``, ``coreml``).
        precisions: the supported precisions, in table order.
    """

    name: str
    suffix: str
    layout: str
    runtime: str
    precisions: tuple[PrecisionSpec, ...]

    def precision(self, name: str) -> PrecisionSpec:
        for p in self.precisions:
            if p.name == name:
                return p
        raise UnsupportedExportError(
            f"format {self.name} has no precision {name!r}; supported: {', '.join(self.precision_names)}"
        )

    @property
    def precision_names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.precisions)


FORMATS: dict[str, FormatSpec] = {
    "tflite": FormatSpec(
        "tflite", ".tflite", "NHWC", "litert",
        (
            PrecisionSpec("fp32", "fp32", False, 1.0, "float32"),
            PrecisionSpec("fp16", "fp16", False, 1.0, "float16 weights, float32 I/O"),
            PrecisionSpec("int8", "int8", True, 1.0, "int8 weights + activations, float32 I/O"),
            PrecisionSpec("int16x8", "int16x8", True, 1.0, "int16 activations, int8 weights, float32 I/O"),
            PrecisionSpec("int8-io", "int8-io", True, None, "full int8 incl. I/O (NPU opt-in), scales in metadata"),
        ),
    ),
    "coreml": FormatSpec(
        "coreml", ".mlpackage", "NCHW", "coreml",
        (
            PrecisionSpec("fp16", "coreml-fp16", False, 1.0, "mlprogram, fp16 compute, float32 TensorType I/O"),
            PrecisionSpec("w8", "coreml-w8", False, 1.0, "int8 weights (per-channel symmetric), fp16 compute"),
            PrecisionSpec("w8a8", "coreml-w8a8", True, None, "int8 weights + activations (torch-side calibration), iOS17"),
        ),
    ),
    "onnx": FormatSpec(
        "onnx", ".onnx", "NCHW", "onnxruntime",
        (PrecisionSpec("fp32", "fp32", False, 1.0, "opset 17, simplified; the TFLite path's intermediate"),),
    ),
}


def supported() -> str:
    """``tflite: fp32, fp16, ...; coreml: ...; onnx: fp32``: the list an error message quotes."""
    return "; ".join(f"{f.name}: {', '.join(f.precision_names)}" for f in FORMATS.values())


def resolve(format: str, precision: str) -> tuple[FormatSpec, PrecisionSpec]:
    """The table rows for ``format`` and ``precision``.

    Raises:
        UnsupportedExportError: unknown format or precision; the message lists every supported combination.
    """
    fmt = FORMATS.get(str(format).lower())
    if fmt is None:
        raise UnsupportedExportError(f"unknown export format {format!r}; supported: {supported()}")
    if precision not in fmt.precision_names:
        raise UnsupportedExportError(
            f"format {fmt.name} does not support precision {precision!r}; supported: {supported()}"
        )
    return fmt, fmt.precision(precision)


def artefact_filename(model: str, format: str, precision: str) -> str:
    """``liteisp-mobile-int8.tflite``, ``liteisp-mobile-w8.mlpackage``, ``liteisp-mobile-fp32.onnx``."""
    fmt, prec = resolve(format, precision)
    return f"{model}-{prec.name}{fmt.suffix}"


def format_of(path: str | Path) -> FormatSpec:
    """The format of an artefact path, from its suffix.

    Raises:
        UnsupportedExportError: a suffix no format writes.
    """
    suffix = Path(path).suffix.lower()
    for fmt in FORMATS.values():
        if fmt.suffix == suffix:
            return fmt
    known = ", ".join(f.suffix for f in FORMATS.values())
    raise UnsupportedExportError(f"{path}: not an exported artefact (expected one of {known})")


def floor_for(parity_floors: dict[str, float], format: str, precision: str) -> float | None:
    """The parity floor (dB) of a model's ``parity_floors`` for this row, or None when the model sets none."""
    _, prec = resolve(format, precision)
    if prec.floor_key is None:
        return None
    value = parity_floors.get(prec.floor_key)
    return None if value is None else float(value)


def table() -> list[dict[str, Any]]:
    """Rows for display: format, precision, suffix, layout, runtime, calibrated, floor key, description."""
    return [
        {
            "format": f.name,
            "precision": p.name,
            "suffix": f.suffix,
            "layout": f.layout,
            "runtime": f.runtime,
            "calibrated": p.calibrated,
            "floor": p.floor_key,
            "max_task_drop_db": p.max_task_drop_db,
            "description": p.description,
        }
        for f in FORMATS.values()
        for p in f.precisions
    ]
