"""What bida's interfaces share: Nipype's spec types and the helpers that write each node's
files.

The interface modules import the spec types from here (one place that names them) and use
the helpers as ``_base.save_image``, ``_base.write_info``, ``_base.Timer``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)

from ..utils.io import _jsonable

__all__ = [  # Nipype's spec types, for the interface modules, and the node helpers
    "BaseInterfaceInputSpec",
    "File",
    "SimpleInterface",
    "TraitedSpec",
    "isdefined",
    "traits",
    "Timer",
    "save_image",
    "read_info",
    "write_info",
]


def save_image(runtime: Any, name: str, img: Any) -> str:
    """Save ``img`` as ``name`` in the node's working directory and return the path."""
    import nibabel as nib

    path = str(Path(runtime.cwd) / name)
    nib.save(img, path)
    return path


def write_info(runtime: Any, stage: str, timer: Timer, sidecar: dict) -> str:
    """Write a node's JSON info, ``<stage>.json``: its stage, run time and sidecar keys.

    Parameters
    ----------
    runtime : nipype runtime
        The node's runtime (its working directory holds the file).
    stage : str
        Stage label recorded in the derivative's provenance; names the file.
    timer : Timer
        The timer of the stage's work.
    sidecar : dict
        Keys this stage adds to the derivative's JSON sidecar.

    Returns
    -------
    str
        Path of the file.
    """
    path = Path(runtime.cwd) / f"{stage}.json"
    info = {"stage": stage, "seconds": timer.seconds, "sidecar": sidecar}
    path.write_text(json.dumps(info, indent=2, default=_jsonable))
    return str(path)


def read_info(path: str | None) -> dict:
    """Read an info JSON written by :func:`write_info` (``{}`` when undefined)."""
    if not path:
        return {}
    return json.loads(Path(path).read_text())


class Timer:
    """Context manager measuring wall time in seconds (``.seconds``)."""

    def __enter__(self) -> Timer:
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.seconds = round(time.perf_counter() - self._t0, 3)
