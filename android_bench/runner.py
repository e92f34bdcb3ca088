"""``mobileisp bench ART.tflite --device pixel|SERIAL``: latency and on-device parity on an Android phone.

What one run does, in order (every device command an argument list, quoted for the phone's shell):

1. find ``adb`` (:func:`mobileisp.android_bench.adb.find_adb`), pick the phone (a profile name such as
   ``pixel`` or a serial) and its :class:`~mobileisp.android_bench.devices.DeviceProfile`;
2. make a private folder ``/data/local/tmp/mobileisp-<id>/`` and push the artefact there (and the
   ``benchmark_model`` binary when ``--benchmark-model`` is given; otherwise ``/data/local/tmp/benchmark_model``
   must already be on the phone);
3. for parity, write the first held-out RAW image at the artefact's export size as raw bytes in the model's
   input dtype and NHWC layout (``--input_layer_value_files``) and push it;
4. switch on fixed-performance mode where the profile says the phone offers it (Android 11+, no root);
5. per accelerator (CPU/XNNPACK, GPU delegate, NNAPI, QNN HTP, ... filtered by what is on the phone and the
   artefact's precision): wait until ``dumpsys thermalservice`` reports a cool phone, run ``benchmark_model``
   pinned to the profile's big cores (``taskset``) with ``--num_threads`` = those cores, warm-up runs,
   ``--num_runs``/``--min_secs``, ``--output_filepath``; parse the log (timings, memory, delegation) and pull the
   output tensor;
6. compare the phone's output with the PyTorch fp32 reference with the metrics of ``mobileisp validate``;
7. remove everything it pushed and switch fixed-performance mode off again, also when a step failed.

Each accelerator gives one :class:`mobileisp.bench.BenchResult` row. A delegate that takes only part of the graph
is reported as ``delegation="partial"``; with ``require_full_delegation`` it is an error. Accelerators other than
the CPU that fail on the phone (a delegate that cannot be created) are listed as skipped with the tool's reason,
unless they were asked for by name.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from mobileisp.android_bench.adb import Adb, AdbError, AdbNotFoundError, find_adb
from mobileisp.android_bench.benchmark_model import (
    BenchmarkFailedError,
    BenchmarkOptions,
    BenchmarkOutput,
    BenchmarkOutputError,
    build_command,
    failure_line,
    parse_output,
)
from mobileisp.android_bench.devices import (
    Accelerator,
    AndroidDevice,
    DeviceProfile,
    load_profiles,
    select_device,
    usable_accelerators,
)
from mobileisp.bench import BenchResult
from mobileisp.errors import MobileISPError

#: Where benchmark_model is looked for when --benchmark-model is not given (the official recipe's location).
DEVICE_BENCHMARK_MODEL = "/data/local/tmp/benchmark_model"
#: Parent of the per-run folder on the phone.
DEVICE_TMP = "/data/local/tmp"
THERMAL_STATUS = re.compile(r"Thermal Status:\s*(\d+)")
#: Seconds a benchmark_model call may run beyond its own --max_secs before the run is abandoned.
BENCHMARK_MARGIN_S = 120.0


class AndroidBenchError(MobileISPError):
    """An Android benchmark that cannot run or whose result cannot be trusted (one line, exit code 2)."""


@dataclass
class Skipped:
    """An accelerator that was tried and did not run, with the reason from the tool's log."""

    accelerator: str
    reason: str

    def to_dict(self) -> dict[str, str]:
        return {"accelerator": self.accelerator, "reason": self.reason}


