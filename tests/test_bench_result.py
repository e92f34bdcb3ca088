"""BenchResult, timing statistics and the benchmark report (JSON, Markdown, plot)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mobileisp.bench import BenchResult, BenchResultError, timing_stats
from mobileisp.errors import MobileISPError, OutputExistsError
from mobileisp.report import load_results, markdown_table, write_report

# Per-run times recorded by the iPhone benchmark fixture (tests/fixtures/apple/bench_result_iphone15pro.json).
IPHONE_RUNS = [2.97, 2.91, 2.94, 3.02, 2.89, 2.93, 2.95, 3.31, 2.9, 2.92, 2.96, 2.88, 2.94, 3.08, 2.91, 2.93, 2.99, 2.9, 3.64, 2.92]


def _result(**overrides) -> BenchResult:
    fields = dict(
        artefact="out/liteisp-mobile-fp16.mlpackage", model="liteisp-mobile", format="coreml", precision="fp16",
        runtime="coreml", device="iPhone 15 Pro", soc="Apple A17 Pro", os_version="iOS 17.5.1", accelerator="cpu-ne",
        input_shape=(1, 4, 256, 256), parity_psnr_db=47.31, timestamp="2025-06-02T09:14:01+00:00",
    )
    fields.update(overrides)
    return BenchResult.from_samples(IPHONE_RUNS, warmup=5, **fields)


# ------------------------------------------------------------------------------------------- statistics


@pytest.mark.parametrize("samples", [IPHONE_RUNS, IPHONE_RUNS[:7], [4.0], [1.0, 9.0], list(np.random.default_rng(3).gamma(2.0, 5.0, 33))])
def test_timing_stats_match_numpy(samples):
    s = timing_stats(samples)
    assert s["ms_min"] == pytest.approx(np.min(samples), abs=1e-12)
    assert s["ms_median"] == pytest.approx(np.median(samples), abs=1e-12)
    assert s["ms_p90"] == pytest.approx(np.percentile(samples, 90), abs=1e-12)
    assert s["ms_mean"] == pytest.approx(np.mean(samples), abs=1e-12)
    assert s["ms_std"] == pytest.approx(np.std(samples), abs=1e-12)  # population std, ddof=0


def test_timing_stats_values_of_recorded_iphone_run():
    s = timing_stats(IPHONE_RUNS)
    assert s["ms_min"] == 2.88
    assert s["ms_median"] == pytest.approx(2.935)
    assert s["ms_p90"] == pytest.approx(3.103)  # between the 18th (3.08) and 19th (3.31) order statistics
    assert s["ms_mean"] == pytest.approx(59.89 / 20)


@pytest.mark.parametrize("bad", [[], [1.0, float("nan")], [2.0, -0.5], [float("inf")]])
def test_timing_stats_rejects_bad_samples(bad):
    with pytest.raises(BenchResultError) as e:
        timing_stats(bad)
    assert isinstance(e.value, MobileISPError) and "\n" not in str(e.value)


# ----------------------------------------------------------------------------------------- BenchResult


def test_json_round_trip_is_exact():
    r = _result(peak_memory_mb=181.5, delegation=None, notes="compile 412.9 ms", load_ms=599.21, threads=None)
    text = json.dumps(r.to_dict())
    back = BenchResult.from_dict(json.loads(text))
    assert back == r
    assert back.input_shape == (1, 4, 256, 256)
    assert json.loads(text)["input_shape"] == [1, 4, 256, 256]
    assert back.samples_ms == IPHONE_RUNS and back.runs == 20 and back.warmup == 5


def test_from_samples_fills_statistics():
    r = _result()
    assert (r.ms_min, r.ms_median, r.ms_mean) == (2.88, pytest.approx(2.935), pytest.approx(2.9945))
    assert r.ms_std == pytest.approx(float(np.std(IPHONE_RUNS)))


def test_from_dict_accepts_compute_units_alias_and_ignores_unknown_keys():
    d = _result().to_dict()
    d["compute_units"] = d.pop("accelerator")
    d["field_from_a_newer_version"] = 1
    assert BenchResult.from_dict(d).accelerator == "cpu-ne"


def test_optional_statistics_may_be_missing():
    # benchmark_model reports min/median/avg/std but no p90 and no per-run samples.
    r = BenchResult(artefact="m.tflite", model="liteisp-mobile", format="tflite", precision="int8", runtime="benchmark_model",
                    device="Pixel 8", warmup=1, runs=50, ms_min=49.1, ms_median=51.9, ms_mean=63.7, ms_std=60.7, delegation="full")
    back = BenchResult.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back.ms_p90 is None and back.samples_ms is None and back == r


@pytest.mark.parametrize(
    "change, words",
    [
        ({"format": "pte"}, "format 'pte'"),
        ({"delegation": "most"}, "delegation 'most'"),
        ({"runs": 0}, "runs >= 1"),
        ({"ms_median": 1.0}, "inconsistent latency"),
        ({"ms_mean": float("nan")}, "ms_mean"),
        ({"samples_ms": [1.0, 2.0]}, "2 per-run times"),
    ],
)
def test_invalid_results_are_refused(change, words):
    d = _result().to_dict()
    d.update(change)
    with pytest.raises(BenchResultError) as e:
        BenchResult.from_dict(d)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_missing_required_fields_are_named():
    d = _result().to_dict()
    del d["ms_median"], d["device"]
    with pytest.raises(BenchResultError, match="lacks device, ms_median"):
        BenchResult.from_dict(d)


# ---------------------------------------------------------------------------------------------- report


def test_markdown_table_rows():
    rows = [
        _result(),
        BenchResult(artefact="m.tflite", model="liteisp|mobile", format="tflite", precision="int8", runtime="benchmark_model",
                    device="Pixel 8", warmup=1, runs=50, ms_min=49.088, ms_median=51.891, ms_mean=63.7432, ms_std=60.716,
                    ms_p95=68.628, delegation="partial"),
    ]
    lines = markdown_table(rows).splitlines()
    assert lines[0].startswith("| model | format | precision | device | runtime | accelerator | input | median ms")
    assert len(lines) == 4 and lines[1].count("|") == lines[0].count("|")
    assert lines[2] == ("| liteisp-mobile | coreml | fp16 | iPhone 15 Pro | coreml | cpu-ne | 1x4x256x256 | 2.94 | 3.10 | — |"
                        " 2.99 ± 0.17 | 2.88 | 20 (+5) | 47.31 | — |")
    # benchmark_model prints p95 (not p90): the row shows what the tool measured and nothing else
    assert lines[3] == ("| liteisp\\|mobile | tflite | int8 | Pixel 8 | benchmark_model | — | — | 51.89 | — | 68.63 |"
                        " 63.74 ± 60.72 | 49.09 | 50 (+1) | — | partial |")


def test_write_report_creates_json_markdown_and_plot(tmp_path):
    import matplotlib.image

    rows = [_result(), _result(precision="int8", parity_psnr_db=38.2, accelerator="cpu"), _result(device="mac", parity_psnr_db=None)]
    json_path, md_path, png_path = write_report(rows, tmp_path / "report")
    assert load_results([json_path]) == rows
    md = md_path.read_text(encoding="utf-8")
    assert markdown_table(rows) in md and "![median latency vs PSNR](bench.png)" in md
    assert png_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert matplotlib.image.imread(png_path).shape[:2] == (540, 1080)  # 9 x 4.5 in at 120 dpi
    assert sorted(p.name for p in (tmp_path / "report").iterdir()) == ["bench.json", "bench.md", "bench.png"]


def test_write_report_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "bench.md").write_text("mine")
    with pytest.raises(OutputExistsError):
        write_report([_result()], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench.md"]
    assert (tmp_path / "bench.md").read_text() == "mine"
    write_report([_result()], tmp_path, force=True)
    assert "liteisp-mobile" in (tmp_path / "bench.md").read_text()


def test_write_report_needs_results(tmp_path):
    with pytest.raises(BenchResultError, match="no benchmark results"):
        write_report([], tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_load_results_reads_single_results_lists_and_reports(tmp_path):
    a, b = _result(), _result(device="mac", accelerator="all")
    (tmp_path / "one.json").write_text(json.dumps(a.to_dict()))
    (tmp_path / "many.json").write_text(json.dumps([a.to_dict(), b.to_dict()]))
    assert load_results([tmp_path / "one.json", tmp_path / "many.json"]) == [a, a, b]


@pytest.mark.parametrize(
    "content, words",
    [
        (None, "no such result file"),
        ("{not json", "is not valid JSON (line 1"),
        (json.dumps([{"model": "x"}, {"model": "y"}]), "result 0: benchmark result lacks"),
        (json.dumps("text"), "must be a JSON object"),
    ],
)
def test_load_results_errors_name_the_file(tmp_path, content, words):
    path = tmp_path / "r.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(BenchResultError) as e:
        load_results([path])
    assert str(path) in str(e.value) and words in str(e.value) and "\n" not in str(e.value)
    assert e.value.exit_code == 2


def test_p95_must_not_be_below_the_median():
    with pytest.raises(BenchResultError, match="p95"):
        BenchResult(artefact="m.tflite", model="m", format="tflite", precision="fp32", runtime="benchmark_model",
                    device="Pixel 8", warmup=1, runs=5, ms_min=1.0, ms_median=2.0, ms_mean=2.0, ms_p95=1.5)
