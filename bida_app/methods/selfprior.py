"""Scan-adaptive prior (``--prior self``): plane priors fitted on the scan's own slices.

A thick-slice scan has one high-resolution plane: the acquired slices (e.g. coronal slices of
a scan with thick A-P slices). BiDA needs priors of the two *other* planes, which contain the
through-plane axis. This module trains them on the acquired slices turned by 90°: in each
target plane, the axis it shares with the acquired plane keeps its role, and the acquired
plane's other (high-resolution) axis plays the through-plane axis — the trick self-supervised
SR methods use. E.g. for thick A-P slices: coronal slices (L-R × I-S) train the sagittal prior
(A-P × I-S) with L-R playing A-P, and the axial prior (L-R × A-P) with I-S playing A-P.

The slices get the workflow's preprocessing (RAS, in-plane resampling to the model voxel
size, percentile standardization, grid placement), so they look like the slices BiDA
denoises. Training is short and in memory (:class:`~bida_app.training.trainer.Trainer` with
no output folder); the returned :class:`~bida_app.models.PlaneModel` objects go straight into
:func:`~bida_app.methods.bida.bida_super_resolve_image` (``models=``).

Budgets: on the CPU a ``tiny`` UNet for :data:`CPU_SETTINGS` steps (a few minutes per scan on
two cores); on a GPU a ``small`` UNet for :data:`GPU_SETTINGS` steps. ``steps`` (or the
``BIDA_SELF_PRIOR_STEPS`` environment variable) overrides the step count. A prior fitted on
~10-60 slices is weak: with one posterior sample BiDA stays near the least-squares solution
A⁺y; average several samples (``--n_samples 4 --eta 1 --null_shrinkage``) for the best PSNR
(measurements in the README and the model card).
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import replace
from typing import Any

import nibabel as nib
import torch

from ..device import resolve_device
from ..errors import BidaError, ExitCode
from ..models.config import preset_name
from ..models.weights import MODEL_VOXEL_MM, PLANES_FOR_AXIS, PlaneModel, load_plane_models
from ..training.config import TrainConfig
from ..training.data import PreparedVolume, PrepConfig, slices_from_arrays, standardize_ras
from ..training.ema import EMA
from ..training.trainer import Trainer
from .grid import scan_grid

LOGGER = logging.getLogger(__name__)

STEPS_ENV = "BIDA_SELF_PRIOR_STEPS"
"""Environment variable overriding the number of training steps per plane."""

CPU_SETTINGS = TrainConfig(
    steps=1000,
    preset="tiny",
    batch_size=8,
    lr=1e-3,
    warmup=20,
    schedule="cosine",
    ema_decay=0.99,
    patch=48,
    val_fraction=0.0,
    val_every=0,
    sample_every=0,
    checkpoint_every=0,
    log_every=10,
)
"""CPU budget: ``tiny`` UNet, 1000 steps of 8 patches of 48² per plane (~1.5 min)."""

GPU_SETTINGS = replace(
    CPU_SETTINGS, steps=3000, preset="small", batch_size=32, lr=5e-4, warmup=100, patch=64
)
"""GPU budget: ``small`` UNet, 3000 steps of 32 patches of 64² per plane."""

FINETUNE_SETTINGS = replace(CPU_SETTINGS, steps=200, lr=2e-4, warmup=10, ema_decay=0.95)
"""``--prior finetune``: the given priors, 200 steps of 8 patches of 48² per plane at a low
learning rate (CPU and GPU alike; 2-8 min per plane on two shared CPU cores)."""


def _settings(
    device: torch.device, steps: int | None, seed: int, finetune: bool = False
) -> TrainConfig:
    base = (
        FINETUNE_SETTINGS if finetune else GPU_SETTINGS if device.type == "cuda" else CPU_SETTINGS
    )
    if steps is None and os.environ.get(STEPS_ENV):
        steps = int(os.environ[STEPS_ENV])
    changes: dict[str, Any] = {"seed": seed, "device": str(device)}
    if steps is not None:
        if steps < 1:
            raise BidaError("the self-prior needs at least one training step", ExitCode.USAGE)
        changes.update(steps=int(steps), warmup=min(base.warmup, max(0, steps // 10)))
    return replace(base, **changes)


def fit_self_prior(
    ras: nib.Nifti1Image,
    axis: int,
    *,
    planes: tuple[str, ...] | None = None,
    steps: int | None = None,
    preset: str | None = None,
    grid: tuple[int, int, int] | None = None,
    voxel_mm: float = MODEL_VOXEL_MM,
    device: str | torch.device = "auto",
    seed: int = 0,
    progress: bool = True,
    init: dict[str, PlaneModel] | None = None,
) -> dict[str, PlaneModel]:
    """Train the plane priors BiDA needs for ``ras`` on its own in-plane slices.

    Parameters
    ----------
    ras : nibabel.Nifti1Image
        Thick-slice scan in RAS voxel order (bias-corrected, as the workflow's input to BiDA).
    axis : int
        RAS voxel axis of the through-plane (thick-slice) direction.
    planes : tuple of str, optional
        Planes to train (default: the two containing ``axis``).
    steps : int, optional
        Training steps per plane (default :data:`CPU_SETTINGS` / :data:`GPU_SETTINGS`, or
        ``$BIDA_SELF_PRIOR_STEPS``).
    preset : str, optional
        UNet preset (default ``tiny`` on CPU, ``small`` on GPU).
    grid : tuple of int, optional
        Model grid; default :func:`scan_grid` (the scan's extent, at most the standard
        grid in-plane). The cards' ``slice_shape`` follows it, and so does BiDA's grid.
    voxel_mm : float
        Model voxel size.
    device : str or torch.device
        ``auto``, ``cpu`` or ``cuda``.
    seed : int
        Seed of the training.
    progress : bool
        Progress bars.
    init : dict of str to PlaneModel, optional
        Priors to start from (``--prior finetune``): each plane's network starts from its
        weights, with :data:`FINETUNE_SETTINGS`, and its card keeps the original's record
        (training sources and their SHA-256, for the leave-one-out guard).

    Returns
    -------
    dict of str to PlaneModel
        In-memory models (eval mode) whose cards record the fit.
    """
    dev = resolve_device(device)
    planes = planes or PLANES_FOR_AXIS[axis]
    cfg = _settings(dev, steps, seed, finetune=init is not None)
    if preset:
        cfg = replace(cfg, preset=preset)
    if init is not None:  # the given priors' own UNet
        cfg = replace(cfg, unet=init[planes[0]].config.to_dict())
    grid = grid or scan_grid(ras, axis, voxel_mm, cfg.unet_config().factor)
    prep = PrepConfig(voxel_mm=voxel_mm, grid=grid, n4=False)
    in_plane = [a for a in range(3) if a != axis]
    std, hr_planes, info = standardize_ras(ras, prep, "scan", axes=in_plane)
    volume = PreparedVolume("scan", std, hr_planes, info)
    LOGGER.info(
        "scan-adaptive prior: fitting %s on the scan's %s slices (grid %s, %s UNet, %d steps "
        "each, batch %d, patch %s, device %s)",
        " and ".join(planes),
        "/".join(hr_planes),
        "x".join(str(n) for n in grid),
        preset_name(cfg.unet_config()),
        cfg.steps,
        cfg.batch_size,
        cfg.patch,
        dev,
    )
    models: dict[str, PlaneModel] = {}
    for plane in planes:
        t0 = time.perf_counter()
        data = slices_from_arrays([volume], plane, prep)
        if len(data) < 2:
            raise BidaError(
                f"the scan has only {len(data)} usable in-plane slice(s): too few to fit a "
                "scan-adaptive prior",
                ExitCode.BAD_DATA,
            )
        trainer = Trainer(data, replace(cfg, plane=plane, prep=prep), None, device=dev)
        if init is not None:
            start_from(trainer, init[plane])
        res = trainer.run(progress=progress)
        losses = [h["loss"] for h in res.history if h.get("loss") is not None]
        net = res.net.eval().requires_grad_(False)
        card = {
            # the original's card, less its weights file: these weights are new
            **({k: v for k, v in init[plane].card.items() if k != "weights"} if init else {}),
            "plane": plane,
            "slice_shape": list(data.shape),
            "voxel_size_mm": voxel_mm,
            "parameterization": "flow",
            "prior": "self" if init is None else "finetune",
            "n_params": int(sum(p.numel() for p in net.parameters())),
            "training": {
                **res.summary,
                **(_training_record(init[plane]) if init is not None else {}),
                "recipe": "scan-adaptive (--prior self)"
                if init is None
                else f"fine-tuned on the scan (--prior finetune) from {init[plane].sha256}",
                "source_planes": list(hr_planes),
                "first_loss": losses[0] if losses else None,
                "final_loss": losses[-1] if losses else None,
            },
        }
        models[plane] = PlaneModel(plane, net, net.config, card)
        LOGGER.info(
            "scan-adaptive %s prior: %d slices, %d steps in %.0f s, loss %.4f -> %.4f",
            plane,
            len(data),
            res.step,
            time.perf_counter() - t0,
            card["training"]["first_loss"] or float("nan"),
            card["training"]["final_loss"] or float("nan"),
        )
    return models


def _training_record(model: PlaneModel) -> dict[str, Any]:
    """The original prior's training sources (and their SHA-256), kept by its fine-tuned copy."""
    training = model.card.get("training") or {}
    return {k: training[k] for k in ("sources", "source_sha256") if k in training}


def start_from(trainer: Trainer, model: PlaneModel) -> None:
    """Start ``trainer``'s network (and its EMA) from ``model``'s weights."""
    if model.config != trainer.net.config:
        raise BidaError(
            f"the {model.plane} prior's UNet differs from the fine-tuning preset",
            ExitCode.BAD_DATA,
        )
    trainer.net.load_state_dict(model.net.state_dict())
    trainer.ema = EMA(trainer.net, trainer.cfg.ema_decay)


def self_prior_models(
    img: nib.Nifti1Image, prior: str = "self", weights_dir: str | None = None, **fit_options: Any
) -> dict[str, PlaneModel]:
    """Entry point of :func:`~bida_app.methods.bida.bida_super_resolve_image` for ``prior``.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        The (bias-corrected) thick-slice image in any voxel order.
    prior : str
        ``"self"`` (fit from scratch) or ``"finetune"`` (start from the shipped or
        ``weights_dir`` priors); anything else but ``"pretrained"`` is refused with exit 64.
    weights_dir : str, optional
        Folder of the priors ``"finetune"`` starts from (default: the shipped weights).
    **fit_options
        Keyword arguments of :func:`fit_self_prior` (``steps``, ``device``, ``seed``,
        ``progress``, ...).

    Returns
    -------
    dict of str to PlaneModel
    """
    from ..preprocess.orient import through_plane_axis, to_ras

    if prior not in ("self", "finetune"):
        raise BidaError(
            f"--prior {prior} is not available (choose pretrained, self or finetune)",
            ExitCode.USAGE,
        )
    ras, _ = to_ras(img)
    try:
        axis = through_plane_axis(ras)
    except ValueError as err:
        raise BidaError(
            f"--prior {prior} needs a thick-slice scan: {err}", ExitCode.BAD_DATA
        ) from err
    if prior == "finetune":
        planes = fit_options.get("planes") or PLANES_FOR_AXIS[axis]
        device = resolve_device(fit_options.get("device", "auto"))
        fit_options["init"] = load_plane_models(weights_dir, planes, device)
    return fit_self_prior(ras, axis, **fit_options)
