"""LiteISPNet: published size and keys, Haar blocks, the mobile preset, and the authors' checkpoint importer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mobileisp.errors import ImageSizeError, ModelError, RawFormatError
from mobileisp.models import create_model, get_spec
from mobileisp.models.blocks import HaarDWT, HaarIWT
from mobileisp.models.complexity import count_parameters, gmacs_per_output_megapixel
from mobileisp.models.importers import authors_input_to_packed, import_liteisp_state_dict
from mobileisp.models.liteisp import LiteISPNet, coordinate_grid

# Counted by instantiating the authors' class (cszhilu1998/RAW-to-sRGB, --pre_ispnet_coord False).
AUTHORS_TOTAL = 9_047_815
AUTHORS_FIXED_HAAR = 8_192
AUTHORS_KEYS = 302


@pytest.fixture(scope="module")
def full():
    torch.manual_seed(0)
    return create_model("liteisp", weights=None)


# ------------------------------------------------------------------------------------- size and structure


def test_published_parameter_count_and_keys(full):
    total, trainable = count_parameters(full)
    assert abs(total - AUTHORS_TOTAL) / AUTHORS_TOTAL < 0.01
    assert total == AUTHORS_TOTAL
    assert total - trainable == AUTHORS_FIXED_HAAR
    sd = full.state_dict()
    assert len(sd) == AUTHORS_KEYS
    assert tuple(sd["head.weight"].shape) == (64, 4, 3, 3)
    assert tuple(sd["down1.0.weight"].shape) == (66, 66, 3, 3)  # head features + 2 coordinate channels
    assert tuple(sd["down1.3.weight"].shape) == (256, 1, 2, 2)  # Haar DWT, fixed
    assert tuple(sd["down2.1.rg.0.res.0.weight"].shape) == (64, 64, 3, 3)
    assert tuple(sd["down2.1.rg.0.ca.conv_du.0.weight"].shape) == (4, 64, 1, 1)
    assert tuple(sd["up3.0.weight"].shape) == (512, 1, 2, 2)  # Haar IWT, fixed
    assert tuple(sd["tail.2.weight"].shape) == (3, 64, 3, 3)


def test_class_defaults_have_no_coordinates_and_stay_within_one_percent():
    model = LiteISPNet()
    total, trainable = count_parameters(model)
    assert total == 8_986_243  # down1 is 64 wide instead of 66
    assert abs(total - AUTHORS_TOTAL) / AUTHORS_TOTAL < 0.01
    assert total - trainable == AUTHORS_FIXED_HAAR
    assert len(model.state_dict()) == 300


def test_output_shape(full):
    with torch.no_grad():
        out = full(torch.rand(1, 4, 32, 32))
    assert out.shape == (1, 3, 64, 64)
    assert torch.isfinite(out).all()


def test_packed_size_must_be_a_multiple_of_8(full):
    with pytest.raises(ImageSizeError, match="divisible by 8"):
        full(torch.rand(1, 4, 20, 32))


def test_gamma_is_safe_at_zero_and_below():
    torch.manual_seed(0)
    model = LiteISPNet(ch1=8, ch2=8, ch3=8, n_blocks=1, reduction=4)
    raw = torch.zeros(1, 4, 16, 16)
    raw[0, 0, :4] = -0.01  # negative after black-level noise
    raw[0, 1, 4:8] = 1e-12
    raw.requires_grad_(True)
    out = model(raw)
    out.sum().backward()
    assert torch.isfinite(out).all()
    assert torch.isfinite(raw.grad).all()


def test_coordinate_grid_matches_the_authors_linspace():
    h, w = 6, 10
    grid = coordinate_grid(torch.zeros(2, 3, h, w))
    xs = np.linspace(-1 + 1 / w, 1 - 1 / w, w)
    ys = np.linspace(-1 + 1 / h, 1 - 1 / h, h)
    assert grid.shape == (2, 2, h, w)
    np.testing.assert_allclose(grid[1, 0].numpy(), np.tile(xs, (h, 1)), atol=1e-6)
    np.testing.assert_allclose(grid[1, 1].numpy(), np.tile(ys[:, None], (1, w)), atol=1e-6)


# ------------------------------------------------------------------------------------------------ Haar


def test_dwt_then_iwt_is_identity():
    x = torch.randn(2, 5, 12, 16)
    y = HaarIWT(20)(HaarDWT(5)(x))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-6)


def test_dwt_of_one_block_by_hand():
    # one 2x2 block [[a, b], [c, d]] -> LL=(a+b+c+d)/2, (a+b-c-d)/2, (a-b+c-d)/2, (a-b-c+d)/2
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    y = HaarDWT(1)(x).flatten().tolist()
    assert y == pytest.approx([5.0, -2.0, -1.0, 0.0])


def test_haar_weights_are_fixed_and_not_trained(full):
    fixed = [n for n, p in full.named_parameters() if not p.requires_grad]
    haar = [f"{n}.weight" for n, m in full.named_modules() if isinstance(m, (HaarDWT, HaarIWT))]
    assert sorted(fixed) == sorted(haar) and len(haar) == 6
    assert sum(p.numel() for n, p in full.named_parameters() if n in fixed) == AUTHORS_FIXED_HAAR

    torch.manual_seed(0)
    model = LiteISPNet(ch1=8, ch2=8, ch3=8, n_blocks=1, reduction=4)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.rand(2, 4, 16, 16)).square().mean().backward()
    opt.step()
    for n, p in model.named_parameters():
        if p.requires_grad:
            continue
        assert p.grad is None
        assert torch.equal(p, before[n])
    assert not torch.equal(model.head.weight, before["head.weight"])


# ---------------------------------------------------------------------------------------- presets / cost


def test_mobile_preset_size_and_cost():
    spec = get_spec("liteisp-mobile")
    model = create_model("liteisp-mobile", weights=None)
    total, trainable = count_parameters(model)
    print(f"liteisp-mobile: {total} parameters ({trainable} trainable)")
    assert 100_000 <= total <= 300_000
    assert total == 287_971 and total - trainable == 2_048
    gmac = gmacs_per_output_megapixel(model, spec, size=(64, 64))
    assert gmac == pytest.approx(11.492, abs=0.01)
    with torch.no_grad():
        assert model(torch.rand(1, 4, 64, 64)).shape == (1, 3, 128, 128)


def test_published_gmac_per_megapixel(full):
    # Every counted op is a conv, so MACs scale with pixels: 364.59 GMAC/MP at any size
    # (761.6 GMAC for a 4x544x960 input, i.e. a Full-HD output).
    assert gmacs_per_output_megapixel(full, get_spec("liteisp"), size=(64, 64)) == pytest.approx(364.587, abs=0.01)


def test_specs():
    for name in ("liteisp", "liteisp-mobile"):
        spec = get_spec(name)
        assert spec.family == "liteisp" and spec.metadata_fields == () and spec.scale == 2
        assert spec.loss == "l1+ssim" and "VGG" in spec.description
        assert spec.train_config["lr"] == 1e-4 and spec.train_config["gamma"] == 0.5
        assert spec.parity_floors["int8"] == 32.0 and spec.export_size == (256, 256)
    assert get_spec("liteisp").weights is None and get_spec("liteisp").config["coord"] is True
    assert get_spec("liteisp-mobile").weights == "liteisp-mobile"


# ------------------------------------------------------------------------- the authors' checkpoint layout
# A re-declaration of the authors' released network (zrrjoint_model.py::LiteISPNet with
# --pre_ispnet_coord False, networks.py blocks), written independently of mobileisp.models.blocks.


def _conv(i, o, k=3, p=1):
    return nn.Conv2d(i, o, k, 1, p, bias=True)


class _CALayer(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(_conv(c, c // 16, 1, 0), nn.ReLU(), _conv(c // 16, c, 1, 0), nn.Sigmoid())

    def forward(self, x):
        return x * self.conv_du(self.avg_pool(x))


class _RCABlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.res = nn.Sequential(_conv(c, c), nn.ReLU(), _conv(c, c))
        self.ca = _CALayer(c)

    def forward(self, x):
        return self.ca(self.res(x)) + x


class _RCAGroup(nn.Module):
    def __init__(self, c, nb=4):
        super().__init__()
        self.rg = nn.Sequential(*[_RCABlock(c) for _ in range(nb)], _conv(c, c))

    def forward(self, x):
        return self.rg(x) + x


_HAAR = [[[0.5, 0.5], [0.5, 0.5]], [[0.5, 0.5], [-0.5, -0.5]], [[0.5, -0.5], [0.5, -0.5]], [[0.5, -0.5], [-0.5, 0.5]]]


class _DWTForward(nn.Conv2d):
    def __init__(self, c):
        super().__init__(c, c * 4, 2, 2, groups=c, bias=False)
        self.weight.data.copy_(torch.tensor(_HAAR)[:, None].repeat(c, 1, 1, 1))
        self.requires_grad_(False)


class _DWTInverse(nn.ConvTranspose2d):
    def __init__(self, c):
        super().__init__(c, c // 4, 2, 2, groups=c // 4, bias=False)
        self.weight.data.copy_(torch.tensor(_HAAR)[:, None].repeat(c // 4, 1, 1, 1))
        self.requires_grad_(False)


class _AuthorsLiteISPNet(nn.Module):
    def __init__(self):
        super().__init__()
        c1, c2, c3 = 64, 128, 128
        self.head = _conv(4, c1)
        self.down1 = nn.Sequential(_conv(c1 + 2, c1 + 2), _RCAGroup(c1 + 2), _conv(c1 + 2, c1), _DWTForward(c1))
        self.down2 = nn.Sequential(_conv(c1 * 4, c1), _RCAGroup(c1), _DWTForward(c1))
        self.down3 = nn.Sequential(_conv(c1 * 4, c2), _RCAGroup(c2), _DWTForward(c2))
        self.middle = nn.Sequential(_conv(c2 * 4, c3), _RCAGroup(c3), _RCAGroup(c3), _conv(c3, c2 * 4))
        self.up3 = nn.Sequential(_DWTInverse(c2 * 4), _RCAGroup(c2), _conv(c2, c1 * 4))
        self.up2 = nn.Sequential(_DWTInverse(c1 * 4), _RCAGroup(c1), _conv(c1, c1 * 4))
        self.up1 = nn.Sequential(_DWTInverse(c1 * 4), _RCAGroup(c1), _conv(c1, c1))
        self.tail = nn.Sequential(_conv(c1, c1 * 4), nn.PixelShuffle(2), _conv(c1, 3))

    def forward(self, raw, coord):
        h = self.head(torch.pow(raw, 1 / 2.2))
        d1 = self.down1(torch.cat((h, coord), 1))
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        m = self.middle(d3) + d3
        u3 = self.up3(m) + d2
        u2 = self.up2(u3) + d1
        u1 = self.up1(u2) + h
        return self.tail(u1)


def _authors_inputs(mosaic: np.ndarray):
    """util.py's remove_black_level + extract_bayer_channels + get_coord(x=1, y=1), batch of 1."""
    raw = np.maximum(mosaic.astype(np.float32) - 63, 0) / (4 * 255 - 63)
    packed = np.stack((raw[1::2, 1::2], raw[0::2, 1::2], raw[0::2, 0::2], raw[1::2, 0::2]))  # "B, Gb, R, Gr"
    _, h, w = packed.shape
    xs = np.linspace(-1 + 1 / w, 1 - 1 / w, w)
    ys = np.linspace(-1 + 1 / h, 1 - 1 / h, h)
    coord = np.stack((np.tile(xs, (h, 1)), np.tile(ys[:, None], (1, w)))).astype(np.float32)
    return torch.from_numpy(packed)[None], torch.from_numpy(coord)[None]


