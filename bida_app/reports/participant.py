"""The per-participant HTML report ``sub-<label>.html`` at the root of the output folder."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from .collect import Derivative, find_derivatives, key_fields, read_status
from .figures import figure_path, figures_dir, method_label
from .html import METRIC_TITLES, fmt, relative, render

LOGGER = logging.getLogger(__name__)
PLANES = ("sagittal", "coronal", "axial")
QC_COLUMNS = ("snr", "cnr", "sharpness", "jitter_through", "jitter_inplane")


def _existing(path: Path, root: Path) -> str:
    return relative(path, root) if path.is_file() else ""


def _qc(fig_dir: Path, d: Derivative) -> dict:
    for desc in (f"{d.desc}QC", f"{d.method}QC", "srQC"):
        path = figure_path(fig_dir, d.prefix, desc, "json")
        if path.is_file():
            try:
                return json.loads(path.read_text())
            except ValueError:
                LOGGER.warning("%s: unreadable QC metrics, ignored", path)
    return {}


def run_context(output_dir: Path, d: Derivative) -> dict:
    """Everything the template shows for one derivative: fields, QC numbers, figure links."""
    fig_dir = figures_dir(output_dir, d.subject)
    qc = _qc(fig_dir, d)
    labels = [method_label(d.desc), method_label(d.method), "SR"]
    planes = []
    order = [p for p in qc.get("Planes", []) if p in PLANES] or list(PLANES)
    for plane in order:

        def _fig(kind: str, ext: str = "png", plane: str = plane) -> str:
            return _existing(figure_path(fig_dir, d.prefix, f"{plane}{kind}", ext), output_dir)

        label = next((m for m in labels if _fig(m)), labels[0])
        entry = {
            "name": plane,
            "title": f"{plane.capitalize()} view: input vs {d.method}",
            "input": _fig("Input"),
            "sr": _fig(label),
            "flicker": _fig(f"{label}Flicker", "svg"),
            "bias": _fig("Bias"),
            "std": _fig(f"{label}Std"),
            "corrected": _fig(f"{label}Biascorr"),
        }
        if entry["sr"] or entry["input"]:
            planes.append(entry)
    sources = [(label, qc[key]) for key, label in (("Input", "input"), ("Output", "output"))
               if isinstance(qc.get(key), dict)]  # fmt: skip
    rows = [
        {"label": METRIC_TITLES[c], "values": [fmt(values.get(c)) for _, values in sources]}
        for c in QC_COLUMNS
    ]
    return {
        "id": re.sub(r"[^0-9A-Za-z_-]", "-", f"{d.prefix}-{d.desc}"),
        "name": d.name,
        "method": d.method,
        "fields": key_fields(d.meta, d.desc),
        "qc": rows if sources else [],
        "qc_headers": [label for label, _ in sources],
        "planes": planes,
        "sidecar_name": d.sidecar.name,
        "sidecar_json": json.dumps(d.meta, indent=2),
    }


def write_participant_report(output_dir: str | Path, subject: str) -> Path:
    """Write ``output_dir/sub-<label>.html`` from the figures and sidecars present.

    Parameters
    ----------
    output_dir : path
        bida output folder (derivatives root).
    subject : str
        Participant label, with or without ``sub-``.

    Returns
    -------
    Path
        The HTML file. Figures are linked by relative paths (``sub-<label>/figures/...``),
        so the report opens from disk with no network.
    """
    output_dir = Path(output_dir)
    subject = subject.removeprefix("sub-")
    derivatives = find_derivatives(output_dir, subject)
    failures = [
        e
        for e in read_status(output_dir)
        if str(e.get("subject") or "") == subject and e.get("status") == "failed"
    ]
    runs = [run_context(output_dir, d) for d in derivatives]
    group = output_dir / "group_report.html"
    path = render(
        "participant.html.j2",
        output_dir / f"sub-{subject}.html",
        subject=subject,
        runs=runs,
        failures=failures,
        group_report=group.name if group.exists() else "",
    )
    LOGGER.info("participant report: %s (%d runs)", path, len(runs))
    return path
