"""Helpers shared by bida's interfaces."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..utils.io import _jsonable


def out_path(runtime: Any, name: str) -> str:
    """Path of an output file inside the node's working directory."""
    return str(Path(runtime.cwd) / name)


def write_info(runtime: Any, name: str, info: dict) -> str:
    """Write a node's JSON info (parameters, timings) and return its path."""
    path = Path(runtime.cwd) / name
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
