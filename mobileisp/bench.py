"""Benchmark results shared by every runner (host, Android over adb, Mac and iPhone through Core ML).

A runner times ``runs`` predictions after ``warmup`` untimed ones and returns one :class:`BenchResult`.
Times are wall-clock milliseconds per prediction; a result is JSON-ready through :meth:`BenchResult.to_dict`
and read back by :meth:`BenchResult.from_dict` (the report stage reads those files, see
:mod:`mobileisp.report`). :func:`timing_stats` is the one place the statistics are computed.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Mapping, Sequence

from mobileisp.errors import MobileISPError

#: Artefact formats a result can describe.
FORMATS = ("tflite", "coreml", "onnx", "torch")
#: How much of the graph the accelerator took (TFLite delegates); None where the runtime does not say.
DELEGATIONS = ("full", "partial", "none")
#: Older spellings accepted by :meth:`BenchResult.from_dict`.
_ALIASES = {"compute_units": "accelerator"}


class BenchResultError(MobileISPError):
    """A benchmark result (or result file) that is incomplete or inconsistent."""


def timing_stats(samples_ms: Sequence[float]) -> dict[str, float]:
    """Latency statistics of per-run times.

    Args:
        samples_ms: wall-clock time of each timed run in milliseconds (warm-up runs excluded), >= 1 value.

    Returns:
        ``{"ms_min", "ms_median", "ms_p90", "ms_mean", "ms_std"}``, keyword-compatible with
        :class:`BenchResult`. ``ms_p90`` is the 90th percentile with linear interpolation between order
        statistics (numpy's default, ``statistics.quantiles(method="inclusive")``); ``ms_std`` is the
        population standard deviation (ddof=0), as TFLite's ``benchmark_model`` prints it.

    Raises:
        BenchResultError: no samples, or a sample that is negative, NaN or infinite.
    """
    values = [float(v) for v in samples_ms]
    if not values:
        raise BenchResultError("no timed runs to compute latency statistics from")
    bad = [v for v in values if not math.isfinite(v) or v < 0]
    if bad:
        raise BenchResultError(f"invalid run time {bad[0]!r} ms (times must be finite and >= 0)")
    ordered = sorted(values)
    return {
        "ms_min": ordered[0],
        "ms_median": statistics.median(ordered),
        "ms_p90": _percentile(ordered, 90.0),
        "ms_mean": statistics.fmean(ordered),
        "ms_std": statistics.pstdev(ordered),
    }


def _percentile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolation percentile of already sorted values (numpy ``method="linear"``)."""
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(kw_only=True)
class BenchResult:
    """One latency measurement of one artefact on one device/runtime/accelerator.

    Attributes:
        artefact: path of the measured file (``out/liteisp-mobile-int8.tflite``).
        model: registry name of the network (``liteisp-mobile``).
        format: one of :data:`FORMATS`.
        precision: ``fp32``, ``fp16``, ``int8``, ``w8a8``, ... as written by the exporter.
        runtime: what executed it: ``litert``, ``benchmark_model``, ``coreml``, ``onnxruntime``, ``torch``.
        device: ``host``, ``mac``, or the phone's marketing name (``iPhone 15 Pro``, ``Pixel 8``).
        warmup: untimed runs before the timed ones.
        runs: timed runs the statistics are over.
        ms_min, ms_median, ms_mean: latency per prediction in milliseconds.
        ms_p90: 90th percentile in ms; None when the runtime reports neither samples nor this statistic.
        ms_std: population standard deviation in ms; None when not reported.
        ms_p95: 95th percentile in ms where the runtime reports it (TFLite ``benchmark_model`` prints p5, median
            and p95 but not p90), else None.
        soc: system on chip (``Apple A17 Pro``, ``Google Tensor G3``), None if unknown.
        os_version: ``iOS 17.5.1``, ``macOS 14.5``, ``Android 14``, None if unknown.
        accelerator: where it ran: TFLite ``cpu``/``gpu``/``nnapi``/``qnn``; for Core ML the compute units
            (``all``, ``cpu``, ``cpu-gpu``, ``cpu-ne``). Read from ``compute_units`` too.
        threads: CPU threads the runtime was given, None if not applicable.
        input_shape: shape of the RAW input as measured, e.g. (1, 4, 256, 256) NCHW.
        load_ms: model load (and on-device compile) time in ms, None if not measured.
        samples_ms: the per-run times the statistics came from, None if the runtime only gave statistics.
        peak_memory_mb: peak memory in MB, None if not measured.
        parity_psnr_db: PSNR of this artefact's output against the fp32 PyTorch reference, None if not
            measured in the same run.
        delegation: one of :data:`DELEGATIONS` or None.
        notes: free text (compile time, runner details).
        timestamp: ISO 8601 UTC time of the measurement.
    """

    artefact: str
    model: str
    format: str
    precision: str
    runtime: str
    device: str
    warmup: int
    runs: int
    ms_min: float
    ms_median: float
    ms_mean: float
    ms_p90: float | None = None
    ms_std: float | None = None
    ms_p95: float | None = None
    soc: str | None = None
    os_version: str | None = None
    accelerator: str | None = None
    threads: int | None = None
    input_shape: tuple[int, ...] | None = None
    load_ms: float | None = None
    samples_ms: list[float] | None = None
    peak_memory_mb: float | None = None
    parity_psnr_db: float | None = None
    delegation: str | None = None
    notes: str = ""
    timestamp: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        self.artefact = str(self.artefact)
        if self.format not in FORMATS:
            raise BenchResultError(f"format {self.format!r} is not one of {', '.join(FORMATS)}")
        if self.delegation is not None and self.delegation not in DELEGATIONS:
            raise BenchResultError(f"delegation {self.delegation!r} is not one of {', '.join(DELEGATIONS)}")
        if int(self.warmup) < 0 or int(self.runs) < 1:
            raise BenchResultError(f"warmup must be >= 0 and runs >= 1 (got {self.warmup} and {self.runs})")
        self.warmup, self.runs = int(self.warmup), int(self.runs)
        for name in ("ms_min", "ms_median", "ms_mean", "ms_p90", "ms_p95", "ms_std", "load_ms", "peak_memory_mb"):
            value = getattr(self, name)
            if value is None:
                continue
            value = float(value)
            if not math.isfinite(value) or value < 0:
                raise BenchResultError(f"{name} = {value!r} must be finite and >= 0")
            setattr(self, name, value)
        order = [v for v in (self.ms_min, self.ms_median, self.ms_p90, self.ms_p95) if v is not None]
        if any(a > b * (1 + 1e-9) for a, b in zip(order, order[1:])):
            raise BenchResultError(
                f"inconsistent latency: min {self.ms_min} <= median {self.ms_median} <= p90 {self.ms_p90} "
                f"<= p95 {self.ms_p95} does not hold"
            )
        if self.input_shape is not None:
            self.input_shape = tuple(int(d) for d in self.input_shape)
        if self.samples_ms is not None:
            self.samples_ms = [float(v) for v in self.samples_ms]
            if len(self.samples_ms) != self.runs:
                raise BenchResultError(f"{len(self.samples_ms)} per-run times for runs = {self.runs}")
        if self.threads is not None:
            self.threads = int(self.threads)
        if self.parity_psnr_db is not None:
            self.parity_psnr_db = float(self.parity_psnr_db)

    @classmethod
    def from_samples(cls, samples_ms: Sequence[float], *, warmup: int, **fields: Any) -> "BenchResult":
        """Build a result from per-run times: ``runs``, the statistics and ``samples_ms`` are filled in.

        Args:
            samples_ms: milliseconds of each timed run (see :func:`timing_stats`).
            warmup: number of untimed runs that preceded them.
            **fields: every other :class:`BenchResult` field (artefact, model, format, ...).
        """
        samples = [float(v) for v in samples_ms]
        return cls(warmup=warmup, runs=len(samples), samples_ms=samples, **timing_stats(samples), **fields)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        d = dataclasses.asdict(self)
        if d["input_shape"] is not None:
            d["input_shape"] = list(d["input_shape"])
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "BenchResult":
        """Inverse of :meth:`to_dict`. Unknown keys are ignored (files from newer versions still load).

        Raises:
            BenchResultError: ``d`` is not a mapping, lacks a required field, or holds invalid values.
        """
        if not isinstance(d, Mapping):
            raise BenchResultError(f"a benchmark result must be a JSON object, not {type(d).__name__}")
        d = {_ALIASES.get(k, k): v for k, v in d.items()}
        names = {f.name for f in dataclasses.fields(cls)}
        required = [
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if d.get(k) is None]
        if missing:
            raise BenchResultError(f"benchmark result lacks {', '.join(missing)}")
        try:
            return cls(**{k: v for k, v in d.items() if k in names})
        except (TypeError, ValueError) as e:
            raise BenchResultError(f"benchmark result has an invalid value: {e}") from None
