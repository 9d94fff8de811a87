"""Markdown tables (README, model card) from ``bida evaluate`` output folders.

    python3 scripts/evaluation_tables.py EVAL_DIR [EVAL_DIR ...]

One table per folder: PSNR whole field / interior (dB) per volume, scale and method, and each
method's difference from the data-consistent baseline (dccubic).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd


def table(folder: Path) -> str:
    """The markdown table of one evaluation folder."""
    df = pd.read_csv(folder / "results.csv")
    settings = json.loads((folder / "run.json").read_text())["settings"]
    n4 = "on" if settings.get("n4", True) else "off"
    recon = settings.get("recon_profile", "gaussian")
    head = f"**{folder.name}**: simulated with `{settings['profile']}`, A = `{recon}`, N4 {n4}"
    methods = list(dict.fromkeys(df["method"]))
    lines = [head, "", "| volume | scale | " + " | ".join(methods) + " |"]
    lines.append("| --- | --- |" + " --- |" * len(methods))
    for (vol, scale), g in df.groupby(["volume", "scale"], sort=False):
        g = g.set_index("method")
        cells = []
        for m in methods:
            if m not in g.index:
                cells.append("–")
                continue
            cell = f"{g.loc[m, 'psnr']:.2f} / {g.loc[m, 'psnr_interior']:.2f}"
            if m != "dccubic" and "dccubic" in g.index:
                dw = g.loc[m, "psnr"] - g.loc["dccubic", "psnr"]
                di = g.loc[m, "psnr_interior"] - g.loc["dccubic", "psnr_interior"]
                cell += f" ({dw:+.2f} / {di:+.2f})"
            if "held_out" in g.columns and str(g.loc[m, "held_out"]).lower() == "false":
                cell += " (trained on)"
            cells.append(cell)
        lines.append(f"| {vol} | {scale:g}× | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("folders", nargs="+", type=Path)
    args = p.parse_args()
    for folder in args.folders:
        if (folder / "results.csv").is_file():
            print(table(folder), end="\n\n")


if __name__ == "__main__":
    main()