@pytest.fixture(scope="module")
def authors_checkpoint(tmp_path_factory):
    torch.manual_seed(1)
    net = _AuthorsLiteISPNet().eval()
    with torch.no_grad():
        for p in net.parameters():
            if p.requires_grad:
                p.copy_(torch.randn_like(p) * 0.02)
    path = tmp_path_factory.mktemp("ckpt") / "LiteISPNet_model_56.pth"
    torch.save({"state_dict": net.state_dict()}, path)
    return net, path


def test_authors_structure_has_the_published_size(authors_checkpoint):
    net, _ = authors_checkpoint
    assert sum(p.numel() for p in net.parameters()) == AUTHORS_TOTAL
    assert len(net.state_dict()) == AUTHORS_KEYS


def test_imported_checkpoint_reproduces_the_authors_forward(authors_checkpoint):
    net, path = authors_checkpoint
    state = import_liteisp_state_dict(path)
    assert len(state) == AUTHORS_KEYS and all(v.dtype == torch.float32 for v in state.values())
    ours = create_model("liteisp", weights=None)
    ours.load_state_dict(state, strict=True)

    rng = np.random.default_rng(3)
    mosaic = rng.integers(64, 1024, size=(64, 64), dtype=np.uint16)  # above the black level: x > 0
    raw_a, coord_a = _authors_inputs(mosaic)
    with torch.no_grad():
        expected = net(raw_a, coord_a)
        got = ours(torch.from_numpy(authors_input_to_packed(mosaic))[None])
    assert got.shape == expected.shape == (1, 3, 64, 64)
    scale = expected.abs().max().item()
    assert scale > 1e-3
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5 * scale)