@dataclass
class AndroidBench:
    """Results of one ``bench --device <phone>`` run.

    Attributes:
        device: the phone (serial, model, SoC, Android version, profile).
        results: one row per accelerator that ran, in the order tried.
        parity: accelerator -> the on-device parity (``ParityResult.to_dict()``: PSNR, SSIM, ΔE2000, max error
            against the fp32 PyTorch reference and task PSNR against ground truth); empty without parity.
        skipped: accelerators that were tried and failed on the phone.
        notes: run conditions (fixed-performance mode, cool-down waits, benchmark_model origin).
    """

    device: dict[str, Any]
    results: list[BenchResult]
    parity: dict[str, dict[str, Any]] = field(default_factory=dict)
    skipped: list[Skipped] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "device": dict(self.device),
            "results": [r.to_dict() for r in self.results],
            "parity": dict(self.parity),
            "skipped": [s.to_dict() for s in self.skipped],
            "notes": list(self.notes),
        }

    def parity_failures(self) -> list[str]:
        """One line per accelerator whose on-device output is below its parity floor (or task-PSNR drop limit)."""
        out = []
        for acc, p in self.parity.items():
            if not p.get("passed", True):
                from mobileisp.export.parity import ParityResult

                out.append(f"{acc}: {ParityResult.from_dict(p).failure()}")
        return out

    def table(self) -> str:
        d = self.device
        lines = [f"{d.get('model') or '?'} ({d.get('serial')}), {d.get('soc') or 'unknown SoC'}, "
                 f"Android {d.get('android_version') or '?'}, profile {d.get('profile') or 'none'}"]
        head = (f"{'accelerator':<12} {'precision':<9} {'threads':>7} {'median ms':>10} {'mean ms':>9} {'p95 ms':>8} "
                f"{'min ms':>8} {'init ms':>8} {'mem MB':>7} {'delegation':<10} {'PSNR dB':>8}")
        lines += [head, "-" * len(head)]
        for r in self.results:
            lines.append(
                f"{r.accelerator or '-':<12} {r.precision:<9} {str(r.threads or '-'):>7} {r.ms_median:>10.2f} "
                f"{r.ms_mean:>9.2f} {_f(r.ms_p95):>8} {r.ms_min:>8.2f} {_f(r.load_ms):>8} {_f(r.peak_memory_mb, 1):>7} "
                f"{r.delegation or '-':<10} {_f(r.parity_psnr_db):>8}"
            )
        for acc, p in self.parity.items():
            floor = "none" if p.get("floor_db") is None else f"{p['floor_db']:.1f} dB"
            status = "PASS" if p.get("passed") else "BELOW FLOOR"
            lines.append(
                f"parity on the phone ({acc}): PSNR {p['psnr_db']:.2f} dB (floor {floor}), SSIM {p['ssim']:.5f}, "
                f"mean dE2000 {p['delta_e2000']:.3f}, max |err| {p['max_abs_error']:.4f}, task PSNR "
                f"{p['task_psnr_db']:.2f} dB (reference {p['reference_task_psnr_db']:.2f}) -> {status}"
            )
        lines += [f"skipped {s.accelerator}: {s.reason}" for s in self.skipped]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


# ------------------------------------------------------------------------------------------------ entry point


