"""benchmark_model command builder and log parser, against real logs in tests/fixtures/benchmark_model/."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mobileisp.android_bench.benchmark_model import (
    BenchmarkFailedError,
    BenchmarkOptions,
    BenchmarkOptionsError,
    BenchmarkOutputError,
    DelegateStatus,
    RunStats,
    build_command,
    failure_line,
    parse_delegates,
    parse_output,
    supported_flags,
)
from mobileisp.errors import MobileISPError

FIXTURES = Path(__file__).parent / "fixtures" / "benchmark_model"
BM = "/data/local/tmp/mobileisp/benchmark_model"


def log(name: str) -> str:
    """A fixture without its ``# source:`` header line."""
    text = (FIXTURES / name).read_text()
    return "\n".join(line for line in text.split("\n") if not line.startswith("# source:"))


def approx(x):
    return pytest.approx(x, rel=1e-9, abs=1e-9)


def test_every_fixture_names_its_source():
    for path in FIXTURES.glob("*.txt"):
        assert path.read_text().startswith("# source: "), path.name
    assert len(list(FIXTURES.glob("*.txt"))) >= 15


# ----------------------------------------------------------------------------------------- variants


def test_current_android_build_with_percentiles():
    out = parse_output(log("android_aarch64_xnnpack_percentiles.txt"))
    assert out.variant == "interpreter"
    assert out.avg_ms == approx(63.7432)
    assert (out.init_ms, out.first_ms, out.warmup_avg_ms) == (approx(119.515), approx(87.112), approx(58.1474))
    assert out.model_size_mb == approx(24.6229)
    assert out.warmup == RunStats(9, 87112, 51629, 51629, 87112, 58147.4, 11478, 51629, 51962, 87112)
    assert out.runs == RunStats(1000, 52162, 49785, 49088, 686105, 63743.2, 60716, 49620, 51891, 68628)
    assert out.median_ms == approx(51.891) and out.p95_ms == approx(68.628) and out.p5_ms == approx(49.62)
    assert out.memory_init_mb == approx(55.4961) and out.memory_overall_mb == approx(55.4961)
    assert out.peak_memory_mb is None
    assert out.xnnpack == (2168, 2168, 1)
    assert out.delegates == [] and out.delegation() is None
    assert out.graph == "./models/tiny_muaalem_float32.tflite" and out.num_threads is None


def test_all_same_stat_line_and_scientific_notation():
    out = parse_output(log("linux_cpu_all_same_scientific.txt"))
    assert out.variant == "interpreter"
    assert out.warmup == RunStats(1, 1357602, 1357602, 1357602, 1357602, 1357602, 0.0, 1357602, 1357602, 1357602)
    assert out.runs.avg_us == approx(1.24027e6) and out.runs.median_us == 1239807
    assert out.avg_ms == approx(1240.27) and out.warmup_avg_ms == approx(1357.6)
    assert out.init_ms == approx(5.579) and out.memory_overall_mb == approx(109.832)


def test_all_same_with_repeat_count_suffix():
    stats = RunStats.parse("count=5 curr=1200(all same) p5=1200 median=1200 p95=1200")
    assert stats == RunStats(5, 1200, 1200, 1200, 1200, 1200, 0.0, 1200, 1200, 1200)
    assert RunStats.parse("count=0") is None
    assert RunStats.parse("count=3 first=1 curr=2 min=1 max=3 avg=2 std=1 garbage") is None


def test_very_old_stat_order_without_first():
    stats = RunStats.parse("curr=66800 count=15 min=66699 max=66838 avg=66767.6 std=39")
    assert stats == RunStats(15, None, 66800, 66699, 66838, 66767.6, 39)


def test_old_peak_memory_build_with_op_profiling():
    out = parse_output(log("android_peak_memory_old_profiling.txt"))
    assert out.variant == "interpreter-old"
    assert out.avg_ms == approx(33.2094) and out.init_ms == approx(0.855)
    assert out.memory_init_mb == 0.0 and out.memory_overall_mb == approx(12.8672)
    assert out.runs == RunStats(50, 32891, 33978, 32641, 34005, 33209.4, 450)
    assert out.median_ms is None
    assert out.num_threads == 4 and out.graph == "/data/local/tmp/espcn_harmonic_2x_slim_w_cl.tflite"


