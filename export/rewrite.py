"""Export-friendly rewrites: numerically equivalent modules that map cleanly onto TFLite and Core ML ops.

:func:`export_friendly` returns a deep copy of a network in which modules whose operators convert badly are
replaced by equivalent ones built from plain convolutions and depth-to-space. Every rewrite is exact in real
arithmetic (float32 differences are rounding only; each has a test against the original within 1e-5):

- **Haar DWT** (a grouped conv, kernel 2, stride 2, 4x channel multiplier; a ``DEPTHWISE_CONV_2D`` with
  multiplier 4 whose delegate support varies) -> a dense stride-2 ``Conv2d`` whose weights are the Haar filters
  on the block diagonal (:class:`StridedHaarDWT`), a plain ``CONV_2D``.
- **Haar IWT** (a *grouped* ``ConvTranspose2d``, which onnx2tf cannot convert: TFLite ``TRANSPOSE_CONV`` has
  no groups) -> a 1x1 conv that applies the inverse-Haar mixing followed by depth-to-space
  (:class:`DepthToSpaceHaarIWT`).
- **Pixel shuffle** (PyTorch's CRD channel order, ``c * r^2 + i * r + j``) feeding from a convolution ->
  the convolution's output channels permuted into TFLite's DCR order (``(i * r + j) * C + c``) and a
  :class:`DepthToSpaceDCR` that exports as ONNX ``DepthToSpace(mode="DCR")``, i.e. one ``DEPTH_TO_SPACE``
  with no transpose around it. Used for the TFLite/ONNX target only: Core ML has a native ``pixel_shuffle``.
- **Fixed input-channel reorders** (LiteISPNet's :class:`~mobileisp.models.liteisp.AuthorsChannelOrder`, a
  slice + concat) -> folded into the first convolution's input channels (the element-wise gamma between
  them commutes with a channel permutation).
- **Reflection padding** is kept: onnx2tf maps ONNX ``Pad(mode="reflect")`` to ``MIRROR_PAD``, which the
  converter quantizes to int8 like any other op (checked on onnx2tf 1.29.24; a slice-and-concat version
  converted to 4x more ops with the same layout transposes around it, so it is not used).
- **Max-pool with ``ceil_mode``** (CameraNet's TF-style 3x3/2 "SAME" pool) -> :class:`SamePadMaxPool`, exported
  as ONNX ``MaxPool(auto_pad="SAME_UPPER")``: onnx2tf otherwise inserts a zero ``PAD`` before the pool, which
  is wrong wherever a border window holds only negative (LeakyReLU) values.
- **Concat-then-conv** (a conv whose input is a concatenation) -> :class:`SplitConv2d`, the sum of one conv
  per concatenated part: TFLite int8 ``CONCATENATION`` forces one scale on all inputs, so an image in [0, 1]
  concatenated to wide-range features loses its precision.

Family rewrites (whole-network wrappers that reuse the trained submodules):

- **CameraNet** (:class:`ExportCameraNet`): Restore-Net's output depth-to-space, the fixed XYZ -> sRGB matrix
  and Enhance-Net's space-to-depth collapse: the matrix is folded into Restore-Net's last 1x1 conv, the
  gamma is element-wise, and ``pixel_unshuffle(pixel_shuffle(z)) == z``, so the two nets meet at packed
  resolution with no layout op in between. The global branch becomes 1x1 convs on a ``(N, C, 1, 1)`` mean
  (no 2-D tensors, which onnx2tf's layout inference mis-transposes), with the mean taken over W then H so
  that no fp16 sum over a whole 12 MP feature map is formed. Skip concatenations become split convs.
- **DeepISP** (:class:`ExportDeepISP`): each low-level conv is split by input (image, features) and by output
  (3-channel image residual, features), removing every channel slice and concat and giving the image path
  its own quantization scale; the dense layer becomes a 1x1 conv on the pooled ``(N, C, 1, 1)`` features
  with the fixed colour-transform bias folded in, and the per-image quadratic transform is broadcast
  multiply-adds of ``(N, 3, 1, 1)`` coefficients with ``(N, 1, H, W)`` monomials (no reshape, transpose or
  dynamic matmul) on the centred image in [-0.5, 0.5].
"""

from __future__ import annotations

import copy
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.models.blocks import HAAR_FILTERS, HaarDWT, HaarIWT

#: Rewrite targets: ``tflite`` (via ONNX and onnx2tf), ``onnx`` (same graph), ``coreml``.
TARGETS = ("tflite", "onnx", "coreml")


# ------------------------------------------------------------------------------------------------ modules


