"""BiDA on a NIfTI image: standardize, biplanar DDNM, exact inverse onto the output grid.

The chain (all in RAS voxel order, then back to the input's orientation):

1. reorient to RAS; resample the two in-plane axes to the models' voxel size (200 µm);
2. clip at the 1st/99th percentile, scale to [-1, 1], centre-pad (or brain-crop) the
   in-plane axes to the model grid; the through-plane HR axis is padded to the grid around
   the LR slices' span (:class:`~bida_app.physics.geometry.SliceGeometry`);
3. BiDA (:func:`bida_app.diffusion.bida.super_resolve`) with the Gaussian slice operator;
4. undo padding and the intensity map; resample onto the output grid (input in-plane voxels,
   ``target_mm`` through-plane; regions cropped away in 2. are filled by cubic interpolation);
5. data consistency on the output grid, ``x ← x + A⁺(y − A x)`` with the acquired slices
   ``y``: the result re-degrades to the input exactly, keeping its native in-plane detail.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import nibabel as nib
import numpy as np

from ..config import DEFAULT_DC_DAMPING, DEFAULT_SLICE_PROFILE, DEFAULT_STEPS
from ..device import resolve_device
from ..errors import BidaError, ExitCode
from ..models.weights import MODEL_GRID, PLANE_SLICE_AXIS, PLANES_FOR_AXIS
from ..physics import SliceGeometry, SliceOperator, make_profile
from ..physics.profiles import forward_model_label, slr_tbw
from .dccubic import DCCubicResult, explained_slices
from .grid import scan_grid

LOGGER = logging.getLogger(__name__)
_MODEL_CACHE: dict[tuple, dict] = {}


@dataclass
class BidaImageResult:
    """Output of :func:`bida_super_resolve_image`."""

    image: nib.Nifti1Image
    std_image: nib.Nifti1Image | None
    sidecar: dict = field(default_factory=dict)


def get_plane_models(weights_dir: str | None, planes: tuple[str, ...], device) -> dict:
    """Load (once per process) the plane models needed for ``planes`` onto ``device``."""
    from ..models.weights import load_plane_models

    key = (str(weights_dir), tuple(planes), str(device))
    if key not in _MODEL_CACHE:
        _MODEL_CACHE[key] = load_plane_models(weights_dir, planes, device)
    return _MODEL_CACHE[key]


def model_grid(models: dict, default: tuple[int, int, int] = MODEL_GRID) -> tuple[int, ...]:
    """Volume grid (RAS) the plane models were trained on, from their cards' slice shapes."""
    grid = list(default)
    for plane, model in models.items():
        shape = model.card.get("slice_shape")
        if not shape:
            continue
        others = [ax for ax in range(3) if ax != PLANE_SLICE_AXIS[plane]]
        for ax, n in zip(others, shape, strict=True):
            grid[ax] = int(n)
    return tuple(grid)


def _coverage(params, shape: tuple[int, ...]) -> np.ndarray:
    """True where the standardized grid covered the input (not cropped away)."""
    mask = np.ones(shape, bool)
    for ax, (before, after) in enumerate(params.crops):
        sl = [slice(None)] * len(shape)
        if before:
            sl[ax] = slice(0, before)
            mask[tuple(sl)] = False
        if after:
            sl[ax] = slice(shape[ax] - after, shape[ax])
            mask[tuple(sl)] = False
    return mask


