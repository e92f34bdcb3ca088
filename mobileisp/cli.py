"""The ``mobileisp`` command line.

Each sub-command parses its arguments, calls one stage function and prints the result (a table, or JSON
with ``--json``). Errors a user can act on are :class:`mobileisp.errors.MobileISPError`: they print one
line, ``mobileisp: error: ...``, and exit with code 2. Heavy libraries are imported inside the handlers.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from mobileisp import __version__
from mobileisp._io import to_json
from mobileisp.errors import MobileISPError

Handler = Callable[[argparse.Namespace], Any]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        result = args.handler(args)
    except MobileISPError as e:
        print(f"mobileisp: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("mobileisp: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # an internal bug: one line unless asked for the traceback
        if os.environ.get("MOBILEISP_DEBUG"):
            raise
        first = (str(e).splitlines() or [""])[0]
        print(f"mobileisp: internal error: {type(e).__name__}: {first} (set MOBILEISP_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
    if result is not None:
        _print_result(result, args.json)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argparse tree of every sub-command."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the result as JSON (for scripts)")

    parser = argparse.ArgumentParser(
        prog="mobileisp",
        description="Learned camera ISPs from PyTorch to phones: run, evaluate, train, export, benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"mobileisp {__version__}")
    sub = parser.add_subparsers(title="commands", metavar="COMMAND")

    def command(name: str, handler: Handler, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(handler=handler)
        return p

    command("list", cmd_list, "list registered models with parameters, GMAC per output megapixel and inputs")

    p = command("info", cmd_info, "show a model's spec, size and model card")
    p.add_argument("model")

    p = command("run", cmd_run, "process one RAW file (DNG, NEF, CR2, ARW, ...) into an sRGB image")
    p.add_argument("model", help="registered model name, or `classical` / `libraw`")
    p.add_argument("rawfile", type=Path)
    p.add_argument("-o", "--output", type=Path, required=True, help="output image (.png, .tif or .jpg)")
    p.add_argument("--weights", default="default", help="safetensors weights (default: the shipped ones)")
    p.add_argument("--bits", type=int, default=8, choices=(8, 16), help="bits per channel of the output image")
    p.add_argument("--tile", type=int, default=512, help="tile edge in packed pixels (0: whole image)")
    p.add_argument("--overlap", type=int, default=32, help="context around each tile in packed pixels")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")

    p = command("synth", cmd_synth,
                "make (DNG, sRGB) training pairs from sRGB images: unprocessing, or a learned inverse ISP (--inverse)")
    p.add_argument("images", nargs="+", type=Path, help="sRGB images (.png, .jpg, .tif; 8 or 16 bits)")
    p.add_argument("-o", "--output", type=Path, required=True, help="output folder (a pairs:DIR dataset)")
    p.add_argument("--inverse", default=None, metavar="MODEL",
                   help="sRGB -> RAW model (paramisp-inverse-lite, paramisp-inverse); default: unprocessing")
    p.add_argument("--weights", default="default", help="weights of the --inverse model (default: the shipped ones)")
    p.add_argument("--no-noise", action="store_true", help="write the clean RAW (no shot/read noise)")
    p.add_argument("--seed", type=int, default=0, help="camera and noise seed (default 0)")
    p.add_argument("--iso", type=float, default=None, help="ISO of every camera (also sets the noise level)")
    p.add_argument("--exposure-time", type=float, default=None, help="exposure time in seconds")
    p.add_argument("--f-number", type=float, default=None, help="aperture f-number")
    p.add_argument("--focal-length", type=float, default=None, help="focal length in mm")
    p.add_argument("--tile", type=int, default=512, help="tile edge in packed pixels for --inverse (0: whole image)")
    p.add_argument("--force", action="store_true", help="overwrite existing pair files")

    p = command("demo", cmd_demo, "make a DNG, process it with every shipped model and the baselines, write images + report")
    p.add_argument("-o", "--output", type=Path, default=Path("out/demo"), help="output folder (default out/demo)")
    p.add_argument("--force", action="store_true", help="overwrite an existing output folder")

    p = command("evaluate", cmd_evaluate, "PSNR / SSIM / ΔE2000 of models against ground truth")
    p.add_argument("models", nargs="+", help="model names (classical and libraw are baselines)")
    p.add_argument("--set", dest="dataset", default="heldout", help="heldout | zrr:PATH | pairs:PATH")
    p.add_argument("--n", type=int, default=16, help="number of images")
    p.add_argument("--size", type=int, default=128, help="image size (full-resolution pixels)")
    p.add_argument("--weights", default="default", help="weights for a single learned model")

    p = command("bench", cmd_bench, "measure an exported artefact's latency on a device")
    p.add_argument("artefact", type=Path, help=".tflite / .onnx (host) or .mlpackage (Apple)")
    p.add_argument("--device", required=True,
                   help="host | mac | iphone | iphone:UDID | an Android profile (pixel, snapdragon, ...) | an adb serial")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (host: every runtime, default 1; Android: default the profile's big cores)")
    p.add_argument("--compare", action="store_true",
                   help="host: also time PyTorch fp32 eager and onnxruntime on the same input and print the ratios")
    p.add_argument("--weights", default=None, help="PyTorch reference weights for parity (default: the artefact's)")
    p.add_argument("--compute-units", default="all", choices=("all", "cpu", "cpu-gpu", "cpu-ne"),
                   help="Core ML compute units")
    p.add_argument("--warmup", type=int, default=5, help="untimed runs first (default 5)")
    p.add_argument("--runs", type=int, default=20, help="timed runs (default 20)")
    p.add_argument("--work-dir", type=Path, default=None, help="keep the iPhone build/result bundle here")
    android = p.add_argument_group("Android (--device PROFILE or SERIAL)")
    android.add_argument("--adb", default=None, help="adb executable (default: $ADB, $ANDROID_HOME/platform-tools/adb, PATH)")
    android.add_argument("--benchmark-model", type=Path, default=None,
                         help="Android benchmark_model binary to push (default: /data/local/tmp/benchmark_model on the phone)")
    android.add_argument("--accelerator", default=None,
                         help="comma-separated accelerators from the phone's profile (cpu,gpu,nnapi,qnn-htp,...); default: all usable")
    android.add_argument("--min-secs", type=float, default=1.0, help="timed runs last at least this long (default 1 s)")
    android.add_argument("--require-full-delegation", action="store_true",
                         help="fail when a delegate leaves part of the graph on the CPU")
    android.add_argument("--no-parity", action="store_true", help="skip the on-device parity check")
    android.add_argument("--no-cooldown", action="store_true", help="do not wait for a cool phone (thermal status) before each run")
    android.add_argument("--no-fixed-performance", action="store_true", help="leave Android's fixed-performance mode off")
    p.add_argument("-o", "--output", type=Path, default=None, help="also write the BenchResult as JSON here")
    p.add_argument("--force", action="store_true", help="overwrite --output")

    p = command("devices", cmd_devices, "list connected devices (Android phones over adb, or --apple)")
    p.add_argument("--apple", action="store_true", help="the Mac and the iPhones/iPads Xcode sees")
    p.add_argument("--adb", default=None, help="adb executable (default: $ADB, $ANDROID_HOME/platform-tools/adb, PATH)")

    p = command("report", cmd_report, "render collected bench results as Markdown + a latency-vs-PSNR plot")
    p.add_argument("results", nargs="+", type=Path, help="BenchResult JSON files (from bench -o)")
    p.add_argument("-o", "--output", type=Path, default=Path("out/report"), help="output folder")
    p.add_argument("--force", action="store_true", help="overwrite existing report files")

    _add_optional_commands(sub, command)
    return parser


def _add_optional_commands(sub, command) -> None:
    """Sub-commands whose stage modules supply their own arguments."""
    from mobileisp.export import commands as export_commands

    p = command("export", export_commands.export_command,
                "export a model to TFLite / Core ML / ONNX at a precision, validated against the fp32 reference")
    export_commands.add_export_arguments(p)
    p = command("validate", export_commands.validate_command,
                "parity of an exported artefact vs the PyTorch fp32 reference on held-out RAW (exit 3 below its floor)")
    export_commands.add_validate_arguments(p)
    try:
        from mobileisp import train
    except ImportError:  # pragma: no cover - the stage is always shipped
        train = None
    if train is not None and hasattr(train, "add_train_arguments"):
        p = command("train", cmd_train, "train a model (torchrun for several GPUs/nodes)")
        train.add_train_arguments(p)


# ----------------------------------------------------------------------------------------------- handlers


def cmd_list(args: argparse.Namespace) -> dict[str, Any]:
    from mobileisp.models import create_model, get_spec, list_models
    from mobileisp.models.complexity import count_parameters, gmacs_per_output_megapixel

    rows = []
    for name in list_models():
        spec = get_spec(name)
        model = create_model(name, weights=None)
        total, trainable = count_parameters(model)
        gmac = gmacs_per_output_megapixel(model, spec) if spec.trainable else None
        wp = spec.weights_path()
        rows.append(
            {
                "model": name,
                "family": spec.family,
                "parameters": total,
                "trainable": trainable,
                "gmac_per_mp": gmac,
                "inputs": " ".join(f"{t.name}[{','.join(map(str, t.shape))}]" for t in spec.inputs),
                "weights": "shipped" if wp is not None and wp.exists() else ("-" if not spec.trainable else "none"),
                "description": spec.description,
            }
        )
    return {"models": rows}


def cmd_info(args: argparse.Namespace) -> dict[str, Any]:
    from mobileisp.models import create_model, get_spec
    from mobileisp.models.complexity import count_parameters

    spec = get_spec(args.model)
    total, trainable = count_parameters(create_model(args.model, weights=None))
    info: dict[str, Any] = {"spec": spec.to_dict(), "parameters": total, "trainable_parameters": trainable}
    wp = spec.weights_path()
    card = wp.with_suffix(".json") if wp is not None else None
    if card is not None and card.exists():
        info["model_card"] = json.loads(card.read_text())
    return info


def cmd_run(args: argparse.Namespace) -> dict[str, Any]:
    from mobileisp.run import run_file

    return run_file(
        args.model, args.rawfile, args.output, weights=args.weights, bits=args.bits, tile=args.tile,
        overlap=args.overlap, force=args.force, progress=not args.json,
    ).to_dict()


def cmd_synth(args: argparse.Namespace):
    from mobileisp.synth_pairs import synthesize

    overrides = {"iso": args.iso, "exposure_time": args.exposure_time, "f_number": args.f_number,
                 "focal_length": args.focal_length}
    return synthesize(args.images, args.output, inverse=args.inverse, weights=args.weights, noise=not args.no_noise,
                      seed=args.seed, overrides=overrides, tile=args.tile, force=args.force)


def cmd_demo(args: argparse.Namespace) -> dict[str, Any]:
    from mobileisp.demo import run_demo

    return run_demo(args.output, force=args.force)


def cmd_evaluate(args: argparse.Namespace):
    from mobileisp.evaluate import evaluate

    if args.weights != "default" and len(args.models) != 1:
        raise MobileISPError("--weights applies to a single model; evaluate one model at a time with it")
    result = evaluate([(m, args.weights) for m in args.models], dataset=args.dataset, n=args.n, size=args.size)
    return result


def cmd_bench(args: argparse.Namespace):
    from mobileisp._io import atomic_write_json, check_writable

    if args.output is not None:
        check_writable(args.output, args.force)
    device = args.device.lower()
    if device == "host":
        from mobileisp.host_bench import bench_host

        result = bench_host(args.artefact, threads=args.threads, runs=args.runs, warmup=args.warmup,
                            compare=args.compare, weights=args.weights)
    elif device in ("mac", "iphone") or device.startswith("iphone:"):
        from mobileisp.ios_bench import bench_apple

        result = bench_apple(args.artefact, args.device, compute_units=args.compute_units, warmup=args.warmup,
                             runs=args.runs, work_dir=args.work_dir)
    else:
        from mobileisp.android_bench import bench_android

        accelerators = [a.strip() for a in args.accelerator.split(",") if a.strip()] if args.accelerator else None
        result = bench_android(
            args.artefact, args.device, adb=args.adb, benchmark_model=args.benchmark_model, accelerators=accelerators,
            threads=args.threads, warmup=args.warmup, runs=args.runs, min_secs=args.min_secs,
            parity=not args.no_parity, require_full_delegation=args.require_full_delegation,
            fixed_performance=not args.no_fixed_performance, cooldown=not args.no_cooldown, weights=args.weights,
            log=None if args.json else lambda line: print(f"mobileisp: {line}", file=sys.stderr),
        )
    if args.output is not None:
        atomic_write_json(args.output, result.to_dict(), force=args.force)
    failures = result.parity_failures() if hasattr(result, "parity_failures") else []
    if failures:  # the numbers are printed (and saved), then the run fails like `validate` does
        from mobileisp.export.parity import ParityError

        _print_result(result, args.json)
        more = f" (and {len(failures) - 1} more accelerators)" if len(failures) > 1 else ""
        raise ParityError(f"on-device parity below the floor on {failures[0]}{more}")
    return result


def cmd_devices(args: argparse.Namespace):
    if args.apple:
        from mobileisp.ios_bench import list_apple_devices

        return {"devices": list_apple_devices()}
    from mobileisp.android_bench import list_phones

    return {"devices": list_phones(args.adb)}


def cmd_report(args: argparse.Namespace):
    from mobileisp.report import load_results, write_report

    results = load_results(args.results)
    json_path, md_path, png_path = write_report(results, args.output, force=args.force)
    return {"results": len(results), "json": str(json_path), "markdown": str(md_path), "plot": str(png_path)}


def cmd_train(args: argparse.Namespace):
    from mobileisp import train

    return train.train(train.config_from_args(args))


# ----------------------------------------------------------------------------------------------- output


def _print_result(result: Any, as_json: bool) -> None:
    data = result.to_dict() if hasattr(result, "to_dict") else result
    if as_json:
        print(to_json(data))
    elif hasattr(result, "table"):
        print(result.table())
    else:
        print(_format_plain(data))


def _format_plain(data: Any) -> str:
    """Readable text for dict results: lists of flat dicts become tables."""
    if isinstance(data, dict) and len(data) == 1 and isinstance(next(iter(data.values())), list):
        rows = next(iter(data.values()))
        if rows and all(isinstance(r, dict) for r in rows):
            return _table(rows)
    return json.dumps(data, indent=2, default=str)


def _table(rows: list[dict[str, Any]]) -> str:
    keys = list(rows[0])
    cells = [[_cell(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
    line = lambda vals: "  ".join(v.ljust(w) for v, w in zip(vals, widths)).rstrip()  # noqa: E731
    return "\n".join([line(keys), line(["-" * w for w in widths]), *(line(c) for c in cells)])


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
