"""Test-side API of the Android phone emulator behind a fake ``adb`` executable.

``FakeAdb(root, phones)`` writes the emulator's state under ``root`` and an executable ``root/bin/adb``
(a /bin/sh wrapper around ``fake_adb.py``) that client code runs exactly as it would run the real adb.
Tests then inspect what reached the "phone": every adb argv, the shell lines, the device file system and
one record per ``benchmark_model`` execution.

Example::

    adb = FakeAdb(tmp_path, [PIXEL_8, GALAXY_S24])
    subprocess.run([adb.executable, "-s", PIXEL_8.serial, "shell", "getprop", "ro.product.model"])
    adb.benchmarks(PIXEL_8.serial)[0]["avg"]
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shlex
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent
BENCHMARK_MARKER = b"\x7fELF fake-benchmark_model v2.19\n"
DEVICE_DIRS = ("/data/local/tmp", "/sdcard", "/system/bin", "/system/lib64", "/vendor/lib64", "/odm/lib64")


@dataclass
class FakePhone:
    """One phone as adb and its shell see it.

    Attributes:
        serial: adb serial.
        state: adb state: device, offline, unauthorized, "no permissions", recovery, sideload, rescue,
            authorizing, connecting.
        props: getprop values.
        usb: devpath shown as ``usb:...`` by ``devices -l``.
        transport_id: adb transport id (``-t``).
        delegates: what benchmark_model's delegates do on this phone: {"gpu"|"nnapi"|"qnn":
            "full"|"partial"|"none"}; an absent key means the delegate cannot be used here (GPU: applying
            fails; NNAPI: "unsupported on this platform", CPU fallback; QNN: the library does not load).
        files: extra device files at start {device path: bytes}, written with mode 0o644 (0o755 for the
            benchmark marker).
        thermal: successive ``Thermal Status`` values of ``dumpsys thermalservice`` (the last repeats).
        fixed_performance: whether ``cmd power set-fixed-performance-mode-enabled`` exists (Android 12+).
        faults: "disconnect_after": N, "benchmark_crash": True, "benchmark_garbage": True,
            "slow_shell_s": float, "preinstalled_benchmark_model": True.
        nnapi_accelerators: names ``NNAPI accelerators available: [...]`` lists.
        cpu_max_freq_khz: per-core cpuinfo_max_freq (also the core count for taskset/nproc).
        benchmark_log: "split" (real current builds: tool INFO lines on stdout, errors and runtime lines on
            stderr) or "stderr" (pre-2020 builds: everything on stderr, no ``INFO:`` prefix).
    """

    serial: str
    state: str = "device"
    props: dict[str, str] = field(default_factory=dict)
    usb: str = "1-1"
    transport_id: int = 1
    delegates: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    thermal: list[int] = field(default_factory=lambda: [0])
    fixed_performance: bool = True
    faults: dict[str, Any] = field(default_factory=dict)
    nnapi_accelerators: list[str] = field(default_factory=lambda: ["nnapi-reference"])
    cpu_max_freq_khz: list[int] = field(default_factory=lambda: [2000000] * 8)
    benchmark_log: str = "split"


def _props(manufacturer: str, brand: str, model: str, device: str, name: str, soc_manufacturer: str,
           soc_model: str, hardware: str, platform: str, release: str, sdk: int, build_id: str,
           incremental: str) -> dict[str, str]:
    return {
        "ro.product.manufacturer": manufacturer, "ro.product.brand": brand, "ro.product.model": model,
        "ro.product.device": device, "ro.product.name": name, "ro.product.board": platform,
        "ro.soc.manufacturer": soc_manufacturer, "ro.soc.model": soc_model, "ro.hardware": hardware,
        "ro.board.platform": platform, "ro.build.version.release": release, "ro.build.version.sdk": str(sdk),
        "ro.build.id": build_id, "ro.build.type": "user", "ro.build.tags": "release-keys",
        "ro.build.fingerprint": f"{brand}/{name}/{device}:{release}/{build_id}/{incremental}:user/release-keys",
        "ro.product.cpu.abi": "arm64-v8a", "ro.product.cpu.abilist": "arm64-v8a,armeabi-v7a,armeabi",
        "ro.debuggable": "0", "sys.boot_completed": "1",
    }


# Pixel 8 (Tensor G3 "zuma"): 1x Cortex-X3 2.91 GHz, 4x A715 2.37 GHz, 4x A510 1.70 GHz.
PIXEL_8 = FakePhone(
    serial="37281FDJG002XL",
    props=_props("Google", "google", "Pixel 8", "shiba", "shiba", "Google", "Tensor G3", "zuma", "zuma",
                 "14", 34, "AP2A.240805.005", "12025142"),
    usb="1-1", transport_id=1,
    delegates={"gpu": "full", "nnapi": "partial"},
    nnapi_accelerators=["google-edgetpu", "nnapi-reference"],
    cpu_max_freq_khz=[1704000] * 4 + [2367000] * 4 + [2912000],
)

# Galaxy S24 Snapdragon (SM-S921U, SM8650 "pineapple"): 1x X4 3.30, 3x A720 3.15, 2x A720 2.96, 2x A520 2.27 GHz.
GALAXY_S24 = FakePhone(
    serial="R5CX20ABCDE",
    props=_props("samsung", "samsung", "SM-S921U", "e1q", "e1qsqw", "QTI", "SM8650", "qcom", "pineapple",
                 "14", 34, "UP1A.231005.007", "S921USQS2AXB1"),
    usb="1-2", transport_id=2,
    delegates={"gpu": "full", "nnapi": "partial", "qnn": "full"},
    files={"/vendor/lib64/libQnnTFLiteDelegate.so": b"\x7fELF libQnnTFLiteDelegate.so (fake)\n",
           "/vendor/lib64/libQnnHtp.so": b"\x7fELF libQnnHtp.so (fake)\n",
           "/vendor/lib64/libQnnSystem.so": b"\x7fELF libQnnSystem.so (fake)\n"},
    nnapi_accelerators=["qti-default", "qti-dsp", "qti-gpu", "nnapi-reference"],
    cpu_max_freq_khz=[2265600] * 2 + [2956800] * 2 + [3148800] * 3 + [3302400],
)

# vivo X100 Pro (Dimensity 9300, MT6989): 1x X4 3.25, 3x X4 2.85, 4x A720 2.00 GHz.
DIMENSITY_9300 = FakePhone(
    serial="10AD5K1PQR000ZY",
    props=_props("vivo", "vivo", "V2324A", "PD2324", "PD2324", "Mediatek", "MT6989", "mt6989", "mt6989",
                 "14", 34, "UP1A.231005.007", "compiler240301"),
    usb="1-3", transport_id=3,
    delegates={"gpu": "partial", "nnapi": "full"},
    nnapi_accelerators=["mtk-neuron", "mtk-gpu", "nnapi-reference"],
    cpu_max_freq_khz=[2000000] * 4 + [2850000] * 3 + [3250000],
)
MEDIATEK_PHONE = DIMENSITY_9300
PHONES = (PIXEL_8, GALAXY_S24, DIMENSITY_9300)


def phone(base: FakePhone, **changes: Any) -> FakePhone:
    """A copy of a preset with fields changed (dataclasses.replace with fresh mutable fields)."""
    return dataclasses.replace(copy.deepcopy(base), **changes)


def benchmark_binary(tmp_dir: str | os.PathLike) -> Path:
    """Writes a fake ``benchmark_model`` (marker line + padding, mode 0o755) to push; returns its path."""
    path = Path(tmp_dir) / "benchmark_model"
    path.write_bytes(BENCHMARK_MARKER + b"\0" * 1024)
    path.chmod(0o755)
    return path


class FakeAdb:
    """The emulator's state folder and the ``adb`` executable over it.

    Args:
        root: folder for everything the emulator writes (state, phone file systems, logs, bin/adb).
        phones: the phones attached; their serials must be unique.
        server_running: False makes the first command print adb's "daemon not running" lines.
    """

    def __init__(self, root: str | os.PathLike, phones: Sequence[FakePhone], server_running: bool = True) -> None:
        self.root = Path(root).resolve()
        for sub in ("bin", "log", "phones"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        serials = [p.serial for p in phones]
        if len(set(serials)) != len(serials):
            raise ValueError(f"duplicate serials in {serials}")
        state: dict[str, Any] = {"server_running": server_running, "phones": {}}
        for p in phones:
            state["phones"][p.serial] = self._phone_state(p)
            self._init_fs(p)
        self._write_state(state)
        for name in ("calls.jsonl", "shell.jsonl", "benchmarks.jsonl"):
            (self.root / "log" / name).write_text("")
        self.executable = self.root / "bin" / "adb"
        self.executable.write_text(
            "#!/bin/sh\n"
            f"FAKE_ADB_HOME={shlex.quote(str(self.root))}\nexport FAKE_ADB_HOME\n"
            f"exec {shlex.quote(sys.executable)} {shlex.quote(str(HERE / 'fake_adb.py'))} \"$@\"\n")
        self.executable.chmod(0o755)

    # -------------------------------------------------------------------------------------------- set-up
    @staticmethod
    def _phone_state(p: FakePhone) -> dict[str, Any]:
        d = {f.name: getattr(p, f.name) for f in dataclasses.fields(p) if f.name != "files"}
        return json.loads(json.dumps(d))

    def _init_fs(self, p: FakePhone) -> None:
        fs = self.fs(p.serial)
        for d in DEVICE_DIRS:
            (fs / d.lstrip("/")).mkdir(parents=True, exist_ok=True)
        cpus = p.cpu_max_freq_khz
        for i, khz in enumerate(cpus):
            freq = fs / f"sys/devices/system/cpu/cpu{i}/cpufreq"
            freq.mkdir(parents=True, exist_ok=True)
            (freq / "cpuinfo_max_freq").write_text(f"{khz}\n")
        (fs / "sys/devices/system/cpu/possible").write_text(f"0-{len(cpus) - 1}\n")
        files = dict(p.files)
        if p.faults.get("preinstalled_benchmark_model") or files.pop("preinstalled_benchmark_model", None):
            files["/data/local/tmp/benchmark_model"] = BENCHMARK_MARKER + b"\0" * 1024
        for device_path, content in files.items():
            host = fs / device_path.lstrip("/")
            host.parent.mkdir(parents=True, exist_ok=True)
            host.write_bytes(content)
            host.chmod(0o755 if content.startswith(BENCHMARK_MARKER) else 0o644)

    def _read_state(self) -> dict[str, Any]:
        return json.loads((self.root / "state.json").read_text())

    def _write_state(self, state: dict[str, Any]) -> None:
        import fcntl

        with open(self.root / "state.lock", "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            tmp = self.root / "state.json.tmp"
            tmp.write_text(json.dumps(state, indent=1))
            os.replace(tmp, self.root / "state.json")

    # -------------------------------------------------------------------------------------------- access
    def env(self) -> dict[str, str]:
        """Environment additions: FAKE_ADB_HOME, and PATH with root/bin first (so a bare ``adb`` is this one)."""
        return {"FAKE_ADB_HOME": str(self.root),
                "PATH": f"{self.root / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"}

    def fs(self, serial: str) -> Path:
        """Host folder that is the phone's '/' (``/data/local/tmp/x`` -> ``fs/data/local/tmp/x``)."""
        return self.root / "phones" / serial / "fs"

    def _jsonl(self, name: str) -> list[Any]:
        text = (self.root / "log" / name).read_text()
        return [json.loads(line) for line in text.splitlines() if line]

    def calls(self) -> list[list[str]]:
        """Every adb argv received (without the program name), in order."""
        return self._jsonl("calls.jsonl")

    def shell_lines(self, serial: str | None = None) -> list[str]:
        """The joined shell command lines received (all phones, or one)."""
        return [e["line"] for e in self._jsonl("shell.jsonl") if serial is None or e["serial"] == serial]

    def benchmarks(self, serial: str | None = None) -> list[dict[str, Any]]:
        """One record per benchmark_model execution on the phone.

        Keys: serial, argv, binary, threads (--num_threads, -1 default), taskset (mask or None), env,
        delegate ("xnnpack" default CPU, "gpu", "nnapi", "qnn", ... or None when none applied, e.g. with
        --use_xnnpack=false), delegation ("full"/"partial"/"none" for an explicit delegate), warmup_us and
        timed_us (per-run integer microseconds), avg (float), avg_text (as printed), median, std, init_us,
        warmup_stat_line, timed_stat_line, output_file (device path written or None), exit_code, faults.
        """
        return [r for r in self._jsonl("benchmarks.jsonl") if serial is None or r["serial"] == serial]

    def phone_state(self, serial: str) -> dict[str, Any]:
        """The stored phone (fields plus counters: served calls, thermal_i, fixed_performance_mode)."""
        return self._read_state()["phones"][serial]

    def set_state(self, serial: str, state: str) -> None:
        self.update(serial, state=state)

    def update(self, serial: str, **fields: Any) -> None:
        """Changes FakePhone fields of an attached phone between calls (``files`` are written to its fs)."""
        unknown = set(fields) - {f.name for f in dataclasses.fields(FakePhone)}
        if unknown:
            raise TypeError(f"unknown FakePhone fields: {sorted(unknown)}")
        files = fields.pop("files", None)
        state = self._read_state()
        state["phones"][serial].update(json.loads(json.dumps(fields)))
        self._write_state(state)
        if files:
            for device_path, content in files.items():
                host = self.fs(serial) / device_path.lstrip("/")
                host.parent.mkdir(parents=True, exist_ok=True)
                host.write_bytes(content)
                host.chmod(0o755 if content.startswith(BENCHMARK_MARKER) else 0o644)

    def device_mode(self, serial: str, device_path: str) -> int:
        """Permission bits of a device file."""
        return stat.S_IMODE((self.fs(serial) / device_path.lstrip("/")).stat().st_mode)