def bida_super_resolve_image(
    img: nib.Nifti1Image,
    *,
    through_axis: int,
    thickness_mm: float,
    target_mm: float,
    weights_dir: str | None = None,
    prior: str = "pretrained",
    self_prior_steps: int | None = None,
    steps: int = DEFAULT_STEPS,
    eta: float = 0.0,
    n_samples: int = 1,
    null_shrinkage: bool = False,
    t_start: float = 1.0,
    slice_profile: str = DEFAULT_SLICE_PROFILE,
    dc_damping: float | str = DEFAULT_DC_DAMPING,
    fit_grid: bool = True,
    seed: int = 0,
    device: str = "auto",
    models: dict | None = None,
    grid: tuple[int, int, int] | None = None,
    progress: bool = True,
) -> BidaImageResult:
    """Super-resolve a thick-slice image with BiDA; the output is on the input's world grid.

    Parameters
    ----------
    img : nibabel.Nifti1Image
        Bias-corrected thick-slice image (any voxel order).
    through_axis : int
        Voxel axis (of ``img``) of the through-plane direction; must be its largest spacing.
    thickness_mm, target_mm : float
        Slice thickness (FWHM of the slice profile of A) and output through-plane voxel size.
    slice_profile : {"gaussian", "slr", "boxcar"}
        Profile of A: ``gaussian`` as in the paper, or the acquisition's own shape when it is
        known (``slr``: a sharp Shinnar-Le Roux excitation, ``boxcar``: ideal slab).
    dc_damping : float or "auto"
        The data term: the slices as dccubic with this regularisation explains them
        (:func:`bida_app.methods.dccubic.explained_slices`; "auto": without the part of the
        residual that is noise; 0: the slices themselves). The output re-degrades exactly to
        them; its ``DataConsistencyResidual`` is against the slices given.
    weights_dir : str, optional
        Folder of plane models; default the shipped weights.
    prior : {"pretrained", "self", "finetune"}
        ``self`` fits the plane priors on the scan's own slices first
        (:mod:`bida_app.methods.selfprior`); ``finetune`` starts that fit from the
        ``weights_dir`` (or shipped) priors.
    self_prior_steps : int, optional
        Training steps per plane of the scan-adaptive prior (default: its CPU/GPU budget).
    models : dict, optional
        Already loaded plane models (overrides ``weights_dir``).
    t_start : float
        1 (the paper): every slice is sampled from pure noise. Below 1, a warm start: the
        sampler starts at that flow time from the data-consistent cubic estimate in the
        model's space (:func:`warm_start_volume`), noised to it.
    grid : tuple of int, optional
        Model grid (RAS); default from the models' cards (144×144×64 for the paper's).
    fit_grid : bool
        Shrink the default grid to the scan's extent (multiples of the UNet's factor): the
        slices then carry less padding and a small field of view is sampled faster. The
        priors are convolutional and trained on crops, so the result is the same up to the
        padding's influence.
    device : str or torch.device
        Resolved once here (:func:`bida_app.device.resolve_device`) and passed unchanged to
        the scan-adaptive fit, the model loading and the sampler; CPU threads are the
        caller's (:func:`bida_app.device.set_threads`).
    Other parameters are those of :func:`bida_app.diffusion.bida.super_resolve`.
    """
    from ..diffusion.bida import super_resolve
    from ..methods.cubic import cubic_resample
    from ..preprocess.orient import from_ras, to_ras
    from ..preprocess.resample import resample_inplane, resample_to_grid
    from ..preprocess.standardize import destandardize, pad_widths, standardize

    if int(np.argmax(np.sqrt((img.affine[:3, :3] ** 2).sum(0)))) != through_axis:
        raise BidaError(
            "the through-plane axis must be the axis of largest voxel spacing", ExitCode.BAD_DATA
        )
    dev = resolve_device(device)
    if prior != "pretrained":  # after the input checks: the fit takes minutes
        from .selfprior import self_prior_models

        models = models or self_prior_models(
            img,
            prior,
            weights_dir=weights_dir,
            steps=self_prior_steps,
            device=dev,
            seed=seed,
            progress=progress,
        )
    ras, oinfo = to_ras(img)
    zooms = np.sqrt((ras.affine[:3, :3] ** 2).sum(0))
    axis = int(np.argmax(zooms))  # ``through_axis`` of the input, in RAS voxel order
    spacing = float(zooms[axis])
    given = np.asarray(ras.dataobj, np.float64)
    ras, explained = explained_slices(
        ras, axis, thickness_mm, target_mm, slice_profile, dc_damping
    )
    planes = PLANES_FOR_AXIS[axis]
    models = models or get_plane_models(weights_dir, planes, dev)
    missing = [p for p in planes if p not in models]
    if missing:
        raise BidaError(
            f"no {'/'.join(missing)} plane model for a through-plane axis along "
            f"{'LR AP SI'.split()[axis]}",
            ExitCode.MISSING_INPUT,
        )
    voxel = float(models[planes[0]].voxel_size_mm)
    if abs(models[planes[1]].voxel_size_mm - voxel) > 1e-6:
        raise BidaError(
            "the two plane models were trained at different voxel sizes", ExitCode.BAD_DATA
        )

    if grid is None:
        grid = model_grid({p: models[p] for p in planes})
        if fit_grid:  # no wider than the scan: a small FOV (a mouse) costs less
            fitted = scan_grid(ras, axis, voxel, max(models[p].factor for p in planes))
            grid = tuple(min(a, b) for a, b in zip(grid, fitted, strict=True))

    # 1-2. in-plane resampling and standardization (through-plane axis left alone)
    lr = resample_inplane(ras, axis, voxel)
    std_grid = list(grid)
    std_grid[axis] = None
    lower, upper = clip_contract([models[p] for p in planes])
    std, sp = standardize(
        np.asarray(lr.dataobj, np.float32), tuple(std_grid), lower=lower, upper=upper, crop="brain"
    )
    geom = SliceGeometry.from_lr(axis, lr.shape[axis], spacing, thickness_mm, voxel)
    n_pad = max(grid[axis], geom.n_hr)
    before, _ = pad_widths(geom.n_hr, n_pad)
    op = SliceOperator(
        n_pad, geom.lr_centres + before, voxel, make_profile(slice_profile, thickness_mm), axis
    )

    # 3. BiDA
    init = warm_start_volume(std, geom, op, before) if t_start < 1.0 else None
    res = super_resolve(
        std,
        op,
        models,
        steps=steps,
        eta=eta,
        n_samples=n_samples,
        seed=seed,
        device=dev,
        progress=progress,
        null_shrinkage=null_shrinkage,
        init=init,
        t_start=t_start,
    )

    # 4. inverse: unpad, intensities, output grid, cubic fill where the grid cropped
    hr = destandardize(res.mean, sp, axis_lengths={axis: geom.n_hr})
    cover = _coverage(sp, sp.with_axis(axis, geom.n_hr, (0, 0)).shape)
    out_geom = SliceGeometry.from_lr(axis, ras.shape[axis], spacing, thickness_mm, target_mm)
    out_aff, out_shape = out_geom.hr_affine(ras.affine), out_geom.hr_shape(ras.shape)
    src_aff = geom.hr_affine(lr.affine)
    x = resample_to_grid(hr, src_aff, out_aff, out_shape, order=3)
    y = np.asarray(ras.dataobj, np.float64)
    if not cover.all():
        inside = (
            resample_to_grid(cover.astype(np.float32), src_aff, out_aff, out_shape, order=0) > 0.5
        )
        x = np.where(inside, x, cubic_resample(y, out_geom))
    # 5. data consistency on the output grid
    a_out = SliceOperator.from_geometry(out_geom, slice_profile)
    x = a_out.consistency(np.asarray(x, np.float64), y)
    resid = a_out.relative_residual(x, given)

    out = from_ras(nib.Nifti1Image(x.astype(np.float32), out_aff, ras.header), oinfo)
    std_img = None
    if res.std is not None:
        # std in standardized units -> intensity units (cropped regions -> 0)
        std_hr = destandardize(res.std - 1.0, sp, axis_lengths={axis: geom.n_hr}) - sp.clip_low
        std_out = resample_to_grid(std_hr, src_aff, out_aff, out_shape, order=1)
        std_img = from_ras(
            nib.Nifti1Image(np.abs(std_out).astype(np.float32), out_aff, ras.header), oinfo
        )
    sidecar = {
        "Method": "bida",
        "MethodParameters": {
            "Sampler": "DDIM with DDNM range-space replacement (flow prediction)",
            "Steps": steps,
            "StartTime": t_start,
            "WarmStart": "data-consistent cubic" if t_start < 1.0 else "none (pure noise)",
            "Eta": eta,
            "NumberOfSamples": n_samples,
            "Prior": prior,
            "Planes": list(planes),
            "SliceProfile": slice_profile,
            **slr_tbw(slice_profile),
            "ProfileFWHM": thickness_mm,
            "ModelVoxelSize": voxel,
            "Models": {p: models[p].describe() for p in planes},
        },
        "Geometry": out_geom.as_dict(),
        "ModelGridGeometry": {**geom.as_dict(), "PaddedLength": n_pad, "PadBefore": before},
        "Standardization": sp.to_dict(),
        "Orientation": oinfo.to_dict(),
        **_renamed(res.sidecar(), "DataConsistencyResidual", "DataConsistencyResidualModelGrid"),
        "DataConsistencyResidual": resid,
        "DataConsistencyResidualOutputGrid": resid,
        "DataConsistencyModel": forward_model_label(slice_profile),
        **_data_term(dc_damping, explained),
        "Compute": res.device,
    }
    return BidaImageResult(out, std_img, sidecar)


