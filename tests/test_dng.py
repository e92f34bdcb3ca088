"""mobileisp.dng: the DNG files it writes carry the tags we promise (read back with tifffile) and LibRaw
(rawpy) decodes them bit-exactly with the right CFA, levels and colour data."""

from __future__ import annotations

import numpy as np
import pytest
import rawpy
import tifffile
from helpers_raw import META, RGGB_AT

from mobileisp.dng import mosaic_from_packed, write_dng, write_linear_dng
from mobileisp.errors import OutputExistsError
from mobileisp.metadata import CameraMetadata

BLACK = (60, 64, 70, 80)  # per tile position, row by row


def _mosaic(h: int = 24, w: int = 28, white: int = 4095, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, white + 1, size=(h, w), dtype=np.uint16)


def _tags(path) -> dict:
    with tifffile.TiffFile(path) as tif:
        return {t.name: t.value for t in tif.pages[0].tags.values()}


@pytest.mark.parametrize("cfa", ["RGGB", "BGGR", "GRBG", "GBRG"])
def test_libraw_decodes_mosaic_pattern_and_levels(tmp_path, cfa):
    mosaic = _mosaic()
    path = write_dng(tmp_path / "a.dng", mosaic, cfa, BLACK, 4095, META)
    with rawpy.imread(str(path)) as r:
        assert np.array_equal(r.raw_image_visible, mosaic)
        desc = r.color_desc.decode()
        assert "".join(desc[i] for i in r.raw_pattern.ravel()) == cfa
        assert r.white_level == 4095
        # LibRaw's per-colour black: position (y, x) has colour raw_pattern[y, x]
        per_color = r.black_level_per_channel
        assert [per_color[i] for i in r.raw_pattern.ravel()] == list(BLACK)
        assert r.camera_whitebalance[:3] == pytest.approx([2.1, 1.0, 1.6], rel=1e-6)
        assert r.other.shutter_speed == pytest.approx(1 / 120, rel=1e-6)
        assert r.other.aperture == pytest.approx(1.8, rel=1e-6)
        assert r.other.focal_length == pytest.approx(4.25, rel=1e-6)
        assert r.sizes.flip == 0


def test_tags_written(tmp_path):
    path = write_dng(tmp_path / "a.dng", _mosaic(white=16383), "GRBG", BLACK, 16383, META)
    tags = _tags(path)
    assert tags["DNGVersion"] == bytes((1, 4, 0, 0))
    assert tags["NewSubfileType"] == 0
    assert tags["PhotometricInterpretation"] == 32803
    assert tags["BitsPerSample"] == 16
    assert tags["CFARepeatPatternDim"] == (2, 2)
    assert tags["CFAPattern"] == bytes((1, 0, 2, 1))
    assert tags["BlackLevelRepeatDim"] == (2, 2)
    assert tags["BlackLevel"] == BLACK
    assert tags["WhiteLevel"] == 16383
    assert tags["Make"] == "Acme Optics" and tags["Model"] == "Phone 7 Pro"
    assert tags["UniqueCameraModel"] == "Acme Optics Phone 7 Pro"
    cm = np.array(tags["ColorMatrix1"], dtype=np.float64).reshape(9, 2)
    np.testing.assert_allclose(cm[:, 0] / cm[:, 1], np.ravel(META.color_matrix), atol=1e-9)
    assert tags["CalibrationIlluminant1"] == 21
    asn = np.array(tags["AsShotNeutral"], dtype=np.float64).reshape(3, 2)
    np.testing.assert_allclose(asn[:, 0] / asn[:, 1], [1 / 2.1, 1.0, 1 / 1.6], rtol=1e-9)
    assert tags["ExposureTime"] == (1, 120)
    assert tags["FNumber"] == (9, 5)
    assert tags["FocalLength"] == (17, 4)
    assert tags["ISOSpeedRatings"] == 400


def test_no_metadata_writes_no_metadata_tags(tmp_path):
    tags = _tags(write_dng(tmp_path / "a.dng", _mosaic(), "RGGB", 64, 4095))
    for name in ("Make", "Model", "ColorMatrix1", "AsShotNeutral", "ExposureTime", "FNumber",
                 "ISOSpeedRatings", "FocalLength"):
        assert name not in tags
    assert tags["UniqueCameraModel"] == "mobileisp synthetic"
    assert tags["BlackLevelRepeatDim"] == (1, 1) and tags["BlackLevel"] == 64


