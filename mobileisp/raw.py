"""Reading Bayer RAW files (anything LibRaw decodes: DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, ...) into
packed RGGB, the input every mobileisp network takes.

:func:`read_raw` keeps the visible sensor area, normalises any 2x2 Bayer layout to RGGB by dropping one
leading row and/or column (then one trailing row/column if the size is odd), subtracts the per-channel
black level, divides by ``white - black`` and clips to [0, 1]. Non-Bayer sensors (X-Trans, Foveon,
linear DNG, monochrome) are refused with :class:`~mobileisp.errors.UnsupportedSensorError`.

Camera metadata comes from LibRaw (as-shot white balance, colour matrix, exposure) and, for TIFF-based
files (DNG, NEF, CR2, ARW, ...), from the IFD0/EXIF tags read with tifffile: rawpy exposes no make/model,
and for DNG its colour matrix stays zero (LibRaw fills it only from its own camera table) and it ignores
an ISOSpeedRatings tag in IFD0.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from mobileisp.errors import ImageSizeError, MobileISPError, RawFormatError, UnsupportedSensorError
from mobileisp.metadata import CameraMetadata

#: The four 2x2 Bayer layouts (colours of the tile row by row).
BAYER_PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")

#: (row, col) of R, Gr, Gb, B in the RGGB tile: the packed channel order.
_RGGB_POSITIONS = ((0, 0), (0, 1), (1, 0), (1, 1))

#: LibRaw (dcraw's identify()) calls any image narrower or shorter than this "not a RAW file".
LIBRAW_MIN_SIZE = 22


@dataclass(frozen=True)
class RawImage:
    """A Bayer RAW file, decoded and normalised.

    Attributes:
        packed: (4, H/2, W/2) float32 in [0, 1], channels R, Gr, Gb, B (Gr shares rows with R): the visible
            area after the RGGB crop, black-subtracted, divided by ``white_level - black_level``, clipped.
            H, W are the cropped (even) mosaic size.
        metadata: camera metadata; fields the file does not carry are None.
        cfa: the sensor's own layout of the visible area before the crop, e.g. ``"GRBG"``.
        black_level: black level of each packed channel (R, Gr, Gb, B), in raw units.
        white_level: saturation level in raw units.
        path: the file it came from (None if not read from a file).
    """

    packed: np.ndarray
    metadata: CameraMetadata
    cfa: str
    black_level: tuple[float, float, float, float]
    white_level: float
    path: str | None = None


def read_raw(path: str | os.PathLike) -> RawImage:
    """Decode a Bayer RAW file into packed RGGB.

    Args:
        path: any RAW file LibRaw reads.

    Returns:
        The :class:`RawImage`.

    Raises:
        RawFormatError: missing, unreadable, empty, truncated or not a RAW file.
        UnsupportedSensorError: X-Trans, Foveon, linear DNG, monochrome or other non-Bayer sensor.
        ImageSizeError: a DNG under LibRaw's 22x22 minimum, or a visible area under 4x4 pixels.
    """
    path = _check_file(path)
    with _open(path) as raw:
        cfa, color_index = _bayer_layout(raw, path)
        try:
            mosaic = raw.raw_image_visible.copy()  # the view dies with the RawPy
            per_color = np.asarray(raw.black_level_per_channel, dtype=np.float64)
            white = float(raw.white_level)
        except Exception as e:  # LibRaw unpacks lazily: a truncated file can fail only here
            raise _libraw_error(path, e) from None
        metadata = _metadata(raw, path)
    h, w = mosaic.shape
    if h < 4 or w < 4:
        raise ImageSizeError(f"{path}: visible area {w}x{h} is smaller than the 4x4 a Bayer tile needs")
    black = per_color[color_index]  # (2, 2): black of each tile position
    if white <= black.max():
        raise RawFormatError(f"{path}: white level {white:g} is not above the black level {black.max():g}")
    packed = pack_bayer(mosaic, cfa, black.ravel(), white)
    dy, dx = rggb_offset(cfa)
    channel_black = tuple(float(black[(dy + y) % 2, (dx + x) % 2]) for y, x in _RGGB_POSITIONS)
    return RawImage(packed, metadata, cfa, channel_black, white, str(path))


def read_metadata(path: str | os.PathLike) -> CameraMetadata:
    """Camera metadata of any RAW file LibRaw reads (Bayer or not); missing fields are None.

    Raises:
        RawFormatError: missing, unreadable, empty, truncated or not a RAW file.
    """
    path = _check_file(path)
    with _open(path) as raw:
        return _metadata(raw, path)


def pack_bayer(
    mosaic: np.ndarray,
    cfa: str = "RGGB",
    black_level: float | Sequence[float] = 0.0,
    white_level: float = 1.0,
) -> np.ndarray:
    """Normalise a Bayer mosaic to RGGB and pack it into four half-resolution planes.

    Drops one leading row and/or column so the mosaic starts on red (see :func:`rggb_offset`), then one
    trailing row/column if the size is odd, and returns ``clip((x - black) / (white - black), 0, 1)``.

    Args:
        mosaic: (H, W) raw values, H, W >= 4.
        cfa: layout of ``mosaic``, one of :data:`BAYER_PATTERNS`.
        black_level: one value, or one per position of the 2x2 tile of ``mosaic`` (row by row, as ``cfa``).
        white_level: saturation value, above every black level.

    Returns:
        (4, H'/2, W'/2) float32, channels R, Gr, Gb, B, where H' = even part of H - row offset (same for W).

    Raises:
        ImageSizeError: H or W below 4.
    """
    mosaic = np.asarray(mosaic)
    if mosaic.ndim != 2:
        raise ValueError(f"mosaic must be 2-D (H, W), got shape {mosaic.shape}")
    if min(mosaic.shape) < 4:
        raise ImageSizeError(f"Bayer mosaic of {mosaic.shape[1]}x{mosaic.shape[0]} is smaller than 4x4")
    black = np.broadcast_to(np.asarray(black_level, dtype=np.float64).reshape(-1), (4,)).reshape(2, 2)
    dy, dx = rggb_offset(cfa)
    m = mosaic[dy:, dx:]
    h, w = m.shape[0] // 2 * 2, m.shape[1] // 2 * 2
    planes = []
    for y, x in _RGGB_POSITIONS:
        b = black[(dy + y) % 2, (dx + x) % 2]
        plane = (m[y:h:2, x:w:2].astype(np.float32) - np.float32(b)) / np.float32(white_level - b)
        planes.append(np.clip(plane, 0.0, 1.0))
    return np.stack(planes)


def rggb_offset(cfa: str) -> tuple[int, int]:
    """Leading (rows, cols) to drop so a ``cfa`` mosaic starts on an RGGB tile: the position of red.

    RGGB -> (0, 0), GRBG -> (0, 1), GBRG -> (1, 0), BGGR -> (1, 1).
    """
    if cfa not in BAYER_PATTERNS:
        raise ValueError(f"cfa must be one of {', '.join(BAYER_PATTERNS)}, got {cfa!r}")
    r = cfa.index("R")
    return r // 2, r % 2


def bayer_positions(cfa: str) -> tuple[tuple[int, int], ...]:
    """(row, col) inside the 2x2 ``cfa`` tile of R, Gr, Gb, B (Gr: the green in R's row).

    ``bayer_positions("GRBG") == ((0, 1), (0, 0), (1, 1), (1, 0))``.
    """
    ry, rx = rggb_offset(cfa)
    return tuple(((ry + y) % 2, (rx + x) % 2) for y, x in _RGGB_POSITIONS)


# --- opening files and mapping LibRaw's failures to one-line errors -------------------------------------


def _check_file(path: str | os.PathLike) -> Path:
    """Fail early, with a clear message, on what LibRaw would only call an I/O error."""
    path = Path(path)
    if path.is_dir():
        raise RawFormatError(f"{path} is a directory, not a RAW file")
    try:
        with open(path, "rb") as f:
            empty = not f.read(1)
    except FileNotFoundError:
        raise RawFormatError(f"{path}: no such file") from None
    except PermissionError:
        raise RawFormatError(f"{path}: permission denied (cannot read the file)") from None
    except OSError as e:
        raise RawFormatError(f"{path}: cannot read the file ({e.strerror or e})") from None
    if empty:
        raise RawFormatError(f"{path} is empty (0 bytes), not a RAW file")
    return path


@contextlib.contextmanager
def _open(path: Path) -> Iterator[Any]:
    """rawpy.RawPy for ``path``, unpacked, with LibRaw errors turned into RawFormatError."""
    import rawpy

    try:
        with _c_stderr_silenced():
            raw = rawpy.imread(str(path))
    except Exception as e:
        raise _libraw_error(path, e) from None
    try:
        try:
            with _c_stderr_silenced():
                raw.raw_type  # forces unpack(): a truncated file usually fails here
        except Exception as e:
            raise _libraw_error(path, e) from None
        yield raw
    finally:
        raw.close()


@contextlib.contextmanager
def _c_stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null for the duration.

    LibRaw's default data-error callback prints ``<file>: Unexpected end of file`` straight to C stderr,
    which would add a second line to the CLI's one-line error; the RawFormatError says it instead.
    """
    try:
        saved = os.dup(2)
    except OSError:  # no stderr at all: nothing to silence
        yield
        return
    try:
        sys.stderr.flush()
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 2)
        os.close(devnull)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _libraw_error(path: Path, exc: BaseException) -> MobileISPError:
    import rawpy

    detail = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
    if isinstance(exc, rawpy.LibRawFileUnsupportedError):
        ifd0 = _tiff_tags(path)[0]
        w, h = ifd0.get("ImageWidth", 0), ifd0.get("ImageLength", 0)
        if "DNGVersion" in ifd0 and ifd0.get("NewSubfileType", 0) == 0 and 0 < min(w, h) < LIBRAW_MIN_SIZE:
            return ImageSizeError(f"{path} is {w}x{h} pixels; LibRaw reads only RAW images of at least "
                                  f"{LIBRAW_MIN_SIZE}x{LIBRAW_MIN_SIZE}")
        return RawFormatError(f"{path} is not a RAW file LibRaw can read")
    if isinstance(exc, (rawpy.LibRawIOError, rawpy.LibRawDataError)):
        return RawFormatError(f"{path} is truncated or corrupt (LibRaw: {detail})")
    if isinstance(exc, (rawpy.LibRawTooBigError, rawpy.LibRawUnsufficientMemoryError, MemoryError)):
        return RawFormatError(f"{path} is too large to decode (LibRaw: {detail})")
    return RawFormatError(f"{path}: LibRaw cannot decode it ({type(exc).__name__}: {detail})")


