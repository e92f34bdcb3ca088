"""Parameter and MAC counting on networks small enough to count by hand."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mobileisp.models.complexity import count_macs, count_parameters, dummy_metadata, gmacs_per_output_megapixel
from mobileisp.models.registry import ModelSpec


class _HandNet(nn.Module):
    """packed (N, 4, h, w) -> (N, 3, 2h, 2w), metadata-free.

    MACs for h = w = 8:
      conv 4->8 3x3:                 8*8*8 outputs * 4*9    = 18,432
      grouped conv 8->8 3x3, g=4:    8*8*8 outputs * 2*9    =  9,216
      transposed conv 8->4 2x2 s2:   8*8*8 inputs  * 4*4    =  8,192
      conv 4->3 1x1 at 16x16:        16*16*3 outputs * 4    =  3,072
                                                       total = 38,912
    """

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(4, 8, 3, padding=1)  # 288 + 8
        self.b = nn.Conv2d(8, 8, 3, padding=1, groups=4)  # 144 + 8
        self.up = nn.ConvTranspose2d(8, 4, 2, stride=2, bias=False)  # 128, frozen below
        self.c = nn.Conv2d(4, 3, 1)  # 12 + 3
        self.up.weight.requires_grad_(False)
        self.register_buffer("not_a_parameter", torch.zeros(1000))

    def forward(self, raw):
        return self.c(self.up(torch.relu(self.b(self.a(raw)))))


class _MetaNet(nn.Module):
    """Consumes white_balance (N, 3), color_matrix (N, 3, 3) and iso (N, 1); records what it was given."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(4, 12, 1, bias=False)  # 8*8*12 outputs * 4 = 3,072 MACs at h = w = 8
        self.fc = nn.Linear(13, 12)  # 12 outputs * 13 = 156 MACs
        self.seen = {}

    def forward(self, raw, white_balance, color_matrix, iso):
        self.seen = {"white_balance": white_balance, "color_matrix": color_matrix, "iso": iso}
        cond = torch.cat([white_balance, color_matrix.flatten(1), iso], dim=1)  # (N, 13)
        return nn.functional.pixel_shuffle(self.conv(raw) * self.fc(cond)[:, :, None, None], 2)


def test_count_parameters_by_hand():
    total, trainable = count_parameters(_HandNet())
    assert total == 296 + 152 + 128 + 15
    assert trainable == total - 128
    assert count_parameters(object()) == (0, 0)


def test_macs_by_hand():
    macs, out = count_macs(_HandNet(), torch.rand(1, 4, 8, 8))
    assert out.shape == (1, 3, 16, 16)
    assert macs == 38_912


def test_gmacs_per_output_megapixel_by_hand():
    spec = ModelSpec(name="hand", family="test", description="")
    model = _HandNet().train()
    g = gmacs_per_output_megapixel(model, spec, size=(16, 16))
    assert g == pytest.approx(38_912 / 1e9 / (16 * 16 / 1e6))  # 0.152 GMAC/MP
    assert model.training  # restored
    # conv MACs scale with pixels, so the per-megapixel figure does not depend on size
    assert gmacs_per_output_megapixel(model, spec, size=(64, 32)) == pytest.approx(g)


def test_metadata_inputs_are_dummies_of_the_spec_shapes():
    fields = ("white_balance", "color_matrix", "iso")
    spec = ModelSpec(name="meta", family="test", description="", metadata_fields=fields)
    model = _MetaNet()
    g = gmacs_per_output_megapixel(model, spec, size=(16, 16))
    assert g == pytest.approx((3_072 + 156) / 1e9 / (16 * 16 / 1e6))
    torch.testing.assert_close(model.seen["white_balance"], torch.ones(1, 3))
    torch.testing.assert_close(model.seen["color_matrix"], torch.eye(3)[None])
    torch.testing.assert_close(model.seen["iso"], torch.full((1, 1), 100.0))


def test_dummy_metadata_shapes():
    d = dummy_metadata(("white_balance", "color_matrix", "iso", "exposure_time", "f_number", "focal_length"), batch=2)
    assert {k: tuple(v.shape) for k, v in d.items()} == {
        "white_balance": (2, 3), "color_matrix": (2, 3, 3), "iso": (2, 1),
        "exposure_time": (2, 1), "f_number": (2, 1), "focal_length": (2, 1),
    }
    assert float(d["exposure_time"][1, 0]) == 100.0
