"""Jinja2 rendering of the HTML reports (templates in ``bida_app/reports/templates``)."""

from __future__ import annotations

import datetime as _dt
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

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
    """Format a number for a table cell: ``"n/a"`` when missing, ``∞`` for infinity.

    The one formatter of every report (participant, group, evaluation; also the templates'
    ``fmt`` filter).

    Examples
    --------
    >>> fmt(0.123456), fmt(None), fmt(float("nan")), fmt("x"), fmt(float("inf"))
    ('0.123', 'n/a', 'n/a', 'x', '∞')
    >>> import numpy as np; fmt(np.float32(31.234567), ".2f"), fmt(np.bool_(True))
    ('31.23', 'True')
    """
    if value is None:
        return "n/a"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        v = float(value)
        if math.isnan(v):
            return "n/a"
        if math.isinf(v):
            return "∞" if v > 0 else "-∞"
        return format(value, spec)
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
    env.filters["fmt"] = fmt
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
