"""Atomic file output: write to a temporary sibling, then rename into place."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    """The process umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(final: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` on success.

    The temporary name keeps the final suffixes (``.nii.gz``) so writers that
    infer the format from the extension behave. On error the temporary file is
    removed and ``final`` is left untouched. The file gets the mode a plain ``open`` would
    give it (``0o666`` minus the umask), not ``mkstemp``'s private ``0o600``: derivatives
    and weights are meant to be shared.

    Examples
    --------
    >>> import stat, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "a.txt") as tmp:
    ...     _ = tmp.write_text("x")
    >>> (d / "a.txt").read_text(), stat.S_IMODE((d / "a.txt").stat().st_mode) == 0o666 & ~_umask()
    ('x', True)
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(final.suffixes)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{final.name.split('.')[0]}.", suffix=suffix, dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600; give the file the usual umask mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_json(path: str | os.PathLike[str], data: dict[str, Any] | list[Any]) -> Path:
    """Write ``data`` as indented JSON atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return Path(path)


def write_nifti(img: Any, path: str | os.PathLike[str]) -> Path:
    """Save a nibabel image atomically and return the final path."""
    import nibabel as nib

    with atomic_path(path) as tmp:
        nib.save(img, str(tmp))
    return Path(path)


def _jsonable(obj: Any) -> Any:
    """Convert NumPy scalars/arrays and paths for :func:`json.dumps`."""
    import numpy as np

    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