def bench_android(
    artefact: str | Path,
    device: str,
    *,
    adb: str | Path | None = None,
    benchmark_model: str | Path | None = None,
    accelerators: Sequence[str] | None = None,
    threads: int | None = None,
    warmup: int = 5,
    runs: int = 50,
    min_secs: float = 1.0,
    parity: bool = True,
    require_full_delegation: bool = False,
    fixed_performance: bool = True,
    cooldown: bool = True,
    cooldown_timeout_s: float = 300.0,
    cooldown_poll_s: float = 5.0,
    timeout_s: float = 60.0,
    weights: str | Path | None = None,
    profiles: dict[str, DeviceProfile] | None = None,
    log: Callable[[str], None] | None = None,
) -> AndroidBench:
    """Benchmark (and check the parity of) a ``.tflite`` on a phone connected over adb.

    Args:
        artefact: a ``.tflite`` written by ``mobileisp export`` (its metadata names the model and size).
        device: a profile name (``pixel``: the one connected phone that matches it) or an adb serial.
        adb: the adb executable (default: $ADB, $ANDROID_HOME/platform-tools/adb, then PATH).
        benchmark_model: host path of an Android ``benchmark_model`` binary to push (default: use
            ``/data/local/tmp/benchmark_model`` already on the phone).
        accelerators: names from the profile (``cpu``, ``gpu``, ``nnapi``, ``qnn-htp``, ...); None: every one
            the phone has for this precision.
        threads: CPU threads (default: the profile's big-core count); the taskset mask stays the profile's.
        warmup: warm-up runs (>= 0); runs: timed runs (>= 1), at least ``min_secs`` seconds in total.
        parity: feed a held-out RAW image, pull the output and compare it with the PyTorch fp32 reference.
        require_full_delegation: a delegate that leaves part of the graph on the CPU is an error.
        fixed_performance: use Android's fixed-performance mode where the profile says it exists.
        cooldown: before each accelerator wait until the thermal status is at most the profile's.
        cooldown_timeout_s, cooldown_poll_s: how long to wait for a cool phone, and the polling interval.
        timeout_s: limit for each adb call other than the benchmark itself (that gets ``--max_secs`` + margin).
        weights: PyTorch reference weights (default: the ones recorded in the artefact).
        profiles: device profiles (default: the shipped ``android_bench/profiles/*.toml``).
        log: progress callback (one line per step), e.g. ``print`` to stderr.

    Raises:
        AndroidBenchError / AdbError / BenchmarkFailedError / BenchmarkOutputError: one-line reasons; the pushed
        files are removed before the error propagates (when the phone is still reachable).
    """
    from mobileisp.export.artefact import read_metadata

    say = log or (lambda _msg: None)
    if int(runs) < 1 or int(warmup) < 0 or float(min_secs) < 0:
        raise AndroidBenchError(f"need runs >= 1, warmup >= 0 and min-secs >= 0 (got {runs}, {warmup}, {min_secs})")
    if threads is not None and int(threads) < 1:
        raise AndroidBenchError(f"--threads must be at least 1, got {threads}")
    path = Path(artefact)
    if path.suffix.lower() != ".tflite":
        raise AndroidBenchError(f"{path.name}: Android benchmarks take a .tflite artefact (mobileisp export --format tflite)")
    if benchmark_model is not None and not Path(benchmark_model).is_file():
        raise AndroidBenchError(f"--benchmark-model {benchmark_model}: no such file (an android_aarch64_benchmark_model binary)")
    profiles = load_profiles() if profiles is None else profiles
    try:
        adb_path = find_adb(adb)
    except AdbNotFoundError as e:
        if device in profiles:
            raise
        raise AndroidBenchError(
            f"unknown --device {device!r}: use host, mac, iphone[:UDID], an Android profile ({', '.join(sorted(profiles))}) "
            f"or the serial of a phone adb lists; {e}"
        ) from None
    meta = read_metadata(path)

    host_adb = Adb(adb_path, timeout_s=timeout_s)
    phone = select_device(host_adb, device, profiles)
    adb_dev = host_adb.for_device(phone.serial)
    profile = phone.profile or _generic_profile(profiles)
    chosen = _choose_accelerators(adb_dev, phone, profile, meta["precision"], accelerators)
    mask, big_cores = profile.affinity(phone.props)
    n_threads = int(threads) if threads else int(big_cores)
    say(f"{phone.model or phone.serial}: profile {profile.name}, cores {mask} x{n_threads}, "
        f"accelerators {', '.join(a.name for a in chosen)}")

    reference = _ParityCase(meta, path, weights) if parity else None
    work = f"{DEVICE_TMP}/mobileisp-{uuid.uuid4().hex[:8]}"
    bench = AndroidBench(device=phone.to_dict(), results=[])
    perf_mode = False
    try:
        adb_dev.shell(["mkdir", "-p", work])
        device_model = f"{work}/{path.name}"
        say(f"push {path.name} -> {device_model}")
        adb_dev.push(path, device_model)
        binary = _benchmark_binary(adb_dev, benchmark_model, work, bench.notes)
        inputs: list[tuple[str, tuple[int, ...], str]] = []
        if reference is not None:
            inputs = reference.push_inputs(adb_dev, work)
        if fixed_performance and profile.fixed_performance:
            perf_mode = _set_fixed_performance(adb_dev, True, bench.notes)
        for acc in chosen:
            if cooldown:
                _wait_until_cool(adb_dev, profile.cooldown_status, cooldown_timeout_s, cooldown_poll_s, bench.notes, say)
            output_file = f"{work}/output-{acc.name}.bin" if reference is not None else None
            options = BenchmarkOptions(
                graph=device_model, num_threads=n_threads, warmup_runs=int(warmup), num_runs=int(runs),
                min_secs=float(min_secs), delegate_flags=tuple(acc.flags), inputs=tuple(inputs),
                output_filepath=output_file, require_full_delegation=bool(require_full_delegation),
                cpu_mask=mask, env=tuple(acc.env),
            )
            say(f"benchmark_model on {acc.name} ({n_threads} threads, {int(runs)} runs)")
            try:
                out = _run_benchmark(adb_dev, binary, options)
            except (BenchmarkFailedError, BenchmarkOutputError) as e:
                if require_full_delegation and "Disallowed CPU fallback" in str(e):
                    raise AndroidBenchError(f"{phone.model or phone.serial} {acc.name}: the delegate did not take the "
                                            f"whole graph ({e}) and --require-full-delegation is set") from None
                if acc.name == "cpu" or accelerators:
                    raise AndroidBenchError(f"{phone.model or phone.serial} {acc.name}: {e}") from None
                bench.skipped.append(Skipped(acc.name, str(e)))
                continue
            delegation = _delegation(acc, out)
            if delegation == "none" and acc.name != "cpu":
                reason = f"the delegate took none of the graph, the run was on the CPU ({_delegation_text(out)})"
                if accelerators or require_full_delegation:
                    raise AndroidBenchError(f"{phone.model or phone.serial} {acc.name}: {reason}")
                bench.skipped.append(Skipped(acc.name, reason))
                continue
            if require_full_delegation and delegation != "full":
                raise AndroidBenchError(
                    f"{acc.name} took only part of the graph ({_delegation_text(out)}) and --require-full-delegation is set"
                )
            parity_result = None
            if reference is not None and output_file is not None:
                parity_result = reference.compare(adb_dev, output_file, acc, phone)
                bench.parity[acc.name] = parity_result.to_dict()
            bench.results.append(_row(path, meta, phone, acc, n_threads, out, delegation, parity_result, mask, perf_mode))
    finally:
        _cleanup(adb_dev, work, perf_mode, bench.notes)
    if not bench.results:
        raise AndroidBenchError(f"no accelerator ran on {phone.model or phone.serial}: "
                                + "; ".join(f"{s.accelerator}: {s.reason}" for s in bench.skipped))
    return bench


