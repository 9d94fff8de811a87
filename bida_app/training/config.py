"""Settings of a training run (:class:`TrainConfig`): recorded in the checkpoint and the card."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..models.config import UNetConfig
from ..models.weights import check_plane
from .data import PrepConfig


@dataclass
class TrainConfig:
    """Every setting of a training run (recorded in the checkpoint and the model card).

    Parameters
    ----------
    plane : str
        ``axial``, ``coronal`` or ``sagittal``.
    steps : int
        Total optimizer steps.
    preset : str
        UNet size (:data:`~bida_app.models.config.PRESETS`), unless ``unet`` is
        given.
    unet : dict, optional
        Explicit :class:`~bida_app.models.UNetConfig` entries (overrides ``preset``).
    batch_size : int
        Slices per step (per process under DDP).
    lr, weight_decay : float
        AdamW settings.
    warmup : int
        Linear warm-up steps.
    schedule : {"cosine", "constant"}
        Learning rate after warm-up; cosine decays to ``min_lr_ratio * lr`` at ``steps``.
    min_lr_ratio : float
        Final fraction of the learning rate (cosine).
    ema_decay : float
        Target EMA decay.
    grad_clip : float
        Gradient-norm clipping (0 disables).
    val_fraction : float
        Fraction of volumes (or slices, see :func:`split_validation`) held out.
    val_every, val_size : int
        Validation period (steps) and number of validation slices.
    sample_every, n_grid, sample_steps : int
        Sample-grid period (0: only at the end), samples per grid, DDIM steps.
    checkpoint_every, log_every : int
        Periods in steps.
    patch : int, optional
        Train on square crops of this size (multiple of the UNet factor) centred in the
        foreground; default the whole slice.
    max_degrees, max_shift : float
        Rotation (degrees) and translation (pixels) augmentation ranges.
    time_schedule : str
        Distribution of training times (:func:`~bida_app.diffusion.flow.sample_times`).
    seed : int
        Seed of every random generator.
    device : str
        ``auto``, ``cpu`` or ``cuda``.
    threads : int
        CPU threads for torch (0: torch's default).
    weights_dtype : {"float32", "bfloat16"}
        Storage dtype of the saved weights.
    prep : PrepConfig
        Preprocessing.
    """

    plane: str = "axial"
    steps: int = 20000
    preset: str = "default"
    unet: dict[str, Any] | None = None
    batch_size: int = 16
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 500
    schedule: str = "cosine"
    min_lr_ratio: float = 0.1
    ema_decay: float = 0.999
    grad_clip: float = 1.0
    val_fraction: float = 0.1
    val_every: int = 500
    val_size: int = 64
    sample_every: int = 2000
    n_grid: int = 8
    sample_steps: int = 16
    checkpoint_every: int = 1000
    log_every: int = 10
    patch: int | None = None
    max_degrees: float = 10.0
    max_shift: float = 5.0
    time_schedule: str = "uniform"
    seed: int = 0
    device: str = "auto"
    threads: int = 0
    weights_dtype: str = "float32"
    prep: PrepConfig = field(default_factory=PrepConfig)

    def __post_init__(self) -> None:
        check_plane(self.plane)
        if isinstance(self.prep, dict):
            self.prep = PrepConfig(**self.prep)
        if self.schedule not in ("cosine", "constant"):
            raise ValueError(f"schedule must be 'cosine' or 'constant', got {self.schedule!r}")
        if self.weights_dtype not in ("float32", "bfloat16"):
            raise ValueError("weights_dtype must be 'float32' or 'bfloat16'")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")

    def unet_config(self) -> UNetConfig:
        """The network's configuration."""
        return UNetConfig.from_dict(self.unet) if self.unet else UNetConfig.preset(self.preset)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["prep"]["grid"] = list(self.prep.grid)
        return d

    def lr_at(self, step: int) -> float:
        """Learning rate of optimizer step ``step`` (0-based).

        Examples
        --------
        >>> cfg = TrainConfig(steps=100, warmup=10, lr=1.0, min_lr_ratio=0.0)
        >>> round(cfg.lr_at(0), 2), cfg.lr_at(9), round(cfg.lr_at(99), 4)
        (0.1, 1.0, 0.0)
        """
        warm = min(1.0, (step + 1) / self.warmup) if self.warmup > 0 else 1.0
        if self.schedule == "constant":
            return self.lr * warm
        span = max(1, self.steps - self.warmup)
        progress = min(1.0, max(0.0, (step - self.warmup + 1) / span))
        cos = 0.5 * (1 + math.cos(math.pi * progress))
        return self.lr * warm * (self.min_lr_ratio + (1 - self.min_lr_ratio) * cos)


def with_overrides(cfg: TrainConfig, **changes: Any) -> TrainConfig:
    """A copy of ``cfg`` with ``changes`` (``None`` values ignored)."""
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})
