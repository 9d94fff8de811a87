"""Slice-profile physics: profiles, the degradation operator A and its pseudo-inverse."""

from .geometry import SliceGeometry, lr_centres_from_affines
from .operator import AxisOperator, SliceOperator
from .profiles import PROFILE_KINDS, SliceProfile, effective_fwhm, make_profile

__all__ = [
    "PROFILE_KINDS",
    "AxisOperator",
    "SliceGeometry",
    "SliceOperator",
    "SliceProfile",
    "effective_fwhm",
    "lr_centres_from_affines",
    "make_profile",
]
