"""Seconds per 144×144×64 volume for BiDA inference (2 planes × 16 steps), optimized vs naive.

A synthetic phantom on the model grid (0.2 mm), degraded 5× along A-P (axis 1, a coronal
acquisition), so the planes are axial (64 slices of 144×144) and sagittal (144 slices of
144×64). The UNet has random weights of the chosen preset (speed does not depend on them).

For each device (CPU always, CUDA when available) it times

* **bida**: :func:`bida_app.diffusion.bida.super_resolve_plane` as the workflow runs it
  (auto-sized batches, channels-last, bf16 autocast on CUDA / ``--cpu-dtype`` on CPU);
* **naive**: the reference, fp32, one slice at a time, contiguous memory format;

and prints s/volume, peak memory and the ratio naive/bida measured in the same run.
With ``--max-slices N`` (and ``--naive-slices M`` for the slow reference) only N (M) evenly
spaced slices per plane are processed and the time per volume is **extrapolated** from the
measured seconds per slice of each plane; the table marks extrapolated rows. Each plane is
timed batch by batch: "median" uses the median batch, "best" the fastest one. On a shared
2-core machine other jobs only ever slow a batch down, so "best" estimates an idle machine
and "median" what a busy one gives.

Run: ``python benchmarks/inference.py [--preset default] [--steps 16] [--max-slices N]
[--naive-slices N] [--cpu-dtype float32|bfloat16] [--devices cpu,cuda] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from table import print_table  # benchmarks/table.py (scripts run from this folder)

from bida_app.demo.phantom import make_rat_phantom
from bida_app.device import amp_dtype
from bida_app.diffusion.bida import (
    PlaneLayout,
    auto_batch_size,
    make_denoiser,
    slice_seed,
    super_resolve_plane,
)
from bida_app.diffusion.ddnm import ddnm_sample
from bida_app.models import PlaneModel, UNet, UNetConfig
from bida_app.models.weights import PLANE_SLICE_AXIS
from bida_app.physics import SliceGeometry, SliceOperator

logger = logging.getLogger("benchmarks.inference")

GRID = (144, 144, 64)
AXIS = 1
FACTOR = 5.0
HR_MM = 0.2
PLANES = ("axial", "sagittal")
METHODS = ("bida", "naive")


@dataclass
class Row:
    """One measured configuration (seconds per volume from the median and the best chunk)."""

    device: str
    method: str
    dtype: str
    batch: str
    slices_measured: int
    slices_total: int
    s_per_volume_median: float
    s_per_volume_best: float
    peak_mem_gb: float
    extrapolated: bool


def standardized_phantom() -> np.ndarray:
    """A 144×144×64 phantom scaled to [-1, 1] by its 1st/99th percentiles."""
    img = make_rat_phantom(GRID, voxel_mm=HR_MM, seed=0).image
    lo, hi = np.percentile(img, [1, 99])
    return np.clip(2 * (img - lo) / (hi - lo) - 1, -1, 1).astype(np.float32)


def pick(n: int, k: int | None) -> list[int]:
    """``k`` evenly spaced indices of ``range(n)`` (all when ``k`` is None or ≥ n)."""
    if k is None or k >= n:
        return list(range(n))
    return sorted({int(round(v)) for v in np.linspace(0, n - 1, k)})


def sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def reset_peak(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(dev)


def peak_gb(dev: torch.device) -> float:
    """CUDA: peak allocated by torch; CPU: the process's peak resident set (an upper bound)."""
    if dev.type == "cuda":
        return torch.cuda.max_memory_allocated(dev) / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def naive_plane(
    lr: np.ndarray, op: SliceOperator, model: PlaneModel, idx: list[int], steps: int, dev
) -> None:
    """The reference: fp32, contiguous, one slice per network call."""
    net = model.net.to(device=dev, memory_format=torch.contiguous_format)
    lay = PlaneLayout.make(model.plane, op.axis, GRID, model.factor)
    stack = np.moveaxis(lr, lay.slice_axis, 0)
    with torch.inference_mode():
        for k in idx:
            y = torch.from_numpy(np.ascontiguousarray(stack[k]))[None, None].to(dev)
            g = [torch.Generator().manual_seed(slice_seed(0, model.plane, k))]
            ddnm_sample(net, y, op, lay.dim, pad=lay.pad, steps=steps, generators=g)