def _bayer_layout(raw: Any, path: Path) -> tuple[str, np.ndarray]:
    """The visible area's Bayer layout as a string (e.g. ``"GRBG"``) and the (2, 2) LibRaw colour index of
    each tile position, with the second green as 3 (the index ``black_level_per_channel`` uses for it)."""
    try:
        pattern = raw.raw_pattern
        desc = raw.color_desc.decode("ascii", errors="replace")
        stacked = pattern is None or raw.raw_image.ndim == 3
    except NotImplementedError as e:  # rawpy: CFA "filters" value it has no pattern for (Leaf, ...)
        raise UnsupportedSensorError(f"{path}: unsupported colour filter layout ({e}); mobileisp needs a "
                                     "2x2 Bayer sensor") from None
    except Exception as e:
        raise _libraw_error(path, e) from None
    if stacked:
        kind = "a linear (already demosaiced) DNG" if _is_dng(path) else "a Foveon/3-channel (non-mosaic) RAW"
        raise UnsupportedSensorError(f"{path} is {kind}, not a 2x2 Bayer mosaic; mobileisp needs Bayer RAW")
    if pattern.shape == (6, 6):
        raise UnsupportedSensorError(f"{path} has a Fujifilm X-Trans (6x6) sensor, not a 2x2 Bayer mosaic; "
                                     "mobileisp needs Bayer RAW")
    if pattern.shape == (1, 1):
        raise UnsupportedSensorError(f"{path} is from a monochrome sensor (no colour filter array); "
                                     "mobileisp needs Bayer RAW")
    if pattern.shape != (2, 2):
        raise UnsupportedSensorError(f"{path} has a {pattern.shape[0]}x{pattern.shape[1]} colour filter "
                                     "pattern, not a 2x2 Bayer mosaic")
    index = pattern.astype(np.intp)
    greens = np.argwhere(index.ravel() == 1).ravel()
    if len(greens) == 2:  # LibRaw's adjust_bl() gives the later green (raster order) index 3
        index.flat[greens[1]] = 3
    cfa = "".join(desc[i] if i < len(desc) else "?" for i in index.ravel())
    if cfa not in BAYER_PATTERNS:
        raise UnsupportedSensorError(f"{path} has a {cfa} ({desc}) colour filter pattern, not an RGB Bayer "
                                     "mosaic")
    return cfa, index


