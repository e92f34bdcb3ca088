"""Training losses: values on known inputs against independent references, and gradient flow."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mobileisp import losses
from mobileisp.losses import get_loss, linear_target


class ConstantModel(nn.Module):
    """Returns a learnable constant sRGB image of the target's shape (2x the packed RAW)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = nn.Parameter(torch.tensor(float(value)))

    def forward(self, raw):
        n, _, h, w = raw.shape
        return self.value.expand(n, 3, 2 * h, 2 * w)


class TinyNet(nn.Module):
    """A conv + pixel shuffle RAW -> sRGB net that uses white balance; one frozen parameter."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.frozen = nn.Parameter(torch.ones(4), requires_grad=False)
        self.conv = nn.Conv2d(4, 12, 3, padding=1)

    def forward(self, raw, white_balance):
        gains = white_balance[:, [0, 1, 1, 2], None, None] * self.frozen[None, :, None, None]
        return torch.sigmoid(nn.functional.pixel_shuffle(self.conv(raw * gains), 2))


class TwoStage(nn.Module):
    """CameraNet-shaped: restore(raw) -> linear, enhance(linear) -> sRGB, forward_stages for both."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.restore_net = nn.Conv2d(4, 12, 3, padding=1)
        self.enhance_net = nn.Conv2d(3, 3, 3, padding=1)
        self.enhance_inputs: list[torch.Tensor] = []

    def restore(self, raw, color_matrix):
        return nn.functional.pixel_shuffle(self.restore_net(raw), 2) * color_matrix[:, :1, :1, None]

    def enhance(self, linear):
        self.enhance_inputs.append(linear.detach().clone())
        return torch.sigmoid(self.enhance_net(linear))

    def forward_stages(self, raw, color_matrix):
        restored = self.restore(raw, color_matrix)
        return {"restored": restored, "srgb": self.enhance(restored)}

    def forward(self, raw, color_matrix):
        return self.forward_stages(raw, color_matrix)["srgb"]


def _batch(n=2, size=32, seed=0, **extra):
    g = torch.Generator().manual_seed(seed)
    batch = {"raw": torch.rand(n, 4, size // 2, size // 2, generator=g),
             "srgb": torch.rand(n, 3, size, size, generator=g)}
    batch.update(extra)
    return batch


def test_linear_target_inverts_brooks_tone_curve_and_gamma():
    from mobileisp import synth

    srgb = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    got = linear_target({"srgb": srgb})
    ref = np.maximum(synth.inverse_smoothstep(srgb.numpy()), 1e-8) ** 2.2
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-12, atol=1e-15)
    # forward pipeline: gamma 1/2.2 then smoothstep gives back the sRGB
    lin = torch.tensor([0.0, 0.01, 0.18, 0.5, 1.0], dtype=torch.float64)
    srgb2 = synth.smoothstep(lin.numpy() ** (1 / 2.2))
    np.testing.assert_allclose(linear_target({"srgb": torch.from_numpy(srgb2)}).numpy(), np.maximum(lin.numpy(), 1e-8 ** 2.2), atol=1e-9)
    explicit = torch.full((1, 3, 4, 4), 0.25)
    assert linear_target({"srgb": srgb, "linear": explicit}) is explicit


def test_l1_value():
    batch = _batch()
    loss, logs = get_loss("l1")(ConstantModel(0.25), batch)
    expected = (batch["srgb"] - 0.25).abs().mean().item()
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert logs == {"l1": pytest.approx(expected, rel=1e-6)}


def test_l1_ssim_matches_skimage_ssim():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(2)
    target = torch.rand(1, 3, 48, 48, generator=g)
    pred = (target + 0.1 * torch.randn(1, 3, 48, 48, generator=g)).clamp(0, 1)

    class Fixed(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(pred.clone())

        def forward(self, raw):
            return self.p

    loss, logs = get_loss("l1+ssim")(Fixed(), {"raw": torch.zeros(1, 4, 24, 24), "srgb": target})
    ref_ssim = structural_similarity(pred[0].permute(1, 2, 0).double().numpy(), target[0].permute(1, 2, 0).double().numpy(),
                                     channel_axis=2, data_range=1.0, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False)
    ref_l1 = (pred - target).abs().mean().item()
    assert logs["ssim"] == pytest.approx(ref_ssim, abs=1e-4)
    assert loss.item() == pytest.approx(ref_l1 + 0.15 * (1 - ref_ssim), abs=2e-5)


def test_l1_ssim_is_zero_for_a_perfect_prediction():
    target = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(3))

    class Echo(nn.Module):
        def forward(self, raw):
            return target

    loss, logs = get_loss("l1+ssim")(Echo(), {"raw": torch.zeros(2, 4, 16, 16), "srgb": target})
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert logs["ssim"] == pytest.approx(1.0, abs=1e-6)


