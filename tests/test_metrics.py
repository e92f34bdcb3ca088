"""mobileisp.metrics against independent references: skimage and Sharma et al.'s CIEDE2000 test data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage import color, data, transform
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from mobileisp import metrics as M
from mobileisp.errors import ImageSizeError, MobileISPError

# Sharma, Wu, Dalal (2005), Table 1: the 34 CIEDE2000 test pairs (L1, a1, b1, L2, a2, b2, dE00).
# Pairs 9-15 straddle the hue-angle discontinuity (pair 10 sits exactly at 180 degrees).
SHARMA_PAIRS = [
    (50.0000, 2.6772, -79.7751, 50.0000, 0.0000, -82.7485, 2.0425),
    (50.0000, 3.1571, -77.2803, 50.0000, 0.0000, -82.7485, 2.8615),
    (50.0000, 2.8361, -74.0200, 50.0000, 0.0000, -82.7485, 3.4412),
    (50.0000, -1.3802, -84.2814, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -1.1848, -84.8006, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, -0.9009, -85.5211, 50.0000, 0.0000, -82.7485, 1.0000),
    (50.0000, 0.0000, 0.0000, 50.0000, -1.0000, 2.0000, 2.3669),
    (50.0000, -1.0000, 2.0000, 50.0000, 0.0000, 0.0000, 2.3669),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0009, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0010, 7.1792),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0011, 7.2195),
    (50.0000, 2.4900, -0.0010, 50.0000, -2.4900, 0.0012, 7.2195),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0009, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0010, -2.4900, 4.8045),
    (50.0000, -0.0010, 2.4900, 50.0000, 0.0011, -2.4900, 4.7461),
    (50.0000, 2.5000, 0.0000, 50.0000, 0.0000, -2.5000, 4.3065),
    (50.0000, 2.5000, 0.0000, 73.0000, 25.0000, -18.0000, 27.1492),
    (50.0000, 2.5000, 0.0000, 61.0000, -5.0000, 29.0000, 22.8977),
    (50.0000, 2.5000, 0.0000, 56.0000, -27.0000, -3.0000, 31.9030),
    (50.0000, 2.5000, 0.0000, 58.0000, 24.0000, 15.0000, 19.4535),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.1736, 0.5854, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2972, 0.0000, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 1.8634, 0.5757, 1.0000),
    (50.0000, 2.5000, 0.0000, 50.0000, 3.2592, 0.3350, 1.0000),
    (60.2574, -34.0099, 36.2677, 60.4626, -34.1751, 39.4387, 1.2644),
    (63.0109, -31.0961, -5.8663, 62.8187, -29.7946, -4.0864, 1.2630),
    (61.2901, 3.7196, -5.3901, 61.4292, 2.2480, -4.9620, 1.8731),
    (35.0831, -44.1164, 3.7933, 35.0232, -40.0716, 1.5901, 1.8645),
    (22.7233, 20.0904, -46.6940, 23.0331, 14.9730, -42.5619, 2.0373),
    (36.4612, 47.8580, 18.3852, 36.2715, 50.5065, 21.2231, 1.4146),
    (90.8027, -2.0831, 1.4410, 91.1528, -1.6435, 0.0447, 1.4441),
    (90.9257, -0.5406, -0.9208, 88.6381, -0.8985, -0.7239, 1.5381),
    (6.7747, -0.2908, -2.4247, 5.8714, -0.0985, -2.2286, 0.6377),
    (2.0776, 0.0795, -1.1350, 0.9033, -0.0636, -0.5514, 0.9082),
]


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=1, channel_axis=-1)


@pytest.fixture(scope="module")
def pair() -> tuple[np.ndarray, np.ndarray]:
    """A natural 64x64 image (float64 HWC in [0, 1]) and a noisy, colour-shifted copy."""
    img = transform.resize(data.astronaut(), (64, 64), anti_aliasing=True)
    rng = np.random.default_rng(0)
    other = np.clip(img * [1.05, 0.97, 0.9] + rng.normal(0, 0.04, img.shape), 0, 1)
    return img, other


@pytest.fixture(scope="module")
def batch() -> tuple[np.ndarray, np.ndarray]:
    """Three 32x32 HWC image pairs with different error levels, including black, white and grey areas."""
    rng = np.random.default_rng(1)
    ys = rng.random((3, 32, 32, 3))
    ys[:, :4] = 0.0
    ys[:, 4:8] = 1.0
    ys[:, 8:12] = ys[:, 8:12, :, :1]  # neutral greys (a* = b* = 0)
    xs = np.clip(ys + rng.normal(0, 1, ys.shape) * np.array([0.01, 0.05, 0.2])[:, None, None, None], 0, 1)
    return xs, ys


def test_psnr_matches_skimage(pair, batch):
    a, b = pair
    assert M.psnr(a, b).item() == pytest.approx(peak_signal_noise_ratio(b, a, data_range=1), abs=1e-4)
    xs, ys = batch
    got = M.psnr(torch.from_numpy(xs).permute(0, 3, 1, 2), torch.from_numpy(ys).permute(0, 3, 1, 2))
    want = [peak_signal_noise_ratio(y, x, data_range=1) for x, y in zip(xs, ys)]
    assert got.shape == (3,)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-4)
    assert want[0] > want[1] + 10 > want[2] + 20  # the three pairs really differ


def test_ssim_matches_skimage(pair, batch):
    a, b = pair
    want = _skimage_ssim(b, a)
    assert 0.5 < want < 0.95
    assert M.ssim(a, b).item() == pytest.approx(want, abs=1e-3)
    # float32 tensors, unbatched (3, H, W)
    got32 = M.ssim(torch.from_numpy(a).permute(2, 0, 1).float(), torch.from_numpy(b).permute(2, 0, 1).float())
    assert got32.shape == (1,)
    assert got32.item() == pytest.approx(want, abs=1e-3)
    xs, ys = batch
    np.testing.assert_allclose(M.ssim(xs, ys).numpy(), [_skimage_ssim(y, x) for x, y in zip(xs, ys)], atol=1e-3)


def test_sharma_ciede2000_pairs():
    t = torch.tensor(SHARMA_PAIRS, dtype=torch.float64)
    got = M.ciede2000(t[:, 0:3], t[:, 3:6], dim=1)
    # the table is rounded to 4 decimals
    np.testing.assert_allclose(got.numpy(), t[:, 6].numpy(), atol=1e-4)
    # symmetric in its arguments
    np.testing.assert_allclose(M.ciede2000(t[:, 3:6], t[:, 0:3]).numpy(), got.numpy(), atol=1e-9)


def test_lab_conversion_matches_skimage(batch):
    xs, _ = batch
    lab = M.srgb_to_lab(torch.from_numpy(xs).permute(0, 3, 1, 2)).permute(0, 2, 3, 1).numpy()
    # skimage rounds the sRGB matrix to 6 digits and the CIE constants to 0.008856 / 7.787
    np.testing.assert_allclose(lab, color.rgb2lab(xs), atol=2e-2)
    white = M.srgb_to_lab(torch.ones(1, 3, 1, 1, dtype=torch.float64)).flatten()
    np.testing.assert_allclose(white.numpy(), [100.0, 0.0, 0.0], atol=1e-6)


def test_delta_e_matches_skimage(pair, batch):
    a, b = pair
    want = color.deltaE_ciede2000(color.rgb2lab(b), color.rgb2lab(a)).mean()
    assert want > 1.0
    assert M.delta_e2000(a, b).item() == pytest.approx(want, abs=1e-3)
    assert M.delta_e76(a, b).item() == pytest.approx(color.deltaE_cie76(color.rgb2lab(b), color.rgb2lab(a)).mean(),
                                                     abs=1e-3)
    xs, ys = batch
    want00 = [color.deltaE_ciede2000(color.rgb2lab(y), color.rgb2lab(x)).mean() for x, y in zip(xs, ys)]
    np.testing.assert_allclose(M.delta_e2000(xs, ys).numpy(), want00, atol=1e-3)
    want76 = [color.deltaE_cie76(color.rgb2lab(y), color.rgb2lab(x)).mean() for x, y in zip(xs, ys)]
    np.testing.assert_allclose(M.delta_e76(xs, ys).numpy(), want76, atol=1e-3)


def test_max_abs_error_and_compare(batch):
    xs, ys = batch
    np.testing.assert_allclose(M.max_abs_error(xs, ys).numpy(), np.abs(xs - ys).reshape(3, -1).max(1), atol=0)
    m = M.compare(xs, ys)
    assert m.psnr == pytest.approx(np.mean([peak_signal_noise_ratio(y, x, data_range=1) for x, y in zip(xs, ys)]),
                                   abs=1e-4)
    assert m.ssim == pytest.approx(np.mean([_skimage_ssim(y, x) for x, y in zip(xs, ys)]), abs=1e-3)
    assert m.max_abs_error == pytest.approx(np.abs(xs - ys).reshape(3, -1).max(1).mean(), abs=1e-12)
    assert set(m.to_dict()) == {"psnr", "ssim", "delta_e2000", "max_abs_error", "delta_e76"}
    assert m.delta_e76 == pytest.approx(float(M.delta_e76(xs, ys).double().mean()), rel=1e-12) and m.delta_e76 > 0
    assert all(isinstance(v, float) for v in m.to_dict().values())


def test_identical_images(batch):
    _, ys = batch
    m = M.compare(ys, ys)
    assert m.psnr == float("inf")
    assert m.ssim == pytest.approx(1.0, abs=1e-9)
    assert m.delta_e2000 == 0.0 and m.delta_e76 == 0.0
    assert m.max_abs_error == 0.0


def test_uint8_numpy_is_scaled(pair):
    a, b = pair
    a8, b8 = (np.round(a * 255)).astype(np.uint8), (np.round(b * 255)).astype(np.uint8)
    assert M.psnr(a8, b8).item() == pytest.approx(peak_signal_noise_ratio(b8, a8, data_range=255), abs=1e-4)


def test_colour_differences_have_finite_gradients(batch):
    """Black, neutral and identical pixels are where naive sqrt/atan2/cbrt give NaN gradients."""
    xs, ys = batch
    target = torch.from_numpy(ys).permute(0, 3, 1, 2)
    for fn in (M.delta_e2000, M.delta_e76):
        pred = target.clone().requires_grad_(True)
        loss = fn(pred, target).sum() + fn(pred, torch.from_numpy(xs).permute(0, 3, 1, 2)).sum()
        loss.backward()
        assert torch.isfinite(pred.grad).all(), fn.__name__
        assert pred.grad.abs().sum() > 0


@pytest.mark.parametrize(
    "pred, target",
    [
        (torch.zeros(1, 3, 16, 16), torch.zeros(1, 3, 16, 18)),
        (torch.zeros(1, 4, 16, 16), torch.zeros(1, 4, 16, 16)),
        (np.zeros((16, 16)), np.zeros((16, 16))),
    ],
)
def test_bad_shapes_raise_user_errors(pred, target):
    with pytest.raises(ImageSizeError):
        M.compare(pred, target)


def test_ssim_rejects_images_smaller_than_window():
    with pytest.raises(MobileISPError, match="at least 11x11"):
        M.ssim(torch.zeros(1, 3, 8, 32), torch.zeros(1, 3, 8, 32))
