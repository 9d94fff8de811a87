"""Flow-matching diffusion: the parameterization, the DDNM sampler and BiDA."""

from .bida import BidaResult, planes_for_axis, super_resolve, super_resolve_plane
from .ddnm import RangeReplacement, ddnm_sample
from .flow import eps_from_v, flow_loss, interpolate, time_grid, velocity, x0_from_v

__all__ = [
    "BidaResult",
    "RangeReplacement",
    "ddnm_sample",
    "eps_from_v",
    "flow_loss",
    "interpolate",
    "planes_for_axis",
    "super_resolve",
    "super_resolve_plane",
    "time_grid",
    "velocity",
    "x0_from_v",
]
