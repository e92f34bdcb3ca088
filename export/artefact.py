"""Self-describing artefacts: the metadata every export carries, where it lives, and how to read it back.

The metadata is one JSON object (:func:`build_metadata`) stored inside the artefact itself:

- ``.tflite``: a named buffer ``"mobileisp"`` in the flatbuffer's ``metadata`` table (:mod:`.tflite`);
- ``.mlpackage``: ``user_defined_metadata["mobileisp"]`` (plus flat ``mobileisp.model`` /
  ``mobileisp.precision`` keys that :mod:`mobileisp.ios_bench` reads), and the model's short description;
- ``.onnx``: ``metadata_props["mobileisp"]``.

Keys: ``schema``, ``model``, ``spec`` (the ModelSpec as a dict), ``format``, ``precision``, ``size`` (full-res
H, W), ``layout``, ``inputs`` / ``output`` (names and shapes as the artefact takes them), ``weights`` (file,
sha256, or the seed of a random init), ``calibration`` (the representative set, or None), ``io_quantization``
(int8-io only), ``parity`` (validation measured at export), ``rewrites``, ``versions`` (mobileisp, git hash,
torch and converter versions) and ``created``.
"""

from __future__ import annotations

import hashlib
import subprocess
from datetime import datetime, timezone
from importlib import metadata as importlib_metadata
from pathlib import Path
from typing import Any, Mapping

from mobileisp import __version__
from mobileisp.errors import MobileISPError

SCHEMA = 1
#: Seed used to build a randomly initialised network (no weights file) so that validate can rebuild it.
RANDOM_INIT_SEED = 0


class ArtefactError(MobileISPError):
    """An artefact that is missing, of an unknown kind, or carries no (or unreadable) mobileisp metadata."""


def git_hash() -> str | None:
    """The source tree's ``git rev-parse HEAD`` (with ``+dirty`` for local changes), or None outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty else head or None


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def versions() -> dict[str, str | None]:
    """mobileisp version and git hash, and the versions of the libraries an export depends on."""
    out: dict[str, str | None] = {"mobileisp": __version__, "git": git_hash()}
    for dist in ("torch", "onnx", "onnxruntime", "onnxsim", "onnx2tf", "tensorflow", "ai-edge-litert", "coremltools"):
        try:
            out[dist] = importlib_metadata.version(dist)
        except importlib_metadata.PackageNotFoundError:
            out[dist] = None
    return out


def build_metadata(
    *,
    spec,
    format: str,
    precision: str,
    size: tuple[int, int],
    layout: str,
    inputs: list[dict[str, Any]],
    output: dict[str, Any],
    weights: dict[str, Any],
    calibration: Mapping[str, Any] | None,
    parity: Mapping[str, Any] | None,
    rewrites: str,
    io_quantization: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The metadata object of one artefact (see the module docstring for the keys)."""
    return {
        "schema": SCHEMA,
        "model": spec.name,
        "spec": spec.to_dict(),
        "format": format,
        "precision": precision,
        "size": [int(size[0]), int(size[1])],
        "layout": layout,
        "inputs": inputs,
        "output": output,
        "weights": dict(weights),
        "calibration": None if calibration is None else dict(calibration),
        "io_quantization": None if io_quantization is None else dict(io_quantization),
        "parity": None if parity is None else dict(parity),
        "rewrites": rewrites,
        "versions": versions(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The mobileisp metadata of an artefact (.tflite, .mlpackage or .onnx).

    Raises:
        ArtefactError: missing path, unknown kind, unreadable file, or no mobileisp metadata in it.
    """
    from mobileisp.export.formats import UnsupportedExportError, format_of

    path = Path(path)
    if not path.exists():
        raise ArtefactError(f"{path}: no such artefact")
    try:
        fmt = format_of(path)
    except UnsupportedExportError as e:
        raise ArtefactError(str(e)) from None
    if fmt.name == "coreml" and not (path / "Manifest.json").is_file():
        raise ArtefactError(f"{path} is not a valid .mlpackage (no Manifest.json inside)")
    try:
        if fmt.name == "tflite":
            from mobileisp.export.tflite import read_metadata as read

            meta = read(path.read_bytes())
        elif fmt.name == "onnx":
            from mobileisp.export.onnx import read_metadata as read

            meta = read(path)
        else:
            from mobileisp.export.coreml import read_metadata as read

            meta = read(path)
    except ArtefactError:
        raise
    except Exception as e:  # corrupt flatbuffer / protobuf / package
        raise ArtefactError(f"{path}: cannot read it as a {fmt.name} model ({type(e).__name__}: {e})") from None
    if not meta:
        raise ArtefactError(f"{path} carries no mobileisp metadata (was it written by `mobileisp export`?)")
    if meta.get("schema") != SCHEMA:
        raise ArtefactError(f"{path}: metadata schema {meta.get('schema')!r} is not supported (expected {SCHEMA})")
    return meta


def spec_for_artefact(meta: Mapping[str, Any]):
    """The registered ModelSpec of an artefact's model, with the metadata encoding the artefact recorded.

    The host-side encoding of EXIF values (``ModelSpec.metadata_encoding``) is part of the exported model: an
    artefact built with other constants must be fed with those, so ``validate`` and ``bench`` apply the
    recorded recipe rather than the one in today's code.
    """
    import dataclasses

    from mobileisp.models import get_spec

    spec = get_spec(meta["model"])
    recorded = (meta.get("spec") or {}).get("metadata_encoding")
    if recorded:
        spec = dataclasses.replace(spec, metadata_encoding=dict(recorded))
    return spec
