"""The phone emulator behind the fake ``adb``, exercised the way real adb is used: through subprocess calls."""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from fakes.adb_emulator import (
    DIMENSITY_9300,
    GALAXY_S24,
    PIXEL_8,
    FakeAdb,
    FakePhone,
    benchmark_binary,
    phone,
)

INPUT_NAME = "serving_default_raw:0"  # a ':' in the name exercises the '::' escaping of the value-files flag
FAST = ["--num_runs=5", "--min_secs=0", "--warmup_runs=2", "--warmup_min_secs=0"]
STAT = re.compile(r"^INFO: count=(\d+) first=(\d+) curr=(\d+) min=(\d+) max=(\d+) avg=([\d.e+]+) std=(\d+) "
                  r"p5=(\d+) median=(\d+) p95=(\d+)$", re.M)


def tiny_model(input_name: str = INPUT_NAME) -> bytes:
    """(1,16,16,4) float32 -> CONV_2D 3x3 SAME (4->3) -> LOGISTIC -> (1,16,16,3), written with the TFLite schema."""
    import flatbuffers
    from ai_edge_litert import schema_py_generated as s

    rng = np.random.default_rng(0)
    weights = rng.normal(0, 0.3, (3, 3, 3, 4)).astype(np.float32)  # OHWI
    bias = np.array([0.1, -0.2, 0.05], np.float32)

    def buffer(data: np.ndarray | None = None):
        b = s.BufferT()
        b.data = None if data is None else list(data.tobytes())
        return b

    def tensor(name: str, shape: tuple[int, ...], index: int):
        t = s.TensorT()
        t.name, t.shape, t.type, t.buffer = name, list(shape), s.TensorType.FLOAT32, index
        return t

    model = s.ModelT()
    model.version, model.description = 3, "fake-adb test model"
    model.buffers = [buffer(), buffer(weights), buffer(bias), buffer(), buffer(), buffer()]
    codes = []
    for op in (s.BuiltinOperator.CONV_2D, s.BuiltinOperator.LOGISTIC):
        code = s.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = op
        code.version = 1
        codes.append(code)
    model.operatorCodes = codes
    graph = s.SubGraphT()
    graph.tensors = [tensor(input_name, (1, 16, 16, 4), 3), tensor("w", weights.shape, 1), tensor("b", (3,), 2),
                     tensor("conv", (1, 16, 16, 3), 4), tensor("Identity", (1, 16, 16, 3), 5)]
    conv = s.OperatorT()
    conv.opcodeIndex, conv.inputs, conv.outputs = 0, [0, 1, 2], [3]
    conv.builtinOptionsType = s.BuiltinOptions.Conv2DOptions
    options = s.Conv2DOptionsT()
    options.padding, options.strideW, options.strideH = s.Padding.SAME, 1, 1
    options.dilationWFactor = options.dilationHFactor = 1
    conv.builtinOptions = options
    sigmoid = s.OperatorT()
    sigmoid.opcodeIndex, sigmoid.inputs, sigmoid.outputs = 1, [3], [4]
    graph.operators, graph.inputs, graph.outputs = [conv, sigmoid], [0], [4]
    model.subgraphs = [graph]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


@pytest.fixture(scope="session")
def assets(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fake_adb_assets")
    model = folder / "tiny model.tflite"
    model.write_bytes(tiny_model())
    x = np.random.default_rng(1).random((1, 16, 16, 4), dtype=np.float32)
    (folder / "input.bin").write_bytes(x.tobytes())
    return {"model": model, "input": folder / "input.bin", "binary": benchmark_binary(folder), "x": x}


def adb(fake: FakeAdb, *args: str, timeout: float = 30, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(fake.executable), *args], capture_output=True, text=True, timeout=timeout, env=env)


def install(fake: FakeAdb, serial: str, assets: dict[str, Path]) -> None:
    for local, remote in ((assets["binary"], "/data/local/tmp/"), (assets["model"], "/data/local/tmp/m.tflite"),
                          (assets["input"], "/data/local/tmp/in.bin")):
        assert adb(fake, "-s", serial, "push", str(local), remote).returncode == 0


# ------------------------------------------------------------------------------------------------- adb host


