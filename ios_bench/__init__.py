"""mobileisp.ios_bench: Core ML artefacts measured on Apple hardware.

- :func:`bench_apple` — latency on this Mac (coremltools) or on an iPhone (Xcode + the ``MobileISPBench``
  Swift package), as a :class:`mobileisp.bench.BenchResult`;
- :func:`validate_coreml_on_mac` — Core ML predictions on this Mac for parity checks;
- :func:`list_apple_devices` — the Mac and the devices Xcode sees.

All of them need macOS (and Xcode for iPhone); elsewhere they raise :class:`PlatformError` (exit code 2)
before doing anything. Heavy imports (coremltools, numpy) happen inside the functions.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

from mobileisp.ios_bench.platform import AppleBenchError, PlatformError, require_macos, require_xcode
from mobileisp.ios_bench.runner import bench_apple


def list_apple_devices() -> list[dict[str, Any]]:
    """See :func:`mobileisp.ios_bench.devices.list_apple_devices`."""
    from mobileisp.ios_bench.devices import list_apple_devices as _list

    return _list()


def validate_coreml_on_mac(artefact: str | Path, inputs: Sequence[Mapping[str, Any]], compute_units: str = "all") -> list[dict[str, Any]]:
    """See :func:`mobileisp.ios_bench.local.validate_coreml_on_mac`."""
    require_macos("mobileisp validate (Core ML)")
    from mobileisp.ios_bench.local import validate_coreml_on_mac as _validate

    return _validate(artefact, inputs, compute_units)


__all__ = [
    "AppleBenchError", "PlatformError", "bench_apple", "list_apple_devices", "require_macos", "require_xcode",
    "validate_coreml_on_mac",
]