def test_op_profiling_timings_line_is_not_a_run_stat():
    out = parse_output(log("linux_riscv_op_profiling.txt"))
    assert out.variant == "interpreter-old"  # memory-delta line, but stats without percentiles
    assert out.runs.count == 50 and out.runs.avg_us == approx(2.95034e6) and out.runs.first_us == 2990275
    assert out.warmup.count == 1 and out.warmup.curr_us == 3512391
    assert out.avg_ms == approx(2950.34) and out.memory_overall_mb == approx(46.0859)


def test_legacy_average_inference_timings():
    out = parse_output(log("legacy_average_no_stats.txt"))
    assert out.variant == "legacy"
    assert out.avg_ms == approx(66.7676) and out.init_ms == approx(9.933) and out.warmup_avg_ms == approx(76.6059)
    assert out.first_ms == approx(127.425)  # from the warmup stat line: the legacy line has no first inference
    assert out.runs.count == 15 and out.warmup.count == 7


def test_legacy_readme_spelling():
    out = parse_output("Average inference timings in us: Warmup: 83235, Init: 38467, Inference: 79760.9\n")
    assert (out.variant, out.avg_ms, out.init_ms, out.warmup_avg_ms) == (
        "legacy", approx(79.7609), approx(38.467), approx(83.235))


def test_litert_compiled_model_block_in_ms():
    out = parse_output(log("litert_compiled_model.txt"))
    assert out.variant == "litert"
    assert (out.avg_ms, out.init_ms, out.first_ms, out.warmup_avg_ms) == (0.46, 4.48, 1.03, 0.47)
    assert (out.memory_init_mb, out.memory_overall_mb, out.peak_memory_mb) == (8.94, 11.51, None)
    assert out.runs == RunStats(2112, 463, 459, 442, 979, 464.545, 13, 460, 462, 478)
    assert out.warmup.count == 1055 and out.median_ms == approx(0.462)
    assert out.model_size_mb == approx(3.27774) and out.xnnpack == (1, 1, 1)


def test_crlf_and_lone_carriage_returns():
    text = log("android_aarch64_xnnpack_percentiles.txt")
    assert parse_output(text.replace("\n", "\r\n")) == parse_output(text)
    assert parse_output(text.replace("\n", "\r")).runs.median_us == 51891


def test_peak_memory_monitor_line():
    text = log("linux_xnnpack_explicit_partial.txt") + (
        "INFO: Overall peak memory footprint (MB) via periodic monitoring: 151.25\n")
    assert parse_output(text).peak_memory_mb == approx(151.25)


def test_to_dict_is_json_ready():
    import json

    d = parse_output(log("linux_xnnpack_explicit_partial.txt")).to_dict()
    assert json.loads(json.dumps(d))["delegation"] == "partial"
    assert d["median_ms"] == approx(899.281) and d["num_runs"] == 50
    assert d["delegates"] == [{"name": "XNNPACK", "delegation": "partial", "kernels": 1}]


# --------------------------------------------------------------------------------------- delegation


def test_gpu_full_delegation_old_unprefixed_build():
    out = parse_output(log("android_gpu_full_old.txt"))
    assert out.delegates == [DelegateStatus("GPU", "full", 1)] and out.delegation() == "full"
    assert out.variant == "interpreter-old" and out.avg_ms == approx(119.375) and out.init_ms == approx(870.557)
    assert out.memory_overall_mb is None and out.num_threads == 4


def test_nnapi_full_and_nnapi_xnnpack_line_not_confused():
    out = parse_output(log("android_nnapi_full.txt"))
    assert out.delegates == [DelegateStatus("NNAPI", "full", 1)]
    assert out.xnnpack is None  # the Replacing line there belongs to TfLiteNnapiDelegate
    assert out.avg_ms == approx(1.88574) and out.warmup.count == 1 and out.runs.count == 520


def test_external_delegate_full():
    out = parse_output(log("android_external_vx_full.txt"))
    assert out.delegation() == "full" and out.delegates[0].name == "EXTERNAL"
    assert out.runs == RunStats(876, 1272, 1730, 810, 6334, 1096.48, 476)
    assert out.memory_init_mb == approx(15.4688)


def test_partial_delegation_kernel_counts():
    nnapi = parse_output(log("nnapi_partial_trimmed.txt"))
    assert nnapi.delegates == [DelegateStatus("NNAPI", "partial", 11)] and nnapi.delegation() == "partial"
    assert nnapi.runs is None and nnapi.avg_ms == approx(53.9745) and nnapi.median_ms is None
    xnn = parse_output(log("linux_xnnpack_explicit_partial.txt"))
    assert xnn.delegates == [DelegateStatus("XNNPACK", "partial", 1)]