def test_devices_lists_every_state(tmp_path):
    phones = [PIXEL_8, phone(GALAXY_S24, state="offline"), phone(DIMENSITY_9300, state="unauthorized"),
              FakePhone("0123456789ABCDEF", state="no permissions", usb="1-9", transport_id=9)]
    fake = FakeAdb(tmp_path, phones)
    result = adb(fake, "devices", "-l")
    assert result.returncode == 0
    assert result.stdout == (
        "List of devices attached\n"
        "0123456789ABCDEF       no permissions (missing udev rules? user is in the plugdev group); "
        "see [http://developer.android.com/tools/device.html] usb:1-9 transport_id:9\n"
        "10AD5K1PQR000ZY        unauthorized usb:1-3 transport_id:3\n"
        "37281FDJG002XL         device usb:1-1 product:shiba model:Pixel_8 device:shiba transport_id:1\n"
        "R5CX20ABCDE            offline usb:1-2 transport_id:2\n\n")
    assert adb(fake, "devices").stdout.splitlines()[3] == "37281FDJG002XL\tdevice"


@pytest.mark.parametrize(("state", "stderr"), [
    ("offline", "adb: device offline\n"),
    ("unauthorized", "adb: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
                     "Try 'adb kill-server' if that seems wrong.\nOtherwise check for a confirmation dialog on "
                     "your device.\n"),
    ("no permissions", "adb: insufficient permissions for device: missing udev rules? user is in the plugdev "
                       "group\nSee [http://developer.android.com/tools/device.html] for more information\n"),
])
def test_per_device_commands_fail_with_the_real_message(tmp_path, state, stderr):
    fake = FakeAdb(tmp_path, [phone(PIXEL_8, state=state)])
    for args in (("shell", "id"), ("push", str(fake.executable), "/data/local/tmp/"), ("get-state",)):
        result = adb(fake, "-s", PIXEL_8.serial, *args)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", stderr)


def test_transport_selection_errors_and_android_serial(tmp_path):
    fake = FakeAdb(tmp_path, [PIXEL_8, GALAXY_S24])
    result = adb(fake, "shell", "id", "-u")
    assert (result.returncode, result.stderr) == (1, "adb: more than one device/emulator\n")
    result = adb(fake, "-s", "NOPE", "get-state")
    assert (result.returncode, result.stderr) == (1, "adb: device 'NOPE' not found\n")
    env = {**fake.env(), "ANDROID_SERIAL": GALAXY_S24.serial}
    result = adb(fake, "shell", "getprop", "ro.product.model", env=env)
    assert (result.returncode, result.stdout) == (0, "SM-S921U\n")
    assert adb(fake, "-t", "1", "get-serialno").stdout == PIXEL_8.serial + "\n"
    assert adb(fake, "-s", PIXEL_8.serial, "get-state").stdout == "device\n"
    assert adb(fake, "frobnicate").stderr == "adb: unknown command frobnicate\n"
    assert adb(fake, "version").stdout.startswith("Android Debug Bridge version 1.0.41\nVersion 35.0.1-11580240\n")
    empty = FakeAdb(tmp_path / "none", [])
    assert adb(empty, "get-state").stderr == "adb: no devices/emulators found\n"
    assert fake.calls()[0] == ["shell", "id", "-u"]


def test_wrapper_works_without_the_env_var_and_server_start_message(tmp_path):
    fake = FakeAdb(tmp_path, [PIXEL_8], server_running=False)
    result = subprocess.run([str(fake.executable), "devices"], capture_output=True, text=True, env={"PATH": "/usr/bin"})
    assert result.stderr == "* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
    assert adb(fake, "devices").stderr == ""


# ------------------------------------------------------------------------------------------- device side


