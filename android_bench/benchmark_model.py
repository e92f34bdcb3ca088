"""The TFLite ``benchmark_model`` tool: command builder and output parser.

:func:`build_command` turns :class:`BenchmarkOptions` into the argument list run on the phone
(``env K=V ... taskset MASK /data/local/tmp/benchmark_model --graph=... ...``); the adb layer quotes each
argument for the device shell. :func:`parse_output` reads the tool's log (stdout and stderr merged) into a
:class:`BenchmarkOutput`; :func:`failure_line` names the cause of a non-zero exit in one line and
:func:`supported_flags` lists what a given build accepts (``benchmark_model --help``).

Formats read (all values the tool prints in microseconds unless said otherwise):

- ``interpreter``: current Interpreter tool, ``Inference timings in us: Init: …, First inference: …,
  Warmup (avg): …, Inference (avg): …`` with ``count=… first=… … p5=… median=… p95=…`` stat lines and
  ``Memory footprint delta from the start of the tool (MB): init=… overall=…``;
- ``interpreter-old``: the same timing line with ``Peak memory footprint (MB): init=… overall=…`` or stat lines
  without percentiles (builds before ``StatWithPercentiles``);
- ``legacy``: ``Average inference timings in us: Warmup: …, Init: …, Inference: …`` (or ``no stats: …``);
- ``litert``: the LiteRT CompiledModel tool's ``========== BENCHMARK RESULTS ==========`` block, in ms.

Lines may carry ``INFO: ``/``ERROR: ``/``WARNING: ``/``VERBOSE: `` prefixes, LiteRT's ``[file.h:81] `` source
tag, Android logcat prefixes (``05-31 10:38:42.583 22206 22206 I tflite  : ``) and ``\\r``.
"""

from __future__ import annotations

import dataclasses
import math
import re
import signal
from dataclasses import dataclass, field
from typing import Any, Sequence

from mobileisp.errors import MobileISPError


class BenchmarkOutputError(MobileISPError):
    """benchmark_model output that is unparsable or incomplete (no timing result)."""


class BenchmarkFailedError(MobileISPError):
    """benchmark_model reported a failure; the message (and :attr:`line`) is the decisive error line."""

    def __init__(self, line: str):
        super().__init__(line)
        self.line = str(self)


class BenchmarkOptionsError(MobileISPError):
    """A benchmark_model option that the tool would reject or misread."""


# --------------------------------------------------------------------------------------------- parsing

_NUM = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_LOGCAT = re.compile(
    r"^(?:\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+)?[VDIWEF]\s+[\w.-]+\s*:\s?(?=\S|$)")
_LEVEL = re.compile(r"^(?:INFO|ERROR|WARNING|WARN|VERBOSE|DEBUG|FATAL): ?")
_SOURCE_TAG = re.compile(r"^\[[^\]\s]+:\d+\]\s*")

_TIMINGS = re.compile(
    rf"Inference timings in us: Init: (?P<init>{_NUM}), First inference: (?P<first>{_NUM}), "
    rf"Warmup \(avg\): (?P<warm>{_NUM}), Inference \(avg\): (?P<avg>{_NUM})")
_LEGACY = re.compile(
    rf"Average inference timings in us: Warmup: (?P<warm>{_NUM}), Init: (?P<init>{_NUM}), "
    rf"(?:Inference|no stats): (?P<avg>{_NUM})")
_LITERT_HEADER = "BENCHMARK RESULTS"
_LITERT = {
    "init": re.compile(rf"^Model initialization:\s*(?P<v>{_NUM}) ms"),
    "first": re.compile(rf"^Warmup \(first\):\s*(?P<v>{_NUM}) ms"),
    "warm": re.compile(rf"^Warmup \(avg\):\s*(?P<v>{_NUM}) ms"),
    "avg": re.compile(rf"^Inference \(avg\):\s*(?P<v>{_NUM}) ms"),
    "mem_init": re.compile(rf"^Init footprint:\s*(?P<v>{_NUM}) MB"),
    "mem_overall": re.compile(rf"^Overall footprint:\s*(?P<v>{_NUM}) MB"),
    "peak": re.compile(rf"^Peak memory(?: usage)?:\s*(?P<v>{_NUM}) MB"),
}
_MODEL_SIZE = re.compile(rf"The input model file size \(MB\): (?P<v>{_NUM})")
_SESSION = re.compile(rf"Initialized session in (?P<v>{_NUM}) ?ms")
_MEM_DELTA = re.compile(
    rf"Memory footprint delta from the start of the tool \(MB\): init=(?P<init>{_NUM}) overall=(?P<all>{_NUM})")
