"""Command-line glue for ``mobileisp export`` and ``mobileisp validate``: arguments and handlers.

``mobileisp.cli`` adds a sub-command with ``add_export_arguments(parser)`` and sets ``export_command`` as its
handler (likewise for validate). Handlers return an object with ``to_dict()`` and ``table()``, which the CLI
prints; a validation below its floor prints the result and then raises
:class:`~mobileisp.export.parity.ParityError` (exit code 3).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mobileisp.export.formats import FORMATS, supported


@dataclass
class ExportRun:
    """The artefacts one ``mobileisp export`` wrote."""

    results: list

    def to_dict(self) -> dict[str, Any]:
        return {"artefacts": [r.to_dict() for r in self.results]}

    def table(self) -> str:
        return "\n\n".join(r.table() for r in self.results)


def add_export_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mobileisp export MODEL --format F --precision P [...] -o DIR``."""
    from mobileisp.export.pipeline import DEFAULT_CALIB, DEFAULT_VALIDATE

    p.add_argument("model", help="registered model name (mobileisp list)")
    p.add_argument("--format", required=True, help=f"one of {', '.join(FORMATS)}")
    p.add_argument("--precision", required=True,
                   help=f"precision, or several separated by commas (supported: {supported()})")
    p.add_argument("--weights", default="default", help="safetensors weights (default: the shipped ones)")
    p.add_argument("--size", default=None, help="full-resolution export size HxW (default: the model's export size)")
    p.add_argument("--calib", type=int, default=DEFAULT_CALIB,
                   help=f"representative RAW samples for calibrated precisions (default {DEFAULT_CALIB})")
    p.add_argument("--set", dest="validate_n", type=int, default=DEFAULT_VALIDATE,
                   help=f"held-out images for the parity check at export (default {DEFAULT_VALIDATE})")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads for the parity check")
    p.add_argument("--allow-below-floor", action="store_true",
                   help="write the artefact even when parity misses its floor (recorded in its metadata)")
    p.add_argument("-o", "--output", type=Path, default=Path("out"), help="output folder (default ./out)")
    p.add_argument("--force", action="store_true", help="overwrite existing artefacts")


def export_command(args: argparse.Namespace) -> ExportRun:
    """Handler of ``mobileisp export``."""
    from mobileisp.export.calibrate import parse_size
    from mobileisp.export.pipeline import export

    precisions = [p.strip() for p in str(args.precision).split(",") if p.strip()]
    size = parse_size(args.size) if args.size else None
    results = export(
        args.model, args.format, precisions, weights=args.weights, size=size, calib=args.calib,
        out_dir=args.output, force=args.force, validate_n=args.validate_n, enforce=not args.allow_below_floor,
        threads=args.threads,
    )
    return ExportRun(results)


def add_validate_arguments(p: argparse.ArgumentParser) -> None:
    """Arguments of ``mobileisp validate ARTEFACT [--set N] [--save-images DIR]``."""
    from mobileisp.export.pipeline import DEFAULT_VALIDATE

    p.add_argument("artefact", type=Path, help=".tflite, .onnx or .mlpackage written by mobileisp export")
    p.add_argument("--set", dest="n", type=int, default=DEFAULT_VALIDATE,
                   help=f"number of held-out images (default {DEFAULT_VALIDATE})")
    p.add_argument("--weights", default=None, help="reference weights (default: those recorded in the artefact)")
    p.add_argument("--threads", type=int, default=None, help="interpreter threads")
    p.add_argument("--save-images", type=Path, default=None,
                   help="folder for a side-by-side (reference | artefact | ground truth) and an error-map PNG")
    p.add_argument("--force", action="store_true", help="overwrite existing images")


def validate_command(args: argparse.Namespace):
    """Handler of ``mobileisp validate``: returns the result, or prints it and raises ParityError (exit 3)."""
    from mobileisp.export.parity import ParityError
    from mobileisp.export.pipeline import validate

    result = validate(args.artefact, args.n, weights=args.weights, threads=args.threads,
                      save_images=args.save_images, force=args.force)
    if not result.passed:
        print(json.dumps(result.to_dict(), indent=2) if getattr(args, "json", False) else result.table())
        raise ParityError(result.failure())
    return result