def warm_start_volume(
    std: np.ndarray, geom: SliceGeometry, op: SliceOperator, before: int
) -> np.ndarray:
    """The data-consistent cubic estimate in the model's space: BiDA's warm start.

    Parameters
    ----------
    std : ndarray
        Standardized LR volume (background -1), slices along ``geom.axis``.
    geom : SliceGeometry
        Where the slices sit on the model's HR grid (``geom.n_hr`` samples).
    op : SliceOperator
        The sampler's operator on the padded axis (``op.shape[1]`` samples).
    before : int
        Padding before the HR samples on that axis.

    Returns
    -------
    ndarray, float32
        Cubic interpolation along the axis, padded with the background and projected onto
        ``{x : A x = std}``.
    """
    from .cubic import cubic_resample

    cub = cubic_resample(std, geom)
    widths = [(0, 0)] * std.ndim
    widths[geom.axis] = (before, op.shape[1] - geom.n_hr - before)
    cub = np.pad(cub, widths, constant_values=-1.0)
    return op.consistency(cub.astype(np.float64), np.asarray(std, np.float64)).astype(np.float32)


def clip_contract(models: list) -> tuple[float, float]:
    """The clip percentiles the plane priors were trained with (their cards' contract).

    Raises
    ------
    BidaError
        The two priors were trained with different percentiles (exit 65).
    """
    contracts = {m.clip_percentiles for m in models}
    if len(contracts) > 1:
        raise BidaError(
            f"the plane models were trained with different clip percentiles {sorted(contracts)}",
            ExitCode.BAD_DATA,
        )
    return contracts.pop()


def _data_term(damping: float | str, explained: DCCubicResult | None) -> dict:
    """Sidecar fields of the data term (:func:`~bida_app.methods.dccubic.explained_slices`)."""
    if explained is None:
        return {"DataTerm": "the slices given", "DataConsistencyDamping": 0.0}
    out = {
        "DataTerm": "the slices as dccubic explains them (A x_dccubic)",
        "DataConsistencyDamping": damping,
    }
    if explained.shrinkage is not None:
        out |= explained.shrinkage.sidecar()
    return out


def _renamed(d: dict, old: str, new: str) -> dict:
    """``d`` with key ``old`` called ``new`` (the sampler's residual is in the model space)."""
    return {new if k == old else k: v for k, v in d.items()}
