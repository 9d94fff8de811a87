"""Time the through-plane operator A, its adjoint A.H and pseudo-inverse A⁺ on the model grid.

A 144×144×64 HR volume (through-plane axis 1, 0.2 mm) degraded 5× (1 mm SLR slices), in
float32, with NumPy, torch on the CPU and torch on CUDA when available. Prints one table row
per backend and operation: the best of several repeats, and its ratio to NumPy.

Run: ``python benchmarks/physics_operator.py [--repeats N] [--threads N]``
"""

from __future__ import annotations

import argparse
import logging
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from bida_app.physics import SliceGeometry, SliceOperator

logger = logging.getLogger("benchmarks.physics_operator")

SHAPE = (144, 144, 64)
AXIS = 1
HR_MM = 0.2
FACTOR = 5.0


def best_time(fn: Callable[[], Any], repeats: int, sync: Callable[[], None]) -> float:
    """Best wall time (s) of ``fn`` over ``repeats`` runs, after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)

    spacing = FACTOR * HR_MM
    geom = SliceGeometry.from_hr(AXIS, SHAPE[AXIS], spacing, spacing, HR_MM)
    op = SliceOperator.from_geometry(geom, "slr")
    rng = np.random.default_rng(0)
    x_np = rng.random(SHAPE, dtype=np.float32)
    y_np = op(x_np)

    backends: list[tuple[str, Any, Any, Callable[[], None]]] = [
        ("numpy", x_np, y_np, lambda: None),
        ("torch-cpu", torch.from_numpy(x_np), torch.from_numpy(y_np), lambda: None),
    ]
    if torch.cuda.is_available():
        backends.append(
            (
                "torch-cuda",
                torch.from_numpy(x_np).cuda(),
                torch.from_numpy(y_np).cuda(),
                torch.cuda.synchronize,
            )
        )
    else:
        logger.info("CUDA not available: skipping torch-cuda")

    logger.info(
        "A: %s -> %s along axis %d (%.1fx, SLR, float32); torch threads %d; best of %d",
        SHAPE,
        geom.lr_shape(SHAPE),
        AXIS,
        FACTOR,
        torch.get_num_threads(),
        args.repeats,
    )
    ops = {
        "A": (op, 0),
        "A.H": (op.H, 1),
        "A.pinv": (op.pinv, 1),
        "I-A.pinv A": (op.null_projector, 0),
        "consistency": (None, 2),
    }
    rows, ref = [], {}
    for name, x, y, sync in backends:
        for label, (fn_op, kind) in ops.items():
            if kind == 0:
                fn = lambda o=fn_op, a=x: o(a)  # noqa: E731
            elif kind == 1:
                fn = lambda o=fn_op, a=y: o(a)  # noqa: E731
            else:
                fn = lambda a=x, b=y: op.consistency(a, b)  # noqa: E731
            t = best_time(fn, args.repeats, sync)
            ref.setdefault(label, t)
            rows.append((name, label, t * 1e3, ref[label] / t))
    logger.info("%-11s %-12s %10s %14s", "backend", "operation", "time [ms]", "speed vs numpy")
    for name, label, ms, ratio in rows:
        logger.info("%-11s %-12s %10.3f %13.2fx", name, label, ms, ratio)


if __name__ == "__main__":
    main()
