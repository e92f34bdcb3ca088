"""Synthetic paired data: sRGB scenes turned into noisy packed RGGB RAW by "unprocessing".

The inverse pipeline is the one of Brooks et al., "Unprocessing Images for Learned Raw Denoising" (CVPR 2019),
reference code google-research/unprocessing/unprocess.py. For an sRGB image in [0, 1]:

1. random XYZ->camera matrix: a random convex blend of four measured camera matrices (:data:`XYZ2CAMS`);
   ``rgb2cam = xyz2cam @ srgb2xyz`` with rows normalised to sum 1, ``cam2rgb = inv(rgb2cam)``;
2. random gains: ``rgb_gain = 1 / N(0.8, 0.1)``, ``red_gain ~ U(1.9, 2.4)``, ``blue_gain ~ U(1.5, 1.9)``;
3. inverse smoothstep tone curve ``x = 0.5 - sin(asin(1 - 2x) / 3)``;
4. inverse gamma ``x ** 2.2``;
5. inverse colour correction (``rgb2cam``);
6. inverse white balance and brightness, highlight-safe (gains fade to 1 above grey level 0.9);
7. clip to [0, 1] and mosaic to packed RGGB (R, Gr, Gb, B) of shape (4, H/2, W/2);
8. heteroscedastic noise ``N(0, shot * x + read)`` with ``log(read)`` linear in ``log(shot)``.

Everything is numpy and reproducible under a :class:`numpy.random.Generator`. The module also holds the
procedural dead-leaves scene generator and the natural photos bundled with scikit-image, the two scene
sources of :mod:`mobileisp.data`.
"""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from mobileisp.errors import ImageSizeError
from mobileisp.metadata import SRGB_TO_XYZ, CameraMetadata

#: The four XYZ->camera matrices of Brooks et al. (unprocess.py ``random_ccm``).
XYZ2CAMS = np.array(
    [
        [[1.0234, -0.2969, -0.2266], [-0.5625, 1.6328, -0.0469], [-0.0703, 0.2188, 0.6406]],
        [[0.4913, -0.0541, -0.0202], [-0.613, 1.3513, 0.2906], [-0.1564, 0.2151, 0.7183]],
        [[0.838, -0.263, -0.0639], [-0.2887, 1.0725, 0.2496], [-0.0627, 0.1427, 0.5438]],
        [[0.6596, -0.2079, -0.0562], [-0.4782, 1.3016, 0.1933], [-0.097, 0.1581, 0.5181]],
    ],
    dtype=np.float64,
)

#: Shot-noise variance (per unit of normalised signal) of the simulated sensor at ISO 100. ``iso`` is
#: ``100 * shot_noise / SHOT_NOISE_AT_ISO100``; Brooks' shot range [1e-4, 1.2e-2] maps to ISO 100-12000.
SHOT_NOISE_AT_ISO100 = 1e-4
ISO_RANGE = (50.0, 12800.0)
#: Auto-exposure programme used to pick a consistent exposure time: a phone metering a scene at
#: ``EV100 = EV_AT_ISO100 - EV_PER_ISO_STOP * log2(iso / 100) (+ N(0, 0.3))`` raises ISO as the light drops.
EV_AT_ISO100 = 13.7
EV_PER_ISO_STOP = 2.2
EXPOSURE_RANGE = (1 / 16000, 0.5)
PHONE_F_NUMBERS = (1.5, 1.7, 1.8, 1.9, 2.0, 2.2, 2.4)
PHONE_FOCAL_LENGTHS_MM = (4.0, 7.0)

_HIGHLIGHT_START = 0.9


