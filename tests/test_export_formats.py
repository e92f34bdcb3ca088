"""The format table: supported combinations, names, floors, and up-front refusal of what is unsupported."""

from __future__ import annotations

import pytest

from mobileisp.errors import ImageSizeError, OutputExistsError
from mobileisp.export import formats
from mobileisp.export.calibrate import check_size, parse_size
from mobileisp.export.formats import UnsupportedExportError
from mobileisp.export.pipeline import export
from mobileisp.models import get_spec

SUPPORTED = "tflite: fp32, fp16, int8, int16x8, int8-io; coreml: fp16, w8, w8a8; onnx: fp32"


def test_supported_list_is_the_table():
    assert formats.supported() == SUPPORTED
    assert len(formats.table()) == 9
    assert {(r["format"], r["precision"]) for r in formats.table() if r["calibrated"]} == {
        ("tflite", "int8"), ("tflite", "int16x8"), ("tflite", "int8-io"), ("coreml", "w8a8")
    }


@pytest.mark.parametrize("fmt, precision", [("tflite", "w8"), ("coreml", "int8"), ("onnx", "fp16"), ("tensorrt", "fp16")])
def test_unsupported_combination_fails_with_the_supported_list(fmt, precision):
    with pytest.raises(UnsupportedExportError) as e:
        formats.resolve(fmt, precision)
    assert SUPPORTED in str(e.value)
    assert "\n" not in str(e.value)


def test_export_refuses_before_any_work(tmp_path):
    with pytest.raises(UnsupportedExportError, match="supported: tflite: fp32"):
        export("liteisp-mobile", "tflite", "w8a8", out_dir=tmp_path)
    with pytest.raises(UnsupportedExportError, match="not exportable"):
        export("libraw", "onnx", "fp32", out_dir=tmp_path)
    (tmp_path / "liteisp-mobile-int8.tflite").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match="--force"):
        export("liteisp-mobile", "tflite", ["fp32", "int8"], out_dir=tmp_path)
    assert (tmp_path / "liteisp-mobile-int8.tflite").read_bytes() == b"old"
    assert not (tmp_path / "liteisp-mobile-fp32.tflite").exists()


def test_names_suffixes_and_floor_keys():
    assert formats.artefact_filename("liteisp-mobile", "tflite", "int8") == "liteisp-mobile-int8.tflite"
    assert formats.artefact_filename("deepisp-lite", "coreml", "w8") == "deepisp-lite-w8.mlpackage"
    assert formats.artefact_filename("cameranet-pruned", "onnx", "fp32") == "cameranet-pruned-fp32.onnx"
    assert formats.format_of("x/y-int8.tflite").name == "tflite"
    assert formats.format_of("y-w8a8.mlpackage").name == "coreml"
    with pytest.raises(UnsupportedExportError, match=".tflite, .mlpackage, .onnx"):
        formats.format_of("model.pt")
    floors = get_spec("liteisp-mobile").parity_floors
    assert formats.floor_for(floors, "tflite", "int8") == floors["int8"] == 32.0
    assert formats.floor_for(floors, "coreml", "w8") == floors["coreml-w8"] == 40.0
    assert formats.floor_for(floors, "onnx", "fp32") == floors["fp32"] == 60.0
    assert formats.floor_for(floors, "tflite", "int8-io") is None  # no floor key in the spec: reported only


def test_export_sizes():
    assert parse_size("256x384") == (256, 384)
    assert parse_size("128") == (128, 128)
    with pytest.raises(ImageSizeError, match="HxW"):
        parse_size("big")
    spec = get_spec("cameranet-pruned")  # packed multiple 16, min 32 -> full res multiple 32, >= 64
    assert check_size(spec, (64, 96)) == (64, 96)
    with pytest.raises(ImageSizeError, match="multiple of 32"):
        check_size(spec, (80, 64))
    with pytest.raises(ImageSizeError, match="at least 64x64"):
        check_size(spec, (32, 32))
