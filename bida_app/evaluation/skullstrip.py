"""Rodent brain extraction with the published 2D U-Nets, run in PyTorch, for cDSC.

Two trained Keras networks of the same family (Hsu et al. 2020, Front. Neurosci. 14:568614)
are supported, each with the preprocessing recipe of the package that publishes it:

* **rat**: ``rbm`` 0.0.3 (CAMRI, GPL-3.0), the paper's reference network. Recipe: resample
  to 0.1 mm isotropic (linear), min-max normalise the whole volume, cut every slice into
  128×128 patches with stride 32 (one pass from the top-left, one from the bottom-right),
  threshold each patch's sigmoid at 0.5 and keep the majority vote per pixel.
  The weights are GPL: they are not shipped, ``bida models fetch-skullstrip`` downloads and
  converts them at set-up time (:mod:`bida_app.evaluation.fetch`).
* **mouse**: ``seg-for-4modalities`` 1.0.6 (The Jackson Laboratory, BSD-2-Clause),
  ``model156_0.50.25_scan.hdf5``. Recipe: replace voxels above 20× the mean by the median,
  resample in-plane to 0.08 mm (slice spacing kept), min-max normalise the volume, 128×128
  patches with stride 16 in both passes plus the edge-aligned positions, average the
  sigmoid over patches and threshold at 0.3. Shipped converted under
  ``bida_app/data/skullstrip/mouse``.

Both recipes return the mask to the input grid by nearest-neighbour resampling. Two things
are ours: slices smaller than a patch are padded with the volume minimum (the packages stop
with an error), and volumes are reoriented to RAS first and sliced along
:attr:`Recipe.slice_axis` so that the result does not depend on the voxel order on disk.
Slices are coronal by default (see :attr:`Recipe.slice_axis`); rows of a network input run
along the higher RAS axis of the slice (S for coronal slices, first row inferior) and columns
along the lower one (R, first column left), as a RAS-stored file reaches the networks in the
packages' own SimpleITK code.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import torch
from scipy import ndimage
from tqdm.auto import tqdm

from ..errors import BidaError, ExitCode
from ..utils.io import atomic_path, write_json
from .keras_port import KerasGraph, read_model_config

LOGGER = logging.getLogger(__name__)

SPECIES: tuple[str, ...] = ("rat", "mouse")
CARD_FORMAT = "bida-skullstrip/1"
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "data" / "skullstrip"
"""Converted networks shipped with the package (the BSD mouse network)."""
WEIGHTS_NAME, CARD_NAME = "model.safetensors", "model.json"


@dataclass(frozen=True)
class Recipe:
    """Preprocessing and patch-fusion recipe of one network.

    Attributes
    ----------
    species : str
        ``"rat"`` or ``"mouse"``.
    inplane_mm : float
        In-plane voxel size the slices are resampled to.
    through_mm : float or None
        Slice spacing to resample to; None keeps the input's.
    clip_factor : float or None
        Voxels above ``clip_factor`` × mean are replaced by the median before anything else.
    normalization : str
        ``"volume"`` (min-max over the resampled volume) or ``"slice"`` (per slice).
    patch : int
        Patch height and width.
    stride : int
        Step between patch positions.
    edge_patches : bool
        Also place patches flush with the far edges in both passes.
    fusion : str
        ``"vote"`` (majority of per-patch thresholded labels, ties background) or ``"mean"``
        (mean probability over patches, then threshold).
    threshold : float
        Probability threshold (``>=`` for vote, ``>`` for mean, as in each package).
    slice_axis : int
        RAS axis along which slices are cut: 1, coronal, for both networks. The packages
        slice along the third stored axis, which on Bruker scanner-order files is the bore
        axis (anatomical A-P for a prone rodent); on our real scans coronal slicing gave the
        best masks (mouse DSURQE Dice 0.958 coronal vs 0.935 axial; rat scan: clean
        coronal masks, axial ones leak).
    """

    species: str
    inplane_mm: float
    through_mm: float | None
    clip_factor: float | None
    normalization: str
    patch: int
    stride: int
    edge_patches: bool
    fusion: str
    threshold: float
    slice_axis: int = 1

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form."""
        return asdict(self)