def test_push_pull_round_trip_keeps_mode(tmp_path):
    fake = FakeAdb(tmp_path, [PIXEL_8])
    local = tmp_path / "tool"
    local.write_bytes(b"\x00\x01payload")
    local.chmod(0o750)
    result = adb(fake, "-s", PIXEL_8.serial, "push", str(local), "/data/local/tmp/")
    assert re.fullmatch(rf"{re.escape(str(local))}: 1 file pushed, 0 skipped\. [\d.]+ MB/s \(9 bytes in "
                        r"\d+\.\d{3}s\)\n", result.stdout)
    assert fake.device_mode(PIXEL_8.serial, "/data/local/tmp/tool") == 0o750
    back = tmp_path / "back"
    assert adb(fake, "-s", PIXEL_8.serial, "pull", "/data/local/tmp/tool", str(back)).returncode == 0
    assert back.read_bytes() == b"\x00\x01payload" and back.stat().st_mode & 0o777 == 0o750
    missing = adb(fake, "-s", PIXEL_8.serial, "pull", "/data/local/tmp/nope", str(back))
    assert missing.stderr == "adb: error: failed to stat remote object '/data/local/tmp/nope': No such file or directory\n"
    missing = adb(fake, "-s", PIXEL_8.serial, "push", str(tmp_path / "nope"), "/data/local/tmp/")
    assert (missing.returncode, missing.stderr) == (1, f"adb: error: cannot stat '{tmp_path / 'nope'}': No such file or directory\n")


def test_shell_line_is_reparsed_so_unquoted_paths_break(tmp_path):
    fake = FakeAdb(tmp_path, [PIXEL_8])
    s = PIXEL_8.serial
    assert adb(fake, "-s", s, "shell", "mkdir", "-p", "'/data/local/tmp/my dir'").returncode == 0
    assert (fake.fs(s) / "data/local/tmp/my dir").is_dir()
    broken = adb(fake, "-s", s, "shell", "test", "-d", "/data/local/tmp/my dir")
    assert broken.returncode != 0
    assert adb(fake, "-s", s, "shell", "test", "-d", "'/data/local/tmp/my dir'").returncode == 0
    quote = adb(fake, "-s", s, "shell", "echo", "it's")  # unbalanced quote: mksh syntax error
    assert quote.returncode == 1 and "syntax error" in quote.stderr
    assert adb(fake, "-s", s, "shell", "echo", "'it'\"'\"'s'").stdout == "it's\n"
    assert fake.shell_lines(s)[1] == "test -d /data/local/tmp/my dir"
    missing = adb(fake, "-s", s, "shell", "frob", "x")
    assert (missing.returncode, missing.stderr) == (127, "/system/bin/sh: frob: inaccessible or not found\n")
    (fake.fs(s) / "data/local/tmp/noexec").write_bytes(b"#")
    denied = adb(fake, "-s", s, "shell", "/data/local/tmp/noexec")
    assert (denied.returncode, denied.stderr) == (126, "/system/bin/sh: /data/local/tmp/noexec: can't execute: "
                                                      "Permission denied\n")
    assert adb(fake, "-s", s, "shell", "/data/local/tmp/benchmark_model").returncode == 127
    assert adb(fake, "-s", s, "shell", "rm", "-f", "/data/local/tmp/nope").returncode == 0
    assert adb(fake, "-s", s, "shell", "cat", "/data/local/tmp/nope").stderr == \
        "cat: /data/local/tmp/nope: No such file or directory\n"


def test_getprop_thermal_sequence_and_fixed_performance(tmp_path):
    fake = FakeAdb(tmp_path, [phone(PIXEL_8, thermal=[3, 1, 0]), phone(DIMENSITY_9300, fixed_performance=False)])
    s = PIXEL_8.serial
    props = adb(fake, "-s", s, "shell", "getprop").stdout
    assert "[ro.product.model]: [Pixel 8]\n" in props and "[ro.soc.model]: [Tensor G3]\n" in props
    assert adb(fake, "-s", s, "shell", "getprop", "ro.board.platform").stdout == "zuma\n"
    statuses = [re.search(r"^Thermal Status: (\d)$", adb(fake, "-s", s, "shell", "dumpsys", "thermalservice").stdout,
                          re.M).group(1) for _ in range(4)]
    assert statuses == ["3", "1", "0", "0"]
    assert adb(fake, "-s", s, "shell", "cmd", "power", "set-fixed-performance-mode-enabled", "true").returncode == 0
    assert fake.phone_state(s)["fixed_performance_mode"] is True
    old = adb(fake, "-s", DIMENSITY_9300.serial, "shell", "cmd", "power", "set-fixed-performance-mode-enabled", "true")
    assert (old.returncode, old.stdout) == (255, "Unknown command: set-fixed-performance-mode-enabled\n")


