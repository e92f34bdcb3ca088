"""Structured channel pruning of CameraNet with torch-pruning, and the width maps it produces.

A pruned CameraNet is the :class:`~mobileisp.models.cameranet.CameraNet` class built from a width map: the
out-channels of every conv / linear that pruning may change, keyed by module path. Width maps are data,
``models/widths/<name>.json``::

    {"model": "cameranet-pruned", "params": 2995768, "full_params": 24952728, "ratio": 0.65,
     "shallow_ratio": 0.5, "shallow_levels": 2, "round_to": 8, "importance": "...", "source": "...",
     "widths": {"restore_net.enc.0.conv": 16, ...}}

Pruning is real: torch-pruning's dependency graph removes coupled channels together (U-Net skips and
concatenations, Enhance-Net's residual adds, the global branch's per-channel scale and bias, which CameraNet
keeps as two Linear layers for that reason); the 12-channel output convs are never pruned.

The outer ``shallow_levels`` U-Net levels (encoder level i and its mirror decoder level, packed and half
resolution) are pruned by at most ``shallow_ratio``: with the plain 0.65 and rounding to 8, the last decoder
level kept 8 of 32 channels, which feed the 12-channel output conv (the 12 outputs then span a rank-8
subspace); the pruned net lost colour (grey, low-contrast output) and its fine-tune stalled near 15-16 dB.
Keeping 16 and 32 channels there costs 130K parameters (2.86M -> 3.00M) and doubles the MACs
(12.1 -> 23.7 GMAC per output megapixel); in a 300-step fine-tune it gave 17.2 dB against 15.3 dB.

Workflow the trainer runs: train ``cameranet`` briefly -> :func:`make_pruned_cameranet` (prunes, writes the
width map) -> fine-tune the returned model -> save ``models/weights/cameranet-pruned.safetensors``.
From a shell::

    python -m mobileisp.models.pruning --weights cameranet.safetensors --ratio 0.65 --shallow-ratio 0.5 \\
        --shallow-levels 2 --out models/widths/cameranet-pruned.json --force
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from mobileisp._io import atomic_path, atomic_write_json, check_writable
from mobileisp.errors import MobileISPError, ModelError
from mobileisp.models.cameranet import CameraNet
from mobileisp.models.registry import load_weights

WIDTHS_DIR = Path(__file__).resolve().parent / "widths"
#: Fraction of channels removed per layer; with ROUND_TO = 8 and the shallow cap, 12% of the parameters
#: remain (3.00M of 24.95M).
DEFAULT_RATIO = 0.65
#: At most this fraction is removed from the outer SHALLOW_LEVELS levels of each U-Net (see the module docstring).
DEFAULT_SHALLOW_RATIO = 0.5
DEFAULT_SHALLOW_LEVELS = 2
#: Widths are rounded to multiples of 8 (mobile GPU / NPU channel blocks).
ROUND_TO = 8
_FIXED = ("final", "glob.fc_scale", "glob.fc_bias")  # output convs; scale/bias follow the bottleneck


def num_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def width_map_of(model: CameraNet) -> dict[str, int]:
    """Out-channels of every prunable layer of ``model``, keyed by module path (the CameraNet ``widths``)."""
    out: dict[str, int] = {}
    for name, mod in model.named_modules():
        if isinstance(mod, (nn.Conv2d, nn.ConvTranspose2d)) and not name.endswith(_FIXED):
            out[name] = mod.out_channels
        elif isinstance(mod, nn.Linear) and not name.endswith(_FIXED):
            out[name] = mod.out_features
    return out


def tracing_inputs(size: int = 32) -> dict[str, torch.Tensor]:
    """A (1, 4, size, size) packed RAW, typical as-shot gains and XYZ->camera matrix, for tracing."""
    g = torch.Generator().manual_seed(0)
    cm = torch.tensor([[0.6722, -0.0635, -0.0963], [-0.4287, 1.2460, 0.2028], [-0.0908, 0.2162, 0.5668]])
    wb = torch.tensor([[2.1, 1.0, 1.7]])
    return {"raw": torch.rand(1, 4, size, size, generator=g), "white_balance": wb, "color_matrix": cm[None]}


def prune_cameranet(
    model: CameraNet,
    ratio: float = DEFAULT_RATIO,
    example_inputs: Mapping[str, torch.Tensor] | None = None,
    round_to: int | None = ROUND_TO,
    global_pruning: bool = False,
    shallow_ratio: float = DEFAULT_SHALLOW_RATIO,
    shallow_levels: int = DEFAULT_SHALLOW_LEVELS,
) -> tuple[CameraNet, dict[str, int]]:
    """Prune a copy of ``model`` by channel L2 magnitude with torch-pruning's MetaPruner.

    Args:
        model: a (trained) CameraNet; left untouched.
        ratio: fraction of channels removed from each layer group (0.65 keeps 12% of the parameters).
        example_inputs: keyword inputs for tracing (default: :func:`tracing_inputs`).
        round_to: kept widths are multiples of this (None: exact ratio).
        global_pruning: rank channels across layers instead of per layer.
        shallow_ratio: the outer ``shallow_levels`` levels of each U-Net (encoder ``enc.i`` and decoder
            ``dec.(3 - i)``, i < shallow_levels) lose ``min(ratio, shallow_ratio)`` of their channels.
        shallow_levels: 0 to 4; 0 prunes every level by ``ratio``.

    Returns:
        (pruned copy, width map). ``CameraNet(widths=width_map)`` has the pruned architecture, and
        ``load_state_dict(pruned.state_dict())`` into it is exact.
    """
    import torch_pruning as tp

    if not 0.0 <= ratio < 1.0:
        raise ModelError(f"pruning ratio must be in [0, 1), got {ratio}")
    if not 0 <= shallow_levels <= 4:
        raise ModelError(f"shallow levels must be in [0, 4], got {shallow_levels}")
    pruned = copy.deepcopy(model).eval()
    inputs = dict(example_inputs or tracing_inputs())
    ignored = [pruned.restore_net.final, pruned.enhance_net.final]
    per_layer = {}
    for net in (pruned.restore_net, pruned.enhance_net):
        for i in range(shallow_levels):
            enc, dec = net.enc[i], net.dec[3 - i]
            for mod in (enc.conv, enc.conv1, enc.conv2, dec.up, dec.conv, dec.conv1, dec.conv2):
                per_layer[mod] = min(ratio, shallow_ratio)
    pruner = tp.pruner.MetaPruner(
        pruned,
        inputs,
        importance=tp.importance.MagnitudeImportance(p=2),
        pruning_ratio=ratio,
        pruning_ratio_dict=per_layer or None,
        global_pruning=global_pruning,
        ignored_layers=ignored,
        round_to=round_to,
    )
    pruner.step()
    pruned.zero_grad(set_to_none=True)
    return pruned, width_map_of(pruned)


def make_pruned_cameranet(
    source: CameraNet | Mapping[str, torch.Tensor] | str | Path | None,
    ratio: float = DEFAULT_RATIO,
    out_json: str | Path | None = None,
    force: bool = False,
    note: str = "",
    shallow_ratio: float = DEFAULT_SHALLOW_RATIO,
    shallow_levels: int = DEFAULT_SHALLOW_LEVELS,
) -> CameraNet:
    """Prune a trained CameraNet and store its width map; the trainer fine-tunes the result.

    Args:
        source: a CameraNet, its state dict, a safetensors file of one, or None for a random init (seed 0).
        ratio: see :func:`prune_cameranet`.
        out_json: where to write the width map (``models/widths/cameranet-pruned.json`` to ship it);
            None writes nothing.
        force: overwrite an existing ``out_json``.
        note: free text recorded as ``source`` in the JSON (what was pruned).
        shallow_ratio, shallow_levels: see :func:`prune_cameranet`.

    Returns:
        The pruned CameraNet (pruned weights, eval mode).
    """
    if isinstance(source, CameraNet):
        full = source
    else:
        torch.manual_seed(0)
        full = CameraNet()
        if isinstance(source, (str, Path)):
            load_weights(full, source)
            note = note or f"pruned from {Path(source).name}"
        elif source is not None:
            try:
                full.load_state_dict(dict(source), strict=True)
            except RuntimeError as e:
                raise ModelError(f"state dict does not fit cameranet: {str(e).splitlines()[0]}") from None
        else:
            note = note or "random init (torch.manual_seed(0)); placeholder until pruned from trained weights"
    pruned, widths = prune_cameranet(full, ratio, shallow_ratio=shallow_ratio, shallow_levels=shallow_levels)
    if out_json is not None:
        doc = {
            "model": "cameranet-pruned",
            "params": num_params(pruned),
            "full_params": num_params(full),
            "ratio": ratio,
            "shallow_ratio": shallow_ratio,
            "shallow_levels": shallow_levels,
            "round_to": ROUND_TO,
            "importance": "torch-pruning MagnitudeImportance(p=2), per-layer groups, output convs ignored",
            "source": note or "trained cameranet",
            "widths": widths,
        }
        atomic_write_json(out_json, doc, force=force)
    return pruned


def load_width_map(name_or_path: str | Path) -> dict[str, Any]:
    """Read a width-map JSON: a name in ``models/widths/`` (``cameranet-pruned``) or a path."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = WIDTHS_DIR / f"{name_or_path}.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"width map not found: {path}") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"cannot read width map {path}: {e}") from None
    widths = doc.get("widths") if isinstance(doc, dict) else None
    if not isinstance(widths, dict) or not all(isinstance(v, int) and v > 0 for v in widths.values()):
        raise ModelError(f"width map {path} has no 'widths' object of positive integers")
    return doc


