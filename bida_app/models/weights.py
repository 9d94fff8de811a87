"""Plane-model weights on disk: safetensors + a JSON card whose SHA-256 loading checks.

A weights directory holds, for each plane, ``<plane>.safetensors`` (the UNet's state dict)
and ``<plane>.json`` (the card: UNet config, plane, slice shape, voxel size, intensity
convention, parameterization, training summary, parameter count, and the SHA-256 of the
safetensors file). :func:`load_plane_models` refuses a file whose checksum differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import BidaError, ExitCode
from ..preprocess.standardize import CLIP_PERCENTILES, MODEL_GRID
from ..utils.io import atomic_path, write_json
from .config import UNetConfig, preset_name
from .unet import UNet

logger = logging.getLogger(__name__)

PLANES: tuple[str, ...] = ("axial", "coronal", "sagittal")
"""Slice planes; a slice of plane ``p`` is the volume indexed at one position of
``PLANE_SLICE_AXIS[p]`` (RAS voxel order)."""

PLANE_SLICE_AXIS: dict[str, int] = {"axial": 2, "coronal": 1, "sagittal": 0}
"""Volume axis that enumerates the slices of each plane."""

PLANES_FOR_AXIS: dict[int, tuple[str, str]] = {
    0: ("axial", "coronal"),
    1: ("axial", "sagittal"),
    2: ("coronal", "sagittal"),
}
"""The two planes whose slices contain each through-plane (RAS voxel) axis."""

# MODEL_GRID: the standard model grid (RAS voxels) at MODEL_VOXEL_MM, defined with the
# standardization that pads to it.

MODEL_VOXEL_MM = 0.2
INTENSITY_CONVENTION = "[-1,1] p1/p99"
PARAMETERIZATION = "flow"
CARD_FORMAT = "bida-plane-model/1"
DEFAULT_WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "data" / "models"
"""Where the package's shipped weights live."""


def default_weights_dir() -> Path | None:
    """The shipped weights directory, or None when no model card is installed there."""
    if DEFAULT_WEIGHTS_DIR.is_dir() and any(DEFAULT_WEIGHTS_DIR.glob("*.json")):
        return DEFAULT_WEIGHTS_DIR
    return None


def resolve_weights_dir(weights_dir: str | Path | None) -> Path:
    """The folder of plane models to use: ``weights_dir``, else the shipped one.

    Raises
    ------
    BidaError
        Exit 66 when none is given and no weights are installed. (A given folder is not
        checked here: loading names the plane file that is missing.)
    """
    if weights_dir:
        return Path(weights_dir)
    root = default_weights_dir()
    if root is None:
        raise BidaError(
            "no BiDA weights are installed with this version; pass --weights DIR "
            "(a folder written by 'bida train')",
            ExitCode.MISSING_INPUT,
        )
    return root


def plane_slice_shape(plane: str, grid: tuple[int, int, int] = MODEL_GRID) -> tuple[int, int]:
    """Shape of one slice of ``plane`` cut from a volume of shape ``grid``.

    Examples
    --------
    >>> plane_slice_shape("axial"), plane_slice_shape("sagittal")
    ((144, 144), (144, 64))
    """
    check_plane(plane)
    axis = PLANE_SLICE_AXIS[plane]
    return tuple(n for i, n in enumerate(grid) if i != axis)  # type: ignore[return-value]


