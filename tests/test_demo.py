"""`mobileisp demo`: a DNG it made goes in, sRGB images and a report come out."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from mobileisp.images import load_srgb
from mobileisp.raw import read_raw

BIN = Path(sys.executable).with_name("mobileisp")


def test_demo_writes_images_and_report(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run([str(BIN), "demo", "-o", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "report:" in proc.stdout
    report = json.loads((out / "report.json").read_text())
    models = {r["model"]: r for r in report["rows"]}
    assert {"classical", "libraw"} <= set(models)
    raw = read_raw(out / "demo.dng")
    assert raw.cfa == "RGGB" and raw.metadata.white_balance is not None
    h, w = raw.packed.shape[1:]
    for name, row in models.items():
        image = load_srgb(out / f"{name}.png")
        assert image.shape == (2 * h, 2 * w, 3)
        assert np.isfinite(row["psnr"]) and row["psnr"] > 15.0
    assert "| model |" in (out / "report.md").read_text()
    # a second run refuses to overwrite, in one line
    again = subprocess.run([str(BIN), "demo", "-o", str(out)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "--force" in again.stderr
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folders left
