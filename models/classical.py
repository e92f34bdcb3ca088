"""Classical (non-learned) RAW -> sRGB baselines: a torch reference pipeline and LibRaw.

``classical`` (:class:`ClassicalISP`) is a fixed torch pipeline that exports like a network:

1. white-balance gains (as-shot, G = 1) on the packed RGGB planes, then highlight clip to [0, 1];
2. Malvar-He-Cutler demosaicing (Malvar, He, Cutler, "High-quality linear interpolation for demosaicing of
   Bayer-patterned color images", ICASSP 2004): bilinear interpolation plus a Laplacian correction from the
   other colour, i.e. eight fixed 5x5 filters on the mosaic. Here they are one fixed 3x3 convolution on the
   packed planes (4 -> 12 channels: 3 colours x 4 Bayer positions) followed by ``pixel_shuffle(2)``;
3. camera -> linear sRGB with the per-sample matrix of :func:`mobileisp.metadata.cam_to_srgb_matrix`
   (``xyz2cam @ srgb2xyz``, rows normalised to sum 1, inverted), computed in torch, then clip;
4. the sRGB OETF (piecewise, IEC 61966-2-1) or, with ``oetf="gamma2.2"``, a pure 1/2.2 power;
5. the global tone curve ``3x^2 - 2x^3`` (smoothstep, applied after the gamma) unless ``tone_curve=False``.
   It is on by default because the synthetic training data (:mod:`mobileisp.synth`, Brooks et al. 2019)
   un-tone-maps sRGB with the inverse smoothstep, so this is the curve that data was made with.

There is no exposure/brightness step: a RAW that was darkened (synth's ``rgb_gain``) stays darker.

``libraw`` (:class:`LibRawISP`) writes each sample as a real DNG (as-shot neutral and ColorMatrix1 from the
metadata) and develops it with rawpy/LibRaw (AHD demosaic, camera WB, sRGB, no auto-brightening). It runs
numpy and files, so it is a baseline for evaluation only (not trainable, not exportable).

``classical-inverse`` (:class:`ClassicalInverse`) is the fixed sRGB -> RAW baseline for the learned inverse
ISPs: ``classical`` run backwards (inverse smoothstep, inverse sRGB OETF, linear sRGB -> camera matrix, divide
by the white balance, mosaic). It knows the tone curve the synthetic data were made with but not the
exposure (synth's ``rgb_gain``), which only the EXIF tells.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mobileisp.errors import ImageSizeError, MobileISPError
from mobileisp.metadata import SRGB_TO_XYZ, CameraMetadata
from mobileisp.metrics import linear_to_srgb, srgb_to_linear
from mobileisp.models.registry import ModelSpec, register_model

# --------------------------------------------------------------------------------------------------------
# Malvar-He-Cutler demosaicing
# --------------------------------------------------------------------------------------------------------

# The four MHC filters (x 1/8), centred on the pixel being interpolated.
_G_AT_RB = np.array([[0, 0, -1, 0, 0], [0, 0, 2, 0, 0], [-1, 2, 4, 2, -1], [0, 0, 2, 0, 0], [0, 0, -1, 0, 0]]) / 8
# Red/blue at a green pixel whose horizontal neighbours are that colour.
_RB_AT_G_ROW = np.array(
    [[0, 0, 0.5, 0, 0], [0, -1, 0, -1, 0], [-1, 4, 5, 4, -1], [0, -1, 0, -1, 0], [0, 0, 0.5, 0, 0]]
) / 8
_RB_AT_G_COL = _RB_AT_G_ROW.T
# Red at blue and blue at red.
_RB_AT_BR = np.array(
    [[0, 0, -1.5, 0, 0], [0, 2, 0, 2, 0], [-1.5, 0, 6, 0, -1.5], [0, 2, 0, 2, 0], [0, 0, -1.5, 0, 0]]
) / 8
_IDENTITY = np.zeros((5, 5))
_IDENTITY[2, 2] = 1.0

# Filter for (output colour, Bayer position) in RGGB; positions R (0,0), Gr (0,1), Gb (1,0), B (1,1).
# Gr sits in a red row (red neighbours left/right), Gb in a blue row.
_MHC_FILTERS = (
    (_IDENTITY, _RB_AT_G_ROW, _RB_AT_G_COL, _RB_AT_BR),  # R
    (_G_AT_RB, _IDENTITY, _IDENTITY, _G_AT_RB),  # G
    (_RB_AT_BR, _RB_AT_G_COL, _RB_AT_G_ROW, _IDENTITY),  # B
)


def mhc_packed_kernel() -> torch.Tensor:
    """Malvar-He-Cutler demosaicing as a conv kernel on packed RGGB: shape (12, 4, 3, 3), float32.

    Output channel ``4 * c + p`` is colour c (R, G, B) at Bayer position p (R, Gr, Gb, B), so that
    ``pixel_shuffle(conv2d(packed, kernel, padding=1), 2)`` is the (N, 3, 2h, 2w) image. A 5x5 mosaic
    window centred anywhere in a 2x2 cell lies inside the 3x3 packed neighbourhood of that cell.
    """
    k = np.zeros((12, 4, 3, 3))
    for c, filters in enumerate(_MHC_FILTERS):
        for p, filt in enumerate(filters):
            dy, dx = divmod(p, 2)
            for q in range(4):
                qy, qx = divmod(q, 2)
                for ky in range(3):
                    for kx in range(3):
                        ry, rx = 2 * (ky - 1) + qy - dy, 2 * (kx - 1) + qx - dx  # mosaic offset
                        if abs(ry) <= 2 and abs(rx) <= 2:
                            k[4 * c + p, q, ky, kx] = filt[ry + 2, rx + 2]
    return torch.tensor(k, dtype=torch.float32)


class MalvarDemosaic(nn.Module):
    """Packed RGGB (N, 4, h, w) -> RGB (N, 3, 2h, 2w), Malvar-He-Cutler 2004. h, w >= 2.

    Borders are mirror-padded by one packed pixel (two mosaic rows/columns), which keeps the Bayer phase.
    The result is not clipped: the Laplacian correction can over/undershoot at edges.
    """

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", mhc_packed_kernel(), persistent=False)

    def forward(self, packed: torch.Tensor) -> torch.Tensor:
        x = F.pad(packed, (1, 1, 1, 1), mode="reflect")
        # the buffer as is (move the module with .double()/.half()): a kernel derived from the input's dtype
        # would make torch.ao FX quantization (Core ML w8a8) trace the weight back to the graph input
        return F.pixel_shuffle(F.conv2d(x, self.kernel), 2)


# --------------------------------------------------------------------------------------------------------
# Colour
# --------------------------------------------------------------------------------------------------------


def _inverse_3x3(m: torch.Tensor) -> torch.Tensor:
    """Inverse of a batch of 3x3 matrices (N, 3, 3) by the adjugate (export-friendly, unlike linalg.inv)."""
    a, b, c = m[:, 0, 0], m[:, 0, 1], m[:, 0, 2]
    d, e, f = m[:, 1, 0], m[:, 1, 1], m[:, 1, 2]
    g, h, i = m[:, 2, 0], m[:, 2, 1], m[:, 2, 2]
    co_a, co_b, co_c = e * i - f * h, f * g - d * i, d * h - e * g
    det = a * co_a + b * co_b + c * co_c
    adj = torch.stack(
        [
            torch.stack([co_a, c * h - b * i, b * f - c * e], -1),
            torch.stack([co_b, a * i - c * g, c * d - a * f], -1),
            torch.stack([co_c, b * g - a * h, a * e - b * d], -1),
        ],
        -2,
    )
    return adj / det[:, None, None]


def cam_to_srgb(color_matrix: torch.Tensor) -> torch.Tensor:
    """Torch, batched :func:`mobileisp.metadata.cam_to_srgb_matrix`.

    Args:
        color_matrix: (N, 3, 3) XYZ -> camera (DNG ColorMatrix convention).

    Returns:
        (N, 3, 3) white-balanced camera RGB -> linear sRGB.
    """
    return _inverse_3x3(srgb_to_cam(color_matrix))


def srgb_to_cam(color_matrix: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) linear sRGB -> camera RGB: ``color_matrix @ SRGB_TO_XYZ`` with rows normalised to sum 1."""
    srgb2xyz = torch.as_tensor(SRGB_TO_XYZ, dtype=color_matrix.dtype, device=color_matrix.device)
    rgb2cam = torch.matmul(color_matrix, srgb2xyz)
    return rgb2cam / rgb2cam.sum(dim=-1, keepdim=True)


