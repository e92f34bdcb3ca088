"""The classical baselines: MHC demosaic, colour path, unprocess -> classical/libraw round trips.

PSNR floors are the values measured with these seeds (torch 2.13 CPU, LibRaw 0.22), rounded down by
about 0.5-1 dB; the measured value is in each comment.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage import color, data, transform

from mobileisp import synth
from mobileisp.errors import ImageSizeError
from mobileisp.metadata import SRGB_TO_XYZ, cam_to_srgb_matrix
from mobileisp.metrics import psnr
from mobileisp.models import create_model, get_spec, list_models
from mobileisp.models.classical import (
    _MHC_FILTERS,
    ClassicalISP,
    MalvarDemosaic,
    _inverse_3x3,
    cam_to_srgb,
    mhc_packed_kernel,
)


def _pack(rgb: np.ndarray) -> np.ndarray:
    """Full RGB (3, H, W) -> packed RGGB (4, H/2, W/2), sampling each position's colour."""
    return np.stack([rgb[0, 0::2, 0::2], rgb[1, 0::2, 1::2], rgb[1, 1::2, 0::2], rgb[2, 1::2, 1::2]])


def _demosaic(packed: np.ndarray) -> np.ndarray:
    return MalvarDemosaic().double()(torch.from_numpy(packed)[None].double())[0].numpy()


def _metadata_tensors(params: synth.UnprocessParams) -> dict[str, torch.Tensor]:
    meta = params.metadata()
    return {"white_balance": torch.tensor([meta.white_balance]), "color_matrix": torch.tensor([meta.color_matrix])}


def _round_trip(model, srgb: np.ndarray, seed: int, rgb_gain: float | None = None) -> float:
    """PSNR (dB) of ``model`` on the noise-free unprocessed ``srgb`` (H, W, 3) against ``srgb`` itself."""
    params = synth.random_params(np.random.default_rng(seed))
    if rgb_gain is not None:
        params = dataclasses.replace(params, rgb_gain=rgb_gain)
    packed, params = synth.unprocess(srgb, np.random.default_rng(0), noise=False, params=params)
    with torch.no_grad():
        out = model(torch.from_numpy(packed)[None], **_metadata_tensors(params))
    assert out.shape == (1, 3, *srgb.shape[:2])
    assert 0.0 <= out.min() and out.max() <= 1.0
    return psnr(out, torch.from_numpy(np.ascontiguousarray(srgb)).permute(2, 0, 1)[None]).item()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return transform.resize(data.astronaut(), (128, 128), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="module")
def smooth_leaves() -> np.ndarray:
    """A dead-leaves scene blurred until demosaicing is nearly lossless: isolates the colour path."""
    return ndimage.gaussian_filter(synth.dead_leaves(64, 64, np.random.default_rng(3)), (4, 4, 0))


# ---------------------------------------------------------------------------------------------------------
# Demosaicing
# ---------------------------------------------------------------------------------------------------------


def test_mhc_reproduces_constant_colours_everywhere():
    rgb = np.broadcast_to(np.array([0.7, 0.2, 0.45])[:, None, None], (3, 12, 16))
    np.testing.assert_allclose(_demosaic(_pack(rgb)), rgb, atol=1e-12)


def test_mhc_is_exact_on_linear_gradients():
    """MHC = bilinear (exact on planes) + a Laplacian correction (zero on planes)."""
    yy, xx = np.mgrid[0:20, 0:24].astype(np.float64)
    rgb = np.stack([0.1 + 0.01 * xx + 0.02 * yy, 0.6 + 0.005 * xx - 0.01 * yy, 0.2 + 0.015 * yy + 0.003 * xx])
    out = _demosaic(_pack(rgb))
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], rgb[:, 2:-2, 2:-2], atol=1e-12)
    assert np.abs(out - rgb).max() > 1e-3  # the mirrored border is not a plane: the test can see errors


def test_packed_kernel_equals_mhc_filters_on_the_mosaic():
    """The 12x4x3x3 packed kernel against the paper's 5x5 filters applied directly to the full mosaic."""
    rng = np.random.default_rng(0)
    packed = rng.random((4, 10, 12))
    mosaic = np.zeros((20, 24))
    for p in range(4):
        dy, dx = divmod(p, 2)
        mosaic[dy::2, dx::2] = packed[p]
    want = np.zeros((3, 20, 24))
    for c in range(3):
        for p in range(4):
            dy, dx = divmod(p, 2)
            want[c, dy::2, dx::2] = ndimage.correlate(mosaic, _MHC_FILTERS[c][p], mode="mirror")[dy::2, dx::2]
    got = _demosaic(packed)
    np.testing.assert_allclose(got[:, 2:-2, 2:-2], want[:, 2:-2, 2:-2], atol=1e-12)
    assert mhc_packed_kernel().shape == (12, 4, 3, 3)


