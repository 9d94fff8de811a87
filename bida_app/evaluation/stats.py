"""Paired significance tests between SR methods, as in the paper.

The paper compares methods with "a two-sided Wilcoxon signed rank sum test ... with a
significance level of 0.001" at each SR scale. :func:`wilcoxon_pairs` runs that test for every
pair of methods, every scale and every metric of a tidy results table (one row per
volume × scale × method), pairing the two methods' scores by volume.
"""

from __future__ import annotations

import itertools
import logging
import math
import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

LOGGER = logging.getLogger(__name__)

ALPHA = 0.001
"""Significance level used in the paper."""
METRICS: tuple[str, ...] = ("psnr", "psnr_interior", "ssim", "ssim_interior", "cdsc")
COLUMNS: tuple[str, ...] = (
    "scale",
    "metric",
    "method_a",
    "method_b",
    "n",
    "median_a",
    "median_b",
    "median_diff",
    "statistic",
    "p_value",
    "min_p",
    "significant",
    "note",
)


def min_attainable_p(n: int) -> float:
    """Smallest two-sided p-value the exact signed-rank test can give with ``n`` pairs.

    Examples
    --------
    >>> min_attainable_p(5), min_attainable_p(11) < ALPHA < min_attainable_p(10)
    (0.0625, True)
    """
    return min(1.0, 2.0 / 2.0**n) if n > 0 else 1.0


def _test(diff: np.ndarray, alpha: float) -> tuple[float, float, str]:
    """Statistic, p-value and a note for one vector of paired differences."""
    nonzero = diff[diff != 0]
    if diff.size < 2:
        return math.nan, math.nan, f"too few pairs (n={diff.size})"
    if nonzero.size == 0:
        return math.nan, 1.0, "all differences are zero"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", (RuntimeWarning, UserWarning))
        res = stats.wilcoxon(diff, zero_method="wilcox", alternative="two-sided")
    note = ""
    if min_attainable_p(nonzero.size) > alpha:
        note = f"n={nonzero.size} non-zero pairs cannot reach alpha={alpha:g}"
    return float(res.statistic), float(res.pvalue), note


def _paired_diffs(results: pd.DataFrame, metrics: Sequence[str], pairs: list[tuple[str, str]]):
    """``(metric, scale, (a, b), paired scores, a − b)`` for every metric present, scale and
    pair of methods both in the table."""
    for metric in (m for m in metrics if m in results.columns):
        for scale, wide in _per_scale(results, metric):
            for a, b in pairs:
                pair = _paired(wide, a, b)
                if pair is not None:
                    yield metric, scale, (a, b), pair, (pair[a] - pair[b]).to_numpy()


def _per_scale(results: pd.DataFrame, metric: str):
    """``(scale, volume × method table of metric)`` for each scale, in order."""
    for scale in sorted(results["scale"].dropna().unique()):
        at = results[results["scale"] == scale]
        yield (
            scale,
            at.pivot_table(index="volume", columns="method", values=metric, aggfunc="first"),
        )


def _paired(wide: pd.DataFrame, a: str, b: str) -> pd.DataFrame | None:
    """Volumes with finite scores for both methods (None when one method is absent)."""
    if a not in wide.columns or b not in wide.columns:
        return None
    return wide[[a, b]].astype(float).replace([np.inf, -np.inf], np.nan).dropna()


