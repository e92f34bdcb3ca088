"""Training losses of the papers behind the model zoo.

``get_loss(name, **options)`` returns a :class:`Loss`: ``loss(model, batch) -> (loss, logs)`` where
``loss`` is a scalar tensor to back-propagate and ``logs`` maps term names to floats. Taking the model
(not its output) lets a two-stage loss call ``model.forward_stages``.

``batch`` is a dict of tensors: ``raw`` (N, 4, H/2, W/2) packed RGGB in [0, 1], ``srgb`` (N, 3, H, W)
target in [0, 1], optionally ``linear`` (N, 3, H, W), the linear-light sRGB target, and the model's
camera-metadata inputs under their field names (``white_balance`` (N, 3), ...) and no other metadata:
every metadata key present is passed to the network as a keyword argument.

Names:

- ``l1``: mean absolute error on sRGB.
- ``raw-l1``: an inverse (sRGB -> RAW) network's loss, ParamISP's: mean absolute error between
  ``model(srgb, **metadata)`` and the clean packed RAW ``raw_clean`` (synthetic data carries it; ``raw``
  otherwise), (N, 4, H/2, W/2).
- ``l1+ssim``: LiteISPNet's released training loss without the VGG-19 term (no pretrained weights are
  shipped): ``L1 + 0.15 * (1 - SSIM)``, SSIM with an 11 x 11 Gaussian window, sigma 1.5.
- ``lab-l1`` (alias ``deepisp``): DeepISP's full-ISP loss ``(1 - a) * L1(Lab / 100) + a * (1 - MS-SSIM(L / 100))`` with
  ``a = 0.5`` (the authors' code: ``loss_Lab(vgg_alpha=0.5)``). The paper's MS-SSIM is "patches of 5x5
  at two scales", and the authors' code averages ``1 - SSIM`` over the two scales (full and half
  resolution) rather than taking Wang's product of powers; we do the same with pytorch-msssim's SSIM
  (5 x 5 Gaussian window, sigma 1.5) on L*/100, which works for any crop of at least 10 pixels (the
  5-scale MS-SSIM of pytorch-msssim needs more than 160). CIELAB is the exact conversion of
  :func:`mobileisp.metrics.srgb_to_lab` (sRGB linearised, D65); the authors' code skips the
  linearisation. Dividing Lab by 100 keeps the L1 term on the scale of an sRGB L1.
- ``cameranet``: CameraNet's losses, one per training step (``stage``):
  ``restore``: ``L1(I, G) + L1(log(max(I, 0) + 1e-3), log(G + 1e-3))`` between the linear output
  (``model.restore(raw, **meta)``, else ``forward_stages(...)["restored"]``) and the linear target
  (the released code's ``log(x + 1e-3)``);
  ``enhance``: ``L1`` on sRGB, Enhance-Net fed the *ground-truth* linear image when the model has
  ``enhance(linear)`` (paper Eq. 8), its own restored output otherwise;
  ``joint``: ``lam * L_restore + (1 - lam) * L1(sRGB)`` through both stages (Eq. 9).
  Option ``ssim_weight=w`` (not in the paper; the pruned model's fine-tune) makes the enhance term
  ``L1(sRGB) + w * (1 - SSIM(sRGB))``, LiteISPNet's loss on the final output.

The linear target of synthetic data is the linear sRGB before Brooks et al.'s tone curve and gamma:
``linear = max(0.5 - sin(asin(1 - 2 srgb) / 3), 1e-8) ** 2.2`` (:func:`linear_target`). ``batch["linear"]``
is used instead when a dataset provides it.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from mobileisp.metadata import METADATA_FIELDS
from mobileisp.metadata_encoding import ENCODED_INPUTS

Logs = dict[str, float]

#: LiteISPNet (released code): weight of the (1 - SSIM) term.
LITEISP_SSIM_WEIGHT = 0.15
#: DeepISP (authors' code ``loss_Lab(vgg_alpha=0.5)``): weight of the MS-SSIM term.
DEEPISP_ALPHA = 0.5
#: DeepISP: "patches of 5x5 at two scales".
DEEPISP_SSIM_WIN = 5
DEEPISP_SCALES = 2
#: CameraNet (released code): offset inside the log of the restoration loss.
CAMERANET_LOG_EPS = 1e-3
CAMERANET_STAGES = ("restore", "enhance", "joint")


class Loss:
    """A named training loss: ``loss(model, batch) -> (scalar tensor, logs)``.

    Attributes:
        name: registry name.
        uses_all_parameters: False when some trainable parameters get no gradient (a CameraNet stage
            that trains one sub-network); DistributedDataParallel then needs ``find_unused_parameters``.
    """

    def __init__(self, name: str, fn: Callable[[torch.nn.Module, dict[str, Any]], tuple[torch.Tensor, Logs]],
                 uses_all_parameters: bool = True):
        self.name = name
        self._fn = fn
        self.uses_all_parameters = uses_all_parameters

    def __call__(self, model: torch.nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, Logs]:
        return self._fn(model, batch)

    def __repr__(self) -> str:
        return f"Loss({self.name!r})"


def list_losses() -> list[str]:
    """Names accepted by :func:`get_loss`."""
    return sorted(_BUILDERS)


def get_loss(name: str, **options: Any) -> Loss:
    """The loss called ``name``.

    Args:
        name: one of :func:`list_losses`.
        options: ``cameranet`` takes ``stage`` ("restore", "enhance" or "joint"; default "joint"),
            ``lam`` (weight of the restoration term in the joint loss; default 0.5), ``log_eps``
            (default 1e-3) and ``ssim_weight`` (adds ``w * (1 - SSIM)`` on sRGB to the enhance term;
            default 0, the paper's plain L1); ``lab-l1`` takes ``alpha``; the others take none.

    Raises:
        ValueError: unknown name, option or stage.
    """
    if name not in _BUILDERS:
        raise ValueError(f"unknown loss {name!r}; known losses: {', '.join(list_losses())}")
    try:
        return _BUILDERS[name](**options)
    except TypeError:
        raise ValueError(f"loss {name!r} does not take options {sorted(options)}") from None


# ------------------------------------------------------------------------------------------ helpers


def model_inputs(batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The metadata keyword arguments present in ``batch`` (see the module docstring)."""
    return {k: batch[k] for k in (*METADATA_FIELDS, *ENCODED_INPUTS) if k in batch}


def predict(model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
    """``model(raw, **metadata)``: sRGB (N, 3, H, W)."""
    return model(batch["raw"], **model_inputs(batch))


def linear_target(batch: dict[str, Any]) -> torch.Tensor:
    """The linear-light sRGB target (N, 3, H, W): ``batch["linear"]``, or the sRGB target with Brooks et
    al.'s tone curve and 2.2 gamma inverted (inverse smoothstep, then ``max(x, 1e-8) ** 2.2``)."""
    if "linear" in batch:
        return batch["linear"]
    x = batch["srgb"].clamp(0.0, 1.0)
    x = 0.5 - torch.sin(torch.asin(1.0 - 2.0 * x) / 3.0)
    return x.clamp_min(1e-8).pow(2.2)


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return (pred - target).abs().mean()


def ssim_value(pred: torch.Tensor, target: torch.Tensor, win_size: int = 11) -> torch.Tensor:
    """Batch-mean SSIM (pytorch-msssim, Gaussian window, sigma 1.5, data range 1)."""
    from pytorch_msssim import ssim

    return ssim(pred, target, data_range=1.0, size_average=True, win_size=win_size, win_sigma=1.5)


def two_scale_ssim_loss(pred: torch.Tensor, target: torch.Tensor, win_size: int = DEEPISP_SSIM_WIN,
                        scales: int = DEEPISP_SCALES) -> torch.Tensor:
    """DeepISP's "MS-SSIM" loss: ``1 - SSIM`` averaged over ``scales`` 2x-average-pooled scales."""
    total = pred.new_zeros(())
    for s in range(scales):
        if s:
            pred, target = F.avg_pool2d(pred, 2), F.avg_pool2d(target, 2)
        total = total + (1.0 - ssim_value(pred, target, win_size))
    return total / scales


def cameranet_restore_loss(restored: torch.Tensor, linear: torch.Tensor, eps: float = CAMERANET_LOG_EPS) -> torch.Tensor:
    """CameraNet Eq. 6: ``L1 + L1 of logs``; negative outputs are clamped to 0 inside the log only."""
    log_term = l1(torch.log(restored.clamp_min(0.0) + eps), torch.log(linear + eps))
    return l1(restored, linear) + log_term


# ------------------------------------------------------------------------------------------ losses


def _l1() -> Loss:
    def fn(model, batch):
        loss = l1(predict(model, batch), batch["srgb"])
        return loss, {"l1": loss.item()}

    return Loss("l1", fn)


def _raw_l1() -> Loss:
    def fn(model, batch):
        target = batch["raw_clean"] if "raw_clean" in batch else batch["raw"]
        loss = l1(model(batch["srgb"], **model_inputs(batch)), target)
        return loss, {"raw_l1": loss.item()}

    return Loss("raw-l1", fn)


def _mse() -> Loss:
    """CRISPnet's loss: mean squared error on sRGB (the paper found SSIM/perceptual terms neglect colour)."""

    def fn(model, batch):
        loss = F.mse_loss(predict(model, batch), batch["srgb"])
        return loss, {"mse": loss.item()}

    return Loss("mse", fn)


def _l1_ssim() -> Loss:
    def fn(model, batch):
        pred, target = predict(model, batch), batch["srgb"]
        a = l1(pred, target)
        s = ssim_value(pred, target)
        loss = a + LITEISP_SSIM_WEIGHT * (1.0 - s)
        return loss, {"l1": a.item(), "ssim": s.item()}

    return Loss("l1+ssim", fn)


def _lab_l1(alpha: float = DEEPISP_ALPHA) -> Loss:
    from mobileisp.metrics import srgb_to_lab

    def fn(model, batch):
        lab_p = srgb_to_lab(predict(model, batch)) / 100.0
        lab_t = srgb_to_lab(batch["srgb"]) / 100.0
        lab_l1 = l1(lab_p, lab_t)
        ms = two_scale_ssim_loss(lab_p[:, :1], lab_t[:, :1])
        loss = (1.0 - alpha) * lab_l1 + alpha * ms
        return loss, {"lab_l1": lab_l1.item(), "ms_ssim_loss": ms.item()}

    return Loss("lab-l1", fn)


def _cameranet(stage: str = "joint", lam: float = 0.5, log_eps: float = CAMERANET_LOG_EPS,
               ssim_weight: float = 0.0) -> Loss:
    if stage not in CAMERANET_STAGES:
        raise ValueError(f"unknown CameraNet stage {stage!r}; choose one of {', '.join(CAMERANET_STAGES)}")

    def enhance_term(srgb, target):
        # ssim_weight > 0: LiteISPNet's L1 + w (1 - SSIM) on the sRGB the user sees (pruned fine-tune)
        if not ssim_weight:
            return l1(srgb, target)
        return l1(srgb, target) + ssim_weight * (1.0 - ssim_value(srgb, target))

    def fn(model, batch):
        linear = linear_target(batch)
        if stage == "restore" and hasattr(model, "restore"):
            loss = cameranet_restore_loss(model.restore(batch["raw"], **model_inputs(batch)), linear, log_eps)
            return loss, {"restore": loss.item()}
        if stage == "enhance" and hasattr(model, "enhance"):
            loss = enhance_term(model.enhance(linear), batch["srgb"])
            return loss, {"enhance": loss.item()}
        out = model.forward_stages(batch["raw"], **model_inputs(batch))
        rest = cameranet_restore_loss(out["restored"], linear, log_eps)
        enh = enhance_term(out["srgb"], batch["srgb"])
        loss = {"restore": rest, "enhance": enh, "joint": lam * rest + (1.0 - lam) * enh}[stage]
        return loss, {"restore": rest.item(), "enhance": enh.item()}

    return Loss("cameranet", fn, uses_all_parameters=(stage == "joint"))


_BUILDERS: dict[str, Callable[..., Loss]] = {
    "l1": _l1,
    "l1+ssim": _l1_ssim,
    "lab-l1": _lab_l1,
    "deepisp": _lab_l1,  # the name DeepISP's ModelSpec uses
    "cameranet": _cameranet,
    "mse": _mse,
    "raw-l1": _raw_l1,
}
