"""Jinja2 rendering of the HTML reports (templates in ``bida_app/reports/templates``)."""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

from .. import __version__
from ..utils.io import atomic_path

TEMPLATES = Path(__file__).parent / "templates"
#: Display names of the no-reference metrics.
METRIC_TITLES = {
    "snr": "SNR",
    "cnr": "CNR",
    "sharpness": "through-plane sharpness",
    "jitter_through": "slice jitter (through-plane)",
    "jitter_inplane": "slice jitter (in-plane)",
    "residual": "data-consistency residual",
    "runtime_s": "runtime (s)",
    "input_snr": "input SNR",
    "input_cnr": "input CNR",
}


def fmt(value: Any, spec: str = ".3g") -> str:
    """Format a number for a table cell (``"n/a"`` for missing or non-finite).

    Examples
    --------
    >>> fmt(0.123456), fmt(None), fmt(float("nan")), fmt("x")
    ('0.123', 'n/a', 'n/a', 'x')
    """
    if value is None:
        return "n/a"
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)):
        return format(value, spec) if math.isfinite(value) else "n/a"
    return str(value)


def render(template: str, path: str | os.PathLike[str], **context: Any) -> Path:
    """Render ``template`` with ``context`` (plus version and date) into ``path`` atomically."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

    env = Environment(
        loader=FileSystemLoader(str(TEMPLATES)),
        autoescape=select_autoescape(["html", "j2"], default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    context.setdefault("version", __version__)
    context.setdefault(
        "generated", _dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z").strip()
    )
    text = env.get_template(template).render(**context)
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def relative(path: str | os.PathLike[str], start: str | os.PathLike[str]) -> str:
    """POSIX relative path of ``path`` from folder ``start`` (for ``src``/``href``).

    Examples
    --------
    >>> relative("/out/sub-01/figures/a.png", "/out")
    'sub-01/figures/a.png'
    """
    return Path(os.path.relpath(path, start)).as_posix()
