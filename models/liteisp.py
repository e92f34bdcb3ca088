"""LiteISPNet (Zhang et al., "Learning RAW-to-sRGB Mappings with Inaccurately Aligned Supervision", ICCV 2021).

A wavelet U-Net (MWCNN-style) of residual channel-attention groups, Table B of the paper, built as the
authors' released code builds it (cszhilu1998/RAW-to-sRGB, ``models/zrrjoint_model.py``): same layers,
same ``state_dict`` keys, so their ZRR checkpoint loads through :func:`mobileisp.models.importers.
import_liteisp_state_dict` unchanged. Two presets are registered:

- ``liteisp``: the published network (64/128/128 channels, 4 RCABs per group, the 2-channel coordinate
  grid of the released checkpoints): 9,047,815 parameters of which 8,192 are fixed Haar filters.
- ``liteisp-mobile``: the same class at 16/32/32 channels, 1 RCAB per group, no coordinates (0.29 M).

Training: the paper uses L1 + VGG-19 against the aligned target, the authors' code L1 + VGG + 0.15 (1 - SSIM);
both Adam 1e-4, halved at half of training. The registered loss ``l1+ssim`` is L1 + 0.15 (1 - SSIM): the VGG
term (a pretrained ImageNet network) is dropped, as are the training-only aligners (GCM + PWC-Net), which
are not part of this network.
"""

from __future__ import annotations

import torch
from torch import nn

from mobileisp.errors import ImageSizeError
from mobileisp.models.blocks import HaarDWT, HaarIWT, RCAGroup, conv3x3
from mobileisp.models.registry import ModelSpec, register_model

#: Packed RGGB channel (R, Gr, Gb, B) feeding each of the authors' input channels. The authors pack the
#: Huawei P20 mosaic as ``(raw[1::2,1::2], raw[0::2,1::2], raw[0::2,0::2], raw[1::2,0::2])`` and call the
#: channels (B, Gb, R, Gr); by mosaic position that is (B, G on the R row, R, G on the B row), i.e. our
#: (B, Gr, R, Gb). Their "Gb" is our Gr: the names differ, the positions are what the weights learned.
AUTHORS_CHANNEL_ORDER = (3, 1, 0, 2)

#: Smallest value fed to ``x ** (1 / 2.2)``: keeps the gamma's gradient finite at x = 0 and x < 0 from giving NaN.
GAMMA_EPS = 1e-8


class AuthorsChannelOrder(nn.Module):
    """Fixed reorder of packed RGGB (N, 4, h, w) into the authors' channel order (N, 4, h, w).

    A module of its own so that the network's first layer keeps the published weights unchanged and the
    reorder shows up in exported graphs as a plain gather/slice, with no parameters.
    """

    def __init__(self, order: tuple[int, ...] = AUTHORS_CHANNEL_ORDER):
        super().__init__()
        self.order = tuple(order)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x[:, i : i + 1] for i in self.order], dim=1)

    def extra_repr(self) -> str:
        return f"order={self.order}"


def coordinate_grid(x: torch.Tensor) -> torch.Tensor:
    """The authors' patch-relative coordinates for a feature map ``x`` (N, C, h, w): (N, 2, h, w).

    Channel 0 is x, channel 1 is y, both at pixel centres in (-1, 1): ``-1 + (2 i + 1) / w``
    (``get_coord(H, W, x=1, y=1)`` in their ``util/util.py``). Built from the shape only.
    """
    n, _, h, w = x.shape
    xs = (torch.arange(w, dtype=x.dtype, device=x.device) * 2 + 1) / w - 1
    ys = (torch.arange(h, dtype=x.dtype, device=x.device) * 2 + 1) / h - 1
    grid = torch.stack([xs.view(1, w).expand(h, w), ys.view(h, 1).expand(h, w)])
    return grid.unsqueeze(0).expand(n, 2, h, w)


