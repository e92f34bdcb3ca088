"""Host runner: BenchResult rows for the artefact and, with compare, PyTorch eager and onnxruntime."""

from __future__ import annotations

import pytest

from mobileisp.bench import BenchResult
from mobileisp.export.artefact import ArtefactError
from mobileisp.export.pipeline import export
from mobileisp.host_bench import HostBenchError, bench_host


@pytest.fixture(scope="module")
def onnx_artefact(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    (result,) = export("liteisp-mobile", "onnx", "fp32", weights=None, size=(64, 64), validate_n=1, out_dir=out)
    return result.artefact


def test_onnx_artefact_gives_one_valid_row(onnx_artefact):
    run = bench_host(onnx_artefact, runs=4, warmup=1, threads=1)
    (row,) = run.results
    assert isinstance(row, BenchResult)
    assert (row.model, row.format, row.precision, row.runtime, row.device) == ("liteisp-mobile", "onnx", "fp32", "onnxruntime", "host")
    assert row.runs == 4 and row.warmup == 1 and len(row.samples_ms) == 4
    assert 0 < row.ms_min <= row.ms_median <= row.ms_p90
    assert row.input_shape == (1, 4, 32, 32) and row.threads == 1
    assert row.peak_memory_mb is not None and row.load_ms > 0
    assert row.parity_psnr_db > 100  # the ONNX graph is the reference network
    assert BenchResult.from_dict(row.to_dict()) == row
    assert run.speedup == {}


def test_compare_adds_torch_with_ratio(onnx_artefact):
    run = bench_host(onnx_artefact, runs=3, warmup=1, threads=1, compare=True)
    assert [r.runtime for r in run.results] == ["onnxruntime", "torch"]  # the artefact is already onnxruntime
    torch_row = run.results[1]
    assert torch_row.format == "torch" and torch_row.precision == "fp32"
    assert run.speedup["torch"] == pytest.approx(torch_row.ms_median / run.results[0].ms_median)
    assert "the speed of torch" in run.table()


def test_refusals(onnx_artefact, tmp_path):
    with pytest.raises(HostBenchError, match="runs >= 1"):
        bench_host(onnx_artefact, runs=0)
    fake = tmp_path / "m-fp16.mlpackage"
    fake.mkdir()
    with pytest.raises(ArtefactError):
        bench_host(fake)
    with pytest.raises(ArtefactError, match="no such artefact"):
        bench_host(tmp_path / "missing-int8.tflite")


@pytest.mark.slow
def test_tflite_with_compare_times_three_runtimes(tmp_path):
    (result,) = export("liteisp-mobile", "tflite", "fp32", weights=None, size=(64, 64), validate_n=1, out_dir=tmp_path)
    run = bench_host(result.artefact, runs=3, warmup=1, threads=1, compare=True)
    assert [r.runtime for r in run.results] == ["litert", "torch", "onnxruntime"]
    assert run.results[0].accelerator == "cpu" and run.results[0].parity_psnr_db > 100
    assert run.results[2].parity_psnr_db > 100
    assert set(run.speedup) == {"torch", "onnxruntime"}