# ------------------------------------------------------------------------------------------ benchmark_model


def test_benchmark_run_matches_record_and_litert_output(tmp_path, assets):
    from ai_edge_litert.interpreter import Interpreter

    fake = FakeAdb(tmp_path, [GALAXY_S24])
    s = GALAXY_S24.serial
    install(fake, s, assets)
    result = adb(fake, "-s", s, "shell", "taskset", "f0", "/data/local/tmp/benchmark_model",
                 "--graph=/data/local/tmp/m.tflite", "--num_threads=4", *FAST,
                 f"--input_layer={INPUT_NAME}", "--input_layer_shape=1,16,16,4",
                 "--input_layer_value_files=serving_default_raw::0:/data/local/tmp/in.bin",
                 "--output_filepath=/data/local/tmp/out.bin", "--report_peak_memory_footprint=true")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("INFO: STARTING!\n")
    for line in ("INFO: Num threads: [4]", "INFO: Graph: [/data/local/tmp/m.tflite]",
                 "INFO: #threads used for CPU inference: [4]", "INFO: Loaded model /data/local/tmp/m.tflite"):
        assert line + "\n" in out
    assert "INFO: Created TensorFlow Lite XNNPACK delegate for CPU.\n" in result.stderr
    assert re.search(r"^INFO: Initialized session in [\d.]+ms\.$", out, re.M)
    assert re.search(r"^INFO: Memory footprint delta from the start of the tool \(MB\): init=[\d.e+-]+ "
                     r"overall=[\d.e+-]+$", out, re.M)
    assert re.search(r"^INFO: Overall peak memory footprint \(MB\) via periodic monitoring: [\d.]+$", out, re.M)
    (record,) = fake.benchmarks(s)
    assert (record["taskset"], record["threads"], record["delegate"], record["exit_code"]) == ("f0", 4, "xnnpack", 0)
    stats = STAT.findall(out)
    assert len(stats) == 2 and int(stats[1][0]) == len(record["timed_us"]) >= 5 and len(record["warmup_us"]) >= 2
    timed = sorted(record["timed_us"])
    assert stats[1][5] == record["avg_text"] == "%g" % (sum(timed) / len(timed))
    assert int(stats[1][8]) == record["median"] == timed[len(timed) // 2]
    assert int(stats[1][3]) == timed[0] and int(stats[1][7]) == timed[len(timed) * 5 // 100]
    timings = re.search(r"^INFO: Inference timings in us: Init: (\d+), First inference: (\d+), Warmup \(avg\): "
                        r"([\d.e+]+), Inference \(avg\): ([\d.e+]+)$", out, re.M)
    assert timings.group(4) == record["avg_text"] and int(timings.group(2)) == record["warmup_us"][0]
    itp = Interpreter(model_path=str(assets["model"]))
    itp.allocate_tensors()
    itp.set_tensor(itp.get_input_details()[0]["index"], assets["x"])
    itp.invoke()
    expected = itp.get_tensor(itp.get_output_details()[0]["index"]).tobytes()
    assert (fake.fs(s) / "data/local/tmp/out.bin").read_bytes() == expected


@pytest.mark.parametrize(("flags", "behaviour", "line"), [
    (["--use_gpu=true"], "full", "INFO: Explicitly applied GPU delegate, and the model graph will be completely "
                                 "executed by the delegate."),
    (["--use_gpu=true"], "partial", "INFO: Explicitly applied GPU delegate, and the model graph will be partially "
                                    "executed by the delegate w/ 1 delegate kernels."),
    (["--use_nnapi=true"], "none", "INFO: Though NNAPI delegate is explicitly applied, the model graph will not be "
                                   "executed by the delegate."),
    (["--external_delegate_path=/vendor/lib64/libQnnTFLiteDelegate.so", "--external_delegate_options=backend_type:htp"],
     "full", "INFO: Explicitly applied EXTERNAL delegate, and the model graph will be completely executed by the "
             "delegate."),
])
def test_delegate_lines_follow_the_phone(tmp_path, assets, flags, behaviour, line):
    kind = "gpu" if "gpu" in flags[0] else "nnapi" if "nnapi" in flags[0] else "qnn"
    fake = FakeAdb(tmp_path, [phone(GALAXY_S24, delegates={kind: behaviour})])
    install(fake, GALAXY_S24.serial, assets)
    result = adb(fake, "-s", GALAXY_S24.serial, "shell", "/data/local/tmp/benchmark_model",
                 "--graph=/data/local/tmp/m.tflite", *FAST, *flags)
    assert result.returncode == 0, result.stderr
    assert line + "\n" in result.stdout
    assert "XNNPACK" not in result.stderr
    assert fake.benchmarks()[0]["delegation"] == behaviour


def test_delegate_failures(tmp_path, assets):
    fake = FakeAdb(tmp_path, [phone(PIXEL_8, delegates={"gpu": "partial"})])
    s = PIXEL_8.serial
    install(fake, s, assets)
    base = ["-s", s, "shell", "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m.tflite", *FAST]
    strict = adb(fake, *base, "--use_gpu=true", "--require_full_delegation=true")
    assert strict.returncode == 1
    assert strict.stderr.endswith("ERROR: Disallowed CPU fallback detected.\nERROR: Benchmarking failed.\n")
    qnn = adb(fake, *base, "--external_delegate_path=/data/local/tmp/libQnnTFLiteDelegate.so")
    assert qnn.returncode == 0  # the real tool falls back to the CPU silently
    assert "INFO: Unable to load external delegate from : /data/local/tmp/libQnnTFLiteDelegate.so\n" in qnn.stderr
    assert "Explicitly applied" not in qnn.stdout
    nnapi = adb(fake, *base, "--use_nnapi=true")
    assert "WARN: NNAPI acceleration is unsupported on this platform.\n" in nnapi.stdout
    unknown = adb(fake, *base, "--no_such_flag=1")
    assert unknown.returncode == 0 and "WARN: Unconsumed cmdline flags: --no_such_flag=1\n" in unknown.stdout
    short = tmp_path / "short.bin"
    short.write_bytes(b"\0" * 100)
    adb(fake, "-s", s, "push", str(short), "/data/local/tmp/short.bin")
    size = adb(fake, *base, f"--input_layer={INPUT_NAME}", "--input_layer_shape=1,16,16,4",
               "--input_layer_value_files=serving_default_raw::0:/data/local/tmp/short.bin")
    assert size.returncode == 134
    assert "FATAL: The size of /data/local/tmp/short.bin is 100 bytes. It should be 4096 bytes.\n" in size.stderr
    assert [r["exit_code"] for r in fake.benchmarks(s)] == [1, 0, 0, 0, 134]


def test_fault_modes(tmp_path, assets):
    crash = phone(PIXEL_8, faults={"benchmark_crash": True})
    garbage = phone(GALAXY_S24, faults={"benchmark_garbage": True, "preinstalled_benchmark_model": True})
    slow = phone(DIMENSITY_9300, faults={"slow_shell_s": 2.0, "disconnect_after": 3})
    fake = FakeAdb(tmp_path, [crash, garbage, slow])
    install(fake, crash.serial, assets)
    result = adb(fake, "-s", crash.serial, "shell", "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m.tflite")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (139, "Segmentation fault")
    assert "INFO: Loaded model /data/local/tmp/m.tflite\n" in result.stdout and "count=" not in result.stdout
    adb(fake, "-s", garbage.serial, "push", str(assets["model"]), "/data/local/tmp/m.tflite")
    result = adb(fake, "-s", garbage.serial, "shell", "/data/local/tmp/benchmark_model", "--graph=/data/local/tmp/m.tflite")
    assert result.returncode == 0 and not STAT.search(result.stdout) and "Inference timings" not in result.stdout
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired):
        adb(fake, "-s", slow.serial, "shell", "echo", "hi", timeout=0.8)
    assert time.monotonic() - started < 1.8
    assert adb(fake, "-s", slow.serial, "get-state").stdout == "device\n"  # calls 2 and 3 still reach it
    assert adb(fake, "-s", slow.serial, "get-serialno").returncode == 0
    gone = adb(fake, "-s", slow.serial, "get-state")
    assert (gone.returncode, gone.stderr) == (1, f"adb: device '{slow.serial}' not found\n")
    assert slow.serial not in adb(fake, "devices", "-l").stdout
