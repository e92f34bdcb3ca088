"""Camera metadata carried by a RAW file, and its encoding as model inputs.

A field the file does not carry is ``None``, never 0: a zero ISO or exposure fed into a log would give
``-inf`` inside a network. Conventions:

- ``white_balance``: as-shot white-balance *gains* ``(R, G, B)`` normalised so that G = 1; multiplying the
  camera RGB by them makes a neutral surface grey.
- ``color_matrix``: 3x3 matrix from CIE XYZ (D65) to camera RGB, the DNG ``ColorMatrix`` convention
  (dcraw/LibRaw ``rgb_xyz_matrix``). :func:`cam_to_srgb_matrix` turns it into the 3x3 matrix that maps
  white-balanced camera RGB to linear sRGB.
- ``iso`` (ISO speed), ``exposure_time`` (seconds), ``f_number``, ``focal_length`` (mm): scalars.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

#: Linear sRGB -> CIE XYZ (D65).
SRGB_TO_XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]],
    dtype=np.float64,
)

#: Fields that a ModelSpec may list as inputs, with the shape of one sample's tensor.
METADATA_FIELDS: dict[str, tuple[int, ...]] = {
    "white_balance": (3,),
    "color_matrix": (3, 3),
    "iso": (1,),
    "exposure_time": (1,),
    "f_number": (1,),
    "focal_length": (1,),
}


@dataclass(frozen=True)
class CameraMetadata:
    """What a RAW file says about how it was taken. Any field may be None (not recorded)."""

    make: str | None = None
    model: str | None = None
    white_balance: tuple[float, float, float] | None = None
    color_matrix: tuple[tuple[float, float, float], ...] | None = None
    iso: float | None = None
    exposure_time: float | None = None
    f_number: float | None = None
    focal_length: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (tuples become lists)."""
        return {k: _listify(v) for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "CameraMetadata":
        """Inverse of :meth:`to_dict`; unknown keys are ignored."""
        kw = {f.name: d.get(f.name) for f in dataclasses.fields(cls)}
        if kw["white_balance"] is not None:
            kw["white_balance"] = tuple(float(v) for v in kw["white_balance"])
        if kw["color_matrix"] is not None:
            kw["color_matrix"] = tuple(tuple(float(v) for v in row) for row in kw["color_matrix"])
        return cls(**kw)

    def missing(self, fields: Sequence[str]) -> list[str]:
        """Names among ``fields`` that are None."""
        return [f for f in fields if getattr(self, f) is None]


def cam_to_srgb_matrix(color_matrix: np.ndarray) -> np.ndarray:
    """3x3 white-balanced camera RGB -> linear sRGB matrix from an XYZ->camera ``color_matrix``.

    Follows dcraw and Brooks et al.: ``rgb2cam = xyz2cam @ srgb2xyz`` with each row normalised to sum 1
    (so that white-balanced camera white maps to sRGB white), then inverted.
    """
    rgb2cam = np.asarray(color_matrix, dtype=np.float64) @ SRGB_TO_XYZ
    rgb2cam = rgb2cam / rgb2cam.sum(axis=1, keepdims=True)
    return np.linalg.inv(rgb2cam)


def metadata_arrays(metas: Sequence[CameraMetadata], fields: Sequence[str]) -> dict[str, np.ndarray]:
    """Stack the requested fields of a batch into float32 arrays of shape (N, *METADATA_FIELDS[field]).

    Raises:
        ValueError: a field is unknown or missing in one of the samples (callers turn this into a
            one-line user error naming the file).
    """
    out: dict[str, np.ndarray] = {}
    for field in fields:
        if field not in METADATA_FIELDS:
            raise ValueError(f"unknown metadata field {field!r}")
        values = []
        for m in metas:
            v = getattr(m, field)
            if v is None:
                raise ValueError(f"metadata field {field!r} is missing")
            values.append(np.asarray(v, dtype=np.float32).reshape(METADATA_FIELDS[field]))
        out[field] = np.stack(values)
    return out


def _listify(v: Any) -> Any:
    if isinstance(v, tuple):
        return [_listify(x) for x in v]
    return v
