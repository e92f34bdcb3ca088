"""Host benchmark: an exported artefact on this machine's CPU, optionally beside PyTorch and onnxruntime.

``bench_host(artefact)`` times a ``.tflite`` with the LiteRT interpreter (XNNPACK, the default CPU path) or an
``.onnx`` with onnxruntime: load, ``warmup`` untimed runs, ``runs`` timed runs of ``invoke()`` on one fixed
held-out input at the artefact's export size (inputs are set once; only inference is timed). With
``compare=True`` the same input also goes through PyTorch fp32 eager (the reference network) and
onnxruntime (the artefact itself if it is ONNX, else an fp32 ONNX export of the same network) in the same
process, and the speed ratios are reported. Each runtime gives one :class:`mobileisp.bench.BenchResult`.

Peak memory is the largest resident-set size sampled every 2 ms while the runtime loads and runs, minus the
process's resident size just before loading: the footprint of the model, its arena and the runtime's own
allocations, not of the Python process. ``parity_psnr_db`` is the artefact's output against the PyTorch fp32
output on the benchmarked input (None when the reference weights are not available).
"""

from __future__ import annotations

import os
import platform
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from mobileisp.bench import BenchResult
from mobileisp.errors import MobileISPError, ModelError

DEFAULT_RUNS = 50
DEFAULT_WARMUP = 5


class HostBenchError(MobileISPError):
    """An artefact the host runner cannot time (e.g. Core ML off macOS) or invalid run counts."""


@dataclass
class HostBench:
    """Results of one host benchmark run.

    Attributes:
        results: the artefact's row first, then (with compare) ``torch`` and ``onnxruntime`` rows.
        speedup: runtime -> (that runtime's median ms) / (the artefact's median ms); > 1 means the artefact
            is faster. Empty without compare.
    """

    results: list[BenchResult]
    speedup: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"results": [r.to_dict() for r in self.results], "speedup": dict(self.speedup)}

    def table(self) -> str:
        head = f"{'runtime':<12} {'format':<7} {'precision':<9} {'threads':>7} {'median ms':>10} {'p90 ms':>8} " \
               f"{'min ms':>8} {'mean ms':>8} {'peak MB':>8} {'PSNR dB':>8}"
        lines = [head, "-" * len(head)]
        for r in self.results:
            lines.append(
                f"{r.runtime:<12} {r.format:<7} {r.precision:<9} {str(r.threads or '-'):>7} {r.ms_median:>10.2f} "
                f"{_f(r.ms_p90):>8} {r.ms_min:>8.2f} {r.ms_mean:>8.2f} {_f(r.peak_memory_mb, 1):>8} {_f(r.parity_psnr_db):>8}"
            )
        first = self.results[0]
        for name, ratio in self.speedup.items():
            lines.append(f"{first.runtime} {first.precision} is {ratio:.2f}x the speed of {name} (median)")
        return "\n".join(lines)


def _f(v: float | None, digits: int = 2) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


class _PeakMemory:
    """Samples this process's resident set size in a thread; ``peak_mb`` is the rise over the start value."""

    def __init__(self, interval_s: float = 0.002):
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._peak = 0

    @staticmethod
    def rss() -> int:
        try:
            import psutil

            return int(psutil.Process().memory_info().rss)
        except ImportError:  # Linux fallback
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def __enter__(self) -> "_PeakMemory":
        self._base = self.rss()
        self._peak = self._base
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self._peak = max(self._peak, self.rss())
            time.sleep(self.interval_s)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self.rss())

    @property
    def peak_mb(self) -> float:
        return max(0, self._peak - self._base) / 1e6


def _time_runs(run: Callable[[], Any], warmup: int, runs: int) -> list[float]:
    for _ in range(warmup):
        run()
    samples = []
    for _ in range(runs):
        t0 = time.perf_counter()
        run()
        samples.append((time.perf_counter() - t0) * 1e3)
    return samples


