"""CameraNet: a two-stage ISP, Restore-Net (linear, XYZ) then Enhance-Net (tone and colour, sRGB).

Liang, Cai, Cao, Zhang, "CameraNet: A Two-Stage Framework for Effective Camera ISP Learning",
arXiv:1908.01481 / IEEE TIP 2021. Layers follow the official TF code (zhetongliang/CameraNet_official,
``Train_hdrp.py`` + ``my_model_pool.U_net2``): two 5-scale U-Nets of widths 32..512, LeakyReLU 0.2, reflect
pad + 3x3 conv, max-pool 3x3 stride 2 SAME, 2x2 stride-2 transposed conv without bias, concatenated skips,
a 1x1 conv to 12 channels and depth-to-space. Enhance-Net adds residual blocks, dilations (1, 2, 2, 4, 8)
and the global branch (mean over H, W -> FC 512->1024 -> FC 1024->1024 split into a per-channel scale and
bias at the bottleneck). 24,952,728 parameters, as the official graph.

Deviations, all explicit modules here:

- Paper front end: the camera->XYZ matrix ``inv(ColorMatrix)`` is applied to the packed RAW
  (:class:`CameraToXYZ`); the official code feeds raw packed Bayer instead. The mapping is an invertible
  per-image 4x4 mix, so no mosaic information is lost and the parameter count is unchanged.
- Paper inter-stage matrix: Restore-Net predicts XYZ, a fixed XYZ->linear sRGB matrix follows
  (:class:`FixedColorMatrix`), and Enhance-Net applies the official ``max(x, 1e-4) ** (1 / 2.2)``.
  "restored" (the stage-1 output that the restoration loss sees) is therefore linear sRGB.
- Depth-to-space / space-to-depth use PyTorch's channel order (TF weights would need a permutation).
- The ABN of the paper is absent, as in the official code.

Size: the U-Net halves 4 times, so the packed RAW height and width must be multiples of 16 and at least 32
(full-resolution RAW: multiples of 32, at least 64x64); other sizes raise :class:`ImageSizeError`
(``mobileisp.infer`` pads by reflection and crops back, per ``ModelSpec.size_multiple``). Where a dilated
conv's reflect padding is as wide as its (small) feature map, it is applied in steps (numpy's periodic "reflect"), which
equals plain reflection wherever the official code is defined.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.errors import ImageSizeError, ModelError
from mobileisp.metadata import SRGB_TO_XYZ
from mobileisp.models.registry import ModelSpec, register_model

SLOPE = 0.2
BASE_WIDTHS = (32, 64, 128, 256, 512)
ENHANCE_DILATIONS = (1, 2, 2, 4, 8)
#: CIE XYZ of the D65 white (Y = 1).
XYZ_D65 = (0.95047, 1.0, 1.08883)
PARITY_FLOORS = {
    "fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0,
    "coreml-fp16": 45.0, "coreml-w8": 40.0, "coreml-w8a8": 30.0,
}


def _act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, SLOPE)


def reflect_pad(x: torch.Tensor, p: int) -> torch.Tensor:
    """Reflect-pad H and W by ``p`` on each side, in steps of at most size - 1 per axis.

    One ``F.pad`` when ``p`` is smaller than the size; otherwise the periodic mirror extension that
    ``numpy.pad(mode="reflect")`` also produces. Sizes are static, so the loop unrolls at export.
    """
    if p > 0 and min(x.shape[-2:]) < 2:
        raise ImageSizeError(f"reflect padding needs feature maps of at least 2x2, got {tuple(x.shape[-2:])}")
    ph = pw = p
    while ph > 0 or pw > 0:
        sh, sw = min(ph, x.shape[-2] - 1), min(pw, x.shape[-1] - 1)
        x = F.pad(x, (sw, sw, sh, sh), mode="reflect")
        ph, pw = ph - sh, pw - sw
    return x


class ReflectConv2d(nn.Conv2d):
    """3x3 conv (stride 1, optional dilation) on a reflect-padded input; output has the input's size."""

    def __init__(self, cin: int, cout: int, dilation: int = 1):
        super().__init__(cin, cout, 3, padding=0, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(reflect_pad(x, self.dilation[0]))


class CameraToXYZ(nn.Module):
    """Packed camera RGGB -> packed XYZ, the paper's ``C_xyz = inv(ColorMatrix)`` front end.

    Each packed pixel's (R, (Gr + Gb) / 2, B) is mapped to (X, Y, Z); (Gr - Gb) / 2 is kept as the 4th channel,
    so the map is invertible. The matrix is scaled so that the camera's D65 white with its largest channel at 1
    maps to Y = 1, which makes it independent of how the file normalised ``color_matrix``. The 3x3 inverse is
    written with cofactors (elementwise ops only) so the front end exports.

    Args (forward):
        raw: (N, 4, h, w) RGGB in [0, 1], not white balanced.
        white_balance: (N, 3) as-shot gains (R, G, B), G = 1.
        color_matrix: (N, 3, 3) XYZ (D65) -> camera RGB, DNG ``ColorMatrix`` convention.

    Returns:
        (N, 4, h, w): X, Y, Z, (Gr - Gb) / 2.
    """

    def __init__(self):
        super().__init__()
        self.register_buffer("white", torch.tensor(XYZ_D65, dtype=torch.float32), persistent=False)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        cam_white = (color_matrix * self.white).sum(-1)  # (N, 3): the camera's response to D65 white
        # XYZ = inv(CM) diag(CM . XYZ_D65) (gains * raw): white-balanced neutral (1, 1, 1) lands on D65 white
        m = _inv3x3(color_matrix) * (cam_white * white_balance)[:, None, :]
        r, gr, gb, b = raw[:, 0:1], raw[:, 1:2], raw[:, 2:3], raw[:, 3:4]
        g = 0.5 * (gr + gb)
        xyz = m[:, :, 0:1, None] * r + m[:, :, 1:2, None] * g + m[:, :, 2:3, None] * b
        return torch.cat([xyz, 0.5 * (gr - gb)], dim=1)


def _inv3x3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of (N, 3, 3) matrices from cofactors: columns r1 x r2, r2 x r0, r0 x r1 over det (slices, no gather)."""
    r0, r1, r2 = m[:, 0:1], m[:, 1:2], m[:, 2:3]  # (N, 1, 3) rows
    c0, c1, c2 = _cross(r1, r2), _cross(r2, r0), _cross(r0, r1)
    det = (r0 * c0).sum(-1, keepdim=True)
    return torch.cat([c0, c1, c2], dim=1).transpose(1, 2) / det


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    a0, a1, a2 = a[..., 0:1], a[..., 1:2], a[..., 2:3]
    b0, b1, b2 = b[..., 0:1], b[..., 1:2], b[..., 2:3]
    return torch.cat([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=-1)


class FixedColorMatrix(nn.Module):
    """A constant per-pixel 3x3 colour matrix as a 1x1 conv: (N, 3, H, W) -> (N, 3, H, W)."""

    def __init__(self, matrix: np.ndarray):
        super().__init__()
        weight = torch.as_tensor(np.asarray(matrix, dtype=np.float32)).reshape(3, 3, 1, 1)
        self.register_buffer("weight", weight, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight)


class Level(nn.Module):
    """One U-Net scale: ``conv`` (+act), then the block ``conv1`` (+act) -> ``conv2`` [+ residual] (+act).

    Args:
        cin: input channels.
        widths: out-channels of (conv, conv1, conv2); with ``residual`` conv2 must equal conv.
        dilation: of conv1 (and of conv2 when ``dilate_second``), as the official U_net2.
        residual: Enhance-Net's in-block skip.
        dilate_second: the contracting levels dilate both block convs; bottleneck and expanding levels one.
        final_act: False only for the last expanding level (linear into the 1x1 output conv).
    """

    def __init__(self, cin, widths, dilation=1, residual=False, dilate_second=True, final_act=True):
        super().__init__()
        c0, c1, c2 = widths
        if residual and c2 != c0:
            raise ModelError(f"residual level needs conv2 width {c2} == conv width {c0}")
        self.conv = ReflectConv2d(cin, c0)
        self.conv1 = ReflectConv2d(c0, c1, dilation)
        self.conv2 = ReflectConv2d(c1, c2, dilation if dilate_second else 1)
        self.residual, self.final_act = residual, final_act

    def head(self, x: torch.Tensor) -> torch.Tensor:
        return _act(self.conv(x))

    def block(self, h: torch.Tensor) -> torch.Tensor:
        y = self.conv2(_act(self.conv1(h)))
        if self.residual:
            y = y + h
        return _act(y) if self.final_act else y

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(self.head(x))


class UpLevel(Level):
    """Expanding level: 2x2 stride-2 transposed conv (no bias) -> concat skip -> :class:`Level`."""

    def __init__(self, cin, cskip, up_width, widths, **kw):
        super().__init__(up_width + cskip, widths, **kw)
        self.up = nn.ConvTranspose2d(cin, up_width, 2, stride=2, bias=False)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        return self.block(self.head(torch.cat([self.up(x), skip], dim=1)))


class GlobalScaleBias(nn.Module):
    """Eq. 5's global branch: ``act(x * s + b)`` with (s, b) from FCs on the spatial mean of ``feat``.

    The official second FC (hidden -> 2C) is split into ``fc_scale`` and ``fc_bias`` (same parameters), which
    keeps channel pruning of C consistent. The mean is a plain reduction over H and W.
    """

    def __init__(self, cin: int, hidden: int, cout: int):
        super().__init__()
        self.fc1 = nn.Linear(cin, hidden)
        self.fc_scale = nn.Linear(hidden, cout)
        self.fc_bias = nn.Linear(hidden, cout)

    def forward(self, feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        g = _act(self.fc1(feat.mean(dim=(2, 3))))
        return _act(x * self.fc_scale(g)[:, :, None, None] + self.fc_bias(g)[:, :, None, None])


class UNet(nn.Module):
    """``U_net2`` with num_down=4, one block of one conv per level, 12 outputs.

    The width map is keyed by module path: ``enc.<i>.conv|conv1|conv2``, ``mid.*``, ``glob.fc1`` and
    ``dec.<j>.up|conv|conv1|conv2`` (``final`` stays 12; ``glob.fc_scale``/``fc_bias`` follow ``mid.conv2``).
    """

    def __init__(self, cin, widths: Mapping[str, int], dilations=(1,) * 5, residual=False, global_branch=False):
        super().__init__()

        def lw(name):
            return tuple(widths[f"{name}.{c}"] for c in ("conv", "conv1", "conv2"))

        self.enc = nn.ModuleList()
        for i in range(4):
            self.enc.append(Level(cin, lw(f"enc.{i}"), dilations[i], residual))
            cin = self.enc[i].conv2.out_channels
        self.mid = Level(cin, lw("mid"), dilations[4], residual, dilate_second=False)
        mid_out = self.mid.conv2.out_channels
        self.glob = GlobalScaleBias(self.mid.conv.out_channels, widths["glob.fc1"], mid_out) if global_branch else None
        self.dec = nn.ModuleList()
        cin = mid_out
        for j in range(4):
            i = 3 - j
            skip = self.enc[i].conv2.out_channels
            up = UpLevel(cin, skip, widths[f"dec.{j}.up"], lw(f"dec.{j}"), dilation=dilations[i], residual=residual,
                         dilate_second=False, final_act=j < 3)
            self.dec.append(up)
            cin = self.dec[j].conv2.out_channels
        self.final = nn.Conv2d(cin, 12, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.enc:
            x = level(x)
            skips.append(x)
            x = F.max_pool2d(x, 3, stride=2, ceil_mode=True)  # = TF 3x3/2 SAME on even sizes
        h = self.mid.head(x)
        x = self.mid.block(h)
        if self.glob is not None:
            x = self.glob(h, x)
        for j, level in enumerate(self.dec):
            x = level(x, skips[3 - j])
        return self.final(x)


def default_widths(global_branch: bool) -> dict[str, int]:
    """Official U-Net widths: 32 * 2**level per conv, 512 at the bottleneck, FC hidden 1024."""
    w: dict[str, int] = {}
    for i in range(4):
        w.update({f"enc.{i}.{c}": BASE_WIDTHS[i] for c in ("conv", "conv1", "conv2")})
        w.update({f"dec.{3 - i}.{c}": BASE_WIDTHS[i] for c in ("up", "conv", "conv1", "conv2")})
    w.update({f"mid.{c}": BASE_WIDTHS[4] for c in ("conv", "conv1", "conv2")})
    if global_branch:
        w["glob.fc1"] = 2 * BASE_WIDTHS[4]
    return w


class CameraNet(nn.Module):
    """Restore-Net (packed XYZ -> full-res XYZ) + Enhance-Net (gamma'd sRGB -> sRGB).

    Args:
        widths: per-layer out-channels overriding the official ones, keyed by module path
            (``restore_net.enc.0.conv``, ``enhance_net.glob.fc1``, ...; see :class:`UNet`). A pruned CameraNet
            is this class with a width map from ``models/widths/``.

    Inputs (forward): ``raw`` (N, 4, h, w) packed RGGB in [0, 1] with h, w multiples of 16 and >= 32, and
    ``white_balance`` (N, 3) as-shot gains and ``color_matrix`` (N, 3, 3) XYZ->camera. Output: sRGB (N, 3, 2h, 2w), nominally [0, 1], not clipped.
    """

    def __init__(self, widths: Mapping[str, int] | None = None):
        super().__init__()
        w = {f"restore_net.{k}": v for k, v in default_widths(False).items()}
        w.update({f"enhance_net.{k}": v for k, v in default_widths(True).items()})
        unknown = sorted(set(widths or {}) - set(w))
        if unknown:
            raise ModelError(f"unknown CameraNet layers in width map: {', '.join(unknown)}")
        w.update(widths or {})
        self.front = CameraToXYZ()
        self.restore_net = UNet(4, _sub(w, "restore_net."))
        self.xyz_to_srgb = FixedColorMatrix(np.linalg.inv(SRGB_TO_XYZ))
        self.enhance_net = UNet(12, _sub(w, "enhance_net."), ENHANCE_DILATIONS, residual=True, global_branch=True)
        self._init_like_slim()

    def _init_like_slim(self) -> None:
        """Xavier-uniform weights and zero biases, TF-slim's conv2d/fully_connected defaults that the official
        code trains with. PyTorch's default (Kaiming-uniform with a=sqrt(5)) shrinks the gradient 10-100x per
        U-Net level, which leaves the bottleneck and the global branch nearly frozen."""
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def restore(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        """Stage 1: packed RAW (N, 4, h, w) -> restored linear sRGB (N, 3, 2h, 2w) (white balanced, denoised)."""
        _check_size(raw, 4, 1)
        xyz = F.pixel_shuffle(self.restore_net(self.front(raw, white_balance, color_matrix)), 2)
        return self.xyz_to_srgb(xyz)

    def enhance(self, linear: torch.Tensor) -> torch.Tensor:
        """Stage 2: linear sRGB (N, 3, H, W), H and W multiples of 32 -> sRGB (N, 3, H, W).

        Trained on the restoration target as input (step 2 of the paper) and on :meth:`restore`'s output.
        """
        _check_size(linear, 3, 2)
        x = F.pixel_unshuffle(linear.clamp_min(1e-4) ** (1.0 / 2.2), 2)
        return F.pixel_shuffle(self.enhance_net(x), 2)

    def forward_stages(self, raw: torch.Tensor, white_balance: torch.Tensor,
                       color_matrix: torch.Tensor) -> dict[str, torch.Tensor]:
        """Both stage outputs for the losses: ``{"restored": linear sRGB, "srgb": sRGB}``, each (N, 3, 2h, 2w)."""
        restored = self.restore(raw, white_balance, color_matrix)
        return {"restored": restored, "srgb": self.enhance(restored)}

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        return self.enhance(self.restore(raw, white_balance, color_matrix))


def _sub(widths: Mapping[str, int], prefix: str) -> dict[str, int]:
    return {k[len(prefix):]: v for k, v in widths.items() if k.startswith(prefix)}


def _check_size(x: torch.Tensor, channels: int, factor: int) -> None:
    """``x`` is (N, channels, h, w) at ``factor`` x packed resolution; packed h, w multiples of 16 and >= 32."""
    if x.dim() != 4 or x.shape[1] != channels:
        raise ImageSizeError(f"cameranet needs a (N, {channels}, H, W) tensor, got shape {tuple(x.shape)}")
    h, w = (int(s) // factor for s in x.shape[-2:])
    if h % 16 or w % 16 or min(h, w) < 32 or x.shape[-1] % factor or x.shape[-2] % factor:
        raise ImageSizeError(
            f"cameranet needs RAW height and width that are multiples of 32 and at least 64, "
            f"got {2 * h}x{2 * w} (pad the packed RAW to multiples of 16)"
        )


# --- registration --------------------------------------------------------------------------------------

TRAIN_CONFIG = {
    # official code's Adam (the paper text says beta1 0.9, beta2 0.99)
    "optimizer": "adam", "lr": 1e-4, "betas": (0.5, 0.999), "eps": 1e-4,
    # Eq. 9: joint loss = lambda * L_rest + (1 - lambda) * L_enh; paper presets per dataset
    "lambda_restore": 0.5,
    "lambda_restore_presets": {"hdrplus": 0.5, "sid": 0.9, "fivek": 0.1},
    # restore: Restore-Net alone on L_rest; enhance: Enhance-Net alone on enhance(linear target);
    # joint: both nets, cascaded, on the Eq. 9 loss
    "stages": ["restore", "enhance", "joint"],
    "stage_epochs": {"restore": 1000, "enhance": 600, "joint": 200},  # HDR+ schedule; ratios for scaling
    "stage_lr": {"restore": 1e-4, "enhance": 1e-4, "joint": 1e-5},
    "lr_decay": {"gamma": 0.1, "at_fraction": 0.75, "stages": ["restore", "enhance"]},  # joint: fixed lr
    "restore_log_eps": 1e-3,  # official: log(max(x, 0) + 1e-3)
    "batch_size": 1, "crop": 512,  # full-resolution RAW pixels (official; paper 1536)
    "augment": ["rot90", "hflip", "vflip"],
}

register_model(
    ModelSpec(
        name="cameranet",
        family="cameranet",
        description="CameraNet (TIP'21): Restore-Net + Enhance-Net U-Nets, XYZ front end, 25.0M params",
        metadata_fields=("white_balance", "color_matrix"),
        size_multiple=16,
        min_size=32,
        export_size=(256, 256),
        parity_floors=dict(PARITY_FLOORS),
        weights=None,
        loss="cameranet",
        train_config=TRAIN_CONFIG,
    ),
    CameraNet,
)


def _pruned(widths: str = "cameranet-pruned") -> CameraNet:
    from mobileisp.models.pruning import load_width_map

    return CameraNet(widths=load_width_map(widths)["widths"])


register_model(
    ModelSpec(
        name="cameranet-pruned",
        family="cameranet",
        description="CameraNet channel-pruned with torch-pruning (width map in models/widths/), 3.0M params",
        metadata_fields=("white_balance", "color_matrix"),
        size_multiple=16,
        min_size=32,
        # 128x128: onnx2tf 1.29's layout inference mis-converts this network at 256x256 and 288x288 (TFLite fp32
        # parity 37 / 46 dB; its dummy inference fails in a conv2d_transpose with "input depth must be evenly
        # divisible by filter depth"), while 128x128 converts exactly (138 dB). Parity validation refuses the larger
        # sizes (exit 3), so nothing wrong ships; run it tiled at 128 or fix the conversion (see the note).
        export_size=(128, 128),
        parity_floors=dict(PARITY_FLOORS),
        weights="cameranet-pruned",
        config={"widths": "cameranet-pruned"},
        loss="cameranet",
        # Fine-tune after make_pruned_cameranet (paper A8: re-run the joint step), changed where 300-step
        # trials on the pruned net measured a gain (held-out PSNR, same init):
        # - lr 5e-4 decayed x0.1 at 75%, not the paper's fixed 1e-5: ~88% of the channels were removed,
        #   so this is a re-training (1e-3 and beta1 0.9 were no better at 150 steps);
        # - Adam eps 1e-8 (PyTorch's default), not the official 1e-4, which is larger than the deep layers'
        #   gradient RMS and stalls them;
        # - lambda 0.1 (the paper's FiveK preset) instead of 0.5: the restore term's log-L1 is ~10x the sRGB
        #   L1 and dominated the gradient (15.2 vs 15.0 dB);
        # - the enhance term adds 0.15 * (1 - SSIM) on sRGB (LiteISPNet's loss on the output the user sees),
        #   which lifted SSIM (0.33 vs 0.31) at equal PSNR.
        # Shipped weights: 4,800 steps, batch 8, crop 128 (decay at 3,600), 21.40 dB held-out; at lr 5e-4 the
        # fine-tune diverged after ~4,100 steps (beta1 0.5, eps 1e-8), so do not run it longer undecayed.
        train_config={
            **TRAIN_CONFIG,
            "eps": 1e-8,
            "lambda_restore": 0.1,
            "enhance_ssim_weight": 0.15,
            "init": "mobileisp.models.pruning.make_pruned_cameranet(trained cameranet)",
            "stages": ["joint"],
            "stage_lr": {"joint": 5e-4},
            "lr_decay": {"gamma": 0.1, "at_fraction": 0.75, "stages": ["joint"]},
        },
    ),
    _pruned,
)
