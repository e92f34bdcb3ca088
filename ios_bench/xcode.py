"""iPhone benchmarks through Xcode: stage the Swift package, ``xcodebuild test``, read the result bundle.

Steps of :func:`bench_iphone`:

1. copy the ``MobileISPBench`` Swift package into a work folder and the model into its test resources
   (the source tree is never modified);
2. ``xcodebuild test -scheme MobileISPBench -destination platform=iOS,id=UDID -resultBundlePath ...``
   with the settings passed as ``TEST_RUNNER_MOBILEISP_*`` environment variables (xcodebuild strips the
   prefix and hands them to the test process on the phone);
3. read the verdict and the JSON attachment from the ``.xcresult`` (:mod:`mobileisp.ios_bench.xcresult`).

Commands are argument lists (no shell); :func:`format_command` renders one for display.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

from mobileisp.bench import BenchResult
from mobileisp.ios_bench import xcresult
from mobileisp.ios_bench.artefact import check_artefact, check_compute_units, check_counts
from mobileisp.ios_bench.devices import list_apple_devices, select_iphone
from mobileisp.ios_bench.platform import AppleBenchError, require_xcode, run_tool

#: The Swift package shipped next to this file, and its scheme (SwiftPM names it after the package).
PACKAGE_DIR = Path(__file__).resolve().parent / "MobileISPBench"
SCHEME = "MobileISPBench"
#: Folder of the test target that ``Package.swift`` copies into the test bundle (``.copy("Resources")``).
RESOURCES = Path("Tests") / "MobileISPBenchTests" / "Resources"
#: Environment variable holding the Apple development team ID used to sign the test bundle for a device.
TEAM_ENV = "MOBILEISP_DEVELOPMENT_TEAM"
#: Seconds before a hung ``xcodebuild test`` is stopped (first builds and installs take minutes).
XCODEBUILD_TIMEOUT_S = 3600.0


def format_command(argv: Sequence[str]) -> str:
    """A copy-pasteable shell rendering of ``argv`` (paths with spaces or quotes stay one word)."""
    return shlex.join([str(a) for a in argv])


def xcodebuild_test_command(udid: str, result_bundle: str | Path, derived_data: str | Path, team: str | None = None) -> list[str]:
    """The ``xcodebuild test`` argument list for the staged package on the device ``udid``.

    Args:
        udid: hardware UDID of the phone (``00008130-...``).
        result_bundle: where xcodebuild writes the ``.xcresult`` (must not exist yet).
        derived_data: build folder (kept inside the work folder, not in ~/Library).
        team: Apple development team ID for automatic signing, or None to rely on Xcode's settings.
    """
    argv = [
        "xcodebuild", "test",
        "-scheme", SCHEME,
        "-destination", f"platform=iOS,id={udid}",
        "-resultBundlePath", str(result_bundle),
        "-derivedDataPath", str(derived_data),
    ]
    if team:
        argv += ["-allowProvisioningUpdates", f"DEVELOPMENT_TEAM={team}", "CODE_SIGN_STYLE=Automatic"]
    return argv


def runner_env(model_file: str, compute_units: str, warmup: int, runs: int) -> dict[str, str]:
    """Variables for the test process, ``TEST_RUNNER_``-prefixed so xcodebuild forwards them to the phone."""
    settings = {
        "MOBILEISP_MODEL": model_file,
        "MOBILEISP_COMPUTE_UNITS": compute_units,
        "MOBILEISP_WARMUP": str(int(warmup)),
        "MOBILEISP_RUNS": str(int(runs)),
    }
    return {f"TEST_RUNNER_{k}": v for k, v in settings.items()}


def stage_package(artefact: Path, work_dir: Path) -> Path:
    """Copy the Swift package into ``work_dir/MobileISPBench`` and the model into its test resources.

    Returns:
        The staged package folder (the working directory for ``xcodebuild``).
    """
    staged = work_dir / "MobileISPBench"
    shutil.copytree(PACKAGE_DIR, staged, ignore=shutil.ignore_patterns(".build", ".swiftpm", "*.xcresult", "DerivedData"))
    dest = staged / RESOURCES / artefact.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if artefact.is_dir():
        shutil.copytree(artefact, dest)
    else:
        shutil.copy2(artefact, dest)
    return staged


def _failure_line(log: str) -> str:
    """The most useful single line of a failed xcodebuild log."""
    lines = [ln.strip() for ln in log.splitlines()]
    for ln in lines:
        m = re.search(r"\berror: (.+)", ln)
        if m:
            return m.group(1).strip()
    if "Testing failed:" in lines:
        following = [ln for ln in lines[lines.index("Testing failed:") + 1:] if ln]
        if following:
            return following[0]
    rest = [ln for ln in lines if ln and not ln.startswith("**")]
    return rest[-1] if rest else "no output"


def bench_iphone(
    artefact: str | Path,
    udid: str | None,
    compute_units: str = "all",
    warmup: int = 5,
    runs: int = 20,
    work_dir: str | Path | None = None,
) -> BenchResult:
    """Benchmark a Core ML model on a connected iPhone through ``xcodebuild test``.

    Args:
        artefact: ``.mlpackage`` folder or ``.mlmodel`` file.
        udid: the phone's UDID, or None for the only connected iPhone.
        compute_units: ``all``, ``cpu``, ``cpu-gpu`` or ``cpu-ne``.
        warmup, runs: untimed and timed predictions on the phone.
        work_dir: where the staged package, build folder, ``.xcresult`` and log go; kept, and its
            ``MobileISPBench``, ``MobileISPBench.xcresult`` and ``attachments`` sub-folders are replaced on
            reuse (``DerivedData`` is kept to speed up the next build). Default: a temporary folder, removed
            after a success and kept (and named in the error) after a failure.

    Raises:
        PlatformError: not macOS with Xcode (checked first).
        AppleBenchError: bad arguments, no usable phone, or a failed build/test.
    """
    require_xcode("mobileisp bench --device iphone")
    artefact = check_artefact(artefact)
    compute_units = check_compute_units(compute_units)
    warmup, runs = check_counts(warmup, runs)
    if work_dir is not None and PACKAGE_DIR.is_relative_to(Path(work_dir).resolve()):
        raise AppleBenchError(f"work folder {work_dir} holds the MobileISPBench sources; pick a folder outside them")
    device = select_iphone(list_apple_devices(), udid)
    keep = work_dir is not None
    work = Path(work_dir) if keep else Path(tempfile.mkdtemp(prefix="mobileisp-iphone-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        result = _run_in(work, artefact, device, compute_units, warmup, runs)
    except (AppleBenchError, OSError) as e:
        raise AppleBenchError(f"{e} (work folder kept: {work})") from None
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return result


def _run_in(work: Path, artefact: Path, device: Mapping[str, Any], compute_units: str, warmup: int, runs: int) -> BenchResult:
    bundle = work / "MobileISPBench.xcresult"
    for previous in (work / "MobileISPBench", bundle, work / "attachments"):  # a reused work folder
        if previous.exists():
            shutil.rmtree(previous)
    package = stage_package(artefact, work)
    argv = xcodebuild_test_command(device["udid"], bundle, work / "DerivedData", os.environ.get(TEAM_ENV) or None)
    env = {**os.environ, **runner_env(artefact.name, compute_units, warmup, runs)}
    done = run_tool(argv, cwd=package, env=env, timeout_s=XCODEBUILD_TIMEOUT_S)
    log = work / "xcodebuild.log"
    log.write_text(f"$ {format_command(argv)}\n{done.stdout}\n{done.stderr}", encoding="utf-8")
    if done.returncode != 0 or not bundle.exists():
        reason = _test_failure(bundle) or _failure_line(done.stdout + "\n" + done.stderr)
        hint = f" (set {TEAM_ENV} to your team ID)" if "development team" in reason else ""
        raise AppleBenchError(f"xcodebuild test failed on {device['name']}: {reason}{hint}; log: {log}")
    return bench_result_from_xcresult(bundle, artefact, device, work / "attachments")


def _read_summary(bundle: Path) -> dict[str, Any]:
    done = run_tool(xcresult.summary_command(bundle), timeout_s=300)
    if done.returncode != 0:
        raise AppleBenchError(f"xcresulttool could not read {bundle}: {_failure_line(done.stderr or done.stdout)}")
    return xcresult.parse_test_summary(done.stdout)


def _test_failure(bundle: Path) -> str | None:
    """The first test failure recorded in ``bundle``, if it exists and records one."""
    if not bundle.exists():
        return None
    try:
        failures = _read_summary(bundle)["failures"]
    except AppleBenchError:
        return None
    return failures[0] if failures else None


def bench_result_from_xcresult(
    bundle: str | Path, artefact: str | Path, device: Mapping[str, Any] | None = None, export_dir: str | Path | None = None
) -> BenchResult:
    """Read a finished ``MobileISPBench`` test run (e.g. one started from Xcode's UI) into a BenchResult.

    Args:
        bundle: the ``.xcresult`` of the test run.
        artefact: the model that was benchmarked.
        device: the device entry, if known (else the name recorded in the bundle is used).
        export_dir: an empty or new folder to export the attachments into (default: a temporary one).

    Raises:
        PlatformError: not macOS with Xcode (``xcresulttool`` is part of Xcode).
        AppleBenchError: the test failed, or its result attachment is missing or malformed.
    """
    require_xcode("reading an .xcresult bundle")
    bundle = Path(bundle)
    summary = _read_summary(bundle)
    if summary["result"] != "Passed":
        why = summary["failures"][0] if summary["failures"] else f"result {summary['result']}"
        raise AppleBenchError(f"the benchmark test failed: {why}")
    if export_dir is None:
        with tempfile.TemporaryDirectory(prefix="mobileisp-attachments-") as tmp:
            data = _export_result(bundle, Path(tmp))
    else:
        data = _export_result(bundle, Path(export_dir))
    if device is None and summary["device"]:
        device = {"name": summary["device"]["name"], "model": summary["device"]["model"], "udid": summary["device"]["id"]}
    return xcresult.device_result_to_bench(data, artefact, device)


def _export_result(bundle: Path, export: Path) -> dict[str, Any]:
    export.mkdir(parents=True, exist_ok=True)
    done = run_tool(xcresult.export_attachments_command(bundle, export), timeout_s=300)
    if done.returncode != 0:
        raise AppleBenchError(f"xcresulttool could not export attachments of {bundle}: {_failure_line(done.stderr or done.stdout)}")
    return xcresult.parse_device_result(xcresult.find_result_attachment(export).read_text(encoding="utf-8"))
