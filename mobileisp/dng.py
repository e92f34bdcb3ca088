"""Writing DNG files that LibRaw reads: Bayer (CFA) and linear (3-sample) DNG, built on tifffile.

The raw image sits uncompressed in IFD0 (NewSubfileType 0) with the DNG 1.4 tags LibRaw and Adobe readers
need: CFA layout, per-position BlackLevel, WhiteLevel, ColorMatrix1 (XYZ D65 -> camera), AsShotNeutral.
Exposure settings are written as TIFF/EP tags in IFD0 (tifffile cannot write an EXIF sub-IFD); LibRaw
reads ExposureTime, FNumber and FocalLength from there but not ISOSpeedRatings, which
:func:`mobileisp.raw.read_metadata` takes from the tags itself.

CFA strings list the colours of one repeat tile row by row, e.g. ``"GRBG"`` means row 0 = G R, row 1 = B G.
"""

from __future__ import annotations

import os
from fractions import Fraction
from pathlib import Path
from typing import Sequence

import numpy as np

from mobileisp._io import atomic_path
from mobileisp.metadata import CameraMetadata
from mobileisp.raw import BAYER_PATTERNS, bayer_positions

_CFA_INDEX = {"R": 0, "G": 1, "B": 2}  # DNG CFAPattern colour codes (CFAPlaneColor 0, 1, 2 = R, G, B)
_D65 = 21  # EXIF LightSource code used by CalibrationIlluminant1

# TIFF data types
_BYTE, _ASCII, _SHORT, _LONG, _RATIONAL, _SRATIONAL = 1, 2, 3, 4, 5, 10

_PHOTOMETRIC_CFA = 32803
_PHOTOMETRIC_LINEAR_RAW = 34892


def write_dng(
    path: str | os.PathLike,
    mosaic: np.ndarray,
    cfa: str = "RGGB",
    black_level: float | Sequence[float] = 0,
    white_level: int = 65535,
    metadata: CameraMetadata | None = None,
    force: bool = False,
) -> Path:
    """Write a single-plane CFA mosaic as a DNG that LibRaw/rawpy can decode.

    Args:
        path: destination (written atomically; refused if it exists unless ``force``).
        mosaic: (H, W) integer array, raw sensor values in [0, 65535]. LibRaw refuses images under
            :data:`mobileisp.raw.LIBRAW_MIN_SIZE` (22) pixels a side; they are still written, so that
            error can be tested.
            Stored with 8 bits per sample when ``white_level`` and all values fit in 8 bits, else 16.
        cfa: colours of the CFA repeat tile, row by row: one of :data:`BAYER_PATTERNS`, or any square
            tile of R/G/B letters (36 letters make a 6x6 X-Trans-like tile, for testing the non-Bayer error).
        black_level: one value, or one per position of the 2x2 tile in the same row-by-row order as ``cfa``
            (BlackLevelRepeatDim 2x2). Integers are stored as LONG, fractions as RATIONAL.
        white_level: saturation value (WhiteLevel), above every black level.
        metadata: camera metadata to embed; None fields (or ``metadata=None``) are left out of the file.
        force: overwrite an existing ``path``.

    Returns:
        ``path`` as a Path.

    Raises:
        ValueError: bad shape, dtype, CFA string, or levels.
        mobileisp.errors.OutputExistsError: ``path`` exists and ``force`` is False.
    """
    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2:
        raise ValueError(f"mosaic must be 2-D (H, W), got shape {mosaic.shape}")
    n = _tile_size(cfa)
    blacks = _levels(black_level, (1, 4) if n == 2 else (1,), "black_level")
    repeat = (2, 2) if len(blacks) == 4 else (1, 1)
    data = _as_samples(mosaic, blacks, white_level)
    tags = [
        (33421, _SHORT, 2, (n, n), True),  # CFARepeatPatternDim
        (33422, _BYTE, n * n, bytes(_CFA_INDEX[c] for c in cfa), True),  # CFAPattern
        (50710, _BYTE, 3, bytes((0, 1, 2)), True),  # CFAPlaneColor: R, G, B
        (50711, _SHORT, 1, 1, True),  # CFALayout: rectangular
        *_level_tags(blacks, repeat, white_level),
        *_metadata_tags(metadata),
    ]
    return _write(path, data, _PHOTOMETRIC_CFA, tags, force)