class StridedHaarDWT(nn.Conv2d):
    """Haar DWT as a dense stride-2 convolution: (N, C, H, W) -> (N, 4C, H/2, W/2), same channel order.

    Weight ``[4c + k, c', i, j] = HAAR[k, i, j] * (c == c')``: the grouped filters of
    :class:`~mobileisp.models.blocks.HaarDWT` placed on the block diagonal of an ungrouped conv.
    """

    def __init__(self, channels: int):
        super().__init__(channels, 4 * channels, kernel_size=2, stride=2, bias=False)
        w = torch.zeros(4 * channels, channels, 2, 2)
        for c in range(channels):
            w[4 * c : 4 * c + 4, c] = HAAR_FILTERS
        with torch.no_grad():
            self.weight.copy_(w)
        self.requires_grad_(False)


class DepthToSpaceDCR(nn.Module):
    """Depth-to-space in TFLite/ONNX ``DCR`` order: (N, r*r*C, H, W) -> (N, C, r*H, r*W).

    Output ``[c, r*y + i, r*x + j] = input[(i*r + j) * C + c, y, x]``. In PyTorch it gathers the channels into
    pixel-shuffle (CRD) order and calls ``pixel_shuffle``; exported to ONNX it is a single
    ``DepthToSpace(mode="DCR")``, which onnx2tf maps to ``DEPTH_TO_SPACE`` without transposes.
    """

    def __init__(self, upscale: int = 2):
        super().__init__()
        self.upscale = int(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _DepthToSpaceDCRFn.apply(x, self.upscale)

    def extra_repr(self) -> str:
        return f"upscale={self.upscale}"


def dcr_to_crd(channels_out: int, upscale: int) -> torch.Tensor:
    """Index ``p`` with ``crd[k] = dcr[p[k]]``: for CRD channel ``c*r*r + s`` the DCR channel ``s*C + c``."""
    r2 = upscale * upscale
    return torch.tensor([s * channels_out + c for c in range(channels_out) for s in range(r2)])


class _DepthToSpaceDCRFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, upscale: int) -> torch.Tensor:  # noqa: D102
        c = x.shape[1] // (upscale * upscale)
        return F.pixel_shuffle(x[:, dcr_to_crd(c, upscale).to(x.device)], upscale)

    @staticmethod
    def symbolic(g, x, upscale: int):  # noqa: D102  (TorchScript-based torch.onnx.export)
        return g.op("DepthToSpace", x, blocksize_i=upscale, mode_s="DCR")