class LiteISPNet(nn.Module):
    """LiteISPNet: packed RGGB RAW (N, 4, h, w) -> sRGB (N, 3, 2h, 2w).

    Forward: reorder to the authors' channels, ``max(raw, 1e-8) ** (1/2.2)``, ``head`` conv 4 -> ch1
    (optionally concatenated with a 2-channel coordinate grid), three encoder stages each ending in a
    Haar DWT (``down1``: ch1 -> 4 ch1 at h/2, ``down2``: -> 4 ch1 at h/4, ``down3``: -> 4 ch2 at h/8),
    ``middle`` (two groups at ch3), three decoder stages each starting with a Haar IWT, additive skips
    (``m = middle(d3) + d3``, ``u3 = up3(m) + d2``, ``u2 = up2(u3) + d1``, ``u1 = up1(u2) + head``), and
    ``tail`` (conv ch1 -> 4 ch1, PixelShuffle 2, conv ch1 -> 3). The output is linear (no clamp).

    Args:
        ch1: width at the packed and 1/2 resolutions (authors: 64).
        ch2: width at 1/4 resolution (authors: 128).
        ch3: width of the bottleneck groups at 1/8 resolution (authors: 128).
        n_blocks: RCABs per residual group (authors: 4; the paper's Table 5 tries 2, 4, 8, 20).
        coord: concatenate the authors' patch-relative (x, y) grid to the head features, making ``down1``
            ch1 + 2 wide, as in their released ZRR checkpoints. False keeps the network translation
            equivariant, so tiles of a large image agree.
        reduction: channel-attention squeeze ratio (authors: 16).

    Input h and w must be multiples of 8 (three DWT levels).
    """

    def __init__(
        self, ch1: int = 64, ch2: int = 128, ch3: int = 128, n_blocks: int = 4, coord: bool = False, reduction: int = 16
    ):
        super().__init__()
        self.coord = bool(coord)
        c_in = ch1 + 2 if self.coord else ch1
        rg = lambda c: RCAGroup(c, n_blocks, reduction)  # noqa: E731

        self.reorder = AuthorsChannelOrder()
        self.head = conv3x3(4, ch1)
        if self.coord:
            self.down1 = nn.Sequential(conv3x3(c_in, c_in), rg(c_in), conv3x3(c_in, ch1), HaarDWT(ch1))
        else:
            self.down1 = nn.Sequential(conv3x3(ch1, ch1), rg(ch1), HaarDWT(ch1))
        self.down2 = nn.Sequential(conv3x3(4 * ch1, ch1), rg(ch1), HaarDWT(ch1))
        self.down3 = nn.Sequential(conv3x3(4 * ch1, ch2), rg(ch2), HaarDWT(ch2))
        self.middle = nn.Sequential(conv3x3(4 * ch2, ch3), rg(ch3), rg(ch3), conv3x3(ch3, 4 * ch2))
        self.up3 = nn.Sequential(HaarIWT(4 * ch2), rg(ch2), conv3x3(ch2, 4 * ch1))
        self.up2 = nn.Sequential(HaarIWT(4 * ch1), rg(ch1), conv3x3(ch1, 4 * ch1))
        self.up1 = nn.Sequential(HaarIWT(4 * ch1), rg(ch1), conv3x3(ch1, ch1))
        self.tail = nn.Sequential(conv3x3(ch1, 4 * ch1), nn.PixelShuffle(2), conv3x3(ch1, 3))

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        """Packed RGGB ``raw`` (N, 4, h, w) in [0, 1], h and w multiples of 8 -> sRGB (N, 3, 2h, 2w)."""
        h_in, w_in = raw.shape[-2:]
        if not torch.jit.is_tracing() and (h_in % 8 or w_in % 8):
            raise ImageSizeError(f"LiteISPNet needs packed height and width divisible by 8, got {h_in}x{w_in}")
        x = self.reorder(raw).clamp(min=GAMMA_EPS) ** (1 / 2.2)
        h = self.head(x)
        d1 = self.down1(torch.cat([h, coordinate_grid(h)], dim=1) if self.coord else h)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        m = self.middle(d3) + d3
        u3 = self.up3(m) + d2
        u2 = self.up2(u3) + d1
        u1 = self.up1(u2) + h
        return self.tail(u1)


# ------------------------------------------------------------------------------------------ registration

_TRAIN = {
    "optimizer": "adam", "lr": 1e-4, "betas": (0.9, 0.999), "schedule": "step", "step_fraction": 0.5, "gamma": 0.5,
}
_FLOORS = {
    "fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
    "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0,
}

#: The published network: the authors' widths and their released checkpoints' coordinate input.
LITEISP_CONFIG = {"ch1": 64, "ch2": 128, "ch3": 128, "n_blocks": 4, "coord": True, "reduction": 16}

#: Phone preset: a quarter of the widths and one RCAB per group: 287,971 parameters (2,048 of them fixed
#: Haar filters), 11.5 GMAC per output megapixel (the published net: 365). Chosen for ~10 min of CPU training
#: at 128 px crops: on a dead-leaves proxy 2 RCABs per group matched 1 within 0.1 dB at equal steps but cost
#: 25 % more time per step and 0.38 M parameters. Reduction 4 keeps the attention's hidden width at 4-8
#: channels (16 would leave one). No coordinates: tiles of a full-resolution image then see the same network.
LITEISP_MOBILE_CONFIG = {"ch1": 16, "ch2": 32, "ch3": 32, "n_blocks": 1, "coord": False, "reduction": 4}

register_model(
    ModelSpec(
        name="liteisp",
        family="liteisp",
        description="LiteISPNet (ICCV'21) as published, 9.0M params; loss L1+0.15(1-SSIM), paper's VGG term dropped",
        size_multiple=8,
        min_size=8,
        export_size=(256, 256),
        parity_floors=dict(_FLOORS),
        weights=None,
        config=dict(LITEISP_CONFIG),
        loss="l1+ssim",
        train_config=dict(_TRAIN),
    ),
    LiteISPNet,
)

register_model(
    ModelSpec(
        name="liteisp-mobile",
        family="liteisp",
        description="LiteISPNet at 16/32 ch, 1 RCAB/group (0.29M params); loss L1+0.15(1-SSIM), VGG term dropped",
        size_multiple=8,
        min_size=8,
        export_size=(256, 256),
        parity_floors=dict(_FLOORS),
        weights="liteisp-mobile",
        config=dict(LITEISP_MOBILE_CONFIG),
        loss="l1+ssim",
        train_config=dict(_TRAIN),
    ),
    LiteISPNet,
)