def test_mhc_beats_bilinear_on_a_photo(astronaut):
    """Linear camera RGB of a photo, mosaicked and demosaicked: MHC 36.4 dB, bilinear (synth) 33.8 dB."""
    params = dataclasses.replace(synth.random_params(np.random.default_rng(0)), rgb_gain=1.0)
    truth = synth.unprocess_linear(astronaut, params)
    packed = synth.mosaic(truth)
    target = torch.from_numpy(truth).permute(2, 0, 1)[None]
    mhc = psnr(torch.from_numpy(np.clip(_demosaic(packed), 0, 1))[None], target).item()
    bilinear = psnr(torch.from_numpy(np.clip(synth.demosaic_bilinear(packed), 0, 1)).permute(2, 0, 1)[None],
                    target).item()
    assert mhc > 35.5
    assert mhc > bilinear + 2.0


# ---------------------------------------------------------------------------------------------------------
# Colour
# ---------------------------------------------------------------------------------------------------------


def test_cam_to_srgb_matches_metadata_numpy():
    rng = np.random.default_rng(0)
    mats = np.stack([synth.random_params(rng).xyz2cam for _ in range(4)] + list(synth.XYZ2CAMS))
    got = cam_to_srgb(torch.from_numpy(mats)).numpy()
    np.testing.assert_allclose(got, np.stack([cam_to_srgb_matrix(m) for m in mats]), rtol=1e-10, atol=1e-12)
    # float32, as the model runs it
    got32 = cam_to_srgb(torch.from_numpy(mats).float()).numpy()
    np.testing.assert_allclose(got32, np.stack([cam_to_srgb_matrix(m) for m in mats]), atol=1e-4)


def test_adjugate_inverse():
    m = torch.randn(16, 3, 3, dtype=torch.float64) + 3 * torch.eye(3, dtype=torch.float64)
    np.testing.assert_allclose(_inverse_3x3(m).numpy(), torch.linalg.inv(m).numpy(), atol=1e-10)


def test_colour_path_inverts_unprocess(smooth_leaves):
    """With the brightness gain known (rgb_gain = 1) and no demosaic loss, classical undoes synth.

    Measured: 53.9 dB with the 1/2.2 power synth inverts, 46.6 dB with the sRGB curve (a different OETF).
    """
    assert _round_trip(ClassicalISP(oetf="gamma2.2"), smooth_leaves, seed=0, rgb_gain=1.0) > 52.0
    assert _round_trip(ClassicalISP(oetf="srgb"), smooth_leaves, seed=0, rgb_gain=1.0) > 45.0
    # without the tone curve the result is far off: the data was made with the inverse smoothstep
    assert _round_trip(ClassicalISP(tone_curve=False), smooth_leaves, seed=0, rgb_gain=1.0) < 30.0


# ---------------------------------------------------------------------------------------------------------
# The registered pipelines
# ---------------------------------------------------------------------------------------------------------


def test_registered_specs():
    assert {"classical", "libraw"} <= set(list_models())
    for name, exportable in (("classical", True), ("libraw", False)):
        spec = get_spec(name)
        assert spec.metadata_fields == ("white_balance", "color_matrix")
        assert not spec.trainable
        assert spec.exportable is exportable
        model = create_model(name)
        assert sum(p.numel() for p in model.parameters()) == 0
        assert model.state_dict() == {}


def test_classical_round_trip_photo(astronaut):
    """Noise-free unprocessed photo -> classical (defaults: sRGB curve + smoothstep).

    rgb_gain = 1: 28.5 dB (demosaicing-limited). Seed 0 draws rgb_gain 1.12, a brightening the pipeline
    cannot know: 21.2 dB.
    """
    model = create_model("classical")
    known = _round_trip(model, astronaut, seed=0, rgb_gain=1.0)
    unknown = _round_trip(model, astronaut, seed=0)
    assert known > 27.5
    assert unknown > 20.5
    assert known > unknown + 5.0


def test_classical_round_trip_dead_leaves():
    """Sharp dead leaves (stripes up to 0.45 cycles/px) alias in the mosaic: 18.8 dB at rgb_gain = 1."""
    scene = synth.dead_leaves(128, 128, np.random.default_rng(3))
    assert _round_trip(create_model("classical"), scene, seed=0, rgb_gain=1.0) > 18.0


def test_classical_batch_is_per_sample(astronaut):
    """Each sample uses its own white balance and colour matrix."""
    rng = np.random.default_rng(5)
    packs, metas = [], []
    for seed in (1, 2):
        packed, params = synth.unprocess(astronaut[:64, :64], rng, noise=False,
                                         params=dataclasses.replace(synth.random_params(np.random.default_rng(seed)),
                                                                    rgb_gain=1.0))
        packs.append(torch.from_numpy(packed))
        metas.append(_metadata_tensors(params))
    model = create_model("classical")
    batch = model(torch.stack(packs), **{k: torch.cat([m[k] for m in metas]) for k in metas[0]})
    for i in range(2):
        single = model(packs[i][None], **metas[i])
        np.testing.assert_allclose(batch[i : i + 1].numpy(), single.numpy(), atol=1e-6, rtol=0)
    assert (batch[0] - batch[1]).abs().max() > 0.01


