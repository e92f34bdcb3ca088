"""mobileisp.raw: DNG round trips through LibRaw for every Bayer layout, odd sizes, metadata, and one-line
errors for every kind of file that is not a readable Bayer RAW."""

from __future__ import annotations

import os

import numpy as np
import pytest
from helpers_raw import META, RED_AT, RGGB_AT, expected_packed, planted
from PIL import Image

import mobileisp.raw as raw_module
from mobileisp.dng import mosaic_from_packed, write_dng, write_linear_dng
from mobileisp.errors import ImageSizeError, MobileISPError, RawFormatError, UnsupportedSensorError
from mobileisp.metadata import CameraMetadata
from mobileisp.raw import pack_bayer, read_metadata, read_raw

PATTERNS = ["RGGB", "BGGR", "GRBG", "GBRG"]
BLACK = (60, 64, 70, 80)  # per tile position, row by row


def _write(path, cfa, height, width, black=BLACK, white=4095, meta=META):
    """Plant :func:`planted` planes in a ``height`` x ``width`` mosaic (odd sizes trimmed at the end)."""
    planes = planted((height + 1) // 2, (width + 1) // 2)
    mosaic = mosaic_from_packed(planes, cfa, black, white)[:height, :width]
    return write_dng(path, mosaic, cfa, black, white, meta), planes


def _channel_black(cfa, black=BLACK):
    """Black of R, Gr, Gb, B: position of each colour in the tile, found from the letters."""
    r, b = cfa.index("R"), cfa.index("B")
    gr = (r // 2) * 2 + 1 - r % 2  # the other pixel in red's row
    gb = (b // 2) * 2 + 1 - b % 2
    return tuple(float(black[i]) for i in (r, gr, gb, b))


@pytest.mark.parametrize("white", [4095, 16383])
@pytest.mark.parametrize("cfa", PATTERNS)
def test_round_trip_every_bayer_pattern(tmp_path, cfa, white):
    path, planes = _write(tmp_path / f"{cfa}.dng", cfa, 40, 48, white=white)
    image = read_raw(path)
    assert image.cfa == cfa
    assert image.path == str(path)
    assert image.packed.dtype == np.float32
    dy, dx = RED_AT[cfa]
    assert image.packed.shape == (4, (40 - dy) // 2, (48 - dx) // 2)
    assert image.black_level == _channel_black(cfa)
    assert image.white_level == white
    expect = expected_packed(planes, cfa, 40, 48)
    step = 1.0 / (white - max(BLACK))
    assert np.abs(image.packed - expect).max() <= step
    # each channel stays in its own planted band: no swapped planes
    for c in range(4):
        lo, hi = 0.05 + 0.25 * c - step, 0.25 + 0.25 * c + step
        assert lo <= image.packed[c].min() <= image.packed[c].max() <= hi


@pytest.mark.parametrize("cfa", PATTERNS)
def test_odd_size_is_cropped_to_even(tmp_path, cfa):
    path, planes = _write(tmp_path / "odd.dng", cfa, 25, 23)
    image = read_raw(path)
    dy, dx = RED_AT[cfa]
    h, w = (25 - dy) // 2, (23 - dx) // 2
    assert image.packed.shape == (4, h, w)
    assert np.abs(image.packed - expected_packed(planes, cfa, 25, 23)).max() <= 1 / (4095 - 80)


def test_metadata_round_trip(tmp_path):
    path, _ = _write(tmp_path / "m.dng", "GBRG", 24, 24)
    for meta in (read_raw(path).metadata, read_metadata(path)):
        assert meta.make == "Acme Optics" and meta.model == "Phone 7 Pro"
        assert meta.white_balance == pytest.approx((2.1, 1.0, 1.6), rel=1e-9)
        np.testing.assert_allclose(meta.color_matrix, META.color_matrix, atol=1e-6)
        assert meta.iso == 400.0
        assert meta.exposure_time == pytest.approx(1 / 120, rel=1e-9)
        assert meta.f_number == pytest.approx(1.8, rel=1e-9)
        assert meta.focal_length == pytest.approx(4.25, rel=1e-9)


def test_missing_metadata_is_none(tmp_path):
    path, _ = _write(tmp_path / "bare.dng", "RGGB", 24, 24, meta=None)
    assert read_metadata(path) == CameraMetadata()  # every field None, none 0


def test_partial_metadata(tmp_path):
    path, _ = _write(tmp_path / "part.dng", "RGGB", 24, 24, meta=CameraMetadata(model="X1", iso=3200.0))
    meta = read_raw(path).metadata
    assert meta == CameraMetadata(model="X1", iso=3200.0)


def test_exif_ifd_values_win(tmp_path, monkeypatch):
    """NEF/CR2/ARW keep exposure settings in the EXIF sub-IFD, which tifffile returns as raw rationals."""
    path, _ = _write(tmp_path / "exif.dng", "RGGB", 24, 24, meta=CameraMetadata(f_number=8.0))
    real = raw_module._tiff_tags

    def with_exif(p):
        ifd0, _ = real(p)
        return ifd0, {"ExposureTime": (1, 250), "FNumber": (28, 10), "ISOSpeedRatings": (200, 200),
                      "FocalLength": (0, 1)}

    monkeypatch.setattr(raw_module, "_tiff_tags", with_exif)
    meta = read_metadata(path)
    assert meta.exposure_time == pytest.approx(1 / 250)
    assert meta.f_number == pytest.approx(2.8)  # EXIF beats the IFD0 tag (8.0)
    assert meta.iso == 200.0
    assert meta.focal_length is None  # 0/1 means "not recorded"


def test_pack_bayer_normalises_and_clips():
    mosaic = np.tile(np.array([[100, 50], [4000, 850]], dtype=np.uint16), (2, 2))  # 4x4 RGGB
    packed = pack_bayer(mosaic, "RGGB", (100, 100, 100, 600), 1100)
    assert packed.shape == (4, 2, 2)
    # R at black -> 0; Gr below black -> 0; Gb above white -> 1; B (850 - 600) / (1100 - 600)
    np.testing.assert_allclose(packed[:, 0, 0], [0.0, 0.0, 1.0, 0.5])
    np.testing.assert_allclose(packed[:, 1, 1], packed[:, 0, 0])


def test_pack_bayer_too_small():
    with pytest.raises(ImageSizeError, match="3x4"):
        pack_bayer(np.zeros((4, 3)), "RGGB", 0, 1)


# --- bad input: one line, the file's name, the right error class ---------------------------------------


def _assert_one_line(err: MobileISPError, name: str, *needles: str) -> None:
    message = str(err)
    assert "\n" not in message and name in message, message
    for needle in needles:
        assert needle in message, message


def test_truncated_dng(tmp_path):
    path, _ = _write(tmp_path / "cut.dng", "RGGB", 64, 64)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RawFormatError) as e:
        read_raw(path)
    _assert_one_line(e.value, "cut.dng", "truncated")


@pytest.mark.parametrize("name", ["photo.jpg", "photo.png", "photo_jpeg_renamed.dng"])
def test_image_given_as_raw(tmp_path, name):
    rgb = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    fmt = "PNG" if name.endswith(".png") else "JPEG"
    Image.fromarray(rgb).save(tmp_path / name, format=fmt)
    with pytest.raises(RawFormatError) as e:
        read_raw(tmp_path / name)
    _assert_one_line(e.value, name, "is not a RAW file LibRaw can read")
    assert type(e.value) is RawFormatError


def test_empty_file(tmp_path):
    (tmp_path / "empty.dng").write_bytes(b"")
    with pytest.raises(RawFormatError) as e:
        read_raw(tmp_path / "empty.dng")
    _assert_one_line(e.value, "empty.dng", "0 bytes")


def test_directory(tmp_path):
    (tmp_path / "folder.dng").mkdir()
    with pytest.raises(RawFormatError) as e:
        read_metadata(tmp_path / "folder.dng")
    _assert_one_line(e.value, "folder.dng", "directory")


def test_nonexistent(tmp_path):
    with pytest.raises(RawFormatError) as e:
        read_raw(tmp_path / "missing.dng")
    _assert_one_line(e.value, "missing.dng", "no such file")


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can read mode-000 files")
def test_unreadable(tmp_path):
    path, _ = _write(tmp_path / "locked.dng", "RGGB", 24, 24)
    path.chmod(0)
    try:
        with pytest.raises(RawFormatError) as e:
            read_raw(path)
        _assert_one_line(e.value, "locked.dng", "permission denied")
    finally:
        path.chmod(0o600)


def test_dng_below_libraw_minimum(tmp_path):
    path = write_dng(tmp_path / "tiny.dng", np.full((3, 5), 100, np.uint16), "RGGB", 0, 4095)
    with pytest.raises(ImageSizeError) as e:
        read_raw(path)
    _assert_one_line(e.value, "tiny.dng", "5x3", "22x22")


def test_xtrans(tmp_path):
    xtrans = "GGRGGB" "GGBGGR" "BRGRBG" "GGBGGR" "GGRGGB" "RBGBRG"
    mosaic = np.random.default_rng(0).integers(0, 4096, (36, 36), dtype=np.uint16)
    path = write_dng(tmp_path / "fuji.dng", mosaic, xtrans, 64, 4095)
    with pytest.raises(UnsupportedSensorError) as e:
        read_raw(path)
    _assert_one_line(e.value, "fuji.dng", "X-Trans")
    assert read_metadata(path).make is None  # metadata of a non-Bayer file is still readable


def test_linear_dng(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 4096, (24, 24, 3), dtype=np.uint16)
    path = write_linear_dng(tmp_path / "linear.dng", rgb, 0, 4095)
    with pytest.raises(UnsupportedSensorError) as e:
        read_raw(path)
    _assert_one_line(e.value, "linear.dng", "linear", "DNG")


def test_rggb_positions_match_helpers():
    """The packed order (R, Gr, Gb, B) the tests assume is what the library documents."""
    assert raw_module._RGGB_POSITIONS == RGGB_AT
    assert {cfa: raw_module.rggb_offset(cfa) for cfa in PATTERNS} == RED_AT
    assert raw_module.bayer_positions("BGGR") == ((1, 1), (1, 0), (0, 1), (0, 0))


@pytest.mark.parametrize(
    ("pattern", "desc", "cfa", "index", "error"),
    [
        # second green reported as 1 (not 3): it gets index 3, as LibRaw's black-level code assumes
        ([[1, 2], [0, 1]], b"RGBG", "GBRG", [[1, 2], [0, 3]], None),
        ([[2, 3], [1, 0]], b"RGBG", "BGGR", [[2, 3], [1, 0]], None),
        ([[0]], b"RGBG", None, None, "monochrome"),
        ([[0, 1], [2, 3]], b"GMCY", None, None, "GMCY"),
        ([[0, 1, 0, 1], [2, 3, 2, 3], [1, 0, 1, 0], [3, 2, 3, 2]], b"RGBG", None, None, "4x4"),
    ],
)
def test_bayer_layout_from_libraw_pattern(tmp_path, pattern, desc, cfa, index, error):
    from types import SimpleNamespace

    fake = SimpleNamespace(raw_pattern=np.array(pattern, np.uint8), color_desc=desc,
                           raw_image=np.zeros((8, 8)))
    path = tmp_path / "cam.raw"
    if error:
        with pytest.raises(UnsupportedSensorError, match=error):
            raw_module._bayer_layout(fake, path)
    else:
        got_cfa, got_index = raw_module._bayer_layout(fake, path)
        assert got_cfa == cfa and got_index.tolist() == index


def test_truncated_file_prints_nothing_itself(tmp_path, capfd):
    """LibRaw would print '<file>: Unexpected end of file' to C stderr; the exception is the only report."""
    path, _ = _write(tmp_path / "cut2.dng", "RGGB", 64, 64)
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RawFormatError, match="truncated"):
        read_raw(path)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
