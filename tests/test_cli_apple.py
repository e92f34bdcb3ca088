"""Apple-only commands through the real CLI on a non-Apple machine: one line, exit 2, nothing written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).with_name("mobileisp")

pytestmark = pytest.mark.skipif(sys.platform == "darwin", reason="checks the refusal off macOS")


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "m.mlpackage", "--device", "mac", "--compute-units", "cpu-ne", "-o", "r.json"],
        ["bench", "m.mlpackage", "--device", "iphone", "--work-dir", "work"],
        ["bench", "m.mlpackage", "--device", "iphone:00008130-001A2B3C4D5E6F", "-o", "r.json"],
        ["devices", "--apple"],
    ],
    ids=["mac", "iphone", "iphone-udid", "devices"],
)
def test_apple_commands_refuse_off_macos(tmp_path, args):
    (tmp_path / "m.mlpackage").mkdir()
    proc = subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs macOS" in lines[0] and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.mlpackage"]