# ------------------------------------------------------------------------------------------------ steps


def _generic_profile(profiles: dict[str, DeviceProfile]) -> DeviceProfile:
    """The profile of a phone no shipped profile recognises (all cores, CPU and GPU delegate)."""
    if "generic" in profiles:
        return profiles["generic"]
    raise AndroidBenchError("this phone matches no device profile and no `generic` profile is installed")


def _choose_accelerators(adb: Adb, phone: AndroidDevice, profile: DeviceProfile, precision: str,
                         wanted: Sequence[str] | None) -> list[Accelerator]:
    usable = usable_accelerators(adb, _with_profile(phone, profile), precision)
    if not wanted:
        if not usable:
            raise AndroidBenchError(f"profile {profile.name} offers no accelerator for {precision} on this phone")
        return usable
    known = {a.name: a for a in profile.accelerators}
    by_name = {a.name: a for a in usable}
    chosen = []
    for name in wanted:
        if name not in known:
            raise AndroidBenchError(f"accelerator {name!r} is not in profile {profile.name} "
                                    f"(it has {', '.join(known) or 'none'})")
        if name not in by_name:
            raise AndroidBenchError(f"accelerator {name!r} is not usable on {phone.model or phone.serial} for {precision} "
                                    f"(missing libraries, Android version or precision; usable: "
                                    f"{', '.join(by_name) or 'none'})")
        chosen.append(by_name[name])
    return chosen


def _with_profile(phone: AndroidDevice, profile: DeviceProfile) -> AndroidDevice:
    if phone.profile is profile:
        return phone
    import dataclasses

    return dataclasses.replace(phone, profile=profile)


