"""Shared fixtures for the RAW reader and DNG writer tests: planted packed planes and what read_raw must
return for them after its RGGB crop. Written independently of mobileisp.raw's crop code."""

from __future__ import annotations

import numpy as np

from mobileisp.metadata import CameraMetadata

META = CameraMetadata(
    make="Acme Optics",
    model="Phone 7 Pro",
    white_balance=(2.1, 1.0, 1.6),
    color_matrix=((0.9, -0.3, -0.1), (-0.4, 1.2, 0.2), (-0.05, 0.15, 0.6)),
    iso=400.0,
    exposure_time=1 / 120,
    f_number=1.8,
    focal_length=4.25,
)

#: Where red sits in each 2x2 layout = the leading (rows, cols) read_raw must drop.
RED_AT = {"RGGB": (0, 0), "GRBG": (0, 1), "GBRG": (1, 0), "BGGR": (1, 1)}

#: (row, col) of R, Gr, Gb, B in an RGGB tile.
RGGB_AT = ((0, 0), (0, 1), (1, 0), (1, 1))


def planted(h: int, w: int) -> np.ndarray:
    """(4, h, w) float64 in [0, 1]: a smooth ramp per plane plus a per-plane offset, so every channel
    lives in its own band (R 0.05-0.25, Gr 0.30-0.50, Gb 0.55-0.75, B 0.80-1.00) and every pixel differs."""
    y, x = np.mgrid[0:h, 0:w]
    ramp = (y * w + x) / max(h * w - 1, 1)  # 0 .. 1, distinct per pixel
    return np.stack([0.05 + 0.25 * c + 0.2 * (ramp if c % 2 == 0 else 1 - ramp) for c in range(4)])


def expected_packed(planes: np.ndarray, cfa: str, height: int, width: int) -> np.ndarray:
    """What read_raw returns for a ``height`` x ``width`` mosaic laid out from ``planes`` by
    mosaic_from_packed (tile (i, j) holds packed pixel (i, j)) and then possibly trimmed to odd size.

    After dropping (dy, dx) leading rows/cols, RGGB channel c at (i, j) is mosaic pixel
    (2i + dy + y_c, 2j + dx + x_c), i.e. tile (i + (dy + y_c) // 2, j + (dx + x_c) // 2) of plane c.
    """
    dy, dx = RED_AT[cfa]
    h, w = (height - dy) // 2, (width - dx) // 2
    out = np.empty((4, h, w))
    for c, (yc, xc) in enumerate(RGGB_AT):
        oy, ox = (dy + yc) // 2, (dx + xc) // 2
        out[c] = planes[c, oy:oy + h, ox:ox + w]
    return out
