"""TFLite export: every precision converts on small inputs, carries its metadata, runs in LiteRT and validates."""

from __future__ import annotations

import numpy as np
import pytest

from mobileisp.export.artefact import read_metadata
from mobileisp.export.pipeline import export, validate
from mobileisp.export.tflite import TFLiteRunner, embed_metadata, read_metadata as read_tflite_metadata

pytestmark = pytest.mark.slow

PRECISIONS = ["fp32", "fp16", "int8", "int16x8", "int8-io"]
FLOORS = {"fp32": 60.0, "fp16": 45.0, "int8": 32.0, "int16x8": 40.0}


@pytest.fixture(scope="module")
def liteisp(tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite")
    results = export("liteisp-mobile", "tflite", PRECISIONS, weights=None, size=(64, 64), calib=4, validate_n=2,
                     out_dir=out, enforce=False)
    return out, {r.precision: r for r in results}


def test_every_precision_is_written(liteisp):
    out, results = liteisp
    assert sorted(p.name for p in out.iterdir()) == sorted(f"liteisp-mobile-{p}.tflite" for p in PRECISIONS)
    assert results["int8"].bytes < results["fp32"].bytes / 2.5  # int8 weights
    assert results["fp16"].bytes < results["fp32"].bytes * 0.6


def test_metadata_is_embedded_and_self_describing(liteisp):
    out, results = liteisp
    meta = read_metadata(out / "liteisp-mobile-int8.tflite")
    assert (meta["model"], meta["format"], meta["precision"], meta["size"]) == ("liteisp-mobile", "tflite", "int8", [64, 64])
    assert meta["spec"]["name"] == "liteisp-mobile" and meta["spec"]["parity_floors"]["int8"] == 32.0
    assert meta["inputs"][0] == {**meta["inputs"][0], "name": "raw", "shape": [1, 32, 32, 4], "layout": "NHWC"}
    assert meta["calibration"] == {**meta["calibration"], "dataset": "SyntheticRawDataset", "split": "train", "n": 4}
    assert meta["weights"] == {"file": None, "sha256": None, "trained": False, "init_seed": 0}
    assert meta["versions"]["mobileisp"] and meta["versions"]["onnx2tf"] == "1.29.24"
    assert meta["parity"]["psnr_db"] == pytest.approx(results["int8"].parity.psnr_db)
    assert read_metadata(out / "liteisp-mobile-fp32.tflite")["calibration"] is None


def test_metadata_round_trip_keeps_the_graph(liteisp):
    out, _ = liteisp
    data = (out / "liteisp-mobile-fp32.tflite").read_bytes()
    again = embed_metadata(data, {"note": "replaced"})
    assert read_tflite_metadata(again) == {"note": "replaced"}
    x = {"raw": np.random.default_rng(0).random((1, 4, 32, 32), dtype=np.float32)}
    assert np.array_equal(TFLiteRunner(data)(x), TFLiteRunner(again)(x))


def test_io_types_float_for_int8_and_int_for_int8_io(liteisp):
    out, _ = liteisp
    int8 = TFLiteRunner(out / "liteisp-mobile-int8.tflite")
    assert int8.inputs[0]["dtype"] == np.float32 and int8.outputs[0]["dtype"] == np.float32
    assert list(int8.inputs[0]["shape"]) == [1, 32, 32, 4]
    full = TFLiteRunner(out / "liteisp-mobile-int8-io.tflite")
    assert full.inputs[0]["dtype"] == np.int8 and full.outputs[0]["dtype"] == np.int8
    io = read_metadata(out / "liteisp-mobile-int8-io.tflite")["io_quantization"]
    scale, zero = full.inputs[0]["quantization"]
    assert io["inputs"][0] == {**io["inputs"][0], "dtype": "int8", "scale": pytest.approx(scale), "zero_point": zero}
    assert 0 < scale < 0.01  # RAW in [0, 1] over 256 levels


def test_parity_at_export_meets_the_floors(liteisp):
    _, results = liteisp
    for precision, floor in FLOORS.items():
        parity = results[precision].parity
        assert parity.runtime == "litert" and not parity.simulated
        assert parity.psnr_db >= floor, (precision, parity.psnr_db)
    assert results["fp32"].parity.max_abs_error < 1e-4
    assert results["int16x8"].parity.psnr_db > results["int8"].parity.psnr_db


def test_validate_reproduces_export_parity_and_saves_images(liteisp, tmp_path):
    out, results = liteisp
    result = validate(out / "liteisp-mobile-int8.tflite", 2, save_images=tmp_path)
    assert result.psnr_db == pytest.approx(results["int8"].parity.psnr_db, abs=1e-6)
    assert result.passed and result.check() is result
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "liteisp-mobile-int8.tflite-error.png", "liteisp-mobile-int8.tflite-side-by-side.png"
    ]


@pytest.mark.parametrize("name, size", [("deepisp-lite", 96), ("cameranet-pruned", 192), ("classical", 64)])
def test_other_models_convert(name, size, tmp_path):
    results = export(name, "tflite", ["fp32", "int8"], weights=None, size=(size, size), calib=4, validate_n=2,
                     out_dir=tmp_path, enforce=False)
    fp32, int8 = results
    assert fp32.parity.psnr_db >= 60.0, fp32.parity.table()
    assert int8.parity.psnr_db >= 30.0, int8.parity.table()
    meta = read_metadata(fp32.artefact)
    assert [i["name"] for i in meta["inputs"]] == ["raw", *meta["spec"]["metadata_fields"]]