def write_linear_dng(
    path: str | os.PathLike,
    rgb: np.ndarray,
    black_level: float | Sequence[float] = 0,
    white_level: int = 65535,
    metadata: CameraMetadata | None = None,
    force: bool = False,
) -> Path:
    """Write an already demosaiced camera-RGB image as a linear DNG (PhotometricInterpretation LinearRaw).

    LibRaw reads it as a 3-channel ("stack") image, which :func:`mobileisp.raw.read_raw` rejects as
    non-Bayer; this exists so that error path can be tested and such files can be made.

    Args:
        path: destination (atomic; refused if it exists unless ``force``).
        rgb: (H, W, 3) integer array in [0, 65535], camera RGB.
        black_level: one value, or one per sample (R, G, B).
        white_level: saturation value.
        metadata: camera metadata to embed (None fields left out).
        force: overwrite an existing ``path``.

    Returns:
        ``path`` as a Path.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"rgb must be (H, W, 3), got shape {rgb.shape}")
    blacks = _levels(black_level, (1, 3), "black_level")
    data = _as_samples(rgb, blacks, white_level)
    tags = [*_level_tags(blacks, (1, 1), white_level), *_metadata_tags(metadata)]
    return _write(path, data, _PHOTOMETRIC_LINEAR_RAW, tags, force)


def mosaic_from_packed(
    packed: np.ndarray,
    cfa: str = "RGGB",
    black_level: float | Sequence[float] = 0,
    white_level: int = 65535,
) -> np.ndarray:
    """Lay packed R, Gr, Gb, B planes out as a Bayer mosaic with the layout ``cfa``.

    Each packed pixel ``(i, j)`` fills tile ``(i, j)`` of the mosaic: R and B where ``cfa`` has them,
    Gr on the green that shares a row with R, Gb on the one that shares a row with B. Values are mapped
    ``round(clip(v, 0, 1) * (white - black) + black)``. For RGGB, :func:`mobileisp.raw.read_raw` returns
    exactly ``packed`` (to quantisation); for other layouts it crops one leading row and/or column to reach
    RGGB, so its planes are this tiling shifted by half a tile (and one packed row/column shorter).

    Args:
        packed: (4, h, w) float array in [0, 1], channels R, Gr, Gb, B.
        cfa: one of :data:`BAYER_PATTERNS`.
        black_level: one value or one per tile position (row by row, as in ``cfa``).
        white_level: value that 1.0 maps to.

    Returns:
        (2h, 2w) uint16 mosaic.
    """
    packed = np.asarray(packed, dtype=np.float64)
    if packed.ndim != 3 or packed.shape[0] != 4:
        raise ValueError(f"packed must be (4, h, w), got shape {packed.shape}")
    positions = bayer_positions(cfa)
    blacks = np.broadcast_to(np.asarray(_levels(black_level, (1, 4), "black_level"), np.float64), (4,))
    if not 0 < white_level <= 65535 or white_level <= blacks.max():
        raise ValueError(f"white_level {white_level} must be in (max black level, 65535]")
    _, h, w = packed.shape
    mosaic = np.empty((2 * h, 2 * w), dtype=np.uint16)
    for channel, (y, x) in enumerate(positions):
        black = blacks[2 * y + x]
        value = np.clip(packed[channel], 0.0, 1.0) * (white_level - black) + black
        mosaic[y::2, x::2] = np.round(value).astype(np.uint16)
    return mosaic


def _tile_size(cfa: str) -> int:
    n = int(round(len(cfa) ** 0.5))
    if n < 2 or n * n != len(cfa) or set(cfa) != set(_CFA_INDEX) or (n == 2 and cfa not in BAYER_PATTERNS):
        raise ValueError(f"cfa must be a Bayer pattern ({', '.join(BAYER_PATTERNS)}) or a larger square "
                         f"tile of R/G/B letters, got {cfa!r}")
    return n


def _levels(value: float | Sequence[float], counts: tuple[int, ...], name: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in np.atleast_1d(np.asarray(value, dtype=np.float64)).ravel())
    if len(values) not in counts or any(not np.isfinite(v) or v < 0 for v in values):
        raise ValueError(f"{name} must be {' or '.join(map(str, counts))} non-negative values, got {value!r}")
    return values


def _as_samples(image: np.ndarray, blacks: tuple[float, ...], white_level: int) -> np.ndarray:
    if not np.issubdtype(image.dtype, np.integer):
        raise ValueError(f"raw data must be integers, got {image.dtype}")
    if int(white_level) != white_level or not max(blacks) < white_level <= 65535:
        raise ValueError(f"white_level {white_level} must be an integer in (max black level, 65535]")
    lo, hi = int(image.min()), int(image.max())
    if lo < 0 or hi > 65535:
        raise ValueError(f"raw values must lie in [0, 65535], got [{lo}, {hi}]")
    dtype = np.uint8 if white_level <= 255 and hi <= 255 else np.uint16
    return np.ascontiguousarray(image, dtype=dtype)


def _level_tags(blacks: tuple[float, ...], repeat: tuple[int, int], white_level: int) -> list[tuple]:
    if all(b == int(b) for b in blacks):
        black_tag = (50714, _LONG, len(blacks), tuple(int(b) for b in blacks), True)
    else:
        black_tag = (50714, _RATIONAL, len(blacks), _rationals(blacks), True)
    return [
        (50713, _SHORT, 2, repeat, True),  # BlackLevelRepeatDim
        black_tag,  # BlackLevel
        (50717, _LONG, 1, int(white_level), True),  # WhiteLevel
    ]


def _metadata_tags(meta: CameraMetadata | None) -> list[tuple]:
    meta = meta or CameraMetadata()
    tags: list[tuple] = []
    if meta.make:
        tags.append((271, _ASCII, 0, meta.make, True))
    if meta.model:
        tags.append((272, _ASCII, 0, meta.model, True))
    unique = " ".join(s for s in (meta.make, meta.model) if s) or "mobileisp synthetic"
    tags.append((50708, _ASCII, 0, unique, True))  # UniqueCameraModel (required by the DNG spec)
    if meta.color_matrix is not None:
        cm = np.asarray(meta.color_matrix, dtype=np.float64)
        if cm.shape != (3, 3):
            raise ValueError(f"color_matrix must be 3x3, got shape {cm.shape}")
        tags.append((50721, _SRATIONAL, 9, _rationals(cm.ravel(), signed=True), True))  # ColorMatrix1
        tags.append((50778, _SHORT, 1, _D65, True))  # CalibrationIlluminant1
    if meta.white_balance is not None:
        gains = np.asarray(meta.white_balance, dtype=np.float64)
        if gains.shape != (3,) or not np.all(gains > 0):
            raise ValueError(f"white_balance must be 3 positive gains, got {meta.white_balance!r}")
        tags.append((50728, _RATIONAL, 3, _rationals(1.0 / gains), True))  # AsShotNeutral
    # TIFF/EP exposure tags in IFD0 (same codes as in an EXIF IFD)
    for code, value in ((33434, meta.exposure_time), (33437, meta.f_number), (37386, meta.focal_length)):
        if value is not None:
            tags.append((code, _RATIONAL, 1, _rationals([value]), True))
    if meta.iso is not None:
        tags.append((34855, _SHORT, 1, int(round(min(meta.iso, 65535))), True))  # ISOSpeedRatings
    return tags


def _rationals(values: Sequence[float], signed: bool = False) -> tuple[int, ...]:
    """Flatten values into (numerator, denominator) pairs that fit 32-bit (S)RATIONALs, as exact as they fit
    (denominator up to 10**6: 1/120 s stays 1/120)."""
    limit = 2**31 - 1 if signed else 2**32 - 1
    out: list[int] = []
    for v in values:
        v = float(v)
        if not np.isfinite(v) or (v < 0 and not signed) or abs(v) > limit:
            raise ValueError(f"cannot store {v} as a TIFF {'S' if signed else ''}RATIONAL")
        f = Fraction(v).limit_denominator(max(1, min(10**6, int(limit // max(abs(v), 1.0)))))
        out += [f.numerator, f.denominator]
    return tuple(out)


def _write(path: str | os.PathLike, data: np.ndarray, photometric: int, tags: list[tuple],
           force: bool) -> Path:
    import tifffile

    tags = [
        (50706, _BYTE, 4, bytes((1, 4, 0, 0)), True),  # DNGVersion
        (50707, _BYTE, 4, bytes((1, 1, 0, 0)), True),  # DNGBackwardVersion
        *tags,
    ]
    with atomic_path(path, force) as tmp:
        tifffile.imwrite(
            tmp, data, photometric=photometric, planarconfig="contig" if data.ndim == 3 else None,
            subfiletype=0, compression=None, software="mobileisp", metadata=None, extratags=tags,
        )
    return Path(path)