def _benchmark_binary(adb: Adb, local: str | Path | None, work: str, notes: list[str]) -> str:
    if local is not None:
        remote = f"{work}/benchmark_model"
        adb.push(local, remote)
        adb.shell(["chmod", "755", remote])
        notes.append(f"benchmark_model pushed from {local}")
        return remote
    if not adb.exists(DEVICE_BENCHMARK_MODEL):
        raise AndroidBenchError(
            f"no {DEVICE_BENCHMARK_MODEL} on the phone: pass --benchmark-model PATH "
            "(the android_aarch64_benchmark_model nightly binary, or a bazel build of //tflite/tools/benchmark:benchmark_model)"
        )
    notes.append(f"benchmark_model already on the phone at {DEVICE_BENCHMARK_MODEL}")
    return DEVICE_BENCHMARK_MODEL


def _set_fixed_performance(adb: Adb, on: bool, notes: list[str]) -> bool:
    result = adb.shell(["cmd", "power", "set-fixed-performance-mode-enabled", "true" if on else "false"], check=False)
    if on:
        if result.returncode == 0:
            notes.append("fixed-performance mode on (cmd power set-fixed-performance-mode-enabled)")
            return True
        notes.append("fixed-performance mode not available on this phone (needs Android 11+); clocks not fixed")
    return False


def _thermal_status(adb: Adb) -> int | None:
    result = adb.shell(["dumpsys", "thermalservice"], check=False)
    found = THERMAL_STATUS.search(result.stdout)
    return int(found.group(1)) if result.returncode == 0 and found else None


def _wait_until_cool(adb: Adb, limit: int, timeout_s: float, poll_s: float, notes: list[str],
                     say: Callable[[str], None]) -> None:
    start = time.monotonic()
    status = _thermal_status(adb)
    if status is None:
        if "thermal status unavailable (dumpsys thermalservice); no cool-down" not in notes:
            notes.append("thermal status unavailable (dumpsys thermalservice); no cool-down")
        return
    waited = False
    while status is not None and status > limit:
        if time.monotonic() - start > timeout_s:
            raise AndroidBenchError(f"the phone stayed hot (thermal status {status} > {limit}) for {timeout_s:.0f} s; "
                                    "let it cool down and retry")
        if not waited:
            say(f"thermal status {status}: waiting for the phone to cool down")
        waited = True
        time.sleep(poll_s)
        status = _thermal_status(adb)
    if waited:
        notes.append(f"waited {time.monotonic() - start:.1f} s for thermal status <= {limit}")


def _run_benchmark(adb: Adb, binary: str, options: BenchmarkOptions) -> BenchmarkOutput:
    argv = build_command(binary, options)
    result = adb.shell(argv, check=False, timeout_s=options.max_secs + options.min_secs + BENCHMARK_MARGIN_S)
    text = result.stdout + ("\n" if result.stdout and result.stderr else "") + result.stderr
    if result.returncode != 0:
        line = failure_line(text, result.returncode)
        if "output_filepath" in text and ("Unconsumed" in text or "unknown" in text.lower()):
            line = ("this benchmark_model is too old for on-device parity (no --output_filepath); "
                    "use a current LiteRT build or pass --no-parity")
        raise BenchmarkFailedError(line)
    return parse_output(text)


def _delegation(acc: Accelerator, out: BenchmarkOutput) -> str | None:
    """How much of the graph the accelerator took, from the log's delegation lines.

    A delegate flag without an ``Explicitly applied ...`` line means the delegate was never applied (the tool
    says e.g. ``Unable to load external delegate`` and carries on with the CPU): that counts as ``none``.
    """
    explicit = out.delegation()
    if explicit is not None:
        return explicit
    if acc.name == "cpu":
        if out.xnnpack is not None and out.xnnpack[1] is not None:
            replaced, total, _ = out.xnnpack
            return "full" if replaced >= total else ("partial" if replaced else "none")
        return None
    return "none"


