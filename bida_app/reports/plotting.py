"""Matplotlib primitives of the QC reports: image mosaics, flicker SVG, distribution plots.

Figures are made with :class:`matplotlib.figure.Figure` (no pyplot state, Agg rendering) and
written atomically. ``MPLCONFIGDIR`` is pointed at a temporary folder when it is unset, so
read-only containers and homes work.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..utils.io import atomic_path

#: Rendering resolution of every figure.
DPI = 100
#: Width (inches) of an image mosaic.
MOSAIC_WIDTH_IN = 9.0


def _figure(width: float, height: float, facecolor: str = "black"):
    """A new Agg-backed matplotlib figure (configures matplotlib on first use)."""
    if not os.environ.get("MPLCONFIGDIR"):
        os.environ["MPLCONFIGDIR"] = tempfile.mkdtemp(prefix="bida-mpl-")
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, facecolor=facecolor)


def save_figure(fig, path: Path, *, dpi: int = DPI, facecolor: str = "black") -> Path:
    """Write a matplotlib figure atomically (format from the suffix); the one figure saver of
    every report."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format=path.suffix.lstrip("."), dpi=dpi, facecolor=facecolor)
    return path


def grid_columns(n: int, tile_ratio: float, target_ratio: float = 2.2) -> int:
    """Number of columns (a divisor of ``n``) that brings a mosaic closest to ``target_ratio``.

    ``tile_ratio`` is a tile's height over its width (physical units).

    Examples
    --------
    >>> grid_columns(6, 0.5), grid_columns(6, 1.5), grid_columns(1, 1.0)
    (3, 6, 1)
    """
    best, best_cost = 1, np.inf
    for cols in (c for c in range(1, n + 1) if n % c == 0):
        rows = -(-n // cols)
        cost = abs(np.log(cols / (rows * tile_ratio) / target_ratio))
        if cost < best_cost - 1e-9:
            best, best_cost = cols, cost
    return best


def render_mosaic(
    tiles: Sequence[np.ndarray],
    path: str | os.PathLike[str],
    *,
    aspect: float = 1.0,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    labels: Sequence[str] = (),
    orientation: tuple[str, str, str, str] | None = None,
    colorbar_label: str | None = None,
    ncols: int | None = None,
) -> Path:
    """Write a mosaic of equally sized 2D tiles (``origin="lower"``) as PNG.

    Two calls with the same tile shapes, ``aspect``, ``ncols`` and no colorbar produce images
    of identical pixel size with tiles at identical places (for before/after comparisons).

    Parameters
    ----------
    tiles : sequence of ndarray
        2D arrays of the same shape (rows = vertical axis); NaN is drawn black.
    path : path
        Output ``.png`` (or ``.svg``).
    aspect : float
        Height over width of one pixel.
    cmap, vmin, vmax : str, float
        Colour map and window.
    labels : sequence of str
        Small caption in each tile (e.g. the slice position).
    orientation : tuple of str, optional
        Letters at the (left, right, bottom, top) edges of the first tile.
    colorbar_label : str, optional
        Add a colour bar with this label on the right.
    ncols : int, optional
        Columns of the grid (default: :func:`grid_columns`).
    """
    tiles = [np.asarray(t, dtype=np.float32) for t in tiles]
    rows_px, cols_px = tiles[0].shape
    tile_ratio = rows_px * aspect / cols_px
    ncols = ncols or grid_columns(len(tiles), tile_ratio)
    nrows = -(-len(tiles) // ncols)
    bar_in = 1.1 if colorbar_label else 0.0
    tile_w = MOSAIC_WIDTH_IN / ncols
    tile_h = tile_w * tile_ratio
    width, height = MOSAIC_WIDTH_IN + bar_in, tile_h * nrows
    fig = _figure(width, height)
    import matplotlib as mpl

    colours = mpl.colormaps[cmap].with_extremes(bad="black")
    image = None
    for i, tile in enumerate(tiles):
        row, col = divmod(i, ncols)
        ax = fig.add_axes(
            (
                col * tile_w / width,
                1 - (row + 1) * tile_h / height,
                tile_w / width,
                tile_h / height,
            )
        )
        image = ax.imshow(
            np.ma.masked_invalid(tile),
            cmap=colours,
            vmin=vmin,
            vmax=vmax,
            origin="lower",
            interpolation="nearest",
            aspect="auto",
        )
        ax.set_axis_off()
        if i < len(labels):
            ax.text(0.02, 0.97, labels[i], color="w", fontsize=8, ha="left", va="top",
                    transform=ax.transAxes)  # fmt: skip
        if i == 0 and orientation:
            for (x, y), letter in zip(
                ((0.01, 0.5), (0.99, 0.5), (0.5, 0.01), (0.5, 0.99)), orientation, strict=True
            ):
                ax.text(x, y, letter, color="#ffd54f", fontsize=9, fontweight="bold",
                        ha="left" if x < 0.1 else "right" if x > 0.9 else "center",
                        va="bottom" if y < 0.1 else "top" if y > 0.9 else "center",
                        transform=ax.transAxes)  # fmt: skip
    if colorbar_label and image is not None:
        cax = fig.add_axes((1 - 0.75 * bar_in / width, 0.1, 0.15 * bar_in / width, 0.8))
        bar = fig.colorbar(image, cax=cax)
        bar.set_label(colorbar_label, color="w", fontsize=8)
        bar.ax.tick_params(colors="w", labelsize=7)
    return save_figure(fig, Path(path))


def png_size(path: str | os.PathLike[str]) -> tuple[int, int]:
    """(width, height) in pixels of a PNG file, read from its header.

    Examples
    --------
    >>> import struct, zlib, tempfile
    >>> head = b"\\x89PNG\\r\\n\\x1a\\n" + struct.pack(">I", 13) + b"IHDR"
    >>> p = Path(tempfile.mkdtemp()) / "x.png"
    >>> _ = p.write_bytes(head + struct.pack(">II", 640, 320) + bytes(5))
    >>> png_size(p)
    (640, 320)
    """
    with open(path, "rb") as fh:
        header = fh.read(24)
    if header[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG file")
    return int.from_bytes(header[16:20], "big"), int.from_bytes(header[20:24], "big")


def write_flicker_svg(
    before: str | os.PathLike[str],
    after: str | os.PathLike[str],
    path: str | os.PathLike[str],
    *,
    period_s: float = 1.6,
) -> Path:
    """An SVG that alternates two same-size PNGs (referenced by relative path), no script.

    Opened directly in a browser it flickers between ``before`` and ``after``.
    """
    path = Path(path)
    width, height = png_size(before)
    rel_before = os.path.relpath(before, path.parent)
    rel_after = os.path.relpath(after, path.parent)
    svg = f"""<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"
     width="{width}" height="{height}" viewBox="0 0 {width} {height}">
  <style>
    @keyframes bida-flicker {{ 0% {{ opacity: 0; }} 50% {{ opacity: 1; }} }}
    .after {{ animation: bida-flicker {period_s}s step-end infinite; }}
  </style>
  <image href="{rel_before}" xlink:href="{rel_before}" width="{width}" height="{height}"/>
  <image class="after" href="{rel_after}" xlink:href="{rel_after}"
         width="{width}" height="{height}"/>
</svg>
"""
    with atomic_path(path) as tmp:
        tmp.write_text(svg)
    return path


def render_distributions(
    table: dict[str, np.ndarray],
    flags: dict[str, np.ndarray],
    names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    titles: dict[str, str] | None = None,
) -> Path:
    """Strip plots (box + points) of several metrics; flagged points drawn red and named.

    Parameters
    ----------
    table : dict of str to ndarray
        Metric name to values (NaN allowed), all of the same length.
    flags : dict of str to ndarray of bool
        Outlier flags per metric.
    names : sequence of str
        Point labels (e.g. run names) used to annotate flagged points.
    path : path
        Output PNG.
    titles : dict, optional
        Display titles of the metrics.
    """
    from matplotlib.ticker import MaxNLocator

    metrics = list(table)
    ncols = min(len(metrics), 4) or 1
    nrows = -(-len(metrics) // ncols) or 1
    fig = _figure(3.0 * ncols, 2.6 * nrows, facecolor="white")
    rng = np.random.default_rng(0)
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        values = np.asarray(table[metric], dtype=np.float64)
        finite = np.isfinite(values)
        if finite.any():
            ax.boxplot(values[finite], vert=False, widths=0.5, showfliers=False)
            jitter = 1 + rng.uniform(-0.15, 0.15, values.size)
            bad = np.asarray(flags.get(metric, np.zeros(values.size, bool)))
            ok = finite & ~bad
            ax.scatter(values[ok], jitter[ok], s=14, color="#1f77b4", zorder=3)
            ax.scatter(values[bad], jitter[bad], s=22, color="#d62728", zorder=4)
            for j in np.flatnonzero(bad):
                ax.annotate(names[j], (values[j], jitter[j]), fontsize=6, color="#d62728",
                            xytext=(2, 4), textcoords="offset points")  # fmt: skip
        else:
            ax.text(0.5, 0.5, "no values", ha="center", va="center", transform=ax.transAxes)
        ax.set_yticks([])
        ax.xaxis.set_major_locator(MaxNLocator(4))
        ax.set_title((titles or {}).get(metric, metric), fontsize=9)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.05, right=0.98, top=0.9, bottom=0.12, wspace=0.25, hspace=0.6)
    return save_figure(fig, Path(path), facecolor="white")


def render_contact_sheet(
    tiles: Sequence[np.ndarray],
    aspects: Sequence[float],
    labels: Sequence[str],
    path: str | os.PathLike[str],
    *,
    ncols: int = 5,
    cell_in: float = 2.4,
) -> Path:
    """One small image per run in a grid (tiles may differ in shape), each captioned.

    Each tile is windowed to its own 1st-99.5th percentiles.
    """
    ncols = max(1, min(ncols, len(tiles)))
    nrows = max(1, -(-len(tiles) // ncols))
    caption = 0.35
    fig = _figure(cell_in * ncols, (cell_in * 0.75 + caption) * nrows)
    import matplotlib as mpl

    colours = mpl.colormaps["gray"].with_extremes(bad="black")
    for i, (tile, aspect) in enumerate(zip(tiles, aspects, strict=True)):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        finite = tile[np.isfinite(tile)]
        lo, hi = np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0)
        ax.imshow(np.ma.masked_invalid(tile), cmap=colours, vmin=lo, vmax=hi, origin="lower",
                  interpolation="nearest", aspect=aspect)  # fmt: skip
        ax.set_axis_off()
        ax.set_title(labels[i] if i < len(labels) else "", color="w", fontsize=6.5, pad=2)
    fig.subplots_adjust(left=0.01, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.2)
    return save_figure(fig, Path(path))