_MEM_OLD = re.compile(rf"^Peak memory footprint \(MB\): init=(?P<init>{_NUM}) overall=(?P<all>{_NUM})")
_MEM_PEAK = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: (?P<v>{_NUM})")
_RUN_HEADER = re.compile(r"^Running benchmark for at least \d+ iterations")
_STAT_TOKEN = re.compile(rf"^(?P<k>[a-z0-9]+)=(?P<v>{_NUM})(?P<same>\(all_same\))?$")
_NUM_THREADS = re.compile(r"^Num threads: \[(?P<v>-?\d+)\]")
_GRAPH = re.compile(r"^Graph: \[(?P<v>.*)\]$")
_FULL = re.compile(r"Explicitly applied (?P<n>\S+) delegate, and the model graph will be completely executed")
_PARTIAL = re.compile(
    r"Explicitly applied (?P<n>\S+) delegate, and the model graph will be partially executed by the "
    r"delegate w/ (?P<k>\d+) delegate kernels")
_NONE = re.compile(r"Though (?P<n>\S+) delegate is explicitly applied, the model graph will not be executed")
_XNNPACK = re.compile(
    r"Replacing (?P<r>\d+)(?: out of (?P<t>\d+))? node\(s\) with delegate \(TfLiteXNNPackDelegate\) node, "
    r"yielding (?P<p>\d+) partitions")

# Decisive failure lines, most specific first: the first pattern that matches names the failure.
_FAILURES = (
    re.compile(r"Disallowed CPU fallback detected\."),
    re.compile(r"The size of .+ is \d+ bytes\. It should be \d+ bytes\."),
    re.compile(r"Failed to apply \S+ delegate"),
    re.compile(r"Failed to (?:mmap|load|read) model|Could not (?:open|mmap) '?.+|"
               r"Failed to construct interpreter|Failed to allocate tensors"),
    re.compile(r"Benchmarking failed\."),
)
_ERROR_PREFIX = re.compile(r"^(?:ERROR|FATAL): |^(?:\d\d-\d\d\s+\S+\s+\d+\s+\d+\s+)?[EF]\s+[\w.-]+\s*: ")


def _clean(line: str) -> str:
    """A log line without its logcat / severity / LiteRT source-tag prefixes."""
    line = line.strip()
    for pattern in (_LOGCAT, _LEVEL, _SOURCE_TAG):
        line = pattern.sub("", line, count=1).strip()
    return line


def _lines(text: str) -> list[tuple[str, str]]:
    """(raw, cleaned) pairs of the non-empty lines of a log; \\r\\n, lone \\r and \\n all end a line."""
    out = []
    for raw in re.split(r"\r\n|\r|\n", text):
        cleaned = _clean(raw)
        if cleaned:
            out.append((raw.strip(), cleaned))
    return out


@dataclass
class RunStats:
    """One ``count=… first=… curr=… min=… max=… avg=… std=… [p5=… median=… p95=…]`` line, microseconds.

    ``count=N curr=X(all same)`` (every value equal) gives first=min=max=avg=X and std=0. ``first_us`` is
    None only for very old builds that print ``curr=… count=…`` without ``first``.
    """

    count: int
    first_us: float | None
    curr_us: float
    min_us: float
    max_us: float
    avg_us: float
    std_us: float | None = None
    p5_us: float | None = None
    median_us: float | None = None
    p95_us: float | None = None

    @classmethod
    def parse(cls, line: str) -> "RunStats | None":
        """The stats of a cleaned stat line; None for ``count=0`` or a line that is not a stat line."""
        values: dict[str, float] = {}
        all_same = False
        for token in line.replace("(all same)", "(all_same)").split():
            m = _STAT_TOKEN.match(token)
            if not m:
                return None
            values[m["k"]] = float(m["v"])
            all_same = all_same or bool(m["same"])
        if "count" not in values or "curr" not in values or values["count"] < 1:
            return None
        curr = values["curr"]
        if all_same or "min" not in values:  # the all-same form prints count and curr only
            return cls(int(values["count"]), curr, curr, curr, curr, curr, 0.0,
                       values.get("p5"), values.get("median"), values.get("p95"))
        if not {"max", "avg"} <= values.keys():
            return None
        return cls(int(values["count"]), values.get("first"), curr, values["min"], values["max"],
                   values["avg"], values.get("std"), values.get("p5"), values.get("median"), values.get("p95"))


