"""Plot the loss curves of one or more ``bida train`` runs (for model cards).

Usage::

    python scripts/training_curves.py WEIGHTS_DIR OUT.png [--planes axial coronal sagittal]

Reads ``WEIGHTS_DIR/logs/<plane>.csv`` (written by the trainer every ``log_every`` steps) and
draws, per plane, the training loss (running mean over 10 log rows) and the validation loss
(EMA weights, fixed times and noise) against the optimizer step.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import pandas as pd

LOGGER = logging.getLogger("training_curves")


def plot_curves(weights_dir: Path, out: Path, planes: list[str]) -> Path:
    """Write the figure ``out`` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(planes), figsize=(4.2 * len(planes), 3.2), squeeze=False)
    for ax, plane in zip(axes[0], planes, strict=True):
        log = pd.read_csv(weights_dir / "logs" / f"{plane}.csv")
        train = log.dropna(subset=["loss"])
        val = log.dropna(subset=["val_loss"])
        ax.plot(train["step"], train["loss"].rolling(10, min_periods=1).mean(), label="train")
        ax.plot(val["step"], val["val_loss"], "o-", ms=3, label="validation (EMA)")
        ax.set(title=f"{plane} prior", xlabel="step", ylabel="flow loss", yscale="log")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    LOGGER.info("wrote %s", out)
    return out


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("weights_dir", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--planes", nargs="+", default=["axial", "coronal", "sagittal"])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    missing = [q for q in args.planes if not (args.weights_dir / "logs" / f"{q}.csv").is_file()]
    if missing:
        LOGGER.error("no training log for %s in %s/logs", ", ".join(missing), args.weights_dir)
        return 66
    plot_curves(args.weights_dir, args.out, args.planes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
