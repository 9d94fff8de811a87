"""Atomic file output: write to a temporary sibling, then rename into place."""

from __future__ import annotations

import json
import os
import re
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Marker in the names of the temporaries of :func:`atomic_path`, e.g.
#: ``.sub-01_desc-cubic_T2w.k2x8_q1z.bida-tmp.nii.gz``; :func:`remove_stale_temporaries`
#: recognises them (and the unmarked ones of bida < 0.3) by their name.
TMP_MARKER = ".bida-tmp"
_TMP_RE = re.compile(r"^\.(?P<stem>[^./][^/]*?)\.[A-Za-z0-9_]{8}\.bida-tmp(\.[A-Za-z0-9]+)*$")
_OLD_TMP_RE = re.compile(
    r"^\.(?P<stem>sub-[^./]+)\.[a-z0-9_]{8}\.(nii\.gz|nii|json|html|svg|png|tsv)$"
)
#: Temporaries of this process being written now (removed by the signal handler on exit).
_LIVE: dict[str, None] = {}


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
        prefix=f".{final.name.split('.')[0]}.", suffix=TMP_MARKER + suffix, dir=final.parent
    )
    os.close(fd)
    tmp_path = Path(tmp)
    _LIVE[tmp] = None
    try:
        yield tmp_path
        if tmp_path.exists():  # mkstemp makes 0600; give the file the usual umask mode
            os.chmod(tmp_path, 0o666 & ~_umask())
        os.replace(tmp_path, final)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    finally:
        _LIVE.pop(tmp, None)


def live_temporaries() -> list[str]:
    """Paths of the temporaries this process is writing now (for a signal handler)."""
    for _ in range(5):
        try:
            return list(_LIVE)
        except RuntimeError:  # changed size during iteration (another thread)
            continue
    return []


def is_temporary(name: str) -> bool:
    """True if ``name`` is a temporary of :func:`atomic_path` (this or an older bida).

    Examples
    --------
    >>> is_temporary(".sub-01_T2w.ab12_x9z.bida-tmp.nii.gz"), is_temporary("sub-01_T2w.nii.gz")
    (True, False)
    >>> is_temporary(".sub-02_desc-cubic_T2w.q1w2e3r4.nii.gz")  # bida < 0.3
    True
    """
    return bool(_TMP_RE.match(name) or _OLD_TMP_RE.match(name))


def remove_stale_temporaries(
    root: Path, owned: Iterable[str] = (), *, skip: Iterable[Path] = (), min_age_s: float = 3600
) -> list[Path]:
    """Remove the temporaries that an interrupted bida run left under ``root``.

    Parameters
    ----------
    root : Path
        Output folder to clean.
    owned : iterable of str
        Top-level names (e.g. ``sub-01``) this run holds the lock of: every temporary in
        those folders, or named after them, is removed.
    skip : iterable of Path
        Folders not to descend into (the Nipype work directory).
    min_age_s : float
        Other temporaries (shared files such as ``dataset_description.json``) are removed only
        when older than this, so a concurrent run's files in progress are left alone.

    Returns
    -------
    list of Path
        The files removed.
    """
    owned = set(owned)
    skip = {Path(p).resolve() for p in skip}
    removed: list[Path] = []
    now = time.time()
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = [d for d in dirnames if (here / d).resolve() not in skip]
        top = here.relative_to(root).parts[:1]
        for name in filenames:
            match = _TMP_RE.match(name) or _OLD_TMP_RE.match(name)
            if not match:
                continue
            path = here / name
            mine = bool(top and top[0] in owned) or match["stem"].split("_")[0] in owned
            try:
                if mine or now - path.lstat().st_mtime > min_age_s:
                    path.unlink()
                    removed.append(path)
            except OSError:
                continue
    return removed


def write_json(path: str | os.PathLike[str], data: dict[str, Any] | list[Any]) -> Path:
    """Write ``data`` as indented JSON atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=_jsonable) + "\n")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) atomically and return the final path."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
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