@dataclass(frozen=True, eq=False)
class UnprocessParams:
    """The random camera that one :func:`unprocess` call simulated.

    Attributes:
        xyz2cam: (3, 3) CIE XYZ -> camera RGB, not row-normalised (DNG ColorMatrix convention).
        rgb2cam: (3, 3) linear sRGB -> camera RGB, rows sum to 1.
        cam2rgb: (3, 3) inverse of ``rgb2cam``: white-balanced camera RGB -> linear sRGB.
        red_gain, blue_gain: white-balance gains (camera R and B are divided by them in the RAW).
        rgb_gain: global brightening the forward ISP applies (the RAW is darker by this factor).
        shot_noise, read_noise: noise variance ``shot * x + read`` for a normalised signal ``x``.
        iso, exposure_time, f_number, focal_length: EXIF-like camera settings consistent with the
            noise level (ISO) and the brightness gain (exposure time); see module constants.
    """

    xyz2cam: np.ndarray
    rgb2cam: np.ndarray
    cam2rgb: np.ndarray
    red_gain: float
    blue_gain: float
    rgb_gain: float
    shot_noise: float
    read_noise: float
    iso: float
    exposure_time: float
    f_number: float
    focal_length: float

    def metadata(self) -> CameraMetadata:
        """The metadata a RAW file of this simulated camera would carry."""
        return CameraMetadata(
            make="mobileisp",
            model="synthetic (unprocessed sRGB)",
            white_balance=(float(self.red_gain), 1.0, float(self.blue_gain)),
            color_matrix=tuple(tuple(float(v) for v in row) for row in self.xyz2cam),
            iso=float(self.iso),
            exposure_time=float(self.exposure_time),
            f_number=float(self.f_number),
            focal_length=float(self.focal_length),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (matrices become nested lists)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else float(v)
        return out


def random_params(rng: np.random.Generator) -> UnprocessParams:
    """Draw a random camera (colour matrix, gains, noise levels, EXIF settings).

    The draw order is fixed (matrix weights, gains, noise, EXIF), so a seed always gives the same camera.
    """
    weights = rng.uniform(1e-8, 1e8, size=4)
    xyz2cam = np.tensordot(weights / weights.sum(), XYZ2CAMS, axes=1)
    rgb2cam = xyz2cam @ SRGB_TO_XYZ
    rgb2cam = rgb2cam / rgb2cam.sum(axis=1, keepdims=True)
    cam2rgb = np.linalg.inv(rgb2cam)

    # N(0.8, 0.1) is clipped 5 sigma away from its mean so that the gain can never blow up.
    rgb_gain = 1.0 / float(np.clip(rng.normal(0.8, 0.1), 0.3, 1.3))
    red_gain = float(rng.uniform(1.9, 2.4))
    blue_gain = float(rng.uniform(1.5, 1.9))

    log_shot = rng.uniform(np.log(1e-4), np.log(1.2e-2))
    log_read = 2.18 * log_shot + 1.20 + rng.normal(0.0, 0.26)
    shot, read = float(np.exp(log_shot)), float(np.exp(log_read))

    iso = float(np.clip(100.0 * shot / SHOT_NOISE_AT_ISO100, *ISO_RANGE))
    f_number = float(rng.choice(PHONE_F_NUMBERS))
    focal_length = float(round(rng.uniform(*PHONE_FOCAL_LENGTHS_MM), 2))
    ev100 = EV_AT_ISO100 - EV_PER_ISO_STOP * np.log2(iso / 100.0) + rng.normal(0.0, 0.3)
    metered = f_number**2 * 100.0 / (iso * 2.0**ev100)
    # The RAW is rgb_gain times darker than the metered exposure; the forward ISP brightens it back.
    exposure_time = float(np.clip(metered / rgb_gain, *EXPOSURE_RANGE))

    for m in (xyz2cam, rgb2cam, cam2rgb):
        m.setflags(write=False)
    return UnprocessParams(
        xyz2cam=xyz2cam, rgb2cam=rgb2cam, cam2rgb=cam2rgb, red_gain=red_gain, blue_gain=blue_gain,
        rgb_gain=rgb_gain, shot_noise=shot, read_noise=read, iso=iso, exposure_time=exposure_time,
        f_number=f_number, focal_length=focal_length,
    )


# ----------------------------------------------------------------------------------------------------------
# Inverse and forward pipeline
# ----------------------------------------------------------------------------------------------------------


def inverse_smoothstep(x: np.ndarray) -> np.ndarray:
    """Inverse of ``3x^2 - 2x^3`` on [0, 1]."""
    x = np.clip(x, 0.0, 1.0)
    return 0.5 - np.sin(np.arcsin(1.0 - 2.0 * x) / 3.0)


def smoothstep(x: np.ndarray) -> np.ndarray:
    """The global tone curve ``3x^2 - 2x^3``."""
    return 3.0 * x**2 - 2.0 * x**3


def _safe_invert_gains(image: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """Divide by the WB and brightness gains, letting them fade to 1 in highlights (grey > 0.9)."""
    gains = np.array([1.0 / params.red_gain, 1.0, 1.0 / params.blue_gain]) / params.rgb_gain
    gray = image.mean(axis=-1, keepdims=True)
    mask = (np.maximum(gray - _HIGHLIGHT_START, 0.0) / (1.0 - _HIGHLIGHT_START)) ** 2
    safe = np.maximum(mask + (1.0 - mask) * gains, gains)
    return image * safe


def unprocess_linear(srgb: np.ndarray, params: UnprocessParams) -> np.ndarray:
    """sRGB (H, W, 3) in [0, 1] -> clean camera RGB (H, W, 3) float64 in [0, 1] (steps 3-7, before mosaic)."""
    x = inverse_smoothstep(np.asarray(srgb, dtype=np.float64))
    x = np.maximum(x, 1e-8) ** 2.2
    x = x @ params.rgb2cam.T
    x = _safe_invert_gains(x, params)
    return np.clip(x, 0.0, 1.0)


def mosaic(rgb: np.ndarray) -> np.ndarray:
    """Camera RGB (H, W, 3) -> packed RGGB (4, H/2, W/2).

    R = ``[0::2, 0::2]``, Gr = ``[0::2, 1::2]``, Gb = ``[1::2, 0::2]``, B = ``[1::2, 1::2]``.
    """
    return np.stack([rgb[0::2, 0::2, 0], rgb[0::2, 1::2, 1], rgb[1::2, 0::2, 1], rgb[1::2, 1::2, 2]])


def add_noise(packed: np.ndarray, shot_noise: float, read_noise: float, rng: np.random.Generator) -> np.ndarray:
    """Add ``N(0, shot * x + read)`` noise to a clean RAW and clip to [0, 1] (our RAW convention)."""
    sigma = np.sqrt(np.maximum(packed, 0.0) * shot_noise + read_noise)
    return np.clip(packed + rng.normal(size=packed.shape) * sigma, 0.0, 1.0)


def unprocess(
    srgb: np.ndarray,
    rng: np.random.Generator,
    noise: bool = True,
    params: UnprocessParams | None = None,
) -> tuple[np.ndarray, UnprocessParams]:
    """Turn an sRGB image into a packed RGGB RAW of a random camera.

    Args:
        srgb: (H, W, 3) float sRGB in [0, 1]; H and W even.
        rng: source of all randomness (camera draw, then noise).
        noise: add shot/read noise. The camera (including its noise levels) is drawn either way, so the
            same seed gives the same clean signal with and without noise.
        params: use this camera instead of drawing one.

    Returns:
        ``(packed, params)``: packed RGGB (4, H/2, W/2) float32 in [0, 1], and the simulated camera.

    Raises:
        ImageSizeError: the image is not (H, W, 3) with even H and W.
    """
    srgb = np.asarray(srgb)
    if srgb.ndim != 3 or srgb.shape[2] != 3:
        raise ImageSizeError(f"unprocess needs an (H, W, 3) sRGB image, got shape {srgb.shape}")
    h, w = srgb.shape[:2]
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ImageSizeError(f"unprocess needs even height and width, got {h}x{w}")
    if params is None:
        params = random_params(rng)
    packed = mosaic(unprocess_linear(srgb, params))
    if noise:
        packed = add_noise(packed, params.shot_noise, params.read_noise, rng)
    return packed.astype(np.float32), params


_K_GREEN = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]], dtype=np.float64) / 4.0
_K_RED_BLUE = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=np.float64) / 4.0


