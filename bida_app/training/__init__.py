"""Training of the plane priors (``bida train``) and the data pipeline it uses."""

from .config import TrainConfig
from .data import (
    PreparedVolume,
    PrepConfig,
    SliceSet,
    build_slices,
    find_inputs,
    prepare_volume,
    slices_as,
    slices_from_arrays,
    split_validation,
)
from .trainer import Trainer, TrainResult, train

__all__ = [
    "PrepConfig",
    "PreparedVolume",
    "SliceSet",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "build_slices",
    "find_inputs",
    "prepare_volume",
    "slices_as",
    "slices_from_arrays",
    "split_validation",
    "train",
]