RECIPES: dict[str, Recipe] = {
    "rat": Recipe("rat", 0.1, 0.1, None, "volume", 128, 32, False, "vote", 0.5, slice_axis=1),
    "mouse": Recipe("mouse", 0.08, None, 20.0, "volume", 128, 16, True, "mean", 0.3, slice_axis=1),
}


def check_species(species: str) -> str:
    """Return ``species`` if known, else raise ``ValueError``."""
    if species not in RECIPES:
        raise ValueError(f"unknown species {species!r}; choose from {list(SPECIES)}")
    return species


# ----------------------------------------------------------------------------- resampling


def _linear_along(data: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation along ``axis`` at fractional indices; 0 outside ``[-0.5, n-0.5)``.

    Matches SimpleITK's linear resampler: edge voxels are extended by half a voxel, samples
    beyond that get the default value 0.
    """
    n = data.shape[axis]
    inside = (positions >= -0.5) & (positions < n - 0.5)
    p = np.clip(positions, 0.0, n - 1.0)
    i0 = np.floor(p).astype(int)
    i1 = np.minimum(i0 + 1, n - 1)
    shape = [1] * data.ndim
    shape[axis] = -1
    w = (p - i0).reshape(shape)
    out = np.take(data, i0, axis=axis) * (1.0 - w) + np.take(data, i1, axis=axis) * w
    return out * inside.reshape(shape)


def resample_linear(data: np.ndarray, zooms: Sequence[float], new: Sequence[float]) -> np.ndarray:
    """Resample onto spacing ``new`` keeping the first voxel centre (SimpleITK convention).

    The output has ``ceil(n * zoom / new)`` voxels per axis; output voxel ``m`` samples the
    input at index ``m * new / zoom``.

    Examples
    --------
    >>> resample_linear(np.array([0.0, 1.0, 2.0]), [0.2], [0.1])
    array([0. , 0.5, 1. , 1.5, 2. , 0. ])
    """
    out = np.asarray(data, dtype=np.float64)
    for axis, (z, v) in enumerate(zip(zooms, new, strict=True)):
        if np.isclose(z, v, rtol=1e-6):
            continue
        n_new = int(np.ceil(out.shape[axis] * z / v - 1e-9))
        out = _linear_along(out, axis, np.arange(n_new) * (v / z))
    return out


def resample_nearest_back(
    labels: np.ndarray, zooms: Sequence[float], new: Sequence[float], shape: Sequence[int]
) -> np.ndarray:
    """Nearest-neighbour resampling from the ``new``-spaced grid back to the input grid."""
    out = labels
    for axis, (z, v) in enumerate(zip(zooms, new, strict=True)):
        if np.isclose(z, v, rtol=1e-6) and out.shape[axis] == shape[axis]:
            continue
        idx = np.floor(np.arange(shape[axis]) * (z / v) + 0.5).astype(int)
        out = np.take(out, np.clip(idx, 0, out.shape[axis] - 1), axis=axis)
    return out


# ----------------------------------------------------------------------------- patches


def patch_passes(n: int, patch: int, stride: int, edge: bool) -> tuple[list[int], list[int]]:
    """Patch start positions along one axis for the forward and the backward pass.

    The forward pass steps from 0, the backward pass from the far edge; with ``edge`` each
    pass also gets the position flush with the edge it ends at (repeats are kept: the
    recipes count such patches twice).

    Examples
    --------
    >>> patch_passes(288, 128, 32, False)
    ([0, 32, 64, 96, 128, 160], [160, 128, 96, 64, 32, 0])
    >>> patch_passes(145, 128, 16, True)
    ([0, 16, 17], [17, 1, 0])
    """
    if n < patch:
        raise ValueError(f"axis of {n} pixels is shorter than the {patch}-pixel patch")
    forward = list(range(0, n - patch + 1, stride))
    backward = [end - patch for end in range(n, patch - 1, -stride)]
    if edge:
        forward.append(n - patch)
        backward.append(0)
    return forward, backward


def patch_counts(shape: tuple[int, int], recipe: Recipe) -> Counter[tuple[int, int]]:
    """How many times each (row, col) patch start is used by the two passes.

    Examples
    --------
    >>> counts = patch_counts((288, 288), RECIPES["rat"])
    >>> len(counts), sum(counts.values())
    (36, 72)
    """
    p, s, e = recipe.patch, recipe.stride, recipe.edge_patches
    rows, cols = patch_passes(shape[0], p, s, e), patch_passes(shape[1], p, s, e)
    counts: Counter[tuple[int, int]] = Counter()
    for rs, cs in zip(rows, cols, strict=True):
        counts.update((r, c) for r in rs for c in cs)
    return counts


# ----------------------------------------------------------------------------- model


class SkullStripper:
    """A rodent skull-stripping U-Net with its recipe.

    Parameters
    ----------
    net : KerasGraph
        The ported network (sigmoid output, one channel).
    species : str
        Default recipe (``"rat"`` or ``"mouse"``).
    card : dict, optional
        Provenance (source package, file, checksums) recorded with converted weights.
    device : str
        Torch device for inference.
    batch_size : int
        Patches per forward pass.
    """

    def __init__(
        self,
        net: KerasGraph,
        species: str,
        card: dict[str, Any] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 16,
    ) -> None:
        self.species = check_species(species)
        self.card = dict(card or {})
        self.device = torch.device(device)
        self.batch_size = int(batch_size)
        self.net = net.eval().to(self.device, memory_format=torch.channels_last)
        self.path: Path | None = None

    # ---- construction -----------------------------------------------------------------

    @classmethod
    def from_hdf5(
        cls, path: str | Path, species: str | None = None, **kwargs: Any
    ) -> SkullStripper:
        """Port a Keras HDF5 file (``model_config`` + ``model_weights``) to PyTorch.

        ``species`` (the default recipe) may be left out for the two published files,
        which are recognised by their SHA-256.
        """
        from .keras_port import load_keras_hdf5
        from .sources import SOURCES

        path = Path(path)
        digest = sha256_file(path)
        if species is None:
            known = [sp for sp, src in SOURCES.items() if src.sha256 == digest]
            if not known:
                raise ValueError(f"{path}: unknown network; pass species='rat' or 'mouse'")
            species = known[0]
        card = {"source": {"file": path.name, "sha256": digest}}
        return cls(load_keras_hdf5(path), species, card, **kwargs)

    @classmethod
    def from_safetensors(
        cls, path: str | Path, config: str | Path | None = None, **kwargs: Any
    ) -> SkullStripper:
        """Load converted weights; ``config`` defaults to the JSON card beside them.

        The card's SHA-256 of the weights file is checked; a mismatch raises
        :class:`~bida_app.errors.BidaError`.
        """
        from safetensors.torch import load_file

        path = Path(path)
        card_path = Path(config) if config else path.with_suffix(".json")
        if not path.is_file() or not card_path.is_file():
            raise BidaError(
                f"skull-strip weights not found: {path} / {card_path}", ExitCode.MISSING_INPUT
            )
        card = json.loads(card_path.read_text())
        if card.get("format") != CARD_FORMAT:
            raise BidaError(f"{card_path}: not a skull-strip model card", ExitCode.BAD_DATA)
        expected = card.get("weights", {}).get("sha256")
        actual = sha256_file(path)
        if expected != actual:
            raise BidaError(
                f"{path}: SHA-256 {actual[:12]}… does not match its card ({str(expected)[:12]}…);"
                " the file is corrupt or was replaced - fetch/convert it again",
                ExitCode.BAD_DATA,
            )
        net = KerasGraph(card["keras_model_config"])
        net.load_state_dict(load_file(str(path)))
        stripper = cls(net, card["species"], card, **kwargs)
        stripper.path = path
        return stripper

    def save_safetensors(self, out_dir: str | Path, extra: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and its card ``model.json`` into ``out_dir``."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        weights = out_dir / WEIGHTS_NAME
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        with atomic_path(weights) as tmp:
            save_file(state, str(tmp))
        os.chmod(weights, 0o644)
        card = {
            "format": CARD_FORMAT,
            "species": self.species,
            "recipe": RECIPES[self.species].to_dict(),
            **{k: v for k, v in self.card.items() if k not in ("format", "weights")},
            **(extra or {}),
            "keras_model_config": self.net.model_config,
            "weights": {"file": WEIGHTS_NAME, "sha256": sha256_file(weights)},
        }
        path = write_json(out_dir / CARD_NAME, card)
        os.chmod(path, 0o644)
        return path

    @classmethod
    def load(
        cls, species: str, weights_dir: str | Path | None = None, **kwargs: Any
    ) -> SkullStripper:
        """The converted network of ``species`` from ``weights_dir`` or the default places.

        Raises
        ------
        BidaError
            When no converted weights are found; the message says how to fetch them.
        """
        check_species(species)
        candidates = [Path(weights_dir)] if weights_dir else default_weight_dirs(species)
        for d in candidates:
            if (d / CARD_NAME).is_file():
                return cls.from_safetensors(d / WEIGHTS_NAME, d / CARD_NAME, **kwargs)
        where = ", ".join(str(d) for d in candidates)
        raise BidaError(
            f"no {species} skull-strip network in {where}; run "
            f"'bida models fetch-skullstrip --species {species}' (needs internet once)",
            ExitCode.MISSING_INPUT,
        )

    # ---- inference --------------------------------------------------------------------

    @torch.inference_mode()
    def probabilities(self, patches: np.ndarray) -> np.ndarray:
        """Sigmoid output for a stack of ``(N, H, W)`` patches (float32, same shape)."""
        out = np.empty(patches.shape, dtype=np.float32)
        for i in range(0, len(patches), self.batch_size):
            x = torch.from_numpy(np.ascontiguousarray(patches[i : i + self.batch_size]))
            x = x[:, None].float().to(self.device).contiguous(memory_format=torch.channels_last)
            out[i : i + len(x)] = self.net(x)[:, 0].float().cpu().numpy()
        return out

    def segment_slices(
        self, slices: np.ndarray, recipe: Recipe, progress: bool = True
    ) -> tuple[np.ndarray, np.ndarray]:
        """Fuse patch predictions over a stack of normalised slices ``(N, H, W)``.

        Returns
        -------
        labels : ndarray of uint8, shape (N, H, W)
        likelihood : ndarray of float32, shape (N, H, W)
            Mean probability over the patches covering each pixel.
        """
        n, h, w = slices.shape
        p = recipe.patch
        pad_h, pad_w = max(0, p - h), max(0, p - w)
        if pad_h or pad_w:
            widths = ((0, 0), (pad_h // 2, pad_h - pad_h // 2), (pad_w // 2, pad_w - pad_w // 2))
            slices = np.pad(slices, widths, constant_values=float(slices.min()))
        grid = patch_counts(slices.shape[1:], recipe)
        starts = list(grid)
        prob_sum = np.zeros(slices.shape, dtype=np.float64)
        votes_fg = np.zeros(slices.shape, dtype=np.float64)
        count = np.zeros(slices.shape[1:], dtype=np.float64)
        for r, c in starts:
            count[r : r + p, c : c + p] += grid[(r, c)]
        bar = tqdm(total=n * len(starts), desc="skull-strip", unit="patch", disable=not progress)
        for k in range(n):
            patches = np.stack([slices[k, r : r + p, c : c + p] for r, c in starts])
            probs = self.probabilities(patches)
            for (r, c), prob in zip(starts, probs, strict=True):
                m = grid[(r, c)]
                prob_sum[k, r : r + p, c : c + p] += m * prob
                votes_fg[k, r : r + p, c : c + p] += m * (prob >= recipe.threshold)
            bar.update(len(starts))
        bar.close()
        with np.errstate(invalid="ignore", divide="ignore"):
            likelihood = np.where(count > 0, prob_sum / np.maximum(count, 1), 0.0)
        if recipe.fusion == "vote":
            labels = votes_fg > (count - votes_fg)
        elif recipe.fusion == "mean":
            labels = likelihood > recipe.threshold
        else:
            raise ValueError(f"unknown fusion {recipe.fusion!r}")
        crop = (slice(None), slice(pad_h // 2, pad_h // 2 + h), slice(pad_w // 2, pad_w // 2 + w))
        return labels[crop].astype(np.uint8), likelihood[crop].astype(np.float32)

    def predict_mask(
        self,
        img: nib.spatialimages.SpatialImage,
        species: str | None = None,
        *,
        largest_component: bool = False,
        slices: Sequence[int] | None = None,
        recipe: Recipe | None = None,
        progress: bool = True,
    ) -> nib.Nifti1Image:
        """Brain mask of a 3D rodent T2w image, on the input's grid and voxel order.

        Parameters
        ----------
        img : nibabel image
            3D volume (any voxel order; a 4D image with one volume is accepted).
        species : str, optional
            Recipe to follow (defaults to the network's own species).
        largest_component : bool
            Keep only the largest 6-connected component (not part of either recipe).
        slices : sequence of int, optional
            Segment only these RAS voxel indices along the recipe's slice axis (the rest is
            background); for previews and tests. Default: all slices.
        recipe : Recipe, optional
            Override the recipe entirely (e.g. a coarser stride for a quick look).
        progress : bool
            Show a tqdm bar over patches.

        Returns
        -------
        Nifti1Image
            uint8 mask (1 = brain) with the input's affine.
        """
        recipe = recipe or RECIPES[check_species(species or self.species)]
        data = np.asanyarray(img.dataobj).astype(np.float64)
        if data.ndim == 4 and data.shape[3] == 1:
            data = data[..., 0]
        if data.ndim != 3:
            raise BidaError(
                f"skull-strip needs a 3D volume, got shape {data.shape}", ExitCode.BAD_DATA
            )
        affine = np.asarray(img.affine, dtype=np.float64)
        ornt = nib.orientations.io_orientation(affine)
        ras = nib.orientations.apply_orientation(data, ornt)
        ras_affine = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
        zooms = np.sqrt((ras_affine[:3, :3] ** 2).sum(0))
        mask = self._mask_ras(ras, zooms, recipe, slices, progress)
        if largest_component:
            mask = largest_connected_component(mask)
        back = nib.orientations.apply_orientation(mask, _inverse_ornt(ornt)).astype(np.uint8)
        out = nib.Nifti1Image(back, affine)
        out.set_qform(affine, code=1)
        out.set_sform(affine, code=1)
        return out

    def _mask_ras(
        self,
        ras: np.ndarray,
        zooms: np.ndarray,
        recipe: Recipe,
        slices: Sequence[int] | None,
        progress: bool,
    ) -> np.ndarray:
        """Mask of a RAS volume with voxel sizes ``zooms``, on the same grid."""
        ras = np.nan_to_num(ras, nan=0.0, posinf=0.0, neginf=0.0)
        if recipe.clip_factor is not None:
            hi = recipe.clip_factor * ras.mean()
            ras = np.where(ras > hi, np.median(ras), ras)
        ax = recipe.slice_axis
        new = [recipe.inplane_mm] * 3
        new[ax] = recipe.through_mm if recipe.through_mm is not None else float(zooms[ax])
        vol = resample_linear(ras, zooms, new)
        if recipe.normalization == "volume":
            lo, hi = vol.min(), vol.max()
            vol = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
        # network slices: (N, rows=A-or-S, cols=R-or-A), rows from the higher RAS axis
        inplane = [a for a in range(3) if a != ax]
        stack = np.transpose(vol, (ax, inplane[1], inplane[0])).astype(np.float32)
        if recipe.normalization == "slice":
            lo = stack.min(axis=(1, 2), keepdims=True)
            span = stack.max(axis=(1, 2), keepdims=True) - lo
            stack = np.where(span > 0, (stack - lo) / np.where(span > 0, span, 1), 0)
        index = np.arange(stack.shape[0])
        if slices is not None:
            wanted = np.floor(np.asarray(slices) * (zooms[ax] / new[ax]) + 0.5).astype(int)
            index = np.unique(np.clip(wanted, 0, stack.shape[0] - 1))
        labels = np.zeros(stack.shape, dtype=np.uint8)
        labels[index], _ = self.segment_slices(stack[index], recipe, progress)
        labels_vol = np.transpose(labels, np.argsort((ax, inplane[1], inplane[0])))
        mask = resample_nearest_back(labels_vol, zooms, new, ras.shape)
        if slices is not None:
            keep = np.zeros(ras.shape[ax], dtype=bool)
            keep[np.asarray(slices, dtype=int)] = True
            shape = [1, 1, 1]
            shape[ax] = -1
            mask = mask * keep.reshape(shape)
        return mask.astype(np.uint8)


def _inverse_ornt(ornt: np.ndarray) -> np.ndarray:
    """Orientation transform undoing ``apply_orientation(x, ornt)``."""
    inv = np.empty_like(ornt)
    for i, (axis, flip) in enumerate(ornt):
        inv[int(axis)] = (i, flip)
    return inv


def largest_connected_component(mask: np.ndarray) -> np.ndarray:
    """Keep the largest face-connected component of a binary mask (uint8).

    Examples
    --------
    >>> m = np.zeros((5, 5, 1), np.uint8); m[0, 0] = 1; m[2:5, 2:5] = 1
    >>> int(largest_connected_component(m).sum())
    9
    """
    labels, n = ndimage.label(mask > 0)
    if n <= 1:
        return (mask > 0).astype(np.uint8)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return (labels == int(sizes.argmax())).astype(np.uint8)


# ----------------------------------------------------------------------------- storage


def sha256_file(path: str | Path) -> str:
    """Hex SHA-256 of a file."""
    from ..models.weights import sha256_file as _sha

    return _sha(path)


def skullstrip_home() -> Path:
    """Where fetched networks live: ``$BIDA_SKULLSTRIP_DIR``, ``$BIDA_HOME/skullstrip``, or
    ``$XDG_CACHE_HOME/bida/skullstrip`` (default ``~/.cache/bida/skullstrip``)."""
    if os.environ.get("BIDA_SKULLSTRIP_DIR"):
        return Path(os.environ["BIDA_SKULLSTRIP_DIR"]).expanduser()
    if os.environ.get("BIDA_HOME"):
        return Path(os.environ["BIDA_HOME"]).expanduser() / "skullstrip"
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "bida" / "skullstrip"


def default_weight_dirs(species: str) -> list[Path]:
    """Directories searched for a species' converted network, in order."""
    check_species(species)
    return [skullstrip_home() / species, SHIPPED_DIR / species]


def with_recipe(species: str, **changes: Any) -> Recipe:
    """A species' recipe with some fields changed (e.g. ``stride=64`` for a quick look)."""
    return replace(RECIPES[check_species(species)], **changes)


__all__ = [
    "RECIPES",
    "SPECIES",
    "Recipe",
    "SkullStripper",
    "default_weight_dirs",
    "largest_connected_component",
    "patch_counts",
    "patch_passes",
    "read_model_config",
    "resample_linear",
    "skullstrip_home",
    "with_recipe",
]