def test_classical_rejects_bad_inputs():
    model = create_model("classical")
    wb, cm = torch.ones(1, 3), torch.eye(3)[None]
    with pytest.raises(ImageSizeError, match="packed RGGB"):
        model(torch.zeros(1, 3, 8, 8), white_balance=wb, color_matrix=cm)
    with pytest.raises(ImageSizeError, match="white_balance"):
        model(torch.zeros(2, 4, 8, 8), white_balance=wb, color_matrix=cm.expand(2, 3, 3))
    with pytest.raises(ImageSizeError, match="color_matrix"):
        model(torch.zeros(1, 4, 8, 8), white_balance=wb, color_matrix=torch.eye(3))


def test_classical_exports_to_onnx(tmp_path):
    """Fully torch: traces to ONNX and onnxruntime computes the same image."""
    ort = pytest.importorskip("onnxruntime")
    model = create_model("classical")
    raw = torch.rand(1, 4, 16, 24)
    wb = torch.tensor([[2.1, 1.0, 1.6]])
    cm = torch.tensor(synth.XYZ2CAMS[2], dtype=torch.float32)[None]
    path = tmp_path / "classical.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about the Python-side input checks
        torch.onnx.export(model, (raw, wb, cm), str(path), input_names=["raw", "white_balance", "color_matrix"],
                          output_names=["srgb"], opset_version=17, dynamo=False)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"raw": raw.numpy(), "white_balance": wb.numpy(), "color_matrix": cm.numpy()})[0]
    np.testing.assert_allclose(got, model(raw, wb, cm).numpy(), atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# LibRaw
# ---------------------------------------------------------------------------------------------------------


def _unprocessed(srgb: np.ndarray, seed: int = 0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    params = dataclasses.replace(synth.random_params(np.random.default_rng(seed)), rgb_gain=1.0)
    packed, params = synth.unprocess(srgb, np.random.default_rng(0), noise=False, params=params)
    return torch.from_numpy(packed)[None], _metadata_tensors(params)


def test_libraw_agrees_with_classical_on_a_smooth_scene(smooth_leaves):
    """Demosaicing aside, LibRaw and classical (without tone curve) render the same image: 51.5 dB.

    The RAW is scaled to peak at 90 % of white: LibRaw's default ``adjust_maximum_thr`` would rescale it
    to full white (30.1 dB).
    """
    raw, meta = _unprocessed(smooth_leaves)
    raw = raw * (0.9 / raw.max())
    libraw = create_model("libraw")(raw, **meta)
    classical = ClassicalISP(tone_curve=False)(raw, **meta)
    assert libraw.shape == classical.shape == (1, 3, 64, 64)
    assert psnr(libraw, classical).item() > 50.0


def test_libraw_applies_our_white_balance_and_colour_matrix():
    """A saturated hue/saturation ramp: LibRaw vs classical 41.8 dB; classical without the colour matrix
    (an "sRGB camera") 20.7 dB, without the white balance 9.4 dB."""
    yy, xx = np.mgrid[0:48, 0:64]
    hsv = np.stack([xx / 64, 0.2 + 0.7 * yy / 47, np.full(xx.shape, 0.85)], -1)
    raw, meta = _unprocessed(color.hsv2rgb(hsv).astype(np.float32))
    libraw = create_model("libraw")(raw, **meta)
    classical = ClassicalISP(tone_curve=False)
    assert psnr(libraw, classical(raw, **meta)).item() > 40.5
    xyz_to_srgb = torch.linalg.inv(torch.tensor(SRGB_TO_XYZ, dtype=torch.float32))[None]
    assert psnr(libraw, classical(raw, meta["white_balance"], xyz_to_srgb)).item() < 25.0
    assert psnr(libraw, classical(raw, torch.ones(1, 3), meta["color_matrix"])).item() < 15.0


def test_libraw_round_trip_photo(astronaut):
    """Noise-free unprocessed photo (rgb_gain = 1) developed by LibRaw (AHD).

    Measured: 23.2 dB as LibRaw renders it (no tone curve), 29.2 dB with the smoothstep added;
    LibRaw vs classical (both without tone curve): 28.6 dB, the AHD/MHC demosaicing difference.
    """
    raw, meta = _unprocessed(astronaut)
    target = torch.from_numpy(np.ascontiguousarray(astronaut)).permute(2, 0, 1)[None]
    plain = create_model("libraw")(raw, **meta)
    toned = create_model("libraw", tone_curve=True)(raw, **meta)
    assert 0.0 <= plain.min() and plain.max() <= 1.0
    assert psnr(plain, target).item() > 22.5
    assert psnr(toned, target).item() > 28.5
    assert psnr(plain, ClassicalISP(tone_curve=False)(raw, **meta)).item() > 27.5


def test_libraw_rejects_mosaics_smaller_than_libraw_reads():
    with pytest.raises(ImageSizeError, match="at least 22x22"):
        create_model("libraw")(torch.zeros(1, 4, 8, 16), white_balance=torch.ones(1, 3),
                               color_matrix=torch.eye(3)[None])