def demosaic_bilinear(packed: np.ndarray) -> np.ndarray:
    """Packed RGGB (4, h, w) -> camera RGB (2h, 2w, 3) by bilinear interpolation.

    Mirror padding reflects about the edge pixel, which keeps the Bayer phase at the borders.
    """
    packed = np.asarray(packed, dtype=np.float64)
    _, h, w = packed.shape
    planes = np.zeros((3, 2 * h, 2 * w))
    planes[0, 0::2, 0::2] = packed[0]
    planes[1, 0::2, 1::2] = packed[1]
    planes[1, 1::2, 0::2] = packed[2]
    planes[2, 1::2, 1::2] = packed[3]
    kernels = (_K_RED_BLUE, _K_GREEN, _K_RED_BLUE)
    return np.stack([ndimage.convolve(p, k, mode="mirror") for p, k in zip(planes, kernels)], axis=-1)


def process_linear(cam_rgb: np.ndarray, params: UnprocessParams, tone_curve: bool = True) -> np.ndarray:
    """Camera RGB (H, W, 3) -> sRGB (H, W, 3) in [0, 1]: gains, clip, cam2rgb, clip, gamma 1/2.2, tone curve."""
    gains = np.array([params.red_gain, 1.0, params.blue_gain]) * params.rgb_gain
    x = np.clip(np.asarray(cam_rgb, dtype=np.float64) * gains, 0.0, 1.0)
    x = np.clip(x @ params.cam2rgb.T, 0.0, 1.0)
    x = np.maximum(x, 1e-8) ** (1.0 / 2.2)
    return smoothstep(x) if tone_curve else x


