"""BiDA on one real volume: the 0.2.0 default sampler setting vs the current default, side by side.

Volumes (``--volume``):

* ``mouse`` (default): the real ex-vivo mouse average ``mouse_rminc-120um_T2w`` (120 µm
  isotropic, in the skull). Thick slices are simulated along A-P (``--thickness`` mm, SLR
  profile, spacing = thickness), BiDA super-resolves them back to 120 µm, and the output is
  scored against the isotropic truth (PSNR over the head, inside the slab the slices cover).
* ``dsurqe``: the DSURQE mouse average (200 µm, brain-cropped), scored the same way.
* ``rat``: the real 1 mm coronal rat scan as acquired (no truth: the PSNR columns compare
  each output with the 0.2.0 output instead, and ``psnr_delta`` is ``nan``).

Each configuration runs in its own Python process (``--child``), so its thread count is set
before torch starts and its peak resident memory is its own. Configurations alternate
(old, new, new, old, ...) so that load from other jobs on a shared machine hits both alike.

* ``0.2.0``: one torch thread (the 0.2.0 ``--omp_nthreads 1`` default), 16 steps (the paper's).
* ``new``: the current defaults: ``--omp_nthreads`` = min(8, CPUs available) and
  ``bida_app.config.DEFAULT_STEPS`` steps (4 since 0.4.0); ``--new-steps``/``--new-threads``
  try other settings.

Seconds are the sampler's (``BidaTimings.total`` in the sidecar: both planes, all samples)
and the whole call (standardization, sampling, inverse, data consistency). The last line
reads ``speedup <old/new sampler seconds> psnr_delta <new - old PSNR in dB>``.

Run: ``python benchmarks/sampler_speed.py [--volume mouse|dsurqe|rat] [--samples K]
[--repeats R] [--new-steps N] [--new-threads N] [--json out.json]``
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
from table import print_table  # benchmarks/table.py (scripts run from this folder)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
VOLUMES = {
    "mouse": DATA / "mouse_rminc-120um_T2w.nii.gz",
    "dsurqe": DATA / "mouse_dsurqe-200um_T2w.nii.gz",
    "rat": DATA / "rat_coronal-1mm_T2w.nii.gz",
}
LOGGER = logging.getLogger("benchmarks.sampler_speed")
STEPS_0_2_0 = 16  # the 0.2.0 default, the paper's


def child(spec: dict) -> dict:
    """Run BiDA once as ``spec`` says (in this process); return timings and memory."""
    from bida_app.device import set_threads
    from bida_app.methods.bida import bida_super_resolve_image

    set_threads(spec["threads"])
    img = nib.load(spec["lr"])
    t0 = time.perf_counter()
    res = bida_super_resolve_image(
        img,
        through_axis=spec["axis"],
        thickness_mm=spec["thickness"],
        target_mm=spec["target"],
        steps=spec["steps"],
        n_samples=spec["samples"],
        seed=spec["seed"],
        device="cpu",
        progress=False,
    )
    seconds = time.perf_counter() - t0
    nib.save(res.image, spec["out"])
    timings = res.sidecar["BidaTimings"]
    return {
        "seconds": seconds,
        "sampler_seconds": timings["total"],
        "planes": {k: v for k, v in timings.items() if k != "total"},
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "threads": spec["threads"],
        "steps": spec["steps"],
    }


def prepare(volume: str, thickness: float, work: Path) -> tuple[Path, Path | None, int, float]:
    """LR input (simulated for the mouse volumes), truth, through-plane axis, target mm."""
    from bida_app.physics.simulate import simulate_lr

    path = VOLUMES[volume]
    if not path.is_file():
        raise SystemExit(f"{path}: not found (see ../shared/README.md)")
    img = nib.load(str(path))
    zooms = np.sqrt((img.affine[:3, :3] ** 2).sum(0))
    if volume == "rat":
        return path, None, int(np.argmax(zooms)), float(zooms.min())
    data = np.asarray(img.dataobj, np.float32)
    hr = nib.Nifti1Image(data, img.affine)
    lr, _ = simulate_lr(hr, thickness_mm=thickness, spacing_mm=thickness, axis="AP")
    lr_path = work / "lr.nii.gz"
    nib.save(lr, str(lr_path))
    truth = work / "truth.nii.gz"
    nib.save(hr, str(truth))
    lr_zooms = np.sqrt((lr.affine[:3, :3] ** 2).sum(0))
    return lr_path, truth, int(np.argmax(lr_zooms)), float(zooms.min())


def score(out: Path, ref: Path, lr: Path, axis: int) -> float:
    """PSNR (dB) of ``out`` against ``ref`` over the head inside the slab the LR slices span.

    The output is resampled onto the reference grid (cubic) when the grids differ. Head:
    reference above 10 % of its 99th percentile; the slab drops one LR slice at each end.
    """
    from bida_app.evaluation.metrics import psnr
    from bida_app.preprocess.resample import resample_to_grid

    ref_img, out_img, lr_img = nib.load(str(ref)), nib.load(str(out)), nib.load(str(lr))
    x = np.asarray(out_img.dataobj, np.float64)
    y = np.asarray(ref_img.dataobj, np.float64)
    if x.shape != y.shape or not np.allclose(out_img.affine, ref_img.affine, atol=1e-4):
        x = resample_to_grid(x, out_img.affine, ref_img.affine, y.shape, order=3)
    # world positions of the first and last LR slice centres, as HR voxel indices
    ends = np.array([[0, 0, 0, 1], [0, 0, 0, 1]], float)
    ends[1, axis] = lr_img.shape[axis] - 1
    world = lr_img.affine @ ends.T
    hr_ax = int(np.argmax(np.abs(np.linalg.inv(ref_img.affine)[:3, :3] @ lr_img.affine[:3, axis])))
    idx = np.sort((np.linalg.inv(ref_img.affine) @ world)[hr_ax])
    spacing = float(np.sqrt((lr_img.affine[:3, axis] ** 2).sum()))
    hr_mm = float(np.sqrt((ref_img.affine[:3, hr_ax] ** 2).sum()))
    margin = spacing / hr_mm
    lo, hi = max(0, int(np.ceil(idx[0] + margin))), min(y.shape[hr_ax], int(idx[1] - margin))
    mask = y > 0.1 * np.percentile(y, 99)
    slab = np.zeros_like(mask)
    sl = [slice(None)] * 3
    sl[hr_ax] = slice(lo, hi)
    slab[tuple(sl)] = True
    return psnr(x, y, mask=mask & slab)


def run_child(spec: dict) -> dict:
    """``spec`` in a fresh interpreter with OpenMP sized before torch loads."""
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"])}
    proc = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child run failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    from bida_app.config import DEFAULT_STEPS
    from bida_app.device import available_cpus, default_omp_nthreads

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", choices=sorted(VOLUMES), default="mouse")
    parser.add_argument("--thickness", type=float, default=1.0, help="simulated slices (mm)")
    parser.add_argument("--samples", type=int, default=1, help="posterior samples per run")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each configuration")
    parser.add_argument(
        "--new-steps", type=int, default=0, help="steps of the new setting (0: the default)"
    )
    parser.add_argument(
        "--new-threads", type=int, default=0, help="threads of the new setting (0: default)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="", help="also write the measurements here")
    parser.add_argument("--child", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    new_threads = args.new_threads or default_omp_nthreads(available_cpus())
    configs = {
        "0.2.0": {"threads": 1, "steps": STEPS_0_2_0},
        "new": {"threads": new_threads, "steps": args.new_steps or DEFAULT_STEPS},
    }
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bida-speed-") as tmp:
        work = Path(tmp)
        lr, truth, axis, target = prepare(args.volume, args.thickness, work)
        thickness = (
            args.thickness
            if truth is not None
            else float(np.sqrt((nib.load(str(lr)).affine[:3, axis] ** 2).sum()))
        )
        runs: dict[str, list[dict]] = {name: [] for name in configs}
        for rep in range(args.repeats):
            order = list(configs) if rep % 2 == 0 else list(configs)[::-1]
            for name in order:
                out = work / f"{name}-{rep}.nii.gz"
                spec = {
                    **configs[name],
                    "lr": str(lr),
                    "out": str(out),
                    "axis": axis,
                    "thickness": thickness,
                    "target": target,
                    "samples": args.samples,
                    "seed": args.seed,
                }
                res = run_child(spec)
                ref = truth or (work / "0.2.0-0.nii.gz")
                res["psnr"] = score(out, ref, lr, axis) if ref.exists() else float("nan")
                runs[name].append(res)
                LOGGER.info(
                    "%s run %d: sampler %.1f s, total %.1f s, peak %.2f GB, PSNR %.2f dB",
                    name,
                    rep,
                    res["sampler_seconds"],
                    res["seconds"],
                    res["peak_rss_gb"],
                    res["psnr"],
                )
    load1 = os.getloadavg()[0]

    def med(name: str, key: str) -> float:
        return float(np.median([r[key] for r in runs[name]]))

    title = (
        f"BiDA sampler speed, volume {args.volume} ({VOLUMES[args.volume].name}), "
        f"{args.samples} sample(s), {args.repeats} run(s) each, CPUs available "
        f"{available_cpus()}, load average before/after {load0:.1f}/{load1:.1f}"
    )
    head = f"{'setting':8} {'threads':>7} {'steps':>5} {'sampler s':>10} {'total s':>8} "
    head += f"{'peak GB':>8} {'PSNR dB':>8}"
    lines = [
        f"{name:8} {cfg['threads']:>7} {cfg['steps']:>5} {med(name, 'sampler_seconds'):>10.1f} "
        f"{med(name, 'seconds'):>8.1f} {max(r['peak_rss_gb'] for r in runs[name]):>8.2f} "
        f"{med(name, 'psnr'):>8.2f}"
        for name, cfg in configs.items()
    ]
    note = (
        "medians over the runs; peak = the run's process peak resident memory; PSNR over the "
        "head inside the covered slab"
        + (" (against the 0.2.0 output: no truth for this volume)" if truth is None else "")
    )
    print_table(title, head, lines, note)
    if args.json:
        Path(args.json).write_text(json.dumps({"configs": configs, "runs": runs}, indent=2))
    speedup = med("0.2.0", "sampler_seconds") / med("new", "sampler_seconds")
    delta = med("new", "psnr") - med("0.2.0", "psnr") if truth is not None else float("nan")
    print(f"speedup {speedup:.2f} psnr_delta {delta:.3f}")


if __name__ == "__main__":
    main()
