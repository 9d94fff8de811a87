"""The 2D plane priors: UNet architecture, its configuration and weights on disk."""

from .config import PRESETS, UNetConfig, preset_name
from .unet import UNet
from .weights import (
    DEFAULT_WEIGHTS_DIR,
    PLANE_SLICE_AXIS,
    PLANES,
    PlaneModel,
    default_weights_dir,
    load_plane_model,
    load_plane_models,
    plane_slice_shape,
    save_plane_model,
    sha256_file,
    verify_plane_model,
)

__all__ = [
    "DEFAULT_WEIGHTS_DIR",
    "PLANES",
    "PLANE_SLICE_AXIS",
    "PRESETS",
    "preset_name",
    "PlaneModel",
    "default_weights_dir",
    "UNet",
    "UNetConfig",
    "load_plane_model",
    "load_plane_models",
    "plane_slice_shape",
    "save_plane_model",
    "sha256_file",
    "verify_plane_model",
]
