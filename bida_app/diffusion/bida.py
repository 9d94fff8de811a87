"""Biplanar DDNM Averaging: super-resolve every slice of the two planes that contain the
through-plane axis, stack each plane's slices into a volume, and average the two volumes.

Volumes are in RAS voxel order; a slice of plane ``p`` is ``vol`` indexed at one position of
``PLANE_SLICE_AXIS[p]`` (axial ``vol[:, :, k]``, coronal ``vol[:, k, :]``, sagittal
``vol[k]``). Each slice carries its own 1D data ``y`` (its LR lines), and DDNM enforces
``A x = y`` along the through-plane direction inside that slice; both plane volumes therefore
satisfy ``A x = y`` and so does their average.
"""

from __future__ import annotations

import logging
import platform
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from ..config import DEFAULT_STEPS
from ..device import amp_dtype, autocast, cpu_workers, intraop_threads, resolve_device
from ..errors import BidaError, ExitCode
from ..models.weights import PLANE_SLICE_AXIS, PLANES, PLANES_FOR_AXIS, PlaneModel
from ..physics import SliceOperator
from .ddnm import ddnm_sample
from .flow import Denoiser

logger = logging.getLogger(__name__)

CPU_BATCH_PIXELS = 160_000
"""Canvas pixels per batch on the CPU (about 8 slices of 144x144)."""

BACKGROUND = -1.0 + 1e-6
"""Standardized intensity at or below which an LR slice counts as background only."""

CUDA_BATCH_BYTES = 3 * 2**30
"""Upper bound of activation memory per batch on CUDA (keeps a volume under ~4 GB)."""


@dataclass
class BidaResult:
    """Output of :func:`super_resolve`.

    Attributes
    ----------
    mean : ndarray
        HR volume (float32): the average over planes and posterior samples.
    std : ndarray or None
        Per-voxel standard deviation over the posterior samples (``ddof=1``) when
        ``n_samples > 1``.
    residual : float
        ``‖A mean − y‖ / ‖y‖`` in the standardized space.
    timings : dict
        Seconds per plane (summed over samples; they overlap when planes run concurrently)
        and ``"total"`` (wall clock).
    device : dict
        Device, its name, compute dtype and torch version.
    params : dict
        Sampling parameters (planes, steps, eta, n_samples, seed, batch sizes).
    """

    mean: np.ndarray
    std: np.ndarray | None
    residual: float
    timings: dict[str, float] = field(default_factory=dict)
    device: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)

    def sidecar(self) -> dict[str, Any]:
        """Entries for the derivative's JSON sidecar."""
        return {
            "DataConsistencyResidual": self.residual,
            "BidaParameters": self.params,
            "BidaDevice": self.device,
            "BidaTimings": {k: round(v, 3) for k, v in self.timings.items()},
        }


def planes_for_axis(axis: int) -> tuple[str, str]:
    """The two planes that contain voxel axis ``axis``.

    Examples
    --------
    >>> planes_for_axis(1)
    ('axial', 'sagittal')
    """
    if axis not in PLANES_FOR_AXIS:
        raise ValueError(f"through-plane axis must be 0, 1 or 2, got {axis}")
    return PLANES_FOR_AXIS[axis]


def device_info(device: torch.device, amp: torch.dtype | None) -> dict[str, Any]:
    """What ran the sampler, for sidecars and reports."""
    if device.type == "cuda":
        idx = device.index if device.index is not None else torch.cuda.current_device()
        name = torch.cuda.get_device_name(idx)
    else:
        name = platform.processor() or platform.machine()
    return {
        "Device": str(device),
        "DeviceName": name,
        "ComputeDtype": str(amp or torch.float32).removeprefix("torch."),
        "Torch": torch.__version__,
        "CUDA": torch.version.cuda if device.type == "cuda" else None,
        "Threads": torch.get_num_threads(),
    }


def slice_seed(seed: int, plane: str, index: int) -> int:
    """Seed of the noise of slice ``index`` of ``plane`` (independent of batching)."""
    state = np.random.SeedSequence([int(seed), PLANES.index(plane), int(index)]).generate_state(2)
    return int(state[0]) | (int(state[1]) << 32)