def process_reference(packed: np.ndarray, params: UnprocessParams, tone_curve: bool = True) -> np.ndarray:
    """Forward pipeline of Brooks' process.py, for tests: packed RGGB (4, h, w) -> sRGB (2h, 2w, 3) float64.

    Steps: white-balance and brightness gains, clip, bilinear demosaic, ``cam2rgb``, clip, gamma 1/2.2 and
    (unless ``tone_curve=False``) the smoothstep tone curve. Brooks' released ``process()`` leaves out
    ``rgb_gain`` and the tone curve; both are applied here so that it exactly inverts :func:`unprocess`
    (up to demosaicing, noise and highlight clipping). The real classical baseline is models/classical.py.
    """
    gains = np.array([params.red_gain, 1.0, 1.0, params.blue_gain])[:, None, None] * params.rgb_gain
    balanced = np.clip(np.asarray(packed, dtype=np.float64) * gains, 0.0, 1.0)
    cam = demosaic_bilinear(balanced)
    unity = dataclasses.replace(params, red_gain=1.0, blue_gain=1.0, rgb_gain=1.0)
    return process_linear(cam, unity, tone_curve=tone_curve)


# ----------------------------------------------------------------------------------------------------------
# Scene sources
# ----------------------------------------------------------------------------------------------------------


