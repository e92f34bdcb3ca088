"""Host-side encodings of camera metadata into model inputs, stored as data with each model and artefact.

Some networks do not take an EXIF value as it is but a fixed transform of it. ParamISP (Kim et al., CVPR 2024)
feeds its ParamNet the *non-linear equalization* of each optical parameter (exposure time, ISO, f-number,
focal length): fifteen functions of the value, each scaled by dataset-range constants of the official code.
Those features span many orders of magnitude before scaling and use log/sin/cos, which delegates and int8
kernels handle badly, so they are computed here, in float64 on the host, and the exported graph takes the
resulting vector. The recipe, constants included, is plain JSON: it is part of the ModelSpec
(``ModelSpec.metadata_encoding``) and therefore of every artefact's metadata, and ``run``, ``validate`` and
``bench`` apply the recipe recorded in the artefact.

Recipes (plain JSON):

- ``{"kind": "paramisp-equalization", "sources": [field, ...], "constants": {field: {...}}}`` produces
  ``15 * len(sources)`` features per sample, in source order (see :func:`paramisp_equalization`);
- ``{"kind": "camera-to-srgb", "sources": ["color_matrix"]}`` produces 18 numbers per sample: the
  white-balanced camera RGB -> linear sRGB matrix (row-major) and its inverse, from the file's XYZ -> camera
  ``color_matrix`` (:func:`mobileisp.metadata.cam_to_srgb_matrix`), so that the exported graph takes a 2-D
  (N, 18) tensor instead of inverting a (N, 3, 3) one (onnx2tf 1.29 mis-converted that: TFLite parity 30 dB).

A missing source value is an error (never a 0 fed into a log).
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np

from mobileisp.metadata import METADATA_FIELDS

#: Names that encoded model inputs may take (batches carry them next to the plain metadata fields).
ENCODED_INPUTS = ("optics", "ccm")

#: Features per optical parameter in ParamISP's equalization.
PARAMISP_FEATURES_PER_PARAMETER = 15

#: ParamISP's equalization constants (official code, see the digest A2.2): for a value x,
#: ``lin`` scales x, x^1/2, x^1/4; ``inv`` scales the reciprocal terms 1/(x/inv) ...; ``log`` is
#: (log2 x - offset) / span; ``freq`` are the divisors c of sin(x/c), cos(x/c).
PARAMISP_CONSTANTS: dict[str, dict[str, Any]] = {
    "focal_length": {"lin": 200.0, "inv": 4.2, "log": [1.9, 5.8], "freq": [50.0, 30.0, 20.0]},
    "f_number": {"lin": 32.0, "inv": 1.7, "log": [0.7, 4.3], "freq": [11.0, 5.0, 2.0]},
    "exposure_time": {"lin": 30.0, "inv": 1.0 / 28800.0, "log": [-15.0, 20.0], "freq": [11.0, 5.0, 2.0]},
    "iso": {"lin": 8000.0, "inv": 64.0, "log": [6.0, 7.0], "freq": [3100.0, 1300.0, 500.0]},
}

#: The recipe of a (N, 18) input holding the camera -> sRGB matrix and its inverse.
CAMERA_TO_SRGB = {"kind": "camera-to-srgb", "sources": ["color_matrix"]}

#: The recipe of ParamISP's optics input, in the official code's order of parameters.
PARAMISP_OPTICS = {
    "kind": "paramisp-equalization",
    "sources": ["focal_length", "f_number", "exposure_time", "iso"],
    "constants": PARAMISP_CONSTANTS,
}


class EncodingError(ValueError):
    """A recipe is malformed or a value cannot be encoded (missing, not finite, not positive)."""


def encoded_shape(recipe: Mapping[str, Any]) -> tuple[int, ...]:
    """Per-sample shape of the tensor ``recipe`` produces."""
    kind = recipe.get("kind")
    if kind == "paramisp-equalization":
        return (PARAMISP_FEATURES_PER_PARAMETER * len(recipe["sources"]),)
    if kind == "camera-to-srgb":
        return (18,)
    raise EncodingError(f"unknown metadata encoding {kind!r}")


def paramisp_equalization(value: np.ndarray, c: Mapping[str, Any]) -> np.ndarray:
    """ParamISP's non-linear equalization of one optical parameter.

    Args:
        value: (N,) positive values in the parameter's EXIF unit (s, ISO, f-number, mm).
        c: its constants (``lin``, ``inv``, ``log`` = [offset, span], ``freq`` = three divisors).

    Returns:
        (N, 15) float64: x, sqrt x, x^1/4 (x / lin); their reciprocals (x / inv); (log2 x - offset) / span;
        sin, cos of log2 x; sin, cos of x / c for the three divisors. Roughly within [-1, 2] for values in the
        ranges the constants were chosen for.
    """
    x = np.asarray(value, dtype=np.float64)
    lin, inv = x / float(c["lin"]), x / float(c["inv"])
    log2 = np.log2(x)
    offset, span = (float(v) for v in c["log"])
    cols = [lin, np.sqrt(lin), lin**0.25, 1.0 / inv, 1.0 / np.sqrt(inv), inv**-0.25, (log2 - offset) / span,
            np.sin(log2), np.cos(log2)]
    for divisor in c["freq"]:
        cols += [np.sin(x / float(divisor)), np.cos(x / float(divisor))]
    return np.stack(cols, axis=-1)


def encode(recipe: Mapping[str, Any], values: Mapping[str, Any]) -> np.ndarray:
    """Apply ``recipe`` to the source ``values`` (each (N,) or (N, 1), or a scalar for one sample).

    Returns:
        (N, *encoded_shape(recipe)) float32.

    Raises:
        EncodingError: a source is missing, not finite or not positive (named in the message).
    """
    kind = recipe.get("kind")
    if kind == "camera-to-srgb":
        return camera_to_srgb(values.get("color_matrix"))
    if kind != "paramisp-equalization":
        raise EncodingError(f"unknown metadata encoding {kind!r}")
    parts = []
    for field in recipe["sources"]:
        v = values.get(field)
        if v is None:
            raise EncodingError(f"metadata field {field!r} is missing")
        x = np.asarray(v.detach().cpu() if hasattr(v, "detach") else v, dtype=np.float64).reshape(-1)
        if not np.all(np.isfinite(x)) or np.any(x <= 0):
            bad = x[~(np.isfinite(x) & (x > 0))][0]
            raise EncodingError(f"metadata field {field!r} must be a positive number, got {bad:g}")
        parts.append(paramisp_equalization(x, recipe["constants"][field]))
    return np.concatenate(parts, axis=-1).astype(np.float32)


def camera_to_srgb(color_matrix: Any) -> np.ndarray:
    """(N, 18) float32: row-major camera RGB -> linear sRGB matrix, then its inverse (sRGB -> camera, rows summing 1).

    Args:
        color_matrix: (N, 3, 3) or (3, 3) XYZ -> camera matrices (DNG ColorMatrix convention).

    Raises:
        EncodingError: missing, not finite, or singular.
    """
    from mobileisp.metadata import SRGB_TO_XYZ, cam_to_srgb_matrix

    if color_matrix is None:
        raise EncodingError("metadata field 'color_matrix' is missing")
    v = color_matrix.detach().cpu() if hasattr(color_matrix, "detach") else color_matrix
    m = np.asarray(v, dtype=np.float64).reshape(-1, 3, 3)
    rows = []
    for xyz2cam in m:
        rgb2cam = xyz2cam @ SRGB_TO_XYZ
        sums = rgb2cam.sum(axis=1, keepdims=True)
        if not np.all(np.isfinite(xyz2cam)) or np.any(np.abs(sums) < 1e-9) or abs(np.linalg.det(rgb2cam)) < 1e-12:
            raise EncodingError("metadata field 'color_matrix' is not an invertible colour matrix")
        rows.append(np.concatenate([cam_to_srgb_matrix(xyz2cam).reshape(9), (rgb2cam / sums).reshape(9)]))
    return np.stack(rows).astype(np.float32)


def source_fields(fields: Sequence[str], encodings: Mapping[str, Mapping[str, Any]]) -> tuple[str, ...]:
    """The CameraMetadata fields needed to build the inputs ``fields`` (encoded ones expanded), in order."""
    out: list[str] = []
    for f in fields:
        for s in encodings[f]["sources"] if f in encodings else [f]:
            if s not in out:
                out.append(s)
    return tuple(out)


def model_metadata(fields: Sequence[str], encodings: Mapping[str, Mapping[str, Any]],
                   values: Mapping[str, Any], batched: bool = True) -> dict[str, Any]:
    """The model's metadata inputs from raw field values (a sample dict or a batch dict).

    Plain fields are passed through unchanged; encoded fields are computed from their sources and returned as
    float32 torch tensors shaped (N, *shape) when ``batched`` else (*shape).

    Raises:
        EncodingError: a plain field or an encoding source is missing from ``values``.
    """
    import torch

    out: dict[str, Any] = {}
    for f in fields:
        if f in encodings:
            enc = encode(encodings[f], values)
            out[f] = torch.from_numpy(enc if batched else enc[0])
        elif values.get(f) is None:
            raise EncodingError(f"metadata field {f!r} is missing")
        else:
            out[f] = values[f]
    return out


def check_recipe(name: str, recipe: Mapping[str, Any]) -> None:
    """Validate the recipe of input ``name`` at registration (name allowed, sources known, constants complete)."""
    if name not in ENCODED_INPUTS:
        raise ValueError(f"encoded input {name!r} must be one of {ENCODED_INPUTS}")
    encoded_shape(recipe)
    if recipe["kind"] == "camera-to-srgb":
        if list(recipe.get("sources", ())) != ["color_matrix"]:
            raise ValueError(f"{name}: camera-to-srgb is computed from color_matrix")
        return
    for s in recipe.get("sources", ()):
        if s not in METADATA_FIELDS or s not in recipe["constants"]:
            raise ValueError(f"{name}: encoding source {s!r} is not a known field with constants")
        missing = {"lin", "inv", "log", "freq"} - set(recipe["constants"][s])
        if missing or len(recipe["constants"][s]["freq"]) != 3 or not math.isfinite(float(recipe["constants"][s]["lin"])):
            raise ValueError(f"{name}: constants of {s!r} incomplete")