def test_lab_l1_lab_term_matches_skimage_rgb2lab():
    from skimage.color import rgb2lab

    batch = _batch(n=1, size=24, seed=4)
    _, logs = get_loss("lab-l1")(ConstantModel(0.5), batch)
    pred = np.full((24, 24, 3), 0.5)
    ref = np.abs(rgb2lab(pred) - rgb2lab(batch["srgb"][0].permute(1, 2, 0).double().numpy())).mean() / 100
    # skimage's D65 white differs from the sRGB primaries' row sums in the 4th digit
    assert logs["lab_l1"] == pytest.approx(ref, abs=2e-4)


def test_lab_l1_closed_form_on_flat_images():
    # grey 0.5 against black: Lab (53.389, 0, 0) vs (0, 0, 0); for flat images SSIM = C1 / (mu^2 + C1)
    batch = {"raw": torch.zeros(1, 4, 8, 8), "srgb": torch.zeros(1, 3, 16, 16)}
    loss, logs = get_loss("lab-l1")(ConstantModel(0.5), batch)
    L = 0.5338896
    ssim_flat = 0.01**2 / (L**2 + 0.01**2)
    assert logs["lab_l1"] == pytest.approx(L / 3, rel=1e-4)
    assert logs["ms_ssim_loss"] == pytest.approx(1 - ssim_flat, rel=1e-4)
    assert loss.item() == pytest.approx(0.5 * L / 3 + 0.5 * (1 - ssim_flat), rel=1e-4)


def test_lab_l1_works_on_small_crops_and_is_zero_when_exact():
    target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(5))

    class Echo(nn.Module):
        def forward(self, raw):
            return target

    loss, _ = get_loss("lab-l1")(Echo(), {"raw": torch.zeros(2, 4, 8, 8), "srgb": target})
    assert loss.item() == pytest.approx(0.0, abs=1e-6)


def test_cameranet_restore_loss_value():
    batch = _batch(n=1, size=16, seed=6)
    restored = torch.full((1, 3, 16, 16), 0.2)
    lin = linear_target(batch)
    expected = (restored - lin).abs().mean() + (torch.log(restored + 1e-3) - torch.log(lin + 1e-3)).abs().mean()
    assert losses.cameranet_restore_loss(restored, lin).item() == pytest.approx(expected.item(), rel=1e-6)
    # negative outputs are clamped inside the log only: log(0 + 1e-3)
    neg = torch.full((1, 3, 16, 16), -0.5)
    expected_neg = (neg - lin).abs().mean() + (math.log(1e-3) - torch.log(lin + 1e-3)).abs().mean()
    assert losses.cameranet_restore_loss(neg, lin).item() == pytest.approx(expected_neg.item(), rel=1e-6)


def _grads(model):
    return {n: (p.grad is not None and bool(p.grad.abs().sum() > 0)) for n, p in model.named_parameters()}


def test_cameranet_stages_train_the_right_subnetwork():
    batch = _batch(n=2, size=16, seed=7, color_matrix=torch.eye(3).expand(2, 3, 3).clone())
    lin = linear_target(batch)

    model = TwoStage()
    loss, logs = get_loss("cameranet", stage="restore")(model, batch)
    loss.backward()
    assert _grads(model) == {"restore_net.weight": True, "restore_net.bias": True,
                             "enhance_net.weight": False, "enhance_net.bias": False}
    assert loss.item() == pytest.approx(losses.cameranet_restore_loss(model.restore(batch["raw"], batch["color_matrix"]), lin).item(), rel=1e-6)

    model = TwoStage()
    loss, logs = get_loss("cameranet", stage="enhance")(model, batch)
    loss.backward()
    # Enhance-Net is fed the ground-truth linear image (paper Eq. 8), not Restore-Net's output
    assert torch.equal(model.enhance_inputs[0], lin)
    assert _grads(model) == {"restore_net.weight": False, "restore_net.bias": False,
                             "enhance_net.weight": True, "enhance_net.bias": True}

    model = TwoStage()
    loss, logs = get_loss("cameranet", stage="joint", lam=0.9)(model, batch)
    loss.backward()
    assert all(_grads(model).values())
    assert loss.item() == pytest.approx(0.9 * logs["restore"] + 0.1 * logs["enhance"], rel=1e-6)
    assert get_loss("cameranet", stage="joint").uses_all_parameters is True
    assert get_loss("cameranet", stage="restore").uses_all_parameters is False


