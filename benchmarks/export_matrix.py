"""Print the model x format x precision export table in one run.

For each model: export every TFLite precision (one onnx2tf conversion), every Core ML precision and the ONNX
graph at the model's export size; validate each against the PyTorch fp32 reference on held-out RAW; time
the TFLite and ONNX artefacts on this CPU (LiteRT/XNNPACK, onnxruntime) and PyTorch fp32 eager on the same
input. Columns:

- ``MB``: artefact size on disk;
- ``parity dB``: PSNR against the fp32 PyTorch output (Core ML off macOS: torch simulation, marked ``*``),
  with the model's floor and PASS/FAIL;
- ``task dB``: PSNR against ground truth, and its drop from the fp32 reference;
- ``host ms``: median latency per image (single-threaded unless ``--threads``);
- ``vs torch``: PyTorch fp32 eager median / artefact median (> 1: faster than PyTorch);
- ``vs tflite fp32``: TFLite fp32 median / artefact median.

Usage::

    python benchmarks/export_matrix.py [--models liteisp-mobile deepisp-lite cameranet-pruned]
        [--size 256] [--calib 32] [--set 8] [--runs 30] [--threads 1] [--out DIR] [--json results.json]

``--json`` writes the host BenchResult rows (with parity) for ``mobileisp report``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_MODELS = ("liteisp-mobile", "deepisp-lite", "cameranet-pruned")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--formats", nargs="+", default=["tflite", "coreml", "onnx"])
    parser.add_argument("--size", type=int, default=None, help="full-resolution side (default: each spec's export size)")
    parser.add_argument("--calib", type=int, default=32, help="calibration samples")
    parser.add_argument("--set", dest="n", type=int, default=8, help="held-out validation images")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="keep the artefacts here (default: a temp folder)")
    parser.add_argument("--json", type=Path, default=None, help="write host BenchResult rows as JSON")
    parser.add_argument("--weights", nargs="*", default=[], metavar="MODEL=PATH",
                        help="weights for a model (default: the shipped ones, else a seeded random init)")
    args = parser.parse_args(argv)
    weights = dict(w.split("=", 1) for w in args.weights)

    from mobileisp.export import formats
    from mobileisp.export.pipeline import export
    from mobileisp.host_bench import bench_host
    from mobileisp.models import get_spec

    t_start = time.time()
    rows, bench_rows, sources = [], [], []
    with tempfile.TemporaryDirectory(prefix="mobileisp-matrix-") as tmp:
        out = args.out or Path(tmp)
        for name in args.models:
            spec = get_spec(name)
            size = (args.size, args.size) if args.size else tuple(spec.export_size)
            exported = []
            from mobileisp.export.pipeline import load_reference

            info = load_reference(spec, weights.get(name, "default"))[1]
            sources.append(f"{name}: " + (f"{info['name']} (sha256 {info['sha256'][:12]})" if info["trained"]
                                          else "random init (seed 0): no trained weights"))
            for fmt in args.formats:
                precisions = list(formats.FORMATS[fmt].precision_names)
                t0 = time.time()
                try:
                    exported += export(name, fmt, precisions, weights=weights.get(name, "default"), size=size,
                                       calib=args.calib, validate_n=args.n, out_dir=out / name, force=True,
                                       enforce=False)
                except Exception as e:  # a failed conversion is a row, not the end of the table
                    for p in precisions:
                        rows.append({"model": name, "format": fmt, "precision": p, "error": f"{type(e).__name__}: {e}"})
                print(f"# {name} {fmt}: exported in {time.time() - t0:.0f}s", file=sys.stderr, flush=True)
            timings: dict[tuple[str, str], float] = {}
            torch_ms = None
            for r in exported:
                if r.format == "coreml":
                    continue
                run = bench_host(r.artefact, threads=args.threads, runs=args.runs, warmup=args.warmup,
                                 compare=(r.format == "tflite" and r.precision == "fp32"), weights=weights.get(name))
                bench_rows += run.results
                timings[(r.format, r.precision)] = run.results[0].ms_median
                if len(run.results) > 1:
                    torch_ms = run.results[1].ms_median
            tfl32 = timings.get(("tflite", "fp32"))
            for r in exported:
                ms = timings.get((r.format, r.precision))
                rows.append({
                    "model": name, "format": r.format, "precision": r.precision, "size": f"{size[0]}x{size[1]}",
                    "mb": r.bytes / 1e6, "parity": r.parity.psnr_db, "simulated": r.parity.simulated,
                    "floor": r.parity.floor_db, "passed": r.parity.passed, "task": r.parity.task_psnr_db,
                    "drop": r.parity.task_drop_db, "ms": ms,
                    "vs_torch": None if ms is None or torch_ms is None else torch_ms / ms,
                    "vs_tflite": None if ms is None or tfl32 is None else tfl32 / ms,
                })
            if torch_ms is not None:
                rows.append({"model": name, "format": "torch", "precision": "fp32", "size": f"{size[0]}x{size[1]}",
                             "ms": torch_ms, "vs_torch": 1.0, "vs_tflite": None if tfl32 is None else tfl32 / torch_ms})
    print(markdown(rows))
    print("\nweights: " + "; ".join(sources))
    print(f"\n{len(args.models)} models, threads={args.threads}, runs={args.runs}, calib={args.calib}, "
          f"validation images={args.n}; total {time.time() - t_start:.0f}s. * = Core ML validated by torch "
          "simulation (predict needs macOS); Core ML latency needs a Mac/iPhone (mobileisp bench --device mac).")
    if args.json:
        args.json.write_text(json.dumps({"results": [b.to_dict() for b in bench_rows]}, indent=2))
    return 0


def markdown(rows: list[dict]) -> str:
    head = ("| model | format | precision | size | MB | parity dB (floor) | status | task dB (drop) | host ms | "
            "vs torch | vs tflite fp32 |")
    lines = [head, "|---|---|---|---|--:|--:|---|--:|--:|--:|--:|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['model']} | {r['format']} | {r['precision']} | — | — | — | ERROR: {r['error'][:80]} | — | — | — | — |")
            continue
        parity = "—" if r.get("parity") is None else (
            f"{r['parity']:.2f}{'*' if r.get('simulated') else ''}"
            + (f" ({r['floor']:.0f})" if r.get("floor") is not None else " (none)"))
        status = "—" if r.get("passed") is None else ("PASS" if r["passed"] else "FAIL")
        task = "—" if r.get("task") is None else f"{r['task']:.2f} ({r['drop']:+.2f})"
        lines.append(
            f"| {r['model']} | {r['format']} | {r['precision']} | {r.get('size', '—')} | {_num(r.get('mb'))} | {parity} | "
            f"{status} | {task} | {_num(r.get('ms'))} | {_ratio(r.get('vs_torch'))} | {_ratio(r.get('vs_tflite'))} |"
        )
    return "\n".join(lines)


def _num(v) -> str:
    return "—" if v is None else f"{v:.2f}"


def _ratio(v) -> str:
    return "—" if v is None else f"{v:.2f}x"


if __name__ == "__main__":
    sys.exit(main())