def test_import_strips_dataparallel_prefix(authors_checkpoint):
    net, _ = authors_checkpoint
    wrapped = {"state_dict": {f"module.{k}": v for k, v in net.state_dict().items()}}
    state = import_liteisp_state_dict(wrapped)
    assert torch.equal(state["tail.2.weight"], net.tail[2].weight)


def _import_error(source, pattern):
    with pytest.raises(ModelError, match=pattern) as info:
        import_liteisp_state_dict(source)
    assert "\n" not in str(info.value)


def test_import_errors(authors_checkpoint, tmp_path):
    net, _ = authors_checkpoint
    sd = dict(net.state_dict())

    _import_error(tmp_path / "missing.pth", "not found")
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a checkpoint")
    _import_error(junk, "cannot read .*junk.pth")
    _import_error(
        dict(sd, **{"head.weight": torch.zeros(64, 3, 3, 3)}),
        r"head.weight has shape \(64, 3, 3, 3\), the network needs \(64, 4, 3, 3\)",
    )
    _import_error({k: v for k, v in sd.items() if k != "tail.2.bias"}, "1 missing key.*tail.2.bias")
    _import_error(dict(sd, extra=torch.zeros(1)), "1 unexpected key.*extra")
    _import_error(dict(sd, **{"pre_coord.fc.0.weight": torch.zeros(256, 10816)}), "pre_ispnet_coord")
    _import_error(dict(sd, **{"down2.2.weight": torch.ones(256, 1, 2, 2)}), "down2.2.weight is not the fixed Haar")
    listed = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], listed)
    _import_error(listed, "expected a dict of tensors, got list")


def test_authors_input_to_packed_by_hand():
    mosaic = np.array([[63, 1020, 100, 500], [0, 1023, 200, 300]], dtype=np.uint16)
    packed = authors_input_to_packed(mosaic)
    assert packed.shape == (4, 1, 2) and packed.dtype == np.float32
    # R at (0, 0), Gr at (0, 1), Gb at (1, 0), B at (1, 1); (x - 63) / 957, negatives to 0, no upper clip
    np.testing.assert_allclose(packed[:, 0, 0], [0.0, 1.0, 0.0, 960 / 957], rtol=1e-6)
    np.testing.assert_allclose(packed[:, 0, 1], [37 / 957, 437 / 957, 137 / 957, 237 / 957], rtol=1e-6)
    with pytest.raises(ImageSizeError):
        authors_input_to_packed(np.zeros((3, 4), np.uint16))
    with pytest.raises(RawFormatError):
        authors_input_to_packed(np.zeros((4, 4), np.float32))
    with pytest.raises(RawFormatError):
        authors_input_to_packed(np.zeros((4, 4, 3), np.uint16))
