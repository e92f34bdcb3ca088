"""Model size and cost: parameter counts and multiply-accumulates per output megapixel.

MACs are counted with forward hooks on ``Conv2d``, ``ConvTranspose2d`` and ``Linear`` (fixed-weight layers
such as the Haar DWT convs included: they run on the phone unless folded away). Element-wise ops,
pooling, activations and normalisation are not counted; they are a small fraction for conv networks.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from mobileisp.metadata import METADATA_FIELDS


def count_parameters(model: Any) -> tuple[int, int]:
    """``(total, trainable)`` parameter counts of ``model``.

    ``total`` counts every ``nn.Parameter`` once (fixed ones with ``requires_grad=False``, such as
    LiteISPNet's Haar filters, included; buffers excluded); ``trainable`` only those that require a
    gradient. Anything that is not an ``nn.Module`` (a classical pipeline) has (0, 0).
    """
    if not isinstance(model, nn.Module):
        return 0, 0
    params = list(model.parameters())
    return sum(p.numel() for p in params), sum(p.numel() for p in params if p.requires_grad)


def dummy_metadata(fields: tuple[str, ...] | list[str], batch: int = 1) -> dict[str, torch.Tensor]:
    """Plausible placeholder metadata tensors (batch, *METADATA_FIELDS[f]) for shape-only forwards.

    ``white_balance`` is ones, ``color_matrix`` the identity, every scalar field 100.
    """
    out: dict[str, torch.Tensor] = {}
    for f in fields:
        shape = METADATA_FIELDS[f]
        if f == "white_balance":
            t = torch.ones(batch, *shape)
        elif f == "color_matrix":
            t = torch.eye(3).expand(batch, 3, 3).clone()
        else:
            t = torch.full((batch, *shape), 100.0)
        out[f] = t
    return out


def count_macs(model: nn.Module, *args: Any, **kwargs: Any) -> tuple[int, torch.Tensor]:
    """Multiply-accumulates of one ``model(*args, **kwargs)`` call, and its output.

    Conv2d: ``output elements * in_channels / groups * kh * kw``; ConvTranspose2d: ``input elements *
    out_channels / groups * kh * kw``; Linear: ``output elements * in_features``. Runs in eval mode under
    ``torch.no_grad`` and restores the training flag.
    """
    total = 0

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += output.numel() * (module.in_channels // module.groups) * k
        elif isinstance(module, nn.ConvTranspose2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += inputs[0].numel() * (module.out_channels // module.groups) * k
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear))
    ]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(*args, **kwargs)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    return total, out


def gmacs_per_output_megapixel(model: nn.Module, spec: Any, size: tuple[int, int] = (256, 256)) -> float:
    """GMACs per megapixel of output for ``model`` at a full-resolution RAW ``size`` (H, W).

    The input is packed RAW (1, 4, H/2, W/2) filled with 0.5, plus the metadata tensors ``spec`` lists
    (``spec.metadata_fields``), built by :func:`dummy_metadata`; the megapixels are those of the output the
    model actually returns (its first tensor if it returns several). An inverse (sRGB -> RAW) model gets sRGB
    (1, 3, H, W) filled with 0.5 and is counted per megapixel of that full-resolution input, so both directions
    are per image megapixel.
    """
    h, w = size
    inverse = bool(getattr(spec, "inverse", False))
    raw = torch.full((1, 3, h, w), 0.5) if inverse else torch.full((1, 4, h // 2, w // 2), 0.5)
    fields = tuple(getattr(spec, "metadata_fields", ()) or ())
    if getattr(spec, "metadata_encoding", None):
        meta = spec.metadata_inputs(dummy_metadata(spec.metadata_sources))
    else:
        meta = dummy_metadata(fields)
    macs, out = count_macs(model, raw, **meta)
    if isinstance(out, (tuple, list)):
        out = out[0]
    pixels = h * w if inverse else out.shape[-2] * out.shape[-1]
    return macs / 1e9 / (pixels / 1e6)
