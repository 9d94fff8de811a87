"""What the training loop does besides training: logs, progress, checkpoints, pictures.

:meth:`Trainer.run <bida_app.training.trainer.Trainer.run>` calls each :class:`Callback` in
turn: :meth:`~Callback.on_start` before the first step, :meth:`~Callback.on_log` for every
row appended to the history (the step-0 validation row too), :meth:`~Callback.on_step` after
every optimizer step, :meth:`~Callback.on_end` once the last step is done and
:meth:`~Callback.on_close` always, even after an error. None of them touches a random
generator, so the callbacks do not change what is trained (exact resume).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from ..utils.io import atomic_path
from .plots import _tensorboard

#: A :class:`~bida_app.training.trainer.Trainer` (not imported: the trainer imports this).
Trainer = Any

#: Columns of ``logs/<plane>.csv``.
LOG_FIELDS = ("step", "lr", "loss", "grad_norm", "val_loss", "val_loss_raw", "elapsed_s")
#: History keys written as TensorBoard scalars.
TB_SCALARS = ("loss", "val_loss", "val_loss_raw", "lr", "grad_norm")


class Callback:
    """Hooks of the training loop; each does nothing unless overridden."""

    def on_start(self, trainer: Trainer) -> None:
        """Before the first step of this run (``trainer.step`` is 0 or the resumed step)."""

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        """After ``row`` was appended to ``trainer.history``."""

    def on_step(self, trainer: Trainer) -> None:
        """After each optimizer step (``trainer.step`` already counts it)."""

    def on_end(self, trainer: Trainer) -> None:
        """After the last step of this run (``trainer.step == trainer.end_step``)."""

    def on_close(self, trainer: Trainer) -> None:
        """Always, last: release files and bars."""


def every(period: int, trainer: Trainer) -> bool:
    """True on every ``period``-th step before the run's last one (``period`` 0: never)."""
    return bool(period) and trainer.step % period == 0 and trainer.step != trainer.end_step


class ProgressBar(Callback):
    """A tqdm bar of the steps, with the last logged losses and learning rate."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar = None

    def on_start(self, trainer: Trainer) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.end_step,
            initial=trainer.step,
            desc=f"train {trainer.cfg.plane}",
            unit="step",
            disable=not self.enabled,
        )

    def on_step(self, trainer: Trainer) -> None:
        self.bar.update(1)

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.bar is not None and row.get("loss") is not None:
            self.bar.set_postfix(
                loss=f"{row['loss']:.4f}",
                val=f"{row.get('val_loss', float('nan')):.4f}",
                lr=f"{row['lr']:.1e}",
            )

    def on_close(self, trainer: Trainer) -> None:
        if self.bar is not None:
            self.bar.close()


class CsvLog(Callback):
    """``logs/<plane>.csv``: one line per history row.

    A fresh run starts a new file; a resumed one rewrites it with the rows up to the
    resumed step (a run stopped after its last checkpoint logged rows that are replayed).
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def on_start(self, trainer: Trainer) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if trainer.step == 0:
            self.path.unlink(missing_ok=True)
            return
        with atomic_path(self.path) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
            writer.writeheader()
            for row in trainer.history:
                writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        new = not self.path.exists()
        with open(self.path, "a", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=LOG_FIELDS, extrasaction="ignore")
            if new:
                writer.writeheader()
            writer.writerow({k: row.get(k, "") for k in LOG_FIELDS})


class TensorBoardLog(Callback):
    """TensorBoard scalars in ``logs/tb-<plane>/`` (when tensorboard is installed)."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.writer = None

    def on_start(self, trainer: Trainer) -> None:
        self.writer = _tensorboard(self.log_dir)

    def on_log(self, trainer: Trainer, row: dict[str, Any]) -> None:
        if self.writer is None:
            return
        for key in TB_SCALARS:
            if row.get(key) is not None:
                self.writer.add_scalar(f"{trainer.cfg.plane}/{key}", row[key], row["step"])

    def on_close(self, trainer: Trainer) -> None:
        if self.writer is not None:
            self.writer.close()


class Periodic(Callback):
    """Call ``trainer.<action>()`` every ``period`` steps and once more at the end.

    ``Periodic("save", n)`` writes the weights, card and training state (checkpoints);
    ``Periodic("save_samples", n)`` a PNG grid of prior samples.
    """

    def __init__(self, action: str, period: int) -> None:
        self.action = action
        self.period = period

    def on_step(self, trainer: Trainer) -> None:
        if every(self.period, trainer):
            getattr(trainer, self.action)()

    def on_end(self, trainer: Trainer) -> None:
        getattr(trainer, self.action)()


class LossCurve(Callback):
    """``logs/<plane>_loss.png`` at the end of the run."""

    def on_end(self, trainer: Trainer) -> None:
        trainer.save_loss_curve()


def default_callbacks(trainer: Trainer, *, progress: bool = True) -> list[Callback]:
    """The progress bar; for a run that writes files (rank 0 only) also its logs,
    checkpoints, sample grids and loss curve.

    At the end the checkpoint comes first, so the card of the final weights is on disk
    before the pictures. Sample grids use their own generator, so their place in the list
    does not change the checkpointed state.
    """
    main = trainer.dist.is_main
    callbacks: list[Callback] = [ProgressBar(progress and main)]
    if trainer.out is None or not main:
        return callbacks
    logs, plane = trainer.out / "logs", trainer.cfg.plane
    return callbacks + [
        CsvLog(logs / f"{plane}.csv"),
        TensorBoardLog(logs / f"tb-{plane}"),
        Periodic("save", trainer.cfg.checkpoint_every),
        Periodic("save_samples", trainer.cfg.sample_every),
        LossCurve(),
    ]