def _host_fields() -> dict[str, Any]:
    soc = None
    try:
        with open("/proc/cpuinfo") as f:
            soc = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    except OSError:
        soc = platform.processor() or None
    return {"device": "host", "soc": soc or platform.machine(), "os_version": f"{platform.system()} {platform.release()}"}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR (dB, range 1) of two clipped NCHW outputs of any channel count (sRGB, or packed RAW)."""
    a, b = np.clip(a, 0, 1).astype(np.float64), np.clip(b, 0, 1).astype(np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))


def bench_host(
    artefact: str | Path,
    *,
    threads: int | None = None,
    runs: int = DEFAULT_RUNS,
    warmup: int = DEFAULT_WARMUP,
    compare: bool = False,
    weights: str | Path | None = None,
) -> HostBench:
    """Time an exported ``.tflite`` (LiteRT/XNNPACK) or ``.onnx`` (onnxruntime) on this CPU.

    Args:
        artefact: a file written by ``mobileisp export``.
        threads: CPU threads, the same for every runtime (None: 1, LiteRT's own default).
        runs: timed runs (>= 1); warmup: untimed runs before them (>= 0).
        compare: also time PyTorch fp32 eager and onnxruntime on the same input.
        weights: weights for the PyTorch reference (default: those recorded in the artefact).

    Raises:
        HostBenchError: a Core ML artefact (time it on a Mac: ``mobileisp bench --device mac``) or bad counts.
    """
    from mobileisp.export.artefact import read_metadata
    from mobileisp.export.calibrate import example_inputs
    from mobileisp.export.pipeline import load_reference, weights_for_artefact
    from mobileisp.export.artefact import spec_for_artefact

    if int(runs) < 1 or int(warmup) < 0:
        raise HostBenchError(f"need runs >= 1 and warmup >= 0 (got runs={runs}, warmup={warmup})")
    threads = int(threads) if threads else 1
    path = Path(artefact)
    meta = read_metadata(path)
    if meta["format"] == "coreml":
        raise HostBenchError(f"{path.name} is a Core ML model: the host runner times TFLite and ONNX; "
                             "time Core ML on a Mac or iPhone (mobileisp bench --device mac|iphone)")
    spec = spec_for_artefact(meta)
    size = tuple(meta["size"])
    inputs = {k: v for k, v in example_inputs(spec, size).items()}
    feed = {k: v.numpy() for k, v in inputs.items()}
    common = {"model": spec.name, "warmup": int(warmup), "threads": threads,
              "input_shape": tuple(inputs[spec.image_input.name].shape), **_host_fields()}

    reference = None
    try:
        reference, _ = load_reference(spec, weights_for_artefact(meta, weights))
    except ModelError:
        if compare:
            raise
    ref_out = None
    if reference is not None:
        with torch.no_grad():
            names = list(inputs)
            ref_out = reference(inputs[names[0]], **{k: inputs[k] for k in names[1:]}).numpy()

    results = [_bench_artefact(path, meta, feed, ref_out, threads, runs, warmup, common)]
    speedup: dict[str, float] = {}
    if compare:
        torch_row = _bench_torch(reference, inputs, threads, runs, warmup, common, path)
        results.append(torch_row)
        if meta["format"] == "onnx":
            ort_row = None
        else:
            ort_row = _bench_onnx_of(reference, spec, inputs, feed, ref_out, threads, runs, warmup, common)
            results.append(ort_row)
        base = results[0].ms_median
        speedup["torch"] = torch_row.ms_median / base
        if ort_row is not None:
            speedup["onnxruntime"] = ort_row.ms_median / base
        for r in results[1:]:
            r.notes += f"; artefact {results[0].runtime} {results[0].precision} median {base:.2f} ms = " \
                       f"{r.ms_median / base:.2f}x faster than this"
    return HostBench(results, speedup)


def _bench_artefact(path: Path, meta: dict[str, Any], feed: dict[str, np.ndarray], ref_out: np.ndarray | None,
                    threads: int | None, runs: int, warmup: int, common: dict[str, Any]) -> BenchResult:
    if meta["format"] == "tflite":
        from mobileisp.export.tflite import TFLiteRunner

        with _PeakMemory() as mem:
            t0 = time.perf_counter()
            runner = TFLiteRunner(path, threads)
            load_ms = (time.perf_counter() - t0) * 1e3
            runner.set_inputs(feed)
            samples = _time_runs(runner.invoke, warmup, runs)
        out = runner.get_output()
        runtime, notes, accelerator = "litert", "LiteRT Interpreter, XNNPACK CPU delegate", "cpu"
    else:
        from mobileisp.export.onnx import ONNXRunner

        with _PeakMemory() as mem:
            t0 = time.perf_counter()
            runner = ONNXRunner(path, threads)
            load_ms = (time.perf_counter() - t0) * 1e3
            session, names = runner.session, runner.input_names
            ort_feed = {n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in names}
            samples = _time_runs(lambda: session.run(None, ort_feed), warmup, runs)
        out = session.run(None, ort_feed)[0]
        runtime, notes, accelerator = "onnxruntime", "onnxruntime CPUExecutionProvider", "cpu"
    return BenchResult.from_samples(
        samples, artefact=str(path), format=meta["format"], precision=meta["precision"], runtime=runtime,
        accelerator=accelerator, load_ms=load_ms, peak_memory_mb=mem.peak_mb,
        parity_psnr_db=None if ref_out is None else _psnr(out, ref_out), notes=notes, **common,
    )


def _bench_torch(model, inputs: dict[str, torch.Tensor], threads: int | None, runs: int, warmup: int,
                 common: dict[str, Any], path: Path) -> BenchResult:
    names = list(inputs)
    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        with _PeakMemory() as mem, torch.no_grad():
            samples = _time_runs(lambda: model(inputs[names[0]], **{k: inputs[k] for k in names[1:]}), warmup, runs)
    finally:
        torch.set_num_threads(previous)
    return BenchResult.from_samples(
        samples, artefact=f"{path} (PyTorch fp32 eager reference)", format="torch", precision="fp32", runtime="torch",
        accelerator="cpu", peak_memory_mb=mem.peak_mb, parity_psnr_db=None,
        notes=f"PyTorch {torch.__version__} eager, no_grad", **common,
    )


def _bench_onnx_of(model, spec, inputs: dict[str, torch.Tensor], feed: dict[str, np.ndarray],
                   ref_out: np.ndarray | None, threads: int | None, runs: int, warmup: int,
                   common: dict[str, Any]) -> BenchResult:
    from mobileisp.export.onnx import ONNXRunner, export
    from mobileisp.export.rewrite import export_friendly

    with tempfile.TemporaryDirectory(prefix="mobileisp-bench-") as tmp:
        onnx_path = export(export_friendly(model, "onnx"), inputs, Path(tmp) / f"{spec.name}.onnx",
                           output_name=spec.output.name)
        with _PeakMemory() as mem:
            t0 = time.perf_counter()
            runner = ONNXRunner(onnx_path, threads)
            load_ms = (time.perf_counter() - t0) * 1e3
            ort_feed = {n: np.ascontiguousarray(feed[n], dtype=np.float32) for n in runner.input_names}
            samples = _time_runs(lambda: runner.session.run(None, ort_feed), warmup, runs)
        out = runner.session.run(None, ort_feed)[0]
    return BenchResult.from_samples(
        samples, artefact=f"{spec.name} fp32 ONNX (exported for comparison)", format="onnx", precision="fp32",
        runtime="onnxruntime", accelerator="cpu", load_ms=load_ms, peak_memory_mb=mem.peak_mb,
        parity_psnr_db=None if ref_out is None else _psnr(out, ref_out),
        notes="onnxruntime CPUExecutionProvider", **common,
    )
