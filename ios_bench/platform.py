"""Where the Apple benchmarks can run, and how their tools are called.

Core ML predictions need the Core ML framework (macOS); an iPhone is driven through Xcode's command line
tools. Every Apple-only entry point calls :func:`require_macos` or :func:`require_xcode` before anything
else, so on Linux or Windows the user gets one line and exit code 2 and nothing is created or started.
"""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Mapping, Sequence

from mobileisp.errors import MobileISPError

#: The sentence every refusal carries, so users (and tests) can recognise it.
NEEDS = "needs macOS (and Xcode for iPhone)"


class PlatformError(MobileISPError):
    """An Apple-only command on a machine that cannot run it (not macOS, or no Xcode)."""


class AppleBenchError(MobileISPError):
    """A Core ML / Xcode benchmark that cannot go on: bad artefact, no device, failed xcodebuild."""


def is_macos() -> bool:
    """True on macOS (read at call time, so tests can patch ``sys.platform``)."""
    return sys.platform == "darwin"


def _system_name() -> str:
    return {"linux": "Linux", "win32": "Windows", "cygwin": "Windows"}.get(sys.platform, platform.system() or sys.platform)


def require_macos(what: str) -> None:
    """Raise :class:`PlatformError` unless this is macOS.

    Args:
        what: the command being refused, e.g. ``"mobileisp bench --device mac"``.
    """
    if not is_macos():
        raise PlatformError(f"{what} {NEEDS}; this machine runs {_system_name()}")


def require_xcode(what: str) -> None:
    """Raise :class:`PlatformError` unless this is macOS with Xcode's command line tools selected.

    ``xcodebuild`` and ``xcrun`` must be on PATH, and ``xcode-select -p`` must point at an Xcode app,
    not at the stand-alone Command Line Tools (which lack ``xcodebuild``, ``devicectl`` and the iOS SDK).
    """
    require_macos(what)
    missing = [tool for tool in ("xcrun", "xcodebuild") if shutil.which(tool) is None]
    if missing:
        raise PlatformError(f"{what} {NEEDS}: {' and '.join(missing)} not found; install Xcode from the App Store")
    if shutil.which("xcode-select"):
        done = subprocess.run(["xcode-select", "-p"], capture_output=True, text=True, check=False)
        developer_dir = done.stdout.strip()
        if done.returncode == 0 and developer_dir.rstrip("/").endswith("CommandLineTools"):
            raise PlatformError(
                f"{what} {NEEDS}: the active developer folder is {developer_dir} (Command Line Tools only);"
                " run: sudo xcode-select -s /Applications/Xcode.app"
            )


def run_tool(
    argv: Sequence[str],
    *,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float = 120.0,
) -> subprocess.CompletedProcess:
    """Run an Xcode tool with an argument list (never through a shell) and capture its text output.

    Returns the completed process whatever its exit code; the caller decides what a failure means.

    Raises:
        AppleBenchError: the program is missing or ran past ``timeout_s``.
    """
    try:
        return subprocess.run(
            list(argv), cwd=cwd, env=dict(env) if env is not None else None,
            capture_output=True, text=True, errors="replace", timeout=timeout_s, check=False,
        )
    except FileNotFoundError:
        raise AppleBenchError(f"{argv[0]} not found on PATH (install Xcode)") from None
    except subprocess.TimeoutExpired:
        raise AppleBenchError(f"{' '.join(argv[:3])} did not finish within {timeout_s:.0f} s") from None
