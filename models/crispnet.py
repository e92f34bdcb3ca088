"""CRISPnet: a U-Net ISP conditioned on white-balance metadata and on whole-frame semantics.

Souza and Heidrich (KAUST), "CRISPnet: Color Rendition ISP Net". Three branches (paper Fig. 2):

- reconstruction: a U-Net on the packed RAW with residual blocks *only* in the bottleneck (paper claim b:
  residual blocks in the encoder overfit), concatenated skips, 2x2 max-pool down, 2x2 stride-2 transposed
  conv up, ReLU, and a 1x1 conv + depth-to-space to full resolution (the paper leaves the x2 step open);
- white balance: the as-shot gains (R, G, B) expanded to RGBG (R, G, B, G) go through one *linear* (affine, no
  activation, as the paper) map per injection level; the resulting per-channel scales multiply the first
  ``wb_levels`` encoder levels (paper Table 3: levels 1-3 are the sweet spot). The scales are spatially
  constant, so tiles and the full frame see the same conditioning;
- global semantics: a thumbnail of the whole frame (R, mean(G), B, average-pooled and resized inside the
  network to a fixed size) goes through a lite XCiT of depth 4 (cross-covariance attention with L2-normalised
  q and k along tokens and a learned temperature, local patch interaction, FFN, LayerNorm, two class-attention
  layers on a CLS token; patch 8 by a three-conv stem, Fourier positions), whose CLS state gives
  ``F = 1 + head(cls)`` (N, C_bottleneck), multiplied channel-wise into the bottleneck *after* the residual
  blocks (paper claim c). ``global_branch="cnn"`` is the paper's rejected "classification CNN" (strided
  conv-BN-ReLU-max-pool twice, then a fully connected layer), ``None`` the ablation without it.

Unspecified in the paper and chosen here for a phone budget: encoder widths 16-32-64-128 and a 192-channel
bottleneck (the paper's is 512) with 2 residual blocks, a 96x128 thumbnail (paper 368x480, same 3:4 aspect),
XCiT embed 64 with 4 heads (XCiT-T: 192), GELU in its tanh form (exports without ``Erf``), and the thumbnail
taken from the linear RAW without white balance. The network is written for export: every tensor is 4-D NCHW
(tokens are a (N, C, 12, 16) map, LayerNorm is a channel reduction, linear layers are 1x1 convs, class
attention is broadcast multiplies and spatial sums, the depthwise convs are shifted multiply-adds); the
only reshapes are the cross-covariance batch matmuls on the fixed token grid. Output sRGB (N, 3, 2h, 2w),
nominally [0, 1], not clipped.

Tiling: the paper runs the reconstruction branch on tiles and the global branch once per frame;
:meth:`CRISPnet.global_features` and :meth:`CRISPnet.reconstruct` split :meth:`CRISPnet.forward` that way.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.errors import ImageSizeError, ModelError
from mobileisp.models.registry import ModelSpec, register_model

ENC_WIDTHS = (16, 32, 64, 128)
BOTTLENECK_WIDTH = 192
#: Fixed (H, W) of the global branch's thumbnail: the paper's 368x480 (3:4) scaled down.
THUMB_SIZE = (96, 128)
GLOBAL_BRANCHES = ("xcit", "cnn", None)
PARITY_FLOORS = {
    "fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
    "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0,
}


def _gelu(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


# --- reconstruction branch -------------------------------------------------------------------------------


class DoubleConv(nn.Sequential):
    """The vanilla U-Net level: (3x3 conv, ReLU) x 2, zero padding; (N, cin, H, W) -> (N, cout, H, W)."""

    def __init__(self, cin: int, cout: int):
        super().__init__(nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU(), nn.Conv2d(cout, cout, 3, padding=1), nn.ReLU())


class ResBlock(nn.Module):
    """``x + conv3x3(relu(conv3x3(x)))`` (EDSR style, no normalisation); (N, C, H, W) -> same."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class WhiteBalanceBranch(nn.Module):
    """Linear WB branch: gains (N, 3) -> RGBG (N, 4, 1, 1) -> one affine 1x1 conv per level -> scales.

    No activation (paper: "since the input is only three scalars ... we did not find it helpful to include
    non-linearities"), so every scale is affine in the gains and could be precomputed on the host. Weights
    start small and biases at 1, so the scales start near 1.

    Args:
        widths: channels of the levels that receive a scale.
    """

    def __init__(self, widths: Sequence[int]):
        super().__init__()
        self.maps = nn.ModuleList(nn.Conv2d(4, c, 1) for c in widths)
        for m in self.maps:
            nn.init.normal_(m.weight, std=0.05)
            nn.init.ones_(m.bias)

    def forward(self, white_balance: torch.Tensor) -> list[torch.Tensor]:
        """(N, 3) gains (R, G, B), G = 1 -> one (N, C_l, 1, 1) scale per level."""
        wb = white_balance.reshape(-1, 3, 1, 1)
        rgbg = torch.cat([wb, wb[:, 1:2]], dim=1)
        return [m(rgbg) for m in self.maps]


