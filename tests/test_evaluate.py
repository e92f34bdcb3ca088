"""`mobileisp evaluate` on the synthetic held-out set, with the two classical baselines."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mobileisp.evaluate import evaluate

BIN = Path(sys.executable).with_name("mobileisp")


@pytest.fixture(scope="module")
def baselines():
    return {r.model: r for r in evaluate([("classical", "default"), ("libraw", "default")], n=6, size=96).rows}


def test_baselines_score_in_their_measured_band(baselines):
    # Measured on the default held-out set (16 x 128 px): classical 19.4 dB, libraw 19.3 dB. The simulated
    # cameras' brightness gain and noise are unknown to both pipelines, which caps them near 19-20 dB.
    for row in baselines.values():
        assert 15.0 < row.psnr < 25.0, row
        assert 0.4 < row.ssim < 0.9, row
        assert 5.0 < row.delta_e2000 < 20.0, row
        assert row.delta_e76 > row.delta_e2000, row  # CIE76 overstates saturated differences relative to CIEDE2000
        assert row.images == 6 and row.weights == "fixed pipeline"


def test_classical_and_libraw_agree(baselines):
    # the same stages (WB, demosaic, colour matrix, gamma): within 1.5 dB of each other
    assert abs(baselines["classical"].psnr - baselines["libraw"].psnr) < 1.5


def test_evaluate_cli_json(tmp_path):
    proc = subprocess.run([str(BIN), "evaluate", "classical", "--n", "2", "--size", "64", "--json"],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["dataset"].startswith("heldout (2 images, 64x64)")
    assert out["rows"][0]["model"] == "classical" and out["rows"][0]["psnr"] > 15.0
