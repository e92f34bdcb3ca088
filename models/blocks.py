"""Shared building blocks: 3x3 convs, channel attention, RCAB, residual groups, fixed Haar DWT/IWT.

Module and attribute names follow the LiteISPNet authors' ``models/networks.py`` (cszhilu1998/RAW-to-sRGB)
so that a network assembled from these blocks has the authors' ``state_dict`` keys: an RCAB holds ``res``
(conv, ReLU, conv at indices 0, 1, 2) and ``ca.conv_du`` (1x1 conv, ReLU, 1x1 conv, sigmoid); a group holds
``rg`` (the blocks, then one conv). All tensors are NCHW float32.
"""

from __future__ import annotations

import torch
from torch import nn

#: The four 2x2 Haar filters (LL, then the three detail bands), scaled by 1/2 so the transform is orthonormal.
HAAR_FILTERS = torch.tensor(
    [
        [[0.5, 0.5], [0.5, 0.5]],
        [[0.5, 0.5], [-0.5, -0.5]],
        [[0.5, -0.5], [0.5, -0.5]],
        [[0.5, -0.5], [-0.5, 0.5]],
    ]
)


def conv3x3(in_channels: int, out_channels: int, bias: bool = True) -> nn.Conv2d:
    """3x3 convolution, stride 1, zero padding 1 (spatial size kept), with bias by default."""
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=bias)


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation channel attention (RCAN's ``CALayer``).

    ``x * sigmoid(conv1x1(relu(conv1x1(mean_hw(x)))))`` with a hidden width of ``channels // reduction``
    (at least 1). Input and output (N, C, H, W); the gate is (N, C, 1, 1) in (0, 1).
    """

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, padding=0, bias=True),
            nn.ReLU(),
            nn.Conv2d(hidden, channels, 1, padding=0, bias=True),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(self.avg_pool(x))


class RCAB(nn.Module):
    """Residual channel-attention block: ``x + CA(conv3x3(relu(conv3x3(x))))``; (N, C, H, W) -> same."""

    def __init__(self, channels: int, reduction: int = 16):
        super().__init__()
        self.res = nn.Sequential(conv3x3(channels, channels), nn.ReLU(), conv3x3(channels, channels))
        self.ca = ChannelAttention(channels, reduction)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ca(self.res(x)) + x


class RCAGroup(nn.Module):
    """Residual group: ``n_blocks`` RCABs, then a 3x3 conv, plus the group input; (N, C, H, W) -> same."""

    def __init__(self, channels: int, n_blocks: int, reduction: int = 16):
        super().__init__()
        self.rg = nn.Sequential(*[RCAB(channels, reduction) for _ in range(n_blocks)], conv3x3(channels, channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rg(x) + x


class HaarDWT(nn.Conv2d):
    """One level of the 2-D Haar wavelet transform as a fixed grouped conv (kernel 2, stride 2).

    (N, C, H, W) -> (N, 4C, H/2, W/2); output channels are interleaved per input channel
    ``[c0_LL, c0_1, c0_2, c0_3, c1_LL, ...]``. The filters live in ``weight`` (shape (4C, 1, 2, 2), so they
    appear in the ``state_dict`` as in the authors' checkpoints) with ``requires_grad=False``.
    """

    def __init__(self, channels: int):
        super().__init__(channels, 4 * channels, kernel_size=2, stride=2, groups=channels, bias=False)
        with torch.no_grad():
            self.weight.copy_(HAAR_FILTERS.unsqueeze(1).repeat(channels, 1, 1, 1))
        self.requires_grad_(False)


class HaarIWT(nn.ConvTranspose2d):
    """Inverse of :class:`HaarDWT` as a fixed grouped transposed conv (kernel 2, stride 2).

    (N, C, H, W) -> (N, C/4, 2H, 2W) with C a multiple of 4, channels grouped as :class:`HaarDWT` emits them.
    Because the Haar filters are orthonormal and do not overlap, ``HaarIWT(4C)(HaarDWT(C)(x)) == x``.
    """

    def __init__(self, channels: int):
        if channels % 4:
            raise ValueError(f"HaarIWT needs a multiple of 4 channels, got {channels}")
        super().__init__(channels, channels // 4, kernel_size=2, stride=2, groups=channels // 4, bias=False)
        with torch.no_grad():
            self.weight.copy_(HAAR_FILTERS.unsqueeze(1).repeat(channels // 4, 1, 1, 1))
        self.requires_grad_(False)
