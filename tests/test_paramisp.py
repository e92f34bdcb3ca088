"""ParamISP: the host-side EXIF encoding, the network's parts against their definitions, and EXIF plumbing."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from mobileisp.errors import MobileISPError
from mobileisp.metadata import CameraMetadata
from mobileisp.metadata_encoding import PARAMISP_OPTICS, EncodingError, encode, paramisp_equalization
from mobileisp.models import create_model, get_spec
from mobileisp.models.complexity import count_parameters
from mobileisp.models.paramisp import GlobalNet, HandcraftedFeatures, ParamISP, replicate_pad

OFFICIAL_PARAMS = 710_973  # official code, per direction
META = CameraMetadata(white_balance=(2.0, 1.0, 1.6),
                      color_matrix=((0.84, -0.26, -0.06), (-0.29, 1.07, 0.25), (-0.06, 0.14, 0.54)),
                      iso=800.0, exposure_time=0.01, f_number=1.8, focal_length=4.5)


# ------------------------------------------------------------------------------------------ encoding


def test_equalization_of_iso_800_by_hand():
    f = paramisp_equalization(np.array([800.0]), PARAMISP_OPTICS["constants"]["iso"])[0]
    lin, inv, l2 = 800 / 8000, 800 / 64, math.log2(800)
    expected = [lin, lin**0.5, lin**0.25, 1 / inv, inv**-0.5, inv**-0.25, (l2 - 6) / 7, math.sin(l2), math.cos(l2),
                math.sin(800 / 3100), math.cos(800 / 3100), math.sin(800 / 1300), math.cos(800 / 1300),
                math.sin(800 / 500), math.cos(800 / 500)]
    np.testing.assert_allclose(f, expected, rtol=1e-12)


def test_encoding_is_60_wide_in_source_order_and_bounded_for_phone_values():
    values = {"focal_length": [4.5, 6.8], "f_number": [1.8, 2.2], "exposure_time": [0.01, 1 / 4000], "iso": [800, 50]}
    x = encode(PARAMISP_OPTICS, values)
    assert x.shape == (2, 60) and x.dtype == np.float32
    iso_only = paramisp_equalization(np.array([800.0, 50.0]), PARAMISP_OPTICS["constants"]["iso"])
    np.testing.assert_allclose(x[:, 45:60], iso_only, rtol=1e-6)
    assert np.abs(x).max() < 4.0  # the constants keep phone EXIF values in a small range


@pytest.mark.parametrize("bad, needle", [(None, "missing"), (0.0, "positive"), (-1.0, "positive"),
                                         (float("nan"), "positive")])
def test_encoding_refuses_missing_or_non_positive_values(bad, needle):
    values = {"focal_length": 4.5, "f_number": 1.8, "exposure_time": 0.01, "iso": bad}
    with pytest.raises(EncodingError, match=needle):
        encode(PARAMISP_OPTICS, values)


def test_spec_lists_sources_and_encoded_input():
    spec = get_spec("paramisp")
    assert spec.metadata_fields == ("white_balance", "ccm", "optics")
    assert spec.metadata_sources == ("white_balance", "color_matrix", "focal_length", "f_number", "exposure_time", "iso")
    assert [(t.name, t.shape) for t in spec.inputs] == [
        ("raw", ("N", 4, "H/2", "W/2")), ("white_balance", ("N", 3)), ("ccm", ("N", 18)), ("optics", ("N", 60))]
    assert json.loads(json.dumps(spec.to_dict()))["metadata_encoding"]["optics"]["constants"]["iso"]["inv"] == 64.0


def test_artefact_spec_uses_the_recorded_encoding():
    from mobileisp.export.artefact import spec_for_artefact

    spec = get_spec("paramisp-lite")
    recorded = json.loads(json.dumps(spec.to_dict()))
    recorded["metadata_encoding"]["optics"]["constants"]["iso"]["lin"] = 4000.0
    art_spec = spec_for_artefact({"model": "paramisp-lite", "spec": recorded})
    values = {"focal_length": [4.5], "f_number": [1.8], "exposure_time": [0.01], "iso": [800.0],
              "white_balance": torch.ones(1, 3), "color_matrix": torch.eye(3)[None]}
    ours, theirs = spec.metadata_inputs(values)["optics"], art_spec.metadata_inputs(values)["optics"]
    assert float(theirs[0, 45]) == pytest.approx(2 * float(ours[0, 45]))


def test_missing_exif_is_a_one_line_error_naming_the_field():
    from mobileisp.infer import metadata_tensors

    spec = get_spec("paramisp-lite")
    with pytest.raises(MobileISPError, match="iso, which the file does not record"):
        metadata_tensors(spec, [dataclasses.replace(META, iso=None)], source="shot.dng")
    t = metadata_tensors(spec, [META])
    assert t["optics"].shape == (1, 60) and t["ccm"].shape == (1, 18)


def test_ccm_encoding_is_the_camera_to_srgb_matrix_and_its_inverse():
    from mobileisp.metadata import cam_to_srgb_matrix
    from mobileisp.metadata_encoding import CAMERA_TO_SRGB

    x = encode(CAMERA_TO_SRGB, {"color_matrix": np.array(META.color_matrix)[None]})
    assert x.shape == (1, 18)
    m, inv = x[0, :9].reshape(3, 3), x[0, 9:].reshape(3, 3)
    np.testing.assert_allclose(m, cam_to_srgb_matrix(np.array(META.color_matrix)), rtol=1e-6)
    np.testing.assert_allclose(m @ inv, np.eye(3), atol=1e-5)
    np.testing.assert_allclose(inv.sum(axis=1), 1.0, atol=1e-6)  # camera white -> sRGB white
    with pytest.raises(EncodingError, match="invertible"):
        encode(CAMERA_TO_SRGB, {"color_matrix": np.zeros((1, 3, 3))})


# ------------------------------------------------------------------------------------------ parts


def test_replicate_pad_equals_torch_replicate():
    x = torch.randn(2, 3, 5, 7)
    for p in (1, 3):
        assert torch.equal(replicate_pad(x, p), F.pad(x, (p, p, p, p), mode="replicate"))


def test_handcrafted_features_match_their_definitions():
    feats = HandcraftedFeatures((4, 8, 16))
    assert feats.channels == 96
    x = torch.full((1, 3, 8, 8), 0.5)
    x[:, 0, :, 4:] = 1.0  # a vertical edge in red
    over = torch.rand(1, 3, 8, 8)
    out = feats(x, over)
    assert out.shape == (1, 96, 8, 8)
    assert torch.equal(out[:, :3], x) and torch.equal(out[:, -3:], over)
    # Sobel x (kornia normalisation, /8) across the red edge: (1 - 0.5) * (1 + 2 + 1) / 8
    assert float(out[0, 3, 4, 3]) == pytest.approx(0.25) and float(out[0, 4, 4, 3]) == pytest.approx(0.0)
    # 4-bin soft histogram of 0.5 (green, channel 1): centres 0, 1/3, 2/3, 1 -> 0, 0.5, 0.5, 0
    green_bins = out[0, 9 + 4 : 9 + 8, 0, 0]
    torch.testing.assert_close(green_bins, torch.tensor([0.0, 0.5, 0.5, 0.0]))


def test_globalnet_with_zero_coefficients_is_the_identity_and_gamma_maps_0_1_to_0_1():
    image = torch.rand(1, 3, 4, 4)
    net = GlobalNet(36, width=8)
    assert torch.allclose(net.transform(image, torch.zeros(1, 4 * 39)), image, atol=1e-6)
    coeffs = torch.zeros(1, 39)
    coeffs[0, 30:33] = math.log(1 / 2.2)  # gamma 1/2.2, beta 0.1, alpha 1
    coeffs[0, 33:36] = 0.1
    y = net.transform(torch.tensor([0.0, 0.25, 1.0]).reshape(1, 3, 1, 1).expand(1, 3, 1, 1).clone(), coeffs)
    g, b = 1 / 2.2, 0.1
    expected = [((v + b) ** g - b**g) / ((1 + b) ** g - b**g) for v in (0.0, 0.25, 1.0)]
    torch.testing.assert_close(y.flatten(), torch.tensor(expected), atol=1e-6, rtol=1e-6)


def test_faithful_parameter_count_is_the_official_minus_the_zeroed_camera_embedding():
    n = count_parameters(create_model("paramisp", weights=None))[0]
    assert n == 709_885
    assert abs(n - OFFICIAL_PARAMS) / OFFICIAL_PARAMS < 0.002


def _inputs(spec, n=2, size=128):
    from mobileisp.data import heldout_set

    samples = heldout_set(n, size)
    raw = torch.stack([s["raw"] for s in samples])
    meta = spec.metadata_inputs({f: torch.stack([torch.as_tensor(s[f]) for s in samples]) for f in spec.metadata_sources})
    return raw, meta


def test_optics_drive_the_output_and_dropout_hides_them_in_training():
    torch.manual_seed(0)
    spec = get_spec("paramisp-lite")
    model = ParamISP(**spec.config)
    for p in model.param_net.per_parameter.parameters():  # make the optics path matter at init
        torch.nn.init.normal_(p, std=1.0)
    raw, meta = _inputs(spec)
    other = dict(meta, optics=meta["optics"].flip(0))
    with torch.no_grad():
        assert (model(raw, **meta) - model(raw, **other)).abs().max() > 1e-3
        model.train()
        model.param_net.dropout = 1.0
        torch.testing.assert_close(model(raw, **meta), model(raw, **other))


def test_min_size_is_enforced_by_the_spec_and_smaller_inputs_fail_inside_globalnet():
    spec = get_spec("paramisp-lite")
    assert spec.min_size * 2 == 128 and spec.size_multiple * 2 == 4
    model = create_model("paramisp-lite", weights=None)
    raw, meta = _inputs(spec, 1, 128)
    assert model(raw, **meta).shape == (1, 3, 128, 128)
    with pytest.raises(RuntimeError):
        model(raw[..., :32, :32], **meta)


# ------------------------------------------------------------------------------------------ run reads EXIF


def _dng(path, meta):
    from mobileisp.dng import mosaic_from_packed, write_dng

    rng = np.random.default_rng(3)
    packed = rng.random((4, 64, 64), dtype=np.float32) * 0.5 + 0.1
    return write_dng(path, mosaic_from_packed(packed, "RGGB", 64, 1023), cfa="RGGB", black_level=64, white_level=1023,
                     metadata=meta)


def _cli(*args, cwd):
    import subprocess
    import sys
    from pathlib import Path

    exe = Path(sys.executable).with_name("mobileisp")
    return subprocess.run([str(exe), *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_run_uses_the_files_exif_and_refuses_a_file_without_iso(tmp_path):
    from mobileisp.images import load_srgb

    for name, meta in (("iso800", META), ("iso50", dataclasses.replace(META, iso=50.0)),
                       ("noiso", dataclasses.replace(META, iso=None))):
        _dng(tmp_path / f"{name}.dng", meta)
    outs = {}
    for name in ("iso800", "iso50"):
        proc = _cli("run", "paramisp-lite", f"{name}.dng", "-o", f"{name}.png", "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        result = json.loads(proc.stdout)
        assert result["metadata"]["iso"] == (800.0 if name == "iso800" else 50.0)
        assert result["weights"] == "paramisp-lite.safetensors"
        outs[name] = load_srgb(tmp_path / f"{name}.png")
    diff = np.abs(outs["iso800"] - outs["iso50"])  # only the ISO tag differs; inference is deterministic
    assert diff.max() >= 2 / 255 and diff.mean() > 1e-3, (diff.max(), diff.mean())

    proc = _cli("run", "paramisp-lite", "noiso.dng", "-o", "noiso.png", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "noiso.dng" in lines[0] and "iso" in lines[0], proc.stderr
    assert not (tmp_path / "noiso.png").exists()


def test_inverse_canonet_is_the_unprocessing_matrix_white_balance_and_mosaic():
    """InverseCanoNet on linear sRGB = synth's ``mosaic(lin @ rgb2cam.T / gains)`` for the same camera."""
    from mobileisp import synth
    from mobileisp.metadata_encoding import CAMERA_TO_SRGB
    from mobileisp.models.paramisp import InverseCanoNet

    params = synth.random_params(np.random.default_rng(7))
    meta = params.metadata()
    lin = np.random.default_rng(8).random((8, 10, 3))
    gains = np.array([params.red_gain, 1.0, params.blue_gain])
    expected = synth.mosaic(lin @ params.rgb2cam.T / gains)
    ccm = torch.from_numpy(encode(CAMERA_TO_SRGB, {"color_matrix": np.asarray(meta.color_matrix)})).double()
    out = InverseCanoNet().double()(torch.from_numpy(lin.transpose(2, 0, 1))[None],
                                    torch.tensor(meta.white_balance, dtype=torch.float64)[None], ccm)
    np.testing.assert_allclose(out[0].numpy(), expected, rtol=1e-5, atol=1e-6)  # ccm is float32 data


def test_inverse_spec_takes_srgb_and_returns_packed_raw():
    spec = get_spec("paramisp-inverse-lite")
    assert spec.inverse and spec.scale == 1 and spec.input_scale == 2 and spec.loss == "raw-l1"
    assert [(t.name, t.shape) for t in spec.inputs][0] == ("srgb", ("N", 3, "H", "W"))
    assert (spec.output.name, spec.output.shape) == ("raw", ("N", 4, "H/2", "W/2"))
    assert spec.metadata_fields == get_spec("paramisp-lite").metadata_fields
    assert count_parameters(create_model("paramisp-inverse", weights=None))[0] == 709_885