def test_bit_depth_follows_white_level(tmp_path):
    small = _mosaic(white=255).astype(np.uint16)
    assert _tags(write_dng(tmp_path / "8.dng", small, "RGGB", 16, 255))["BitsPerSample"] == 8
    assert _tags(write_dng(tmp_path / "16.dng", small, "RGGB", 16, 1023))["BitsPerSample"] == 16
    with rawpy.imread(str(tmp_path / "8.dng")) as r:
        assert np.array_equal(r.raw_image_visible, small) and r.white_level == 255


def test_fractional_black_level_is_rational(tmp_path):
    tags = _tags(write_dng(tmp_path / "a.dng", _mosaic(), "RGGB", 64.5, 4095))
    assert tags["BlackLevel"] == (129, 2)


def test_mosaic_from_packed_places_planes():
    planes = np.stack([np.full((2, 3), v) for v in (0.1, 0.2, 0.3, 0.4)])
    # GRBG: row 0 = Gr R, row 1 = B Gb; black per position 10, 20, 30, 40; white 1010
    mosaic = mosaic_from_packed(planes, "GRBG", (10, 20, 30, 40), 1010)
    assert mosaic.shape == (4, 6) and mosaic.dtype == np.uint16
    assert mosaic[0, 1] == round(0.1 * 990 + 20)  # R
    assert mosaic[0, 0] == round(0.2 * 1000 + 10)  # Gr
    assert mosaic[1, 1] == round(0.3 * 970 + 40)  # Gb
    assert mosaic[1, 0] == round(0.4 * 980 + 30)  # B
    assert np.array_equal(mosaic[2:, 2:4], mosaic[:2, :2])


def test_mosaic_from_packed_rggb_layout_clip_and_rounding():
    planes = np.array([[[1.5]], [[-0.2]], [[0.5]], [[0.25]]])
    mosaic = mosaic_from_packed(planes, "RGGB", 0, 1023)
    expect = {(0, 0): 1023, (0, 1): 0, (1, 0): 512, (1, 1): 256}  # 511.5 rounds to even 512, 255.75 -> 256
    for c, at in enumerate(RGGB_AT):
        assert mosaic[at] == expect[at], c


def test_linear_dng(tmp_path):
    rgb = np.random.default_rng(1).integers(0, 4096, size=(24, 26, 3), dtype=np.uint16)
    path = write_linear_dng(tmp_path / "lin.dng", rgb, 0, 4095, CameraMetadata(make="Acme"))
    tags = _tags(path)
    assert tags["PhotometricInterpretation"] == 34892 and tags["SamplesPerPixel"] == 3
    assert "CFAPattern" not in tags
    with rawpy.imread(str(path)) as r:
        assert r.raw_type == rawpy.RawType.Stack and r.raw_pattern is None
        assert np.array_equal(r.raw_image_visible[..., :3], rgb)


def test_refuses_overwrite_unless_forced(tmp_path):
    path = write_dng(tmp_path / "a.dng", _mosaic(seed=1), "RGGB", 0, 4095)
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="a.dng"):
        write_dng(path, _mosaic(seed=2), "RGGB", 0, 4095)
    assert path.read_bytes() == before
    write_dng(path, _mosaic(seed=2), "RGGB", 0, 4095, force=True)
    assert path.read_bytes() != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dng"]  # no temporary left behind


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"mosaic": np.zeros((24, 24), np.float32)}, "integers"),
        ({"mosaic": np.zeros((24, 24, 1), np.uint16)}, "2-D"),
        ({"cfa": "RGBG"}, "Bayer pattern"),
        ({"cfa": "RGGBX"}, "Bayer pattern"),
        ({"black_level": (1, 2, 3)}, "black_level"),
        ({"black_level": 4095}, "white_level"),
        ({"white_level": 70000}, "white_level"),
        ({"mosaic": np.full((24, 24), 70000, np.int32)}, r"\[0, 65535\]"),
        ({"metadata": CameraMetadata(white_balance=(0.0, 1.0, 1.0))}, "white_balance"),
    ],
)
def test_bad_arguments(tmp_path, kwargs, match):
    args = {"mosaic": _mosaic(), "cfa": "RGGB", "black_level": 0, "white_level": 4095, "metadata": None}
    args |= kwargs
    with pytest.raises(ValueError, match=match):
        write_dng(tmp_path / "bad.dng", **args)
    assert list(tmp_path.iterdir()) == []