def apply_matrix(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """Per-sample 3x3 colour transform: (N, 3, 3) x (N, 3, H, W) -> (N, 3, H, W).

    Written as broadcast multiply-adds, which every converter maps to plain elementwise ops.
    """
    m = matrix[:, :, :, None, None]
    return m[:, :, 0] * image[:, 0:1] + m[:, :, 1] * image[:, 1:2] + m[:, :, 2] * image[:, 2:3]


def mosaic_kernel() -> torch.Tensor:
    """(4, 3, 2, 2) stride-2 convolution kernel: camera RGB (N, 3, H, W) -> packed RGGB (N, 4, H/2, W/2).

    Output channel R takes red at (0, 0) of each 2x2 tile, Gr green at (0, 1), Gb green at (1, 0), B blue at
    (1, 1): exactly :func:`mobileisp.synth.mosaic`, as one convolution that every converter lowers.
    """
    k = torch.zeros(4, 3, 2, 2)
    for out, (colour, y, x) in enumerate(((0, 0, 0), (1, 0, 1), (1, 1, 0), (2, 1, 1))):
        k[out, colour, y, x] = 1.0
    return k


def inverse_smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`smoothstep` on [0, 1]: ``0.5 - sin(asin(1 - 2x) / 3)``."""
    return 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x.clamp(0.0, 1.0)) / 3.0)


def smoothstep(x: torch.Tensor) -> torch.Tensor:
    """Global tone curve ``3x^2 - 2x^3`` on [0, 1] (the inverse of synth's inverse tone map)."""
    return x * x * (3.0 - 2.0 * x)


# --------------------------------------------------------------------------------------------------------
# The pipelines
# --------------------------------------------------------------------------------------------------------


def _check_inputs(raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> None:
    if raw.dim() != 4 or raw.shape[1] != 4:
        raise ImageSizeError(f"raw must be packed RGGB (N, 4, h, w), got {tuple(raw.shape)}")
    if raw.shape[-1] < 2 or raw.shape[-2] < 2:
        raise ImageSizeError(f"raw must be at least 2x2 packed pixels, got {tuple(raw.shape[-2:])}")
    n = raw.shape[0]
    if tuple(white_balance.shape) != (n, 3):
        raise ImageSizeError(f"white_balance must be (N, 3) = ({n}, 3), got {tuple(white_balance.shape)}")
    if tuple(color_matrix.shape) != (n, 3, 3):
        raise ImageSizeError(f"color_matrix must be (N, 3, 3) = ({n}, 3, 3), got {tuple(color_matrix.shape)}")


def _check_oetf(oetf: str) -> str:
    if oetf not in ("srgb", "gamma2.2"):
        raise ValueError(f"oetf must be 'srgb' or 'gamma2.2', got {oetf!r}")
    return oetf


class ClassicalISP(nn.Module):
    """Fixed RAW -> sRGB pipeline: WB, clip, MHC demosaic, camera -> sRGB, clip, OETF, tone curve.

    Args:
        tone_curve: apply the smoothstep tone curve after the OETF (default True; see module docstring).
        oetf: ``"srgb"`` (piecewise sRGB curve, default) or ``"gamma2.2"`` (``x ** (1/2.2)``, the curve
            that :mod:`mobileisp.synth` inverts).

    Inputs: ``raw`` (N, 4, h, w) packed RGGB in [0, 1]; ``white_balance`` (N, 3) gains (R, G, B), G = 1;
    ``color_matrix`` (N, 3, 3) XYZ -> camera. Output: sRGB (N, 3, 2h, 2w) in [0, 1].
    """

    def __init__(self, tone_curve: bool = True, oetf: str = "srgb") -> None:
        super().__init__()
        self.tone_curve = tone_curve
        self.oetf = _check_oetf(oetf)
        self.demosaic = MalvarDemosaic()

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        _check_inputs(raw, white_balance, color_matrix)
        wb = white_balance.to(raw.dtype)
        gains = torch.stack([wb[:, 0], wb[:, 1], wb[:, 1], wb[:, 2]], 1)
        x = (raw * gains[:, :, None, None]).clamp(0.0, 1.0)
        rgb = self.demosaic(x).clamp(0.0, 1.0)
        rgb = apply_matrix(cam_to_srgb(color_matrix.to(raw.dtype)), rgb).clamp(0.0, 1.0)
        if self.oetf == "srgb":
            rgb = linear_to_srgb(rgb)
        else:
            rgb = rgb.clamp_min(1e-8).pow(1.0 / 2.2)
        if self.tone_curve:
            rgb = smoothstep(rgb)
        return rgb.clamp(0.0, 1.0)


class ClassicalInverse(nn.Module):
    """Fixed sRGB -> RAW pipeline, :class:`ClassicalISP` backwards (see the module docstring).

    Inputs: ``srgb`` (N, 3, H, W) in [0, 1], H and W even; ``white_balance`` (N, 3); ``color_matrix``
    (N, 3, 3) XYZ -> camera. Output: packed RGGB (N, 4, H/2, W/2) in [0, 1].
    """

    def __init__(self, tone_curve: bool = True, oetf: str = "srgb") -> None:
        super().__init__()
        self.tone_curve = tone_curve
        self.oetf = _check_oetf(oetf)
        self.register_buffer("mosaic", mosaic_kernel(), persistent=False)

    def forward(self, srgb: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        x = srgb.clamp(0.0, 1.0)
        if self.tone_curve:
            x = inverse_smoothstep(x)
        lin = srgb_to_linear(x) if self.oetf == "srgb" else x.clamp_min(1e-8).pow(2.2)
        cam = apply_matrix(srgb_to_cam(color_matrix), lin) / white_balance[:, :, None, None]
        return F.conv2d(cam.clamp(0.0, 1.0), self.mosaic, stride=2)


class LibRawISP(nn.Module):
    """LibRaw's own development of each sample, written as a DNG and read back with rawpy.

    Per sample: the packed RAW becomes a 16-bit RGGB mosaic (black 0, white 65535) in a DNG whose
    AsShotNeutral is ``1 / white_balance`` and ColorMatrix1 is ``color_matrix``; rawpy develops it with the
    camera white balance, ``demosaic`` interpolation, sRGB primaries and the sRGB curve (power 2.4, toe
    slope 12.92), 16 bits, without auto-brightening or white-level adjustment, no flip. LibRaw divides the
    gains by the smallest one, so for gains below 1 (not the case for G = 1 and R, B >= 1) it comes out
    brighter than ``classical``.

    Args:
        demosaic: a ``rawpy.DemosaicAlgorithm`` name (default ``"AHD"``).
        tone_curve: apply the smoothstep tone curve after LibRaw's gamma (default False: LibRaw as is).
    """

    def __init__(self, demosaic: str = "AHD", tone_curve: bool = False) -> None:
        super().__init__()
        import rawpy

        try:
            self._algorithm = rawpy.DemosaicAlgorithm[demosaic]
        except KeyError:
            names = ", ".join(a.name for a in rawpy.DemosaicAlgorithm)
            raise ValueError(f"unknown LibRaw demosaic {demosaic!r}; known: {names}") from None
        self.tone_curve = tone_curve

    def forward(self, raw: torch.Tensor, white_balance: torch.Tensor, color_matrix: torch.Tensor) -> torch.Tensor:
        from mobileisp.raw import LIBRAW_MIN_SIZE

        _check_inputs(raw, white_balance, color_matrix)
        if 2 * min(raw.shape[-2:]) < LIBRAW_MIN_SIZE:
            raise ImageSizeError(f"libraw baseline needs a mosaic of at least {LIBRAW_MIN_SIZE}x{LIBRAW_MIN_SIZE} "
                                 f"pixels, got {2 * raw.shape[-2]}x{2 * raw.shape[-1]}")
        packed = raw.detach().cpu().double().numpy()
        wb = white_balance.detach().cpu().double().numpy()
        cm = color_matrix.detach().cpu().double().numpy()
        outs = []
        with tempfile.TemporaryDirectory(prefix="mobileisp-libraw-") as tmp:
            for i in range(packed.shape[0]):
                meta = CameraMetadata(
                    make="mobileisp",
                    model="libraw baseline",
                    white_balance=tuple(float(v) for v in wb[i]),
                    color_matrix=tuple(tuple(float(v) for v in row) for row in cm[i]),
                )
                outs.append(self._develop(Path(tmp) / f"sample{i}.dng", packed[i], meta))
        out = torch.from_numpy(np.stack(outs)).to(device=raw.device, dtype=raw.dtype)
        return smoothstep(out) if self.tone_curve else out

    def _develop(self, path: Path, packed: np.ndarray, meta: CameraMetadata) -> np.ndarray:
        """One packed RAW (4, h, w) -> sRGB (3, 2h, 2w) float32 in [0, 1] through a DNG and LibRaw."""
        import rawpy

        from mobileisp.dng import mosaic_from_packed, write_dng

        mosaic = mosaic_from_packed(np.clip(packed, 0.0, 1.0), "RGGB", 0, 65535)
        try:
            write_dng(path, mosaic, cfa="RGGB", black_level=0, white_level=65535, metadata=meta)
        except ValueError as e:  # non-positive gains, a matrix entry too large for a TIFF rational
            raise MobileISPError(f"libraw baseline cannot write this sample as a DNG: {e}") from None
        try:
            with rawpy.imread(str(path)) as r:
                rgb = r.postprocess(
                    demosaic_algorithm=self._algorithm,
                    use_camera_wb=True,
                    no_auto_bright=True,
                    # LibRaw otherwise lowers the white level to the data maximum when that is above 75 %
                    # of it, brightening the image by an amount the classical pipeline cannot know.
                    adjust_maximum_thr=0.0,
                    output_bps=16,
                    output_color=rawpy.ColorSpace.sRGB,
                    gamma=(2.4, 12.92),  # rawpy takes (power, toe slope); it passes 1/power to LibRaw
                    user_flip=0,
                )
        except (rawpy.LibRawError, OSError) as e:
            raise MobileISPError(f"LibRaw could not develop {path.name}: {e}") from None
        return (rgb.astype(np.float32) / 65535.0).transpose(2, 0, 1)


register_model(
    ModelSpec(
        name="classical",
        family="classical",
        description="fixed pipeline: WB, Malvar-He-Cutler demosaic, colour matrix, sRGB gamma, smoothstep tone",
        metadata_fields=("white_balance", "color_matrix"),
        trainable=False,
        config={"tone_curve": True, "oetf": "srgb"},
    ),
    ClassicalISP,
)

register_model(
    ModelSpec(
        name="libraw",
        family="classical",
        description="LibRaw (rawpy) development of a DNG: AHD demosaic, camera WB and matrix, sRGB",
        metadata_fields=("white_balance", "color_matrix"),
        trainable=False,
        exportable=False,
        config={"demosaic": "AHD", "tone_curve": False},
    ),
    LibRawISP,
)

register_model(
    ModelSpec(
        name="classical-inverse",
        family="classical",
        description="fixed sRGB -> RAW baseline: classical backwards (inverse tone and gamma, matrix, 1/WB, mosaic)",
        metadata_fields=("white_balance", "color_matrix"),
        direction="inverse",
        scale=1,
        trainable=False,
        exportable=False,
        config={"tone_curve": True, "oetf": "srgb"},
    ),
    ClassicalInverse,
)
