"""Slice-profile physics: profiles, the degradation operator A and its pseudo-inverse.

``simulate_lr``/``simulate_bids`` live in :mod:`bida_app.physics.simulate`; SigPy is imported
only when an SLR profile is first built.
"""

from .geometry import WORLD_AXES, SliceGeometry, lr_centres_from_affines, voxel_axis
from .operator import AxisOperator, SliceOperator
from .profiles import (
    PROFILE_KINDS,
    SliceProfile,
    effective_fwhm,
    fwhm_of_samples,
    make_profile,
    measure_fwhm,
    slr_profile,
)

__all__ = [
    "PROFILE_KINDS",
    "WORLD_AXES",
    "AxisOperator",
    "SliceGeometry",
    "SliceOperator",
    "SliceProfile",
    "effective_fwhm",
    "fwhm_of_samples",
    "lr_centres_from_affines",
    "make_profile",
    "measure_fwhm",
    "slr_profile",
    "voxel_axis",
]
