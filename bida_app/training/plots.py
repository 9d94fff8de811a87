"""Training logs as pictures and TensorBoard events (loss curves)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..utils.io import atomic_path


def _tensorboard(log_dir: Path):
    """A TensorBoard writer when the ``tensorboard`` package is installed, else None."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return None
    return SummaryWriter(str(log_dir))


def plot_history(history: Sequence[dict[str, Any]], path: Path, plane: str = "") -> Path:
    """Plot training loss (per log row) and validation loss (EMA) against steps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def series(key: str) -> tuple[list[int], list[float]]:
        pts = [(h["step"], h[key]) for h in history if h.get(key) not in (None, "")]
        return [p[0] for p in pts], [float(p[1]) for p in pts]

    fig, ax = plt.subplots(figsize=(5, 3))
    for key, label in (("loss", "training"), ("val_loss", "validation (EMA)")):
        xs, ys = series(key)
        if xs:
            ax.plot(xs, ys, label=label, marker="o" if key == "val_loss" else None, ms=3)
    ax.set_xlabel("step")
    ax.set_ylabel("flow loss (MSE of v)")
    ax.set_yscale("log")
    ax.set_title(f"{plane} prior".strip(), fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return path
