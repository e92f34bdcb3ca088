"""Emulation of TFLite's ``benchmark_model`` (Interpreter tool) as run on a phone through ``adb shell``.

Called by ``fake_adb.py`` when the device shell executes a file carrying the fake binary's marker. The model
really runs, on the host, through the LiteRT interpreter (``ai_edge_litert``); delegates are emulated from
the phone's ``delegates`` table (their log lines and failures), the arithmetic always runs on the host CPU.

What follows the real tool (LiteRT ``tflite/tools/benchmark/benchmark_model.cc``,
``benchmark_tflite_model.cc``, ``tflite/tools/logging.h``, ``tflite/tools/delegates/*_provider.cc``,
``xla/tsl/util/stats_calculator.h``):

- Output streams: the tool's own ``TFLITE_LOG(INFO|WARN)`` lines go to **stdout** with ``INFO: ``/``WARN: ``
  prefixes, ``ERROR:``/``FATAL:`` to stderr; the TFLite runtime's lines (``Initialized TensorFlow Lite
  runtime.``, ``Created TensorFlow Lite XNNPACK delegate for CPU.``, ``VERBOSE: Replacing ...``, GPU
  delegate lines) go to stderr. ``FakePhone.benchmark_log="stderr"`` emulates pre-2020 builds that wrote
  everything to stderr.
- Flags are ``--name=value``; unknown ones only give ``WARN: Unconsumed cmdline flags: ...``.
- Parameters are logged only when set on the command line, except ``Graph`` and ``Signature to run``.
- The run loop is ``BenchmarkModel::Run``: runs while ``run < N or elapsed < min_secs`` and stops once
  ``elapsed > max_secs``; warmup uses ``warmup_runs``/``warmup_min_secs``. Each run's time is integer us.
- Stat lines are ``StatWithPercentiles::OutputToStream``: integers except ``avg`` (C++ ``ostream`` default,
  i.e. ``%g``), ``std`` = truncated sqrt of the truncated population variance, percentile p =
  ``sorted[n * p // 100]``; ``count=N curr=X(all same)`` when all values are equal; each stat line is
  followed by an empty line (``std::endl`` inside the log record).
- ``TFLITE_LOG(FATAL)`` aborts: input value file size mismatch, missing input layer name -> SIGABRT (134).
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Callable, TextIO

MARKER_PREFIX = b"\x7fELF fake-benchmark_model"
ABORT = 134
SEGFAULT = 139

# name -> type, for every flag the real tool registers (BenchmarkModel, BenchmarkTfLiteModel, delegate providers).
FLAGS: dict[str, type] = {
    "num_runs": int, "min_secs": float, "max_secs": float, "run_delay": float, "run_frequency": float,
    "num_threads": int, "use_caching": bool, "benchmark_name": str, "output_prefix": str, "warmup_runs": int,
    "warmup_min_secs": float, "verbose": bool, "dry_run": bool, "report_peak_memory_footprint": bool,
    "memory_footprint_check_interval_ms": int, "gpu_invoke_loop_times": int,
    "graph": str, "input_layer": str, "input_layer_shape": str, "input_layer_value_range": str,
    "input_layer_value_files": str, "allow_fp16": bool, "require_full_delegation": bool,
    "enable_op_profiling": bool, "op_profiling_output_mode": str, "op_profiling_output_file": str,
    "max_profiling_buffer_entries": int, "allow_dynamic_profiling_buffer_increase": bool,
    "profiling_output_csv_file": str, "export_model_runtime_info": bool, "model_runtime_info_output_file": str,
    "print_preinvoke_state": bool, "print_postinvoke_state": bool, "release_dynamic_tensors": bool,
    "optimize_memory_for_large_tensors": int, "disable_delegate_clustering": bool,
    "enable_builtin_cast_constant_cache": bool, "output_filepath": str, "output_proto_filepath": str,
    "tensor_name_display_length": int, "tensor_type_display_length": int, "alloc_type_display_length": int,
    "signature_to_run_for": str, "list_signatures": bool, "result_file_path": str, "help": bool,
    # default execution provider
    "max_delegated_partitions": int, "min_nodes_per_partition": int, "delegate_serialize_dir": str,
    "delegate_serialize_token": str, "first_delegate_node_index": int, "last_delegate_node_index": int,
    # GPU
    "use_gpu": bool, "gpu_precision_loss_allowed": bool, "gpu_experimental_enable_quant": bool,
    "gpu_inference_for_sustained_speed": bool, "gpu_backend": str, "gpu_wait_type": str,
    # NNAPI
    "use_nnapi": bool, "nnapi_execution_preference": str, "nnapi_execution_priority": str,
    "nnapi_accelerator_name": str, "disable_nnapi_cpu": bool, "nnapi_allow_fp16": bool,
    "nnapi_allow_dynamic_dimensions": bool, "nnapi_use_burst_mode": bool, "nnapi_support_library_path": str,
    # Hexagon, XNNPACK, external / stable delegates
    "use_hexagon": bool, "hexagon_lib_path": str, "hexagon_profiling": bool,
    "use_xnnpack": bool, "xnnpack_force_fp16": bool, "xnnpack_weight_cache_file_path": str,
    "external_delegate_path": str, "external_delegate_options": str, "stable_delegate_loader_settings": str,
}
DEFAULTS: dict[str, Any] = {
    "num_runs": 50, "min_secs": 1.0, "max_secs": 150.0, "run_delay": -1.0, "run_frequency": -1.0,
    "num_threads": -1, "warmup_runs": 1, "warmup_min_secs": 0.5, "memory_footprint_check_interval_ms": 50,
    "gpu_precision_loss_allowed": True, "gpu_experimental_enable_quant": True, "disable_nnapi_cpu": True,
}
# (flag, label) in the order LogParams prints them; delegate providers last, in registration order.
LOG_ORDER: list[tuple[str, str]] = [
    ("num_runs", "Min num runs"), ("min_secs", "Min runs duration (seconds)"),
    ("max_secs", "Max runs duration (seconds)"), ("run_delay", "Inter-run delay (seconds)"),
    ("run_frequency", "Number of prorated runs per second"), ("num_threads", "Num threads"),
    ("use_caching", "Use caching"), ("benchmark_name", "Benchmark name"), ("output_prefix", "Output prefix"),
    ("warmup_runs", "Min warmup runs"), ("warmup_min_secs", "Min warmup runs duration (seconds)"),
    ("dry_run", "Run w/o invoking kernels"), ("report_peak_memory_footprint", "Report the peak memory footprint"),
    ("memory_footprint_check_interval_ms", "Memory footprint check interval (ms)"),
    ("graph", "Graph"), ("signature_to_run_for", "Signature to run"),
    ("list_signatures", "List signatures from the provided model"),
    ("input_layer", "Input layers"), ("input_layer_shape", "Input shapes"),
    ("input_layer_value_range", "Input value ranges"), ("input_layer_value_files", "Input value files"),
    ("allow_fp16", "Allow fp16"), ("require_full_delegation", "Require full delegation"),
    ("enable_op_profiling", "Enable op profiling"), ("output_filepath", "File path to export outputs layer to"),
    ("num_threads", "#threads used for CPU inference"),
    ("max_delegated_partitions", "Max number of delegated partitions"),
    ("min_nodes_per_partition", "Min nodes per partition"),
    ("use_gpu", "Use gpu"), ("gpu_precision_loss_allowed", "Allow lower precision in gpu"),
    ("gpu_experimental_enable_quant", "Enable running quant models in gpu"),
    ("gpu_inference_for_sustained_speed", "Prefer maximizing the throughput in gpu"),
    ("gpu_backend", "GPU backend"),
    ("use_nnapi", "Use NNAPI"), ("nnapi_execution_preference", "NNAPI execution preference"),
    ("nnapi_execution_priority", "Model execution priority in nnapi"),
    ("nnapi_accelerator_name", "NNAPI accelerator name"),
    ("use_xnnpack", "Use xnnpack"),
    ("external_delegate_path", "External delegate path"),
    ("external_delegate_options", "External delegate options"),
]
ALWAYS_LOGGED = {"graph", "signature_to_run_for"}
GPU_ONLY = {"gpu_precision_loss_allowed", "gpu_experimental_enable_quant", "gpu_inference_for_sustained_speed",
            "gpu_backend"}
QNN_LIBRARY = "libQnnTFLiteDelegate.so"
LIB_DIRS = ("/vendor/lib64", "/system/lib64", "/odm/lib64", "/vendor/lib64/egl")


class Aborted(Exception):
    """``TFLITE_LOG(FATAL)`` or ``TFLITE_TOOLS_CHECK``: the real tool calls ``std::abort()``."""


class Failed(Exception):
    """A step returned ``kTfLiteError``; main prints ``Benchmarking failed.`` and exits 1."""


def g(value: float) -> str:
    """C++ ``std::ostream << double`` with default flags (6 significant digits, like ``%g``)."""
    return "%g" % value


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float):
        return g(value)
    return str(value)


class Stat:
    """``tsl::StatWithPercentiles<int64_t>``."""

    def __init__(self) -> None:
        self.values: list[int] = []

    def add(self, v: int) -> None:
        self.values.append(int(v))

    @property
    def count(self) -> int:
        return len(self.values)

    def first(self) -> int:
        return self.values[0] if self.values else 0

    def avg(self) -> float:
        # quiet_NaN of int64 is 0, which the double then carries.
        return sum(self.values) / len(self.values) if self.values else 0.0

    def std(self) -> int:
        v = self.values
        if not v or min(v) == max(v):
            return 0
        variance = int(sum(x * x for x in v) / len(v) - self.avg() ** 2)  # ValueType variance() truncates
        return int(math.sqrt(variance)) if variance > 0 else 0

    def percentile(self, p: int) -> int:
        if not self.values:
            return 0
        s = sorted(self.values)
        return s[-1] if p == 100 else s[len(s) * p // 100]

    def line(self) -> str:
        v = self.values
        if not v:
            text = "count=0"
        elif min(v) == max(v):
            text = f"count={len(v)} curr={v[-1]}" + ("(all same)" if len(v) > 1 else "")
        else:
            text = (f"count={len(v)} first={v[0]} curr={v[-1]} min={min(v)} max={max(v)} "
                    f"avg={g(self.avg())} std={self.std()}")
        return text + f" p5={self.percentile(5)} median={self.percentile(50)} p95={self.percentile(95)}"


def _now_us() -> int:
    return time.perf_counter_ns() // 1000


def _rss_kb() -> int:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return 0


def _parse_bool(text: str) -> bool | None:
    return {"true": True, "1": True, "false": False, "0": False}.get(text)


def parse_flags(args: list[str]) -> tuple[dict[str, Any], dict[str, int], list[str], str | None]:
    """Returns (values set on the command line, their argv positions, unconsumed args, parse error)."""
    values: dict[str, Any] = {}
    positions: dict[str, int] = {}
    rest: list[str] = []
    for i, arg in enumerate(args):
        name, eq, text = arg[2:].partition("=") if arg.startswith("--") else ("", "", "")
        if not eq or name not in FLAGS:
            rest.append(arg)
            continue
        kind = FLAGS[name]
        try:
            value: Any = _parse_bool(text) if kind is bool else kind(text)
        except ValueError:
            value = None
        if value is None:
            return values, positions, rest, f"Failed to parse flag '{name}' against argv '{arg}'"
        values[name] = value
        positions[name] = i
    return values, positions, rest, None


class Tool:
    """One execution of the fake benchmark_model."""

    def __init__(self, argv: list[str], *, resolve: Callable[[str], Path], phone: dict[str, Any],
                 env: dict[str, str], out: TextIO, err: TextIO) -> None:
        self.argv, self.resolve, self.phone, self.env = argv, resolve, phone, env
        legacy = phone.get("benchmark_log") == "stderr"
        self.out = err if legacy else out
        self.err = err
        self.legacy = legacy
        self.record: dict[str, Any] = {"argv": list(argv), "delegate": None, "delegation": None,
                                       "warmup_us": [], "timed_us": [], "output_file": None}

    # ---------------------------------------------------------------------------------------------- logging
    def info(self, text: str) -> None:
        self.out.write(("" if self.legacy else "INFO: ") + text + "\n")

    def warn(self, text: str) -> None:
        self.out.write(("" if self.legacy else "WARN: ") + text + "\n")

    def error(self, text: str) -> None:
        self.err.write(("" if self.legacy else "ERROR: ") + text + "\n")

    def fatal(self, text: str) -> None:
        self.err.write(("" if self.legacy else "FATAL: ") + text + "\n")
        raise Aborted(text)

    def runtime(self, text: str, level: str = "INFO") -> None:
        """TFLite runtime minimal logging: always stderr with a severity prefix."""
        self.err.write(f"{level}: {text}\n")

    def get(self, name: str) -> Any:
        return self.values.get(name, DEFAULTS.get(name, FLAGS[name]()))

    # ------------------------------------------------------------------------------------------------- main
    def main(self) -> int:
        self.info("STARTING!")
        try:
            self.run()
        except _Crash:
            self.record["exit_code"] = SEGFAULT
            return SEGFAULT
        except Aborted:
            self.record["exit_code"] = ABORT
            return ABORT
        except Failed:
            self.error("Benchmarking failed.")
            self.record["exit_code"] = 1
            return 1
        self.record["exit_code"] = 0
        return 0

    def run(self) -> None:
        self.values, self.positions, rest, parse_error = parse_flags(self.argv[1:])
        self.record["threads"] = self.get("num_threads")
        if parse_error or self.get("help"):
            if parse_error:
                self.error(parse_error)
            self.error(f"usage: {self.argv[0]}\nFlags:\n" + "".join(
                f"\t--{n}={_format_value(DEFAULTS.get(n, t()))}\t{t.__name__}\toptional\n" for n, t in FLAGS.items()))
            raise Failed()
        if rest:
            self.warn("Unconsumed cmdline flags: " + " ".join(rest))
        self.validate()
        self.log_params()
        if self.phone.get("faults", {}).get("benchmark_garbage"):
            self.garbage()
            return
        import ai_edge_litert.interpreter  # noqa: F401  (loading the host runtime is not the phone's init time)

        start_kb = _rss_kb()
        graph = self.get("graph")
        host_graph = self.resolve(graph)
        model_size_mb = host_graph.stat().st_size / 1e6 if host_graph.is_file() else 0.0
        t0 = _now_us()
        self.init(host_graph)
        init_us = _now_us() - t0
        init_kb = _rss_kb() - start_kb
        if self.phone.get("faults", {}).get("benchmark_crash"):
            raise _Crash()
        if model_size_mb > 0:
            self.info(f"The input model file size (MB): {g(model_size_mb)}")
        else:
            self.warn("Failed to get the input model file size.")
        self.info(f"Initialized session in {g(init_us / 1e3)}ms.")
        self.prepare_inputs()
        if self.get("dry_run"):
            self.values.update(warmup_runs=0, warmup_min_secs=-1.0, num_runs=0, min_secs=-1.0)
        peak = [_rss_kb()]
        warmup = self.loop(self.get("warmup_runs"), self.get("warmup_min_secs"), peak)
        timed = self.loop(self.get("num_runs"), self.get("min_secs"), peak)
        overall_kb = _rss_kb() - start_kb
        self.record.update(warmup_us=warmup.values, timed_us=timed.values, avg=timed.avg(),
                           avg_text=g(timed.avg()), median=timed.percentile(50), std=timed.std(),
                           init_us=init_us, warmup_stat_line=warmup.line(), timed_stat_line=timed.line())
        self.info(f"Inference timings in us: Init: {init_us}, First inference: {warmup.first()}, "
                  f"Warmup (avg): {g(warmup.avg())}, Inference (avg): {g(timed.avg())}")
        self.info("Note: as the benchmark tool itself affects memory footprint, the following is only "
                  "APPROXIMATE to the actual memory footprint of the model at runtime. Take the information "
                  "at your discretion.")
        self.info(f"Memory footprint delta from the start of the tool (MB): init={g(init_kb / 1024.0)} "
                  f"overall={g(overall_kb / 1024.0)}")
        if self.get("report_peak_memory_footprint"):
            rss_mb = _rss_kb() // 1024
            self.info(f"Overall peak memory footprint (MB) via periodic monitoring: {g(max(peak) / 1024.0)}")
            self.info("Memory status at the end of exeution:")
            self.info(f"- VmRSS              : {rss_mb} MB")
            self.info(f"+ RssAnnon           : {rss_mb * 3 // 4} MB")
            self.info(f"+ RssFile + RssShmem : {rss_mb - rss_mb * 3 // 4} MB")
        self.save_outputs()

    # ------------------------------------------------------------------------------------------- validation
    def validate(self) -> None:
        if not self.get("graph"):
            self.error("Please specify the name of your TF Lite input file with --graph")
            raise Failed()
        names = [n for n in self.get("input_layer").split(",") if n] if self.get("input_layer") else []
        shapes = [s for s in self.get("input_layer_shape").split(":")] if self.get("input_layer_shape") else []
        if len(names) != len(shapes):
            self.error(f"The number of items in --input_layer_shape ({self.get('input_layer_shape')}, with "
                       f"{len(shapes)} items) must match the number of items in --input_layer "
                       f"({self.get('input_layer')}, with {len(names)} items). For example "
                       "--input_layer=input1,input2 --input_layer_shape=1,224,224,4:1,20")
            raise Failed()
        self.inputs: list[dict[str, Any]] = []
        for name, shape in zip(names, shapes):
            try:
                dims = [int(d) for d in shape.split(",")]
            except ValueError:
                self.fatal(f"Incorrect size string specified: {shape}")
            if -1 in dims:
                self.error("Any unknown sizes in the shapes (-1's) must be replaced with the size you want to "
                           "benchmark with.")
                raise Failed()
            self.inputs.append({"name": name, "shape": dims, "file": ""})
        files = self.get("input_layer_value_files")
        for item in files.split(",") if files else []:
            pair = _split_name_file(item)
            if pair is None:
                self.error(f"Wrong input value file item specified: {item}")
                self.error("1")
                raise Failed()
            match = [i for i in self.inputs if i["name"] == pair[0]]
            if not match:
                self.fatal(f"Cannot find the corresponding input_layer name({pair[0]}) in --input_layer as "
                           f"{self.get('input_layer')}")
            match[0]["file"] = pair[1]

    def log_params(self) -> None:
        seen: set[tuple[str, str]] = set()
        for name, label in LOG_ORDER:
            if name in GPU_ONLY and not self.get("use_gpu"):
                continue
            if name in self.values or name in ALWAYS_LOGGED:
                if (name, label) in seen:
                    continue
                seen.add((name, label))
                self.info(f"{label}: [{_format_value(self.get(name))}]")
            if name == "nnapi_accelerator_name" and self.get("use_nnapi") and "nnapi" in self.phone["delegates"]:
                accelerators = ",".join(self.phone.get("nnapi_accelerators") or ["nnapi-reference"])
                self.info(f"NNAPI accelerators available: [{accelerators}]")

    # ------------------------------------------------------------------------------------------------- init
    def init(self, host_graph: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        graph = self.get("graph")
        if not host_graph.is_file():
            self.runtime(f"Could not open '{graph}'.", "ERROR")
            self.error(f"Failed to load model {graph}")
            raise Failed()
        explicit_xnnpack = "use_xnnpack" in self.values
        resolver = OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES if explicit_xnnpack else OpResolverType.AUTO
        threads = self.get("num_threads")
        try:
            content = host_graph.read_bytes()
            if content[4:8] != b"TFL3":
                raise ValueError("not a TFLite flatbuffer")
            # -1 = "platform default" in the real tool; the host interpreter only takes >= 1 or None.
            self.interp = Interpreter(model_content=content, num_threads=threads if threads >= 1 else None,
                                      experimental_op_resolver_type=resolver)
        except (ValueError, RuntimeError):
            self.runtime("The model is not a valid Flatbuffer buffer", "ERROR")
            self.error(f"Failed to load model {graph}")
            raise Failed()
        self.info(f"Loaded model {graph}")
        self.runtime("Initialized TensorFlow Lite runtime.")
        try:
            self.ops = [op["op_name"] for op in self.interp._get_ops_details()]
        except (AttributeError, ValueError, RuntimeError):
            self.ops = ["UNKNOWN"]
        details = self.interp.get_input_details()
        if self.inputs and len(self.inputs) != len(details):
            self.fatal(f"Inputs mismatch: Model inputs #:{len(self.inputs)} expected: {len(details)}")
        for spec, detail in zip(self.inputs, details):
            if spec["name"] != detail["name"]:
                self.warn(f"Tensor # {detail['index']} is named {detail['name']} but flags call it {spec['name']}")
            if len(spec["shape"]) != len(detail["shape"]):
                self.error(f"Input tensor #{detail['index']} should have {len(detail['shape'])} dimensions!")
                raise Failed()
        for spec, detail in zip(self.inputs, details):
            if list(detail["shape"]) != spec["shape"]:
                self.interp.resize_tensor_input(detail["index"], spec["shape"])
        self.apply_delegates()
        try:
            self.interp.allocate_tensors()
        except (ValueError, RuntimeError):
            self.error("Failed to allocate tensors!")
            raise Failed()
        if self.record["delegate"] in (None, "xnnpack") and not explicit_xnnpack:
            n = self.num_nodes()
            self.runtime("Created TensorFlow Lite XNNPACK delegate for CPU.")
            self.runtime(f"Replacing {n} out of {n} node(s) with delegate (TfLiteXNNPackDelegate) node, "
                         "yielding 1 partitions for subgraph 0.", "VERBOSE")
            self.record["delegate"] = "xnnpack"

    def num_nodes(self) -> int:
        return len(self.ops)

    def apply_delegates(self) -> None:
        """Delegate providers in flag order (``GetPosition``); the compute stays on the host CPU."""
        requested = []
        if self.get("use_gpu"):
            requested.append(("gpu", self.positions["use_gpu"]))
        if self.get("use_nnapi"):
            requested.append(("nnapi", self.positions["use_nnapi"]))
        if self.get("use_xnnpack"):
            requested.append(("xnnpack", self.positions["use_xnnpack"]))
        if self.get("external_delegate_path"):
            requested.append(("external", self.positions["external_delegate_path"]))
        requested.sort(key=lambda kv: kv[1])
        created: list[tuple[str, str, str]] = []  # (provider name, kind, behaviour)
        delegates = self.phone.get("delegates", {})
        for kind, _ in requested:
            if kind == "gpu":
                self.runtime("Created TensorFlow Lite delegate for GPU.")
                created.append(("GPU", "gpu", delegates.get("gpu", "unavailable")))
            elif kind == "nnapi":
                if "nnapi" not in delegates:
                    self.warn("NNAPI acceleration is unsupported on this platform.")
                    continue
                name = self.get("nnapi_accelerator_name")
                available = self.phone.get("nnapi_accelerators") or ["nnapi-reference"]
                self.runtime("Created TensorFlow Lite delegate for NNAPI.")
                behaviour = delegates["nnapi"]
                if name and name not in available:
                    behaviour = f"bad-accelerator:{name}"
                created.append(("NNAPI", "nnapi", behaviour))
            elif kind == "xnnpack":
                self.runtime("Created TensorFlow Lite XNNPACK delegate for CPU.")
                created.append(("XNNPACK", "xnnpack", "full"))
            else:
                path = self.get("external_delegate_path")
                host = self._find_library(path)
                key = "qnn" if Path(path).name == QNN_LIBRARY else Path(path).name
                if host is None or key not in delegates:
                    self.runtime(f"Unable to load external delegate from : {path}")
                    continue
                created.append(("EXTERNAL", key, delegates[key]))
        if created:
            self.info(f"{created[0][0]} delegate created.")
        if len(created) >= 2:
            self.info(f"Going to apply {len(created)} delegates one after another.")
        if not created and self.get("require_full_delegation"):
            self.error("Disallowed CPU fallback detected.")
            raise Failed()
        n = self.num_nodes()
        for provider, kind, behaviour in created:
            if behaviour == "unavailable":
                self.runtime("Restored original execution plan after delegate application failure.", "ERROR")
                self.error(f"Failed to apply {provider} delegate.")
                raise Failed()
            if behaviour.startswith("bad-accelerator:"):
                self.runtime(f"Could not find the specified NNAPI accelerator: {behaviour.split(':', 1)[1]}. "
                             f"Must be one of: {{{','.join(self.phone.get('nnapi_accelerators') or [])}}}.", "ERROR")
                self.runtime("Restored original execution plan after delegate application failure.", "ERROR")
                self.error(f"Failed to apply {provider} delegate.")
                raise Failed()
            if behaviour == "partial" and n < 2:
                behaviour = "none"
            if self.record["delegate"] is None:
                self.record.update(delegate=kind, delegation=behaviour)
            self._delegate_lines(provider, behaviour, n)
            if self.get("require_full_delegation") and behaviour != "full":
                self.error("Disallowed CPU fallback detected.")
                raise Failed()
            if behaviour == "full":
                self.info(f"Explicitly applied {provider} delegate, and the model graph will be completely "
                          "executed by the delegate.")
            elif behaviour == "partial":
                self.info(f"Explicitly applied {provider} delegate, and the model graph will be partially "
                          "executed by the delegate w/ 1 delegate kernels.")
            else:
                self.info(f"Though {provider} delegate is explicitly applied, the model graph will not be "
                          "executed by the delegate.")

    def _delegate_lines(self, provider: str, behaviour: str, n: int) -> None:
        node = {"GPU": "TfLiteGpuDelegateV2", "NNAPI": "TfLiteNnapiDelegate",
                "XNNPACK": "TfLiteXNNPackDelegate"}.get(provider)
        if behaviour == "none":
            return
        taken = n if behaviour == "full" else n - 1
        if provider == "GPU":
            self.runtime("Loaded OpenCL library with dlopen.")
            if behaviour == "partial":
                self.runtime(f"Following operations are not supported by GPU delegate:\n"
                             f"{self.ops[-1]}: Operation is not supported.\n"
                             f"{taken} operations will run on the GPU, and the remaining {n - taken} operations "
                             "will run on the CPU.", "ERROR")
        if node:
            self.runtime(f"Replacing {taken} out of {n} node(s) with delegate ({node}) node, yielding 1 "
                         "partitions for subgraph 0.", "VERBOSE")
        if provider == "GPU":
            self.runtime("Initialized OpenCL-based API.")
            self.runtime("Created 1 GPU delegate kernels.")

    def _find_library(self, path: str) -> Path | None:
        """dlopen: an absolute path is taken as is, a bare name is searched in LD_LIBRARY_PATH and the lib dirs."""
        if "/" in path:
            host = self.resolve(path)
            return host if host.is_file() else None
        dirs = [d for d in self.env.get("LD_LIBRARY_PATH", "").split(":") if d] + list(LIB_DIRS)
        for d in dirs:
            host = self.resolve(d.rstrip("/") + "/" + path)
            if host.is_file():
                return host
        return None

    # --------------------------------------------------------------------------------------------- running
    def prepare_inputs(self) -> None:
        import numpy as np

        self.input_data = []
        rng = np.random.default_rng()
        for i, detail in enumerate(self.interp.get_input_details()):
            spec = self.inputs[i] if self.inputs else None
            nbytes = int(np.prod(detail["shape"])) * np.dtype(detail["dtype"]).itemsize
            if spec and spec["file"]:
                host = self.resolve(spec["file"])
                if not host.is_file():
                    self.fatal(f"Failed to read the input_layer_value_file:{spec['file']}")
                size = host.stat().st_size
                if size != nbytes:
                    self.fatal(f"The size of {spec['file']} is {size} bytes. It should be {nbytes} bytes.")
                data = np.frombuffer(host.read_bytes(), dtype=detail["dtype"]).reshape(detail["shape"])
            elif np.issubdtype(detail["dtype"], np.floating):
                data = rng.uniform(-0.5, 0.5, detail["shape"]).astype(detail["dtype"])
            else:
                info = np.iinfo(detail["dtype"])
                data = rng.integers(max(info.min, -127), min(info.max, 254), detail["shape"], endpoint=True)
                data = data.astype(detail["dtype"])
            self.input_data.append((detail["index"], data))

    def loop(self, min_runs: int, min_secs: float, peak: list[int]) -> Stat:
        max_secs = self.get("max_secs")
        self.info(f"Running benchmark for at least {min_runs} iterations and at least {g(min_secs)} seconds "
                  f"but terminate if exceeding {g(max_secs)} seconds.")
        stat = Stat()
        now = _now_us()
        min_finish, max_finish = now + int(min_secs * 1e6), now + int(max_secs * 1e6)
        delay = self.get("run_delay")
        run = 0
        while (run < min_runs or now < min_finish) and now <= max_finish:
            for index, data in self.input_data:
                self.interp.set_tensor(index, data)
            start = _now_us()
            self.interp.invoke()
            stat.add(_now_us() - start)
            if delay > 0:
                time.sleep(delay)
            now = _now_us()
            run += 1
        if self.get("report_peak_memory_footprint"):
            peak.append(_rss_kb())
        self.info(stat.line() + "\n")
        return stat

    def save_outputs(self) -> None:
        path = self.get("output_filepath")
        if not path:
            return
        host = self.resolve(path)
        if not host.parent.is_dir():
            return  # std::ofstream not good(): the real tool writes nothing and says nothing
        with open(host, "wb") as f:
            for detail in self.interp.get_output_details():
                f.write(self.interp.get_tensor(detail["index"]).tobytes())
        self.record["output_file"] = path

    def garbage(self) -> None:
        """A build whose log is not the benchmark_model format (a vendor fork): exit 0, nothing parseable."""
        self.out.write("Benchmark finished\nlatency: fast\nresult=ok\n")
        self.record["garbage"] = True


class _Crash(Aborted):
    pass


def _split_name_file(item: str) -> tuple[str, str] | None:
    """``SplitInputLayerNameAndValueFile``: one unescaped ':' splits; '::' is an escaped ':'."""
    delim = -1
    i = 0
    while i < len(item) - 1:
        if item[i] == ":":
            if item[i + 1] == ":":
                i += 1
            elif delim == -1:
                delim = i
            else:
                return None
        i += 1
    if delim == -1:
        return None
    return item[:delim].replace("::", ":"), item[delim + 1:].replace("::", ":")


def run(argv: list[str], *, resolve: Callable[[str], Path], phone: dict[str, Any], env: dict[str, str],
        out: TextIO, err: TextIO) -> tuple[int, dict[str, Any]]:
    """Runs the tool. Returns (exit status as the device shell reports it, record for FakeAdb.benchmarks)."""
    tool = Tool(argv, resolve=resolve, phone=phone, env=env, out=out, err=err)
    # The host LiteRT runtime logs to fd 2 itself; the emulated log above is the phone's, so silence the host's.
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        code = tool.main()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
    tool.record["exit_code"] = code
    return code, tool.record
