"""Train one plane prior with the flow-prediction loss; checkpoints resume to the same state.

The loop: draw a batch of cached slices (seeded CPU generator), rotate/shift them, crop a
patch around the foreground (optional), take one AdamW step on
:func:`~bida_app.diffusion.flow.flow_loss` (bf16 autocast on CUDA, gradient clipping,
warm-up then cosine or constant learning rate), update the EMA weights. Periodically: a
validation loss on held-out slices with fixed times and noise, a PNG grid of prior samples
(plain DDIM, no data consistency), and a checkpoint — the EMA weights as
``<plane>.safetensors`` + ``<plane>.json`` (:func:`~bida_app.models.save_plane_model`, so the
output folder works as ``--weights DIR``) and the full training state
(``checkpoints/<plane>.pt``: weights, EMA, optimizer, step, every random generator), from
which ``resume=True`` continues exactly where the run stopped.

Output folder layout (one folder can hold all three planes)::

    DIR/<plane>.safetensors, DIR/<plane>.json    EMA weights and card
    DIR/checkpoints/<plane>.pt                   training state
    DIR/logs/<plane>.csv, DIR/logs/<plane>_loss.png, DIR/logs/tb-<plane>/ (TensorBoard)
    DIR/samples/<plane>_step0001000.png          sample grids
    DIR/cache/                                   preprocessed volumes and slices
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import __version__
from ..device import amp_dtype, autocast, resolve_device
from ..diffusion.flow import flow_loss
from ..errors import BidaError, ExitCode
from ..models.config import UNetConfig, preset_name
from ..models.unet import UNet
from ..models.weights import plane_slice_shape, save_plane_model
from ..utils.io import atomic_path
from .augment import crop_origins, pad_to_multiple, random_affine
from .callbacks import Callback, default_callbacks
from .config import TrainConfig, with_overrides  # noqa: F401 - re-exported
from .data import SliceSet, build_slices, find_inputs, split_validation
from .distributed import DistInfo, barrier, init_distributed, shutdown
from .ema import EMA
from .plots import plot_history
from .sampling import sample_prior, save_grid

LOGGER = logging.getLogger(__name__)

STATE_FORMAT = "bida-train-state/1"


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    net: UNet
    step: int
    history: list[dict[str, Any]]
    weights: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)


class Trainer:
    """Training loop of one plane prior on a :class:`~bida_app.training.data.SliceSet`.

    Parameters
    ----------
    data : SliceSet
        Slices of ``cfg.plane``.
    cfg : TrainConfig
        Settings.
    out_dir : path, optional
        Output folder; ``None`` trains in memory (no files), as the scan-adaptive prior does.
    device : torch.device, optional
        Default: ``cfg.device`` resolved.
    dist : DistInfo, optional
        Rank information under ``torchrun``.
    """

    def __init__(
        self,
        data: SliceSet,
        cfg: TrainConfig,
        out_dir: str | Path | None = None,
        *,
        device: torch.device | None = None,
        dist: DistInfo | None = None,
    ) -> None:
        self.cfg = cfg
        self.data = data
        self.out = Path(out_dir) if out_dir is not None else None
        self.dist = dist or DistInfo()
        self.device = device or resolve_device(cfg.device)
        self.amp = amp_dtype(self.device)
        unet = cfg.unet_config()
        self.factor = unet.factor
        self.canvas = data.shape
        if cfg.patch is not None and cfg.patch % self.factor:
            raise ValueError(f"patch {cfg.patch} must be a multiple of {self.factor}")

        torch.manual_seed(cfg.seed)
        self.net = UNet(unet).to(self.device)
        self.ema = EMA(self.net, cfg.ema_decay)
        self.model: nn.Module = self.net
        if self.dist.enabled:
            self.model = nn.parallel.DistributedDataParallel(
                self.net, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.opt = torch.optim.AdamW(
            self.net.parameters(), lr=cfg.lr_at(0), weight_decay=cfg.weight_decay
        )
        self.data_gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.dist.rank)
        self.noise_gen = torch.Generator(device=self.device).manual_seed(
            cfg.seed * 1000 + 500 + self.dist.rank
        )
        self.train_idx, self.val_idx, self.val_mode = split_validation(
            data, cfg.val_fraction, cfg.seed
        )
        if not len(self.train_idx):
            raise BidaError("no training slices left after the validation split", ExitCode.NO_DATA)
        self.step = 0
        self.history: list[dict[str, Any]] = []
        self.elapsed = 0.0
        self.end_step = cfg.steps
        self.callbacks: list[Callback] = []
        self.weights: Path | None = None  # card of the last checkpoint
        self._val_batch = self._make_val_batch()
        LOGGER.info(
            "%s prior: UNet %s (%d parameters), %d training / %d validation slices (%s) of "
            "%d volume(s), slice %s, patch %s, device %s",
            cfg.plane,
            preset_name(unet),
            self.net.n_params,
            len(self.train_idx),
            len(self.val_idx),
            self.val_mode,
            len(data.sources),
            self.canvas,
            cfg.patch or "whole slice",
            self.device,
        )

    # ------------------------------------------------------------------ data
    def _patch_size(self) -> tuple[int, int]:
        h, w = self.canvas
        if self.cfg.patch is None:
            return h, w
        return min(self.cfg.patch, h), min(self.cfg.patch, w)

    def _crop(self, x: torch.Tensor, idx: np.ndarray, gen: torch.Generator | None) -> torch.Tensor:
        size = self._patch_size()
        if size == tuple(x.shape[-2:]):
            return x
        boxes = self.data.bbox[idx]
        if gen is None:  # deterministic: centre of the foreground box
            centre = np.stack([boxes[:, :2].mean(1), boxes[:, 2:].mean(1)], axis=1)
            origins = np.clip(
                np.floor(centre - np.array(size) / 2).astype(np.int64),
                0,
                np.array(self.canvas) - np.array(size),
            )
        else:
            origins = crop_origins(boxes, size, self.canvas, gen)
        return torch.stack(
            [x[i, :, r : r + size[0], c : c + size[1]] for i, (r, c) in enumerate(origins)]
        )

    def batch(self) -> torch.Tensor:
        """Next augmented training batch ``(B, 1, H, W)`` on the device."""
        cfg = self.cfg
        pick = torch.randint(len(self.train_idx), (cfg.batch_size,), generator=self.data_gen)
        idx = self.train_idx[pick.numpy()]
        x = torch.from_numpy(np.asarray(self.data.slices[idx], np.float32))[:, None]
        x = random_affine(x, self.data_gen, max_degrees=cfg.max_degrees, max_shift=cfg.max_shift)
        x = self._crop(x, idx, self.data_gen)
        return pad_to_multiple(x, self.factor).to(self.device)

    def _make_val_batch(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not len(self.val_idx):
            return None
        n = min(self.cfg.val_size, len(self.val_idx))
        idx = self.val_idx[np.linspace(0, len(self.val_idx) - 1, n).round().astype(int)]
        x = torch.from_numpy(np.asarray(self.data.slices[np.sort(idx)], np.float32))[:, None]
        x = pad_to_multiple(self._crop(x, np.sort(idx), None), self.factor)
        t = torch.linspace(0.02, 0.98, n)
        return x, t

    # ------------------------------------------------------------------ steps
    def _autocast(self):
        return autocast(self.device, self.amp)

    def train_step(self) -> tuple[float, float]:
        """One optimizer step; returns (loss, gradient norm)."""
        cfg = self.cfg
        self.model.train()
        for group in self.opt.param_groups:
            group["lr"] = cfg.lr_at(self.step)
        x0 = self.batch()
        with self._autocast():
            loss = flow_loss(self.model, x0, self.noise_gen, schedule=cfg.time_schedule)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            gnorm = float(nn.utils.clip_grad_norm_(self.net.parameters(), cfg.grad_clip))
        else:
            gnorm = float(
                torch.linalg.vector_norm(
                    torch.stack(
                        [p.grad.norm() for p in self.net.parameters() if p.grad is not None]
                    )
                )
            )
        self.opt.step()
        self.ema.update(self.net)
        self.step += 1
        return float(loss.detach()), gnorm

    @torch.no_grad()
    def validation_loss(self, net: nn.Module | None = None) -> float:
        """Flow loss of ``net`` (default the EMA weights) on the fixed validation batch.

        Times are evenly spread in (0, 1) over the batch and the noise comes from a generator
        reseeded at every call, so the number only changes when the weights do.
        """
        if self._val_batch is None:
            return float("nan")
        net = net if net is not None else self.ema.module
        was_training = net.training
        net.eval()
        x, t = self._val_batch
        gen = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 12345)
        total = 0.0
        bs = max(1, self.cfg.batch_size)
        for i in range(0, len(x), bs):
            xb, tb = x[i : i + bs].to(self.device), t[i : i + bs].to(self.device)
            with self._autocast():
                total += float(flow_loss(net, xb, gen, t=tb)) * len(xb)
        net.train(was_training)
        return total / len(x)

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue: weights, EMA, optimizer, step, generators."""
        return {
            "format": STATE_FORMAT,
            "bida_version": __version__,
            "plane": self.cfg.plane,
            "config": self.cfg.to_dict(),
            "unet": self.net.config.to_dict(),
            "data_key": self.data.key,
            "step": self.step,
            "elapsed_s": self.elapsed,
            "model": self.net.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.opt.state_dict(),
            "rng": {
                "data": self.data_gen.get_state(),
                "noise": self.noise_gen.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            },
            "history": self.history,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a :meth:`state_dict` (the config may differ only in run-length settings)."""
        if state.get("format") != STATE_FORMAT:
            raise BidaError("not a bida training checkpoint", ExitCode.BAD_DATA)
        if state["plane"] != self.cfg.plane:
            raise BidaError(
                f"the checkpoint is for plane {state['plane']!r}, not {self.cfg.plane!r}",
                ExitCode.USAGE,
            )
        if UNetConfig.from_dict(state["unet"]) != self.net.config:
            raise BidaError(
                "the checkpoint's UNet differs from --preset; resume with the same preset",
                ExitCode.USAGE,
            )
        if state.get("data_key") != self.data.key:
            LOGGER.warning("resuming on different training data (inputs or preprocessing changed)")
        self.net.load_state_dict(state["model"])
        self.ema.load_state_dict(state["ema"])
        self.opt.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        self.elapsed = float(state.get("elapsed_s", 0.0))
        self.history = list(state.get("history", []))
        rng = state["rng"]
        if self.dist.is_main:
            self.data_gen.set_state(rng["data"])
            self.noise_gen.set_state(rng["noise"])
        else:  # other ranks: a fresh, rank- and step-specific stream
            self.data_gen.manual_seed(self.cfg.seed * 1000 + self.dist.rank + 7919 * self.step)
            self.noise_gen.manual_seed(self.cfg.seed * 1000 + 500 + self.dist.rank + self.step)
        torch.set_rng_state(rng["torch"])
        if rng.get("cuda") and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        old_steps = state["config"].get("steps")
        if old_steps != self.cfg.steps:
            LOGGER.info("total steps changed %s -> %d on resume", old_steps, self.cfg.steps)
        LOGGER.info("resumed %s training at step %d", self.cfg.plane, self.step)

    # ------------------------------------------------------------------ files
    def _path(self, *parts: str) -> Path:
        assert self.out is not None
        return self.out.joinpath(*parts)

    @property
    def checkpoint_path(self) -> Path:
        """``DIR/checkpoints/<plane>.pt``."""
        return self._path("checkpoints", f"{self.cfg.plane}.pt")

    def summary(self) -> dict[str, Any]:
        """Training summary for the model card."""
        cfg = self.cfg
        last_val = next(
            (h["val_loss"] for h in reversed(self.history) if h.get("val_loss") is not None),
            None,
        )
        return {
            "recipe": "bida train",
            "bida_version": __version__,
            "sources": list(self.data.sources),
            "source_sha256": dict(zip(self.data.sources, self.data.source_sha256, strict=False)),
            "n_volumes": len(self.data.sources),
            "n_train_slices": int(len(self.train_idx)),
            "n_val_slices": int(len(self.val_idx)),
            "validation": self.val_mode,
            "steps": self.step,
            "batch_size": cfg.batch_size * self.dist.world,
            "lr": cfg.lr,
            "schedule": cfg.schedule,
            "warmup": cfg.warmup,
            "ema_decay": cfg.ema_decay,
            "patch": cfg.patch,
            "augmentation": {"max_degrees": cfg.max_degrees, "max_shift_px": cfg.max_shift},
            "time_schedule": cfg.time_schedule,
            "preprocessing": {**asdict(cfg.prep), "grid": list(cfg.prep.grid)},
            "final_val_loss": last_val,
            "seed": cfg.seed,
            "device": str(self.device),
            "world_size": self.dist.world,
            "train_time_s": round(self.elapsed, 1),
        }

    def save(self) -> Path | None:
        """Write the EMA weights + card and the training state (rank 0 only)."""
        if self.out is None or not self.dist.is_main:
            return None
        dtype = torch.bfloat16 if self.cfg.weights_dtype == "bfloat16" else torch.float32
        card = save_plane_model(
            self.ema.module,
            self.out,
            self.cfg.plane,
            slice_shape=plane_slice_shape(self.cfg.plane, self.cfg.prep.grid),
            voxel_size_mm=self.cfg.prep.voxel_mm,
            training=self.summary(),
            dtype=dtype,
        )
        with atomic_path(self.checkpoint_path) as tmp:
            torch.save(self.state_dict(), tmp)
        LOGGER.info("checkpoint at step %d: %s", self.step, self.checkpoint_path)
        self.weights = card
        return card

    def _log(self, row: dict[str, Any]) -> None:
        self.history.append(row)
        self._call("on_log", row)

    def _call(self, hook: str, *args: Any) -> None:
        for callback in self.callbacks:
            getattr(callback, hook)(self, *args)

    def save_samples(self) -> Path | None:
        """PNG grid: prior samples (EMA weights) above validation (or training) slices."""
        if self.out is None or not self.dist.is_main or self.cfg.n_grid < 1:
            return None
        n = self.cfg.n_grid
        gen = torch.Generator().manual_seed(self.cfg.seed + 999)
        shape = pad_to_multiple(torch.zeros(1, 1, *self.canvas), self.factor).shape[-2:]
        samples = sample_prior(
            self.ema.module,
            n,
            tuple(shape),
            steps=self.cfg.sample_steps,
            generator=gen,
            device=self.device,
            amp=self.amp,
        )
        pool = self.val_idx if len(self.val_idx) else self.train_idx
        pick = pool[np.linspace(0, len(pool) - 1, min(n, len(pool))).round().astype(int)]
        real = np.asarray(self.data.slices[np.sort(pick)])
        path = self._path("samples", f"{self.cfg.plane}_step{self.step:07d}.png")
        return save_grid(
            path,
            {
                f"prior samples (EMA, {self.cfg.sample_steps} DDIM steps)": samples[:, 0].numpy(),
                "real slices" + (" (validation)" if len(self.val_idx) else ""): real,
            },
            title=f"{self.cfg.plane} prior, step {self.step}",
        )

    def save_loss_curve(self) -> Path | None:
        """PNG of the training and validation losses over steps."""
        if self.out is None or not self.dist.is_main or not self.history:
            return None
        return plot_history(
            self.history, self._path("logs", f"{self.cfg.plane}_loss.png"), self.cfg.plane
        )

    # ------------------------------------------------------------------ loop
    def run(
        self,
        *,
        stop_after: int | None = None,
        progress: bool = True,
        callbacks: Sequence[Callback] = (),
    ) -> TrainResult:
        """Train up to ``cfg.steps`` (or ``stop_after`` more steps), then checkpoint.

        Logs, progress bar, checkpoints, sample grids and the loss curve are the
        :func:`~bida_app.training.callbacks.default_callbacks`; ``callbacks`` run after them.
        """
        cfg = self.cfg
        self.end_step = (
            cfg.steps if stop_after is None else min(cfg.steps, self.step + int(stop_after))
        )
        self.callbacks = [*default_callbacks(self, progress=progress), *callbacks]
        losses: list[float] = []
        norms: list[float] = []
        t0 = time.perf_counter() - self.elapsed
        try:
            self._call("on_start")
            if self.step == 0 and self._val_batch is not None:
                self._log({"step": 0, "val_loss": self.validation_loss(), "elapsed_s": 0.0})
            while self.step < self.end_step:
                loss, gnorm = self.train_step()
                if not math.isfinite(loss):
                    raise BidaError(
                        f"the training loss became {loss} at step {self.step}; lower --lr",
                        ExitCode.FAILURE,
                    )
                losses.append(loss)
                norms.append(gnorm)
                self.elapsed = time.perf_counter() - t0
                last = self.step == self.end_step
                row: dict[str, Any] = {}
                if cfg.val_every and (self.step % cfg.val_every == 0 or last):
                    row["val_loss"] = self.validation_loss()
                    row["val_loss_raw"] = self.validation_loss(self.net)
                if self.step % max(1, cfg.log_every) == 0 or last or row:
                    row.update(
                        step=self.step,
                        lr=cfg.lr_at(self.step - 1),
                        loss=float(np.mean(losses)) if losses else None,
                        grad_norm=float(np.mean(norms)) if norms else None,
                        elapsed_s=round(self.elapsed, 2),
                    )
                    self._log(row)
                    losses, norms = [], []
                self._call("on_step")
            self._call("on_end")
        finally:
            self._call("on_close")
        return TrainResult(self.ema.module, self.step, self.history, self.weights, self.summary())


def train(
    inputs: Sequence[str | Path] | SliceSet,
    cfg: TrainConfig,
    out_dir: str | Path | None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    stop_after: int | None = None,
    participant_label: Sequence[str] | None = None,
    progress: bool = True,
) -> TrainResult:
    """Train the ``cfg.plane`` prior on ``inputs`` and write it to ``out_dir``.

    Parameters
    ----------
    inputs : sequence of path, or SliceSet
        NIfTI files and/or BIDS datasets (every isotropic T2w run), or prepared slices.
    cfg : TrainConfig
        Settings.
    out_dir : path, optional
        Output folder (usable as ``--weights DIR``); ``None`` trains in memory.
    resume : bool
        Continue from ``out_dir/checkpoints/<plane>.pt``.
    overwrite : bool
        Start from scratch even if a checkpoint exists.
    stop_after : int, optional
        Leave after this many steps of this invocation (checkpoint written; resume later).
    participant_label : sequence of str, optional
        BIDS inputs: subjects to use.
    progress : bool
        Progress bars.

    Returns
    -------
    TrainResult
        EMA network, step reached, history and the card path.
    """
    dist, device = init_distributed(cfg.device)
    try:
        out = Path(out_dir) if out_dir is not None else None
        ckpt = out / "checkpoints" / f"{cfg.plane}.pt" if out is not None else None
        if ckpt is not None and ckpt.exists() and not (resume or overwrite):
            raise BidaError(
                f"{ckpt} exists: pass --resume to continue that run or --overwrite to start over",
                ExitCode.USAGE,
            )
        if resume and (ckpt is None or not ckpt.exists()):
            raise BidaError(f"--resume: no checkpoint {ckpt}", ExitCode.MISSING_INPUT)
        if isinstance(inputs, SliceSet):
            data = inputs
        else:
            paths = find_inputs(inputs, participant_label)
            if dist.is_main:
                data = build_slices(paths, cfg.plane, cfg.prep, out / "cache", progress=progress)
            barrier(dist)
            if not dist.is_main:
                data = build_slices(paths, cfg.plane, cfg.prep, out / "cache", progress=False)
        trainer = Trainer(data, cfg, out, device=device, dist=dist)
        if resume:
            trainer.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
        return trainer.run(stop_after=stop_after, progress=progress)
    finally:
        shutdown(dist)
