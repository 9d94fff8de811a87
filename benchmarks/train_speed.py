"""Training steps per second of a plane prior (the real :class:`Trainer` step: augmentation,
bf16 autocast on CUDA, AdamW, gradient clipping, EMA) on synthetic 144×144 slices.

Run: ``python benchmarks/train_speed.py [--preset default] [--batch 64] [--steps 30]
[--warmup 5] [--device auto] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from bida_app.device import amp_dtype, resolve_device
from bida_app.training.data import SliceSet
from bida_app.training.trainer import TrainConfig, Trainer


def synthetic_slices(n: int = 256, shape: tuple[int, int] = (144, 144)) -> SliceSet:
    """``n`` smooth random slices in [-1, 1] (speed does not depend on their content)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[: shape[0], : shape[1]] / max(shape)
    slices = np.empty((n, *shape), np.float32)
    for i in range(n):
        f = rng.uniform(2, 8, size=2)
        slices[i] = np.sin(f[0] * np.pi * yy + rng.uniform(0, 6)) * np.cos(f[1] * np.pi * xx)
    full = np.array([0, shape[0], 0, shape[1]])
    return SliceSet(
        plane="axial",
        slices=slices,
        volume=np.arange(n) % 8,
        position=np.arange(n),
        bbox=np.tile(full, (n, 1)),
        sources=[f"synthetic{i}" for i in range(8)],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="default")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="timed steps")
    parser.add_argument("--warmup", type=int, default=5, help="untimed first steps")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--json", default="")
    args = parser.parse_args()

    dev = resolve_device(args.device)
    cfg = TrainConfig(
        plane="axial",
        steps=args.steps + args.warmup,
        preset=args.preset,
        batch_size=args.batch,
        device=str(dev),
        val_every=0,
        sample_every=0,
    )
    trainer = Trainer(synthetic_slices(), cfg, None, device=dev)
    for _ in range(args.warmup):
        trainer.train_step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
        torch.cuda.reset_peak_memory_stats(dev)
    t0 = time.perf_counter()
    for _ in range(args.steps):
        trainer.train_step()
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    seconds = time.perf_counter() - t0
    peak = torch.cuda.max_memory_allocated(dev) / 2**30 if dev.type == "cuda" else float("nan")
    row = {
        "device": str(dev),
        "preset": args.preset,
        "batch": args.batch,
        "dtype": str(amp_dtype(dev) or torch.float32).removeprefix("torch."),
        "steps_per_s": args.steps / seconds,
        "peak_vram_gb": peak,
        "n_params": trainer.net.n_params,
    }
    print(
        f"train {args.preset} batch {args.batch} on {dev} ({row['dtype']}): "
        f"{row['steps_per_s']:.2f} steps/s, peak {peak:.2f} GB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(row, indent=2))


if __name__ == "__main__":
    main()
