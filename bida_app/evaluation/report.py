"""Figures and the HTML summary of ``bida evaluate``.

* ``figures/scores.png``: box plots of PSNR, SSIM and cDSC per method and scale (the paper's
  Fig. 3/4 layout), every volume drawn as a point over its box;
* ``figures/slices_<volume>.png``: one slice through the thick-slice direction of a
  representative volume (median PSNR of the first method), HR, LR and every method at every
  scale, with the skull-strip mask outlined in red;
* ``summary.html``: medians per method and scale, the Wilcoxon tests, notes and settings,
  the figures, links to the tables; relative paths only, no network.
"""

from __future__ import annotations

import logging
import math
import os
from functools import partial
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd

from ..reports.html import fmt, render
from ..reports.plotting import save_figure

LOGGER = logging.getLogger(__name__)

METRIC_TITLES = {
    "psnr": "PSNR (dB)",
    "ssim": "SSIM",
    "cdsc": "cDSC",
    "residual": "residual",
    "seconds": "seconds",
}
#: Colours of the methods in every figure.
COLORS = {
    "cubic": "#7f8c8d",
    "bida": "#2b6cb0",
    "bida-self": "#805ad5",
    "bida-finetune": "#3182ce",
    "eclare": "#d69e2e",
}
WORLD_AXES = {"LR": 0, "AP": 1, "SI": 2}


def _method_order(results: pd.DataFrame) -> list[str]:
    from .settings import METHODS

    present = list(dict.fromkeys(results["method"]))
    return [m for m in METHODS if m in present] + [m for m in present if m not in METHODS]


# ----------------------------------------------------------------------------- box plots


