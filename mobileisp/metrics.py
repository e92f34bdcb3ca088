"""Image-quality metrics for sRGB outputs: PSNR, SSIM, CIEDE2000, CIE76, max error.

Every metric takes a prediction and a target of the same shape, either torch tensors ``(N, 3, H, W)`` or
``(3, H, W)`` (channels first), or numpy arrays ``(H, W, 3)`` or ``(N, H, W, 3)`` (channels last), with
values in [0, 1] (integer numpy arrays are divided by their dtype's maximum). Each returns a tensor of
shape ``(N,)``, one value per image (N = 1 for a single image): float64 for PSNR, SSIM and max error,
the input's float dtype for the colour differences (float64 for numpy input). :func:`compare` averages
them over the batch into an :class:`ImageMetrics`.

The colour functions are written in torch so that a loss can use them: gradients stay finite at
black pixels, at neutral (a = b = 0) colours and at identical inputs.

SSIM is pytorch-msssim's ``ssim`` (Gaussian window 11 x 11, sigma 1.5, K1 = 0.01, K2 = 0.03, valid
convolution, mean over channels), which matches ``skimage.metrics.structural_similarity`` with
``gaussian_weights=True, sigma=1.5, use_sample_covariance=False``.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from mobileisp.errors import ImageSizeError
from mobileisp.metadata import SRGB_TO_XYZ

#: SSIM Gaussian window (Wang et al. 2004): size, sigma, and the stabilising constants K1, K2.
SSIM_WIN_SIZE = 11
SSIM_WIN_SIGMA = 1.5
SSIM_K = (0.01, 0.03)

# CIE constants for XYZ -> L*a*b* (exact rational forms of 0.008856 and 903.3).
_LAB_EPS = 216.0 / 24389.0
_LAB_KAPPA = 24389.0 / 27.0
# sRGB primaries with the D65 white (the row sums of SRGB_TO_XYZ, so sRGB white has a* = b* = 0).
_WHITE_D65 = SRGB_TO_XYZ.sum(axis=1)


@dataclass(frozen=True)
class ImageMetrics:
    """Batch-mean quality of a prediction against a target.

    Attributes:
        psnr: peak signal-to-noise ratio in dB (data range 1); ``inf`` when the images are identical.
        ssim: structural similarity in [-1, 1].
        delta_e2000: mean CIEDE2000 colour difference (CIELAB, D65).
        max_abs_error: largest absolute per-pixel, per-channel difference, in [0, 1].
        delta_e76: mean CIE76 colour difference (Euclidean in CIELAB, D65), the metric CRISPnet reports.
    """

    psnr: float
    ssim: float
    delta_e2000: float
    max_abs_error: float
    delta_e76: float

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def as_nchw(image: torch.Tensor | np.ndarray, name: str = "image") -> torch.Tensor:
    """Convert an image or batch to a float tensor of shape (N, 3, H, W).

    Args:
        image: torch ``(N, 3, H, W)`` or ``(3, H, W)``; numpy ``(H, W, 3)`` or ``(N, H, W, 3)``. Float
            numpy arrays become float64 tensors; integer arrays are scaled by their dtype's maximum.
        name: what to call the image in error messages.

    Raises:
        ImageSizeError: the shape is not one of the above.
    """
    if isinstance(image, np.ndarray):
        arr = image
        if np.issubdtype(arr.dtype, np.integer):
            arr = arr.astype(np.float64) / np.iinfo(arr.dtype).max
        elif arr.dtype != np.float32:
            arr = arr.astype(np.float64)
        if arr.ndim == 3 and arr.shape[-1] == 3:
            arr = arr[None]
        if arr.ndim != 4 or arr.shape[-1] != 3:
            raise ImageSizeError(f"{name}: expected a numpy array (H, W, 3) or (N, H, W, 3), got {arr.shape}")
        return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2)))
    if not isinstance(image, torch.Tensor):
        raise ImageSizeError(f"{name}: expected a torch tensor or numpy array, got {type(image).__name__}")
    t = image if image.dtype.is_floating_point else image.float()
    if t.dim() == 3:
        t = t.unsqueeze(0)
    if t.dim() != 4 or t.shape[1] != 3:
        raise ImageSizeError(f"{name}: expected a tensor (N, 3, H, W) or (3, H, W), got {tuple(image.shape)}")
    return t


def _pair(pred: Any, target: Any) -> tuple[torch.Tensor, torch.Tensor]:
    p, t = as_nchw(pred, "prediction"), as_nchw(target, "target")
    if p.shape != t.shape:
        raise ImageSizeError(f"prediction {tuple(p.shape)} and target {tuple(t.shape)} differ in shape (N, 3, H, W)")
    dtype = torch.promote_types(p.dtype, t.dtype)
    return p.to(dtype), t.to(dtype)


def psnr(pred: Any, target: Any, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, in dB: ``10 log10(data_range^2 / MSE)``.

    Returns:
        float64 tensor (N,); ``inf`` for an image identical to its target.
    """
    p, t = _pair(pred, target)
    mse = (p.double() - t.double()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(data_range**2 / mse)


def ssim(pred: Any, target: Any, data_range: float = 1.0) -> torch.Tensor:
    """Mean structural similarity per image (pytorch-msssim, Gaussian 11 x 11, sigma 1.5).

    Returns:
        float64 tensor (N,), the SSIM map averaged over the valid area and the 3 channels.

    Raises:
        ImageSizeError: an image side is shorter than the 11-pixel window.
    """
    from pytorch_msssim import ssim as _ssim

    p, t = _pair(pred, target)
    if min(p.shape[-2:]) < SSIM_WIN_SIZE:
        size = tuple(p.shape[-2:])
        raise ImageSizeError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels, got {size}")
    values = _ssim(p, t, data_range=data_range, size_average=False, win_size=SSIM_WIN_SIZE,
                   win_sigma=SSIM_WIN_SIGMA, K=SSIM_K)
    return values.double()


def max_abs_error(pred: Any, target: Any) -> torch.Tensor:
    """Largest absolute difference per image, over pixels and channels. Returns float64 (N,)."""
    p, t = _pair(pred, target)
    return (p - t).abs().flatten(1).amax(1).double()


def srgb_to_linear(srgb: torch.Tensor) -> torch.Tensor:
    """Inverse sRGB OETF (IEC 61966-2-1), elementwise. Input in [0, 1]; any shape."""
    # Clamp inside the power so that its gradient is finite on the linear branch too.
    high = ((srgb.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4)
    return torch.where(srgb <= 0.04045, srgb / 12.92, high)


def linear_to_srgb(linear: torch.Tensor) -> torch.Tensor:
    """sRGB OETF (IEC 61966-2-1), elementwise. Input linear light in [0, 1]; any shape."""
    high = 1.055 * linear.clamp_min(0.0031308).pow(1.0 / 2.4) - 0.055
    return torch.where(linear <= 0.0031308, 12.92 * linear, high)


def srgb_to_lab(srgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) in [0, 1] -> CIELAB (N, 3, H, W): L* in [0, 100], a*, b* (D65 white).

    sRGB is linearised, mapped to XYZ with the sRGB primaries, and normalised by the D65 white point.
    """
    lin = srgb_to_linear(srgb)
    m = torch.as_tensor(SRGB_TO_XYZ / _WHITE_D65[:, None], dtype=srgb.dtype, device=srgb.device)
    xyz_n = torch.einsum("ij,njhw->nihw", m, lin)
    # f(t): cube root above the CIE epsilon, linear below; the clamp keeps the cbrt gradient finite at 0.
    cbrt = xyz_n.clamp_min(_LAB_EPS).pow(1.0 / 3.0)
    f = torch.where(xyz_n > _LAB_EPS, cbrt, (_LAB_KAPPA * xyz_n + 16.0) / 116.0)
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    return torch.stack([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def _safe_sqrt(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    return torch.sqrt(x.clamp_min(eps))


def _safe_atan2(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """atan2 that is 0 with a zero (not NaN) gradient at y = x = 0."""
    zero = (x == 0) & (y == 0)
    return torch.where(zero, torch.zeros_like(x), torch.atan2(y, torch.where(zero, torch.ones_like(x), x)))


def ciede2000(lab1: torch.Tensor, lab2: torch.Tensor, dim: int = 1) -> torch.Tensor:
    """CIEDE2000 colour difference (kL = kC = kH = 1) between two CIELAB tensors.

    Follows Sharma, Wu and Dalal (2005), "The CIEDE2000 color-difference formula: implementation notes,
    supplementary test data, and mathematical observations", including their hue rules for
    C'1 C'2 = 0 and for hue differences across 0/360 degrees.

    Args:
        lab1, lab2: tensors of the same shape with L*, a*, b* along ``dim`` (e.g. (N, 3, H, W), dim=1,
            or (K, 3), dim=1).
        dim: the channel dimension.

    Returns:
        Tensor of the input shape without ``dim``: the colour difference at each position.
    """
    L1, a1, b1 = lab1.unbind(dim)
    L2, a2, b2 = lab2.unbind(dim)
    deg = math.pi / 180.0

    c_bar = 0.5 * (_safe_sqrt(a1 * a1 + b1 * b1) + _safe_sqrt(a2 * a2 + b2 * b2))
    c7 = c_bar.pow(7)
    g = 0.5 * (1.0 - _safe_sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = (1.0 + g) * a1, (1.0 + g) * a2
    c1p_sq, c2p_sq = a1p * a1p + b1 * b1, a2p * a2p + b2 * b2
    c1p, c2p = _safe_sqrt(c1p_sq), _safe_sqrt(c2p_sq)
    # Hue angles in [0, 2 pi); 0 for achromatic colours.
    h1p = torch.remainder(_safe_atan2(b1, a1p), 2 * math.pi)
    h2p = torch.remainder(_safe_atan2(b2, a2p), 2 * math.pi)
    chromatic = (c1p_sq * c2p_sq) > 0

    dLp = L2 - L1
    dCp = c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, torch.where(dh < -math.pi, dh + 2 * math.pi, dh))
    dh = torch.where(chromatic, dh, torch.zeros_like(dh))
    dHp = 2.0 * _safe_sqrt(c1p * c2p) * torch.sin(dh / 2.0)
    dHp = torch.where(chromatic, dHp, torch.zeros_like(dHp))

    L_bar = 0.5 * (L1 + L2)
    Cp_bar = 0.5 * (c1p + c2p)
    h_sum = h1p + h2p
    h_bar = torch.where(
        (h1p - h2p).abs() <= math.pi,
        0.5 * h_sum,
        torch.where(h_sum < 2 * math.pi, 0.5 * h_sum + math.pi, 0.5 * h_sum - math.pi),
    )
    h_bar = torch.where(chromatic, h_bar, h_sum)

    t = (1.0 - 0.17 * torch.cos(h_bar - 30 * deg) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + 6 * deg) - 0.20 * torch.cos(4 * h_bar - 63 * deg))
    d_theta = 30 * deg * torch.exp(-(((h_bar / deg - 275.0) / 25.0) ** 2))
    cp7 = Cp_bar.pow(7)
    r_c = 2.0 * _safe_sqrt(cp7 / (cp7 + 25.0**7))
    l50 = (L_bar - 50.0) ** 2
    s_l = 1.0 + 0.015 * l50 / torch.sqrt(20.0 + l50)
    s_c = 1.0 + 0.045 * Cp_bar
    s_h = 1.0 + 0.015 * Cp_bar * t
    r_t = -torch.sin(2.0 * d_theta) * r_c

    tl, tc, th = dLp / s_l, dCp / s_c, dHp / s_h
    return _de_sqrt(tl * tl + tc * tc + th * th + r_t * tc * th)


def _de_sqrt(sq: torch.Tensor) -> torch.Tensor:
    """sqrt that returns exactly 0 for identical colours while keeping the gradient finite there."""
    positive = sq > 0
    safe = torch.where(positive, sq, torch.ones_like(sq))
    return torch.where(positive, torch.sqrt(safe), torch.zeros_like(sq))


def delta_e2000_map(pred: Any, target: Any) -> torch.Tensor:
    """Per-pixel CIEDE2000 between two sRGB images; returns (N, H, W)."""
    p, t = _pair(pred, target)
    return ciede2000(srgb_to_lab(p), srgb_to_lab(t), dim=1)


def delta_e2000(pred: Any, target: Any) -> torch.Tensor:
    """Mean CIEDE2000 colour difference per image (sRGB -> linear -> XYZ (D65) -> CIELAB).

    Returns:
        Tensor (N,) in the input's float dtype (float64 for float64 or numpy inputs).
    """
    return delta_e2000_map(pred, target).flatten(1).mean(1)


def delta_e76(pred: Any, target: Any) -> torch.Tensor:
    """Mean CIE76 colour difference (Euclidean distance in CIELAB, D65) per image. Returns (N,)."""
    p, t = _pair(pred, target)
    d = srgb_to_lab(p) - srgb_to_lab(t)
    return _de_sqrt(d.pow(2).sum(1)).flatten(1).mean(1)


def compare_raw(pred: torch.Tensor, target: torch.Tensor) -> ImageMetrics:
    """PSNR, SSIM and max error of a packed RAW prediction (N, 4, h, w) against its target, batch-averaged.

    For an inverse (sRGB -> RAW) network. The colour differences are not defined on camera RGB and are NaN.

    Raises:
        ImageSizeError: shapes differ or are not (N, 4, h, w), or a side is shorter than the SSIM window.
    """
    from pytorch_msssim import ssim as _ssim

    p, t = torch.as_tensor(pred).double(), torch.as_tensor(target).double()
    if p.dim() == 3:
        p, t = p[None], t[None] if t.dim() == 3 else t
    if p.shape != t.shape or p.dim() != 4 or p.shape[1] != 4:
        raise ImageSizeError(f"RAW prediction {tuple(p.shape)} and target {tuple(t.shape)} must both be (N, 4, h, w)")
    if min(p.shape[-2:]) < SSIM_WIN_SIZE:
        raise ImageSizeError(f"SSIM needs images of at least {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} pixels, got {tuple(p.shape[-2:])}")
    with torch.no_grad():
        mse = (p - t).pow(2).flatten(1).mean(1)
        s = _ssim(p, t, data_range=1.0, size_average=False, win_size=SSIM_WIN_SIZE, win_sigma=SSIM_WIN_SIGMA, K=SSIM_K)
        return ImageMetrics(
            psnr=float((10.0 * torch.log10(1.0 / mse)).mean()),
            ssim=float(s.double().mean()),
            delta_e2000=math.nan,
            max_abs_error=float((p - t).abs().flatten(1).amax(1).mean()),
            delta_e76=math.nan,
        )


def compare_for(spec, pred: Any, target: Any) -> ImageMetrics:
    """:func:`compare` for a forward (RAW -> sRGB) model's output, :func:`compare_raw` for an inverse one's."""
    return compare_raw(pred, target) if getattr(spec, "inverse", False) else compare(pred, target)


def compare(pred: Any, target: Any) -> ImageMetrics:
    """All metrics of ``pred`` against ``target``, averaged over the batch.

    Raises:
        ImageSizeError: shapes differ or are not images (see :func:`as_nchw`), or an image is smaller
            than the SSIM window.
    """
    p, t = _pair(pred, target)
    with torch.no_grad():
        return ImageMetrics(
            psnr=float(psnr(p, t).mean()),
            ssim=float(ssim(p, t).mean()),
            delta_e2000=float(delta_e2000(p, t).double().mean()),
            max_abs_error=float(max_abs_error(p, t).mean()),
            delta_e76=float(delta_e76(p, t).double().mean()),
        )
