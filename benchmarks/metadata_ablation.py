"""Does the metadata input matter? Held-out PSNR with the true metadata against shuffled or withheld metadata.

For each model, every held-out image is processed three ways, side by side in one run:

- ``true``: its own metadata (as ``evaluate`` does);
- ``shuffled``: the metadata inputs named by ``--fields`` taken from another held-out image (a cyclic shift
  by one, so no image keeps its own), everything else unchanged;
- ``dropped`` (ParamISP only): the equalized optics set to zero, the state ParamNet's per-parameter dropout
  trains for "parameter unknown".

It prints mean PSNR / SSIM / ΔE2000 per mode and the drop from ``true``. A model that ignores an input shows
no drop. An inverse (sRGB -> RAW) model is scored on the clean packed RAW (ΔE2000 not defined: "-"). Usage::

    python benchmarks/metadata_ablation.py [--models paramisp-lite paramisp-inverse-lite] [--fields optics] [--n 64]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
import torch


def run(name: str, fields: list[str], n: int, size: int) -> list[tuple[str, float, float, float]]:
    from mobileisp.data import heldout_set
    from mobileisp.infer import forward_padded
    from mobileisp.metrics import compare_for
    from mobileisp.models import create_model, get_spec

    spec = get_spec(name)
    model = create_model(name)
    samples = heldout_set(n, size)
    metas = [spec.metadata_inputs({f: torch.as_tensor(s[f])[None] for f in spec.metadata_sources}) for s in samples]
    fields = [f for f in fields if f in spec.metadata_fields] or list(spec.metadata_fields)
    modes = {"true": lambda i: metas[i],
             "shuffled": lambda i: {**metas[i], **{f: metas[(i + 1) % n][f] for f in fields}}}
    if "optics" in spec.metadata_fields:
        modes["dropped"] = lambda i: {**metas[i], "optics": torch.zeros_like(metas[i]["optics"])}
    rows = []
    for mode, meta_of in modes.items():
        scores = [compare_for(spec, forward_padded(model, spec, torch.as_tensor(spec.sample_input(s))[None], meta_of(i)),
                              torch.as_tensor(spec.sample_target(s))[None]) for i, s in enumerate(samples)]
        rows.append((mode, *(float(np.mean([getattr(m, k) for m in scores])) for k in ("psnr", "ssim", "delta_e2000"))))
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["paramisp-lite", "paramisp-inverse-lite"])
    parser.add_argument("--fields", nargs="+", default=["optics"],
                        help="metadata inputs to shuffle (default optics; a model without them shuffles all)")
    parser.add_argument("--n", type=int, default=64, help="held-out images")
    parser.add_argument("--size", type=int, default=128, help="full-resolution side")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"| model | metadata | PSNR dB | drop dB | SSIM | ΔE2000 |\n|---|---|--:|--:|--:|--:|")
    for name in args.models:
        rows = run(name, args.fields, args.n, args.size)
        base = rows[0][1]
        for mode, p, s, de in rows:
            de_text = f"{de:.2f}" if de == de else "-"
            print(f"| {name} | {mode} | {p:.2f} | {base - p:+.2f} | {s:.4f} | {de_text} |")
    print(f"\nheld-out set: {args.n} images {args.size}x{args.size} (mobileisp.data.heldout_set, seed 1234)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
