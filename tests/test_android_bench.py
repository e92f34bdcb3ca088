"""``mobileisp bench ART.tflite --device pixel|SERIAL`` end to end against the phone emulator (tests/fakes).

The emulator is a fake ``adb`` executable: it keeps each phone's file system in a temp folder, answers getprop,
dumpsys, cmd power, taskset, ... and its ``benchmark_model`` runs the pushed .tflite with the LiteRT interpreter on
this host, printing the real tool's log. Nothing in mobileisp knows it is not talking to a phone.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from fakes.adb_emulator import GALAXY_S24, PIXEL_8, FakeAdb, benchmark_binary, phone
from mobileisp.android_bench import bench_android
from mobileisp.cli import main

pytestmark = pytest.mark.slow  # exports two small .tflite files (about 30 s) once for the module


@pytest.fixture(scope="module")
def artefacts(tmp_path_factory):
    """liteisp-mobile fp32 and int8 .tflite at 64x64, in a folder whose name has spaces and quotes."""
    from mobileisp.export.pipeline import export

    out = tmp_path_factory.mktemp("art") / 'my "models"'
    out.mkdir()
    export("liteisp-mobile", "tflite", ["fp32", "int8"], size=(64, 64), out_dir=out, calib=8, validate_n=2)
    renamed = {}
    for prec in ("fp32", "int8"):
        src = out / f"liteisp-mobile-{prec}.tflite"
        dst = out / f"it's {prec}.tflite"
        shutil.move(src, dst)
        renamed[prec] = dst
    return renamed


@pytest.fixture
def binary(tmp_path):
    return benchmark_binary(tmp_path)


def _host_parity(artefact: Path) -> float:
    """PSNR of the host LiteRT output vs the PyTorch reference on the first held-out image (what the phone gets)."""
    from mobileisp.export.artefact import read_metadata
    from mobileisp.export.calibrate import evaluation_set
    from mobileisp.export.pipeline import load_reference, weights_for_artefact
    from mobileisp.export.tflite import TFLiteRunner
    from mobileisp.metrics import psnr
    from mobileisp.models import get_spec

    meta = read_metadata(artefact)
    spec = get_spec(meta["model"])
    case = evaluation_set(spec, 1, tuple(meta["size"]))
    model, _ = load_reference(spec, weights_for_artefact(meta))
    with torch.no_grad():
        ref = model(case.inputs["raw"]).clamp(0, 1)
    out = torch.from_numpy(np.clip(TFLiteRunner(artefact)(case.numpy()), 0, 1))
    return float(psnr(out, ref).mean())


def _tmp_left(fake: FakeAdb, serial: str) -> list[str]:
    return sorted(p.name for p in (fake.fs(serial) / "data/local/tmp").iterdir())


def _cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ------------------------------------------------------------------------------------------------ happy paths


def test_bench_pixel_reports_what_the_phone_measured(artefacts, binary, tmp_path):
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8])
    bench = bench_android(artefacts["int8"], "pixel", adb=fake.executable, benchmark_model=binary, runs=8, warmup=2,
                          min_secs=0.0)
    runs = fake.benchmarks(PIXEL_8.serial)
    rows = bench.results
    # Pixel 8 runs Android 14: CPU (XNNPACK), GPU (fp32 and fp16 compute) and NNAPI (still present up to API 34)
    assert [r.accelerator for r in rows] == ["cpu", "gpu", "gpu-fp16", "nnapi"]
    assert len(runs) == 4
    for row, run in zip(rows, runs):
        assert row.device == "Pixel 8" and row.soc == PIXEL_8.props["ro.soc.model"]
        assert row.os_version == f"Android {PIXEL_8.props['ro.build.version.release']}"
        assert row.runs == len(run["timed_us"]) and row.runs >= 8
        assert row.ms_mean == pytest.approx(run["avg"] / 1e3, rel=1e-5)
        assert row.ms_median == pytest.approx(run["median"] / 1e3, rel=1e-6)
        assert row.ms_min == pytest.approx(min(run["timed_us"]) / 1e3, abs=1e-3)
        assert row.threads == 5 and "taskset 1f0" in row.notes  # Tensor G3: A715 x4 + X3
        assert run["taskset"] == "1f0" and run["threads"] == 5
    assert [r.delegation for r in rows] == ["full", "full", "full", "partial"]  # NNAPI leaves ops on the CPU
    # on-device parity is the phone's own output, decoded and compared like `validate`
    host = _host_parity(artefacts["int8"])
    assert rows[0].parity_psnr_db == pytest.approx(host, abs=0.5)
    for acc, parity in bench.parity.items():
        assert parity["floor_db"] == 32.0 and parity["passed"], acc
        assert parity["psnr_db"] >= 32.0 and abs(parity["task_psnr_db"] - parity["reference_task_psnr_db"]) < 1.0
    # everything pushed was removed, fixed-performance mode was switched on and back off
    assert _tmp_left(fake, PIXEL_8.serial) == []
    lines = fake.shell_lines(PIXEL_8.serial)
    assert "cmd power set-fixed-performance-mode-enabled true" in lines
    assert lines[-2:] == ["cmd power set-fixed-performance-mode-enabled false", lines[-1]]
    assert lines[-1].startswith("rm -rf /data/local/tmp/mobileisp-")


def test_paths_with_spaces_and_quotes_reach_the_phone_intact(artefacts, binary, tmp_path):
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8])
    bench_android(artefacts["fp32"], "pixel", adb=fake.executable, benchmark_model=binary, accelerators=["cpu"],
                  runs=3, warmup=1, min_secs=0.0)
    run = fake.benchmarks(PIXEL_8.serial)[0]
    graph = next(a for a in run["argv"] if a.startswith("--graph="))
    assert graph.endswith("/it's fp32.tflite")
    pushes = [c for c in fake.calls() if "push" in c]
    assert any(c[-2] == str(artefacts["fp32"]) for c in pushes)  # the host path went to adb as one argument


def test_fp32_parity_on_the_phone_matches_the_host(artefacts, binary, tmp_path):
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8])
    bench = bench_android(artefacts["fp32"], PIXEL_8.serial, adb=fake.executable, benchmark_model=binary,
                          accelerators=["cpu", "gpu-fp16"], runs=3, warmup=1, min_secs=0.0)
    assert bench.parity["cpu"]["psnr_db"] > 100 and bench.parity["cpu"]["floor_db"] == 60.0
    # the GPU's default fp16 compute is held to the fp16 floor
    assert bench.parity["gpu-fp16"]["floor_db"] == 45.0


def test_cli_bench_writes_json_that_report_reads(artefacts, binary, tmp_path, capsys):
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8, GALAXY_S24])
    out = tmp_path / "pixel.json"
    code, stdout, err = _cli(capsys, "bench", artefacts["int8"], "--device", "pixel", "--adb", fake.executable,
                             "--benchmark-model", binary, "--accelerator", "cpu,gpu", "--runs", "4", "--warmup", "1",
                             "--min-secs", "0", "-o", out)
    assert code == 0, err
    assert "Pixel 8" in stdout and "parity on the phone (cpu)" in stdout
    data = json.loads(out.read_text())
    assert [r["accelerator"] for r in data["results"]] == ["cpu", "gpu"]
    assert data["device"]["serial"] == PIXEL_8.serial and data["device"]["profile"] == "pixel"
    assert len(fake.benchmarks(GALAXY_S24.serial)) == 0  # the other phone was left alone
    code, stdout, err = _cli(capsys, "report", out, "-o", tmp_path / "report")
    assert code == 0, err
    table = (tmp_path / "report" / "bench.md").read_text()
    assert "benchmark_model" in table and "Pixel 8" in table and "p95 ms" in table


def test_snapdragon_runs_the_qnn_htp_delegate_when_its_libraries_are_on_the_phone(artefacts, binary, tmp_path):
    libs = {"/data/local/tmp/qnn/libQnnTFLiteDelegate.so": b"qnn", "/data/local/tmp/qnn/libQnnHtp.so": b"htp"}
    s24 = phone(GALAXY_S24, files={**GALAXY_S24.files, **libs})
    fake = FakeAdb(tmp_path / "adb", [s24])
    bench = bench_android(artefacts["int8"], "snapdragon", adb=fake.executable, benchmark_model=binary,
                          accelerators=["qnn-htp"], runs=3, warmup=1, min_secs=0.0)
    run = fake.benchmarks(s24.serial)[0]
    assert bench.results[0].delegation == "full"
    assert any(a.startswith("--external_delegate_path=/data/local/tmp/qnn/libQnnTFLiteDelegate.so") for a in run["argv"])
    assert run["env"]["LD_LIBRARY_PATH"].startswith("/data/local/tmp/qnn")


def test_preinstalled_benchmark_model_is_used_and_kept(artefacts, tmp_path):
    pixel = phone(PIXEL_8, faults={"preinstalled_benchmark_model": True})
    fake = FakeAdb(tmp_path / "adb", [pixel])
    bench = bench_android(artefacts["fp32"], "pixel", adb=fake.executable, accelerators=["cpu"], runs=3, warmup=1,
                          min_secs=0.0, parity=False)
    assert bench.results[0].parity_psnr_db is None and not bench.parity
    assert fake.benchmarks(pixel.serial)[0]["argv"][0] == "/data/local/tmp/benchmark_model"
    assert _tmp_left(fake, pixel.serial) == ["benchmark_model"]


def test_cools_down_before_running_and_tolerates_no_fixed_performance_mode(artefacts, binary, tmp_path):
    hot = phone(PIXEL_8, thermal=[3, 2, 0], fixed_performance=False)
    fake = FakeAdb(tmp_path / "adb", [hot])
    bench = bench_android(artefacts["fp32"], "pixel", adb=fake.executable, benchmark_model=binary, accelerators=["cpu"],
                          runs=3, warmup=1, min_secs=0.0, cooldown_poll_s=0.01)
    assert any(n.startswith("waited") and "thermal status <= 0" in n for n in bench.notes)
    assert any("fixed-performance mode not available" in n for n in bench.notes)
    assert sum(line == "dumpsys thermalservice" for line in fake.shell_lines(hot.serial)) == 3


def test_devices_lists_phones_with_their_profiles(tmp_path, capsys):
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8, GALAXY_S24, phone(PIXEL_8, serial="0B261FDD4001Z3", state="unauthorized")])
    code, stdout, err = _cli(capsys, "devices", "--adb", fake.executable, "--json")
    assert code == 0, err
    rows = {d["serial"]: d for d in json.loads(stdout)["devices"]}
    assert rows[PIXEL_8.serial]["profile"] == "pixel" and rows[GALAXY_S24.serial]["profile"] == "snapdragon"
    assert rows["0B261FDD4001Z3"]["state"] == "unauthorized"


# ------------------------------------------------------------------------------------------------ faults


FAULTS = {
    "offline": ([phone(PIXEL_8, state="offline")], "pixel", {}, "offline"),
    "unauthorized": ([phone(PIXEL_8, state="unauthorized")], "pixel", {}, "unauthorized"),
    "two phones, no serial": ([PIXEL_8, phone(PIXEL_8, serial="0B261FDD4001Z3")], "pixel", {}, "--device"),
    "serial not connected": ([PIXEL_8], "ZZ999", {}, "ZZ999"),
    "disconnect mid-run": ([phone(PIXEL_8, faults={"disconnect_after": 8})], "pixel", {}, "disconnected"),
    "benchmark crash": ([phone(PIXEL_8, faults={"benchmark_crash": True})], "pixel", {}, "SIGSEGV"),
    "unparsable output": ([phone(PIXEL_8, faults={"benchmark_garbage": True})], "pixel", {}, "benchmark_model"),
    "missing benchmark binary": ([PIXEL_8], "pixel", {"no_binary": True}, "--benchmark-model"),
    "partial delegation refused": ([PIXEL_8], "pixel", {"args": ["--accelerator", "nnapi", "--require-full-delegation"]},
                                   "--require-full-delegation"),
    "unknown accelerator": ([PIXEL_8], "pixel", {"args": ["--accelerator", "hexagon"]}, "hexagon"),
}


@pytest.mark.parametrize("case", list(FAULTS))
def test_each_fault_ends_in_one_line_and_exit_2(case, artefacts, binary, tmp_path, capsys):
    phones, device, opts, expected = FAULTS[case]
    fake = FakeAdb(tmp_path / "adb", phones)
    argv = ["bench", artefacts["int8"], "--device", device, "--adb", fake.executable, "--runs", "2", "--warmup", "0",
            "--min-secs", "0", *opts.get("args", [])]
    if not opts.get("no_binary"):
        argv += ["--benchmark-model", binary]
    code, stdout, err = _cli(capsys, *argv)
    assert code == 2, (case, err)
    lines = err.strip().splitlines()  # progress lines ("mobileisp: push ...") and then the one error line
    errors = [line for line in lines if line.startswith("mobileisp: error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], err
    assert expected in errors[0], errors[0]
    assert "Traceback" not in err and stdout == ""
    for p in phones:  # nothing left behind on a phone that can still be reached
        if p.state == "device" and "disconnect_after" not in p.faults:
            assert _tmp_left(fake, p.serial) == [], case


def test_missing_adb_is_one_line(artefacts, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("ADB", raising=False)
    monkeypatch.delenv("ANDROID_HOME", raising=False)
    monkeypatch.delenv("ANDROID_SDK_ROOT", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    code, stdout, err = _cli(capsys, "bench", artefacts["int8"], "--device", "pixel")
    assert code == 2 and err.count("\n") == 1 and "adb" in err


def test_adb_timeout_is_one_line(artefacts, binary, tmp_path):
    from mobileisp.android_bench.adb import AdbTimeoutError

    fake = FakeAdb(tmp_path / "adb", [phone(PIXEL_8, faults={"slow_shell_s": 5})])
    with pytest.raises(AdbTimeoutError) as info:
        bench_android(artefacts["int8"], "pixel", adb=fake.executable, benchmark_model=binary, timeout_s=1.0)
    assert "\n" not in str(info.value) and "1" in str(info.value)


def test_non_tflite_artefact_is_refused_before_adb(tmp_path, capsys):
    art = tmp_path / "m.onnx"
    art.write_bytes(b"x")
    code, _, err = _cli(capsys, "bench", art, "--device", "pixel", "--adb", tmp_path / "no-adb")
    assert code == 2 and ".tflite" in err


def test_on_device_parity_below_the_floor_exits_3_after_saving_the_numbers(artefacts, binary, tmp_path, capsys):
    """A reference the phone's output does not match (perturbed weights) must fail the run, not just be printed."""
    from safetensors.torch import load_file, save_file

    from mobileisp.models import get_spec

    state = load_file(get_spec("liteisp-mobile").weights_path())
    gen = torch.Generator().manual_seed(0)
    noisy = {k: v + 0.5 * v.std().nan_to_num() * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
             for k, v in state.items()}
    weights = tmp_path / "other.safetensors"
    save_file(noisy, weights)
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8])
    out = tmp_path / "pixel.json"
    code, stdout, err = _cli(capsys, "bench", artefacts["int8"], "--device", "pixel", "--adb", fake.executable,
                             "--benchmark-model", binary, "--accelerator", "cpu", "--runs", "2", "--min-secs", "0",
                             "--weights", weights, "-o", out)
    assert code == 3, err
    assert "BELOW FLOOR" in stdout and err.strip().splitlines()[-1].startswith("mobileisp: error: on-device parity below")
    saved = json.loads(out.read_text())
    assert saved["parity"]["cpu"]["passed"] is False and saved["parity"]["cpu"]["psnr_db"] < 32.0


