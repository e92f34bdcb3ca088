"""Importers for the authors' published checkpoints, and adapters for their input conventions.

A published ``.pth`` is read with ``torch.load(weights_only=True)`` only (tensors and plain containers,
nothing unpickled beyond that), checked key by key and shape by shape against our network, and returned
as a plain ``state_dict`` for ``model.load_state_dict`` or ``safetensors.torch.save_file``. Every failure
is a one-line :class:`ModelError`. The private helpers here are shared by every family's importer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from mobileisp.errors import ImageSizeError, ModelError, RawFormatError


def _read_torch_state_dict(
    path_or_state: str | Path | Mapping[str, Any], what: str
) -> tuple[dict[str, Any], str]:
    """Load a checkpoint (path, or an already loaded dict) -> (flat state dict, label for messages).

    Unwraps ``{'state_dict': ...}`` and strips the ``module.`` prefix that ``nn.DataParallel`` adds.
    """
    if isinstance(path_or_state, Mapping):
        state, label = path_or_state, f"{what} state dict"
    else:
        path = Path(path_or_state)
        label = str(path)
        if not path.is_file():
            raise ModelError(f"{what} checkpoint not found: {path}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises many types (UnpicklingError, RuntimeError, EOFError)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise ModelError(f"cannot read {what} checkpoint {path} (torch.load, weights_only=True): {first}") from None
    if not isinstance(state, Mapping):
        raise ModelError(f"{label}: expected a dict of tensors, got {type(state).__name__}")
    if "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    flat: dict[str, Any] = {}
    for key, value in state.items():
        key = str(key)
        flat[key[len("module.") :] if key.startswith("module.") else key] = value
    return flat, label


def _match_state_dict(
    state: Mapping[str, Any], reference: Mapping[str, torch.Tensor], label: str
) -> dict[str, torch.Tensor]:
    """Check ``state`` against ``reference`` (keys, shapes); return it in the reference's order and dtypes."""
    missing = [k for k in reference if k not in state]
    unexpected = [k for k in state if k not in reference]
    if missing or unexpected:
        found = (("missing", missing), ("unexpected", unexpected))
        parts = [f"{len(keys)} {kind} key(s) ({_first(keys)})" for kind, keys in found if keys]
        raise ModelError(f"{label} does not match the network: {'; '.join(parts)}")
    out: dict[str, torch.Tensor] = {}
    for key, ref in reference.items():
        value = state[key]
        if not isinstance(value, torch.Tensor):
            raise ModelError(f"{label}: {key} is a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(ref.shape):
            raise ModelError(f"{label}: {key} has shape {tuple(value.shape)}, the network needs {tuple(ref.shape)}")
        out[key] = value.detach().to(dtype=ref.dtype).contiguous().clone()
    return out


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


# ------------------------------------------------------------------------------------------- LiteISPNet

#: The ZRR (Huawei P20) levels the authors normalise by: ``max(x - 63, 0) / (4 * 255 - 63)``.
ZRR_BLACK_LEVEL = 63
ZRR_WHITE_LEVEL = 4 * 255


def import_liteisp_state_dict(path_or_state: str | Path | Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The authors' LiteISPNet checkpoint as a ``state_dict`` for our ``liteisp`` preset.

    Reads cszhilu1998/RAW-to-sRGB's ``LiteISPNet_model_<epoch>.pth`` (``{'state_dict': ...}``, keys such as
    ``head.weight``, ``down2.1.rg.0.res.0.weight``, ``tail.2.weight``; a ``module.`` prefix is stripped),
    or the same as an already loaded dict. Their released ZRR model (trained with
    ``--pre_ispnet_coord False``) has 302 tensors and 9,047,815 values; the keys are ours unchanged, and our
    network's fixed front reorder turns our packed RGGB into their (B, Gb, R, Gr) input order, so

        model = create_model("liteisp", weights=None)
        model.load_state_dict(import_liteisp_state_dict("LiteISPNet_model_56.pth"))

    gives their network on our inputs. The Haar DWT/IWT filters are checked to be the fixed Haar values.

    Args:
        path_or_state: path of the ``.pth`` file, or a dict (with or without the ``state_dict`` wrapper).

    Returns:
        Key -> float32 tensor, in our ``state_dict`` order.

    Raises:
        ModelError: unreadable file, or keys/shapes that do not match (one line naming the first offenders).
    """
    from mobileisp.models.blocks import HaarDWT, HaarIWT
    from mobileisp.models.liteisp import LITEISP_CONFIG, LiteISPNet

    state, label = _read_torch_state_dict(path_or_state, "LiteISPNet")
    if any(k.startswith("pre_coord.") for k in state):
        raise ModelError(
            f"{label} contains the PreCoord sub-network (trained with --pre_ispnet_coord True); only checkpoints "
            "trained with --pre_ispnet_coord False (the released ZRR model) are supported"
        )
    model = LiteISPNet(**LITEISP_CONFIG)
    out = _match_state_dict(state, model.state_dict(), label)
    for name, module in model.named_modules():
        if isinstance(module, (HaarDWT, HaarIWT)) and not torch.equal(out[f"{name}.weight"], module.weight):
            raise ModelError(f"{label}: {name}.weight is not the fixed Haar filter bank; the layout does not match")
    return out


def authors_input_to_packed(raw_png_mosaic: np.ndarray) -> np.ndarray:
    """A ZRR RAW mosaic read the authors' way -> our packed RGGB.

    The authors (and PyNET) read the ZRR ``.png`` as a (H, W) uint16 Huawei P20 mosaic with R at (0, 0),
    normalise it as ``max(x - 63, 0) / (1020 - 63)`` (no upper clip: 10-bit values reach 1.003), and pack it
    as ``(raw[1::2,1::2], raw[0::2,1::2], raw[0::2,0::2], raw[1::2,0::2])``, which they call (B, Gb, R, Gr).
    This function applies their normalisation and returns our order (R, Gr, Gb, B) =
    ``(raw[0::2,0::2], raw[0::2,1::2], raw[1::2,0::2], raw[1::2,1::2])``; LiteISPNet's front reorder
    (``AUTHORS_CHANNEL_ORDER``) turns it back into theirs, so their weights see exactly what they saw.

    Args:
        raw_png_mosaic: (H, W) unsigned-integer mosaic (uint16 as decoded from the ``.png``), H and W even.

    Returns:
        (4, H/2, W/2) float32, packed RGGB, values in [0, (max - 63) / 957].

    Raises:
        RawFormatError: not a 2-D unsigned-integer array.
        ImageSizeError: odd height or width.
    """
    a = np.asarray(raw_png_mosaic)
    if a.ndim != 2 or a.dtype.kind != "u":
        raise RawFormatError(
            f"ZRR mosaic must be a 2-D unsigned-integer array (uint16 PNG), got shape {a.shape} dtype {a.dtype}"
        )
    h, w = a.shape
    if h < 2 or w < 2 or h % 2 or w % 2:
        raise ImageSizeError(f"ZRR mosaic needs even height and width, got {h}x{w}")
    x = np.maximum(a.astype(np.float32) - ZRR_BLACK_LEVEL, 0) / np.float32(ZRR_WHITE_LEVEL - ZRR_BLACK_LEVEL)
    return np.ascontiguousarray(np.stack([x[0::2, 0::2], x[0::2, 1::2], x[1::2, 0::2], x[1::2, 1::2]]))
