"""export -> validate -> bench --device host through the real CLI, and the up-front refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("mobileisp")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_export_validate_bench_host(tmp_path):
    out = tmp_path / "out"
    proc = cli("export", "liteisp-mobile", "--format", "tflite", "--precision", "fp32", "--size", "64x64",
               "-o", str(out), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    art = json.loads(proc.stdout)["artefacts"][0]
    path = Path(art["artefact"] if "artefact" in art else art["path"])
    assert path.is_file() and path.suffix == ".tflite"

    val = cli("validate", str(path), "--set", "2", "--json", cwd=tmp_path)
    assert val.returncode == 0, val.stderr[-2000:]
    result = json.loads(val.stdout)
    assert result["passed"] and result["psnr_db"] >= result["floor_db"] == 60.0

    bench = cli("bench", str(path), "--device", "host", "--runs", "3", "--warmup", "1", "-o", str(tmp_path / "b.json"),
                "--json", cwd=tmp_path)
    assert bench.returncode == 0, bench.stderr[-2000:]
    saved = json.loads((tmp_path / "b.json").read_text())
    assert saved == json.loads(bench.stdout)

    report = cli("report", str(tmp_path / "b.json"), "-o", str(tmp_path / "report"), cwd=tmp_path)
    assert report.returncode == 0, report.stderr[-2000:]
    assert (tmp_path / "report").is_dir()


def test_unsupported_precision_fails_up_front(tmp_path):
    proc = cli("export", "liteisp-mobile", "--format", "coreml", "--precision", "int8", "-o", str(tmp_path / "o"),
               cwd=tmp_path)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("mobileisp: error:") and "fp16" in last
    assert not (tmp_path / "o").exists()


def test_unknown_device(tmp_path):
    proc = cli("bench", "x.tflite", "--device", "pixel9000", cwd=tmp_path)
    assert proc.returncode == 2 and "host" in proc.stderr
