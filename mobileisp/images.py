"""Reading and writing display images (PNG/JPEG/TIFF) as float arrays in [0, 1]."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mobileisp._io import atomic_write_bytes
from mobileisp.errors import MobileISPError


def check_image_name(path: str | Path, bits: int = 8) -> str:
    """Validate an output image name and bit depth before any work; returns the lower-case extension."""
    path = Path(path)
    if bits not in (8, 16):
        raise MobileISPError(f"--bits must be 8 or 16, not {bits}")
    ext = path.suffix.lower()
    if ext not in (".png", ".tif", ".tiff", ".jpg", ".jpeg"):
        raise MobileISPError(f"cannot write {path.name}: use a .png, .tif or .jpg file name")
    if bits == 16 and ext in (".jpg", ".jpeg"):
        raise MobileISPError("JPEG holds 8 bits per channel; use .png or .tif for --bits 16")
    return ext


def save_srgb(path: str | Path, srgb: np.ndarray, bits: int = 8, force: bool = False) -> Path:
    """Write an sRGB image atomically.

    Args:
        path: destination; the extension picks the format (.png 8/16-bit, .tif 8/16-bit, .jpg 8-bit).
        srgb: (3, H, W) or (H, W, 3) float array in [0, 1] (values outside are clipped).
        bits: 8 or 16.
        force: overwrite an existing file.
    """
    import cv2

    path = Path(path)
    ext = check_image_name(path, bits)
    img = np.asarray(srgb, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = img.transpose(1, 2, 0)
    if img.ndim != 3 or img.shape[-1] != 3:
        raise ValueError(f"expected an RGB image, got shape {img.shape}")
    peak = 65535 if bits == 16 else 255
    q = np.round(np.clip(img, 0.0, 1.0) * peak).astype(np.uint16 if bits == 16 else np.uint8)
    ok, buf = cv2.imencode(ext, np.ascontiguousarray(q[..., ::-1]))
    if not ok:
        raise MobileISPError(f"could not encode {path.name}")
    return atomic_write_bytes(path, buf.tobytes(), force=force)


def load_srgb(path: str | Path) -> np.ndarray:
    """Read an 8- or 16-bit RGB image as (H, W, 3) float32 in [0, 1]."""
    import cv2

    path = Path(path)
    data = np.fromfile(path, dtype=np.uint8) if path.is_file() else None
    img = None if data is None or data.size == 0 else cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise MobileISPError(f"{path}: not a readable image")
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = img[..., :3][..., ::-1]
    peak = 65535.0 if img.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(img.astype(np.float32) / peak)
