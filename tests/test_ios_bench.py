"""Apple benchmarks: the refusal off macOS, command construction, parsers on recorded outputs, and the
iPhone runner end to end against an emulator of the Xcode tools (tests/fixtures/apple/fake_xcode_tools.py)."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from mobileisp.ios_bench import AppleBenchError, PlatformError, bench_apple, list_apple_devices, validate_coreml_on_mac
from mobileisp.ios_bench import devices as dev
from mobileisp.ios_bench import xcode, xcresult
from mobileisp.ios_bench.artefact import artefact_identity, check_artefact, check_compute_units
from mobileisp.ios_bench.local import bench_coreml_on_mac, make_inputs, time_predictions
from mobileisp.ios_bench.platform import require_xcode
from mobileisp.ios_bench.runner import parse_apple_device

FIXTURES = Path(__file__).parent / "fixtures" / "apple"
IPHONE_UDID = "00008130-001C2D3E4F5A6B7C"
RECORDED = json.loads((FIXTURES / "bench_result_iphone15pro.json").read_text())


def _text(name: str) -> str:
    return (FIXTURES / name).read_text(encoding="utf-8")


def _fake_mlpackage(folder: Path, name: str = "liteisp-mobile-fp16.mlpackage") -> Path:
    """The on-disk layout of an .mlpackage (Manifest.json + Data/com.apple.CoreML/model.mlmodel)."""
    pkg = folder / name
    (pkg / "Data" / "com.apple.CoreML" / "weights").mkdir(parents=True)
    (pkg / "Data" / "com.apple.CoreML" / "model.mlmodel").write_bytes(b"\x08\x08")
    manifest = {"fileFormatVersion": "1.0.0", "itemInfoEntries": {}, "rootModelIdentifier": "7E6F2C1A"}
    (pkg / "Manifest.json").write_text(json.dumps(manifest))
    return pkg


# ------------------------------------------------------------------------------ refusal off macOS (Linux)


@pytest.fixture
def linux_sandbox(tmp_path, monkeypatch):
    """Linux, an empty cwd and temp folder, and no subprocess allowed: the guard must stop everything."""
    monkeypatch.setattr(sys, "platform", "linux")
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))

    def no_process(*a, **k):
        raise AssertionError(f"a process was started before the platform guard: {a[:1]}")

    monkeypatch.setattr(subprocess, "run", no_process)
    monkeypatch.setattr(subprocess, "Popen", no_process)
    return tmp_path


@pytest.mark.parametrize(
    "call, command",
    [
        (lambda a, w: bench_apple(a, "mac", "cpu-ne", 5, 20), "mobileisp bench --device mac"),
        (lambda a, w: bench_apple(a, "iphone", "all", 5, 20, work_dir=w), "mobileisp bench --device iphone"),
        (lambda a, w: bench_apple(a, f"iphone:{IPHONE_UDID}", "all", 1, 1, work_dir=w), f"--device iphone:{IPHONE_UDID}"),
        (lambda a, w: bench_apple(a, "mac", "not-a-unit", -1, 0), "mobileisp bench --device mac"),  # guard before checks
        (lambda a, w: list_apple_devices(), "mobileisp devices --apple"),
        (lambda a, w: validate_coreml_on_mac(a, [{"raw": np.zeros((1, 4, 8, 8), np.float32)}]), "mobileisp validate"),
        (lambda a, w: bench_coreml_on_mac(a, "all", 1, 1), "mobileisp bench --device mac"),
        (lambda a, w: xcode.bench_iphone(a, None, work_dir=w), "mobileisp bench --device iphone"),
        (lambda a, w: xcode.bench_result_from_xcresult(w / "x.xcresult", a), "reading an .xcresult bundle"),
    ],
)
def test_apple_commands_stop_on_linux_before_doing_anything(linux_sandbox, call, command):
    artefact = linux_sandbox / "missing model.mlpackage"  # does not exist: the platform error still comes first
    work = linux_sandbox / "iphone work"
    with pytest.raises(PlatformError) as e:
        call(artefact, work)
    message = str(e.value)
    assert message.startswith(command) or command in message
    assert "needs macOS (and Xcode for iPhone); this machine runs Linux" in message
    assert "\n" not in message and e.value.exit_code == 2
    assert not work.exists()
    assert list((linux_sandbox / "cwd").iterdir()) == [] and list((linux_sandbox / "tmp").iterdir()) == []


def test_refusal_names_windows(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    with pytest.raises(PlatformError, match=r"needs macOS \(and Xcode for iPhone\); this machine runs Windows$"):
        list_apple_devices()


def test_macos_without_xcode_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv("PATH", str(tmp_path))  # no xcrun, no xcodebuild
    with pytest.raises(PlatformError, match="xcrun and xcodebuild not found; install Xcode"):
        require_xcode("mobileisp devices --apple")


def test_command_line_tools_only_is_refused(fake_xcode, monkeypatch):
    monkeypatch.setenv("FAKE_XCODE_DEVELOPER_DIR", "/Library/Developer/CommandLineTools")
    with pytest.raises(PlatformError, match="Command Line Tools only.*sudo xcode-select -s /Applications/Xcode.app"):
        list_apple_devices()


# ------------------------------------------------------------------------------------- argument checks


@pytest.mark.parametrize("value, canonical", [("all", "all"), ("CPU", "cpu"), ("cpu_gpu", "cpu-gpu"), ("cpu-ne", "cpu-ne")])
def test_compute_units(value, canonical):
    assert check_compute_units(value) == canonical


def test_unknown_compute_units_list_the_choices():
    with pytest.raises(AppleBenchError, match="unknown compute units 'npu'; use one of all, cpu, cpu-gpu, cpu-ne"):
        check_compute_units("npu")


@pytest.mark.parametrize(
    "spec, parsed",
    [("mac", ("mac", None)), ("MAC", ("mac", None)), ("iphone", ("iphone", None)), (f"iphone:{IPHONE_UDID}", ("iphone", IPHONE_UDID))],
)
def test_parse_apple_device(spec, parsed):
    assert parse_apple_device(spec) == parsed


@pytest.mark.parametrize("spec", ["pixel", "iphone:", "mac:123", "ipad"])
def test_parse_apple_device_rejects_others(spec):
    with pytest.raises(AppleBenchError, match="use mac, iphone or iphone:UDID"):
        parse_apple_device(spec)


def test_check_artefact(tmp_path):
    pkg = _fake_mlpackage(tmp_path)
    assert check_artefact(pkg) == pkg
    (tmp_path / "m.mlmodel").write_bytes(b"\x08\x04")
    assert check_artefact(tmp_path / "m.mlmodel") == tmp_path / "m.mlmodel"
    (tmp_path / "broken.mlpackage").mkdir()
    with pytest.raises(AppleBenchError, match="not a valid .mlpackage"):
        check_artefact(tmp_path / "broken.mlpackage")
    (tmp_path / "m.tflite").write_bytes(b"TFL3")
    with pytest.raises(AppleBenchError, match="not a Core ML model"):
        check_artefact(tmp_path / "m.tflite")
    with pytest.raises(AppleBenchError, match="no such Core ML model"):
        check_artefact(tmp_path / "gone.mlpackage")


@pytest.mark.parametrize(
    "name, meta, identity",
    [
        ("liteisp-mobile-int8.mlpackage", None, ("liteisp-mobile", "int8")),
        ("cameranet_FP16.mlpackage", {}, ("cameranet", "fp16")),
        ("whatever.mlpackage", {"mobileisp.model": "deepisp-mobile", "mobileisp.precision": "w8a8"}, ("deepisp-mobile", "w8a8")),
        ("x-fp32.mlpackage", {"mobileisp": json.dumps({"model": "paramisp", "precision": "fp16"}), "model": "other"}, ("paramisp", "fp16")),
        ("custom.mlmodel", {"com.github.apple.coremltools.version": "9.0"}, ("custom", "unknown")),
    ],
)
def test_artefact_identity(name, meta, identity):
    assert artefact_identity(Path("out") / name, meta) == identity


# ---------------------------------------------------------------------------------- command construction


def test_xcodebuild_command_keeps_paths_with_spaces_as_single_arguments():
    bundle = Path("/Users/ada/My Bench/run 1/MobileISPBench.xcresult")
    derived = Path("/Users/ada/My Bench/run 1/Derived Data")
    argv = xcode.xcodebuild_test_command(IPHONE_UDID, bundle, derived)
    assert argv == [
        "xcodebuild", "test", "-scheme", "MobileISPBench", "-destination", f"platform=iOS,id={IPHONE_UDID}",
        "-resultBundlePath", str(bundle), "-derivedDataPath", str(derived),
    ]
    shown = xcode.format_command(argv)
    assert "'/Users/ada/My Bench/run 1/MobileISPBench.xcresult'" in shown
    assert shlex.split(shown) == argv


def test_xcodebuild_command_with_team_signs_automatically():
    argv = xcode.xcodebuild_test_command(IPHONE_UDID, "b.xcresult", "dd", team="A1B2C3D4E5")
    assert argv[-3:] == ["-allowProvisioningUpdates", "DEVELOPMENT_TEAM=A1B2C3D4E5", "CODE_SIGN_STYLE=Automatic"]


def test_runner_env_is_prefixed_for_xcodebuild():
    assert xcode.runner_env("it's a model.mlpackage", "cpu-ne", 3, 50) == {
        "TEST_RUNNER_MOBILEISP_MODEL": "it's a model.mlpackage",
        "TEST_RUNNER_MOBILEISP_COMPUTE_UNITS": "cpu-ne",
        "TEST_RUNNER_MOBILEISP_WARMUP": "3",
        "TEST_RUNNER_MOBILEISP_RUNS": "50",
    }


def test_xcrun_commands():
    b, out = Path("/tmp/a b/B.xcresult"), Path("/tmp/a b/att")
    assert xcresult.summary_command(b) == ["xcrun", "xcresulttool", "get", "test-results", "summary", "--path", str(b), "--compact"]
    assert xcresult.export_attachments_command(b, out) == [
        "xcrun", "xcresulttool", "export", "attachments", "--path", str(b), "--output-path", str(out)]
    assert dev.devicectl_list_command(out / "d.json") == [
        "xcrun", "devicectl", "list", "devices", "--timeout", "10", "--json-output", str(out / "d.json")]
    assert dev.xctrace_list_command() == ["xcrun", "xctrace", "list", "devices"]


def test_swift_package_and_python_agree_on_names():
    swift = (xcode.PACKAGE_DIR / "Sources" / "MobileISPBench" / "Bench.swift").read_text()
    tests = (xcode.PACKAGE_DIR / "Tests" / "MobileISPBenchTests" / "BenchTests.swift").read_text()
    package = (xcode.PACKAGE_DIR / "Package.swift").read_text()
    assert f'name: "{xcode.SCHEME}"' in package and '.copy("Resources")' in package
    assert xcresult.RESULT_SCHEMA in swift and f'"{xcresult.RESULT_ATTACHMENT}"' in tests
    for units in ("all", "cpu", "cpu-gpu", "cpu-ne"):
        assert f'"{units}"' in swift or f"case {units}\n" in swift
    for key in ("MOBILEISP_MODEL", "MOBILEISP_COMPUTE_UNITS", "MOBILEISP_WARMUP", "MOBILEISP_RUNS"):
        assert f"TEST_RUNNER_{key}" in xcode.runner_env("m", "all", 1, 1) and f'"{key}"' in swift
    for key in ("compile_ms", "load_ms", "runs_ms", "warmup_ms", "os_version", "compute_units", "model_file"):
        assert f'"{key}"' in swift and key in RECORDED
    assert (xcode.PACKAGE_DIR / xcode.RESOURCES).is_dir()


# ------------------------------------------------------------------------------- parsers on recordings


def test_parse_devicectl_fixture():
    devices = dev.parse_devicectl_devices(_text("devicectl_list_devices.json"))
    by_name = {d["name"]: d for d in devices}
    assert list(by_name) == ["Ada's iPhone", "Studio iPad", "Test iPhone 12", "Ada's Apple Watch"]
    phone = by_name["Ada's iPhone"]
    assert phone == {
        "name": "Ada's iPhone", "udid": IPHONE_UDID, "identifier": "4A7D1E52-93C6-4B0F-8E21-6D5C3B9A7F10",
        "model": "iPhone 15 Pro", "product_type": "iPhone16,1", "soc": "Apple A17 Pro", "platform": "iOS",
        "os_version": "17.5.1", "kind": "device", "state": "connected", "developer_mode": "enabled", "transport": "wired",
        "source": "devicectl", "device_arg": f"iphone:{IPHONE_UDID}",
    }
    assert [by_name[n]["state"] for n in ("Studio iPad", "Test iPhone 12", "Ada's Apple Watch")] == ["offline", "unpaired", "available"]
    assert by_name["Test iPhone 12"]["soc"] == "Apple A14 Bionic"
    assert by_name["Ada's Apple Watch"]["device_arg"] is None  # watchOS cannot run the benchmark


def test_parse_devicectl_failure_and_garbage():
    failed = {"error": {"code": 1000, "domain": "com.apple.dt.CoreDeviceError",
                        "userInfo": {"NSLocalizedDescription": {"string": "The specified device was not found."}}},
              "info": {"outcome": "failed"}}
    with pytest.raises(AppleBenchError, match="list devices failed: The specified device was not found."):
        dev.parse_devicectl_devices(json.dumps(failed))
    with pytest.raises(AppleBenchError, match="no JSON device list"):
        dev.parse_devicectl_devices("Devices:\nName Hostname")
    with pytest.raises(AppleBenchError, match="no result.devices"):
        dev.parse_devicectl_devices('{"info": {"outcome": "success"}, "result": []}')


def test_parse_xctrace_fixture():
    devices = dev.parse_xctrace_devices(_text("xctrace_list_devices.txt"))
    rows = [(d["name"], d["os_version"], d["udid"], d["kind"], d["state"], d["device_arg"]) for d in devices]
    assert rows == [
        ("Ada’s MacBook Pro", None, "00006000-001A2B3C4D5E801E", "mac", "available", "mac"),
        ("Ada's iPhone", "17.5.1", IPHONE_UDID, "device", "available", f"iphone:{IPHONE_UDID}"),
        ("Studio iPad", "17.4.1", "00008103-000A1B2C3D4E5F6A", "device", "offline", "iphone:00008103-000A1B2C3D4E5F6A"),
        ("iPad Pro (11-inch) (4th generation) Simulator", "17.5", "5C0B1D2E-3F40-4A51-8B62-7C83D94EA5F6", "simulator", "available", None),
        ("iPhone 15 Pro Simulator", "17.5", "9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A", "simulator", "available", None),
        ("iPhone 15 Pro Max Simulator", "17.5", "0D4C8B2A-6E1F-4A3B-9C5D-7E8F9A0B1C2D", "simulator", "available", None),
        ("iPhone SE (3rd generation) Simulator", "17.5", "1A2B3C4D-5E6F-4708-9A1B-2C3D4E5F6A7B", "simulator", "available", None),
    ]


def test_select_iphone_rules():
    listed = dev.parse_devicectl_devices(_text("devicectl_list_devices.json"))
    sims = [d for d in dev.parse_xctrace_devices(_text("xctrace_list_devices.txt")) if d["kind"] == "simulator"]
    assert dev.select_iphone(listed)["udid"] == IPHONE_UDID
    assert dev.select_iphone(listed, IPHONE_UDID)["name"] == "Ada's iPhone"
    assert dev.select_iphone(listed, "4A7D1E52-93C6-4B0F-8E21-6D5C3B9A7F10")["udid"] == IPHONE_UDID  # CoreDevice id
    cases = [
        ("00008103-000A1B2C3D4E5F6A", "Studio iPad (00008103-000A1B2C3D4E5F6A) is offline"),
        ("00008101-0019355E3C88001E", "does not trust this Mac yet"),
        ("00008301-0A1B2C3D4E5F6071", "is not an iOS device"),
        ("9F8E7D6C-5B4A-4392-8170-6F5E4D3C2B1A", "is a simulator; benchmarks need a physical iPhone"),
        ("00008000-FFFFFFFFFFFFFFFF", "no Apple device with UDID 00008000-FFFFFFFFFFFFFFFF"),
    ]
    for udid, words in cases:
        with pytest.raises(AppleBenchError, match=words.replace("(", r"\(").replace(")", r"\)")):
            dev.select_iphone(listed + sims, udid)
    second = {**listed[2], "name": "Lab iPhone", "udid": "00008110-000E1D2C3B4A5968", "state": "connected"}
    with pytest.raises(AppleBenchError, match=r"2 iOS devices are connected: Ada's iPhone \(00008130.*Lab iPhone .*iphone:UDID"):
        dev.select_iphone(listed + [second])
    locked = [{**listed[0], "developer_mode": "disabled"}]
    with pytest.raises(AppleBenchError, match="Developer Mode off"):
        dev.select_iphone(locked)
    with pytest.raises(AppleBenchError, match="offline"):
        dev.select_iphone([listed[1]])


def test_parse_test_summaries():
    ok = xcresult.parse_test_summary(_text("xcresult_summary_passed.json"))
    assert ok == {"result": "Passed", "passed": 1, "failed": 0, "failures": [], "device": {
        "name": "Ada's iPhone", "model": "iPhone 15 Pro", "os_version": "17.5.1", "platform": "iOS", "id": IPHONE_UDID}}
    bad = xcresult.parse_test_summary(_text("xcresult_summary_failed.json"))
    assert bad["result"] == "Failed" and bad["failed"] == 1
    assert bad["failures"] == ['testBenchmarkModel(): XCTUnwrap failed: expected non-nil value of type "URL" - put one '
                               ".mlpackage or .mlmodel in Tests/MobileISPBenchTests/Resources (or set MOBILEISP_MODEL)"]


def test_find_result_attachment_through_the_manifest(tmp_path):
    (tmp_path / "manifest.json").write_text(_text("attachments_manifest.json"))
    with pytest.raises(AppleBenchError, match="holds no mobileisp-bench-result attachment"):
        xcresult.find_result_attachment(tmp_path)  # listed but not exported
    exported = tmp_path / "6F1B2C3D-4E5A-4B6C-8D7E-9F0A1B2C3D4E.json"
    exported.write_text(_text("bench_result_iphone15pro.json"))
    assert xcresult.find_result_attachment(tmp_path) == exported
    with pytest.raises(AppleBenchError, match="no manifest.json"):
        xcresult.find_result_attachment(tmp_path / "nowhere")


def test_attachment_names_cannot_leave_the_export_folder(tmp_path):
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    export = tmp_path / "export"
    export.mkdir()
    manifest = json.loads(_text("attachments_manifest.json"))
    manifest[0]["attachments"][0]["exportedFileName"] = "../secret.json"
    (export / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(AppleBenchError):
        xcresult.find_result_attachment(export)


def test_device_result_becomes_a_bench_result():
    data = xcresult.parse_device_result(_text("bench_result_iphone15pro.json"))
    device = dev.parse_devicectl_devices(_text("devicectl_list_devices.json"))[0]
    r = xcresult.device_result_to_bench(data, "out/liteisp-mobile-fp16.mlpackage", device)
    runs = RECORDED["runs_ms"]
    assert (r.model, r.precision, r.format, r.runtime) == ("liteisp-mobile", "fp16", "coreml", "coreml")
    assert (r.device, r.soc, r.os_version, r.accelerator) == ("iPhone 15 Pro", "Apple A17 Pro", "iOS 17.5.1", "cpu-ne")
    assert (r.warmup, r.runs, r.input_shape) == (5, 20, (1, 4, 256, 256))
    assert r.ms_median == pytest.approx(np.median(runs)) and r.ms_p90 == pytest.approx(np.percentile(runs, 90))
    assert r.ms_mean == pytest.approx(np.mean(runs)) and r.ms_min == min(runs) and r.ms_std == pytest.approx(np.std(runs))
    assert r.load_ms == pytest.approx(412.87 + 186.34)
    assert r.notes == f"compile 412.9 ms; load 186.3 ms; first prediction 14.8 ms; iPhone16,1 udid {IPHONE_UDID}"
    bare = xcresult.device_result_to_bench(data, "renamed.mlpackage")  # no device entry: identifier; metadata names the model
    assert (bare.device, bare.soc, bare.model) == ("iPhone16,1", "Apple A17 Pro", "liteisp-mobile")


@pytest.mark.parametrize(
    "change, words",
    [
        ({"schema": "mobileisp.ios_bench.result/0"}, "schema 'mobileisp.ios_bench.result/0'"),
        ({"runs": 21}, "20 run times for runs = 21"),
        ({"runs_ms": RECORDED["runs_ms"][:-1] + [-1.0]}, "negative or non-finite"),
        ({"runs_ms": "fast"}, "runs_ms must be numbers"),
        ({"runs": "20"}, "runs must be a non-negative integer"),
        ({"compile_ms": "slow"}, "compile_ms must be numbers"),
        ({"warmup": 4}, "5 warm-up times for warmup = 4"),
        ({"compute_units": "ane"}, "unknown compute units 'ane'"),
        ({"inputs": []}, "inputs must be a non-empty list"),
    ],
)
def test_device_result_validation(change, words):
    bad = {**RECORDED, **change}
    with pytest.raises(AppleBenchError) as e:
        xcresult.parse_device_result(json.dumps(bad))
    assert words in str(e.value)


def test_device_result_missing_keys():
    bad = {k: v for k, v in RECORDED.items() if k not in ("load_ms", "device")}
    with pytest.raises(AppleBenchError, match="lacks device, load_ms"):
        xcresult.parse_device_result(json.dumps(bad))


@pytest.mark.parametrize("log, line", [
    ("xcodebuild_signing_failed.log", 'Signing for "MobileISPBenchTests" requires a development team. Select a development team'
                                      " in the Signing & Capabilities editor. (in target 'MobileISPBenchTests' from project 'MobileISPBench')"),
    ("xcodebuild_test_failed.log", "-[MobileISPBenchTests.BenchTests testBenchmarkModel] : failed: caught error: \"boom\""),
])
def test_failure_line_of_recorded_logs(log, line):
    assert xcode._failure_line(_text(log).replace("@FAILURE@", 'failed: caught error: "boom"')) == line


# ------------------------------------------------------------------------------- Mac runner, pure parts


def test_time_predictions_counts_and_times_calls():
    calls = []
    inputs = make_inputs([("raw", (1, 4, 8, 8), np.dtype(np.float16)), ("white_balance", (1, 3), np.dtype(np.float32))])

    def predict(feed):
        calls.append(feed)
        return {"srgb": np.zeros((1, 3, 16, 16), np.float32)}

    warm, timed = time_predictions(predict, inputs, warmup=2, runs=5)
    assert len(calls) == 7 and all(c is inputs for c in calls)
    assert len(warm) == 2 and len(timed) == 5 and all(0 <= t < 1000 for t in warm + timed)


def test_make_inputs_match_the_spec_and_are_deterministic():
    io = [("raw", (1, 4, 16, 16), np.dtype(np.float16)), ("iso", (1, 1), np.dtype(np.float32))]
    a, b = make_inputs(io), make_inputs(io)
    assert a["raw"].dtype == np.float16 and a["raw"].shape == (1, 4, 16, 16) and a["iso"].dtype == np.float32
    assert 0.0 <= a["raw"].min() and a["raw"].max() < 1.0 and a["raw"].std() > 0.2
    assert all(np.array_equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_mac_path_on_a_real_mlpackage(tmp_path, monkeypatch):
    """coremltools (Linux wheel) writes an .mlpackage; its spec gives the benchmark's input names and shapes.
    With the platform patched to macOS the Mac runner gets as far as Core ML's predict, which the Linux
    wheel cannot run: that failure must come out as one line."""
    import coremltools as ct
    from coremltools.converters.mil import Builder as mb

    from mobileisp.ios_bench.local import coreml_inputs

    @mb.program(input_specs=[mb.TensorSpec(shape=(1, 4, 8, 8)), mb.TensorSpec(shape=(1, 3))], opset_version=ct.target.iOS16)
    def prog(raw, white_balance):
        return mb.mul(x=raw, y=2.0, name="srgb")

    model = ct.convert(prog, convert_to="mlprogram", minimum_deployment_target=ct.target.iOS16)
    model.user_defined_metadata["mobileisp.model"] = "tiny"
    model.user_defined_metadata["mobileisp.precision"] = "fp16"
    path = tmp_path / "with space" / "tiny-fp16.mlpackage"
    path.parent.mkdir()
    model.save(str(path))
    assert check_artefact(path) == path
    spec = ct.utils.load_spec(str(path))
    assert coreml_inputs(spec) == [("raw", (1, 4, 8, 8), np.dtype(np.float32)), ("white_balance", (1, 3), np.dtype(np.float32))]
    assert artefact_identity(path, dict(spec.description.metadata.userDefined)) == ("tiny", "fp16")

    monkeypatch.setattr(sys, "platform", "darwin")
    good = {"raw": np.zeros((1, 4, 8, 8), np.float32), "white_balance": np.ones((1, 3), np.float32)}
    with pytest.raises(AppleBenchError, match=r"sample 0 lacks input\(s\) white_balance of tiny-fp16.mlpackage"):
        validate_coreml_on_mac(path, [{"raw": good["raw"]}])
    with pytest.raises(AppleBenchError, match=r"sample 1 has the wrong shape .* raw \(1, 4, 16, 16\) != \(1, 4, 8, 8\)"):
        validate_coreml_on_mac(path, [good, {**good, "raw": np.zeros((1, 4, 16, 16))}], "cpu")
    for units in ("cpu", "cpu-ne"):  # the Linux wheel fails at load (cpu-ne) or at predict (cpu)
        with pytest.raises(AppleBenchError) as e:
            bench_apple(path, "mac", units, warmup=1, runs=2)
        assert re.match(r"Core ML (could not load .*/tiny-fp16\.mlpackage|prediction failed on tiny-fp16\.mlpackage): \S", str(e.value))
        assert "\n" not in str(e.value)


# ---------------------------------------------------------------- iPhone end to end, emulated Xcode tools


@pytest.fixture
def fake_xcode(tmp_path, monkeypatch):
    """macOS with xcodebuild/xcrun/xcode-select replaced by the emulator replaying the recordings."""
    bin_dir = tmp_path / "fake bin"
    bin_dir.mkdir()
    for tool in ("xcrun", "xcodebuild", "xcode-select"):
        script = bin_dir / tool
        script.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} {shlex.quote(str(FIXTURES / "fake_xcode_tools.py"))} {tool} "$@"\n')
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
    monkeypatch.setattr(sys, "platform", "darwin")
    monkeypatch.setenv(xcode.TEAM_ENV, "A1B2C3D4E5")
    for var in ("FAKE_XCODE_NO_DEVICECTL", "FAKE_XCODE_DEVELOPER_DIR"):
        monkeypatch.delenv(var, raising=False)
    return tmp_path


def test_list_devices_through_devicectl(fake_xcode):
    devices = list_apple_devices()
    assert [d["kind"] for d in devices] == ["mac", "device", "device", "device", "device"]
    assert [d["device_arg"] for d in devices][:2] == ["mac", f"iphone:{IPHONE_UDID}"]
    assert devices[1]["model"] == "iPhone 15 Pro" and devices[1]["source"] == "devicectl"


def test_list_devices_falls_back_to_xctrace(fake_xcode, monkeypatch):
    monkeypatch.setenv("FAKE_XCODE_NO_DEVICECTL", "1")
    devices = list_apple_devices()
    assert [d["source"] for d in devices] == ["xctrace"] * 7
    assert [d["kind"] for d in devices].count("simulator") == 4 and devices[0]["kind"] == "mac"


def test_bench_iphone_end_to_end(fake_xcode):
    artefact = _fake_mlpackage(fake_xcode / "my models")
    work = fake_xcode / "iphone work"
    r = bench_apple(artefact, "iphone", "cpu-ne", warmup=3, runs=7, work_dir=work)
    runs = RECORDED["runs_ms"][:7]
    assert r.samples_ms == runs and (r.warmup, r.runs) == (3, 7)
    assert r.ms_median == pytest.approx(np.median(runs)) and r.ms_p90 == pytest.approx(np.percentile(runs, 90))
    assert (r.device, r.soc, r.os_version, r.accelerator, r.format) == ("iPhone 15 Pro", "Apple A17 Pro", "iOS 17.5.1", "cpu-ne", "coreml")
    assert (r.model, r.precision, r.artefact) == ("liteisp-mobile", "fp16", str(artefact))
    assert r.notes.endswith(f"iPhone16,1 udid {IPHONE_UDID}")
    staged = work / "MobileISPBench" / xcode.RESOURCES / artefact.name
    assert (staged / "Manifest.json").is_file()
    assert sorted(p.name for p in (xcode.PACKAGE_DIR / xcode.RESOURCES).iterdir()) == ["README.md"]  # source untouched
    log = (work / "xcodebuild.log").read_text()
    assert log.startswith("$ xcodebuild test -scheme MobileISPBench -destination platform=iOS,id=" + IPHONE_UDID)
    assert "** TEST SUCCEEDED **" in log and "[cpu-ne] median 2.94 ms over 7 runs" in log
    # The kept result bundle can be read again on its own (e.g. after running the test from Xcode's UI).
    again = xcode.bench_result_from_xcresult(work / "MobileISPBench.xcresult", artefact)
    assert again.samples_ms == runs and again.device == "iPhone 15 Pro"
    # A second run in the same work folder replaces the staged package and bundle.
    assert bench_apple(artefact, f"iphone:{IPHONE_UDID}", "all", warmup=0, runs=25, work_dir=work).samples_ms[20:] == RECORDED["runs_ms"][:5]


def test_bench_iphone_cleans_its_temporary_folder(fake_xcode, monkeypatch):
    tmp = fake_xcode / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    r = bench_apple(_fake_mlpackage(fake_xcode), "iphone", "cpu", warmup=1, runs=3)
    assert r.runs == 3 and r.accelerator == "cpu"
    assert list(tmp.iterdir()) == []


def test_bench_iphone_without_signing_team_says_what_to_set(fake_xcode, monkeypatch):
    monkeypatch.delenv(xcode.TEAM_ENV)
    work = fake_xcode / "work"
    with pytest.raises(AppleBenchError) as e:
        bench_apple(_fake_mlpackage(fake_xcode), "iphone", "all", 1, 1, work_dir=work)
    message = str(e.value)
    assert message.startswith("xcodebuild test failed on Ada's iPhone: Signing for \"MobileISPBenchTests\" requires a development team")
    assert f"(set {xcode.TEAM_ENV} to your team ID)" in message and f"work folder kept: {work}" in message
    assert "\n" not in message and "** TEST FAILED **" in (work / "xcodebuild.log").read_text()


def test_bench_iphone_reports_the_test_failure(fake_xcode, monkeypatch):
    real = xcode.runner_env
    monkeypatch.setattr(xcode, "runner_env", lambda *a: {**real(*a), "TEST_RUNNER_MOBILEISP_MODEL": "other.mlpackage"})
    with pytest.raises(AppleBenchError, match=r"failed on Ada's iPhone: testBenchmarkModel\(\): XCTUnwrap failed"):
        bench_apple(_fake_mlpackage(fake_xcode), "iphone", "all", 1, 1, work_dir=fake_xcode / "w")


def test_bench_iphone_refuses_an_offline_device_before_building(fake_xcode):
    work = fake_xcode / "work"
    with pytest.raises(AppleBenchError, match=r"Studio iPad \(00008103-000A1B2C3D4E5F6A\) is offline"):
        bench_apple(_fake_mlpackage(fake_xcode), "iphone:00008103-000A1B2C3D4E5F6A", "all", 1, 1, work_dir=work)
    assert not work.exists()


def test_bench_iphone_checks_arguments_before_devices(fake_xcode):
    with pytest.raises(AppleBenchError, match="need warmup >= 0 and runs >= 1"):
        bench_apple(_fake_mlpackage(fake_xcode), "iphone", "all", 1, 0)
    with pytest.raises(AppleBenchError, match="holds the MobileISPBench sources"):
        bench_apple(_fake_mlpackage(fake_xcode / "m"), "iphone", "all", 1, 1, work_dir=xcode.PACKAGE_DIR.parent)
    assert sorted(p.name for p in (xcode.PACKAGE_DIR / xcode.RESOURCES).iterdir()) == ["README.md"]
    (fake_xcode / "model.onnx").write_bytes(b"\x08\x07")
    with pytest.raises(AppleBenchError, match="not a Core ML model"):
        bench_apple(fake_xcode / "model.onnx", "iphone", "all", 1, 1)
