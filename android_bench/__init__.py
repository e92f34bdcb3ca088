"""mobileisp.android_bench: .tflite artefacts measured on Android phones over adb.

- :func:`bench_android` — latency per accelerator (CPU/XNNPACK, GPU delegate, NNAPI, QNN HTP, ...) with the
  TFLite ``benchmark_model`` tool, plus on-device parity against the PyTorch fp32 reference, as
  :class:`mobileisp.bench.BenchResult` rows (:mod:`mobileisp.android_bench.runner`);
- :func:`list_phones` — the phones adb sees, with the device profile each one matches.

The pieces: ``adb.py`` (the real adb command line: discovery, serials, states, quoting, timeouts),
``devices.py`` + ``profiles/*.toml`` (how to recognise a phone, its big cores and accelerators),
``benchmark_model.py`` (command builder and log parser), ``runner.py`` (one benchmark run end to end).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mobileisp.android_bench.runner import AndroidBench, AndroidBenchError, bench_android


def list_phones(adb: str | Path | None = None) -> list[dict[str, Any]]:
    """Every device ``adb devices -l`` lists (any state), as flat dicts with the matching profile's name."""
    from mobileisp.android_bench.adb import Adb, find_adb
    from mobileisp.android_bench.devices import list_android_devices

    return [d.to_dict() for d in list_android_devices(Adb(find_adb(adb)))]


__all__ = ["AndroidBench", "AndroidBenchError", "bench_android", "list_phones"]
