"""Unprocessing (Brooks et al.), its forward reference, and the scene sources."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage

from mobileisp import synth
from mobileisp.errors import ImageSizeError
from mobileisp.metadata import cam_to_srgb_matrix


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2)))


def smooth_photo(size: int = 128) -> np.ndarray:
    """A band-limited natural image (bilinear demosaicing is nearly exact on it)."""
    _, image = synth.natural_images("train")[0]
    image = ndimage.zoom(image[:512, :512], (size / 512, size / 512, 1), order=1)
    return np.clip(ndimage.gaussian_filter(image, (1.5, 1.5, 0)), 0, 1)


def test_unprocess_is_deterministic_and_seed_dependent():
    scene = synth.dead_leaves(32, 48, np.random.default_rng(0))
    a, pa = synth.unprocess(scene, np.random.default_rng(7))
    b, pb = synth.unprocess(scene, np.random.default_rng(7))
    c, pc = synth.unprocess(scene, np.random.default_rng(8))
    assert np.array_equal(a, b) and pa.to_dict() == pb.to_dict()
    assert np.abs(a - c).mean() > 1e-3 and pa.red_gain != pc.red_gain


def test_unprocess_shapes_range_and_errors():
    packed, _ = synth.unprocess(np.random.default_rng(0).uniform(size=(20, 34, 3)), np.random.default_rng(1))
    assert packed.shape == (4, 10, 17) and packed.dtype == np.float32
    assert packed.min() >= 0.0 and packed.max() <= 1.0
    with pytest.raises(ImageSizeError, match="even"):
        synth.unprocess(np.zeros((21, 34, 3)), np.random.default_rng(0))
    with pytest.raises(ImageSizeError, match="shape"):
        synth.unprocess(np.zeros((20, 34)), np.random.default_rng(0))


def test_random_params_follow_brooks_distributions():
    draws = [synth.random_params(np.random.default_rng(s)) for s in range(2000)]
    red = np.array([p.red_gain for p in draws])
    blue = np.array([p.blue_gain for p in draws])
    inv_rgb = np.array([1 / p.rgb_gain for p in draws])
    assert red.min() >= 1.9 and red.max() <= 2.4 and blue.min() >= 1.5 and blue.max() <= 1.9
    assert abs(inv_rgb.mean() - 0.8) < 0.01 and abs(inv_rgb.std() - 0.1) < 0.01
    log_shot = np.log([p.shot_noise for p in draws])
    log_read = np.log([p.read_noise for p in draws])
    assert log_shot.min() >= np.log(1e-4) and log_shot.max() <= np.log(1.2e-2)
    slope, intercept = np.polyfit(log_shot, log_read, 1)
    residual = log_read - (slope * log_shot + intercept)
    assert abs(slope - 2.18) < 0.05 and abs(intercept - 1.20) < 0.3 and abs(residual.std() - 0.26) < 0.02


def test_params_matrices_and_metadata():
    p = synth.random_params(np.random.default_rng(3))
    np.testing.assert_allclose(p.rgb2cam.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(p.rgb2cam @ p.cam2rgb, np.eye(3), atol=1e-12)
    # the XYZ->camera matrix is a convex blend of Brooks' four matrices
    assert np.all(p.xyz2cam >= synth.XYZ2CAMS.min(axis=0) - 1e-12)
    assert np.all(p.xyz2cam <= synth.XYZ2CAMS.max(axis=0) + 1e-12)
    meta = p.metadata()
    assert meta.white_balance == (p.red_gain, 1.0, p.blue_gain)
    np.testing.assert_array_equal(np.array(meta.color_matrix), p.xyz2cam)
    # what a model consuming the metadata reconstructs is exactly the camera's cam2rgb
    np.testing.assert_allclose(cam_to_srgb_matrix(np.array(meta.color_matrix)), p.cam2rgb, atol=1e-10)
    assert meta.iso == pytest.approx(100 * p.shot_noise / synth.SHOT_NOISE_AT_ISO100)
    assert meta.f_number in synth.PHONE_F_NUMBERS and 4.0 <= meta.focal_length <= 7.0
    d = json.loads(json.dumps(p.to_dict()))
    assert np.array(d["cam2rgb"]).shape == (3, 3) and d["shot_noise"] == p.shot_noise


def test_exposure_is_consistent_with_iso_and_brightness():
    draws = [synth.random_params(np.random.default_rng(s)) for s in range(1000)]
    iso = np.array([p.iso for p in draws])
    t = np.array([p.exposure_time for p in draws])
    ok = (t > synth.EXPOSURE_RANGE[0]) & (t < synth.EXPOSURE_RANGE[1]) & (iso > 100) & (iso < 12000)
    # EV100 the camera metered, recovered from the EXIF plus the known RAW darkening
    ev = np.log2(np.array([p.f_number**2 / (p.exposure_time * p.rgb_gain) for p in draws]) * 100 / iso)
    residual = (ev - (synth.EV_AT_ISO100 - synth.EV_PER_ISO_STOP * np.log2(iso / 100)))[ok]
    assert ok.sum() > 900 and abs(residual.mean()) < 0.05 and abs(residual.std() - 0.3) < 0.03
    assert np.corrcoef(np.log(iso), np.log(t))[0, 1] > 0.9  # darker scenes: more gain and longer exposure


def test_tone_curve_inverse():
    x = np.linspace(0, 1, 1001)
    np.testing.assert_allclose(synth.smoothstep(synth.inverse_smoothstep(x)), x, atol=1e-12)


def test_linear_round_trip_is_exact_below_highlights():
    scene = 0.85 * smooth_photo(64)  # keeps the highlight-safe gains out of play
    p = synth.random_params(np.random.default_rng(5))
    back = synth.process_linear(synth.unprocess_linear(scene, p), p)
    assert psnr(back, scene) > 80


def test_unprocess_then_process_reference_round_trip():
    scene = smooth_photo(128)
    for seed in range(3):
        packed, p = synth.unprocess(scene, np.random.default_rng(seed), noise=False)
        out = synth.process_reference(packed, p)
        assert out.shape == scene.shape
        assert psnr(out, scene) > 35
    # Brooks' released forward pass (no rgb_gain, no tone curve) does not invert it: the terms matter
    unbright = dataclasses.replace(p, rgb_gain=1.0)
    assert psnr(synth.process_reference(packed, unbright, tone_curve=False), scene) < 25


def test_demosaic_bilinear_is_exact_on_constant_and_linear_images():
    flat = synth.mosaic(np.broadcast_to([0.2, 0.5, 0.7], (16, 16, 3)))
    np.testing.assert_allclose(synth.demosaic_bilinear(flat), np.broadcast_to([0.2, 0.5, 0.7], (16, 16, 3)))
    yy, xx = np.mgrid[0:16, 0:16] / 32.0
    ramp = np.stack([xx, yy, xx + yy], axis=-1)
    out = synth.demosaic_bilinear(synth.mosaic(ramp))
    np.testing.assert_allclose(out[2:-2, 2:-2], ramp[2:-2, 2:-2], atol=1e-12)


def test_red_scene_lands_in_the_red_plane():
    red = np.zeros((16, 16, 3))
    red[..., 0] = 0.8
    packed, p = synth.unprocess(red, np.random.default_rng(0), noise=False)
    means = packed.reshape(4, -1).mean(axis=1)  # R, Gr, Gb, B
    assert means[0] > 3 * max(means[1], means[2]) and means[0] > 10 * means[3]
    assert means[1] == pytest.approx(means[2])


def test_noise_matches_shot_and_read_levels():
    scene = np.full((256, 256, 3), 0.6)
    p = dataclasses.replace(synth.random_params(np.random.default_rng(0)), shot_noise=1e-2, read_noise=2e-4)
    clean, _ = synth.unprocess(scene, np.random.default_rng(1), noise=False, params=p)
    noisy, _ = synth.unprocess(scene, np.random.default_rng(1), noise=True, params=p)
    for c in range(4):
        level = float(clean[c].mean())
        assert 0.05 < level < 0.6  # far from the clip at 0 and 1
        resid = noisy[c].astype(np.float64) - clean[c]
        expected = 1e-2 * level + 2e-4
        assert resid.var() == pytest.approx(expected, rel=0.06)
        assert abs(resid.mean()) < 0.05 * np.sqrt(expected)


def test_noise_levels_from_the_draw_are_used():
    scene = np.full((128, 128, 3), 0.6)
    clean, p = synth.unprocess(scene, np.random.default_rng(11), noise=False)
    noisy, q = synth.unprocess(scene, np.random.default_rng(11), noise=True)
    assert q.to_dict() == p.to_dict()
    resid = (noisy - clean.astype(np.float64))[1]
    assert resid.var() == pytest.approx(p.shot_noise * clean[1].mean() + p.read_noise, rel=0.1)


def test_dead_leaves_range_variety_and_speed():
    rng = np.random.default_rng(0)
    image = synth.dead_leaves(256, 256, rng)
    assert image.shape == (256, 256, 3) and image.dtype == np.float32
    assert image.min() >= 0 and image.max() <= 1
    assert image.std() > 0.1 and len(np.unique(image.reshape(-1, 3), axis=0)) > 1000
    # sharp edges: many large jumps between neighbouring pixels
    assert (np.abs(np.diff(image, axis=1)).max(axis=-1) > 0.2).mean() > 0.02
    assert np.array_equal(image, synth.dead_leaves(256, 256, np.random.default_rng(0)))
    assert not np.array_equal(image, synth.dead_leaves(256, 256, np.random.default_rng(1)))
    assert synth.dead_leaves(37, 91, rng).shape == (37, 91, 3)


def test_natural_images_split():
    train = dict(synth.natural_images("train"))
    held = dict(synth.natural_images("heldout"))
    assert set(held) == {"chelsea", "coffee"} and not set(train) & set(held)
    assert set(train) | set(held) == set(synth.NATURAL_IMAGES) and len(train) >= 5
    for name, image in {**train, **held}.items():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32, name
        assert 0 <= image.min() and image.max() <= 1 and min(image.shape[:2]) >= 300, name
        assert not image.flags.writeable
    with pytest.raises(ValueError):
        synth.natural_images("test")
