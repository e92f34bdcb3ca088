"""Export-friendly rewrites: each rewritten module matches the original within 1e-5 (float32)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.export import rewrite
from mobileisp.models import create_model, get_spec, list_models
from mobileisp.models.blocks import HaarDWT, HaarIWT

TOL = 1e-5


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max())


def test_strided_haar_dwt_matches_grouped_dwt():
    torch.manual_seed(0)
    x = torch.randn(2, 5, 12, 16)
    new = rewrite.StridedHaarDWT(5)
    assert new.groups == 1 and new.stride == (2, 2)
    assert _max_diff(new(x), HaarDWT(5)(x)) < TOL


@pytest.mark.parametrize("dcr", [True, False])
def test_depth_to_space_iwt_matches_grouped_transposed_conv(dcr):
    torch.manual_seed(1)
    x = torch.randn(2, 12, 6, 10)
    new = rewrite.DepthToSpaceHaarIWT(12, dcr=dcr)
    assert not any(isinstance(m, nn.ConvTranspose2d) for m in new.modules())
    assert _max_diff(new(x), HaarIWT(12)(x)) < TOL
    # and it still inverts the DWT
    y = torch.randn(1, 3, 8, 8)
    assert _max_diff(new(HaarDWT(3)(y)), y) < TOL


def test_depth_to_space_dcr_order_and_onnx_op(tmp_path):
    c, r, h, w = 3, 2, 4, 5
    x = torch.randn(1, c * r * r, h, w)
    y = rewrite.DepthToSpaceDCR(r)(x)
    # DCR: output [c, r*y + i, r*x + j] = input[(i*r + j)*C + c, y, x]
    expected = x.reshape(1, r, r, c, h, w).permute(0, 3, 4, 1, 5, 2).reshape(1, c, h * r, w * r)
    assert torch.equal(y, expected)
    import onnx

    path = tmp_path / "d2s.onnx"
    torch.onnx.export(rewrite.DepthToSpaceDCR(r), (x,), str(path), opset_version=17, dynamo=False)
    nodes = onnx.load(str(path)).graph.node
    assert [n.op_type for n in nodes] == ["DepthToSpace"]
    assert {a.name: a for a in nodes[0].attribute}["mode"].s == b"DCR"


def test_pixel_shuffle_after_conv_becomes_dcr():
    torch.manual_seed(2)
    seq = nn.Sequential(nn.Conv2d(4, 12, 3, padding=1), nn.PixelShuffle(2))
    x = torch.randn(1, 4, 6, 6)
    ref = seq(x)
    new = rewrite.export_friendly(nn.Sequential(seq), "tflite")
    assert isinstance(new[0][1], rewrite.DepthToSpaceDCR)
    assert _max_diff(new(x), ref) < TOL
    kept = rewrite.export_friendly(nn.Sequential(seq), "coreml")
    assert isinstance(kept[0][1], nn.PixelShuffle)


def test_same_pad_max_pool_matches_ceil_mode_and_exports_same_upper(tmp_path):
    x = torch.randn(1, 3, 8, 12) - 1.0  # negative everywhere: a zero pad would change the border maxima
    pool = rewrite.SamePadMaxPool(3, 2)
    assert torch.equal(pool(x), F.max_pool2d(x, 3, stride=2, ceil_mode=True))
    import onnx

    path = tmp_path / "pool.onnx"
    torch.onnx.export(pool, (x,), str(path), opset_version=17, dynamo=False)
    (node,) = onnx.load(str(path)).graph.node
    assert node.op_type == "MaxPool"
    assert {a.name: a for a in node.attribute}["auto_pad"].s == b"SAME_UPPER"


def test_split_conv_equals_conv_of_concat():
    torch.manual_seed(3)
    conv = nn.Conv2d(7, 5, 3, padding=1)
    a, b = torch.randn(1, 3, 9, 9), torch.randn(1, 4, 9, 9)
    split = rewrite.SplitConv2d(conv, (3, 4))
    assert _max_diff(split(a, b), conv(torch.cat([a, b], 1))) < TOL
    with pytest.raises(ValueError):
        rewrite.SplitConv2d(conv, (3, 3))


def test_liteisp_reorder_folded_into_head():
    torch.manual_seed(4)
    model = create_model("liteisp-mobile", weights=None)
    new = rewrite.export_friendly(model, "tflite")
    assert isinstance(new, rewrite.ExportLiteISPNet) and isinstance(new.reorder, nn.Identity)
    assert not any(isinstance(m, (HaarDWT, HaarIWT, nn.PixelShuffle)) for m in new.modules())
    x = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        assert _max_diff(new(x), model(x)) < TOL


def test_rewrite_leaves_the_original_untouched():
    torch.manual_seed(5)
    model = create_model("liteisp-mobile", weights=None)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    rewrite.export_friendly(model, "tflite")
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not isinstance(model.reorder, nn.Identity)


def test_cameranet_front_and_global_branch():
    from mobileisp.models.cameranet import CameraToXYZ, GlobalScaleBias

    torch.manual_seed(6)
    raw = torch.rand(2, 4, 8, 8)
    cm = torch.eye(3).expand(2, 3, 3) * 0.8 + 0.1 * torch.rand(2, 3, 3)
    wb = torch.tensor([[2.0, 1.0, 1.6], [1.5, 1.0, 2.2]])
    front = CameraToXYZ()
    assert _max_diff(rewrite._ExportCameraToXYZ(front)(raw, wb, cm), front(raw, wb, cm)) < TOL
    glob = GlobalScaleBias(6, 10, 5)
    feat, x = torch.randn(2, 6, 4, 4), torch.randn(2, 5, 4, 4)
    assert _max_diff(rewrite._ExportGlobalScaleBias(glob)(feat, x), glob(feat, x)) < TOL


def test_deepisp_split_convs_and_quadratic_head():
    torch.manual_seed(7)
    model = create_model("deepisp-lite", weights=None)
    with torch.no_grad():  # a non-identity colour bias so that its folding into the dense layer is exercised
        model.color.bias.add_(0.05 * torch.randn_like(model.color.bias))
    new = rewrite.export_friendly(model, "tflite")
    assert isinstance(new, rewrite.ExportDeepISP) and new.front.camera_frontend
    raw = torch.rand(2, 4, 48, 48)
    wb = torch.tensor([[2.0, 1.0, 1.6], [1.5, 1.0, 2.2]])
    cm = torch.tensor([[0.9, -0.3, -0.05], [-0.4, 1.2, 0.2], [-0.05, 0.1, 0.6]]).expand(2, 3, 3)
    with torch.no_grad():
        assert _max_diff(new(raw, wb, cm), model(raw, wb, cm)) < TOL


#: The published full-size networks (9-25 M parameters) take several seconds each: slow.
_FULL_SIZE = ("liteisp", "cameranet", "deepisp", "paramisp", "paramisp-inverse")
EXPORTABLE = [
    pytest.param(n, marks=pytest.mark.slow) if n in _FULL_SIZE else n for n in list_models() if get_spec(n).exportable
]


@pytest.mark.parametrize("name", EXPORTABLE)
@pytest.mark.parametrize("target", ["tflite", "coreml"])
def test_every_exportable_model_is_unchanged_by_its_rewrite(name, target):
    spec = get_spec(name)
    torch.manual_seed(8)
    model = create_model(name, weights=None)
    side = max(spec.min_size, spec.size_multiple, 16)
    side = -(-side // max(1, spec.size_multiple)) * max(1, spec.size_multiple)
    from mobileisp.data import heldout_set

    samples = heldout_set(1, 2 * side)
    raw = torch.as_tensor(spec.sample_input(samples[0]))[None]  # sRGB for an inverse model
    meta = spec.metadata_inputs({f: torch.as_tensor(samples[0][f])[None] for f in spec.metadata_sources})
    new = rewrite.export_friendly(model, target)
    with torch.no_grad():
        assert _max_diff(new(raw, **meta), model(raw, **meta)) < TOL


def test_unknown_target_is_rejected():
    with pytest.raises(ValueError, match="tflite, onnx, coreml"):
        rewrite.export_friendly(nn.Identity(), "tensorrt")
