"""One sweep over every registered model: the contract every network of the zoo keeps.

For each model: sRGB output of shape (N, 3, 2h, 2w) for packed input (N, 4, h, w) (an inverse model: packed
RAW (N, 4, h, w) for sRGB (N, 3, 2h, 2w)), finite; gradients reach
every trainable parameter; and for exportable models ``torch.jit.trace`` and ``torch.onnx.export`` succeed
with the ModelSpec's named inputs. The published full-size networks are marked slow (CI runs them).
"""

from __future__ import annotations

import pytest
import torch

from mobileisp.data import heldout_set
from mobileisp.models import create_model, get_spec, list_models

FULL_SIZE = ("liteisp", "cameranet", "deepisp", "paramisp", "paramisp-inverse")
MODELS = [pytest.param(n, marks=pytest.mark.slow) if n in FULL_SIZE else n for n in list_models()]


def _inputs(name: str, n: int = 2):
    spec = get_spec(name)
    side = max(spec.min_size, spec.size_multiple, 16)
    side = -(-side // max(1, spec.size_multiple)) * max(1, spec.size_multiple)
    samples = heldout_set(n, 2 * side)
    raw = torch.stack([torch.as_tensor(spec.sample_input(s)) for s in samples])  # the image input
    values = {f: torch.stack([torch.as_tensor(s[f]) for s in samples]) for f in spec.metadata_sources}
    return spec, raw, {k: torch.as_tensor(v).float() for k, v in spec.metadata_inputs(values).items()}


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_finite_and_gradients_reach_every_parameter(name):
    spec, raw, meta = _inputs(name)
    h, w = raw.shape[-2] // spec.input_scale, raw.shape[-1] // spec.input_scale  # packed size
    channels = spec.output.shape[1]
    torch.manual_seed(0)
    model = create_model(name, weights=None)
    if not spec.trainable:
        with torch.no_grad():
            out = model(raw, **meta)
        assert out.shape == (2, channels, spec.scale * h, spec.scale * w) and torch.isfinite(out).all()
        return
    model.eval()  # deterministic (no dropout); gradients flow the same way
    out = model(raw, **meta)
    assert out.shape == (2, channels, spec.scale * h, spec.scale * w)
    assert torch.isfinite(out).all()
    ((out - 0.5) ** 2).mean().backward()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    assert trainable
    unreached = [n for n, p in trainable if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not unreached, f"{name}: no gradient reaches {unreached[:5]}"
    # The squeeze-excitation MLPs of channel attention (LiteISPNet's ``ca.conv_du``: 4 hidden ReLU units) get
    # an exact zero when all their units are negative for this input at random init: connected (grad not
    # None, checked above) but silent. Every other tensor must receive a non-zero gradient.
    zero = [n for n, p in trainable if p.grad.abs().sum() == 0 and ".ca.conv_du." not in n]
    assert not zero, f"{name}: zero gradient for {zero[:5]}"


@pytest.mark.parametrize("name", [m for m in MODELS if get_spec(getattr(m, "values", [m])[0]).exportable])
def test_trace_and_onnx_export(name, tmp_path):
    import onnx

    from mobileisp.export.onnx import NamedInputs

    spec, raw, meta = _inputs(name, n=1)
    model = create_model(name, weights=None)
    wrapper = NamedInputs(model, spec.metadata_fields).eval()
    args = (raw, *(meta[f] for f in spec.metadata_fields))
    with torch.no_grad():
        traced = torch.jit.trace(wrapper, args, check_trace=False)
        torch.testing.assert_close(traced(*args), model(raw, **meta), atol=1e-5, rtol=1e-5)
    path = tmp_path / f"{name}.onnx"
    names = [t.name for t in spec.inputs]
    torch.onnx.export(wrapper, args, str(path), input_names=names, output_names=[spec.output.name], opset_version=17,
                      dynamo=False)
    graph = onnx.load(str(path)).graph
    assert [i.name for i in graph.input] == names and [o.name for o in graph.output] == [spec.output.name]
