"""The command line as a user meets it: happy paths and every kind of bad input.

Bad input must end in one line on stderr (``mobileisp: error: ...``), exit code 2, no traceback, and no
output file (or temporary file) left behind.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mobileisp.dng import mosaic_from_packed, write_dng
from mobileisp.metadata import CameraMetadata

BIN = Path(sys.executable).with_name("mobileisp")

META = CameraMetadata(
    make="Mobileisp", model="Test Cam", white_balance=(2.0, 1.0, 1.6),
    color_matrix=((0.84, -0.26, -0.06), (-0.29, 1.07, 0.25), (-0.06, 0.14, 0.54)),
    iso=200.0, exposure_time=0.01, f_number=1.8, focal_length=4.5,
)


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def assert_clean_error(proc: subprocess.CompletedProcess, *needles: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("mobileisp: error: ")
    assert "Traceback" not in proc.stderr + proc.stdout
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def make_dng(path: Path, height: int = 64, width: int = 96, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    packed = rng.random((4, height // 2, width // 2), dtype=np.float32) * 0.6 + 0.1
    mosaic = mosaic_from_packed(packed, "RGGB", 64, 1023)
    if height % 2 or width % 2:  # grow an odd row/column
        mosaic = np.pad(mosaic, ((0, height % 2), (0, width % 2)), mode="edge")
    return write_dng(path, mosaic, cfa="RGGB", black_level=64, white_level=1023, metadata=META)


def leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


@pytest.fixture
def good_dng(tmp_path) -> Path:
    return make_dng(tmp_path / "good.dng")


# ------------------------------------------------------------------------------------------ happy paths


def test_help_lists_commands(tmp_path):
    proc = cli("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for command in ("list", "info", "run", "demo", "evaluate"):
        assert command in proc.stdout


def test_run_writes_png_of_twice_the_packed_size(tmp_path, good_dng):
    import cv2

    out = tmp_path / "out.png"
    proc = cli("run", "classical", str(good_dng), "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["output_size"] == [64, 96] and result["cfa"] == "RGGB"
    assert result["metadata"]["iso"] == 200.0
    img = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert img.shape == (64, 96, 3) and img.dtype == np.uint8


def test_run_16_bit_and_tiled_equals_whole(tmp_path, good_dng):
    import cv2

    whole, tiled = tmp_path / "whole.png", tmp_path / "tiled.png"
    assert cli("run", "classical", str(good_dng), "-o", str(whole), "--bits", "16", "--tile", "0", cwd=tmp_path).returncode == 0
    proc = cli("run", "classical", str(good_dng), "-o", str(tiled), "--bits", "16", "--tile", "8", "--overlap", "4",
               "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tiles"] == 4 * 6
    a, b = cv2.imread(str(whole), cv2.IMREAD_UNCHANGED), cv2.imread(str(tiled), cv2.IMREAD_UNCHANGED)
    assert a.dtype == np.uint16
    # MHC demosaicing reads 2 pixels around each output pixel; 4 packed pixels of context hide every seam
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_run_crops_odd_sizes_to_even(tmp_path):
    dng = make_dng(tmp_path / "odd.dng", height=65, width=97)
    proc = cli("run", "classical", str(dng), "-o", str(tmp_path / "odd.png"), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["output_size"] == [64, 96]


# ------------------------------------------------------------------------------------------ bad input


def _truncated(tmp_path: Path) -> Path:
    good = make_dng(tmp_path / "full.dng", 128, 128)
    bad = tmp_path / "truncated.dng"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 3])
    good.unlink()
    return bad


def _jpeg(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "photo.dng"  # a JPEG under a RAW name
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(path, format="JPEG")
    return path


def _empty(tmp_path: Path) -> Path:
    path = tmp_path / "empty.dng"
    path.write_bytes(b"")
    return path


def _directory(tmp_path: Path) -> Path:
    path = tmp_path / "folder.dng"
    path.mkdir()
    return path


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "does-not-exist.dng"


def _tiny_odd(tmp_path: Path) -> Path:
    return make_dng(tmp_path / "tiny.dng", height=9, width=13)


@pytest.mark.parametrize(
    "make_bad, needle",
    [
        (_truncated, "truncated.dng"),
        (_jpeg, "photo.dng"),
        (_empty, "empty"),
        (_directory, "directory"),
        (_missing, "does-not-exist.dng"),
        (_tiny_odd, "tiny.dng"),
    ],
    ids=["truncated", "jpeg-as-raw", "zero-bytes", "directory", "unreadable-path", "odd-tiny-size"],
)
def test_bad_raw_input_is_one_line_exit_2_and_writes_nothing(tmp_path, make_bad, needle):
    bad = make_bad(tmp_path)
    before = set(p.name for p in tmp_path.iterdir())
    out = tmp_path / "out.png"
    proc = cli("run", "classical", str(bad), "-o", str(out), cwd=tmp_path)
    assert_clean_error(proc, needle)
    assert not out.exists()
    assert leftovers(tmp_path, before) == []


def test_existing_output_needs_force(tmp_path, good_dng):
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    proc = cli("run", "classical", str(good_dng), "-o", str(out), cwd=tmp_path)
    assert_clean_error(proc, "--force")
    assert out.read_bytes() == b"keep me"
    assert cli("run", "classical", str(good_dng), "-o", str(out), "--force", cwd=tmp_path).returncode == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_model_names_the_known_ones(tmp_path, good_dng):
    proc = cli("run", "no-such-net", str(good_dng), "-o", str(tmp_path / "x.png"), cwd=tmp_path)
    assert_clean_error(proc, "no-such-net", "classical")


def test_unsupported_output_extension(tmp_path, good_dng):
    proc = cli("run", "classical", str(good_dng), "-o", str(tmp_path / "x.bmp"), cwd=tmp_path)
    assert_clean_error(proc, "x.bmp")
    assert not (tmp_path / "x.bmp").exists()


def test_evaluate_rejects_odd_size(tmp_path):
    proc = cli("evaluate", "classical", "--size", "127", cwd=tmp_path)
    assert_clean_error(proc, "even")


def test_list_and_info(tmp_path):
    proc = cli("list", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    rows = {r["model"]: r for r in json.loads(proc.stdout)["models"]}
    assert {"classical", "libraw", "liteisp", "liteisp-mobile", "cameranet", "cameranet-pruned", "deepisp",
            "deepisp-lite"} <= set(rows)
    assert rows["liteisp"]["parameters"] == 9_047_815 and rows["cameranet"]["parameters"] == 24_952_728
    assert rows["liteisp-mobile"]["gmac_per_mp"] > 1.0 and rows["classical"]["gmac_per_mp"] is None
    assert rows["cameranet"]["inputs"] == "raw[N,4,H/2,W/2] white_balance[N,3] color_matrix[N,3,3]"
    info = cli("info", "deepisp", "--json", cwd=tmp_path)
    assert info.returncode == 0, info.stderr
    data = json.loads(info.stdout)
    assert data["parameters"] >= 668_446 and data["spec"]["family"] == "deepisp"
    assert_clean_error(cli("info", "nope", cwd=tmp_path), "nope")