def timed(run, chunk: list[int], dev: torch.device) -> tuple[float, float]:
    """Seconds per slice of ``run(chunk)`` and the CUDA peak memory (GB) during it."""
    reset_peak(dev)
    sync(dev)
    t0 = time.perf_counter()
    run(chunk)
    sync(dev)
    return (time.perf_counter() - t0) / len(chunk), peak_gb(dev)


def time_device(
    dev: torch.device, models: dict[str, PlaneModel], lr: np.ndarray, op, args
) -> list[Row]:
    """Rows for one device: optimized and naive, their batches interleaved plane by plane
    so that both see the same machine load."""
    dtype = args.cpu_dtype if dev.type == "cpu" else "auto"
    amp = amp_dtype(dev, dtype)
    max_slices = args.max_slices if dev.type == "cpu" else args.gpu_max_slices
    naive_k = args.naive_slices if dev.type == "cpu" else args.gpu_naive_slices
    repeats = args.repeats if dev.type == "cuda" else 1
    # warm-up: kernel selection, allocator, oneDNN primitives for both shapes
    for plane in PLANES:
        super_resolve_plane(lr, op, models[plane], steps=1, device=dev, dtype=dtype, slices=[0])
        naive_plane(lr, op, models[plane], [0], 1, dev)
    sync(dev)

    stats = {m: {"median": 0.0, "best": 0.0, "peak": 0.0, "n": 0, "batch": []} for m in METHODS}
    for plane in PLANES:
        model = models[plane]
        n = lr.shape[PLANE_SLICE_AXIS[plane]]
        lay = PlaneLayout.make(plane, AXIS, GRID, model.factor)
        idx = pick(n, max_slices)
        bs = auto_batch_size(lay, len(idx), dev, make_denoiser(model.net, dev, amp))

        def run_bida(chunk, model=model, bs=bs):
            super_resolve_plane(
                lr,
                op,
                model,
                steps=args.steps,
                device=dev,
                dtype=dtype,
                slices=chunk,
                batch_size=bs,
            )

        def run_naive(chunk, model=model):
            naive_plane(lr, op, model, chunk, args.steps, dev)

        plans = {
            "bida": (run_bida, [idx[i : i + bs] for i in range(0, len(idx), bs)] * repeats),
            "naive": (run_naive, [[k] for k in pick(n, naive_k)]),
        }
        times: dict[str, list[float]] = {m: [] for m in METHODS}
        for i in range(max(len(chunks) for _, chunks in plans.values())):
            for method, (run, chunks) in plans.items():
                if i < len(chunks):
                    per_slice, peak = timed(run, chunks[i], dev)
                    times[method].append(per_slice)
                    stats[method]["peak"] = max(stats[method]["peak"], peak)
        for method, (_, chunks) in plans.items():
            st = stats[method]
            st["median"] += float(np.median(times[method])) * n
            st["best"] += min(times[method]) * n
            st["n"] += len({k for c in chunks for k in c})
            st["batch"].append(f"{plane[:3]} {len(chunks[0])}")
            logger.info(
                "%s %s %s: %d batches, s/slice median %.3f best %.3f",
                dev,
                method,
                plane,
                len(chunks),
                np.median(times[method]),
                min(times[method]),
            )
    n_total = sum(lr.shape[PLANE_SLICE_AXIS[p]] for p in PLANES)
    dtypes = {"bida": str(amp or torch.float32).removeprefix("torch."), "naive": "float32"}
    return [
        Row(
            str(dev),
            m,
            dtypes[m],
            ", ".join(st["batch"]),
            st["n"],
            n_total,
            st["median"],
            st["best"],
            st["peak"],
            st["n"] < n_total,
        )
        for m, st in stats.items()
    ]