def make_denoiser(net: torch.nn.Module, device: torch.device, amp: torch.dtype | None) -> Denoiser:
    """Wrap a network: channels-last input, autocast to ``amp``, float32 output."""
    net.to(device=device, memory_format=torch.channels_last)

    def denoise(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        x = x.contiguous(memory_format=torch.channels_last)
        with autocast(device, amp):
            return net(x, t).float()

    return denoise


@dataclass(frozen=True)
class PlaneLayout:
    """How the slices of one plane are cut from the LR volume and placed on a canvas."""

    plane: str
    slice_axis: int  # volume axis enumerating the slices
    dim: int  # tensor dim (2 or 3) of the through-plane direction inside a slice
    hr_shape: tuple[int, int]  # HR slice shape
    pad: tuple[int, int, int, int]  # (top, bottom, left, right) to the UNet multiple

    @classmethod
    def make(cls, plane: str, axis: int, hr_volume_shape: Sequence[int], factor: int):
        """Layout of ``plane`` for an HR volume of ``hr_volume_shape``, through-plane ``axis``."""
        s_axis = PLANE_SLICE_AXIS[plane]
        in_plane = [i for i in range(3) if i != s_axis]
        if axis not in in_plane:
            raise ValueError(f"plane {plane} does not contain axis {axis}")
        hr_shape = tuple(int(hr_volume_shape[i]) for i in in_plane)
        pad: list[int] = []
        for n in hr_shape:
            extra = -n % factor
            pad += [extra // 2, extra - extra // 2]
        return cls(plane, s_axis, 2 + in_plane.index(axis), hr_shape, tuple(pad))

    @property
    def canvas_pixels(self) -> int:
        """Pixels of one padded slice."""
        top, bot, left, right = self.pad
        return (self.hr_shape[0] + top + bot) * (self.hr_shape[1] + left + right)


def super_resolve_plane(
    lr: np.ndarray,
    operator: SliceOperator,
    model: PlaneModel,
    *,
    steps: int = DEFAULT_STEPS,
    eta: float = 0.0,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    dtype: str = "auto",
    slices: Sequence[int] | None = None,
    progress: Callable[[int], None] | None = None,
    background: float = BACKGROUND,
    init: np.ndarray | None = None,
    t_start: float = 1.0,
) -> tuple[np.ndarray, int]:
    """DDNM on every slice (or the given ``slices``) of ``model.plane``.

    Parameters
    ----------
    lr : ndarray
        Standardized LR volume; ``operator.shape[0]`` samples along ``operator.axis``.
    operator : SliceOperator
        Through-plane degradation.
    model : PlaneModel
        Prior of the plane.
    steps, eta, seed, device, batch_size, dtype
        As in :func:`super_resolve`.
    slices : sequence of int, optional
        Slice indices to process (default: all); the output stacks them in that order.
        Slices whose LR data are all background (``<= background``, e.g. the padding
        around a small field of view) are not sampled: they get the minimum-norm solution
        ``A⁺y``, which is what DDNM keeps of them anyway up to the prior's hallucinations.
    progress : callable, optional
        Called with the number of slice-steps done after each step.
    init, t_start
        Warm start, as in :func:`super_resolve` (``t_start < 1`` without ``init`` is a
        ``ValueError`` of :func:`~bida_app.diffusion.ddnm.ddnm_sample`).

    Returns
    -------
    volume : ndarray
        HR volume of the plane (float32), slices stacked along the plane's slice axis.
    batch_size : int
        The batch size finally used.
    """
    dev = resolve_device(device)
    amp = amp_dtype(dev, dtype)
    axis = operator.axis
    hr_vol_shape = list(lr.shape)
    hr_vol_shape[axis] = operator.shape[1]
    lay = PlaneLayout.make(model.plane, axis, hr_vol_shape, model.factor)
    stack = np.moveaxis(np.asarray(lr, dtype=np.float32), lay.slice_axis, 0)
    index = list(range(stack.shape[0])) if slices is None else [int(i) for i in slices]
    warm = None
    if init is not None:
        if tuple(init.shape) != tuple(hr_vol_shape):
            raise ValueError(f"init of shape {init.shape}, expected {tuple(hr_vol_shape)}")
        warm = np.moveaxis(np.asarray(init, dtype=np.float32), lay.slice_axis, 0)
    out = np.empty((len(index), 1, *lay.hr_shape), dtype=np.float32)
    denoise = make_denoiser(model.net, dev, amp)
    empty = [j for j, k in enumerate(index) if bool(np.all(stack[k] <= background))]
    if empty:
        base = np.moveaxis(operator.pinv(np.asarray(lr, dtype=np.float64)), lay.slice_axis, 0)
        for j in empty:
            out[j, 0] = base[index[j]]
        if progress is not None:
            progress(len(empty) * steps)
        logger.debug("%s: %d background-only slices take A+y", model.plane, len(empty))
    skip = set(empty)
    todo = [j for j in range(len(index)) if j not in skip]

    done = [0]  # slice-steps reported to ``progress`` in the current batch

    def step_cb(_i: int, n: int) -> None:
        done[0] += n
        if progress is not None:
            progress(n)

    def run(batch: list[int]) -> torch.Tensor:
        done[0] = 0
        y = torch.from_numpy(stack[batch][:, None]).to(dev)
        gens = [torch.Generator().manual_seed(slice_seed(seed, model.plane, k)) for k in batch]
        return ddnm_sample(
            denoise,
            y,
            operator,
            lay.dim,
            pad=lay.pad,
            steps=steps,
            eta=eta,
            generators=gens,
            callback=lambda i: step_cb(i, len(batch)),
            x_init=None if warm is None else torch.from_numpy(warm[batch][:, None]).to(dev),
            t_start=t_start,
        )

    bs = batch_size or auto_batch_size(lay, max(1, len(todo)), dev, denoise)
    pos = 0
    with torch.inference_mode():
        while pos < len(todo):
            rows = todo[pos : pos + bs]
            batch = [index[j] for j in rows]
            try:
                res = run(batch)
            except torch.cuda.OutOfMemoryError:
                if bs == 1:
                    raise
                bs = max(1, bs // 2)
                if progress is not None:
                    progress(-done[0])  # the batch is redone
                torch.cuda.empty_cache()
                logger.warning("CUDA out of memory; retrying %s with batch %d", lay.plane, bs)
                continue
            out[rows] = res.cpu().numpy()
            pos += len(batch)
    return np.moveaxis(out[:, 0], 0, lay.slice_axis), bs


def auto_batch_size(lay: PlaneLayout, n: int, dev: torch.device, denoise: Denoiser) -> int:
    """Slices per batch for ``n`` slices of layout ``lay``.

    CPU: :data:`CPU_BATCH_PIXELS` canvas pixels. CUDA: the activation memory of a probe
    batch sets how many slices fit in 60 % of the free memory (at most
    :data:`CUDA_BATCH_BYTES`).
    """
    if dev.type != "cuda":
        return max(1, min(n, CPU_BATCH_PIXELS // lay.canvas_pixels))
    probe = min(n, 4)
    h = lay.hr_shape[0] + lay.pad[0] + lay.pad[1]
    w = lay.hr_shape[1] + lay.pad[2] + lay.pad[3]
    torch.cuda.synchronize(dev)
    base = torch.cuda.memory_allocated(dev)
    torch.cuda.reset_peak_memory_stats(dev)
    with torch.inference_mode():
        denoise(torch.zeros(probe, 1, h, w, device=dev), torch.ones(probe, device=dev))
    per_slice = max(1, (torch.cuda.max_memory_allocated(dev) - base) // probe)
    free, _ = torch.cuda.mem_get_info(dev)
    budget = min(0.6 * free, CUDA_BATCH_BYTES)
    bs = int(max(1, min(n, budget // (2 * per_slice))))  # 2x: sampler tensors beside the net
    logger.info("%s: %.1f MB per slice, batch %d", lay.plane, per_slice / 2**20, bs)
    return bs


def _check_inputs(lr: np.ndarray, operator: SliceOperator, n_samples: int, steps: int) -> None:
    if lr.ndim != 3:
        raise BidaError(f"BiDA needs a 3D volume, got shape {lr.shape}", ExitCode.BAD_DATA)
    if lr.shape[operator.axis] != operator.shape[0]:
        raise BidaError(
            f"LR volume has {lr.shape[operator.axis]} slices along axis {operator.axis} but "
            f"the slice operator expects {operator.shape[0]}",
            ExitCode.BAD_DATA,
        )
    if not np.all(np.isfinite(lr)):
        raise BidaError("LR volume contains NaN or infinite values", ExitCode.BAD_DATA)
    if n_samples < 1 or steps < 1:
        raise ValueError("n_samples and steps must be >= 1")


def shrink_null_space(
    mean: np.ndarray, std: np.ndarray, lr: np.ndarray, operator: SliceOperator
) -> np.ndarray:
    """Shrink the null-space part of the posterior mean where the samples disagree.

    With ``z = (I − A⁺A) mean`` (what the prior added beyond the data) and the per-voxel
    sample standard deviation ``s``, the output is ``A⁺y + (I − A⁺A)(w z)`` with the
    Wiener-like weight ``w = z² / (z² + s²)``: voxels where the K samples agree keep the
    prior's detail, voxels where they scatter fall back towards the minimum-norm solution
    ``A⁺y``. The result stays exactly consistent with the data (``A x = y``).

    Parameters
    ----------
    mean, std : ndarray
        Posterior mean and standard deviation over the samples (HR grid).
    lr : ndarray
        Measured LR volume ``y``.
    operator : SliceOperator
        The degradation ``A``.

    Returns
    -------
    ndarray
        The shrunk HR volume (float32).

    Examples
    --------
    >>> from bida_app.physics import SliceOperator, make_profile
    >>> op = SliceOperator(10, np.arange(2) * 5 + 2.0, 0.2, make_profile("gaussian", 1.0), 0)
    >>> x = np.random.default_rng(0).normal(size=(10, 3))
    >>> y = op(x)
    >>> agree = shrink_null_space(x, np.zeros_like(x), y, op)
    >>> bool(np.allclose(agree, x, atol=1e-6))
    True
    >>> scatter = shrink_null_space(x, np.full_like(x, 1e6), y, op)
    >>> bool(np.allclose(scatter, op.pinv(y), atol=1e-4))
    True
    """
    m = np.asarray(mean, dtype=np.float64)
    null = operator.null_projector(m)
    s2 = np.asarray(std, dtype=np.float64) ** 2
    z2 = null**2
    weight = np.divide(z2, z2 + s2, out=np.ones_like(z2), where=(z2 + s2) > 0)
    out = operator.pinv(np.asarray(lr, dtype=np.float64)) + operator.null_projector(weight * null)
    return out.astype(np.float32)


def super_resolve(
    lr: np.ndarray,
    operator: SliceOperator,
    models: dict[str, PlaneModel],
    *,
    steps: int = DEFAULT_STEPS,
    eta: float = 0.0,
    n_samples: int = 1,
    seed: int = 0,
    device: str | torch.device = "cpu",
    batch_size: int | None = None,
    dtype: str = "auto",
    progress: bool = True,
    planes: Iterable[str] | None = None,
    null_shrinkage: bool = False,
    init: np.ndarray | None = None,
    t_start: float = 1.0,
) -> BidaResult:
    """BiDA: DDNM on both planes containing the through-plane axis, then average.

    Parameters
    ----------
    lr : ndarray, shape (X, Y, Z)
        Standardized LR volume in RAS order, ``operator.shape[0]`` slices along
        ``operator.axis``; the two other axes already on the models' in-plane voxel size.
    operator : SliceOperator
        Through-plane degradation ``A`` (HR → LR) along ``operator.axis``.
    models : dict of str to PlaneModel
        Plane priors (see :func:`~bida_app.models.load_plane_models`); the two planes
        containing the through-plane axis are required.
    steps : int
        DDIM steps per slice (16 in the paper; :data:`bida_app.config.DEFAULT_STEPS`).
    eta : float
        0: deterministic DDIM; > 0: fresh noise at each step.
    n_samples : int
        Posterior samples; sample ``k`` uses seed ``seed + k``. Their mean is the output and
        their per-voxel standard deviation the uncertainty map.
    seed : int
        Seed of the first sample; every slice's noise derives from (seed, plane, slice).
    device : str
        ``"cpu"``, ``"cuda"``, ``"cuda:1"`` or ``"auto"``. On the CPU, torch's thread count
        (set by the caller, :func:`bida_app.device.set_threads`) is spent on running the
        plane × sample jobs concurrently (:func:`bida_app.device.cpu_workers`); with one
        thread they run one after the other, as in 0.2.0.
    batch_size : int, optional
        Slices per batch; default: sized to the device (CUDA: from free memory, halved on
        out-of-memory).
    dtype : str
        ``"auto"`` (bfloat16 autocast on CUDA, float32 on CPU), ``"float32"``,
        ``"bfloat16"`` or ``"float16"``.
    progress : bool
        Show a tqdm progress bar.
    planes : iterable of str, optional
        Override the planes (default :func:`planes_for_axis`); e.g. one plane only.
    null_shrinkage : bool
        With ``n_samples > 1``, shrink the null-space part of the mean where the samples
        disagree (:func:`shrink_null_space`); beyond the paper.
    init : ndarray, optional
        Warm start on the HR grid (``operator.shape[1]`` samples along the axis), e.g. the
        data-consistent cubic estimate; used when ``t_start < 1``. Beyond the paper.
    t_start : float
        Flow time in (0, 1] the sampler starts from: 1 is pure noise (the paper); below 1
        every slice starts from ``init`` noised to that time and the ``steps`` are spent on
        the remaining interval (:func:`~bida_app.diffusion.ddnm.ddnm_sample`).

    Returns
    -------
    BidaResult
        Mean HR volume (``operator.shape[1]`` samples along the axis), std map, residual.
    """
    from tqdm.auto import tqdm

    lr = np.asarray(lr, dtype=np.float32)
    _check_inputs(lr, operator, n_samples, steps)
    use = tuple(planes) if planes is not None else planes_for_axis(operator.axis)
    missing = [p for p in use if p not in models]
    if missing:
        raise BidaError(
            f"BiDA along voxel axis {operator.axis} needs the {' and '.join(use)} models; "
            f"missing: {', '.join(missing)} (train one with `bida train --plane "
            f"{missing[0]}` or pass --weights)",
            ExitCode.MISSING_INPUT,
        )
    dev = resolve_device(device)
    amp = amp_dtype(dev, dtype)
    hr_shape = list(lr.shape)
    hr_shape[operator.axis] = operator.shape[1]
    n_slices = {p: lr.shape[PLANE_SLICE_AXIS[p]] for p in use}
    total = n_samples * steps * sum(n_slices.values())
    bar = tqdm(total=total, desc="BiDA", unit="slice-step", disable=not progress, leave=False)

    mean = np.zeros(hr_shape, dtype=np.float64)
    m2 = np.zeros(hr_shape, dtype=np.float64) if n_samples > 1 else None
    timings = {p: 0.0 for p in use}
    batches: dict[str, int] = {}
    jobs = [(k, plane) for k in range(n_samples) for plane in use]
    workers, intra = cpu_workers(dev, len(jobs))
    lock = threading.Lock()

    def tick(n: int) -> None:
        with lock:
            bar.update(n)

    def job(k: int, plane: str) -> tuple[np.ndarray, int, float]:
        t0 = time.perf_counter()
        vol, bs = super_resolve_plane(
            lr,
            operator,
            models[plane],
            steps=steps,
            eta=eta,
            seed=seed + k,
            device=dev,
            batch_size=batch_size,
            dtype=dtype,
            progress=tick,
            init=init,
            t_start=t_start,
        )
        return vol, bs, time.perf_counter() - t0

    for plane in use:  # once, before any worker thread uses the network
        models[plane].net.to(device=dev, memory_format=torch.channels_last)
    t_all = time.perf_counter()
    try:
        with intraop_threads(intra):
            if workers == 1:
                done = [job(k, plane) for k, plane in jobs]
            else:  # planes and samples are independent: one job per worker thread
                with ThreadPoolExecutor(workers, thread_name_prefix="bida") as pool:
                    done = list(pool.map(lambda kp: job(*kp), jobs))
    finally:
        bar.close()
    for k in range(n_samples):
        sample = np.zeros(hr_shape, dtype=np.float64)
        for plane in use:
            vol, batches[plane], seconds = done[k * len(use) + use.index(plane)]
            timings[plane] += seconds
            sample += vol
        sample /= len(use)
        delta = sample - mean
        mean += delta / (k + 1)
        if m2 is not None:
            m2 += delta * (sample - mean)
    timings["total"] = time.perf_counter() - t_all
    std = np.sqrt(m2 / (n_samples - 1)).astype(np.float32) if m2 is not None else None
    if null_shrinkage and std is None:
        logger.warning("null-space shrinkage needs n_samples > 1: not applied")
    if null_shrinkage and std is not None:
        mean = shrink_null_space(mean, std, lr, operator)
    mean = mean.astype(np.float32)
    residual = operator.relative_residual(mean, lr)
    logger.info("BiDA %s: %.1f s, residual %.2e", "+".join(use), timings["total"], residual)
    params = {
        "Planes": list(use),
        "Steps": steps,
        "StartTime": t_start,
        "Eta": eta,
        "NSamples": n_samples,
        "NullSpaceShrinkage": bool(null_shrinkage and std is not None),
        "Seed": seed,
        "BatchSize": batches,
        "Workers": workers,
        "ThreadsPerWorker": intra,
        "Parameterization": "flow",
        "Sampler": "DDIM + DDNM range-space replacement",
        "ModelSHA256": {p: models[p].sha256 for p in use},
    }
    return BidaResult(mean, std, residual, timings, device_info(dev, amp), params)