def check_plane(plane: str) -> str:
    """Return ``plane`` if it is a known plane name, else raise ``ValueError``."""
    if plane not in PLANE_SLICE_AXIS:
        raise ValueError(f"unknown plane {plane!r}; choose from {list(PLANES)}")
    return plane


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class PlaneModel:
    """A loaded plane prior: the network and its card.

    Parameters
    ----------
    plane : str
        ``"axial"``, ``"coronal"`` or ``"sagittal"``.
    net : torch.nn.Module
        Maps ``(x_t, t)`` (``(B, 1, H, W)``, ``(B,)``) to the flow velocity.
    config : UNetConfig
        Its sizes; ``config.factor`` is the size multiple the input must have.
    card : dict
        The JSON card (empty for an in-memory model).
    path : Path, optional
        The safetensors file it was loaded from.
    """

    plane: str
    net: nn.Module
    config: UNetConfig
    card: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def factor(self) -> int:
        """Slice height and width are padded to multiples of this."""
        return self.config.factor

    @property
    def sha256(self) -> str | None:
        """Checksum of the weights file, if loaded from disk."""
        return self.card.get("weights", {}).get("sha256")

    @property
    def voxel_size_mm(self) -> float:
        """In-plane voxel size of the training slices (the grid inputs must be on)."""
        return float(self.card.get("voxel_size_mm", MODEL_VOXEL_MM))

    @property
    def clip_percentiles(self) -> tuple[float, float]:
        """Intensity percentiles the prior's training clipped at (its preprocessing contract;
        the paper's 1st/99th when the card records none)."""
        prep = (self.card.get("training") or {}).get("preprocessing") or {}
        return (
            float(prep.get("lower", CLIP_PERCENTILES[0])),
            float(prep.get("upper", CLIP_PERCENTILES[1])),
        )

    def describe(self) -> dict[str, Any]:
        """Short summary for sidecars: plane, file, checksum, size, training."""
        return {
            "Plane": self.plane,
            "Prior": self.card.get("prior", "pretrained"),
            "File": str(self.path) if self.path else None,
            "SHA256": self.sha256,
            "Parameters": self.card.get("n_params", sum(p.numel() for p in self.net.parameters())),
            "Preset": preset_name(self.config),
            "VoxelSize": self.voxel_size_mm,
            "Parameterization": self.card.get("parameterization", PARAMETERIZATION),
            "Training": self.card.get("training", {}),
        }


def make_card(
    plane: str,
    config: UNetConfig,
    n_params: int,
    *,
    slice_shape: tuple[int, int] | None = None,
    voxel_size_mm: float = MODEL_VOXEL_MM,
    training: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The JSON card of a plane model (without the ``weights`` entry)."""
    check_plane(plane)
    card = {
        "format": CARD_FORMAT,
        "plane": plane,
        "slice_shape": list(slice_shape or plane_slice_shape(plane)),
        "voxel_size_mm": float(voxel_size_mm),
        "intensity": INTENSITY_CONVENTION,
        "parameterization": PARAMETERIZATION,
        "unet": config.to_dict(),
        "n_params": int(n_params),
        "training": dict(training or {}),
    }
    card.update(extra or {})
    return card


def save_plane_model(
    net: UNet,
    out_dir: str | Path,
    plane: str,
    *,
    slice_shape: tuple[int, int] | None = None,
    voxel_size_mm: float = MODEL_VOXEL_MM,
    training: dict[str, Any] | None = None,
    dtype: torch.dtype = torch.float32,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<plane>.safetensors`` and ``<plane>.json`` into ``out_dir``.

    Parameters
    ----------
    net : UNet
        The network (its ``config`` is recorded).
    out_dir : path
        Weights directory (created if needed).
    plane : str
        Plane the model was trained on.
    slice_shape : tuple of int, optional
        Training slice shape; defaults to the plane's slice of :data:`MODEL_GRID`.
    voxel_size_mm : float
        In-plane voxel size of the training slices.
    training : dict, optional
        Training-data summary (datasets, volumes, slices, steps, ...).
    dtype : torch.dtype
        Storage dtype of floating-point tensors (``torch.bfloat16`` halves the file).
    extra : dict, optional
        More card entries.

    Returns
    -------
    Path
        The JSON card.
    """
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / f"{plane}.safetensors"
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
        for k, v in net.state_dict().items()
    }
    with atomic_path(weights) as tmp:
        save_file(state, str(tmp), metadata={"format": CARD_FORMAT, "plane": plane})
    card = make_card(
        plane,
        net.config,
        sum(p.numel() for p in net.parameters()),
        slice_shape=slice_shape,
        voxel_size_mm=voxel_size_mm,
        training=training,
        extra=extra,
    )
    card["weights"] = {
        "file": weights.name,
        "sha256": sha256_file(weights),
        "dtype": str(dtype).removeprefix("torch."),
    }
    path = write_json(out_dir / f"{plane}.json", card)
    logger.info("saved %s model (%d parameters) to %s", plane, card["n_params"], weights)
    return path