def _delegation_text(out: BenchmarkOutput) -> str:
    return "; ".join(f"{d.name}: {d.delegation}" + (f" ({d.kernels} delegate kernels)" if d.kernels else "")
                     for d in out.delegates) or "no delegation line"


def _row(path: Path, meta: dict[str, Any], phone: AndroidDevice, acc: Accelerator, threads: int, out: BenchmarkOutput,
         delegation: str | None, parity_result, mask: str, perf_mode: bool) -> BenchResult:
    stats = out.runs
    if stats is None:
        raise BenchmarkOutputError("benchmark_model printed no per-run statistics line (count=... min=... avg=...)")
    us = 1e-3
    median = stats.median_us if stats.median_us is not None else stats.avg_us
    notes = [f"benchmark_model ({out.variant} log), taskset {mask}"]
    if out.delegates:
        notes.append(_delegation_text(out))
    if perf_mode:
        notes.append("fixed-performance mode")
    if parity_result is not None and not parity_result.passed:
        notes.append(f"ON-DEVICE PARITY BELOW FLOOR: {parity_result.failure()}")
    h, w = (int(v) for v in meta["size"])
    shape = (1, 4, h // 2, w // 2)  # NCHW like the host rows; the .tflite itself is NHWC
    return BenchResult(
        artefact=str(path), model=meta["model"], format="tflite", precision=meta["precision"],
        runtime="benchmark_model", device=phone.model or phone.serial, soc=phone.soc,
        os_version=f"Android {phone.android_version}" if phone.android_version else None,
        accelerator=acc.name, threads=threads, input_shape=shape,
        warmup=out.warmup.count if out.warmup is not None else 0, runs=stats.count,
        ms_min=stats.min_us * us, ms_median=median * us, ms_mean=stats.avg_us * us,
        ms_p95=None if stats.p95_us is None else stats.p95_us * us,
        ms_std=None if stats.std_us is None else stats.std_us * us,
        load_ms=out.init_ms, peak_memory_mb=out.peak_memory_mb if out.peak_memory_mb is not None else out.memory_overall_mb,
        parity_psnr_db=None if parity_result is None else parity_result.psnr_db,
        delegation=delegation, notes="; ".join(notes),
    )


def _cleanup(adb: Adb, work: str, perf_mode: bool, notes: list[str]) -> None:
    """Remove the run folder and undo fixed-performance mode; a phone that is gone cannot be cleaned (noted)."""
    try:
        if perf_mode:
            _set_fixed_performance(adb, False, notes)
        adb.shell(["rm", "-rf", work], check=False)
    except AdbError as e:
        notes.append(f"could not clean up {work} on the phone: {e}")


# ------------------------------------------------------------------------------------------------ parity


class _ParityCase:
    """The held-out input fed to the phone and the PyTorch fp32 reference output for it.

    The input is :func:`mobileisp.export.calibrate.evaluation_set`'s first image at the artefact's export size, the
    same image ``mobileisp bench --device host`` times. Bytes on the phone are in the interpreter's input dtype
    (float32, or int8 with the tensor's scale/zero point for ``int8-io``) and NHWC layout.
    """

    def __init__(self, meta: dict[str, Any], path: Path, weights: str | Path | None):
        import torch

        from mobileisp.export.calibrate import evaluation_set
        from mobileisp.export.pipeline import load_reference, weights_for_artefact
        from mobileisp.export.tflite import TFLiteRunner, quiet_native_output
        from mobileisp.export.artefact import spec_for_artefact

        self.meta = meta
        self.spec = spec_for_artefact(meta)
        self.size = tuple(int(s) for s in meta["size"])
        self.set = evaluation_set(self.spec, 1, self.size)
        model, _ = load_reference(self.spec, weights_for_artefact(meta, weights))
        names = list(self.set.inputs)
        with torch.no_grad():
            self.reference = model(self.set.inputs[names[0]], **{k: self.set.inputs[k] for k in names[1:]}).numpy()
        with quiet_native_output(os.devnull):  # LiteRT announces its XNNPACK delegate on fd 2
            runner = TFLiteRunner(path)  # for the tensor details only; nothing is run on the host
        self.input_details = runner.inputs
        self.output_details = runner.outputs
        self._runner = runner

    def push_inputs(self, adb: Adb, work: str) -> list[tuple[str, tuple[int, ...], str]]:
        from mobileisp.export.tflite import quantize

        feeds = []
        with tempfile.TemporaryDirectory(prefix="mobileisp-android-") as tmp:
            # benchmark_model binds --input_layer entries to the model's inputs by position (a name mismatch is only
            # a warning), so the files go in the interpreter's input order, which onnx2tf need not keep
            values = self.set.numpy()
            order = [d["name"] for d in self._runner.inputs]
            items = sorted(values.items(), key=lambda kv: order.index(self._runner.input_index(kv[0])["name"]))
            for i, (name, value) in enumerate(items):
                detail = self._runner.input_index(name)
                x = np.asarray(value, dtype=np.float32)
                if x.ndim == 4:
                    x = x.transpose(0, 2, 3, 1)
                shape = tuple(int(s) for s in detail["shape"])
                if tuple(x.shape) != shape:
                    raise AndroidBenchError(f"input {name!r}: the .tflite expects {shape} (NHWC), the held-out image is {x.shape}")
                local = Path(tmp) / f"input{i}.bin"
                local.write_bytes(np.ascontiguousarray(quantize(x, detail)).tobytes())
                remote = f"{work}/input{i}.bin"
                adb.push(local, remote)
                feeds.append((str(detail["name"]), shape, remote))
        return feeds

    def compare(self, adb: Adb, remote: str, acc: Accelerator, phone: AndroidDevice):
        """Pull the output bytes, decode the first output tensor and measure parity like ``validate``."""
        from mobileisp.export.formats import floor_for, resolve
        from mobileisp.export.parity import measure
        from mobileisp.export.tflite import dequantize

        with tempfile.TemporaryDirectory(prefix="mobileisp-android-") as tmp:
            local = Path(tmp) / "output.bin"
            adb.pull(remote, local)
            data = local.read_bytes()
        expected = sum(int(np.prod(d["shape"])) * np.dtype(d["dtype"]).itemsize for d in self.output_details)
        if len(data) != expected:
            raise AndroidBenchError(f"the phone wrote {len(data)} output bytes, the model's outputs take {expected}")
        first = self.output_details[0]
        count = int(np.prod(first["shape"]))
        y = np.frombuffer(data, dtype=np.dtype(first["dtype"]), count=count).reshape(tuple(first["shape"]))
        y = dequantize(y, first)
        channels = 4 if self.spec.inverse else 3
        if y.ndim == 4 and y.shape[-1] == channels and y.shape[1] != channels:
            y = y.transpose(0, 3, 1, 2)
        _, prec = resolve("tflite", self.meta["precision"])
        floor = floor_for(self.spec.parity_floors, "tflite", _effective_precision(acc, self.meta["precision"]))
        result, _ = measure(
            lambda _inputs: y, self.reference, self.set.targets, self.set.numpy(),
            artefact=f"{self.meta.get('artefact') or self.meta['model']} on {phone.model or phone.serial} ({acc.name})",
            model=self.spec.name, format="tflite", precision=self.meta["precision"],
            runtime=f"benchmark_model {acc.name}", simulated=False, floor_db=floor,
            max_task_drop_db=prec.max_task_drop_db,
            notes="one held-out image fed with --input_layer_value_files, output from --output_filepath",
            raw_output=self.spec.inverse,
        )
        return result


def _effective_precision(acc: Accelerator, precision: str) -> str:
    """The precision an accelerator computes a float model in: the GPU delegate (and --allow_fp16) run fp32 graphs
    in fp16 unless told otherwise, so their parity is held to the fp16 floor."""
    if precision != "fp32":
        return precision
    flags = " ".join(acc.flags)
    fp16 = acc.name.endswith("fp16") \
        or (acc.name.startswith("gpu") and "gpu_precision_loss_allowed=false" not in flags) \
        or "allow_fp16=true" in flags or "xnnpack_force_fp16=true" in flags
    return "fp16" if fp16 else precision
