"""``mobileisp synth``: sRGB images -> (DNG, PNG) pairs, by unprocessing or a learned inverse ISP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from mobileisp import synth
from mobileisp.data import RawJpegPairs
from mobileisp.images import load_srgb, save_srgb
from mobileisp.metrics import compare_raw
from mobileisp.raw import read_raw
from mobileisp.synth_pairs import BLACK_LEVEL, WHITE_LEVEL, synthesize

#: One 14-bit DNG code (the pairs store the RAW quantized to black 512 .. white 16383).
DNG_STEP = 1.0 / (WHITE_LEVEL - BLACK_LEVEL)
#: The shipped inverse must beat the fixed inverse pipeline (classical-inverse) on held-out photos by this much.
INVERSE_MARGIN_DB = 2.0


BIN = Path(sys.executable).with_name("mobileisp")


def _cli(*args):
    return subprocess.run([str(BIN), *map(str, args)], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two held-out photos (never trained on): chelsea as 16-bit PNG (odd size), coffee as JPEG."""
    from skimage import data

    root = tmp_path_factory.mktemp("photos")
    save_srgb(root / "chelsea.png", data.chelsea()[:257, :301] / 255.0, bits=16)
    import cv2

    cv2.imwrite(str(root / "coffee.jpg"), np.ascontiguousarray(data.coffee()[::2, ::2, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return [root / "chelsea.png", root / "coffee.jpg"]


def _camera(seed: int, index: int):
    return synth.random_params(np.random.default_rng([seed, index]))


def test_unprocess_pairs_decode_to_the_cameras_raw_and_load_as_a_dataset(photos, tmp_path):
    out = tmp_path / "pairs"
    result = synthesize(photos, out, noise=False, seed=3)
    assert result.method == "unprocess" and [p.name for p in result.pairs] == ["chelsea", "coffee"]
    manifest = json.loads((out / "synth.json").read_text())
    assert manifest["pairs"][0]["size"] == [256, 300]  # cropped to even sides
    for i, pair in enumerate(result.pairs):
        rgb = load_srgb(pair.srgb)
        params = _camera(3, i)
        expected = synth.mosaic(synth.unprocess_linear(rgb, params))
        decoded = read_raw(pair.dng)
        assert decoded.cfa == "RGGB" and decoded.packed.shape == expected.shape
        np.testing.assert_allclose(decoded.packed, expected, atol=DNG_STEP)  # 14-bit rounding only
        meta = decoded.metadata
        assert meta.iso == pytest.approx(params.iso, rel=1e-3)
        assert meta.exposure_time == pytest.approx(params.exposure_time, rel=1e-3)
        np.testing.assert_allclose(meta.white_balance, [params.red_gain, 1.0, params.blue_gain], rtol=1e-3)
    source = load_srgb(photos[0])
    np.testing.assert_allclose(load_srgb(out / "chelsea.png"), source[:256, :300], atol=1 / 65535)
    ds = RawJpegPairs(out)
    s = ds[0]
    assert s["raw"].shape == (4, 128, 150) and s["srgb"].shape == (3, 256, 300) and "iso" in s


def test_noise_follows_the_iso_override(photos, tmp_path):
    clean = read_raw(synthesize(photos[:1], tmp_path / "c", noise=False).pairs[0].dng).packed
    noisy = {}
    for iso in (100, 6400):
        pair = synthesize(photos[:1], tmp_path / f"n{iso}", overrides={"iso": iso}).pairs[0]
        assert read_raw(pair.dng).metadata.iso == iso
        noisy[iso] = float(np.std(read_raw(pair.dng).packed - clean))
    assert noisy[100] > DNG_STEP and noisy[6400] > 4 * noisy[100], noisy


def test_learned_inverse_beats_the_fixed_inverse_on_held_out_photos(photos, tmp_path):
    """paramisp-inverse-lite (shipped weights) recovers the cameras' clean RAW better than classical-inverse, on
    average over held-out photos and four cameras each (per image the fixed pipeline can win: a camera whose
    brightness gain is close to 1 is nearly what it assumes)."""
    from mobileisp.infer import process_packed
    from mobileisp.models import create_model, get_spec

    spec = get_spec("paramisp-inverse-lite")
    assert spec.weights_path().is_file(), "paramisp-inverse-lite ships weights"
    baseline_spec, baseline = get_spec("classical-inverse"), create_model("classical-inverse")
    learned_db, fixed_db = [], []
    for seed in range(4):
        result = synthesize(photos, tmp_path / f"inv{seed}", inverse="paramisp-inverse-lite", noise=False, seed=seed)
        assert result.method == "inverse" and result.weights == "paramisp-inverse-lite.safetensors"
        for i, pair in enumerate(result.pairs):
            rgb = load_srgb(pair.srgb)
            params = _camera(seed, i)
            truth = torch.from_numpy(synth.mosaic(synth.unprocess_linear(rgb, params)).astype(np.float32))[None]
            learned = torch.from_numpy(read_raw(pair.dng).packed)[None]
            fixed = process_packed(baseline, baseline_spec, rgb.transpose(2, 0, 1), params.metadata())
            learned_db.append(compare_raw(learned, truth).psnr)
            fixed_db.append(compare_raw(torch.from_numpy(fixed)[None], truth).psnr)
    assert np.mean(learned_db) >= np.mean(fixed_db) + INVERSE_MARGIN_DB, (learned_db, fixed_db)


def test_cli_synth_inverse_and_errors_write_nothing(photos, tmp_path):
    out = tmp_path / "cli"
    ok = _cli("synth", *photos, "-o", out, "--inverse", "paramisp-inverse-lite", "--iso", "800", "--json")
    assert ok.returncode == 0, ok.stderr
    data = json.loads(ok.stdout)
    assert [p["camera"]["iso"] for p in data["pairs"]] == [800.0, 800.0]
    assert sorted(p.name for p in out.iterdir()) == ["chelsea.dng", "chelsea.png", "coffee.dng", "coffee.png", "synth.json"]

    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    small = tmp_path / "small.png"
    save_srgb(small, np.full((64, 64, 3), 0.5), bits=8)
    cases = [
        (("synth", photos[0], bad, "-o", tmp_path / "e1"), "bad.png: not a readable image"),
        (("synth", small, "-o", tmp_path / "e2", "--inverse", "paramisp-inverse-lite"), "smaller than the 128x128"),
        (("synth", photos[0], "-o", tmp_path / "e3", "--inverse", "paramisp-lite"), "RAW -> sRGB model"),
        (("synth", photos[0], "-o", tmp_path / "e4", "--iso", "-5"), "--iso must be a positive number"),
        (("synth", photos[0], "-o", tmp_path / "e5", "--inverse", "paramisp-inverse"), "ships no weights"),
        (("synth", photos[0], "-o", out), "exists; pass --force"),
    ]
    for args, message in cases:
        proc = _cli(*args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1 and message in lines[0], proc.stderr
    assert not any((tmp_path / f"e{i}").exists() for i in range(1, 6))
    refused = _cli("run", "paramisp-inverse-lite", out / "chelsea.dng", "-o", tmp_path / "x.png")
    assert refused.returncode == 2 and "mobileisp synth" in refused.stderr and not (tmp_path / "x.png").exists()


def test_a_synth_folder_trains_a_forward_model(photos, tmp_path):
    pairs = tmp_path / "pairs"
    synthesize(photos, pairs)
    proc = _cli("train", "paramisp-lite", "--data", f"pairs:{pairs}", "--steps", "2", "--batch-size", "2",
                "--crop", "128", "--heldout-n", "0", "--threads", "1", "-o", tmp_path / "run", "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["steps_run"] == 2 and np.isfinite(result["final_loss"])