def main(argv: list[str] | None = None) -> int:
    """CLI: prune a CameraNet checkpoint and write its width map (see the module docstring)."""
    ap = argparse.ArgumentParser(prog="python -m mobileisp.models.pruning", description=main.__doc__)
    ap.add_argument("--weights", help="cameranet safetensors to prune (default: random init, seed 0)")
    ap.add_argument("--ratio", type=float, default=DEFAULT_RATIO, help="fraction of channels removed per layer")
    ap.add_argument("--shallow-ratio", type=float, default=DEFAULT_SHALLOW_RATIO,
                    help="at most this fraction removed from the outer --shallow-levels U-Net levels")
    ap.add_argument("--shallow-levels", type=int, default=DEFAULT_SHALLOW_LEVELS,
                    help="outer levels (encoder + mirror decoder) pruned by at most --shallow-ratio (0: none)")
    ap.add_argument("--out", default=str(WIDTHS_DIR / "cameranet-pruned.json"), help="width-map JSON to write")
    ap.add_argument("--save-weights", default=None,
                    help="also write the pruned weights (safetensors) to fine-tune from with `mobileisp train --init-weights`")
    ap.add_argument("--force", action="store_true", help="overwrite --out / --save-weights")
    args = ap.parse_args(argv)
    try:
        if args.save_weights:
            check_writable(args.save_weights, args.force)
        model = make_pruned_cameranet(args.weights, args.ratio, args.out, force=args.force,
                                      shallow_ratio=args.shallow_ratio, shallow_levels=args.shallow_levels)
        if args.save_weights:
            from safetensors.torch import save_file

            with atomic_path(args.save_weights, force=args.force) as tmp:
                save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    except MobileISPError as e:
        print(f"mobileisp: error: {e}", file=sys.stderr)
        return e.exit_code
    print(f"{args.out}: {num_params(model):,} params")
    return 0


if __name__ == "__main__":
    sys.exit(main())
