"""Shared pytest fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """Directory of the real rodent scans (``../shared/data``); skip if absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED_DATA


@pytest.fixture(scope="module")
def thick_rat():
    """A small rat phantom with 1 mm coronal slices (axis 1) simulated by the Gaussian A."""
    import nibabel as nib
    import numpy as np

    from bida_app.demo.phantom import make_rat_phantom
    from bida_app.physics import SliceGeometry, SliceOperator

    ph = make_rat_phantom((32, 40, 24), 0.2, seed=2)
    geom = SliceGeometry.from_hr(1, 40, 1.0, 1.0, 0.2)
    lr = SliceOperator.from_geometry(geom)(ph.image.astype(np.float64))
    return nib.Nifti1Image(lr.astype(np.float32), np.diag([0.2, 1.0, 0.2, 1.0]))


@pytest.fixture(scope="module")
def random_models():
    """Untrained tiny plane models (seed 1): the plumbing of BiDA, not its quality."""
    import torch

    from bida_app.models import PLANES, PlaneModel, UNet, UNetConfig

    tiny = UNetConfig.preset("tiny")
    out = {}
    for plane in PLANES:
        torch.manual_seed(1)
        out[plane] = PlaneModel(plane, UNet(tiny).eval(), tiny)
    return out