class DepthToSpaceHaarIWT(nn.Module):
    """Haar IWT as a 1x1 conv (inverse-Haar mixing) followed by depth-to-space: (N, 4C, H, W) -> (N, C, 2H, 2W).

    Args:
        channels: input channels (a multiple of 4), grouped as :class:`~mobileisp.models.blocks.HaarDWT`
            emits them (``[c0_LL, c0_1, c0_2, c0_3, c1_LL, ...]``).
        dcr: emit DCR order and use :class:`DepthToSpaceDCR` (TFLite/ONNX); otherwise CRD order and
            ``nn.PixelShuffle`` (Core ML, which has ``pixel_shuffle``).
    """

    def __init__(self, channels: int, dcr: bool = True):
        super().__init__()
        if channels % 4:
            raise ValueError(f"IWT needs a multiple of 4 channels, got {channels}")
        c = channels // 4
        self.mix = nn.Conv2d(channels, channels, kernel_size=1, bias=False)
        w = torch.zeros(channels, channels)
        for g in range(c):
            for k in range(4):
                for i in range(2):
                    for j in range(2):
                        s = 2 * i + j
                        row = s * c + g if dcr else 4 * g + s
                        w[row, 4 * g + k] = HAAR_FILTERS[k, i, j]
        with torch.no_grad():
            self.mix.weight.copy_(w[:, :, None, None])
        self.shuffle = DepthToSpaceDCR(2) if dcr else nn.PixelShuffle(2)
        self.requires_grad_(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shuffle(self.mix(x))


class SamePadMaxPool(nn.Module):
    """``max_pool2d(x, k, stride, ceil_mode=True)`` on even sizes = TF's ``SAME`` max-pool: (N, C, H, W) -> (N, C, H/s, W/s).

    PyTorch runs the ceil-mode pool; ONNX export writes ``MaxPool(auto_pad="SAME_UPPER")``, which onnx2tf maps
    to ``MAX_POOL_2D`` with SAME padding (padded cells never win), and Core ML maps ceil mode natively.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2):
        super().__init__()
        self.kernel_size, self.stride = int(kernel_size), int(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _SameMaxPoolFn.apply(x, self.kernel_size, self.stride)


class _SameMaxPoolFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, k: int, s: int) -> torch.Tensor:  # noqa: D102
        return F.max_pool2d(x, k, stride=s, ceil_mode=True)

    @staticmethod
    def symbolic(g, x, k: int, s: int):  # noqa: D102
        return g.op("MaxPool", x, auto_pad_s="SAME_UPPER", kernel_shape_i=[k, k], strides_i=[s, s])


class SplitConv2d(nn.Module):
    """``conv(cat(parts, dim=1))`` computed as ``sum_k conv_k(parts[k])`` with the weight split by input channel.

    Args:
        conv: the original convolution (ungrouped).
        sizes: channel count of each concatenated part, summing to ``conv.in_channels``.

    The first part's conv carries the bias; every part's conv keeps the original padding and stride.
    """

    def __init__(self, conv: nn.Conv2d, sizes: Sequence[int]):
        super().__init__()
        if conv.groups != 1 or sum(sizes) != conv.in_channels:
            raise ValueError(f"cannot split a conv with {conv.in_channels} inputs (groups {conv.groups}) into {sizes}")
        self.sizes = tuple(int(s) for s in sizes)
        self.convs = nn.ModuleList()
        start = 0
        for k, size in enumerate(self.sizes):
            part = nn.Conv2d(
                size, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                bias=(k == 0 and conv.bias is not None), padding_mode=conv.padding_mode,
            )
            with torch.no_grad():
                part.weight.copy_(conv.weight[:, start : start + size])
                if part.bias is not None:
                    part.bias.copy_(conv.bias)
            self.convs.append(part)
            start += size

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        out = self.convs[0](parts[0])
        for conv, x in zip(self.convs[1:], parts[1:]):
            out = out + conv(x)
        return out


# ------------------------------------------------------------------------------------------------ rewrites


def export_friendly(model: nn.Module, target: str = "tflite") -> nn.Module:
    """A deep copy of ``model`` (eval mode) with the rewrites above applied for ``target``.

    Args:
        model: a registered network (any ``nn.Module``); it is not modified.
        target: one of :data:`TARGETS`. ``tflite`` and ``onnx`` get DCR depth-to-space; ``coreml`` keeps
            ``pixel_shuffle``.

    Returns:
        The rewritten copy; for the same inputs it returns the same outputs (to float32 rounding).
    """
    if target not in TARGETS:
        raise ValueError(f"unknown rewrite target {target!r}; choose from {', '.join(TARGETS)}")
    out = copy.deepcopy(model).eval()
    dcr = target != "coreml"
    _replace(out, lambda m: isinstance(m, HaarDWT), lambda m: StridedHaarDWT(m.in_channels))
    _replace(out, lambda m: isinstance(m, HaarIWT), lambda m: DepthToSpaceHaarIWT(m.in_channels, dcr=dcr))
    if dcr:
        _pixel_shuffle_to_dcr(out)
    _fold_channel_reorder(out)
    out = _family_rewrite(out, dcr)
    return out.eval()


def _family_rewrite(model: nn.Module, dcr: bool) -> nn.Module:
    from mobileisp.models.cameranet import CameraNet
    from mobileisp.models.classical import ClassicalISP
    from mobileisp.models.deepisp import DeepISP
    from mobileisp.models.liteisp import LiteISPNet

    if isinstance(model, LiteISPNet):
        return ExportLiteISPNet(model)
    if isinstance(model, CameraNet):
        return ExportCameraNet(model, dcr=dcr)
    if isinstance(model, DeepISP):
        return ExportDeepISP(model, dcr=dcr)
    if isinstance(model, ClassicalISP):
        return ExportClassicalISP(model, dcr=dcr)
    return model


def _replace(root: nn.Module, match: Callable[[nn.Module], bool], make: Callable[[nn.Module], nn.Module]) -> int:
    """Replace every submodule for which ``match`` holds by ``make(old)``; returns the count."""
    count = 0
    for name, child in list(root.named_children()):
        if match(child):
            new = make(child)
            new.train(child.training)
            setattr(root, name, new)
            count += 1
        else:
            count += _replace(child, match, make)
    return count


def _pixel_shuffle_to_dcr(root: nn.Module) -> int:
    """In every ``nn.Sequential``, a ``Conv2d`` directly followed by ``nn.PixelShuffle`` becomes the same conv
    with its output channels permuted to DCR order, followed by :class:`DepthToSpaceDCR`."""
    count = 0
    for module in root.modules():
        if not isinstance(module, nn.Sequential):
            continue
        names = list(module._modules)
        for a, b in zip(names, names[1:]):
            conv, shuffle = module._modules[a], module._modules[b]
            if isinstance(conv, nn.Conv2d) and isinstance(shuffle, nn.PixelShuffle) and conv.groups == 1:
                r = shuffle.upscale_factor
                perm = dcr_to_crd(conv.out_channels // (r * r), r)
                inverse = torch.argsort(perm)  # DCR channel d takes CRD channel inverse[d]
                with torch.no_grad():
                    conv.weight.copy_(conv.weight[inverse])
                    if conv.bias is not None:
                        conv.bias.copy_(conv.bias[inverse])
                module._modules[b] = DepthToSpaceDCR(r)
                count += 1
    return count


def _fold_channel_reorder(model: nn.Module) -> bool:
    """Fold LiteISPNet's fixed input-channel reorder into its head convolution (exact)."""
    from mobileisp.models.liteisp import AuthorsChannelOrder

    reorder, head = getattr(model, "reorder", None), getattr(model, "head", None)
    if not isinstance(reorder, AuthorsChannelOrder) or not isinstance(head, nn.Conv2d):
        return False
    w = torch.zeros_like(head.weight)
    for j, src in enumerate(reorder.order):
        w[:, src] += head.weight[:, j]
    with torch.no_grad():
        head.weight.copy_(w)
    model.reorder = nn.Identity()
    return True


# ------------------------------------------------------------------------------------------------ families


def _depth_to_space(conv: nn.Conv2d, dcr: bool, upscale: int = 2) -> nn.Module:
    """Permute ``conv``'s outputs to DCR order (in place) and return the matching depth-to-space module."""
    if not dcr:
        return nn.PixelShuffle(upscale)
    inverse = torch.argsort(dcr_to_crd(conv.out_channels // (upscale * upscale), upscale))
    with torch.no_grad():
        conv.weight.copy_(conv.weight[inverse])
        if conv.bias is not None:
            conv.bias.copy_(conv.bias[inverse])
    return DepthToSpaceDCR(upscale)


def _linear_as_conv(linear: nn.Linear, extra_bias: torch.Tensor | None = None) -> nn.Conv2d:
    """``nn.Linear`` on (N, C) as a 1x1 conv on (N, C, 1, 1) (plus a constant added to the bias)."""
    conv = nn.Conv2d(linear.in_features, linear.out_features, 1)
    with torch.no_grad():
        conv.weight.copy_(linear.weight[:, :, None, None])
        bias = linear.bias if linear.bias is not None else torch.zeros(linear.out_features)
        conv.bias.copy_(bias + (0 if extra_bias is None else extra_bias))
    return conv


def _split_conv(conv: nn.Conv2d, in_sizes: Sequence[int], out_sizes: Sequence[int]) -> nn.ModuleList:
    """Split ``conv`` into a grid ``[out_part][in_part]`` of convs (bias on the first input part), padding 0.

    The caller pads each input part itself (reflection commutes with a channel split).
    """
    rows = nn.ModuleList()
    o0 = 0
    for o in out_sizes:
        row = nn.ModuleList()
        i0 = 0
        for k, i in enumerate(in_sizes):
            part = nn.Conv2d(i, o, conv.kernel_size, conv.stride, 0, conv.dilation, bias=(k == 0 and conv.bias is not None))
            with torch.no_grad():
                part.weight.copy_(conv.weight[o0 : o0 + o, i0 : i0 + i])
                if part.bias is not None:
                    part.bias.copy_(conv.bias[o0 : o0 + o])
            row.append(part)
            i0 += i
        rows.append(row)
        o0 += o
    return rows


def _apply_row(row: nn.ModuleList, parts: Sequence[torch.Tensor]) -> torch.Tensor:
    out = row[0](parts[0])
    for conv, x in zip(row[1:], parts[1:]):
        out = out + conv(x)
    return out


class _SafeMean(nn.Module):
    """Spatial mean of (N, C, H, W) as (N, C, 1, 1), reduced over W first, then H."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=3, keepdim=True).mean(dim=2, keepdim=True)


class _ExportGlobalScaleBias(nn.Module):
    """CameraNet's global branch on (N, C, 1, 1) tensors: ``act(x * s + b)``, s, b from 1x1 convs of the mean."""

    def __init__(self, glob: nn.Module):
        super().__init__()
        self.mean = _SafeMean()
        self.fc1 = _linear_as_conv(glob.fc1)
        self.fc_scale = _linear_as_conv(glob.fc_scale)
        self.fc_bias = _linear_as_conv(glob.fc_bias)

    def forward(self, feat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        from mobileisp.models.cameranet import _act

        g = _act(self.fc1(self.mean(feat)))
        return _act(x * self.fc_scale(g) + self.fc_bias(g))


class _ExportUpLevel(nn.Module):
    """CameraNet's expanding level with ``conv(cat(up(x), skip))`` as two convs on the reflect-padded parts."""

    def __init__(self, level: nn.Module):
        super().__init__()
        self.level = level  # keeps up, conv1, conv2 and the block logic
        conv = level.conv.conv if isinstance(level.conv, _ExportReflectConv) else level.conv
        self.pad = int(conv.dilation[0])
        self.head_convs = _split_conv(conv, (level.up.out_channels, conv.in_channels - level.up.out_channels),
                                      (conv.out_channels,))[0]

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        from mobileisp.models.cameranet import _act

        parts = [_reflect_pad_static(self.level.up(x), self.pad), _reflect_pad_static(skip, self.pad)]
        return self.level.block(_act(_apply_row(self.head_convs, parts)))


def _reflect_pad_static(x: torch.Tensor, p: int) -> torch.Tensor:
    """CameraNet's ``reflect_pad`` with a single ``MIRROR_PAD`` when ``p`` fits the map, else explicit slices.

    Where ``p`` >= the map size (a dilation-8 conv at a small bottleneck) the model pads in steps, which
    onnx2tf fuses into one ``MIRROR_PAD`` wider than the map (undefined in TFLite). Here the same periodic
    reflection (``numpy.pad(mode="reflect")``) is built from one-pixel slices and a concatenation: exact,
    and only on maps of a few pixels.
    """
    if p <= 0:
        return x
    h, w = int(x.shape[-2]), int(x.shape[-1])
    if p < min(h, w):
        return F.pad(x, (p, p, p, p), mode="reflect")
    import numpy as np

    for dim, n in ((3, w), (2, h)):
        idx = np.pad(np.arange(n), p, mode="reflect")
        x = torch.cat([x.narrow(dim, int(i), 1) for i in idx], dim)
    return x


class _ExportReflectConv(nn.Module):
    """CameraNet's ``ReflectConv2d`` with :func:`_reflect_pad_static`."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, 1, 0, conv.dilation,
                              bias=conv.bias is not None)
        self.conv.load_state_dict(conv.state_dict())
        self.pad = int(conv.dilation[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(_reflect_pad_static(x, self.pad))


class _ExportUNet(nn.Module):
    """CameraNet's ``UNet.forward`` with :class:`SamePadMaxPool` (the pool is functional in the original)."""

    def __init__(self, unet: nn.Module, same_pool: bool):
        super().__init__()
        self.enc, self.mid, self.glob, self.final = unet.enc, unet.mid, unet.glob, unet.final
        self.dec = nn.ModuleList(_ExportUpLevel(level) for level in unet.dec)
        if self.glob is not None:
            self.glob = _ExportGlobalScaleBias(self.glob)
        self.pool = SamePadMaxPool(3, 2) if same_pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for level in self.enc:
            x = level(x)
            skips.append(x)
            x = self.pool(x) if self.pool is not None else F.max_pool2d(x, 3, stride=2, ceil_mode=True)
        h = self.mid.head(x)
        x = self.mid.block(h)
        if self.glob is not None:
            x = self.glob(h, x)
        for j, level in enumerate(self.dec):
            x = level(x, skips[len(self.dec) - 1 - j])
        return self.final(x)


def _entries(matrix: torch.Tensor) -> list[list[torch.Tensor]]:
    """(N, 3, 3) -> 3x3 nested list of (N, 1, 1, 1) per-image scalars (one reshape, then channel slices)."""
    c = matrix.reshape(-1, 9, 1, 1)
    return [[c[:, 3 * r + k : 3 * r + k + 1] for k in range(3)] for r in range(3)]


def _apply_entries(m: Sequence[Sequence[torch.Tensor]], planes: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """Per-pixel ``out_r = sum_k m[r][k] * planes[k]`` with (N, 1, 1, 1) entries and (N, 1, H, W) planes."""
    return [m[r][0] * planes[0] + m[r][1] * planes[1] + m[r][2] * planes[2] for r in range(3)]


class ExportLiteISPNet(nn.Module):
    """LiteISPNet's forward with the input gamma written as ``max(x ** (1/2.2), eps ** (1/2.2))``.

    Equal to ``max(x, eps) ** (1/2.2)`` for the RAW range x >= 0 (the power is monotonic), but the graph now
    starts with ``POW``, which has no int8 kernel: in an int8 TFLite model with float I/O the linear RAW stays
    float32 through the gamma and is quantized only after it, instead of being rounded to 8 bits in linear
    light (which crushes the shadows) by a quantized ``MAXIMUM`` before it. The channel reorder and the DWT/IWT
    rewrites are applied to the submodules beforehand (see :func:`export_friendly`).
    """

    def __init__(self, net: nn.Module):
        super().__init__()
        from mobileisp.models.liteisp import GAMMA_EPS

        self.floor = float(GAMMA_EPS) ** (1 / 2.2)
        self.coord = net.coord
        self.reorder, self.head = net.reorder, net.head
        self.down1, self.down2, self.down3, self.middle = net.down1, net.down2, net.down3, net.middle
        self.up3, self.up2, self.up1, self.tail = net.up3, net.up2, net.up1, net.tail

    def forward(self, raw: torch.Tensor) -> torch.Tensor:
        from mobileisp.errors import ImageSizeError
        from mobileisp.models.liteisp import coordinate_grid

        if raw.shape[-2] % 8 or raw.shape[-1] % 8:
            raise ImageSizeError(f"LiteISPNet needs packed height and width divisible by 8, got {tuple(raw.shape[-2:])}")
        x = (self.reorder(raw) ** (1 / 2.2)).clamp(min=self.floor)
        h = self.head(x)
        d1 = self.down1(torch.cat([h, coordinate_grid(h)], dim=1) if self.coord else h)
        d2 = self.down2(d1)
        d3 = self.down3(d2)
        m = self.middle(d3) + d3
        u3 = self.up3(m) + d2
        u2 = self.up2(u3) + d1
        u1 = self.up1(u2) + h
        return self.tail(u1)


class ExportClassicalISP(nn.Module):
    """The classical pipeline (:class:`~mobileisp.models.classical.ClassicalISP`) on 4-D tensors only.

    White-balance gains and the per-image colour matrix become (N, 1, 1, 1) scalars (no (N, 3) or (N, 3, 3)
    arithmetic, which onnx2tf's layout inference mis-transposes), the demosaic's pixel shuffle becomes DCR
    depth-to-space, and the matrix product, row normalisation and adjugate inverse are element-wise.
    """

    def __init__(self, net: nn.Module, dcr: bool = True):
        super().__init__()
        self.tone_curve, self.oetf = net.tone_curve, net.oetf
        self.demosaic = nn.Conv2d(4, 12, 3, bias=False)
        with torch.no_grad():
            self.demosaic.weight.copy_(net.demosaic.kernel)
        self.to_space = _depth_to_space(self.demosaic, dcr)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        from mobileisp.metrics import linear_to_srgb
        from mobileisp.models.classical import _check_inputs, smoothstep

        _check_inputs(raw, white_balance, color_matrix)
        x = (raw * _wb_gains(white_balance)).clamp(0.0, 1.0)
        rgb = self.to_space(self.demosaic(F.pad(x, (1, 1, 1, 1), mode="reflect"))).clamp(0.0, 1.0)
        inv = _cam_to_srgb_entries(color_matrix)
        rgb = torch.cat(_apply_entries(inv, [rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]]), dim=1).clamp(0.0, 1.0)
        rgb = linear_to_srgb(rgb) if self.oetf == "srgb" else rgb.clamp_min(1e-8).pow(1.0 / 2.2)
        if self.tone_curve:
            rgb = smoothstep(rgb)
        return rgb.clamp(0.0, 1.0)


def _wb_gains(white_balance: torch.Tensor) -> torch.Tensor:
    """(N, 3) gains (R, G, B) -> (N, 4, 1, 1) per packed RGGB channel (R, G, G, B)."""
    wb = white_balance.reshape(-1, 3, 1, 1)
    return torch.cat([wb[:, 0:1], wb[:, 1:2], wb[:, 1:2], wb[:, 2:3]], dim=1)


def _cam_to_srgb_entries(color_matrix: torch.Tensor) -> list[list[torch.Tensor]]:
    """``classical.cam_to_srgb`` on (N, 1, 1, 1) entries: rows of ``CM @ SRGB_TO_XYZ`` normalised, inverted."""
    from mobileisp.metadata import SRGB_TO_XYZ

    cm, s = _entries(color_matrix), [[float(v) for v in row] for row in SRGB_TO_XYZ]
    rgb2cam = [[cm[r][0] * s[0][k] + cm[r][1] * s[1][k] + cm[r][2] * s[2][k] for k in range(3)] for r in range(3)]
    rgb2cam = [[v / (row[0] + row[1] + row[2]) for v in row] for row in rgb2cam]
    return _inverse_entries(rgb2cam)


def _inverse_entries(m: Sequence[Sequence[torch.Tensor]]) -> list[list[torch.Tensor]]:
    """Adjugate inverse of a 3x3 matrix of (N, 1, 1, 1) entries (as ``classical._inverse_3x3``)."""
    (a, b, c), (d, e, f), (g, h, i) = m
    co_a, co_b, co_c = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * co_a + b * co_b + c * co_c
    adj = [[co_a, c * h - b * i, b * f - c * e], [co_b, a * i - c * g, c * d - a * f], [co_c, b * g - a * h, a * e - b * d]]
    return [[v / det for v in row] for row in adj]


class _ExportCameraToXYZ(nn.Module):
    """CameraNet's XYZ front end on 4-D tensors only.

    ``color_matrix`` (N, 3, 3) and ``white_balance`` (N, 3) are reshaped once to (N, 9, 1, 1) / (N, 3, 1, 1);
    their entries are per-image (N, 1, 1, 1) scalars, the cofactor inverse and the white scaling are
    element-wise ops on them, and the mix is ``X = m00 R + m01 (Gr + Gb) / 2 + m02 B`` with broadcast
    multiplies: no 3-D tensor reaches onnx2tf, whose layout inference mis-handles (N, 3, 3) arithmetic.
    """

    def __init__(self, front: nn.Module):
        super().__init__()
        self.white = tuple(float(v) for v in front.white)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        m = _entries(color_matrix)  # m[r][k]: (N, 1, 1, 1)
        wb = white_balance.reshape(-1, 3, 1, 1)
        w0, w1, w2 = self.white
        # column k of inv(CM) scaled by the camera's response to D65 in channel k times the WB gain k
        col_scale = [(m[k][0] * w0 + m[k][1] * w1 + m[k][2] * w2) * wb[:, k : k + 1] for k in range(3)]
        cross = lambda a, b: (a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0])  # noqa: E731
        cols = (cross(m[1], m[2]), cross(m[2], m[0]), cross(m[0], m[1]))  # inverse columns times det
        det = m[0][0] * cols[0][0] + m[0][1] * cols[0][1] + m[0][2] * cols[0][2]
        coef = [col_scale[k] / det for k in range(3)]
        r_, gr, gb, b_ = raw[:, 0:1], raw[:, 1:2], raw[:, 2:3], raw[:, 3:4]
        g = 0.5 * (gr + gb)
        xyz = [(cols[0][j] * coef[0]) * r_ + (cols[1][j] * coef[1]) * g + (cols[2][j] * coef[2]) * b_ for j in range(3)]
        return torch.cat([*xyz, 0.5 * (gr - gb)], dim=1)


class ExportCameraNet(nn.Module):
    """CameraNet for export: ``(raw, white_balance, color_matrix) -> srgb``, equal to ``CameraNet.forward``.

    Args:
        net: a :class:`~mobileisp.models.cameranet.CameraNet` (its submodules are reused; weights of the
            two final convs are rewritten in place, so pass a copy).
        dcr: DCR depth-to-space at the output (TFLite/ONNX) instead of pixel shuffle (Core ML).

    ``float_prefix`` names the linear-light part (front end, Restore-Net, gamma), which activation
    quantization leaves in float.
    """

    float_prefix = ("linear",)

    def __init__(self, net: nn.Module, dcr: bool = True):
        super().__init__()
        from mobileisp.models.cameranet import _check_size

        self._check_size = _check_size
        from mobileisp.models.cameranet import ReflectConv2d

        _replace(net, lambda m: isinstance(m, ReflectConv2d), _ExportReflectConv)
        self.front = _ExportCameraToXYZ(net.front)
        self.restore_net = _ExportUNet(net.restore_net, same_pool=dcr)
        self.enhance_net = _ExportUNet(net.enhance_net, same_pool=dcr)
        m = net.xyz_to_srgb.weight[:, :, 0, 0]  # (3, 3) linear sRGB <- XYZ
        final = self.restore_net.final
        w, b = final.weight.detach().clone(), final.bias.detach().clone()
        with torch.no_grad():  # CRD channel c*4 + s: colour c at sub-pixel s; mix colours per sub-pixel
            for s in range(4):
                idx = torch.arange(3) * 4 + s
                final.weight[idx] = torch.einsum("ij,jkxy->ikxy", m, w[idx])
                final.bias[idx] = m @ b[idx]
        self.to_space = _depth_to_space(self.enhance_net.final, dcr)
        self.linear = _CameraNetLinear(self.front, self.restore_net)
        del self.front, self.restore_net

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        self._check_size(raw, 4, 1)
        return self.to_space(self.enhance_net(self.linear(raw, white_balance, color_matrix)))


class _CameraNetLinear(nn.Module):
    """CameraNet's linear-light part: XYZ front end and Restore-Net (matrix folded in), then the gamma.

    Returns the Enhance-Net input, ``max(linear sRGB, 1e-4) ** (1/2.2)`` at packed resolution (N, 12, h, w).
    """

    def __init__(self, front: nn.Module, restore_net: nn.Module):
        super().__init__()
        self.front, self.restore_net = front, restore_net

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        linear_packed = self.restore_net(self.front(raw, white_balance, color_matrix))  # CRD: colour c at 4c + s
        return linear_packed.clamp_min(1e-4) ** (1.0 / 2.2)


class _DeepISPFront(nn.Module):
    """DeepISP's fixed front end: (white balance, demosaic, colour matrix, gamma) -> image in [-0.5, 0.5]."""

    def __init__(self, net: nn.Module, dcr: bool):
        super().__init__()
        self.camera_frontend = bool(getattr(net, "camera_frontend", False))
        self.pad = nn.ReflectionPad2d(1)
        self.demosaic = nn.Conv2d(4, 12, 3, bias=True)
        with torch.no_grad():  # without the colour front end, the centring "- 0.5" becomes the conv's bias
            self.demosaic.weight.copy_(net.demosaic.weight)
            self.demosaic.bias.fill_(0.0 if self.camera_frontend else -0.5)
        self.to_space = _depth_to_space(self.demosaic, dcr)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None,
                color_matrix: torch.Tensor | None = None) -> torch.Tensor:
        if not self.camera_frontend:
            return self.to_space(self.demosaic(self.pad(raw)))
        if white_balance is None or color_matrix is None:
            raise ValueError("this DeepISP preset needs white_balance and color_matrix inputs")
        rgb = self.to_space(self.demosaic(self.pad(raw * _wb_gains(white_balance))))
        m = _cam_to_srgb_entries(color_matrix)
        linear = torch.cat(_apply_entries(m, [rgb[:, 0:1], rgb[:, 1:2], rgb[:, 2:3]]), dim=1)
        return linear.clamp_min(1e-6) ** (1.0 / 2.2) - 0.5


class ExportDeepISP(nn.Module):
    """DeepISP for export: ``(raw[, white_balance, color_matrix]) -> srgb``, equal to ``DeepISP.forward``.

    Args:
        net: a :class:`~mobileisp.models.deepisp.DeepISP` (weights are copied into split convs).
        dcr: DCR depth-to-space in the demosaic (TFLite/ONNX) instead of pixel shuffle (Core ML).

    ``float_prefix`` names the submodule that computes on linear light (the fixed front end up to its
    gamma); activation quantization leaves it in float (see :mod:`mobileisp.export.coreml`).
    """

    float_prefix = ("front",)

    def __init__(self, net: nn.Module, dcr: bool = True):
        super().__init__()
        from mobileisp.models.deepisp import QUADRATIC_TERMS

        self.min_size = net.min_size
        self.pad = nn.ReflectionPad2d(1)
        self.front = _DeepISPFront(net, dcr)
        width = net.stem.out_channels
        sizes = (3, width - 3)
        self.stem = _split_conv(net.stem, (3,), sizes)
        self.blocks = nn.ModuleList(_split_conv(b.conv, sizes, sizes) for b in net.blocks)
        feats = list(net.high.features)
        self.high_first = _split_conv(feats[0], sizes, (feats[0].out_channels,))[0] if feats else None
        self.high_rest = nn.Sequential(*feats[1:])
        self.mean = _SafeMean()
        bias = net.color.bias.reshape(-1) if net.color.bias is not None else None
        self.fc = _linear_as_conv(net.high.fc, bias)
        self.head = _QuadraticHead()
        self.n_terms = len(QUADRATIC_TERMS)

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor | None = None,
                color_matrix: torch.Tensor | None = None) -> torch.Tensor:
        from mobileisp.errors import ImageSizeError

        if raw.dim() != 4 or raw.shape[1] != 4 or min(raw.shape[-2:]) < self.min_size:
            raise ImageSizeError(f"deepisp needs packed RAW (N, 4, h, w) with h, w >= {self.min_size}, got {tuple(raw.shape)}")
        pad = self.pad
        image = self.front(raw, white_balance, color_matrix)
        padded = [pad(image)]
        a, f = (_apply_row(row, padded) for row in self.stem)
        for block in self.blocks:
            image = image + torch.tanh(a) / 10
            parts = [pad(image), pad(F.relu(f))]
            a, f = (_apply_row(row, parts) for row in block)
        h = _apply_row(self.high_first, [a, f]) if self.high_first is not None else torch.cat([a, f], 1)
        coef = self.fc(self.mean(self.high_rest(h)))  # (N, 30, 1, 1): term k, colour c at channel 3k + c
        return self.head(image, coef)


class _QuadraticHead(nn.Module):
    """``0.5 + sum_k coef_k * m_k(image)``: (N, 3, H, W) image and (N, 30, 1, 1) coefficients -> (N, 3, H, W)."""

    def forward(self, image: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
        r, g, b = image[:, 0:1], image[:, 1:2], image[:, 2:3]
        terms = (r, g, b, r * r, r * g, r * b, g * g, g * b, b * b)
        out = coef[:, 27:30] + 0.5
        for k, t in enumerate(terms):
            out = out + coef[:, 3 * k : 3 * k + 3] * t
        return out