# --- metadata -------------------------------------------------------------------------------------------


def _metadata(raw: Any, path: Path) -> CameraMetadata:
    """CameraMetadata from LibRaw plus the file's TIFF/EXIF tags (tags first: exact rationals)."""
    ifd0, exif = _tiff_tags(path)
    try:
        cam_mul = [float(v) for v in raw.camera_whitebalance]
        xyz_to_cam = np.asarray(raw.rgb_xyz_matrix, dtype=np.float64)[:3]
        other = raw.other
    except Exception as e:
        raise _libraw_error(path, e) from None
    libraw_exposure = {
        "iso": other.iso_speed, "exposure_time": other.shutter_speed,
        "f_number": other.aperture, "focal_length": other.focal_length,
    }
    tag_names = {"iso": "ISOSpeedRatings", "exposure_time": "ExposureTime",
                 "f_number": "FNumber", "focal_length": "FocalLength"}
    exposure = {}
    for field, tag in tag_names.items():
        value = _positive(exif.get(tag), rational=field != "iso")
        value = _positive(ifd0.get(tag)) if value is None else value
        exposure[field] = _positive(libraw_exposure[field]) if value is None else value
    color_matrix = _dng_color_matrix(ifd0)
    if color_matrix is None and np.any(xyz_to_cam) and np.all(np.isfinite(xyz_to_cam)):
        color_matrix = xyz_to_cam
    neutral = ifd0.get("AsShotNeutral")
    if isinstance(neutral, list) and len(neutral) == 3 and all(v > 0 for v in neutral):
        cam_mul = [1.0 / v for v in neutral]  # the DNG's exact rationals rather than LibRaw's float32 copy
    if color_matrix is not None:
        color_matrix = tuple(tuple(float(v) for v in row) for row in color_matrix)
    return CameraMetadata(
        make=_text(ifd0.get("Make")),
        model=_text(ifd0.get("Model")),
        white_balance=_wb_gains(cam_mul),
        color_matrix=color_matrix,
        **exposure,
    )


