"""The group-level report: ``group_T2w.tsv`` and ``group_report.html`` from ``output_dir`` only.

One row per super-resolved run (every ``*_desc-<method>_T2w`` derivative with a sidecar),
the no-reference image-quality metrics of :mod:`bida_app.reports.metrics` computed from the
derivative images, input SNR/CNR from the per-run QC JSON when the participant level wrote it,
robust outlier flags (per method), distribution plots, one sagittal view per run, and the runs
the participant level tried but failed (``logs/**/bida_status*.json``).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd

from ..errors import BidaError, ExitCode
from . import metrics
from .collect import (
    Derivative,
    as_float,
    factor,
    find_derivatives,
    fmt_size,
    read_status,
    runtime,
    through_axis,
    warnings_of,
)
from .figures import figure_path, figures_dir
from .html import METRIC_TITLES, fmt, relative, render
from .plotting import render_contact_sheet, render_distributions
from .views import WORLD_AXIS, canonical, choose_view, slice_tile, through_planes, tile_aspect

LOGGER = logging.getLogger(__name__)
#: Metrics checked for outliers and plotted.
FLAGGED = (
    "snr",
    "cnr",
    "sharpness",
    "jitter_through",
    "jitter_inplane",
    "residual",
    "runtime_s",
    "input_snr",
    "input_cnr",
)
#: Columns of ``group_T2w.tsv`` (in order).
COLUMNS = (
    "subject",
    "session",
    "acq",
    "run",
    "method",
    "input_voxel_size",
    "output_voxel_size",
    "through_axis",
    "factor",
    "thickness_mm",
    "runtime_s",
    "residual",
    "snr",
    "cnr",
    "sharpness",
    "jitter_through",
    "jitter_inplane",
    "input_snr",
    "input_cnr",
    "outliers",
    "warnings",
    "derivative",
)


def _input_qc(output_dir: Path, d: Derivative) -> dict:
    path = figure_path(figures_dir(output_dir, d.subject), d.prefix, f"{d.desc}QC", "json")
    try:
        return json.loads(path.read_text()).get("Input") or {}
    except (OSError, ValueError, AttributeError):
        return {}


def _measure(d: Derivative) -> tuple[dict, np.ndarray | None, float, str]:
    """Metrics of a derivative image, plus the tile of its group mosaic."""
    _, world = through_axis(d.meta)
    through = WORLD_AXIS.get(world or "AP", 1)
    data, affine = canonical(nib.load(str(d.image)))
    zooms = np.sqrt((affine[:3, :3] ** 2).sum(axis=0))
    mask = metrics.head_mask(data, zooms)
    values = metrics.image_quality(data, zooms, through, mask)
    plane = through_planes(through)[0]
    view = choose_view(mask, plane, n_slices=1)
    tile = slice_tile(data, plane, view.indices[0])[view.crop]
    return values, tile, tile_aspect(affine, plane), plane


def collect_runs(output_dir: str | Path) -> tuple[pd.DataFrame, list[tuple]]:
    """One row per derivative (columns :data:`COLUMNS`) and the mosaic tiles.

    Unreadable images keep their row, with NaN metrics and a warning.
    """
    from tqdm import tqdm

    output_dir = Path(output_dir)
    rows, tiles = [], []
    derivatives = find_derivatives(output_dir)
    for d in tqdm(derivatives, desc="group QC", unit="run", disable=len(derivatives) < 5):
        meta = d.meta
        row = {
            "subject": d.subject,
            "session": d.entities.get("session"),
            "acq": d.entities.get("acquisition"),
            "run": d.entities.get("run"),
            "method": d.method,
            "input_voxel_size": fmt_size(meta.get("InputVoxelSize")) or None,
            "output_voxel_size": fmt_size(meta.get("OutputVoxelSize")) or None,
            "through_axis": through_axis(meta)[1],
            "factor": factor(meta),
            "thickness_mm": as_float(meta.get("SliceThickness")),
            "runtime_s": runtime(meta),
            "residual": as_float(meta.get("DataConsistencyResidual")),
            "warnings": "; ".join(warnings_of(meta)),
            "derivative": relative(d.image, output_dir),
        }
        try:
            values, tile, aspect, plane = _measure(d)
            row.update(values)
            tiles.append((tile, aspect, f"{d.prefix}\n{d.method}, {plane}"))
        except Exception as exc:  # a broken file must not stop the group report
            LOGGER.warning("%s: cannot compute QC metrics (%s)", d.image, exc)
            row["warnings"] = "; ".join(filter(None, [row["warnings"], f"QC failed: {exc}"]))
        qc_in = _input_qc(output_dir, d)
        row["input_snr"], row["input_cnr"] = qc_in.get("snr"), qc_in.get("cnr")
        rows.append(row)
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c != "outliers"])
    return flag_outliers(table), tiles


def flag_outliers(table: pd.DataFrame) -> pd.DataFrame:
    """Add ``outliers`` (flagged metric names) and boolean ``<metric>_outlier`` columns.

    Flags are computed within each method (cubic and BiDA differ by design).
    """
    table = table.copy()
    for metric in FLAGGED:
        table[metric] = pd.to_numeric(table.get(metric), errors="coerce")
        flags = np.zeros(len(table), dtype=bool)
        for _, index in table.groupby("method", dropna=False).groups.items():
            positions = table.index.get_indexer(index)
            flags[positions] = metrics.robust_outliers(table[metric].to_numpy()[positions])
        table[f"{metric}_outlier"] = flags
    table["outliers"] = [
        ", ".join(m for m in FLAGGED if table.at[i, f"{m}_outlier"]) for i in table.index
    ]
    return table


def _html_rows(table: pd.DataFrame, output_dir: Path) -> list[dict]:
    numeric = {"factor", "thickness_mm", "runtime_s", "residual", *FLAGGED}
    shown = [c for c in COLUMNS if c not in ("derivative",)]
    rows = []
    for _, r in table.iterrows():
        report = output_dir / f"sub-{r['subject']}.html"
        cells = []
        for c in shown:
            value = r[c]
            text = fmt(None if isinstance(value, float) and np.isnan(value) else value)
            if c in numeric:
                cells.append(
                    {"text": text, "cls": "num outlier" if r.get(f"{c}_outlier") else "num"}
                )
            else:
                cells.append({"text": "" if text == "n/a" and c != "subject" else text, "cls": ""})
        rows.append({"cells": cells, "report": report.name if report.exists() else ""})
    return rows


def write_group_report(output_dir: str | Path) -> dict[str, Path]:
    """Write ``group_T2w.tsv``, ``group_report.html`` and ``figures/group_*.png``.

    Parameters
    ----------
    output_dir : path
        bida output folder; nothing outside it is read.

    Returns
    -------
    dict of str to Path
        ``"tsv"``, ``"html"``, and ``"distributions"``/``"mosaic"`` when there are runs.

    Raises
    ------
    BidaError
        Exit 66 when the folder has neither derivatives nor failed runs to report.
    """
    output_dir = Path(output_dir)
    status = read_status(output_dir)
    failures = [e for e in status if e.get("status") == "failed"]
    table, tiles = collect_runs(output_dir)
    if table.empty and not failures:
        skipped = sum(1 for e in status if str(e.get("status", "")).startswith("skipped"))
        raise BidaError(
            f"{output_dir}: nothing to report: no bida derivatives"
            + (f" ({skipped} runs were skipped)" if skipped else "")
            + "; run the participant level first",
            ExitCode.MISSING_INPUT,
        )
    paths: dict[str, Path] = {}
    tsv = output_dir / "group_T2w.tsv"
    from ..utils.io import atomic_path

    with atomic_path(tsv) as tmp:
        table[list(COLUMNS)].to_csv(tmp, sep="\t", index=False, na_rep="n/a", float_format="%.6g")
    paths["tsv"] = tsv
    fig_dir = output_dir / "figures"
    if not table.empty:
        names = [f"sub-{s}" + (f"_ses-{x}" if isinstance(x, str) and x else "")
                 for s, x in zip(table["subject"], table["session"], strict=True)]  # fmt: skip
        plotted = [m for m in FLAGGED if table[m].notna().any()]
        paths["distributions"] = render_distributions(
            {m: table[m].to_numpy(dtype=float) for m in plotted},
            {m: table[f"{m}_outlier"].to_numpy() for m in plotted},
            names,
            fig_dir / "group_desc-distributions_T2w.png",
            titles=METRIC_TITLES,
        )
    if tiles:
        paths["mosaic"] = render_contact_sheet(
            [t[0] for t in tiles],
            [t[1] for t in tiles],
            [t[2] for t in tiles],
            fig_dir / "group_desc-mosaic_T2w.png",
        )
    counts: dict[str, int] = {}
    for e in status:
        counts[str(e.get("status"))] = counts.get(str(e.get("status")), 0) + 1
    paths["html"] = render(
        "group.html.j2",
        output_dir / "group_report.html",
        n_runs=len(table),
        n_subjects=int(table["subject"].nunique()) if not table.empty else 0,
        columns=[c for c in COLUMNS if c != "derivative"],
        rows=_html_rows(table, output_dir),
        flagged=int((table["outliers"] != "").sum()) if not table.empty else 0,
        failures=failures,
        counts=sorted(counts.items()),
        tsv=tsv.name,
        distributions=relative(paths["distributions"], output_dir)
        if "distributions" in paths
        else "",
        mosaic=relative(paths["mosaic"], output_dir) if "mosaic" in paths else "",
        titles=METRIC_TITLES,
    )
    LOGGER.info("group report: %s (%d runs, %d failed)", paths["html"], len(table), len(failures))
    return paths
