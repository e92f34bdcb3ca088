"""ParamISP (Kim et al., CVPR 2024): RAW -> sRGB and sRGB -> RAW ISPs conditioned on the camera's parameters.

Forward network, RAW -> sRGB (the paper's Fig. 2, official code's shapes):

1. **CanoNet** (no weights): Malvar-He-Cutler demosaic of the packed RGGB mosaic, as-shot white balance,
   clip to [0, 1], then the camera -> linear sRGB matrix derived from the file's ``color_matrix``. Gives I_lin.
2. **ParamNet**: the *equalized* optical parameters (exposure time, ISO, f-number, focal length; 15 features
   each, computed on the host by :mod:`mobileisp.metadata_encoding` and fed as the ``optics`` input (N, 60)),
   one Linear(15, 64) per parameter, summed with Linear(24, 64) of ``[wb, 1/wb, vec(M), vec(M^-1)]`` (the
   released code feeds the canonical parameters here too), then ELU-Linear x 3 -> z (N, 64).
   During training each optical parameter's features are dropped with probability 0.2, as the paper says;
   the released code computes that mask but never applies it.
3. **LocalNet**: I_lin plus hand-crafted features (Sobel gradients, soft histograms of 4, 8 and 16 bins, an
   over-exposure mask; 96 channels) -> 3x3 conv -> + Linear(z) broadcast -> a 2-scale U-Net of
   residual blocks with CBAM (channel + spatial attention), additive skips -> 3x3 conv -> residual added to
   I_lin. All convolutions use replicate padding, written as edge slices + concat (TFLite has no edge pad).
4. **GlobalNet**: 3 x (3x3 conv stride 2 no padding, ELU, 2x2 max-pool) on I_local + its features, spatial
   mean, + ELU(Linear(z)); for each of 4 stages a shared 2-layer head (with the stage's one-hot) and the
   stage's Linear(64, 39) give a residual quadratic colour transform (3 x 10) and a per-channel generalised
   gamma ``((a x + b)^g - b^g) / ((a + b)^g - b^g)`` with ``g = exp(w0), b = |w1|, a = exp(w2)``.

Inverse network, sRGB -> RAW (``paramisp-inverse``, the paper's Fig. 2 bottom): the same blocks in reverse
order. GlobalNet undoes the tone and colour rendering of the sRGB input, LocalNet the local adjustments, then
the inverse CanoNet applies the sRGB -> camera matrix (the second half of ``ccm``), divides by the white
balance (no clip, as in the official code) and mosaics to packed RGGB with a fixed stride-2 2x2 selection
convolution. ParamNet conditions both subnets; the over-exposure mask is taken from the sRGB input. Output:
the clean packed RAW (N, 4, H/2, W/2), nominally [0, 1] (not clipped); noise is the caller's to add.

The official code's camera-ID embedding (multiplied by 0, ~1.1k parameters) is left out, so the faithful
preset has 709,885 parameters against the official 710,973.

Shapes: ``raw`` (N, 4, H/2, W/2) in [0, 1]; ``white_balance`` (N, 3) gains with G = 1; ``ccm`` (N, 18): the
camera -> linear sRGB matrix and its inverse, row-major, computed on the host from the file's ``color_matrix``
(:func:`mobileisp.metadata_encoding.camera_to_srgb`); ``optics`` (N, 60). Output sRGB (N, 3, H, W), nominally [0, 1] (not clipped).
H and W must be multiples of 4 (U-Net); GlobalNet's unpadded strided convolutions need H, W >= 128.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.errors import ModelError
from mobileisp.metadata_encoding import CAMERA_TO_SRGB, PARAMISP_FEATURES_PER_PARAMETER, PARAMISP_OPTICS
from mobileisp.models.classical import MalvarDemosaic, mosaic_kernel
from mobileisp.models.registry import ModelSpec, register_model

N_OPTICAL = len(PARAMISP_OPTICS["sources"])


def replicate_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Replicate ("edge") padding by ``p`` on H and W, built from slices and concat.

    TFLite has no edge pad mode and onnx2tf lowers ONNX ``Pad(mode=edge)`` unreliably, while slices and
    concatenation convert everywhere. Equal to ``F.pad(x, (p, p, p, p), mode="replicate")``.
    """
    if p == 0:
        return x
    x = torch.cat([x[..., :1, :]] * p + [x] + [x[..., -1:, :]] * p, dim=-2)
    return torch.cat([x[..., :1]] * p + [x] + [x[..., -1:]] * p, dim=-1)


