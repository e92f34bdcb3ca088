"""CRISPnet: shapes and sizes, the linear WB branch, the global branch (XCiT vs a token-layout reference), spec."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import mobileisp.models.crispnet as crisp
from mobileisp.errors import ImageSizeError, ModelError
from mobileisp.models import get_spec
from mobileisp.models.cameranet import PARITY_FLOORS as CAMERANET_FLOORS
from mobileisp.models.complexity import count_parameters, gmacs_per_output_megapixel

WB = torch.tensor([[2.1, 1.0, 1.7]])


@pytest.fixture(autouse=True)
def _one_thread(_quiet_torch_threads):
    # the XCiT branch is many tiny ops: with 2 OpenMP threads on 2 busy cores each op waits on a barrier
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return crisp.CRISPnet().eval()


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_parameter_counts_and_cost(net):
    assert n_params(net) == 2_920_956
    assert n_params(net.glob) == 347_728  # lite XCiT (embed 64, 4 heads, depth 4, 2 class-attention layers)
    assert n_params(crisp.CRISPnet(global_branch="cnn")) == 3_182_828
    assert n_params(crisp.CRISPnet(global_branch=None)) == 2_573_228
    # the preset's cost per output megapixel at a 1024x1024 RAW (the global branch is fixed-size)
    assert gmacs_per_output_megapixel(net, get_spec("crispnet"), (1024, 1024)) == pytest.approx(12.31, abs=0.01)


@pytest.mark.parametrize("packed", [(32, 32), (32, 48)])
def test_output_shape_range_and_finite(net, packed):
    torch.manual_seed(1)
    raw = torch.rand(2, 4, *packed)
    with torch.no_grad():
        out = net(raw, white_balance=WB.expand(2, 3))
        second = net(raw[1:], white_balance=WB)
    assert out.shape == (2, 3, 2 * packed[0], 2 * packed[1])
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[1:], second, rtol=0, atol=1e-6)  # samples do not mix (CLS broadcast)
    # initialised at mid-grey with a small spread: inside [0, 1] before any training
    assert 0.4 < float(out.min()) and float(out.max()) < 0.6 and float(out.std()) > 1e-4


@pytest.mark.parametrize("shape", [(1, 4, 24, 32), (1, 4, 32, 40), (1, 3, 32, 32), (4, 32, 32)])
def test_bad_sizes_raise_image_size_error(net, shape):
    with pytest.raises(ImageSizeError, match="crispnet"):
        net(torch.rand(*shape), white_balance=WB)


def test_white_balance_input_is_checked(net):
    with pytest.raises(ModelError, match="white_balance"):
        net(torch.rand(1, 4, 16, 16))
    with pytest.raises(ModelError, match=r"\(N, 3\)"):
        net(torch.rand(1, 4, 16, 16), white_balance=torch.ones(1, 4))
    free = crisp.CRISPnet(wb_levels=0, global_branch=None).eval()
    assert free.wb is None and free(torch.rand(1, 4, 16, 16)).shape == (1, 3, 32, 32)


def test_gradients_reach_every_parameter():
    torch.manual_seed(2)
    model = crisp.CRISPnet().train()
    raw, wb = torch.rand(2, 4, 32, 32), torch.tensor([[2.0, 1.0, 1.5], [1.6, 1.0, 2.2]])
    F.mse_loss(model(raw, white_balance=wb), torch.rand(2, 3, 64, 64)).backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert missing == []


def test_wb_branch_is_affine_and_scales_start_near_one(net):
    torch.manual_seed(3)
    a, b = 1.0 + 2.0 * torch.rand(4, 3), 1.0 + 2.0 * torch.rand(4, 3)
    s_ab, s_a, s_b, s_0 = (net.wb_scales(w) for w in (a + b, a, b, torch.zeros(4, 3)))
    assert [s.shape for s in s_a] == [(4, 16, 1, 1), (4, 32, 1, 1), (4, 64, 1, 1)]  # levels 1-3
    for ab, x, y, z in zip(s_ab, s_a, s_b, s_0):
        torch.testing.assert_close(ab - x - y + z, torch.zeros_like(ab), rtol=0, atol=1e-5)
    # a non-linear map would fail this: doubling the offset from s(0) doubles the change
    torch.testing.assert_close(net.wb_scales(2 * a)[0] - s_0[0], 2 * (s_a[0] - s_0[0]), rtol=0, atol=1e-5)
    ones = net.wb_scales(torch.ones(1, 3))
    assert all(float((s - 1).abs().max()) < 0.5 for s in ones)


def test_wb_levels_follow_the_preset():
    assert crisp.CRISPnet(wb_levels=1, global_branch=None).wb_scales(WB)[0].shape == (1, 16, 1, 1)
    five = crisp.CRISPnet(wb_levels=5, global_branch=None).wb_scales(WB)
    assert [s.shape[1] for s in five] == [16, 32, 64, 128, 192]
    with pytest.raises(ModelError, match="wb_levels"):
        crisp.CRISPnet(wb_levels=6)


def test_white_balance_changes_the_output(net):
    torch.manual_seed(4)
    raw = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        a = net(raw, white_balance=WB)
        b = net(raw, white_balance=torch.tensor([[1.4, 1.0, 2.6]]))
        again = net(raw, white_balance=WB)
    assert torch.equal(a, again)
    assert float((a - b).abs().mean()) > 1e-4


def test_tiles_share_the_whole_frame_global_feature(net):
    torch.manual_seed(5)
    raw = torch.rand(1, 4, 64, 64)
    with torch.no_grad():
        full = net(raw, white_balance=WB)
        feat = net.global_features(raw)
        whole = net.reconstruct(raw, WB, feat)
        tile = net.reconstruct(raw[..., :32, :32], WB, feat)
        tile_own = net.reconstruct(raw[..., :32, :32], WB, net.global_features(raw[..., :32, :32]))
    assert feat.shape == (1, 192, 1, 1) and float((feat - 1).abs().max()) < 0.5  # F starts near 1
    torch.testing.assert_close(whole, full, rtol=0, atol=0)
    assert not torch.equal(tile, tile_own)  # a tile's own thumbnail gives a different F


@pytest.mark.parametrize("branch", ["cnn", None])
def test_global_branch_ablations_build(branch):
    torch.manual_seed(6)
    model = crisp.CRISPnet(global_branch=branch).eval()
    raw = torch.rand(1, 4, 32, 32)
    with torch.no_grad():
        out = model(raw, white_balance=WB)
        feat = model.global_features(raw)
    assert out.shape == (1, 3, 64, 64) and torch.isfinite(out).all()
    if branch is None:
        assert model.glob is None and feat is None
    else:
        assert isinstance(model.glob, crisp.CNNGlobal) and feat.shape == (1, 192, 1, 1)
        assert float((feat - 1).abs().max()) < 0.5
    with pytest.raises(ModelError, match="global branch"):
        crisp.CRISPnet(global_branch="swin")


def test_thumbnail_pools_then_resizes():
    torch.manual_seed(7)
    raw = torch.rand(2, 4, 192, 256)
    thumb = crisp.thumbnail(raw)
    assert thumb.shape == (2, 3, 96, 128)
    rgb = torch.stack([raw[:, 0], 0.5 * (raw[:, 1] + raw[:, 2]), raw[:, 3]], dim=1)
    blocks = rgb.reshape(2, 3, 96, 2, 128, 2).mean(dim=(3, 5))  # exact 2x2 block means
    torch.testing.assert_close(thumb, blocks, rtol=0, atol=1e-6)
    small = crisp.thumbnail(torch.full((1, 4, 16, 32), 0.25))  # upsampled to the fixed size
    assert small.shape == (1, 3, 96, 128)
    torch.testing.assert_close(small, torch.full_like(small, 0.25))


def test_depthwise_conv_matches_grouped_conv2d():
    torch.manual_seed(8)
    dw = crisp.DepthwiseConv3x3(6)
    ref = nn.Conv2d(6, 6, 3, padding=1, groups=6)
    ref.load_state_dict(dw.state_dict())
    x = torch.randn(2, 6, 7, 9)
    torch.testing.assert_close(dw(x), ref(x), rtol=0, atol=1e-6)
    torch.testing.assert_close(dw.shifted(x), ref(x), rtol=0, atol=1e-6)  # the form exported to ONNX


def _xca_reference(m: crisp.XCA, x: torch.Tensor) -> torch.Tensor:
    """timm ``xcit.XCA`` on (B, N, C) tokens with the module's weights (linear = 1x1 conv)."""
    b, c, h, w = x.shape
    tok = x.flatten(2).transpose(1, 2)  # (B, N, C)
    lin = lambda conv, t: F.linear(t, conv.weight[:, :, 0, 0], conv.bias)  # noqa: E731
    heads = m.heads
    q, k, v = (lin(conv, tok).reshape(b, -1, heads, c // heads).permute(0, 2, 3, 1) for conv in (m.q, m.k, m.v))
    q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
    attn = ((q @ k.transpose(-2, -1)) * m.temperature.reshape(heads, 1, 1)).softmax(dim=-1)
    out = (attn @ v).permute(0, 3, 1, 2).reshape(b, -1, c)
    return lin(m.proj, out).transpose(1, 2).reshape(b, c, h, w)


def _class_attention_reference(m: crisp.ClassAttentionBlock, cls: torch.Tensor, tokens: torch.Tensor):
    """timm ``xcit.ClassAttentionBlock`` (tokens_norm=True) on (B, 1 + N, C) tokens."""
    b, c, h, w = tokens.shape
    x = torch.cat([cls.flatten(2), tokens.flatten(2)], dim=2).transpose(1, 2)  # (B, 1 + N, C)
    ln = lambda norm, t: F.layer_norm(t, (c,), norm.weight.flatten(), norm.bias.flatten(), norm.eps)  # noqa: E731
    lin = lambda conv, t: F.linear(t, conv.weight[:, :, 0, 0], conv.bias)  # noqa: E731
    heads = m.head_sum.shape[0]
    d = c // heads
    xn = ln(m.norm1, x)
    q = lin(m.q, xn[:, :1]).reshape(b, 1, heads, d).permute(0, 2, 1, 3) * d ** -0.5
    k = lin(m.k, xn).reshape(b, -1, heads, d).permute(0, 2, 1, 3)
    v = lin(m.v, xn).reshape(b, -1, heads, d).permute(0, 2, 1, 3)
    x_cls = ((q @ k.transpose(-2, -1)).softmax(dim=-1) @ v).transpose(1, 2).reshape(b, 1, c)
    x = x + m.gamma1.flatten() * torch.cat([lin(m.proj, x_cls), xn[:, 1:]], dim=1)
    x = ln(m.norm2, x)
    mlp = lin(m.mlp.fc2, F.gelu(lin(m.mlp.fc1, x[:, :1]), approximate="tanh"))
    x = x + torch.cat([m.gamma2.flatten() * mlp, x[:, 1:]], dim=1)
    return x[:, :1].transpose(1, 2).reshape(b, c, 1, 1), x[:, 1:].transpose(1, 2).reshape(b, c, h, w)


def test_xca_matches_token_layout_reference():
    torch.manual_seed(9)
    m = crisp.XCA(32, 4)
    with torch.no_grad():
        m.temperature.copy_(torch.tensor([0.5, 1.0, 2.0, 3.0]).reshape(1, 4, 1, 1))
    x = torch.randn(2, 32, 6, 8)
    torch.testing.assert_close(m(x), _xca_reference(m, x), rtol=1e-4, atol=1e-5)


def test_class_attention_matches_token_layout_reference():
    torch.manual_seed(10)
    m = crisp.ClassAttentionBlock(32, 4)
    with torch.no_grad():
        for p in m.parameters():
            p.add_(0.1 * torch.randn_like(p))
    cls, tokens = torch.randn(2, 32, 1, 1), torch.randn(2, 32, 6, 8)
    got_cls, got_tok = m(cls, tokens)
    ref_cls, ref_tok = _class_attention_reference(m, cls, tokens)
    torch.testing.assert_close(got_cls, ref_cls, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(got_tok, ref_tok, rtol=1e-4, atol=1e-5)


def test_jit_trace_matches(net):
    torch.manual_seed(11)
    raw = torch.rand(1, 4, 32, 48)
    with torch.no_grad():
        traced = torch.jit.trace(net, (raw, WB), check_trace=False)
        torch.testing.assert_close(traced(raw, WB), net(raw, white_balance=WB), rtol=0, atol=1e-6)


def test_spec():
    spec = get_spec("crispnet")
    assert spec.family == "crispnet" and spec.metadata_fields == ("white_balance",)
    assert (spec.size_multiple, spec.min_size, spec.export_size, spec.scale) == (16, 16, (256, 256), 2)
    assert spec.parity_floors == CAMERANET_FLOORS and spec.weights == "crispnet"
    assert spec.loss == "mse" and spec.train_config["paper_loss"] == "mse"
    assert spec.train_config["optimizer"] == "adam" and spec.train_config["lr"] == 1e-4
    assert [s["data"] for s in spec.train_config["curriculum"]] == ["monitor", "real-world"]
    total, _ = count_parameters(crisp.CRISPnet())
    assert f"{total / 1e6:.2f}M" in spec.description