def read_card(weights_dir: str | Path, plane: str) -> dict[str, Any]:
    """Read and validate ``<plane>.json``; raise :class:`BidaError` naming the file."""
    check_plane(plane)
    path = Path(weights_dir) / f"{plane}.json"
    if not path.is_file():
        raise BidaError(
            f"no {plane} model in {weights_dir}: {path} is missing", ExitCode.MISSING_INPUT
        )
    try:
        card = json.loads(path.read_text())
        card["unet"], card["weights"]["file"], card["weights"]["sha256"]  # noqa: B018
    except (ValueError, KeyError, TypeError) as err:
        raise BidaError(f"model card {path} is unreadable: {err}", ExitCode.BAD_DATA) from err
    if card.get("plane", plane) != plane:
        raise BidaError(
            f"model card {path} is for plane {card.get('plane')!r}, not {plane!r}",
            ExitCode.BAD_DATA,
        )
    return card


def verify_plane_model(weights_dir: str | Path, plane: str) -> dict[str, Any]:
    """Check that ``<plane>`` weights exist and match their recorded SHA-256; return the card.

    Raises
    ------
    BidaError
        Exit 66 when the card or weights file is missing, 65 when the checksum differs or the
        card is unreadable.
    """
    card = read_card(weights_dir, plane)
    weights = Path(weights_dir) / card["weights"]["file"]
    if not weights.is_file():
        raise BidaError(
            f"{plane} weights {weights} are missing (named in {plane}.json)",
            ExitCode.MISSING_INPUT,
        )
    digest = sha256_file(weights)
    if digest != card["weights"]["sha256"]:
        raise BidaError(
            f"{plane} weights {weights} fail their checksum: SHA-256 {digest} but "
            f"{plane}.json records {card['weights']['sha256']}; re-install or re-train them",
            ExitCode.BAD_DATA,
        )
    return card


def load_plane_model(
    weights_dir: str | Path, plane: str, device: str | torch.device = "cpu"
) -> PlaneModel:
    """Load and verify one plane's model, in float32 and eval mode, onto ``device``."""
    from safetensors.torch import load_file

    card = verify_plane_model(weights_dir, plane)
    weights = Path(weights_dir) / card["weights"]["file"]
    try:
        config = UNetConfig.from_dict(card["unet"])
        net = UNet(config)
        state = load_file(str(weights), device="cpu")
        net.load_state_dict({k: v.to(torch.float32) for k, v in state.items()})
    except (ValueError, RuntimeError) as err:
        raise BidaError(
            f"{plane} weights {weights} do not fit their card: {err}", ExitCode.BAD_DATA
        ) from err
    net.to(device).eval().requires_grad_(False)
    logger.info(
        "loaded %s model %s (%d parameters, sha256 %s...)",
        plane,
        weights,
        card.get("n_params", 0),
        card["weights"]["sha256"][:12],
    )
    return PlaneModel(plane, net, config, card, weights)


def load_plane_models(
    weights_dir: str | Path | None,
    planes: Iterable[str],
    device: str | torch.device = "cpu",
) -> dict[str, PlaneModel]:
    """Load the models of ``planes`` from ``weights_dir`` (default: the shipped weights).

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> _ = save_plane_model(UNet(UNetConfig.preset("tiny")), d, "axial")
    >>> sorted(load_plane_models(d, ["axial"]))
    ['axial']
    """
    root = resolve_weights_dir(weights_dir)
    return {p: load_plane_model(root, p, device) for p in dict.fromkeys(planes)}