def wilcoxon_pairs(
    results: pd.DataFrame,
    metrics: Sequence[str] = METRICS,
    methods: Sequence[str] | None = None,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Two-sided Wilcoxon signed-rank tests between each pair of methods at each scale.

    Parameters
    ----------
    results : DataFrame
        Tidy table with columns ``volume``, ``scale``, ``method`` and the ``metrics``.
    metrics : sequence of str
        Score columns to test (missing columns are skipped with a log message).
    methods : sequence of str, optional
        Methods to compare, in this order (default: order of first appearance).
    alpha : float
        Significance level (paper: 0.001).

    Returns
    -------
    DataFrame
        One row per scale × metric × method pair with columns :data:`COLUMNS`:
        ``n`` paired volumes with finite scores in both, medians of each method and of the
        differences ``a − b``, the statistic and p-value (NaN when it cannot be computed,
        1.0 when all differences are zero), the smallest attainable p for that n,
        ``significant`` (``p < alpha``) and a note explaining any degenerate case.

    Examples
    --------
    >>> rows = [{"volume": f"v{i}", "scale": 2.5, "method": m, "psnr": base + i * 0.1}
    ...         for i in range(12) for m, base in (("cubic", 30.0), ("bida", 31.0))]
    >>> out = wilcoxon_pairs(pd.DataFrame(rows), metrics=["psnr"])
    >>> out[["method_a", "method_b", "n", "median_diff", "significant"]].to_dict("records")
    [{'method_a': 'cubic', 'method_b': 'bida', 'n': 12, 'median_diff': -1.0, 'significant': True}]
    """
    missing = {"volume", "scale", "method"} - set(results.columns)
    if missing:
        raise ValueError(f"results table lacks columns {sorted(missing)}")
    methods = list(methods) if methods else list(dict.fromkeys(results["method"]))
    rows = []
    for metric in metrics:
        if metric not in results.columns:
            LOGGER.info("no %s column; skipping its tests", metric)
    for metric, scale, (a, b), pair, diff in _paired_diffs(
        results, metrics, list(itertools.combinations(methods, 2))
    ):
        statistic, p, note = _test(diff, alpha)
        rows.append(
            {
                "scale": scale,
                "metric": metric,
                "method_a": a,
                "method_b": b,
                "n": int(len(pair)),
                "median_a": float(pair[a].median()) if len(pair) else math.nan,
                "median_b": float(pair[b].median()) if len(pair) else math.nan,
                "median_diff": float(np.median(diff)) if diff.size else math.nan,
                "statistic": statistic,
                "p_value": p,
                "min_p": min_attainable_p(int(np.count_nonzero(diff))),
                "significant": bool(p < alpha) if not math.isnan(p) else False,
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=list(COLUMNS))


#: Columns of :func:`against_baseline`.
BASELINE_COLUMNS: tuple[str, ...] = (
    "scale",
    "metric",
    "method",
    "baseline",
    "n",
    "mean_diff",
    "median_diff",
    "wins",
    "p_value",
    "min_p",
    "significant",
    "note",
)


def against_baseline(
    results: pd.DataFrame,
    baseline: str,
    metrics: Sequence[str] = METRICS,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """Every method minus the baseline, paired by volume, per scale and metric.

    Parameters
    ----------
    results : DataFrame
        Tidy table (``volume``, ``scale``, ``method`` and the ``metrics``).
    baseline : str
        The reference method (bida's data-consistent cubic, ``dccubic``).
    metrics : sequence of str
        Score columns (missing ones are skipped).
    alpha : float
        Significance level of the two-sided Wilcoxon signed-rank test.

    Returns
    -------
    DataFrame
        Columns :data:`BASELINE_COLUMNS`: paired ``n``, mean and median of ``method −
        baseline``, ``wins`` (volumes where the method scores higher), the test's p-value, the
        smallest p attainable with that many pairs, ``significant`` and a note. Empty when the
        baseline is not in the table.

    Examples
    --------
    >>> rows = [{"volume": f"v{i}", "scale": 5.0, "method": m, "psnr": base + i}
    ...         for i in range(3) for m, base in (("dccubic", 30.0), ("bida", 30.5))]
    >>> out = against_baseline(pd.DataFrame(rows), "dccubic", ["psnr"])
    >>> out[["method", "n", "mean_diff", "wins"]].to_dict("records")
    [{'method': 'bida', 'n': 3, 'mean_diff': 0.5, 'wins': 3}]
    """
    rows = []
    if baseline not in set(results["method"]):
        return pd.DataFrame(rows, columns=list(BASELINE_COLUMNS))
    methods = [m for m in dict.fromkeys(results["method"]) if m != baseline]
    for metric, scale, (method, _), _, diff in _paired_diffs(
        results, metrics, [(m, baseline) for m in methods]
    ):
        statistic, p, note = _test(diff, alpha)
        rows.append(
            {
                "scale": scale,
                "metric": metric,
                "method": method,
                "baseline": baseline,
                "n": int(diff.size),
                "mean_diff": float(diff.mean()) if diff.size else math.nan,
                "median_diff": float(np.median(diff)) if diff.size else math.nan,
                "wins": int((diff > 0).sum()),
                "p_value": p,
                "min_p": min_attainable_p(int(np.count_nonzero(diff))),
                "significant": bool(p < alpha) if not math.isnan(p) else False,
                "note": note,
            }
        )
    return pd.DataFrame(rows, columns=list(BASELINE_COLUMNS))


def summarize(results: pd.DataFrame, metrics: Sequence[str] = METRICS) -> pd.DataFrame:
    """Median, mean, standard deviation and count of each metric per scale and method.

    Non-finite scores (e.g. an infinite PSNR) are left out of the mean and SD but counted
    in ``n``.

    Examples
    --------
    >>> df = pd.DataFrame({"volume": ["a", "b"], "scale": [5.0, 5.0],
    ...                    "method": ["cubic", "cubic"], "psnr": [30.0, 32.0]})
    >>> summarize(df, ["psnr"])[["method", "metric", "median", "n"]].to_dict("records")
    [{'method': 'cubic', 'metric': 'psnr', 'median': 31.0, 'n': 2}]
    """
    rows = []
    present = [m for m in metrics if m in results.columns]
    for (scale, method), group in results.groupby(["scale", "method"], sort=True):
        for metric in present:
            values = group[metric].astype(float).to_numpy()
            finite = values[np.isfinite(values)]
            rows.append(
                {
                    "scale": scale,
                    "method": method,
                    "metric": metric,
                    "median": float(np.median(values)) if values.size else math.nan,
                    "mean": float(finite.mean()) if finite.size else math.nan,
                    "sd": float(finite.std(ddof=1)) if finite.size > 1 else math.nan,
                    "n": int(values.size),
                }
            )
    return pd.DataFrame(rows, columns=["scale", "method", "metric", "median", "mean", "sd", "n"])
