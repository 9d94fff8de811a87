"""Time N4 and standardization per volume (goal: ≤ 15 s together for a 144×144×64 volume).

Volumes:

* ``phantom``: a synthetic 144×144×64 head at 0.2 mm (two-compartment ellipsoid, smooth
  multiplicative bias, Rician noise) — the model-grid class of volume.
* ``rat``: the real rat scan ``../shared/data/rat_coronal-1mm_T2w.nii.gz`` (256×24×256 at
  0.1125×1.0×0.1125 mm) when present: N4 on the native grid, then in-plane resampling to
  0.2 mm and standardization to the grid (axis 1 left for the SR step, axis 2 brain-cropped).

N4 is timed at the default shrink factor (4) and at 2, side by side; the table gives each
time's ratio to the default. On the phantom it also reports the coefficient of variation in
its homogeneous compartment before and after N4. The ITK thread count is fixed per process
(``--threads``, default 2). Timings on a shared machine vary by tens of percent.

Run: ``python benchmarks/preprocess.py [--repeats N] [--threads N] [--no-rat]``
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from bida_app.preprocess import (
    destandardize,
    n4_correct,
    resample_inplane,
    standardize,
    through_plane_axis,
    to_ras,
)

RAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "rat_coronal-1mm_T2w.nii.gz"
GOAL_S = 15.0


def phantom(shape=(144, 144, 64), zoom=0.2, seed=0) -> tuple[nib.Nifti1Image, np.ndarray]:
    """Synthetic biased head and the mask of its homogeneous inner compartment."""
    rng = np.random.default_rng(seed)
    axes = [(np.arange(n) - (n - 1) / 2) * zoom for n in shape]
    x, y, z = np.meshgrid(*axes, indexing="ij")
    radii = [0.42 * n * zoom for n in shape]
    r2 = (x / radii[0]) ** 2 + (y / radii[1]) ** 2 + (z / radii[2]) ** 2
    clean = np.where(r2 <= 1.0, 100.0, 0.0)
    clean[r2 <= 0.3] = 60.0
    u, v, w = x / radii[0], y / radii[1], z / radii[2]
    bias = np.exp(0.45 * u - 0.25 * v**2 + 0.4 * w + 0.15 * u * w)
    noisy = np.hypot(clean * bias + rng.normal(0, 2.0, shape), rng.normal(0, 2.0, shape))
    affine = np.diag([zoom, zoom, zoom, 1.0])
    affine[:3, 3] = [-(n - 1) / 2 * zoom for n in shape]
    return nib.Nifti1Image(noisy.astype(np.float32), affine), r2 <= 0.25


def best(fn: Callable[[], Any], repeats: int) -> tuple[float, Any]:
    """Best wall time (s) over ``repeats`` runs and the last result."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-rat", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    rows: list[tuple[str, str, float, str]] = []
    # --- phantom on the model grid -------------------------------------------------------
    img, core = phantom()
    t_n4, res = best(lambda: n4_correct(img, n_threads=args.threads), args.repeats)
    t_n4_2, res2 = best(lambda: n4_correct(img, shrink_factor=2), args.repeats)
    data = res.corrected.get_fdata(dtype=np.float32)
    t_std, (std, params) = best(lambda: standardize(data), args.repeats)
    t_inv, _ = best(lambda: destandardize(std, params), args.repeats)
    before = cv(img.get_fdata()[core])
    rows += [
        (
            "phantom 144x144x64",
            "N4 (shrink 4, default)",
            t_n4,
            f"CV {before:.3f} -> {cv(res.corrected.get_fdata()[core]):.3f}",
        ),
        (
            "phantom 144x144x64",
            "N4 (shrink 2)",
            t_n4_2,
            f"x{t_n4_2 / t_n4:.2f} of default; CV -> {cv(res2.corrected.get_fdata()[core]):.3f}",
        ),
        ("phantom 144x144x64", "standardize", t_std, ""),
        ("phantom 144x144x64", "destandardize", t_inv, ""),
        (
            "phantom 144x144x64",
            "N4 + standardize",
            t_n4 + t_std,
            f"{(t_n4 + t_std) / GOAL_S:.2f} of the {GOAL_S:g} s goal",
        ),
    ]
    # --- the real rat scan ---------------------------------------------------------------
    if RAT.is_file() and not args.no_rat:
        raw = nib.load(RAT)
        t_ras, (ras, _) = best(lambda: to_ras(raw), args.repeats)
        t_rn4, rn4 = best(lambda: n4_correct(ras, name=RAT.name), args.repeats)
        axis = through_plane_axis(ras)
        t_res, res_img = best(lambda: resample_inplane(rn4.corrected, axis, 0.2), args.repeats)
        grid: list[int | None] = [144, 144, 64]
        grid[axis] = None
        arr = res_img.get_fdata(dtype=np.float32)
        t_rstd, (rstd, rparams) = best(
            lambda: standardize(arr, tuple(grid), crop="brain"), args.repeats
        )
        label = "rat 256x24x256"
        rows += [
            (label, "to_ras", t_ras, ""),
            (label, "N4 (shrink 4, default)", t_rn4, f"mesh {rn4.params['bspline_mesh']}"),
            (label, "resample in-plane 0.2 mm", t_res, f"-> {res_img.shape}"),
            (label, "standardize (brain crop)", t_rstd, f"-> {rstd.shape}, pads {rparams.pads}"),
            (
                label,
                "N4 + standardize",
                t_rn4 + t_rstd,
                f"{(t_rn4 + t_rstd) / GOAL_S:.2f} of the {GOAL_S:g} s goal",
            ),
        ]
    print(f"ITK threads: {res.params['itk_threads']}; best of {args.repeats} runs")
    print(f"{'volume':<20} {'step':<26} {'seconds':>8}  note")
    for volume, step, seconds, note in rows:
        print(f"{volume:<20} {step:<26} {seconds:8.2f}  {note}")


if __name__ == "__main__":
    main()
