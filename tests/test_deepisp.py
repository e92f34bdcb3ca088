"""DeepISP: parameter counts, shapes, the bilinear front end and the quadratic colour transform."""

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from mobileisp.errors import ImageSizeError
from mobileisp.models import create_model, get_spec
from mobileisp.models.deepisp import BilinearDemosaic, DeepISP, QuadraticColorTransform


def n_trainable(model):
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_parameter_counts_match_author_code():
    assert n_trainable(create_model("deepisp", weights=None)) == 668_446  # EliSchwartz/deepisp-theano
    assert n_trainable(create_model("deepisp-lite", weights=None)) == 36_174


def test_color_bias_is_a_fixed_buffer_in_the_state_dict():
    model = DeepISP(n_blocks=1, width=8, hl_width=8)
    assert "color.bias" in model.state_dict()
    assert all("color" not in name for name, _ in model.named_parameters())
    assert torch.equal(model.state_dict()["color.bias"], torch.eye(10, 3))


def test_forward_shape_and_finite():
    torch.manual_seed(0)
    model = create_model("deepisp", weights=None)
    with torch.no_grad():
        out = model(torch.rand(1, 4, 43, 46))
    assert out.shape == (1, 3, 86, 92)
    assert torch.isfinite(out).all()


def test_minimum_size_is_86_raw_pixels():
    model = DeepISP(n_blocks=1, width=8, hl_width=8)
    assert get_spec("deepisp").min_size == 43
    assert model(torch.rand(1, 4, 43, 43)).shape == (1, 3, 86, 86)
    with pytest.raises(ImageSizeError, match="86x86"):
        model(torch.rand(1, 4, 42, 64))
    with pytest.raises(ImageSizeError):
        model(torch.rand(1, 3, 64, 64))


def test_zero_network_returns_the_demosaiced_image():
    # all learned weights 0: every tanh residual is 0 and W = bias = identity, so out = demosaic(raw)
    model = DeepISP(n_blocks=2, width=8, hl_width=8)
    for p in model.parameters():
        torch.nn.init.zeros_(p)
    raw = torch.rand(1, 4, 48, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(raw), BilinearDemosaic()(raw), rtol=0, atol=1e-6)


def test_bilinear_demosaic_exact_on_constant_image():
    raw = torch.tensor([0.2, 0.5, 0.5, 0.8]).reshape(1, 4, 1, 1).expand(1, 4, 6, 7).contiguous()
    out = BilinearDemosaic()(raw)
    assert out.shape == (1, 3, 12, 14)
    expected = torch.tensor([0.2, 0.5, 0.8]).reshape(1, 3, 1, 1).expand_as(out)
    torch.testing.assert_close(out, expected, rtol=0, atol=1e-7)


def test_bilinear_demosaic_matches_mosaic_domain_filter():
    # textbook bilinear: zero-filled colour planes convolved with the standard R/B and G kernels
    rng = np.random.default_rng(1)
    h, w = 12, 16
    mosaic = rng.random((2 * h, 2 * w))
    packed = np.stack([mosaic[0::2, 0::2], mosaic[0::2, 1::2], mosaic[1::2, 0::2], mosaic[1::2, 1::2]])
    masks = np.zeros((3, 2 * h, 2 * w))
    masks[0, 0::2, 0::2] = 1
    masks[1, 0::2, 1::2] = masks[1, 1::2, 0::2] = 1
    masks[2, 1::2, 1::2] = 1
    k_rb = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 4
    k_g = np.array([[0, 1, 0], [1, 4, 1], [0, 1, 0]]) / 4
    ref = np.stack([convolve(mosaic * masks[c], k_g if c == 1 else k_rb, mode="constant") for c in range(3)])
    out = BilinearDemosaic()(torch.from_numpy(packed)[None].float())[0].numpy()
    np.testing.assert_allclose(out[:, 2:-2, 2:-2], ref[:, 2:-2, 2:-2], atol=1e-6)


def test_quadratic_transform_equals_direct_formula():
    torch.manual_seed(0)
    image = torch.rand(2, 3, 5, 4) - 0.5
    params = torch.randn(2, 30)
    transform = QuadraticColorTransform()
    transform.bias.copy_(torch.randn(10, 3))
    out = transform(image, params).numpy()
    im, p, bias = image.numpy().astype(np.float64), params.numpy().astype(np.float64), transform.bias.numpy()
    for n in range(2):
        w = p[n].reshape(10, 3) + bias
        for y in range(5):
            for x in range(4):
                r, g, b = im[n, :, y, x]
                m = np.array([r, g, b, r * r, r * g, r * b, g * g, g * b, b * b, 1.0])
                np.testing.assert_allclose(out[n, :, y, x], m @ w, rtol=1e-5, atol=1e-5)


def test_fit_recovers_a_quadratic_transform():
    torch.manual_seed(0)
    source = torch.rand(3, 16, 16) - 0.5
    w_true = torch.randn(10, 3) * 0.3
    target = QuadraticColorTransform()(source[None], (w_true - torch.eye(10, 3)).reshape(1, 30))[0]
    torch.testing.assert_close(QuadraticColorTransform.fit(source, target), w_true, rtol=0, atol=1e-4)
    affine = QuadraticColorTransform.fit(source, target, affine=True)
    assert torch.count_nonzero(affine[3:9]) == 0 and torch.count_nonzero(affine[[0, 1, 2, 9]]) == 12


def test_specs():
    full, lite = get_spec("deepisp"), get_spec("deepisp-lite")
    assert full.loss == lite.loss == "deepisp"
    assert full.train_config["lr"] == 5e-5 and full.train_config["loss_alpha"] == 0.5
    assert full.weights is None and lite.weights == "deepisp-lite"
    assert full.export_size == (256, 256) and full.metadata_fields == ()
    assert full.parity_floors["int8"] == 32.0 and lite.parity_floors["coreml-w8a8"] == 30.0
