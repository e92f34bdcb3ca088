"""TFLite: ONNX -> onnx2tf -> .tflite, metadata inside the flatbuffer, and a LiteRT runner with NCHW I/O.

Conversion uses onnx2tf 1.29 (TensorFlow 2.19 converter path). One call writes ``<stem>_float32`` and
``_float16`` and, with calibration data, ``_integer_quant_with_int16_act`` (16x8: int16 activations, int8
weights, float32 I/O) and ``_full_integer_quant`` (int8 everywhere including I/O). onnx2tf transposes 4-D
NCHW inputs and outputs to NHWC; metadata inputs (``(N, 3)``, ``(N, 3, 3)``) are kept exactly as they are
(``keep_shape_absolutely_input_names``), because a 3-D tensor would otherwise be read as NCW and transposed.

``int8`` (int8 weights and activations, float32 I/O) is quantized from onnx2tf's SavedModel by the TFLite
converter itself (:func:`quantize_int8`), with one rule that onnx2tf cannot express: **linear-light data
stays float**. Every op upstream of a display gamma (``POW``, the ``x ** (1/2.2)`` of the networks) is kept
in float32 (TFLite selective quantization, ``QuantizationDebugOptions(denylisted_nodes=...)``), so RAW is
never rounded to 8 bits in linear light, where a quantization step crushes the shadows and the gamma then
amplifies it (CameraNet's Restore-Net on XYZ: 31.5 dB all-int8 against 42 dB with this rule; LiteISPNet,
whose gamma is its first op, is all-int8 either way). Everything after the gamma is int8.

The artefact's metadata is JSON in the flatbuffer's ``metadata`` table under the name ``"mobileisp"``
(:data:`METADATA_NAME`): a named buffer that every TFLite runtime ignores and that
:func:`read_metadata` reads back. No sidecar file.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from mobileisp.errors import MobileISPError

#: Name of the metadata entry holding mobileisp's JSON.
METADATA_NAME = "mobileisp"
#: onnx2tf output file suffix of each TFLite precision.
ONNX2TF_SUFFIX = {
    "fp32": "float32",
    "fp16": "float16",
    "int8": "integer_quant",
    "int16x8": "integer_quant_with_int16_act",
    "int8-io": "full_integer_quant",
}
#: Precisions that need onnx2tf's integer quantization (and so calibration data).
QUANTIZED = ("int8", "int16x8", "int8-io")


class TFLiteConversionError(MobileISPError):
    """onnx2tf could not convert the graph, or did not write the expected file."""


def convert(
    onnx_path: str | os.PathLike,
    work_dir: str | os.PathLike,
    precisions: Sequence[str],
    calibration: Mapping[str, np.ndarray] | None = None,
    image_inputs: Sequence[str] = ("raw",),
) -> dict[str, Path]:
    """Convert an ONNX file to the requested TFLite precisions with one onnx2tf call.

    Args:
        onnx_path: the float32 ONNX graph (static shapes).
        work_dir: folder for onnx2tf's outputs (created).
        precisions: keys of :data:`ONNX2TF_SUFFIX`.
        calibration: input name -> representative float32 samples in the ONNX layout (``(N, C, H, W)`` for
            images, ``(N, ...)`` for metadata), required when a precision is quantized. Passed to onnx2tf
            with mean 0 and std 1 so that the RAW scale is preserved.
        image_inputs: inputs that are NCHW images (transposed to NHWC); all others keep their shape.

    Returns:
        precision -> path of the written .tflite (for ``int8``, :func:`quantize_int8`'s description of what
        stayed float is in the same name with ``.json``).

    Raises:
        TFLiteConversionError: onnx2tf failed (the message carries its last error line).
    """
    import onnx2tf

    onnx_path, work_dir = Path(onnx_path), Path(work_dir)
    unknown = [p for p in precisions if p not in ONNX2TF_SUFFIX]
    if unknown:
        raise ValueError(f"no TFLite variant for {unknown}")
    quantize = any(p in ("int16x8", "int8-io") for p in precisions)
    if "int8" in precisions and not calibration:
        raise ValueError("quantized TFLite precisions need calibration data")
    kwargs: dict[str, Any] = {}
    if quantize:
        if not calibration:
            raise ValueError("quantized TFLite precisions need calibration data")
        work_dir.mkdir(parents=True, exist_ok=True)
        cind = []
        for name, data in calibration.items():
            data = np.asarray(data, dtype=np.float32)
            if name in image_inputs:
                data = data.transpose(0, 2, 3, 1)  # onnx2tf wants TF (NHWC) order
            npy = work_dir / f"calib_{name}.npy"
            np.save(npy, np.ascontiguousarray(data), allow_pickle=False)
            ones = np.ones((1,) * (data.ndim - 1) + (data.shape[-1],), np.float32)
            cind.append([name, str(npy), np.zeros_like(ones), ones])
        kwargs.update(output_integer_quantized_tflite=True, custom_input_op_name_np_data_path=cind)
    keep = [name for name in (calibration or {}) if name not in image_inputs]
    if keep:
        kwargs["keep_shape_absolutely_input_names"] = keep
    log = work_dir / "onnx2tf.log"
    for attempt in range(2):
        try:
            with quiet_native_output(log):
                onnx2tf.convert(
                    input_onnx_file_path=str(onnx_path), output_folder_path=str(work_dir), non_verbose=True, **kwargs
                )
            break
        except SystemExit:
            # onnx2tf reports some failures by printing ERROR lines and calling sys.exit(1). One of them, a
            # SavedModel op name starting with "/", has its own remedy: build the SavedModel with signature defs.
            last = last_error_line(log) or "onnx2tf exited without a message"
            if attempt == 0 and "output_signaturedefs" in (Path(log).read_text(errors="replace")):
                kwargs["output_signaturedefs"] = True
                continue
            raise TFLiteConversionError(f"onnx2tf could not convert {onnx_path.name}: {last}") from None
        except Exception as e:  # onnx2tf raises bare Exceptions/TF errors; keep the last line
            last = (str(e).strip().splitlines() or [type(e).__name__])[-1]
            raise TFLiteConversionError(f"onnx2tf could not convert {onnx_path.name}: {last}") from None
    out = {}
    if "int8" in precisions:
        model, info = quantize_int8(work_dir, calibration, image_inputs, log_path=work_dir / "onnx2tf.log")
        int8_path = work_dir / f"{onnx_path.stem}_{ONNX2TF_SUFFIX['int8']}.tflite"
        int8_path.write_bytes(model)
        int8_path.with_suffix(".json").write_text(json.dumps(info))
    for p in precisions:
        path = work_dir / f"{onnx_path.stem}_{ONNX2TF_SUFFIX[p]}.tflite"
        if not path.is_file():
            raise TFLiteConversionError(f"onnx2tf did not write the {p} model ({path.name}) for {onnx_path.name}")
        out[p] = path
    return out


def quantize_int8(
    saved_model: str | os.PathLike,
    calibration: Mapping[str, np.ndarray],
    image_inputs: Sequence[str] = ("raw",),
    log_path: str | os.PathLike | None = None,
) -> tuple[bytes, dict[str, Any]]:
    """int8 weights and activations with float32 I/O, keeping linear-light ops (upstream of ``POW``) in float.

    Args:
        saved_model: folder holding onnx2tf's SavedModel (``saved_model.pb``).
        calibration: input name -> representative samples in the ONNX layout (NCHW images).
        image_inputs: inputs to transpose to NHWC.
        log_path: where TensorFlow's console output goes (default: discarded into ``saved_model``).

    Returns:
        (the .tflite flatbuffer, ``{"float_ops": n, "float_op_types": {...}, "rule": ...}``).
    """
    import tensorflow as tf

    saved_model = Path(saved_model)
    n = int(next(iter(calibration.values())).shape[0])

    def dataset():
        for i in range(n):
            yield {
                k: np.ascontiguousarray((v[i : i + 1].transpose(0, 2, 3, 1) if k in image_inputs else v[i : i + 1]), np.float32)
                for k, v in calibration.items()
            }

    with quiet_native_output(log_path or saved_model / "quantize.log"):
        float_model = tf.lite.TFLiteConverter.from_saved_model(str(saved_model)).convert()
        keep_float = linear_light_ops(float_model)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = dataset
        if keep_float:
            options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=sorted(keep_float))
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=dataset, debug_options=options
            )
            model = debugger.get_nondebug_quantized_model()
        else:
            model = converter.convert()
    kinds: dict[str, int] = {}
    for kind in keep_float.values():
        kinds[kind] = kinds.get(kind, 0) + 1
    info = {"rule": "ops upstream of the display gamma (POW) stay float32", "float_ops": len(keep_float),
            "float_op_types": dict(sorted(kinds.items()))}
    return bytes(model), info


def linear_light_ops(model: bytes) -> dict[str, str]:
    """Output tensor name -> op type of every op upstream of a ``POW`` in a float .tflite graph."""
    from ai_edge_litert import schema_py_generated as schema

    codes = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    m = schema.Model.GetRootAsModel(model, 0)
    graph = m.Subgraphs(0)
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        kind = codes.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        ops.append((kind, [op.Inputs(j) for j in range(op.InputsLength()) if op.Inputs(j) >= 0], op.Outputs(0)))
    producer = {out: i for i, (_, _, out) in enumerate(ops)}
    stack = [i for i, (kind, _, _) in enumerate(ops) if kind == "POW"]
    upstream: set[int] = set()
    while stack:
        for t in ops[stack.pop()][1]:
            p = producer.get(t)
            if p is not None and p not in upstream:
                upstream.add(p)
                stack.append(p)
    return {graph.Tensors(ops[i][2]).Name().decode(): ops[i][0] for i in upstream}


@contextlib.contextmanager
def quiet_native_output(log_path: str | os.PathLike):
    """Send stdout and stderr, including TensorFlow's C++ logging on file descriptors 1 and 2, to ``log_path``."""
    import sys

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    python_text = io.StringIO()  # what Python code prints (onnx2tf's ERROR lines) goes to the log too
    with open(log_path, "ab") as log, contextlib.redirect_stdout(python_text), contextlib.redirect_stderr(python_text):
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            log.write(python_text.getvalue().encode("utf-8", "replace"))


