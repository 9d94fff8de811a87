"""Paired Wilcoxon signed-rank tests between methods per scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from bida_app.evaluation.stats import (
    ALPHA,
    COLUMNS,
    min_attainable_p,
    summarize,
    wilcoxon_pairs,
)


def _table(n: int = 20, seed: int = 0) -> pd.DataFrame:
    """bida beats cubic clearly in PSNR; eclare and bida tie in cDSC up to noise."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        for scale, drop in ((2.5, 0.0), (5.0, 3.0)):
            base = 30.0 + rng.normal(0, 1) - drop
            cdsc = 0.9 + rng.normal(0, 0.01)
            scores = {
                "cubic": (base, 0.80, cdsc - 0.05),
                "bida": (base + 2.0 + rng.normal(0, 0.2), 0.85, cdsc + rng.normal(0, 0.01)),
                "eclare": (base + 2.5 + rng.normal(0, 0.2), 0.86, cdsc + rng.normal(0, 0.01)),
            }
            for method, (p, s, c) in scores.items():
                rows.append(
                    {
                        "volume": f"sub-{i:02d}",
                        "scale": scale,
                        "method": method,
                        "psnr": p,
                        "ssim": s,
                        "cdsc": c,
                    }
                )
    return pd.DataFrame(rows)


def test_pairs_scales_metrics_and_columns() -> None:
    out = wilcoxon_pairs(_table())
    assert list(out.columns) == list(COLUMNS)
    assert len(out) == 2 * 3 * 3  # scales × metrics × method pairs
    assert set(out["scale"]) == {2.5, 5.0}
    assert set(zip(out["method_a"], out["method_b"], strict=True)) == {
        ("cubic", "bida"),
        ("cubic", "eclare"),
        ("bida", "eclare"),
    }


def test_matches_scipy_and_detects_real_differences() -> None:
    table = _table()
    out = wilcoxon_pairs(table, metrics=["psnr", "cdsc"])
    row = out[
        (out.scale == 2.5)
        & (out.metric == "psnr")
        & (out.method_a == "cubic")
        & (out.method_b == "bida")
    ].iloc[0]
    wide = table[table.scale == 2.5].pivot(index="volume", columns="method", values="psnr")
    ref = stats.wilcoxon(wide["cubic"] - wide["bida"])
    assert row["p_value"] == pytest.approx(ref.pvalue)
    assert row["statistic"] == pytest.approx(ref.statistic)
    assert row["n"] == 20 and row["significant"] and row["median_diff"] < 0
    assert row["p_value"] < ALPHA
    tie = out[(out.metric == "cdsc") & (out.method_a == "bida") & (out.method_b == "eclare")]
    assert not tie["significant"].any()  # noise only: no significance at alpha = 0.001


def test_degenerate_cases_are_reported_not_raised() -> None:
    table = _table(n=6)
    table.loc[table.method == "eclare", "ssim"] = 0.85  # identical to bida
    out = wilcoxon_pairs(table, metrics=["ssim", "psnr"])
    same = out[(out.metric == "ssim") & (out.method_a == "bida") & (out.method_b == "eclare")]
    assert (same["p_value"] == 1.0).all() and same["note"].str.contains("zero").all()
    small = out[out.metric == "psnr"]
    assert small["note"].str.contains("cannot reach alpha").all()  # 2/2^6 > 0.001
    assert not small["significant"].any()
    one = wilcoxon_pairs(_table(n=1), metrics=["psnr"])
    assert one["p_value"].isna().all() and one["note"].str.contains("too few").all()
    assert not one["significant"].any()


def test_missing_and_infinite_scores_are_dropped_pairwise() -> None:
    table = _table(n=12)
    table.loc[(table.volume == "sub-00") & (table.method == "cubic"), "psnr"] = math.inf
    table.loc[(table.volume == "sub-01") & (table.method == "bida"), "psnr"] = np.nan
    table = table[~((table.volume == "sub-02") & (table.method == "eclare"))]
    out = wilcoxon_pairs(table, metrics=["psnr"])
    n = {(r.scale, r.method_a, r.method_b): r.n for r in out.itertuples()}
    assert n[(2.5, "cubic", "bida")] == 10
    assert n[(2.5, "cubic", "eclare")] == 10
    assert n[(2.5, "bida", "eclare")] == 10
    with pytest.raises(ValueError, match="lacks"):
        wilcoxon_pairs(table.drop(columns="volume"))


def test_min_attainable_p_matches_exact_test() -> None:
    for n in (3, 6, 11):
        diff = np.arange(1.0, n + 1)  # all positive: the most extreme ranking
        assert stats.wilcoxon(diff, method="exact").pvalue == pytest.approx(min_attainable_p(n))


def test_summarize() -> None:
    table = _table(n=5)
    table.loc[0, "psnr"] = math.inf
    out = summarize(table)
    assert len(out) == 2 * 3 * 3
    row = out[(out.scale == 2.5) & (out.method == "cubic") & (out.metric == "psnr")].iloc[0]
    assert row["n"] == 5 and np.isfinite(row["mean"])
