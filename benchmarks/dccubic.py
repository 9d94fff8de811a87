"""Seconds of the data-consistent cubic per regularisation, measured side by side in one run.

A rat-like phantom (:func:`bida_app.demo.phantom.make_rat_phantom`) at 0.1 mm in-plane with
1 mm coronal slices (the shape of the real rat scan of ../shared: 256 × 24 × 256), Rician noise
of 2 %, super-resolved to 0.2 mm along A-P by

* plain cubic B-spline interpolation;
* dccubic with the exact projection (``--dc_damping 0``);
* dccubic with the Tikhonov damping of 0.5.0 (``--dc_damping 0.1``);
* dccubic with the default noise-adaptive projection (``--dc_damping auto``: noise estimate,
  residual covariance, Wiener gain);

and prints the best of ``--repeats`` wall times and each one's ratio to the exact projection.

Run: ``python benchmarks/dccubic.py [--repeats N] [--shape 256 24 256]``
"""

from __future__ import annotations

import argparse
import logging

import nibabel as nib
import numpy as np
from physics_operator import best_time  # benchmarks/physics_operator.py (run from this folder)

from bida_app.demo.phantom import make_rat_phantom
from bida_app.methods.cubic import cubic_super_resolve
from bida_app.methods.dccubic import dc_cubic_super_resolve
from bida_app.physics.simulate import simulate_lr

logger = logging.getLogger("benchmarks.dccubic")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(256, 24, 256))
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    n_x, n_slices, n_z = args.shape
    hr_shape = (n_x, n_slices * 10, n_z)  # 0.1 mm isotropic; 1 mm slices along axis 1
    ph = make_rat_phantom(hr_shape, 0.1, seed=0, noise=0.0, bias_strength=0.0)
    hr = nib.Nifti1Image(ph.clean.astype(np.float32), ph.affine)
    lr, _ = simulate_lr(hr, thickness_mm=1.0, spacing_mm=1.0, axis="AP", noise=0.02, seed=0)
    logger.info("slices %s (1 mm along axis 1), output 0.2 mm; best of %d", lr.shape, args.repeats)

    runs = {
        "cubic": lambda: cubic_super_resolve(lr, 1, 1.0, 0.2),
        "dccubic, exact": lambda: dc_cubic_super_resolve(lr, 1, 1.0, 0.2, damping=0.0),
        "dccubic, λ = 0.1": lambda: dc_cubic_super_resolve(lr, 1, 1.0, 0.2, damping=0.1),
        "dccubic, auto (default)": lambda: dc_cubic_super_resolve(lr, 1, 1.0, 0.2, damping="auto"),
    }
    seconds = {name: best_time(fn, args.repeats, lambda: None) for name, fn in runs.items()}
    exact = seconds["dccubic, exact"]
    logger.info("| method | s | / exact |")
    logger.info("| --- | --- | --- |")
    for name, s in seconds.items():
        logger.info("| %s | %.2f | %.2f |", name, s, s / exact)


if __name__ == "__main__":
    main()