def _wb_gains(cam_mul: list[float]) -> tuple[float, float, float] | None:
    """As-shot multipliers (R, G, B, G2) -> gains with G = 1. LibRaw reports ``[0, 1, 0, 0]`` (not zeros)
    when the file has none, so any non-positive R, G or B means "not recorded"."""
    r, g, b = cam_mul[:3]
    if not all(np.isfinite(v) and v > 0 for v in (r, g, b)):
        return None
    return (r / g, 1.0, b / g)


def _dng_color_matrix(ifd0: dict[str, Any]) -> np.ndarray | None:
    """XYZ -> camera 3x3 from DNG ColorMatrix1/2: the one calibrated for D65 (CalibrationIlluminant 21),
    else ColorMatrix2 (by DNG convention the daylight-end one), else ColorMatrix1."""
    found = {}
    for i in (1, 2):
        values = ifd0.get(f"ColorMatrix{i}")
        if values is not None and len(values) >= 9:
            found[i] = (ifd0.get(f"CalibrationIlluminant{i}"), np.asarray(values[:9], dtype=np.float64))
    for i in (1, 2):
        if i in found and found[i][0] == 21:
            return found[i][1].reshape(3, 3)
    for i in (2, 1):
        if i in found:
            return found[i][1].reshape(3, 3)
    return None


def _is_dng(path: Path) -> bool:
    return "DNGVersion" in _tiff_tags(path)[0]


def _tiff_tags(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """IFD0 tags (rationals as floats, lists for multi-valued) and the EXIF IFD (raw tifffile values) of a
    TIFF-based RAW file; two empty dicts for any other file."""
    import tifffile

    log = logging.getLogger("tifffile")
    level = log.level
    log.setLevel(logging.CRITICAL)  # maker notes and vendor tags make tifffile log warnings we do not need
    try:
        with tifffile.TiffFile(path) as tif:
            ifd0 = {}
            for tag in tif.pages[0].tags.values():
                if tag.name == "ExifTag":
                    continue
                ifd0[tag.name] = _tag_value(tag.value, int(tag.dtype), tag.count)
            exif_tag = tif.pages[0].tags.get("ExifTag")
            exif = exif_tag.value if exif_tag is not None and isinstance(exif_tag.value, dict) else {}
    except Exception:  # not TIFF-based (CR3, RAF, ORF, RW2, ...) or unparsable: LibRaw's values only
        return {}, {}
    finally:
        log.setLevel(level)
    return ifd0, exif


def _tag_value(value: Any, dtype: int, count: int) -> Any:
    """Rationals (TIFF types 5, 10) become floats; multi-valued tags lists; other values pass through."""
    if dtype in (5, 10) and isinstance(value, (tuple, list)):
        pairs = [n / d if d else float("nan") for n, d in zip(value[0::2], value[1::2])]
        return pairs[0] if count == 1 else pairs
    if isinstance(value, tuple):
        return list(value)
    return value


def _positive(value: Any, rational: bool = False) -> float | None:
    """A positive finite number from a tag or LibRaw value; None for missing, zero or garbage.

    With ``rational``, a ``(numerator, denominator)`` pair (how tifffile returns EXIF IFD rationals) is
    divided; otherwise a sequence (e.g. a multi-valued ISOSpeedRatings) gives its first value.
    """
    if isinstance(value, (tuple, list)):
        if rational and len(value) == 2:
            value = value[0] / value[1] if value[1] else None
        else:
            value = value[0] if value else None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if np.isfinite(value) and value > 0 else None


def _text(value: Any) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    if not isinstance(value, str):
        return None
    value = value.strip("\x00 ")
    return value or None