class ReplicateConv2d(nn.Conv2d):
    """``nn.Conv2d`` with "same" replicate padding (odd kernel, stride 1)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, bias: bool = True):
        super().__init__(in_channels, out_channels, kernel_size, padding=0, bias=bias)
        self.pad = kernel_size // 2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(replicate_pad(x, self.pad))


def _act(name: str) -> nn.Module:
    return {"elu": nn.ELU(), "relu": nn.ReLU()}[name]


# ------------------------------------------------------------------------------------------ features


class HandcraftedFeatures(nn.Module):
    """LocalNet/GlobalNet input features of an image (N, 3, H, W) -> (N, 3 + 6 + 3 * sum(bins) + 3, H, W).

    Image, Sobel x/y gradients per channel (kornia's normalised Sobel: kernel / 8, replicate border),
    soft histograms (bin i of n: ``relu(1 - |x - i/(n-1)| (n-1))`` per channel) and the over-exposure mask
    passed in (computed once from the network input). The histogram is a fixed 1x1 convolution (channel
    copy minus bin centre) then ABS/MUL/RELU, so no 5-D tensors reach the converters.
    """

    def __init__(self, bins: Sequence[int] = (4, 8, 16)):
        super().__init__()
        self.bins = tuple(int(b) for b in bins)
        sobel_x = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8.0
        # a dense 3 -> 6 kernel (zeros across channels) rather than groups=3: with the grouped form onnx2tf
        # 1.29 named a variable "/model/features_1/Conv/kernel", which TensorFlow refuses in a SavedModel
        k = torch.zeros(6, 3, 3, 3)
        for c in range(3):
            k[2 * c, c], k[2 * c + 1, c] = sobel_x, sobel_x.t()
        self.register_buffer("sobel", k, persistent=False)
        weight, bias, scale = [], [], []
        for n in self.bins:
            for c in range(3):
                for i in range(n):
                    w = torch.zeros(3)
                    w[c] = 1.0
                    weight.append(w)
                    bias.append(-i / (n - 1))
                    scale.append(float(n - 1))
        self.register_buffer("hist_weight", torch.stack(weight)[:, :, None, None], persistent=False)
        self.register_buffer("hist_bias", torch.tensor(bias), persistent=False)
        self.register_buffer("hist_scale", torch.tensor(scale)[None, :, None, None], persistent=False)

    @property
    def channels(self) -> int:
        return 3 + 6 + 3 * sum(self.bins) + 3

    def forward(self, x: torch.Tensor, overexposed: torch.Tensor) -> torch.Tensor:
        grad = F.conv2d(replicate_pad(x, 1), self.sobel)
        hist = F.relu(1.0 - torch.abs(F.conv2d(x, self.hist_weight, self.hist_bias)) * self.hist_scale)
        return torch.cat([x, grad, hist, overexposed], dim=1)


def overexposure_mask(x: torch.Tensor) -> torch.Tensor:
    """``clip(x - 0.95, 0) / 0.05``: 0 below 95% of white, 1 at white. Same shape as ``x``."""
    return torch.clamp(x - 0.95, min=0.0) / 0.05


# ------------------------------------------------------------------------------------------ ParamNet


class ParamNet(nn.Module):
    """Camera parameters -> conditioning vector z (N, width).

    Inputs: ``optics`` (N, 15 * 4) equalized features, ``white_balance`` (N, 3), ``ccm`` (N, 18) = vec of the
    camera -> sRGB matrix and of its inverse.
    """

    def __init__(self, width: int = 64, dropout: float = 0.2):
        super().__init__()
        f = PARAMISP_FEATURES_PER_PARAMETER
        self.per_parameter = nn.ModuleList(nn.Linear(f, width) for _ in range(N_OPTICAL))
        self.canonical = nn.Linear(24, width)
        self.mlp = nn.Sequential(nn.ELU(), nn.Linear(width, width), nn.ELU(), nn.Linear(width, width), nn.ELU(),
                                 nn.Linear(width, width))
        nn.init.xavier_uniform_(self.mlp[-1].weight, gain=0.1)
        self.dropout = float(dropout)

    def forward(self, optics: torch.Tensor, white_balance: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
        f = PARAMISP_FEATURES_PER_PARAMETER
        n = optics.shape[0]
        z = self.canonical(torch.cat([white_balance, 1.0 / white_balance, ccm], 1))
        for i, layer in enumerate(self.per_parameter):
            feats = optics[:, i * f : (i + 1) * f]
            if self.training and self.dropout > 0:
                keep = (torch.rand(n, 1, device=optics.device) >= self.dropout).to(optics.dtype)
                feats = feats * keep
            z = z + layer(feats)
        return self.mlp(z)


# ------------------------------------------------------------------------------------------ LocalNet


class ChannelAttention(nn.Module):
    """CBAM channel attention: ``sigmoid(MLP(avgpool) + MLP(maxpool))`` (max branch optional)."""

    def __init__(self, channels: int, act: str, use_max: bool = True):
        super().__init__()
        self.mlp = nn.Sequential(nn.Conv2d(channels, channels // 2, 1), _act(act), nn.Conv2d(channels // 2, channels, 1))
        self.use_max = use_max

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.mlp(x.mean(dim=(2, 3), keepdim=True))
        if self.use_max:
            a = a + self.mlp(torch.amax(x, dim=(2, 3), keepdim=True))
        return x * torch.sigmoid(a)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: ``sigmoid(conv7x7([mean_c, max_c]))`` with replicate padding."""

    def __init__(self):
        super().__init__()
        self.conv = ReplicateConv2d(2, 1, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = torch.cat([x.mean(dim=1, keepdim=True), torch.amax(x, dim=1, keepdim=True)], dim=1)
        return x * torch.sigmoid(self.conv(s))


class LocalBlock(nn.Module):
    """3x3 conv C -> C/2, act, 3x3 conv C/2 -> C, channel attention, spatial attention (optional), + x."""

    def __init__(self, channels: int, act: str, spatial: bool = True, channel_max: bool = True):
        super().__init__()
        self.body = nn.Sequential(ReplicateConv2d(channels, channels // 2, 3), _act(act),
                                  ReplicateConv2d(channels // 2, channels, 3))
        self.ca = ChannelAttention(channels, act, use_max=channel_max)
        self.sa = SpatialAttention() if spatial else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.sa(self.ca(self.body(x)))


class LocalNet(nn.Module):
    """Residual U-Net: image (N, 3, H, W) + features + z -> image + residual. H, W multiples of 2**scales."""

    def __init__(self, in_features: int, width: int = 64, scales: int = 2, blocks: int = 2, act: str = "elu",
                 spatial_attention: bool = True, channel_max: bool = True):
        super().__init__()

        def stage() -> nn.Sequential:
            return nn.Sequential(*(LocalBlock(width, act, spatial_attention, channel_max) for _ in range(blocks)))

        self.head = ReplicateConv2d(in_features, width, 3)
        self.z_proj = nn.Linear(width, width)
        self.enc = nn.ModuleList(stage() for _ in range(scales))
        self.down = nn.ModuleList(nn.Conv2d(width, width, 2, stride=2) for _ in range(scales))
        self.mid = stage()
        self.up = nn.ModuleList(nn.ConvTranspose2d(width, width, 2, stride=2) for _ in range(scales))
        self.dec = nn.ModuleList(stage() for _ in range(scales))
        self.tail = ReplicateConv2d(width, 3, 3)
        nn.init.xavier_uniform_(self.tail.weight, gain=1e-2)

    def forward(self, image: torch.Tensor, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        x = self.head(features) + self.z_proj(z)[:, :, None, None]
        skips = []
        for enc, down in zip(self.enc, self.down):
            x = enc(x)
            skips.append(x)
            x = down(x)
        x = self.mid(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips)):
            x = dec(up(x) + skip)
        return image + self.tail(x)


# ------------------------------------------------------------------------------------------ GlobalNet


def safe_pow(x: torch.Tensor, exponent: torch.Tensor) -> torch.Tensor:
    """``sign(x) (|x| + 1e-12)^exponent`` (the official code's guard for negative bases)."""
    return torch.sign(x) * torch.pow(torch.abs(x) + 1e-12, exponent)


#: (r, g, b) -> (g, b, r) as a 1x1 convolution kernel.
_ROTATE = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0], [1.0, 0.0, 0.0]])[:, :, None, None]


class GlobalNet(nn.Module):
    """Per-image colour and tone: ``stages`` x (residual quadratic 3x10 transform, per-channel gamma).

    The coefficients come from strided convolutions + max-pooling + spatial mean of the image features,
    plus the conditioning vector z. Input image (N, 3, H, W) with H, W >= 128; same-shape output.
    """

    COEFFS = 30 + 9

    def __init__(self, in_features: int, width: int = 64, stages: int = 4, act: str = "elu"):
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv2d(in_features if i == 0 else width, width, 3, stride=2), _act(act), nn.MaxPool2d(2)]
        self.encoder = nn.Sequential(*layers)
        self.z_proj = nn.Linear(width, width)
        self.stage_embed = nn.Linear(stages, width)
        self.head = nn.Sequential(nn.Linear(width, width), nn.ELU(), nn.Linear(width, width), nn.ELU())
        self.last = nn.ModuleList(nn.Linear(width, self.COEFFS) for _ in range(stages))
        for layer in self.last:
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
        self.register_buffer("one_hot", torch.eye(stages), persistent=False)
        # a buffer, not a constant moved with .to(image): a weight computed from the input would make
        # torch.ao's FX quantization (Core ML w8a8) trace back into the graph inputs
        self.register_buffer("rotate", _ROTATE.clone(), persistent=False)

    def coefficients(self, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(N, stages * 39): per stage 30 quadratic weights (3 x 10, row-major) then 9 gamma parameters."""
        g = self.encoder(features).mean(dim=(2, 3)) + F.elu(self.z_proj(z))
        out = []
        for n, last in enumerate(self.last):
            w = g + F.elu(self.stage_embed(self.one_hot[n : n + 1]))
            out.append(F.elu(last(self.head(w))))
        return torch.cat(out, dim=1)

    def transform(self, image: torch.Tensor, coeffs: torch.Tensor) -> torch.Tensor:
        """Apply the stages of ``coeffs`` (N, S * 39) to ``image`` (N, 3, H, W).

        Written without slicing image channels and without 3-D tensors: the quadratic terms are
        ``[y*y, y*P(y), y]`` with P the fixed channel rotation (r, g, b) -> (g, b, r) as a 1x1 convolution, each
        output channel a broadcast multiply + channel sum with its (N, 9, 1, 1) weights, and the gamma
        parameters (N, 3, 1, 1) broadcast over the image, so that converters need no layout guesses here.
        """
        rotate = self.rotate
        y = image
        for s in range(coeffs.shape[1] // GlobalNet.COEFFS):
            c = coeffs[:, s * GlobalNet.COEFFS : (s + 1) * GlobalNet.COEFFS]
            terms = torch.cat([y * y, y * F.conv2d(y, rotate), y], dim=1)  # r2 g2 b2, rg gb br, r g b
            channels = []
            for ch in range(3):
                w = c[:, 10 * ch : 10 * ch + 9].reshape(-1, 9, 1, 1)
                bias = c[:, 10 * ch + 9 : 10 * ch + 10].reshape(-1, 1, 1, 1)
                channels.append((w * terms).sum(dim=1, keepdim=True) + bias)
            y = y + torch.cat(channels, dim=1)
            gamma = torch.exp(c[:, 30:33]).reshape(-1, 3, 1, 1)
            beta = torch.abs(c[:, 33:36]).reshape(-1, 3, 1, 1)
            alpha = torch.exp(c[:, 36:39]).reshape(-1, 3, 1, 1)
            num = safe_pow(alpha * y + beta, gamma) - safe_pow(beta, gamma)
            den = safe_pow(alpha + beta, gamma) - safe_pow(beta, gamma)
            y = num / den
        return y

    def forward(self, image: torch.Tensor, features: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.transform(image, self.coefficients(features, z))


# ------------------------------------------------------------------------------------------ the network


class CanoNet(nn.Module):
    """CanoNet (no weights): demosaic, white balance, clip, camera -> linear sRGB. Returns I_lin (N, 3, H, W).

    Inputs ``raw`` (N, 4, H/2, W/2), ``white_balance`` (N, 3), ``ccm`` (N, 18). Each output channel is a
    broadcast multiply of the image by its matrix row (N, 3, 1, 1) and a channel sum: no image-channel slices
    and no 3-D tensors reach the converters.
    """

    def __init__(self):
        super().__init__()
        self.demosaic = MalvarDemosaic()

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
        rgb = self.demosaic(raw)
        rgb = torch.clamp(rgb * white_balance.reshape(-1, 3, 1, 1), 0.0, 1.0)
        rows = [(ccm[:, 3 * c : 3 * c + 3].reshape(-1, 3, 1, 1) * rgb).sum(dim=1, keepdim=True) for c in range(3)]
        return torch.cat(rows, dim=1)


class InverseCanoNet(nn.Module):
    """Inverse CanoNet (no weights): linear sRGB (N, 3, H, W) -> sRGB->camera matrix (second half of ``ccm``)
    -> / white balance (no clip, as the official code) -> mosaic. Returns packed RGGB (N, 4, H/2, W/2)."""

    def __init__(self):
        super().__init__()
        self.register_buffer("mosaic", mosaic_kernel(), persistent=False)

    def forward(self, lin: torch.Tensor, white_balance: torch.Tensor, ccm: torch.Tensor) -> torch.Tensor:
        rows = [(ccm[:, 9 + 3 * c : 12 + 3 * c].reshape(-1, 3, 1, 1) * lin).sum(dim=1, keepdim=True) for c in range(3)]
        cam = torch.cat(rows, dim=1) / white_balance.reshape(-1, 3, 1, 1)
        return F.conv2d(cam, self.mosaic, stride=2)


class _ParamISPNets(nn.Module):
    """The learned parts both directions share: hand-crafted features, ParamNet, LocalNet, GlobalNet.

    Args:
        width: LocalNet/GlobalNet/ParamNet width (64 in the paper's code).
        scales, blocks: LocalNet U-Net depth and residual blocks per scale (2, 2).
        bins: soft-histogram bin counts ((4, 8, 16) -> 96 feature channels).
        act: "elu" (paper) or "relu".
        spatial_attention, channel_max: CBAM parts (both on in the paper).
        stages: GlobalNet quadratic + gamma stages (4).
        dropout: per-parameter dropout of the equalized optics while training (0.2).
    """

    def __init__(self, width: int = 64, scales: int = 2, blocks: int = 2, bins: Sequence[int] = (4, 8, 16),
                 act: str = "elu", spatial_attention: bool = True, channel_max: bool = True, stages: int = 4,
                 dropout: float = 0.2):
        super().__init__()
        if width % 2 or width < 4:
            raise ModelError(f"ParamISP width must be even and >= 4, got {width}")
        self.features = HandcraftedFeatures(bins)
        self.param_net = ParamNet(width, dropout)
        self.local_net = LocalNet(self.features.channels, width, scales, blocks, act, spatial_attention, channel_max)
        self.global_net = GlobalNet(self.features.channels, width, stages, act)


class ParamISP(_ParamISPNets):
    """ParamISP forward network: packed RGGB + camera parameters -> sRGB (see the module docstring).

    Arguments as :class:`_ParamISPNets`.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.canonet = CanoNet()

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, ccm: torch.Tensor,
                optics: torch.Tensor) -> torch.Tensor:
        lin = self.canonet(raw, white_balance, ccm)
        z = self.param_net(optics, white_balance, ccm)
        over = overexposure_mask(lin)
        local = self.local_net(lin, self.features(lin, over), z)
        return self.global_net(local, self.features(local, over), z)


class ParamISPInverse(_ParamISPNets):
    """ParamISP inverse network: sRGB + camera parameters -> clean packed RGGB (see the module docstring).

    Arguments as :class:`_ParamISPNets`; the same parameter count as :class:`ParamISP`.

    Shapes: ``srgb`` (N, 3, H, W) in [0, 1], H and W multiples of 4 and >= 128; ``white_balance`` (N, 3);
    ``ccm`` (N, 18); ``optics`` (N, 60). Output (N, 4, H/2, W/2).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.decanonet = InverseCanoNet()

    def forward(self, srgb: torch.Tensor, white_balance: torch.Tensor, ccm: torch.Tensor,
                optics: torch.Tensor) -> torch.Tensor:
        z = self.param_net(optics, white_balance, ccm)
        over = overexposure_mask(srgb)
        tone = self.global_net(srgb, self.features(srgb, over), z)
        local = self.local_net(tone, self.features(tone, over), z)
        return self.decanonet(local, white_balance, ccm)


# ------------------------------------------------------------------------------------------ registry

PARITY_FLOORS = {"fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
                 "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0}

TRAIN_CONFIG = {
    # A4: AdamW, lr 2e-4 (pre-training), x0.8 every 10 of 520 epochs -> scaled as a step decay by fraction
    "optimizer": "adamw", "lr": 2e-4, "weight_decay": 1e-12,
    "schedule": "step", "step_fraction": 10 / 520, "gamma": 0.8,
    "batch_size": 8, "crop": 448,
    # not applied by train.py: the code's L1 skips a 2-pixel border; the dropout lives in ParamNet
    "paper_loss_border": 2, "metadata_dropout": 0.2,
}

_SPEC = dict(
    family="paramisp",
    metadata_fields=("white_balance", "ccm", "optics"),
    metadata_encoding={"ccm": CAMERA_TO_SRGB, "optics": PARAMISP_OPTICS},
    size_multiple=2,  # packed; full-resolution H, W multiples of 4 (two U-Net halvings)
    min_size=64,  # GlobalNet: three unpadded stride-2 convs + max-pools need >= 128 full-resolution pixels
    export_size=(256, 256),
    parity_floors=dict(PARITY_FLOORS),
    loss="l1",
)

register_model(
    ModelSpec(
        name="paramisp",
        description="ParamISP (CVPR'24) forward: CanoNet + ParamNet (EXIF optics) + LocalNet + GlobalNet, 0.71M",
        weights=None,
        train_config=TRAIN_CONFIG,
        **_SPEC,
    ),
    ParamISP,
)

#: Digest A8's mobile variant: LocalNet width 32, one block per scale, ReLU, channel attention only (no 7x7
#: spatial attention, no channel max), 8-bin histograms (36 feature channels). ParamNet and GlobalNet keep
#: their structure at width 32.
LITE_CONFIG = {"width": 32, "blocks": 1, "bins": (8,), "act": "relu", "spatial_attention": False,
               "channel_max": False}

register_model(
    ModelSpec(
        name="paramisp-lite",
        description="ParamISP mobile variant: width 32, 1 block/scale, ReLU, channel attention, 8-bin histograms",
        weights="paramisp-lite",
        config=LITE_CONFIG,
        # short CPU runs: the paper's x0.8 per 10 of 520 epochs would end at 1e-5 of the peak, so cosine to 5%
        train_config={**TRAIN_CONFIG, "lr": 1e-3, "crop": 128, "schedule": "cosine", "min_factor": 0.05},
        **_SPEC,
    ),
    ParamISP,
)

_INVERSE_SPEC = {**_SPEC, "direction": "inverse", "scale": 1, "loss": "raw-l1"}

register_model(
    ModelSpec(
        name="paramisp-inverse",
        description="ParamISP (CVPR'24) inverse, sRGB -> RAW: GlobalNet + LocalNet + inverse CanoNet + mosaic, 0.71M",
        weights=None,
        train_config=TRAIN_CONFIG,
        **_INVERSE_SPEC,
    ),
    ParamISPInverse,
)

register_model(
    ModelSpec(
        name="paramisp-inverse-lite",
        description="ParamISP inverse mobile variant (sRGB -> RAW), the paramisp-lite preset",
        weights="paramisp-inverse-lite",
        config=LITE_CONFIG,
        train_config={**TRAIN_CONFIG, "lr": 1e-3, "crop": 128, "schedule": "cosine", "min_factor": 0.05},
        **_INVERSE_SPEC,
    ),
    ParamISPInverse,
)