def test_delegate_not_executed_lines():
    delegates, xnnpack = parse_delegates(log("qnn_external_none.txt"))
    assert delegates == [DelegateStatus("EXTERNAL", "none", 0)] and xnnpack is None
    delegates, _ = parse_delegates(log("logcat_nnapi_none.txt"))
    assert delegates == [DelegateStatus("NNAPI", "none", 0)]


def test_logcat_prefixes_are_stripped():
    text = log("logcat_nnapi_none.txt") + "\n".join([
        "",
        "05-31 10:31:14.001 21767 21767 I tflite  : Running benchmark for at least 50 iterations and at least 1 "
        "seconds but terminate if exceeding 150 seconds.",
        "05-31 10:31:15.001 21767 21767 I tflite  : count=50 first=2000 curr=2100 min=1900 max=2500 avg=2050.5 "
        "std=90 p5=1950 median=2040 p95=2300",
        "05-31 10:31:15.002 21767 21767 I tflite  : Inference timings in us: Init: 9340, First inference: 4000, "
        "Warmup (avg): 4000, Inference (avg): 2050.5",
    ])
    out = parse_output(text)
    assert out.delegation() == "none" and out.graph == "/data/local/tmp/model.tflite"
    assert out.runs.median_us == 2040 and out.avg_ms == approx(2.0505) and out.warmup is None


def test_old_xnnpack_line_without_total():
    _, xnnpack = parse_delegates(
        "05-10 14:58:14.957 12439 12461 I tflite  : Replacing 269 node(s) with delegate (TfLiteXNNPackDelegate) "
        "node, yielding 13 partitions.")
    assert xnnpack == (269, None, 13)


def test_mixed_delegation_is_partial():
    out = parse_output(log("android_gpu_full_old.txt") + "\n" + log("qnn_external_none.txt"))
    assert out.delegation() == "partial"


# ------------------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("name, line", [
    ("fail_disallowed_cpu_fallback.txt", "Disallowed CPU fallback detected."),
    ("fail_input_size_mismatch.txt",
     "The size of /data/local/tmp/mobileisp/raw.bin is 131072 bytes. It should be 262144 bytes."),
    ("fail_apply_xnnpack_delegate.txt", "Failed to apply XNNPACK delegate."),
    ("fail_apply_external_delegate.txt", "Failed to apply EXTERNAL delegate."),
    ("fail_allocate_tensors.txt", "Failed to allocate tensors!"),
])
def test_failures_raise_with_decisive_line(name, line):
    with pytest.raises(BenchmarkFailedError) as info:
        parse_output(log(name))
    assert str(info.value) == line and info.value.line == line
    assert isinstance(info.value, MobileISPError) and "\n" not in str(info.value)
    assert failure_line(log(name), 1) == line


def test_generic_benchmarking_failed_prefers_earlier_error_line():
    text = "INFO: STARTING!\nERROR: Could not build the interpreter: bad flatbuffer\nERROR: Benchmarking failed.\n"
    with pytest.raises(BenchmarkFailedError, match="^Could not build the interpreter: bad flatbuffer$"):
        parse_output(text)
    with pytest.raises(BenchmarkFailedError, match=r"^Benchmarking failed\.$"):
        parse_output("STARTING!\nBenchmarking failed.\n")


def test_model_load_failure():
    text = "INFO: STARTING!\nINFO: Graph: [/data/local/tmp/missing.tflite]\nERROR: Failed to mmap model " \
           "/data/local/tmp/missing.tflite\nERROR: Benchmarking failed.\n"
    with pytest.raises(BenchmarkFailedError, match="^Failed to mmap model /data/local/tmp/missing.tflite$"):
        parse_output(text)


def test_successful_run_with_harmless_error_line_is_not_a_failure():
    text = ("ERROR: File /data/local/tmp/nnapiacache/a.bin couldn't be opened for reading: No such file or directory\n"
            "Inference timings in us: Init: 34075, First inference: 1599062, Warmup (avg): 1.59906e+06, "
            "Inference (avg): 1380.86\n")
    out = parse_output(text)
    assert out.avg_ms == approx(1.38086) and out.warmup_avg_ms == approx(1599.06)


@pytest.mark.parametrize("text", [
    "",
    "\n\n  \n",
    "hello world\nthis is not benchmark_model\n",
    "INFO: STARTING!\nINFO: Graph: [/x.tflite]\nINFO: Running benchmark for at least 50 iterations and at least "
    "1 seconds but terminate if exceeding 150 seconds.\n",
])
def test_garbage_or_truncated_output(text):
    with pytest.raises(BenchmarkOutputError) as info:
        parse_output(text)
    assert "Inference timings" in str(info.value) and "\n" not in str(info.value)