def last_error_line(log_path: str | os.PathLike) -> str | None:
    """The last ``ERROR:`` line onnx2tf printed into ``log_path`` (colour codes removed), or None."""
    import re

    try:
        text = Path(log_path).read_text(errors="replace")
    except OSError:
        return None
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", line).strip() for line in text.splitlines()]
    errors = [line.split("ERROR:", 1)[1].strip() for line in lines if "ERROR:" in line]
    errors = [e for e in errors if e]
    return errors[-1] if errors else None


# ------------------------------------------------------------------------------------------------ metadata


def embed_metadata(model: bytes, metadata: Mapping[str, Any]) -> bytes:
    """Return a copy of the .tflite flatbuffer ``model`` with ``metadata`` (JSON) under :data:`METADATA_NAME`.

    An existing ``mobileisp`` entry is replaced; other metadata entries (the converter's
    ``min_runtime_version``, ``CONVERSION_METADATA``) are kept.
    """
    import flatbuffers
    from ai_edge_litert import schema_py_generated as schema

    obj = schema.ModelT.InitFromObj(schema.Model.GetRootAsModel(model, 0))
    payload = np.frombuffer(json.dumps(metadata, sort_keys=True, default=str).encode("utf-8"), dtype=np.uint8)
    buffer = schema.BufferT()
    buffer.data = payload.copy()
    obj.buffers = list(obj.buffers or [])
    obj.metadata = [m for m in (obj.metadata or []) if _name(m.name) != METADATA_NAME]
    obj.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(obj.buffers) - 1
    obj.metadata.append(entry)
    builder = flatbuffers.Builder(len(model) + payload.size + 1024)
    builder.Finish(obj.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def read_metadata(model: bytes) -> dict[str, Any] | None:
    """The JSON stored by :func:`embed_metadata` in a .tflite flatbuffer, or None when there is none."""
    from ai_edge_litert import schema_py_generated as schema

    m = schema.Model.GetRootAsModel(model, 0)
    for i in range(m.MetadataLength()):
        entry = m.Metadata(i)
        if _name(entry.Name()) == METADATA_NAME:
            data = m.Buffers(entry.Buffer()).DataAsNumpy()
            return json.loads(bytes(data).decode("utf-8"))
    return None


def _name(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


# ------------------------------------------------------------------------------------------------ runner


class TFLiteRunner:
    """Runs a .tflite with the LiteRT interpreter (XNNPACK), taking and returning NCHW float32 arrays.

    The runner owns the layout and quantization at the boundary: 4-D inputs are transposed NCHW -> NHWC,
    int8/uint8 inputs are quantized with the tensor's (scale, zero point), int outputs dequantized, and a
    4-D output transposed back to NCHW.

    Args:
        model: path of a .tflite file, or its bytes.
        threads: interpreter threads (None: 1, the interpreter's own default).
    """

    def __init__(self, model: str | os.PathLike | bytes, threads: int | None = None):
        from ai_edge_litert.interpreter import Interpreter

        content = model if isinstance(model, (bytes, bytearray)) else Path(model).read_bytes()
        self.interpreter = Interpreter(model_content=bytes(content), num_threads=threads or 1)
        self.interpreter.allocate_tensors()
        self.inputs = self.interpreter.get_input_details()
        self.outputs = self.interpreter.get_output_details()

    def input_index(self, name: str) -> dict[str, Any]:
        """Details of the input tensor called ``name`` (onnx2tf may prefix or suffix the ONNX name)."""
        exact = [d for d in self.inputs if d["name"] == name]
        loose = [d for d in self.inputs if _bare(d["name"]) == name]
        found = exact or loose
        if len(found) != 1:
            raise MobileISPError(f"the .tflite has no input named {name!r} (inputs: {[d['name'] for d in self.inputs]})")
        return found[0]

    def set_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Copy NCHW/metadata arrays into the interpreter's input tensors (transposed and quantized as needed)."""
        if len(inputs) != len(self.inputs):
            raise MobileISPError(f"the .tflite takes {len(self.inputs)} inputs, got {len(inputs)}: {sorted(inputs)}")
        for name, value in inputs.items():
            detail = self.input_index(name)
            x = np.asarray(value, dtype=np.float32)
            if x.ndim == 4:
                x = x.transpose(0, 2, 3, 1)
            if tuple(x.shape) != tuple(detail["shape"]):
                raise MobileISPError(
                    f"input {name!r}: the .tflite expects shape {tuple(detail['shape'])} (NHWC), got {tuple(x.shape)}"
                )
            self.interpreter.set_tensor(detail["index"], quantize(x, detail))

    def invoke(self) -> None:
        self.interpreter.invoke()

    def get_output(self) -> np.ndarray:
        """The (first) output as float32 NCHW: (N, 3, H, W) sRGB, or (N, 4, H/2, W/2) packed RAW (inverse).

        onnx2tf normally emits NHWC (N, H, W, C); where its layout inference keeps NCHW the output is
        already (N, C, H, W). The colour axis (size 3, or 4 for packed RAW) tells which.
        """
        detail = self.outputs[0]
        y = dequantize(self.interpreter.get_tensor(detail["index"]), detail)
        if y.ndim == 4 and y.shape[-1] in (3, 4) and y.shape[1] not in (3, 4):
            y = y.transpose(0, 3, 1, 2)
        return y

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run one batch. A batch larger than the model's (1) is run sample by sample."""
        batch = int(np.asarray(next(iter(inputs.values()))).shape[0])
        model_batch = int(self.inputs[0]["shape"][0])
        if batch != model_batch and model_batch == 1:
            return np.concatenate([self({k: np.asarray(v)[i : i + 1] for k, v in inputs.items()}) for i in range(batch)])
        self.set_inputs(inputs)
        self.invoke()
        return self.get_output()

    def io_quantization(self) -> dict[str, Any]:
        """Per input/output: dtype and, for integer tensors, (scale, zero_point): what an NPU app needs."""
        out = {}
        for kind, details in (("inputs", self.inputs), ("outputs", self.outputs)):
            out[kind] = [
                {
                    "name": _bare(d["name"]),
                    "dtype": np.dtype(d["dtype"]).name,
                    "shape": [int(s) for s in d["shape"]],
                    "scale": float(d["quantization"][0]) if np.issubdtype(d["dtype"], np.integer) else None,
                    "zero_point": int(d["quantization"][1]) if np.issubdtype(d["dtype"], np.integer) else None,
                }
                for d in details
            ]
        return out


def _bare(name: str) -> str:
    """``serving_default_raw:0`` -> ``raw``: the ONNX input name inside onnx2tf/TF's tensor name."""
    name = name.split(":")[0]
    return name[len("serving_default_") :] if name.startswith("serving_default_") else name


def quantize(x: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """float32 -> the tensor's dtype: ``round(x / scale + zero_point)`` clipped, or unchanged for float tensors."""
    dtype = np.dtype(detail["dtype"])
    if not np.issubdtype(dtype, np.integer):
        return np.ascontiguousarray(x, dtype=dtype)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(y: np.ndarray, detail: Mapping[str, Any]) -> np.ndarray:
    """Integer tensor -> float32 ``scale * (q - zero_point)``; float tensors become float32."""
    if not np.issubdtype(np.dtype(detail["dtype"]), np.integer):
        return np.asarray(y, dtype=np.float32)
    scale, zero = detail["quantization"]
    return ((y.astype(np.float32) - zero) * scale).astype(np.float32)