@pytest.mark.parametrize("name", ["l1", "l1+ssim", "lab-l1", "mse"])
def test_gradients_reach_every_trainable_parameter(name):
    model = TinyNet()
    batch = _batch(n=2, size=32, seed=8, white_balance=torch.tensor([[2.0, 1.0, 1.5], [1.8, 1.0, 1.7]]))
    loss, logs = get_loss(name)(model, batch)
    loss.backward()
    assert torch.isfinite(loss) and loss.item() > 0
    assert all(math.isfinite(v) for v in logs.values())
    assert model.frozen.grad is None
    for n, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, n


def test_gradients_are_finite_at_black_and_saturated_outputs():
    for value in (0.0, 1.0):
        model = ConstantModel(value)
        loss, _ = get_loss("lab-l1")(model, {"raw": torch.zeros(1, 4, 8, 8), "srgb": torch.full((1, 3, 16, 16), 0.3)})
        loss.backward()
        assert torch.isfinite(model.value.grad) and model.value.grad != 0


def test_unknown_loss_stage_and_option_are_value_errors():
    assert losses.list_losses() == ["cameranet", "deepisp", "l1", "l1+ssim", "lab-l1", "mse", "raw-l1"]
    assert get_loss("deepisp", alpha=0.3).name == "lab-l1"
    with pytest.raises(ValueError, match="unknown loss 'vgg'"):
        get_loss("vgg")
    with pytest.raises(ValueError, match="unknown CameraNet stage 'both'"):
        get_loss("cameranet", stage="both")
    with pytest.raises(ValueError, match="does not take options"):
        get_loss("l1", alpha=0.3)


def test_cameranet_ssim_weight_adds_ssim_on_the_srgb_output():
    from mobileisp.losses import ssim_value

    batch = _batch(n=2, size=16, seed=3, color_matrix=torch.eye(3).expand(2, 3, 3).clone())
    model = TwoStage()
    plain, plain_logs = get_loss("cameranet", stage="joint", lam=0.1)(model, batch)
    with_ssim, logs = get_loss("cameranet", stage="joint", lam=0.1, ssim_weight=0.15)(model, batch)
    srgb = model.forward_stages(batch["raw"], color_matrix=batch["color_matrix"])["srgb"]
    expected_enh = plain_logs["enhance"] + 0.15 * (1.0 - ssim_value(srgb, batch["srgb"]).item())
    assert logs["enhance"] == pytest.approx(expected_enh, rel=1e-5)
    assert with_ssim.item() == pytest.approx(0.1 * logs["restore"] + 0.9 * logs["enhance"], rel=1e-6)
    assert with_ssim.item() > plain.item()


def test_raw_l1_scores_an_inverse_model_on_the_clean_raw():
    """raw-l1 feeds sRGB to the model and compares with ``raw_clean`` when present, else ``raw``."""

    class ToRaw(torch.nn.Module):
        def forward(self, srgb, **meta):
            return F.avg_pool2d(srgb, 2)[:, [0, 1, 1, 2]]

    srgb = torch.rand(2, 3, 8, 8)
    pred = ToRaw()(srgb)
    batch = {"srgb": srgb, "raw": pred + 0.25, "raw_clean": pred + 0.5}
    loss, logs = get_loss("raw-l1")(ToRaw(), batch)
    assert loss.item() == pytest.approx(0.5) and logs == {"raw_l1": pytest.approx(0.5)}
    del batch["raw_clean"]
    assert get_loss("raw-l1")(ToRaw(), batch)[0].item() == pytest.approx(0.25)
