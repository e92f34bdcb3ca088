"""``mobileisp bench --device mac|iphone[:UDID]``: one entry point for both Apple targets."""

from __future__ import annotations

from pathlib import Path

from mobileisp.bench import BenchResult
from mobileisp.ios_bench.platform import AppleBenchError, require_macos


def parse_apple_device(device: str) -> tuple[str, str | None]:
    """``"mac"`` -> ("mac", None); ``"iphone"`` -> ("iphone", None); ``"iphone:UDID"`` -> ("iphone", UDID)."""
    kind, colon, udid = str(device).strip().partition(":")
    kind, udid = kind.lower(), udid.strip()
    if kind == "mac" and not colon:
        return "mac", None
    if kind == "iphone" and (udid or not colon):
        return "iphone", udid or None
    raise AppleBenchError(f"unknown Apple device {device!r}; use mac, iphone or iphone:UDID")


def bench_apple(
    artefact: str | Path, device: str, compute_units: str = "all", warmup: int = 5, runs: int = 20,
    work_dir: str | Path | None = None,
) -> BenchResult:
    """Benchmark a Core ML artefact on this Mac or on a connected iPhone.

    Args:
        artefact: ``.mlpackage`` folder or ``.mlmodel`` file.
        device: ``mac``, ``iphone`` (the only connected one) or ``iphone:UDID``.
        compute_units: ``all``, ``cpu``, ``cpu-gpu`` or ``cpu-ne``.
        warmup, runs: untimed and timed predictions.
        work_dir: iPhone only: where the Xcode build and result bundle are kept (default: temporary).

    Raises:
        PlatformError: not macOS, or no Xcode for an iPhone; raised before anything else is done.
        AppleBenchError: bad arguments, no device, or a failed measurement.
    """
    require_macos(f"mobileisp bench --device {device}")
    kind, udid = parse_apple_device(device)
    if kind == "mac":
        from mobileisp.ios_bench.local import bench_coreml_on_mac

        return bench_coreml_on_mac(artefact, compute_units, warmup, runs)
    from mobileisp.ios_bench.xcode import bench_iphone

    return bench_iphone(artefact, udid, compute_units, warmup, runs, work_dir=work_dir)
