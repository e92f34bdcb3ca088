"""ONNX: the float32 graph on the way to TFLite (and an artefact of its own), metadata and an onnxruntime runner.

``torch.onnx.export`` (TorchScript-based exporter, ``dynamo=False``: it honours the custom ``symbolic`` of
:class:`~mobileisp.export.rewrite.DepthToSpaceDCR` and writes static shapes), opset 17, named inputs in
ModelSpec order (``raw``, then metadata fields) and one output ``srgb``, then onnx-simplifier folds the
shape arithmetic torch emits around padding into constants. Metadata is a JSON string in the model's
``metadata_props`` under ``"mobileisp"``.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch import nn

from mobileisp.errors import MobileISPError

OPSET = 17
METADATA_KEY = "mobileisp"


class ONNXExportError(MobileISPError):
    """torch.onnx could not export the network, or the simplified graph does not check."""


class NamedInputs(nn.Module):
    """Positional wrapper: ``forward(raw, m0, m1, ...)`` -> ``model(raw, <field 0>=m0, ...)``.

    Exporters pass inputs positionally; registered networks take metadata as keyword arguments. The
    parameters are explicit (not ``*args``) so that ``torch.fx`` can trace the wrapper too; unused ones are None.
    """

    MAX_FIELDS = 6

    def __init__(self, model: nn.Module, metadata_fields: Sequence[str] = ()):
        super().__init__()
        if len(metadata_fields) > self.MAX_FIELDS:
            raise ValueError(f"at most {self.MAX_FIELDS} metadata inputs")
        self.model = model
        self.metadata_fields = tuple(metadata_fields)

    def forward(self, raw: torch.Tensor, m0=None, m1=None, m2=None, m3=None, m4=None, m5=None) -> torch.Tensor:
        values = (m0, m1, m2, m3, m4, m5)[: len(self.metadata_fields)]
        return self.model(raw, **dict(zip(self.metadata_fields, values)))

    def unused(self) -> dict[str, None]:
        """``concrete_args`` for ``torch.fx``: the parameters this wrapper does not use."""
        return {f"m{i}": None for i in range(len(self.metadata_fields), self.MAX_FIELDS)}


def export(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    path: str | os.PathLike,
    opset: int = OPSET,
    simplify: bool = True,
    output_name: str = "srgb",
) -> Path:
    """Export ``model`` (called as ``model(raw, **metadata)``) to an ONNX file with static shapes.

    Args:
        model: network in eval mode (export-friendly rewrites already applied).
        inputs: example inputs, ``raw`` first, names as in the ModelSpec.
        path: destination .onnx (overwritten: it is a working file; the pipeline handles atomicity).
        opset: ONNX opset (>= 17).
        simplify: run onnx-simplifier (constant folding of shape arithmetic).
        output_name: the output's name (``srgb``; ``raw`` for an inverse model).

    Raises:
        ONNXExportError: the exporter or the checker failed.
    """
    import onnx

    path = Path(path)
    names = list(inputs)
    if output_name in names:  # torch.onnx would silently rename the input ("srgb.1")
        raise ValueError(f"output name {output_name!r} is also an input name")
    wrapped = NamedInputs(model, names[1:]).eval()
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, tuple(inputs.values()), str(path), input_names=names, output_names=[output_name],
                opset_version=opset, dynamo=False, do_constant_folding=True,
            )
    except Exception as e:  # torch.onnx raises assorted errors for unsupported ops
        raise ONNXExportError(f"torch.onnx could not export {type(model).__name__}: {_first_line(e)}") from None
    proto = onnx.load(str(path))
    if simplify:
        proto = _simplify(proto, path)
    onnx.checker.check_model(proto)
    onnx.save(proto, str(path))
    return path


def _simplify(proto, path: Path):
    from onnxsim import simplify

    try:
        simplified, ok = simplify(proto)
    except Exception as e:  # onnxsim failures are not fatal for correctness, but say so
        raise ONNXExportError(f"onnx-simplifier failed on {path.name}: {_first_line(e)}") from None
    if not ok:
        raise ONNXExportError(f"onnx-simplifier could not validate the simplified {path.name}")
    return simplified


def _first_line(e: BaseException) -> str:
    lines = [ln for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0] if lines else type(e).__name__


# ------------------------------------------------------------------------------------------------ metadata


def set_metadata(path: str | os.PathLike, metadata: Mapping[str, Any], out: str | os.PathLike | None = None) -> Path:
    """Write ``metadata`` as JSON into ``metadata_props["mobileisp"]`` of ``path`` (saved to ``out`` or in place)."""
    import onnx

    proto = onnx.load(str(path))
    props = [p for p in proto.metadata_props if p.key != METADATA_KEY]
    del proto.metadata_props[:]
    proto.metadata_props.extend(props)
    entry = proto.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(metadata, sort_keys=True, default=str)
    dest = Path(out) if out is not None else Path(path)
    onnx.save(proto, str(dest))
    return dest


def read_metadata(path: str | os.PathLike) -> dict[str, Any] | None:
    """The mobileisp JSON of an ONNX file, or None."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for p in proto.metadata_props:
        if p.key == METADATA_KEY:
            return json.loads(p.value)
    return None


# ------------------------------------------------------------------------------------------------ runner


class ONNXRunner:
    """onnxruntime (CPU) session taking and returning NCHW float32 arrays by input name.

    Args:
        path: the .onnx file.
        threads: intra-op threads (None: onnxruntime's default).
    """

    def __init__(self, path: str | os.PathLike, threads: int | None = None):
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.input_names = [i.name for i in self.session.get_inputs()]
        self.batch = self.session.get_inputs()[0].shape[0]

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        missing = [n for n in self.input_names if n not in inputs]
        if missing:
            raise MobileISPError(f"the ONNX model needs inputs {missing}")
        feed = {n: np.ascontiguousarray(inputs[n], dtype=np.float32) for n in self.input_names}
        n = int(next(iter(feed.values())).shape[0])
        if isinstance(self.batch, int) and n != self.batch and self.batch == 1:
            return np.concatenate([self({k: v[i : i + 1] for k, v in feed.items()}) for i in range(n)])
        return self.session.run(None, feed)[0]