def thumbnail(raw: torch.Tensor, size: tuple[int, int] = THUMB_SIZE) -> torch.Tensor:
    """Whole-frame thumbnail for the global branch: packed RGGB (N, 4, h, w) -> (N, 3, *size) (R, mean G, B).

    Average-pools by the largest integer factor per axis that keeps at least ``size`` (a static kernel, an
    ``AVERAGE_POOL_2D``), then resizes bilinearly (no antialiasing, ``RESIZE_BILINEAR``) to exactly ``size``;
    either step is skipped when it is the identity.
    """
    rgb = torch.cat([raw[:, 0:1], 0.5 * (raw[:, 1:2] + raw[:, 2:3]), raw[:, 3:4]], dim=1)
    h, w = int(rgb.shape[-2]), int(rgb.shape[-1])
    kh, kw = max(1, h // size[0]), max(1, w // size[1])
    if kh > 1 or kw > 1:
        rgb = F.avg_pool2d(rgb, (kh, kw), stride=(kh, kw))
    if tuple(rgb.shape[-2:]) != tuple(size):
        rgb = F.interpolate(rgb, size=size, mode="bilinear", align_corners=False)
    return rgb


# --- global branch: lite XCiT ------------------------------------------------------------------------------


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of (N, C, H, W) (each token normalised on its own), eps 1e-6 as XCiT."""

    def __init__(self, channels: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mu = x.mean(dim=1, keepdim=True)
        d = x - mu
        var = (d * d).mean(dim=1, keepdim=True)
        return d * torch.rsqrt(var + self.eps) * self.weight + self.bias


class FourierPositions(nn.Module):
    """XCiT's Fourier positional encoding for a fixed grid: fixed sin/cos features -> 1x1 conv -> (1, C, gh, gw)."""

    def __init__(self, dim: int, grid: tuple[int, int], hidden: int = 32, temperature: float = 10000.0):
        super().__init__()
        gh, gw = grid
        eps, scale = 1e-6, 2 * math.pi
        y = torch.arange(1, gh + 1, dtype=torch.float32)[:, None].expand(gh, gw) / (gh + eps) * scale
        x = torch.arange(1, gw + 1, dtype=torch.float32)[None, :].expand(gh, gw) / (gw + eps) * scale
        dim_t = temperature ** (2 * torch.div(torch.arange(hidden), 2, rounding_mode="floor") / hidden)
        py, px = y[..., None] / dim_t, x[..., None] / dim_t
        py = torch.stack([py[..., 0::2].sin(), py[..., 1::2].cos()], dim=3).flatten(2)
        px = torch.stack([px[..., 0::2].sin(), px[..., 1::2].cos()], dim=3).flatten(2)
        self.register_buffer("features", torch.cat([py, px], dim=2).permute(2, 0, 1)[None], persistent=False)
        self.proj = nn.Conv2d(2 * hidden, dim, 1)

    def forward(self) -> torch.Tensor:
        return self.proj(self.features)


class XCA(nn.Module):
    """Cross-covariance attention on a (N, C, gh, gw) token map: heads attend channel to channel.

    q, k are L2-normalised along the tokens; per head, ``attn = softmax(q k^T * temperature)`` is (d x d)
    and the output ``attn v`` is projected by a 1x1 conv. Cost is linear in the number of tokens.
    """

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ModelError(f"XCiT embed dim {dim} is not a multiple of its {heads} heads")
        self.heads = heads
        self.q, self.k, self.v = (nn.Conv2d(dim, dim, 1) for _ in range(3))
        self.temperature = nn.Parameter(torch.ones(1, heads, 1, 1))
        self.proj = nn.Conv2d(dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c, gh, gw = (int(s) for s in x.shape[1:])
        d, t = c // self.heads, gh * gw

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.reshape(-1, self.heads, d, t)

        def l2(y: torch.Tensor) -> torch.Tensor:  # F.normalize along the tokens
            return y * torch.rsqrt((y * y).sum(dim=(2, 3), keepdim=True).clamp_min(1e-24))

        q, k, v = split(l2(self.q(x))), split(l2(self.k(x))), split(self.v(x))
        attn = torch.softmax(torch.matmul(q, k.transpose(2, 3)) * self.temperature, dim=-1)
        return self.proj(torch.matmul(attn, v).reshape(-1, c, gh, gw))


class DepthwiseConv3x3(nn.Module):
    """Depthwise 3x3 conv (zero padding 1, with bias): ``nn.Conv2d(C, C, 3, padding=1, groups=C)``'s parameters.

    Under ``torch.onnx.export`` it is written out as nine shifted broadcast multiply-adds (same result):
    onnx2tf 1.29 turns a grouped ONNX ``Conv`` whose input layout it has re-transposed into a Keras
    grouped-conv layer whose variables break its SavedModel export. Eager mode (training, Core ML tracing)
    keeps the single grouped conv.
    """

    def __init__(self, channels: int):
        super().__init__()
        ref = nn.Conv2d(channels, channels, 3, padding=1, groups=channels)  # PyTorch's default init
        self.weight = nn.Parameter(ref.weight.detach().clone())
        self.bias = nn.Parameter(ref.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.onnx.is_in_onnx_export():
            return F.conv2d(x, self.weight, self.bias, padding=1, groups=self.weight.shape[0])
        return self.shifted(x)

    def shifted(self, x: torch.Tensor) -> torch.Tensor:
        """The conv as nine shifted multiply-adds (the ONNX form)."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        xp = F.pad(x, (1, 1, 1, 1))
        out = self.bias[None, :, None, None]
        for dy in range(3):
            for dx in range(3):
                out = out + xp[:, :, dy:dy + h, dx:dx + w] * self.weight[None, :, 0, dy, dx, None, None]
        return out


class LPI(nn.Module):
    """Local patch interaction: depthwise 3x3 conv, GELU, BatchNorm, depthwise 3x3 conv."""

    def __init__(self, dim: int):
        super().__init__()
        self.conv1 = DepthwiseConv3x3(dim)
        self.bn = nn.BatchNorm2d(dim)
        self.conv2 = DepthwiseConv3x3(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.bn(_gelu(self.conv1(x))))


class FFN(nn.Module):
    """Token-wise MLP as 1x1 convs: dim -> ratio * dim (GELU) -> dim."""

    def __init__(self, dim: int, ratio: int = 4):
        super().__init__()
        self.fc1 = nn.Conv2d(dim, ratio * dim, 1)
        self.fc2 = nn.Conv2d(ratio * dim, dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(_gelu(self.fc1(x)))


class XCABlock(nn.Module):
    """XCiT layer: ``x += g1 XCA(LN x)``, ``x += g3 LPI(LN x)``, ``x += g2 FFN(LN x)`` (layer scale eta = 1)."""

    def __init__(self, dim: int, heads: int, eta: float = 1.0):
        super().__init__()
        self.norm1, self.norm3, self.norm2 = ChannelLayerNorm(dim), ChannelLayerNorm(dim), ChannelLayerNorm(dim)
        self.attn, self.lpi, self.mlp = XCA(dim, heads), LPI(dim), FFN(dim)
        self.gamma1, self.gamma3, self.gamma2 = (nn.Parameter(eta * torch.ones(1, dim, 1, 1)) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.gamma1 * self.attn(self.norm1(x))
        x = x + self.gamma3 * self.lpi(self.norm3(x))
        return x + self.gamma2 * self.mlp(self.norm2(x))


class ClassAttentionBlock(nn.Module):
    """XCiT's class-attention layer (CaiT) with ``tokens_norm=True``, on a CLS (N, C, 1, 1) and tokens (N, C, gh, gw).

    The CLS query attends over [CLS, tokens] (softmax over all of them, per head); tokens only take the
    residual and norm steps, as in the reference implementation (timm ``xcit.ClassAttentionBlock``). The
    per-head dot products are a fixed 0/1 1x1 conv summing each head's channels, and the softmax is written
    out with spatial max/sum, so no 3-D tensor or reshape is needed.
    """

    def __init__(self, dim: int, heads: int, eta: float = 1.0):
        super().__init__()
        if dim % heads:
            raise ModelError(f"XCiT embed dim {dim} is not a multiple of its {heads} heads")
        d = dim // heads
        self.norm1, self.norm2 = ChannelLayerNorm(dim), ChannelLayerNorm(dim)
        self.q, self.k, self.v = (nn.Conv2d(dim, dim, 1) for _ in range(3))
        self.proj = nn.Conv2d(dim, dim, 1)
        self.mlp = FFN(dim)
        self.gamma1, self.gamma2 = (nn.Parameter(eta * torch.ones(1, dim, 1, 1)) for _ in range(2))
        members = torch.zeros(heads, dim)
        for h in range(heads):
            members[h, h * d:(h + 1) * d] = 1.0
        self.register_buffer("head_sum", (members * d ** -0.5)[:, :, None, None], persistent=False)  # C -> heads
        self.register_buffer("head_expand", members.t()[:, :, None, None].contiguous(), persistent=False)  # heads -> C

    def forward(self, cls: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nc, nt = self.norm1(cls), self.norm1(tokens)
        q = self.q(nc)
        logit_c = F.conv2d(q * self.k(nc), self.head_sum)  # (N, heads, 1, 1)
        logit_t = F.conv2d(q * self.k(nt), self.head_sum)  # (N, heads, gh, gw)
        m = torch.maximum(logit_t.amax(dim=(2, 3), keepdim=True), logit_c)
        e_c, e_t = torch.exp(logit_c - m), torch.exp(logit_t - m)
        z = e_t.sum(dim=(2, 3), keepdim=True) + e_c
        w_c, w_t = F.conv2d(e_c / z, self.head_expand), F.conv2d(e_t / z, self.head_expand)
        attn = self.proj(w_c * self.v(nc) + (w_t * self.v(nt)).sum(dim=(2, 3), keepdim=True))
        cls = self.norm2(cls + self.gamma1 * attn)
        tokens = self.norm2(tokens + self.gamma1 * nt)
        return cls + self.gamma2 * self.mlp(cls), 2.0 * tokens  # timm adds the residual to the tokens as well


class XCiTGlobal(nn.Module):
    """Lite XCiT on the thumbnail -> global feature ``F = 1 + head(LN(cls))`` (N, out_dim, 1, 1).

    Args:
        out_dim: bottleneck channels F scales.
        dim: embedding width; heads: attention heads; depth: XCA layers; ca_depth: class-attention layers.
        thumb: thumbnail (H, W), multiples of 8 (patch 8: three stride-2 3x3 convs, XCiT's ConvPatchEmbed).
    """

    def __init__(self, out_dim: int, dim: int = 64, heads: int = 4, depth: int = 4, ca_depth: int = 2,
                 thumb: tuple[int, int] = THUMB_SIZE):
        super().__init__()
        if thumb[0] % 8 or thumb[1] % 8:
            raise ModelError(f"XCiT thumbnail size {thumb} is not a multiple of the patch size 8")
        c1, c2 = dim // 4, dim // 2
        self.patch_embed = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.BatchNorm2d(c1), nn.GELU(approximate="tanh"),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.GELU(approximate="tanh"),
            nn.Conv2d(c2, dim, 3, stride=2, padding=1), nn.BatchNorm2d(dim),
        )
        self.pos = FourierPositions(dim, (thumb[0] // 8, thumb[1] // 8))
        self.blocks = nn.ModuleList(XCABlock(dim, heads) for _ in range(depth))
        self.cls_token = nn.Parameter(torch.zeros(1, dim, 1, 1))
        self.cls_blocks = nn.ModuleList(ClassAttentionBlock(dim, heads) for _ in range(ca_depth))
        self.norm = ChannelLayerNorm(dim)
        self.head = nn.Conv2d(dim, out_dim, 1)
        for m in self.modules():
            if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and m.groups == 1:
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
        nn.init.trunc_normal_(self.cls_token, std=0.02)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        """Thumbnail (N, 3, H, W) -> F (N, out_dim, 1, 1), near 1 at initialisation."""
        x = self.patch_embed(thumb) + self.pos()
        for blk in self.blocks:
            x = blk(x)
        cls = self.cls_token  # (1, C, 1, 1): broadcasts to the batch inside the first class-attention block
        for blk in self.cls_blocks:
            cls, x = blk(cls, x)
        return 1.0 + self.head(self.norm(cls))


class CNNGlobal(nn.Module):
    """The paper's "classification CNN": (3x3/2 conv, BN, ReLU, 2x2 max-pool) x 2, then a fully connected layer.

    The FC over the flattened (N, 64, H/16, W/16) map is a conv whose kernel covers the whole map (same
    weights, no flatten). Returns ``F = 1 + fc`` (N, out_dim, 1, 1).
    """

    def __init__(self, out_dim: int, widths: tuple[int, int] = (32, 64), thumb: tuple[int, int] = THUMB_SIZE):
        super().__init__()
        if thumb[0] % 16 or thumb[1] % 16:
            raise ModelError(f"CNN thumbnail size {thumb} is not a multiple of 16")
        c1, c2 = widths
        self.features = nn.Sequential(
            nn.Conv2d(3, c1, 3, stride=2, padding=1), nn.BatchNorm2d(c1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, stride=2, padding=1), nn.BatchNorm2d(c2), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.fc = nn.Conv2d(c2, out_dim, (thumb[0] // 16, thumb[1] // 16))
        nn.init.normal_(self.fc.weight, std=0.02 / math.sqrt(thumb[0] * thumb[1] / 256))  # F starts near 1
        nn.init.zeros_(self.fc.bias)

    def forward(self, thumb: torch.Tensor) -> torch.Tensor:
        return 1.0 + self.fc(self.features(thumb))


# --- the network -------------------------------------------------------------------------------------------


class CRISPnet(nn.Module):
    """CRISPnet on packed RGGB with white-balance conditioning and a whole-frame global branch.

    Args:
        widths: encoder widths of the 4 U-Net levels (each halves the size after it).
        bottleneck: bottleneck channels (= size of the global feature F).
        n_res: residual blocks in the bottleneck (the only residual blocks of the U-Net).
        wb_levels: levels whose features the WB scales multiply, counted from the first encoder level
            (0 = no WB branch; 5 = all encoder levels and the bottleneck, before its residual blocks).
        global_branch: ``"xcit"``, ``"cnn"`` or None (ablation: F = 1).
        xcit: keyword arguments of :class:`XCiTGlobal` (``dim``, ``heads``, ``depth``, ``ca_depth``).
        thumb: (H, W) of the global branch's thumbnail.

    Inputs (forward): ``raw`` (N, 4, h, w) packed RGGB in [0, 1], h and w multiples of 16 and >= 16;
    ``white_balance`` (N, 3) as-shot gains (R, G, B) with G = 1 (unused and optional when ``wb_levels`` is 0).
    Output: sRGB (N, 3, 2h, 2w), nominally [0, 1], not clipped.
    """

    def __init__(self, widths: Sequence[int] = ENC_WIDTHS, bottleneck: int = BOTTLENECK_WIDTH, n_res: int = 2,
                 wb_levels: int = 3, global_branch: str | None = "xcit", xcit: dict | None = None,
                 thumb: tuple[int, int] = THUMB_SIZE):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 4:
            raise ModelError(f"CRISPnet needs 4 encoder widths, got {widths}")
        if not 0 <= wb_levels <= 5:
            raise ModelError(f"CRISPnet wb_levels must be 0..5, got {wb_levels}")
        if global_branch not in GLOBAL_BRANCHES:
            raise ModelError(f"unknown CRISPnet global branch {global_branch!r}; choose xcit, cnn or None")
        self.wb_levels, self.thumb = wb_levels, tuple(thumb)
        self.enc = nn.ModuleList()
        cin = 4
        for w in widths:
            self.enc.append(DoubleConv(cin, w))
            cin = w
        self.mid = nn.Sequential(nn.Conv2d(cin, bottleneck, 3, padding=1), nn.ReLU())
        self.res = nn.Sequential(*(ResBlock(bottleneck) for _ in range(n_res)))
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        cin = bottleneck
        for w in reversed(widths):
            self.up.append(nn.ConvTranspose2d(cin, w, 2, stride=2))
            self.dec.append(DoubleConv(2 * w, w))
            cin = w
        self.out = nn.Sequential(nn.Conv2d(cin, 12, 1), nn.PixelShuffle(2))
        self.wb = WhiteBalanceBranch((*widths, bottleneck)[:wb_levels]) if wb_levels else None
        self._init_reconstruction()
        if global_branch == "xcit":
            self.glob: nn.Module | None = XCiTGlobal(bottleneck, thumb=self.thumb, **(xcit or {}))
        elif global_branch == "cnn":
            self.glob = CNNGlobal(bottleneck, thumb=self.thumb)
        else:
            self.glob = None

    def _init_reconstruction(self) -> None:
        """He-normal convs with zero biases; residual branches start at 0.1x and the output at mid-grey.

        PyTorch's default (Kaiming-uniform, a = sqrt(5)) shrinks the signal at every level of a deep U-Net.
        """
        for part in (self.enc, self.mid, self.res, self.up, self.dec):
            for m in part.modules():
                if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                    nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                    nn.init.zeros_(m.bias)
        with torch.no_grad():
            for blk in self.res:
                blk.conv2.weight.mul_(0.1)
        conv = self.out[0]
        nn.init.normal_(conv.weight, std=0.01 / math.sqrt(conv.in_channels))
        nn.init.constant_(conv.bias, 0.5)

    def global_features(self, raw: torch.Tensor) -> torch.Tensor | None:
        """The whole frame's global feature F (N, bottleneck, 1, 1) from packed RAW (N, 4, h, w); None without
        a global branch. Compute it once per frame and pass it to :meth:`reconstruct` for every tile."""
        return None if self.glob is None else self.glob(thumbnail(raw, self.thumb))

    def reconstruct(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None,
                    global_feat: torch.Tensor | None = None) -> torch.Tensor:
        """Reconstruction branch on a packed tile (N, 4, h, w) -> sRGB (N, 3, 2h, 2w), given F (or None)."""
        _check_size(raw)
        scales = self.wb_scales(white_balance)
        skips = []
        x = raw
        for i, level in enumerate(self.enc):
            x = level(x)
            if i < len(scales):
                x = x * scales[i]
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.mid(x)
        if len(scales) == 5:
            x = x * scales[4]
        x = self.res(x)
        if global_feat is not None:
            x = x * global_feat
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.out(x)

    def wb_scales(self, white_balance: torch.Tensor | None) -> list[torch.Tensor]:
        """The WB branch's scales, one (N, C_l, 1, 1) per injected level (none when ``wb_levels`` is 0); each is
        affine in ``white_balance`` (N, 3), so a phone can compute them on the host."""
        if self.wb is None:
            return []
        if white_balance is None:
            raise ModelError("this CRISPnet needs a white_balance input (N, 3): as-shot gains (R, G, B)")
        if white_balance.dim() != 2 or white_balance.shape[1] != 3:
            raise ModelError(f"CRISPnet white_balance must be (N, 3) gains, got shape {tuple(white_balance.shape)}")
        return self.wb(white_balance)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None) -> torch.Tensor:
        _check_size(raw)
        return self.reconstruct(raw, white_balance, self.global_features(raw))


def _check_size(raw: torch.Tensor) -> None:
    """``raw`` is (N, 4, h, w) with h, w multiples of 16 (4 halvings) and at least 16."""
    if raw.dim() != 4 or raw.shape[1] != 4:
        raise ImageSizeError(f"crispnet needs packed RAW (N, 4, h, w), got shape {tuple(raw.shape)}")
    h, w = (int(s) for s in raw.shape[-2:])
    if h % 16 or w % 16 or min(h, w) < 16:
        raise ImageSizeError(
            f"crispnet needs RAW height and width that are multiples of 32 and at least 32, got {2 * h}x{2 * w} "
            f"(pad the packed RAW to multiples of 16)"
        )


# --- registration --------------------------------------------------------------------------------------

TRAIN_CONFIG = {
    # the paper gives only the loss (MSE) and the curriculum; optimiser, lr, schedule, batch and epochs are
    # unspecified: Adam 1e-4 is this toolkit's choice, not the paper's
    "optimizer": "adam", "lr": 1e-4, "betas": (0.9, 0.999), "eps": 1e-8,
    "schedule": "cosine", "min_factor": 0.05,  # also ours: short runs end better decayed
    "paper_loss": "mse",
    # pre-train on monitor captures (600 train pairs), then fine-tune on real-world captures (160 pairs)
    "curriculum": [{"stage": "pretrain", "data": "monitor", "pairs": 600},
                   {"stage": "finetune", "data": "real-world", "pairs": 160}],
    # 368x480 RAW tiles (an 8x8 grid of the 3840x2944 crop); the global branch always sees the whole frame
    "crop": 480, "global_input": "whole frame",
}

register_model(
    ModelSpec(
        name="crispnet",
        family="crispnet",
        description="CRISPnet lite: U-Net, linear WB scales at 3 levels, XCiT-4 global branch, 2.92M params",
        metadata_fields=("white_balance",),
        size_multiple=16,
        min_size=16,
        export_size=(256, 256),
        parity_floors=dict(PARITY_FLOORS),
        weights="crispnet",
        loss="mse",
        train_config=TRAIN_CONFIG,
    ),
    CRISPnet,
)