def plot_scores(
    results: pd.DataFrame,
    path: str | os.PathLike[str],
    metrics: tuple[str, ...] = ("psnr", "ssim", "cdsc"),
) -> Path | None:
    """Box plots of each metric per method (colour) and scale (group); None if no scores.

    Non-finite values (PSNR of identical volumes) are left out of the boxes and counted in
    the panel's note.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    metrics = tuple(
        m for m in metrics if m in results and np.isfinite(results[m].astype(float)).any()
    )
    if not metrics:
        return None
    methods = _method_order(results)
    scales = sorted(results["scale"].astype(float).unique())
    width = 0.8 / max(1, len(methods))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(3.2 * len(metrics) + 0.6, 3.4), squeeze=False
    )
    rng = np.random.default_rng(0)
    for ax, metric in zip(axes[0], metrics, strict=True):
        dropped = 0
        for i, scale in enumerate(scales):
            for j, method in enumerate(methods):
                sel = (results["scale"].astype(float) == scale) & (results["method"] == method)
                values = results.loc[sel, metric].astype(float).to_numpy()
                finite = values[np.isfinite(values)]
                dropped += int(np.isinf(values).sum())
                if finite.size == 0:
                    continue
                x = i + (j - (len(methods) - 1) / 2) * width
                color = COLORS.get(method, f"C{j}")
                ax.boxplot(
                    finite,
                    positions=[x],
                    widths=width * 0.8,
                    patch_artist=True,
                    showfliers=False,
                    boxprops={"facecolor": color, "alpha": 0.35, "edgecolor": color},
                    medianprops={"color": color, "linewidth": 2},
                    whiskerprops={"color": color},
                    capprops={"color": color},
                )
                jitter = rng.uniform(-width * 0.2, width * 0.2, finite.size)
                ax.scatter(x + jitter, finite, s=10, color=color, zorder=3, linewidths=0)
        ax.set_xticks(range(len(scales)), [f"{s:g}×" for s in scales])
        ax.set_xlim(-0.6, len(scales) - 0.4)
        ax.set_title(METRIC_TITLES.get(metric, metric), fontsize=11)
        ax.grid(axis="y", alpha=0.3)
        if dropped:
            ax.text(
                0.02,
                0.02,
                f"{dropped} infinite value(s) not drawn",
                transform=ax.transAxes,
                fontsize=7,
                color="#555",
            )
    handles = [
        plt.Line2D([], [], color=COLORS.get(m, f"C{j}"), marker="s", linestyle="", label=m)
        for j, m in enumerate(methods)
    ]
    fig.legend(
        handles=handles,
        loc="upper center",
        ncol=len(methods),
        frameon=False,
        bbox_to_anchor=(0.5, 1.0),
    )
    fig.tight_layout(rect=(0, 0, 1, 0.92))
    return _save(fig, Path(path))


def _save(fig: Any, path: Path, dpi: int = 110) -> Path:
    import matplotlib.pyplot as plt

    save_figure(fig, path, dpi=dpi, facecolor="white")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- slice panel


def representative_volume(results: pd.DataFrame) -> str | None:
    """The volume with the median PSNR of the first method at the smallest scale.

    Examples
    --------
    >>> df = pd.DataFrame({"volume": list("abc"), "scale": [2.5] * 3,
    ...                    "method": ["cubic"] * 3, "psnr": [30.0, 20.0, 25.0]})
    >>> representative_volume(df)
    'c'
    """
    if results.empty:
        return None
    method = _method_order(results)[0]
    scale = results["scale"].astype(float).min()
    sel = results[(results["method"] == method) & (results["scale"].astype(float) == scale)]
    sel = sel.assign(p=sel["psnr"].astype(float).replace(np.inf, np.finfo(float).max))
    sel = sel.sort_values("p", kind="stable")
    return str(sel["volume"].iloc[(len(sel) - 1) // 2])


def _canonical(data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """RAS voxel order and voxel sizes."""
    ornt = nib.orientations.io_orientation(affine)
    out = nib.orientations.apply_orientation(data, ornt)
    aff = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return out, np.sqrt((aff[:3, :3] ** 2).sum(0))


def _load(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    if not path.is_file():
        return None
    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine


def _cut(data: np.ndarray | None, affine: np.ndarray, index: int, axis: int) -> np.ndarray | None:
    """Slice ``index`` along RAS ``axis`` of a volume stored with ``affine``."""
    if data is None:
        return None
    return np.take(_canonical(data, affine)[0], index, axis=axis)


def _lr_on_grid(lr_path: Path, hr_affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray | None:
    """Thick slices shown on the HR grid (nearest neighbour: every slice as a slab)."""
    from ..preprocess.resample import resample_to_grid

    loaded = _load(lr_path)
    if loaded is None:
        return None
    data, affine = loaded
    return resample_to_grid(data, affine, hr_affine, shape, order=0)


def plot_slices(
    out_dir: str | os.PathLike[str],
    results: pd.DataFrame,
    volume: str,
    path: str | os.PathLike[str],
    axis: str = "AP",
) -> Path | None:
    """Panel of one slice through the thick-slice axis: rows = scales, columns = HR, LR,
    methods; skull-strip masks outlined in red, PSNR/cDSC under each method."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    rows = results[results["volume"] == volume]
    if rows.empty or "hr_file" not in rows:
        return None
    methods = _method_order(rows)
    scales = sorted(rows["scale"].astype(float).unique())
    through = WORLD_AXES.get(axis, 1)
    cut = 0 if through != 0 else 1  # sagittal (or coronal for L-R slices)
    ncol = 2 + len(methods)
    tiles: list[list[tuple[str, np.ndarray | None, np.ndarray | None, str]]] = []
    zooms = None
    index = None
    for scale in scales:
        at = rows[rows["scale"].astype(float) == scale]
        hr_rel = str(at["hr_file"].iloc[0])
        hr_loaded = _load(out_dir / hr_rel)
        if hr_loaded is None:
            continue
        hr, hr_aff = hr_loaded
        mask_path = (out_dir / hr_rel).with_name(Path(hr_rel).name.replace("hr_", "hr_mask_"))
        hr_mask = _load(mask_path)
        ras, zooms = _canonical(hr, hr_aff)
        if index is None:  # the mask's centre (the midline for a sagittal cut)
            m = _canonical(hr_mask[0], hr_aff)[0] if hr_mask else ras > np.percentile(ras, 60)
            prof = m.sum(axis=tuple(a for a in range(3) if a != cut)).astype(float)
            centre = np.average(np.arange(len(prof)), weights=prof) if prof.any() else None
            index = int(round(centre)) if centre is not None else ras.shape[cut] // 2

        cut_ = partial(_cut, affine=hr_aff, index=index, axis=cut)

        sc_dir = (out_dir / str(at["sr_file"].iloc[0])).parent
        row = [
            ("HR", cut_(hr), cut_(hr_mask[0]) if hr_mask else None, ""),
            (
                f"LR {scale:g}×",
                cut_(_lr_on_grid(sc_dir / "lr.nii.gz", hr_aff, hr.shape)),
                None,
                "",
            ),
        ]
        for method in methods:
            r = at[at["method"] == method]
            if r.empty:
                row.append((method, None, None, "not run"))
                continue
            sr = _load(out_dir / str(r["sr_file"].iloc[0]))
            mask = _load(out_dir / str(r["sr_file"].iloc[0]).replace(".nii.gz", "_mask.nii.gz"))
            text = f"PSNR {fmt(float(r['psnr'].iloc[0]), '.2f')}"
            if np.isfinite(float(r["cdsc"].iloc[0])):
                text += f"  cDSC {fmt(float(r['cdsc'].iloc[0]), '.3f')}"
            row.append(
                (method, cut_(sr[0]) if sr else None, cut_(mask[0]) if mask else None, text)
            )
        tiles.append(row)
    if not tiles or zooms is None:
        return None
    keep = [a for a in range(3) if a != cut]
    aspect = float(zooms[keep[1]] / zooms[keep[0]])
    first = tiles[0][0][1]
    h, w = first.shape[1] * aspect, first.shape[0]
    tile_w = 2.2
    fig, axes = plt.subplots(
        len(tiles),
        ncol,
        figsize=(tile_w * ncol, tile_w * h / w * len(tiles) + 0.5),
        squeeze=False,
        facecolor="black",
    )
    for r, row in enumerate(tiles):
        ref = row[0][1]
        lo, hi = np.percentile(ref, [0.5, 99.5]) if ref is not None else (0, 1)
        for c, (title, img, mask, text) in enumerate(row):
            ax = axes[r, c]
            ax.set_facecolor("black")
            ax.set_xticks([])
            ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if img is None:
                ax.text(
                    0.5, 0.5, text or "missing", color="w", ha="center", transform=ax.transAxes
                )
                continue
            ax.imshow(
                img.T,
                origin="lower",
                cmap="gray",
                vmin=lo,
                vmax=hi,
                aspect=aspect,
                interpolation="nearest",
            )
            if mask is not None and mask.any():
                ax.contour(mask.T > 0, levels=[0.5], colors="red", linewidths=0.8)
            ax.set_title(title if r == 0 or c == 1 else "", color="w", fontsize=9, pad=3)
            if text:
                ax.text(
                    0.5,
                    -0.02,
                    text,
                    color="w",
                    fontsize=7,
                    ha="center",
                    va="top",
                    transform=ax.transAxes,
                )
    plane = "sagittal" if cut == 0 else "coronal"
    fig.suptitle(f"{volume}: {plane} slice {index}; red = skull-strip mask", color="w", fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.96), h_pad=1.2)
    return _save(fig, Path(path), dpi=100)