def test_inverse_model_with_metadata_inputs_on_the_phone(binary, tmp_path):
    """paramisp-inverse-lite int8: sRGB plus three metadata tensors pushed as four input files, packed-RAW output
    decoded NHWC -> NCHW and held to the int8 floor like `validate` (no colour difference on RAW)."""
    from mobileisp.export.pipeline import export

    art = export("paramisp-inverse-lite", "tflite", ["int8"], size=(128, 128), out_dir=tmp_path / "art", calib=32,
                 validate_n=4)[0].artefact
    fake = FakeAdb(tmp_path / "adb", [PIXEL_8])
    bench = bench_android(art, "pixel", adb=fake.executable, benchmark_model=binary, accelerators=["cpu"], runs=3,
                          warmup=1, min_secs=0.0)
    run = fake.benchmarks(PIXEL_8.serial)[0]
    layers = next(a for a in run["argv"] if a.startswith("--input_layer="))
    from mobileisp.export.tflite import TFLiteRunner

    # benchmark_model binds inputs by position: the files follow the .tflite's input order, not the spec's
    assert layers.split("=", 1)[1].split(",") == [d["name"] for d in TFLiteRunner(art).inputs]
    assert {n.removeprefix("serving_default_").split(":")[0] for n in layers.split("=", 1)[1].split(",")} == {
        "srgb", "white_balance", "ccm", "optics"}
    parity = bench.parity["cpu"]
    assert parity["passed"] and parity["psnr_db"] >= parity["floor_db"] == 32.0
    assert parity["delta_e2000"] is None and parity["size"] == [128, 128]
    assert abs(parity["task_psnr_db"] - parity["reference_task_psnr_db"]) < 1.0