@dataclass
class DelegateStatus:
    """What an explicitly applied delegate took: ``delegation`` "full", "partial" or "none".

    ``kernels`` is the delegate-kernel count the tool prints for partial delegation (1 for full, 0 for none).
    """

    name: str
    delegation: str
    kernels: int | None


@dataclass
class BenchmarkOutput:
    """A successful benchmark_model run. Times in ms (``*_ms``), stats in µs (:class:`RunStats`), memory in MB.

    ``xnnpack`` is (nodes replaced, nodes in the graph, partitions) from XNNPACK's own log line; the middle
    value is None on builds that print ``Replacing N node(s)`` without ``out of``.
    """

    variant: str
    avg_ms: float
    model_size_mb: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup_avg_ms: float | None = None
    warmup: RunStats | None = None
    runs: RunStats | None = None
    memory_init_mb: float | None = None
    memory_overall_mb: float | None = None
    peak_memory_mb: float | None = None
    delegates: list[DelegateStatus] = field(default_factory=list)
    xnnpack: tuple[int, int | None, int] | None = None
    num_threads: int | None = None
    graph: str | None = None

    def delegation(self) -> str | None:
        """"full"/"partial"/"none" over the explicitly applied delegates; None when none was applied."""
        kinds = {d.delegation for d in self.delegates}
        if not kinds:
            return None
        return kinds.pop() if len(kinds) == 1 else "partial"

    def _stat_ms(self, name: str) -> float | None:
        value = getattr(self.runs, name) if self.runs is not None else None
        return None if value is None else value / 1000.0

    @property
    def median_ms(self) -> float | None:
        """Median of the timed runs (ms); None when the build prints no percentiles."""
        return self._stat_ms("median_us")

    @property
    def p5_ms(self) -> float | None:
        return self._stat_ms("p5_us")

    @property
    def p95_ms(self) -> float | None:
        """95th percentile of the timed runs (ms): the closest the tool gets to a p90."""
        return self._stat_ms("p95_us")

    @property
    def min_ms(self) -> float | None:
        return self._stat_ms("min_us")

    @property
    def max_ms(self) -> float | None:
        return self._stat_ms("max_us")

    @property
    def std_ms(self) -> float | None:
        return self._stat_ms("std_us")

    @property
    def num_runs(self) -> int | None:
        return None if self.runs is None else self.runs.count

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: every field plus ``delegation`` and the ms accessors."""
        d = dataclasses.asdict(self)
        d["xnnpack"] = list(self.xnnpack) if self.xnnpack is not None else None
        d["delegation"] = self.delegation()
        for name in ("median_ms", "p5_ms", "p95_ms", "min_ms", "max_ms", "std_ms", "num_runs"):
            d[name] = getattr(self, name)
        return d


def find_failure(text: str) -> str | None:
    """The decisive failure line of a benchmark_model log (prefixes removed), or None if it reports none.

    ``Benchmarking failed.`` alone is generic: the first other ERROR line before it is preferred.
    """
    lines = _lines(text)
    for pattern in _FAILURES[:-1]:
        for _, cleaned in lines:
            if pattern.search(cleaned):
                return cleaned
    for i, (_, cleaned) in enumerate(lines):
        if _FAILURES[-1].search(cleaned):
            for raw, earlier in lines[:i]:
                if _ERROR_PREFIX.match(raw):
                    return earlier
            return cleaned
    return None


def parse_delegates(text: str) -> tuple[list[DelegateStatus], tuple[int, int | None, int] | None]:
    """Delegation status lines and the first XNNPACK ``Replacing …`` line of a log."""
    delegates: list[DelegateStatus] = []
    xnnpack = None
    for _, line in _lines(text):
        if m := _PARTIAL.search(line):
            delegates.append(DelegateStatus(m["n"], "partial", int(m["k"])))
        elif m := _FULL.search(line):
            delegates.append(DelegateStatus(m["n"], "full", 1))
        elif m := _NONE.search(line):
            delegates.append(DelegateStatus(m["n"], "none", 0))
        elif (m := _XNNPACK.search(line)) and xnnpack is None:
            xnnpack = (int(m["r"]), int(m["t"]) if m["t"] else None, int(m["p"]))
    return delegates, xnnpack


def _run_stats(lines: list[str]) -> tuple[RunStats | None, RunStats | None]:
    """(warmup, timed runs): the stat line after each ``Running benchmark for at least`` header.

    Logs trimmed of those headers: two stat lines are warmup then runs, a single one is the runs.
    """
    after_header: list[RunStats | None] = []
    loose: list[RunStats] = []
    waiting = False
    for line in lines:
        if _RUN_HEADER.match(line):
            if waiting:
                after_header.append(None)
            waiting = True
            continue
        if line.startswith("count="):
            stats = RunStats.parse(line)
            if waiting:
                after_header.append(stats)
                waiting = False
            elif stats is not None:
                loose.append(stats)
    if waiting:
        after_header.append(None)
    if after_header:
        warm = after_header[0] if len(after_header) >= 2 else None
        return warm, after_header[-1] if len(after_header) >= 2 else after_header[0]
    if len(loose) >= 2:
        return loose[0], loose[1]
    return None, (loose[0] if loose else None)


def parse_output(text: str) -> BenchmarkOutput:
    """Parse a benchmark_model log (stdout and stderr merged) into a :class:`BenchmarkOutput`.

    Raises:
        BenchmarkFailedError: the log reports a failure (``Benchmarking failed.``, ``Disallowed CPU fallback
            detected.``, an input file of the wrong size, ``Failed to apply … delegate``, a model that does not
            load); the message is the decisive line.
        BenchmarkOutputError: no timing result in the log (truncated, not benchmark_model output, empty).
    """
    failure = find_failure(text)
    if failure is not None:
        raise BenchmarkFailedError(failure)
    lines = [cleaned for _, cleaned in _lines(text)]
    if not lines:
        raise BenchmarkOutputError("benchmark_model output is empty: no 'Inference timings in us' line")

    def first(pattern: re.Pattern[str]) -> re.Match[str] | None:
        for line in lines:
            if m := pattern.search(line):
                return m
        return None

    warmup, runs = _run_stats(lines)
    values: dict[str, Any] = {"warmup": warmup, "runs": runs}
    if m := first(_MODEL_SIZE):
        values["model_size_mb"] = float(m["v"])

    if any(_LITERT_HEADER in line and line.startswith("=") for line in lines):
        litert = {key: first(pattern) for key, pattern in _LITERT.items()}
        if litert["avg"] is None:
            raise BenchmarkOutputError(
                "benchmark_model (LiteRT) output has a BENCHMARK RESULTS block without an 'Inference (avg)' line")
        get = {key: (float(m["v"]) if m else None) for key, m in litert.items()}
        values.update(variant="litert", avg_ms=get["avg"], init_ms=get["init"], first_ms=get["first"],
                      warmup_avg_ms=get["warm"], memory_init_mb=get["mem_init"],
                      memory_overall_mb=get["mem_overall"], peak_memory_mb=get["peak"])
    elif m := first(_TIMINGS):
        old = first(_MEM_OLD) is not None or (runs is not None and runs.median_us is None)
        values.update(variant="interpreter-old" if old else "interpreter", avg_ms=float(m["avg"]) / 1000.0,
                      init_ms=float(m["init"]) / 1000.0, first_ms=float(m["first"]) / 1000.0,
                      warmup_avg_ms=float(m["warm"]) / 1000.0)
    elif m := first(_LEGACY):
        values.update(variant="legacy", avg_ms=float(m["avg"]) / 1000.0, init_ms=float(m["init"]) / 1000.0,
                      warmup_avg_ms=float(m["warm"]) / 1000.0,
                      first_ms=warmup.first_us / 1000.0 if warmup and warmup.first_us is not None else None)
    else:
        raise BenchmarkOutputError(
            "benchmark_model output has no timing result ('Inference timings in us' line missing); "
            f"last line: {lines[-1][:200]!r}")

    if values.get("init_ms") is None and (m := first(_SESSION)):
        values["init_ms"] = float(m["v"])
    if values["variant"] != "litert":
        if m := first(_MEM_DELTA) or first(_MEM_OLD):
            values["memory_init_mb"], values["memory_overall_mb"] = float(m["init"]), float(m["all"])
        if m := first(_MEM_PEAK):
            values["peak_memory_mb"] = float(m["v"])
    if not math.isfinite(values["avg_ms"]) or values["avg_ms"] < 0:
        raise BenchmarkOutputError(f"benchmark_model reported an invalid average time: {values['avg_ms']} ms")
    values["delegates"], values["xnnpack"] = parse_delegates(text)
    if m := first(_NUM_THREADS):
        values["num_threads"] = int(m["v"])
    if m := first(_GRAPH):
        values["graph"] = m["v"]
    return BenchmarkOutput(**values)


def failure_line(text: str, returncode: int) -> str:
    """Best one-line cause for a benchmark_model run that exited with ``returncode`` != 0.

    The decisive failure line or first ERROR line of the log; else the signal for 128+N (or a negative
    Python returncode -N), ``binary not found`` for 127, ``not executable`` for 126; else the last
    non-empty output line.
    """
    found = find_failure(text)
    if found is not None:
        return found
    lines = _lines(text)
    for raw, cleaned in lines:
        if _ERROR_PREFIX.match(raw):
            return cleaned
    last = lines[-1][0] if lines else ""
    signum = returncode - 128 if returncode > 128 else (-returncode if returncode < 0 else 0)
    if signum:
        try:
            name = signal.Signals(signum).name
        except ValueError:
            name = f"signal {signum}"
        return f"benchmark_model crashed with {name} (exit {returncode})"
    if returncode == 127:
        return "benchmark_model binary not found (exit 127)" + (f": {last}" if last else "")
    if returncode == 126:
        return "benchmark_model binary is not executable (exit 126)" + (f": {last}" if last else "")
    return last or f"benchmark_model exited with status {returncode} and printed nothing"


_FLAG = re.compile(r"(?<![\w-])--([A-Za-z0-9_]+)=")


def supported_flags(help_text: str) -> set[str]:
    """Flag names (without ``--``) listed by ``benchmark_model --help``, e.g. ``{"graph", "num_threads", …}``.

    Older builds lack ``output_filepath``; the runner uses this to refuse on-device parity with them.
    """
    return set(_FLAG.findall(help_text))


# --------------------------------------------------------------------------------------- command builder

_HEX_MASK = re.compile(r"^[0-9a-fA-F]+$")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_FLAG_ARG = re.compile(r"^--([A-Za-z0-9_]+)=")


@dataclass
class BenchmarkOptions:
    """What one benchmark_model run does. ``delegate_flags`` are full ``--name=value`` arguments.

    ``inputs`` are (tensor name, NHWC shape, device path of the raw input bytes) in interpreter input order.
    """

    graph: str
    num_threads: int
    warmup_runs: int = 1
    warmup_min_secs: float = 0.5
    num_runs: int = 50
    min_secs: float = 1.0
    max_secs: float = 150.0
    run_delay: float | None = None
    delegate_flags: Sequence[str] = ()
    inputs: Sequence[tuple[str, tuple[int, ...], str]] = ()
    output_filepath: str | None = None
    require_full_delegation: bool = False
    report_peak_memory: bool = False
    cpu_mask: str | None = None
    env: Sequence[tuple[str, str]] = ()


def _int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BenchmarkOptionsError(f"benchmark_model option {name} must be an integer >= {minimum}, got {value!r}")
    return value


def _secs(name: str, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise BenchmarkOptionsError(f"benchmark_model option {name} must be a finite number >= 0, got {value!r}")
    return f"{float(value):g}"


def _text(name: str, value: Any, forbidden: str = "") -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\n\r\0" + forbidden):
        shown = ", ".join(repr(c) for c in forbidden) or "none"
        raise BenchmarkOptionsError(
            f"benchmark_model option {name} must be non-empty text without newlines (forbidden: {shown}), "
            f"got {value!r}")
    return value


def _input_flags(inputs: Sequence[tuple[str, tuple[int, ...], str]]) -> list[str]:
    names, shapes, files = [], [], []
    for item in inputs:
        if len(item) != 3:
            raise BenchmarkOptionsError(f"benchmark_model input must be (name, shape, path), got {item!r}")
        name, shape, path = item
        # The tool splits --input_layer on ',' (no escape exists) and value files on ',' then ':'.
        name = _text("input name", name, ",")
        path = _text(f"input file for {name!r}", path, ",:")
        if not shape or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in shape):
            raise BenchmarkOptionsError(
                f"benchmark_model input {name!r} needs a shape of positive integers (no -1), got {shape!r}")
        names.append(name)
        shapes.append(",".join(str(d) for d in shape))
        files.append(f"{name.replace(':', '::')}:{path}")
    return [f"--input_layer={','.join(names)}", f"--input_layer_shape={':'.join(shapes)}",
            f"--input_layer_value_files={','.join(files)}"]


def build_command(binary: str, options: BenchmarkOptions) -> list[str]:
    """The argument list of one run: ``[env K=V …] [taskset MASK] BINARY --graph=… …``.

    Every element is one argument (the adb layer quotes each for the device shell; never join unquoted).

    Raises:
        BenchmarkOptionsError: a value the tool would reject or misparse (threads < 1, runs < 1, a CPU mask
            that is not hex, a ',' in an input name, a ':' or ',' in an input file path, a repeated flag …).
    """
    o = options
    binary = _text("binary", binary)
    args = [
        f"--graph={_text('graph', o.graph)}",
        f"--num_threads={_int('num_threads', o.num_threads, 1)}",
        f"--warmup_runs={_int('warmup_runs', o.warmup_runs, 0)}",
        f"--warmup_min_secs={_secs('warmup_min_secs', o.warmup_min_secs)}",
        f"--num_runs={_int('num_runs', o.num_runs, 1)}",
        f"--min_secs={_secs('min_secs', o.min_secs)}",
        f"--max_secs={_secs('max_secs', o.max_secs)}",
    ]
    if o.max_secs <= 0:
        raise BenchmarkOptionsError(f"benchmark_model option max_secs must be > 0, got {o.max_secs!r}")
    if o.run_delay is not None:
        args.append(f"--run_delay={_secs('run_delay', o.run_delay)}")
    if o.inputs:
        args += _input_flags(o.inputs)
    for flag in o.delegate_flags:
        if not isinstance(flag, str) or not _FLAG_ARG.match(flag) or any(c in flag for c in "\n\r\0"):
            raise BenchmarkOptionsError(f"delegate flag must look like --name=value, got {flag!r}")
        args.append(flag)
    if o.require_full_delegation:
        args.append("--require_full_delegation=true")
    if o.report_peak_memory:
        args.append("--report_peak_memory_footprint=true")
    if o.output_filepath is not None:
        args.append(f"--output_filepath={_text('output_filepath', o.output_filepath)}")
    seen: set[str] = set()
    for arg in args:
        name = _FLAG_ARG.match(arg)[1]  # type: ignore[index]
        if name in seen:
            raise BenchmarkOptionsError(f"benchmark_model flag --{name} given twice (check the delegate flags)")
        seen.add(name)

    prefix: list[str] = []
    if o.env:
        prefix.append("env")
        for key, value in o.env:
            if not isinstance(key, str) or not _ENV_KEY.match(key):
                raise BenchmarkOptionsError(f"environment variable name {key!r} is not a valid shell name")
            if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
                raise BenchmarkOptionsError(f"environment variable {key} must be one line of text, got {value!r}")
            prefix.append(f"{key}={value}")
    if o.cpu_mask is not None:
        if not isinstance(o.cpu_mask, str) or not _HEX_MASK.match(o.cpu_mask) or int(o.cpu_mask, 16) == 0:
            raise BenchmarkOptionsError(
                f"CPU mask must be non-zero hexadecimal digits for taskset (e.g. 'f0'), got {o.cpu_mask!r}")
        prefix += ["taskset", o.cpu_mask]
    return prefix + [binary] + args


__all__ = [
    "BenchmarkFailedError", "BenchmarkOptions", "BenchmarkOptionsError", "BenchmarkOutput",
    "BenchmarkOutputError", "DelegateStatus", "RunStats", "build_command", "failure_line", "find_failure",
    "parse_delegates", "parse_output", "supported_flags",
]