def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Vectorised HSV (each (K,), in [0, 1]) -> RGB (K, 3)."""
    k = np.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], axis=-1)
    return v[:, None] - v[:, None] * s[:, None] * np.clip(np.minimum(k, 4 - k), 0, 1)


def dead_leaves(height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    """A procedural dead-leaves scene: occluding textured shapes under a smooth illumination gradient.

    Disks, rotated rectangles and ellipses with power-law radii (density ``r^-3``, scale invariant, from
    1.5 % to 30 % of the short side) are stacked front to back until the frame is covered. Each shape is
    flat, striped (sinusoidal or hard two-colour stripes), noise-textured or a two-colour gradient, so the
    scene has sharp edges, fine high-frequency chroma detail and smooth regions. The result is multiplied
    by a random linear illumination ramp.

    Args:
        height, width: output size in pixels (any size >= 1).
        rng: source of all randomness.

    Returns:
        (height, width, 3) float32 sRGB in [0, 1].
    """
    if height < 1 or width < 1:
        raise ImageSizeError(f"dead_leaves needs a positive size, got {height}x{width}")
    short = min(height, width)
    rmin, rmax, alpha = max(1.0, 0.015 * short), max(2.0, 0.3 * short), 3.0
    n_max = 1500

    u = rng.uniform(size=n_max)
    a1 = 1.0 - alpha
    radii = (rmin**a1 - u * (rmin**a1 - rmax**a1)) ** (1.0 / a1)
    cy = rng.uniform(-rmax * 0.5, height + rmax * 0.5, n_max)
    cx = rng.uniform(-rmax * 0.5, width + rmax * 0.5, n_max)
    kinds = rng.choice(3, size=n_max, p=[0.45, 0.35, 0.2])  # disk, rectangle, ellipse
    aspect = rng.uniform(0.35, 1.0, n_max)
    angle = rng.uniform(0.0, np.pi, n_max)
    textures = rng.choice(4, size=n_max, p=[0.35, 0.3, 0.2, 0.15])  # flat, stripes, noise, gradient
    colors = _hsv_to_rgb(rng.uniform(size=2 * n_max), rng.beta(1.2, 1.5, 2 * n_max), rng.uniform(0.04, 1.0, 2 * n_max))
    colors = colors.reshape(n_max, 2, 3)
    freq = np.exp(rng.uniform(np.log(0.02), np.log(0.45), n_max))  # cycles per pixel, up to near Nyquist
    phase = rng.uniform(0.0, 2 * np.pi, n_max)
    hard = rng.uniform(size=n_max) < 0.4
    amp = rng.uniform(0.1, 0.6, n_max)

    fine = ndimage.gaussian_filter(rng.standard_normal((height, width)), 0.7)
    coarse = ndimage.gaussian_filter(rng.standard_normal((height, width)), max(1.0, short / 64))
    noise_fields = (fine / (fine.std() + 1e-8), coarse / (coarse.std() + 1e-8))

    image = np.empty((height, width, 3))
    covered = np.zeros((height, width), dtype=bool)
    for i in range(n_max):
        r = radii[i]
        y0, y1 = max(int(cy[i] - r), 0), min(int(cy[i] + r) + 1, height)
        x0, x1 = max(int(cx[i] - r), 0), min(int(cx[i] + r) + 1, width)
        if y0 >= y1 or x0 >= x1:
            continue
        yy = np.arange(y0, y1, dtype=np.float64)[:, None] - cy[i]
        xx = np.arange(x0, x1, dtype=np.float64)[None, :] - cx[i]
        c, s = np.cos(angle[i]), np.sin(angle[i])
        along, across = xx * c + yy * s, -xx * s + yy * c
        if kinds[i] == 0:
            inside = xx**2 + yy**2 <= r * r
        elif kinds[i] == 1:
            inside = (np.abs(along) <= r * 0.8) & (np.abs(across) <= r * 0.8 * aspect[i])
        else:
            inside = (along / r) ** 2 + (across / (r * aspect[i])) ** 2 <= 1.0
        mask = inside & ~covered[y0:y1, x0:x1]
        if not mask.any():
            continue
        c0, c1 = colors[i]
        tex = textures[i]
        if tex == 0:
            patch = np.broadcast_to(c0, mask.shape + (3,))
        elif tex == 1:
            t = 0.5 + 0.5 * np.sin(2 * np.pi * freq[i] * along + phase[i])
            t = (t > 0.5).astype(np.float64) if hard[i] else t
            patch = c0 + t[..., None] * (c1 - c0)
        elif tex == 2:
            field = noise_fields[i % 2][y0:y1, x0:x1]
            patch = c0 * (1.0 + amp[i] * field[..., None])
        else:
            t = np.clip(0.5 + along / (2 * r), 0.0, 1.0)
            patch = c0 + t[..., None] * (c1 - c0)
        image[y0:y1, x0:x1][mask] = np.broadcast_to(patch, mask.shape + (3,))[mask]
        covered[y0:y1, x0:x1] |= mask
        if i % 64 == 63 and covered.all():
            break
    if not covered.all():
        image[~covered] = colors[-1, 0]

    theta = rng.uniform(0.0, 2 * np.pi)
    yy, xx = np.mgrid[0:height, 0:width]
    ramp = ((xx / max(width - 1, 1) - 0.5) * np.cos(theta) + (yy / max(height - 1, 1) - 0.5) * np.sin(theta))
    illumination = rng.uniform(0.75, 1.0) + rng.uniform(0.0, 0.5) * ramp
    return np.clip(image * illumination[..., None], 0.0, 1.0).astype(np.float32)


#: Colour photographs bundled inside scikit-image (no download). ``motorcycle`` is the left view of
#: ``stereo_motorcycle``; the right view is not used (it would leak across the split).
NATURAL_IMAGES = ("astronaut", "rocket", "motorcycle", "hubble_deep_field", "immunohistochemistry", "chelsea", "coffee")
#: Reserved for held-out evaluation; never used for training.
HELDOUT_NATURAL = ("chelsea", "coffee")
TRAIN_NATURAL = tuple(n for n in NATURAL_IMAGES if n not in HELDOUT_NATURAL)


@functools.lru_cache(maxsize=None)
def _load_natural(name: str) -> np.ndarray:
    import skimage.data

    image = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    image = np.ascontiguousarray(image[..., :3], dtype=np.float32) / 255.0
    image.setflags(write=False)
    return image


def natural_images(split: str = "all") -> list[tuple[str, np.ndarray]]:
    """The bundled colour photographs as ``(name, (H, W, 3) float32 sRGB in [0, 1])``, read-only arrays.

    Args:
        split: ``"train"`` (:data:`TRAIN_NATURAL`), ``"heldout"`` (:data:`HELDOUT_NATURAL`) or ``"all"``.
    """
    names = {"train": TRAIN_NATURAL, "heldout": HELDOUT_NATURAL, "all": NATURAL_IMAGES}.get(split)
    if names is None:
        raise ValueError(f"unknown split {split!r}; expected 'train', 'heldout' or 'all'")
    return [(n, _load_natural(n)) for n in names]