def test_litert_block_without_average_is_incomplete():
    text = "========== BENCHMARK RESULTS ==========\nModel initialization: 4.48 ms\n"
    with pytest.raises(BenchmarkOutputError, match="Inference \\(avg\\)"):
        parse_output(text)


def test_failure_line_for_exit_codes():
    assert failure_line("INFO: STARTING!\nINFO: Loaded model /x\n", 139) == \
        "benchmark_model crashed with SIGSEGV (exit 139)"
    assert failure_line("", 134) == "benchmark_model crashed with SIGABRT (exit 134)"
    assert failure_line("", -9) == "benchmark_model crashed with SIGKILL (exit -9)"
    assert failure_line("/system/bin/sh: /data/local/tmp/bm: inaccessible or not found\n", 127) == \
        "benchmark_model binary not found (exit 127): /system/bin/sh: /data/local/tmp/bm: inaccessible or not found"
    assert failure_line("", 126) == "benchmark_model binary is not executable (exit 126)"
    assert failure_line("STARTING!\nsomething odd happened\n\n", 2) == "something odd happened"
    assert failure_line("", 3) == "benchmark_model exited with status 3 and printed nothing"
    # An ERROR line wins over the signal: the size check aborts (134) after printing it.
    assert failure_line(log("fail_input_size_mismatch.txt"), 134).startswith("The size of ")
    assert failure_line("INFO: x\nERROR: tensorflow/lite/core/subgraph.cc:1169 was not true.\n", 1) == \
        "tensorflow/lite/core/subgraph.cc:1169 was not true."


def test_supported_flags_from_help():
    help_text = """usage: /data/local/tmp/benchmark_model <flags>
Flags:
\t--num_runs=50\tint32\toptional\texpected number of runs, see also min_secs, max_secs
\t--graph=\tstring\trequired\tgraph file name
\t--input_layer_value_files=\tstring\toptional\tA map-like string. e.g. input1:file1,input2:file2
\t--output_filepath=\tstring\toptional\tFile path to export outputs layer as binary data.
\t--use_gpu=false\tbool\toptional\tuse gpu
"""
    flags = supported_flags(help_text)
    assert flags == {"num_runs", "graph", "input_layer_value_files", "output_filepath", "use_gpu"}
    old = "Flags:\n\t--graph=\tstring\tgraph file name\n\t--num_threads=1\tint32\tnumber of threads\n"
    assert "output_filepath" not in supported_flags(old)


# ------------------------------------------------------------------------------------- command builder


def test_cpu_command_with_taskset():
    opts = BenchmarkOptions(graph="/data/local/tmp/mobileisp/m.tflite", num_threads=4, cpu_mask="f0")
    assert build_command(BM, opts) == [
        "taskset", "f0", BM, "--graph=/data/local/tmp/mobileisp/m.tflite", "--num_threads=4", "--warmup_runs=1",
        "--warmup_min_secs=0.5", "--num_runs=50", "--min_secs=1", "--max_secs=150"]


def test_gpu_command_with_peak_memory_and_run_delay():
    opts = BenchmarkOptions(graph="/data/local/tmp/m.tflite", num_threads=1, warmup_runs=5, num_runs=100,
                            min_secs=60.0, run_delay=0.033, report_peak_memory=True,
                            delegate_flags=("--use_gpu=true", "--gpu_precision_loss_allowed=false"))
    assert build_command(BM, opts) == [
        BM, "--graph=/data/local/tmp/m.tflite", "--num_threads=1", "--warmup_runs=5", "--warmup_min_secs=0.5",
        "--num_runs=100", "--min_secs=60", "--max_secs=150", "--run_delay=0.033", "--use_gpu=true",
        "--gpu_precision_loss_allowed=false", "--report_peak_memory_footprint=true"]


