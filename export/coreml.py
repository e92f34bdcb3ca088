"""Core ML: torch -> coremltools mlprogram (.mlpackage), weight and activation quantization, and validation.

- ``fp16``: ``torch.jit.trace`` -> ``ct.convert(convert_to="mlprogram", iOS16)``, fp16 compute; inputs and the
  output are float32 ``TensorType`` (NCHW): RAW never goes through an 8-bit ``ImageType``.
- ``w8``: the fp16 model with ``ct.optimize.coreml.linear_quantize_weights`` (int8, symmetric, per output
  channel, weights of at least :data:`WEIGHT_THRESHOLD` elements; smaller tensors stay fp16).
- ``w8a8``: activations are calibrated in PyTorch with ``coremltools.optimize.torch``'s ``LinearQuantizer``
  (``quantization_scheme="affine"``: int8 weights and activations with zero points, which keeps the full
  8 bits for the non-negative and offset activations of these networks (symmetric ranges gave DeepISP-lite
  26.6 dB against 33.1 dB); observers only, milestones ``[0, 1, 1, 0]``, one forward pass of the whole
  representative set as a batch), on the same representative RAW as TFLite; the fake-quantized network is
  traced and converted with iOS17, where the quantize/dequantize pairs become int8 ops. Core ML's own ``linear_quantize_activations`` calibrates by
  running ``predict``, which needs macOS.

``LinearQuantizer`` traces with ``torch.fx``, which cannot follow the networks' Python shape checks; the
network is first traced by :func:`concrete_fx_trace`, which runs the example input alongside and resolves
those checks for the export size.

Core ML ``predict`` exists only on macOS. Elsewhere :func:`simulate` gives the torch-side simulation of the
same quantization (fp16: the network in float16; w8: int8 fake-quantized weights, float16 compute; w8a8: the
calibrated ``LinearQuantizer`` network), which validation reports and labels as a simulation.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import platform
import warnings
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import fx, nn

from mobileisp.errors import MobileISPError

METADATA_KEY = "mobileisp"
#: coremltools' default: weight tensors with fewer elements stay in fp16.
WEIGHT_THRESHOLD = 2048
DEPLOYMENT = {"fp16": "iOS16", "w8": "iOS16", "w8a8": "iOS17"}


class CoreMLConversionError(MobileISPError):
    """coremltools could not convert or quantize the network."""


def predict_available() -> bool:
    """True where Core ML ``predict`` can run (macOS with coremltools' native library)."""
    if platform.system() != "Darwin":
        return False
    try:
        from coremltools import libcoremlpython  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _quiet():
    """Silence coremltools' progress bars, version warnings and logging during conversion."""
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        warnings.simplefilter("ignore")
        level = logging.getLogger("coremltools").level
        logging.getLogger("coremltools").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("coremltools").setLevel(level)


def convert(
    model: nn.Module,
    inputs: Mapping[str, torch.Tensor],
    precision: str,
    calibration: Mapping[str, torch.Tensor] | None = None,
    quantized: nn.Module | None = None,
    output_name: str = "srgb",
):
    """Convert ``model`` (export-friendly, eval) to an in-memory Core ML mlprogram of ``precision``.

    Args:
        model: network called as ``model(raw, **metadata)``.
        inputs: example inputs (batch 1), names in ModelSpec order.
        precision: ``fp16``, ``w8`` or ``w8a8``.
        calibration: representative inputs (N samples) for ``w8a8``.
        quantized: for ``w8a8``, an already calibrated :func:`quantize_activations` module to convert
            (so that the exporter validates against exactly the quantization it converts).

    Returns:
        ``coremltools.models.MLModel``.

    Raises:
        CoreMLConversionError: tracing, conversion or quantization failed.
    """
    import coremltools as ct

    from mobileisp.export.onnx import NamedInputs

    if precision not in DEPLOYMENT:
        raise ValueError(f"no Core ML precision {precision!r}")
    wrapped = NamedInputs(model, list(inputs)[1:]).eval()
    example = tuple(inputs.values())
    try:
        with _quiet():
            if precision == "w8a8" and quantized is not None:
                wrapped = quantized
            elif precision == "w8a8":
                if calibration is None:
                    raise ValueError("w8a8 needs calibration data")
                wrapped = quantize_activations(wrapped, example, calibration)
            with torch.no_grad():
                traced = torch.jit.trace(wrapped, example)
            mlmodel = ct.convert(
                traced,
                inputs=[ct.TensorType(name=n, shape=tuple(t.shape), dtype=np.float32) for n, t in inputs.items()],
                outputs=[ct.TensorType(name=output_name, dtype=np.float32)],
                convert_to="mlprogram",
                minimum_deployment_target=getattr(ct.target, DEPLOYMENT[precision]),
                compute_precision=ct.precision.FLOAT16,
            )
            if precision == "w8":
                mlmodel = quantize_weights(mlmodel)
    except MobileISPError:
        raise
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise CoreMLConversionError(f"coremltools could not convert {type(model).__name__} to {precision}: {first}") from None
    return mlmodel


def quantize_weights(mlmodel):
    """int8 linear symmetric per-channel weight quantization of an mlprogram (weights >= WEIGHT_THRESHOLD)."""
    import coremltools.optimize.coreml as cto

    config = cto.OptimizationConfig(
        global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric", dtype="int8", weight_threshold=WEIGHT_THRESHOLD)
    )
    return cto.linear_quantize_weights(mlmodel, config)


def quantize_activations(model: nn.Module, example: tuple[torch.Tensor, ...], calibration: Mapping[str, torch.Tensor]) -> nn.Module:
    """W8A8 in PyTorch: ``LinearQuantizer`` observers see ``calibration`` (one batch), then it is finalized.

    Args:
        model: positional-input network (``NamedInputs``), eval.
        example: batch-1 example inputs (fix the traced shapes).
        calibration: name -> (N, ...) representative inputs, same order as ``example``.

    Returns:
        The finalized fake-quantized module (an ``fx.GraphModule``), eval mode: its output is the torch-side
        simulation of the w8a8 Core ML model.

    Submodules the network lists in ``float_prefix`` (its linear-light part, before the display gamma) get no
    quantization config: their layers (``call_module`` nodes) stay float (fp16 in Core ML), as TFLite int8 keeps
    them float32. The graph is still traced through them, and torch.ao re-traces it in ``prepare``, so they cannot
    be opaque leaves; functional ops inside them and the graph inputs (metadata included) are quantized like the
    rest, which is why ParamISP's w8a8 (per-image colour matrix and exponents as 8-bit activations) misses its
    floor.
    """
    from coremltools.optimize.torch.quantization import (
        LinearQuantizer,
        LinearQuantizerConfig,
        ModuleLinearQuantizerConfig,
    )

    inner = getattr(model, "model", model)
    prefix = "model." if inner is not model else ""
    keep_float = [prefix + name for name in getattr(inner, "float_prefix", ())]
    graph = concrete_fx_trace(model, example)
    config = LinearQuantizerConfig(
        global_config=ModuleLinearQuantizerConfig(quantization_scheme="affine", milestones=[0, 1, 1, 0]),
        module_name_configs={name: None for name in keep_float},
    )
    quantizer = LinearQuantizer(graph, config)
    prepared = quantizer.prepare(example_inputs=example, inplace=False)
    names = list(calibration)
    prepared.train()  # observers update in train mode; milestones keep batch-norm/QAT off
    with torch.no_grad():
        # one batch of all samples: the moving-average min/max observers start from the first batch's
        # extremes, so feeding samples one at a time would leave the ranges close to the first sample's
        quantizer.step()
        prepared(*(calibration[k] for k in names))
    final = quantizer.finalize(inplace=False)
    return final.eval()


# ------------------------------------------------------------------------------------------------ fx tracing


class _ConcreteTracer(fx.Tracer):
    """An FX tracer that evaluates every node on real example inputs while tracing.

    Python control flow on tensor shapes (``if h % 8: raise ...``) then resolves for the example's shapes
    instead of failing; the traced graph is valid for those shapes only, which is what a static-shape
    export needs.
    """

    def __init__(self, example: tuple[torch.Tensor, ...], leaves: tuple[str, ...] = ()):
        super().__init__()
        self._example = list(example)
        self._values: dict[fx.Node, Any] = {}
        self._leaves = set(leaves)

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:  # noqa: D102
        return module_qualified_name in self._leaves or super().is_leaf_module(m, module_qualified_name)

    def trace(self, root, concrete_args=None):  # noqa: D102
        self._root_module = root
        self._values = {}
        self._placeholders = 0
        return super().trace(root, concrete_args)

    def create_proxy(self, kind, target, args, kwargs, name=None, type_expr=None, proxy_factory_fn=None):  # noqa: D102
        from torch.fx._symbolic_trace import _orig_module_call

        proxy = super().create_proxy(kind, target, args, kwargs, name, type_expr, proxy_factory_fn)

        def value(a):
            return fx.node.map_aggregate(a, lambda x: self._values[x.node] if isinstance(x, fx.Proxy) else x)

        with torch.no_grad():
            if kind == "placeholder":
                v = self._example[self._placeholders] if self._placeholders < len(self._example) else None
                self._placeholders += 1
            elif kind == "get_attr":
                v = _fetch(self._root_module, target)
            elif kind == "call_function":
                v = target(*value(args), **value(kwargs))
            elif kind == "call_method":
                a = value(args)
                v = getattr(a[0], target)(*a[1:], **value(kwargs))
            elif kind == "call_module":
                v = _orig_module_call(self._root_module.get_submodule(target), *value(args), **value(kwargs))
            else:
                v = None
        self._values[proxy.node] = v
        return proxy

    def proxy(self, node: fx.Node) -> fx.Proxy:  # noqa: D102
        return _ConcreteProxy(node, self)

    def to_bool(self, obj):  # noqa: D102
        return bool(self._values[obj.node])

    def iter(self, obj):  # noqa: D102  (unpacking a shape: one getitem node per element)
        return iter([obj[i] for i in range(len(self._values[obj.node]))])


class _ConcreteProxy(fx.Proxy):
    """A proxy that converts to a Python number through the traced example (``int(x.shape[-1])``)."""

    def __int__(self) -> int:
        return int(self.tracer._values[self.node])

    def __index__(self) -> int:
        return int(self.tracer._values[self.node])

    def __float__(self) -> float:
        return float(self.tracer._values[self.node])

    def __len__(self) -> int:
        return len(self.tracer._values[self.node])


def _fetch(root: nn.Module, target: str) -> Any:
    """``root.<target>`` without triggering FX's patched ``Module.__getattr__``."""
    obj: Any = root
    for attr in target.split("."):
        if isinstance(obj, nn.Module):
            d = obj.__dict__
            for store in ("_parameters", "_buffers", "_modules"):
                if attr in d[store]:
                    obj = d[store][attr]
                    break
            else:
                obj = d[attr] if attr in d else object.__getattribute__(obj, attr)
        else:
            obj = getattr(obj, attr)
    return obj


def concrete_fx_trace(model: nn.Module, example: tuple[torch.Tensor, ...], leaves=()) -> fx.GraphModule:
    """``torch.fx`` graph of ``model`` specialised to ``example``'s shapes (see :class:`_ConcreteTracer`);
    submodules named in ``leaves`` stay single ``call_module`` nodes."""
    tracer = _ConcreteTracer(example, tuple(leaves))
    unused = model.unused() if hasattr(model, "unused") else None
    graph = tracer.trace(model, concrete_args=unused)
    gm = fx.GraphModule(model, graph)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm.eval()


# ------------------------------------------------------------------------------------------------ simulation


def simulate(model: nn.Module, precision: str, calibration: Mapping[str, torch.Tensor] | None = None,
             example: Mapping[str, torch.Tensor] | None = None) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """Torch-side simulation of a Core ML precision: a function NCHW inputs -> NCHW float32 output.

    Args:
        model: the export-friendly network (``model(raw, **metadata)``).
        precision: ``fp16``, ``w8`` or ``w8a8``.
        calibration: representative inputs (``w8a8``).
        example: batch-1 example inputs fixing the traced shapes (``w8a8``).
    """
    from mobileisp.export.onnx import NamedInputs

    if precision == "w8a8":
        if calibration is None or example is None:
            raise ValueError("simulating w8a8 needs calibration data and an example input")
        names = list(example)
        with _quiet():
            sim = quantize_activations(NamedInputs(model, names[1:]).eval(), tuple(example.values()), calibration)
        return _runner(sim, names, torch.float32)
    sim = copy.deepcopy(model).eval()
    if precision == "w8":
        fake_quantize_weights(sim)
    elif precision != "fp16":
        raise ValueError(f"no Core ML precision {precision!r}")
    return _runner(NamedInputs(sim.half(), ()), None, torch.float16)


def fake_quantize_weights(model: nn.Module, threshold: int = WEIGHT_THRESHOLD) -> int:
    """Round conv/linear weights with >= ``threshold`` elements to int8 symmetric per output channel, in place.

    Mirrors ``linear_quantize_weights(mode="linear_symmetric")``: scale = max|w| / 127 per output channel,
    ``w = round(w / scale) * scale``. Returns the number of tensors quantized.
    """
    count = 0
    with torch.no_grad():
        for m in model.modules():
            w = getattr(m, "weight", None)
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and isinstance(w, torch.Tensor) and w.numel() >= threshold:
                axis = 1 if isinstance(m, nn.ConvTranspose2d) else 0
                dims = tuple(d for d in range(w.dim()) if d != axis)
                scale = w.abs().amax(dim=dims, keepdim=True).clamp_min(1e-12) / 127.0
                w.copy_(torch.round(w / scale).clamp(-127, 127) * scale)
                count += 1
    return count


def _runner(module: nn.Module, names: list[str] | None, dtype: torch.dtype):
    def run(inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        tensors = [torch.as_tensor(np.asarray(v), dtype=dtype) for v in inputs.values()]
        with torch.no_grad():
            if names is None:  # NamedInputs with keyword metadata
                raw, meta = tensors[0], dict(zip(list(inputs)[1:], tensors[1:]))
                out = module.model(raw, **meta)
            else:
                outs = [module(*(t[i : i + 1] for t in tensors)) for i in range(tensors[0].shape[0])]
                out = torch.cat(outs)
        return out.float().numpy()

    return run


# ------------------------------------------------------------------------------------------------ files


def set_metadata(mlmodel, metadata: Mapping[str, Any]) -> None:
    """Store the JSON under ``user_defined_metadata["mobileisp"]`` (+ flat model/precision keys, description)."""
    mlmodel.user_defined_metadata[METADATA_KEY] = json.dumps(metadata, sort_keys=True, default=str)
    mlmodel.user_defined_metadata["mobileisp.model"] = str(metadata.get("model"))
    mlmodel.user_defined_metadata["mobileisp.precision"] = str(metadata.get("precision"))
    mlmodel.short_description = f"mobileisp {metadata.get('model')} ({metadata.get('precision')}): packed RGGB RAW -> sRGB"
    mlmodel.version = str(metadata.get("versions", {}).get("mobileisp", ""))


def read_metadata(path: str | Path) -> dict[str, Any] | None:
    """The mobileisp JSON of an .mlpackage (read from its spec; no Core ML runtime needed)."""
    import coremltools as ct

    with _quiet():
        spec = ct.utils.load_spec(str(path))
    blob = spec.description.metadata.userDefined.get(METADATA_KEY)
    return json.loads(blob) if blob else None


class CoreMLRunner:
    """Core ML ``predict`` on macOS, NCHW float32 in and out.

    Raises:
        MobileISPError: not on macOS (use :func:`simulate` there).
    """

    def __init__(self, path: str | Path, compute_units: str = "ALL"):
        if not predict_available():
            raise MobileISPError("Core ML predict needs macOS; on this platform validation reports a torch simulation")
        import coremltools as ct

        self.model = ct.models.MLModel(str(path), compute_units=getattr(ct.ComputeUnit, compute_units))

    def __call__(self, inputs: Mapping[str, np.ndarray]) -> np.ndarray:
        n = int(np.asarray(next(iter(inputs.values()))).shape[0])
        outs = []
        for i in range(n):
            feed = {k: np.asarray(v, dtype=np.float32)[i : i + 1] for k, v in inputs.items()}
            result = self.model.predict(feed)  # one output: "srgb" ("raw" for an inverse model)
            outs.append(np.asarray(next(iter(result.values())), dtype=np.float32))
        return np.concatenate(outs)