def volume_tflop(models: dict[str, PlaneModel], steps: int) -> float:
    """Network FLOPs of one volume (both planes, all steps), counted on one slice each."""
    from torch.utils.flop_counter import FlopCounterMode

    total = 0.0
    for plane in PLANES:
        n = GRID[PLANE_SLICE_AXIS[plane]]
        hw = [GRID[i] for i in range(3) if i != PLANE_SLICE_AXIS[plane]]
        net = models[plane].net.cpu()
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            net(torch.zeros(1, 1, *hw), torch.ones(1))
        total += fc.get_total_flops() * n * steps
    return total / 1e12


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default", help="UNet preset (default: default)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument(
        "--max-slices",
        type=int,
        default=None,
        help="CPU: slices per plane to run (default: all), rest extrapolated",
    )
    parser.add_argument(
        "--naive-slices",
        type=int,
        default=4,
        help="CPU: slices per plane for the naive reference (extrapolated)",
    )
    parser.add_argument("--gpu-max-slices", type=int, default=None)
    parser.add_argument("--gpu-naive-slices", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3, help="CUDA: repeats of each batch")
    parser.add_argument("--cpu-dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--devices", default="cpu,cuda", help="comma list among cpu,cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--json", default="", help="also write the rows to this JSON file")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    hr = standardized_phantom()
    geom = SliceGeometry.from_hr(AXIS, GRID[AXIS], FACTOR * HR_MM, FACTOR * HR_MM, HR_MM)
    op = SliceOperator.from_geometry(geom)
    lr = op(hr)
    cfg = UNetConfig.preset(args.preset)
    torch.manual_seed(0)
    models = {p: PlaneModel(p, UNet(cfg).eval(), cfg) for p in PLANES}
    n_params = models["axial"].net.n_params
    tflop = volume_tflop(models, args.steps)

    load0 = os.getloadavg()[0]
    devices = [d.strip() for d in args.devices.split(",") if d.strip()]
    rows: list[Row] = []
    for name in devices:
        if name == "cuda" and not torch.cuda.is_available():
            logger.info("no CUDA device: GPU rows skipped")
            continue
        rows += time_device(torch.device(name), models, lr, op, args)

    title = (
        f"BiDA inference, {GRID[0]}x{GRID[1]}x{GRID[2]} volume, {FACTOR:g}x along A-P, "
        f"planes {' + '.join(PLANES)}, {args.steps} steps, preset {args.preset!r} "
        f"({n_params / 1e6:.2f} M parameters per plane, {tflop:.1f} TFLOP per volume), "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, load average "
        f"before/after {load0:.1f}/{os.getloadavg()[0]:.1f}"
    )
    head = f"{'device':8} {'method':6} {'dtype':9} {'batch':16} {'slices':>9} "
    head += f"{'s/vol med':>10} {'s/vol best':>11} {'peak GB':>8} {'ratio':>6}"
    lines = []
    for row in rows:
        naive = next(r for r in rows if r.device == row.device and r.method == "naive")
        ratio = naive.s_per_volume_best / row.s_per_volume_best
        mark = "*" if row.extrapolated else " "
        lines.append(
            f"{row.device:8} {row.method:6} {row.dtype:9} {row.batch:16} "
            f"{row.slices_measured:>4}/{row.slices_total:<4} {row.s_per_volume_median:>9.1f}"
            f"{mark} {row.s_per_volume_best:>10.1f}{mark} {row.peak_mem_gb:>8.2f} {ratio:>6.2f}"
        )
    note = (
        "s/vol: seconds per volume from the median / the fastest batch's seconds per slice of "
        "each plane (a busy machine only slows batches down, so 'best' estimates an idle one). "
        "* extrapolated from the measured slices. ratio = naive best / this row's best. "
        "CPU peak = process peak RSS (upper bound); CUDA peak = torch max allocated."
    )
    print_table(title, head, lines, note)
    if args.json:
        meta = {
            "preset": args.preset,
            "params": n_params,
            "tflop_per_volume": tflop,
            "steps": args.steps,
        }
        with open(args.json, "w") as fh:
            json.dump({"meta": meta, "rows": [asdict(r) for r in rows]}, fh, indent=2)


if __name__ == "__main__":
    main()
