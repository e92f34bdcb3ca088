"""Atomic file writes.

Every artefact mobileisp writes goes through these helpers: the data lands in a temporary file in the
destination folder and is renamed into place only when complete, so a crash or a bad input never leaves
a half-written file behind. An existing destination is never replaced unless ``force=True``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

from mobileisp.errors import OutputExistsError


def check_writable(path: str | os.PathLike, force: bool = False) -> Path:
    """Return ``path`` as a Path, raising :class:`OutputExistsError` if it exists and ``force`` is False."""
    path = Path(path)
    if path.exists() and not force:
        raise OutputExistsError(f"{path} already exists (use --force to overwrite)")
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success rename it onto ``path``.

    The temporary name keeps ``suffix`` (default: the suffix of ``path``) so libraries that pick a
    format from the extension (PIL, tifffile) still work. On any exception the temporary file or
    folder is removed and nothing appears at ``path``.
    """
    path = check_writable(path, force)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix if suffix is None else suffix
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    tmp.unlink()  # the writer creates it (a file or, for .mlpackage, a folder)
    try:
        yield tmp
        if not tmp.exists():
            raise RuntimeError(f"writer produced nothing for {path}")
        if tmp.is_file():  # mkstemp's 0600 would outlive the rename; give the file the usual umask mode
            os.chmod(tmp, 0o666 & ~_umask())
        if path.exists():
            _remove(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.exists():
            _remove(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes, force: bool = False) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path, force) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike, text: str, force: bool = False) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return atomic_write_bytes(path, text.encode("utf-8"), force)


def atomic_write_json(path: str | os.PathLike, obj: Any, force: bool = False) -> Path:
    """Write ``obj`` as indented JSON (keys sorted) atomically and return the path."""
    return atomic_write_text(path, to_json(obj, sort_keys=True) + "\n", force)


def to_json(obj: Any, sort_keys: bool = False) -> str:
    """Strict JSON text of ``obj``: paths and other objects as strings, non-finite floats (a PSNR of two
    identical images is +inf) as the strings ``"inf"``, ``"-inf"``, ``"nan"`` rather than invalid JSON."""
    return json.dumps(_finite_floats(obj), indent=2, sort_keys=sort_keys, default=str, allow_nan=False)


def _finite_floats(obj: Any) -> Any:
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    if isinstance(obj, dict):
        return {k: _finite_floats(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite_floats(v) for v in obj]
    return obj


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()
