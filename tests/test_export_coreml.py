"""Core ML export on Linux: .mlpackage with float32 TensorType I/O, int8 weights (w8), W8A8 from torch-side
calibration, metadata, and validation that says it is a simulation."""

from __future__ import annotations

from collections import Counter

import pytest

from mobileisp.export.artefact import read_metadata
from mobileisp.export.coreml import predict_available
from mobileisp.export.pipeline import export, validate

pytestmark = pytest.mark.slow

PRECISIONS = ["fp16", "w8", "w8a8"]


@pytest.fixture(scope="module")
def liteisp(tmp_path_factory):
    out = tmp_path_factory.mktemp("coreml")
    results = export("liteisp-mobile", "coreml", PRECISIONS, weights=None, size=(64, 64), calib=4, validate_n=2,
                     out_dir=out, enforce=False)
    return out, {r.precision: r for r in results}


def _spec(path):
    import coremltools as ct

    return ct.utils.load_spec(str(path))


def _ops(spec) -> Counter:
    block = next(iter(spec.mlProgram.functions["main"].block_specializations.values()))
    return Counter(op.type for op in block.operations)


def test_packages_with_float32_tensor_inputs(liteisp):
    out, _ = liteisp
    for p in PRECISIONS:
        path = out / f"liteisp-mobile-{p}.mlpackage"
        assert path.is_dir() and (path / "Manifest.json").is_file()
        spec = _spec(path)
        (raw,) = spec.description.input
        assert raw.name == "raw" and raw.type.WhichOneof("Type") == "multiArrayType"  # never an 8-bit ImageType
        assert raw.type.multiArrayType.dataType == 65568  # FLOAT32
        assert list(raw.type.multiArrayType.shape) == [1, 4, 32, 32]
        assert [o.name for o in spec.description.output] == ["srgb"]


def test_quantization_is_in_the_graph(liteisp):
    out, _ = liteisp
    fp16, w8, w8a8 = (_spec(out / f"liteisp-mobile-{p}.mlpackage") for p in PRECISIONS)
    assert _ops(fp16)["constexpr_affine_dequantize"] == 0
    assert _ops(w8)["constexpr_affine_dequantize"] >= 10  # int8 weights
    assert _ops(w8a8)["quantize"] > 0 and _ops(w8a8)["dequantize"] > 0  # int8 activations
    assert w8a8.specificationVersion >= 8  # iOS17


def test_metadata_in_user_defined_metadata(liteisp):
    out, _ = liteisp
    path = out / "liteisp-mobile-w8a8.mlpackage"
    meta = read_metadata(path)
    assert (meta["model"], meta["format"], meta["precision"], meta["layout"]) == ("liteisp-mobile", "coreml", "w8a8", "NCHW")
    assert meta["calibration"]["n"] == 4 and meta["parity"]["simulated"] == (not predict_available())
    user = _spec(path).description.metadata.userDefined
    assert user["mobileisp.model"] == "liteisp-mobile" and user["mobileisp.precision"] == "w8a8"


@pytest.mark.skipif(predict_available(), reason="on macOS validation runs Core ML itself")
def test_linux_validation_is_a_labelled_simulation(liteisp):
    out, results = liteisp
    for p, floor in (("fp16", 45.0), ("w8", 40.0), ("w8a8", 30.0)):
        parity = results[p].parity
        assert parity.simulated and parity.runtime == "torch-simulation" and "macOS" in parity.notes
        assert parity.psnr_db >= floor, (p, parity.psnr_db)
    # validate recalibrates w8a8 from the metadata's calibration set: the same simulation
    again = validate(out / "liteisp-mobile-w8a8.mlpackage", 2)
    assert again.simulated and again.psnr_db == pytest.approx(results["w8a8"].parity.psnr_db, abs=1e-4)
    assert "SIMULATION" in again.table()


@pytest.mark.parametrize("name, size", [("deepisp-lite", 96), ("cameranet-pruned", 64)])
def test_other_models_convert(name, size, tmp_path):
    results = export(name, "coreml", ["fp16", "w8a8"], weights=None, size=(size, size), calib=2, validate_n=2,
                     out_dir=tmp_path, enforce=False)
    assert results[0].parity.psnr_db >= 45.0 and results[1].parity.psnr_db >= 30.0
    assert len(_spec(results[0].artefact).description.input) == 1 + len(read_metadata(results[0].artefact)["spec"]["metadata_fields"])