def test_qnn_external_delegate_with_env_and_options():
    qnn = "/data/local/tmp/qnn_delegate"
    opts = BenchmarkOptions(
        graph="/data/local/tmp/m_int8.tflite", num_threads=1, require_full_delegation=True, cpu_mask="80",
        env=(("LD_LIBRARY_PATH", qnn), ("ADSP_LIBRARY_PATH", qnn)),
        delegate_flags=(f"--external_delegate_path={qnn}/libQnnTFLiteDelegate.so",
                        f"--external_delegate_options=backend_type:htp;library_path:{qnn}/libQnnHtp.so;"
                        f"skel_library_dir:{qnn};htp_precision:0;htp_performance_mode:2"))
    cmd = build_command(BM, opts)
    assert cmd == [
        "env", f"LD_LIBRARY_PATH={qnn}", f"ADSP_LIBRARY_PATH={qnn}", "taskset", "80", BM,
        "--graph=/data/local/tmp/m_int8.tflite", "--num_threads=1", "--warmup_runs=1", "--warmup_min_secs=0.5",
        "--num_runs=50", "--min_secs=1", "--max_secs=150",
        f"--external_delegate_path={qnn}/libQnnTFLiteDelegate.so",
        f"--external_delegate_options=backend_type:htp;library_path:{qnn}/libQnnHtp.so;skel_library_dir:{qnn};"
        "htp_precision:0;htp_performance_mode:2",
        "--require_full_delegation=true"]
    # ';' must survive the device shell: the joined, quoted line splits back to the same arguments.
    assert shlex.split(shlex.join(cmd)) == cmd


def test_inputs_escape_colon_in_names_and_output_file():
    opts = BenchmarkOptions(
        graph="/data/local/tmp/m.tflite", num_threads=2,
        inputs=(("serving_default_raw:0", (1, 128, 128, 4), "/data/local/tmp/in0.bin"),
                ("wb", (1, 3), "/data/local/tmp/in1.bin")),
        output_filepath="/data/local/tmp/out.bin")
    assert build_command(BM, opts)[-4:] == [
        "--input_layer=serving_default_raw:0,wb",
        "--input_layer_shape=1,128,128,4:1,3",
        "--input_layer_value_files=serving_default_raw::0:/data/local/tmp/in0.bin,wb:/data/local/tmp/in1.bin",
        "--output_filepath=/data/local/tmp/out.bin"]


def test_shlex_round_trip_with_spaces_in_graph_path():
    opts = BenchmarkOptions(graph="/data/local/tmp/my models/lite isp.tflite", num_threads=4, cpu_mask="F0",
                            env=(("A", "x y"),), output_filepath="/data/local/tmp/out dir/o.bin")
    cmd = build_command(BM, opts)
    assert "--graph=/data/local/tmp/my models/lite isp.tflite" in cmd
    line = shlex.join(cmd)
    assert shlex.split(line) == cmd
    assert "'--graph=/data/local/tmp/my models/lite isp.tflite'" in line


@pytest.mark.parametrize("change, message", [
    ({"num_threads": 0}, "num_threads must be an integer >= 1"),
    ({"num_threads": True}, "num_threads must be an integer"),
    ({"num_runs": 0}, "num_runs must be an integer >= 1"),
    ({"warmup_runs": -1}, "warmup_runs must be an integer >= 0"),
    ({"min_secs": float("nan")}, "min_secs must be a finite number"),
    ({"max_secs": 0.0}, "max_secs must be > 0"),
    ({"run_delay": -0.1}, "run_delay must be a finite number >= 0"),
    ({"cpu_mask": "0xf0"}, "CPU mask must be non-zero hexadecimal"),
    ({"cpu_mask": "00"}, "CPU mask must be non-zero hexadecimal"),
    ({"graph": ""}, "graph must be non-empty"),
    ({"graph": "/a\nb.tflite"}, "graph must be non-empty text without newlines"),
    ({"env": (("LD LIB", "x"),)}, "not a valid shell name"),
    ({"delegate_flags": ("use_gpu=true",)}, "must look like --name=value"),
    ({"delegate_flags": ("--num_threads=8",)}, "--num_threads given twice"),
    ({"inputs": (("a,b", (1, 4), "/x.bin"),)}, "input name"),
    ({"inputs": (("raw", (1, -1, 4), "/x.bin"),)}, "positive integers"),
    ({"inputs": (("raw", (1, 4), "/data/a:b.bin"),)}, "input file for 'raw'"),
    ({"inputs": (("raw", (1, 4)),)}, "must be \\(name, shape, path\\)"),
])
def test_invalid_options_are_rejected(change, message):
    base = {"graph": "/data/local/tmp/m.tflite", "num_threads": 4}
    with pytest.raises(BenchmarkOptionsError, match=message) as info:
        build_command(BM, BenchmarkOptions(**{**base, **change}))
    assert isinstance(info.value, MobileISPError) and "\n" not in str(info.value)