# ----------------------------------------------------------------------------- HTML


SUMMARY_METRICS = (
    "psnr",
    "psnr_interior",
    "ssim",
    "ssim_interior",
    "cdsc",
    "residual",
    "seconds",
)


def summary_table(results: pd.DataFrame) -> list[dict[str, Any]]:
    """Median of each metric per scale and method, and the number of volumes."""
    rows = []
    if results.empty:
        return rows
    for (scale, method), group in results.groupby(["scale", "method"], sort=True):
        row = {"scale": float(scale), "method": method, "n": len(group)}
        for metric in SUMMARY_METRICS:
            if metric not in group.columns:
                row[metric] = math.nan
                continue
            values = group[metric].astype(float).dropna().to_numpy()
            row[metric] = float(np.median(values)) if values.size else math.nan
        held = group["held_out"] if "held_out" in group.columns else pd.Series(dtype=object)
        row["not_held_out"] = int((held.astype(str).str.lower() == "false").sum())
        rows.append(row)
    order = {m: i for i, m in enumerate(_method_order(results))}
    return sorted(rows, key=lambda r: (r["scale"], order.get(r["method"], 99)))


def render_summary(path: Path, **context: Any) -> Path:
    """Render ``evaluation.html.j2`` (the reports' templates folder) into ``path`` atomically."""
    return render("evaluation.html.j2", path, **context)


def write_report(
    out_dir: str | os.PathLike[str],
    results: pd.DataFrame,
    stats: pd.DataFrame,
    notes: list[str],
    settings: Any,
    baseline: pd.DataFrame | None = None,
) -> Path:
    """Figures under ``OUT_DIR/figures`` and ``OUT_DIR/summary.html``; returns the HTML."""
    from dataclasses import asdict

    out_dir = Path(out_dir)
    figures: list[dict[str, str]] = []
    scores = plot_scores(results, out_dir / "figures" / "scores.png")
    if scores is not None:
        figures.append(
            {
                "src": scores.relative_to(out_dir).as_posix(),
                "caption": "PSNR, SSIM and cDSC per method and scale (one point per volume).",
            }
        )
    volume = representative_volume(results)
    if volume is not None:
        try:
            panel = plot_slices(
                out_dir,
                results,
                volume,
                out_dir / "figures" / f"slices_{volume}.png",
                settings.axis,
            )
        except (OSError, ValueError) as exc:  # a deleted volume file must not stop the report
            LOGGER.warning("slice panel not drawn: %s", exc)
            panel = None
        if panel is not None:
            figures.append(
                {
                    "src": panel.relative_to(out_dir).as_posix(),
                    "caption": f"Representative volume {volume} (median PSNR): HR, thick "
                    "slices and each method; red outline = skull-strip mask.",
                }
            )
    stats_rows = stats.to_dict("records") if not stats.empty else []
    return render_summary(
        out_dir / "summary.html",
        summary=summary_table(results),
        stats=stats_rows,
        baseline=[] if baseline is None or baseline.empty else baseline.to_dict("records"),
        notes=notes,
        settings=asdict(settings),
        figures=figures,
        n_volumes=int(results["volume"].nunique()) if not results.empty else 0,
        n_rows=len(results),
        alpha=0.001,
    )
