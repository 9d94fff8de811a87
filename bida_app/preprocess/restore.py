"""Back to the acquired data: undo N4 on the super-resolved image and re-project onto the slices.

N4 conditions what a prior sees, but a super-resolved image must stay faithful to what the
scanner acquired. :func:`restore_acquired` takes a result computed on the bias-corrected
slices, multiplies the N4 field back in (resampled from the slices' grid onto the output
grid; the field is smooth, so cubic B-spline interpolation suffices) and, for data-consistent
methods, projects once more onto the *acquired* slices, ``x ← x + A⁺(y − A x)``. The
residual it reports is against the acquired data.
"""

from __future__ import annotations

from dataclasses import dataclass

import nibabel as nib
import numpy as np

from ..config import DEFAULT_SLICE_PROFILE
from ..physics import SliceOperator
from .resample import resample_to_grid

#: Smallest bias value used when the field is put back (the field is positive in theory).
MIN_BIAS = 1e-6


@dataclass
class RestoredImage:
    """Output of :func:`restore_acquired`."""

    image: nib.Nifti1Image
    bias: nib.Nifti1Image | None
    residual: float
    projected: bool


def bias_on_grid(bias: nib.Nifti1Image, affine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The multiplicative bias field resampled onto another grid of the same world space.

    Outside the field's grid the edge values continue; values are kept >= :data:`MIN_BIAS`.
    """
    field = resample_to_grid(
        np.asarray(bias.dataobj, np.float64), bias.affine, affine, shape, order=3
    )
    return np.maximum(field, MIN_BIAS)


def slice_operator(
    hr_img: nib.spatialimages.SpatialImage,
    lr_img: nib.spatialimages.SpatialImage,
    through_axis: int,
    thickness_mm: float,
    profile: str = DEFAULT_SLICE_PROFILE,
) -> SliceOperator:
    """The operator ``A`` from an output grid to the acquired slices, placed by the affines."""
    return SliceOperator.from_affines(
        hr_img.affine,
        hr_img.shape[through_axis],
        lr_img.affine,
        lr_img.shape[through_axis],
        through_axis,
        profile,
        thickness_mm=thickness_mm,
    )


def restore_acquired(
    sr_img: nib.spatialimages.SpatialImage,
    acquired: nib.spatialimages.SpatialImage,
    through_axis: int,
    thickness_mm: float,
    *,
    bias: nib.spatialimages.SpatialImage | None = None,
    profile: str = DEFAULT_SLICE_PROFILE,
    project: bool = True,
    damped: bool = False,
) -> RestoredImage:
    """Put the bias field back into ``sr_img`` and re-project it onto the acquired slices.

    For an exact method the projection is onto ``y`` itself, so the result re-degrades
    exactly to the acquired slices. A ``damped`` method (dccubic or BiDA with the default
    noise-adaptive ``--dc_damping`` or a Tikhonov damping,
    :func:`bida_app.methods.dccubic.projection_is_damped`) keeps its
    residual instead, carried over from the slices it was given to the acquired ones: the
    result re-degrades exactly to ``y − b ⊙ r = b ⊙ A x``, where ``b`` is the field on the
    slices and ``r = y / b − A x`` the method's residual against the corrected slices (an
    exact projection would undo the damping). Without a field (``b = 1``) a damped result is
    left as it is.

    Parameters
    ----------
    sr_img : nibabel image
        Super-resolved image, computed on the bias-corrected slices (or on the acquired ones
        when ``bias`` is None), on an output grid that shares the slices' world space and
        in-plane axes (the grid of every bida method).
    acquired : nibabel image
        The acquired (loaded, not bias-corrected) thick slices ``y``.
    through_axis : int
        Through-plane voxel axis (same in both images).
    thickness_mm : float
        Slice thickness, FWHM of the profile of ``A``.
    bias : nibabel image, optional
        N4's multiplicative field on the slices' grid (``corrected = acquired / bias``).
    profile : str
        Slice-profile kind of ``A``.
    project : bool
        Project onto the acquired slices (data-consistent methods; a damped one keeps its
        residual, above); False keeps the method's own relation to the data (plain cubic)
        and only reports its residual.
    damped : bool
        The method's own projection was damped: keep its residual (above).

    Returns
    -------
    RestoredImage
        The image in the acquired intensity space (float32, ``sr_img``'s grid and header),
        the bias field on that grid (None without ``bias``), ``‖A x − y‖ / ‖y‖`` against the
        acquired slices, and whether the projection was applied.

    Examples
    --------
    An exact dccubic on bias-corrected slices ends exactly on the acquired ones:

    >>> rng = np.random.default_rng(0)
    >>> aff = np.diag([0.5, 0.5, 2.0, 1.0])
    >>> lr = nib.Nifti1Image(rng.random((3, 3, 4)).astype(np.float32) + 1, aff)
    >>> field = nib.Nifti1Image(np.linspace(0.8, 1.2, 36, dtype=np.float32).reshape(3, 3, 4), aff)
    >>> corrected = nib.Nifti1Image(np.asarray(lr.dataobj) / np.asarray(field.dataobj), aff)
    >>> from bida_app.methods.dccubic import dc_cubic_super_resolve
    >>> sr = dc_cubic_super_resolve(corrected, 2, 2.0, 0.5, damping=0.0)[0]
    >>> restore_acquired(sr, lr, 2, 2.0, bias=field).residual < 1e-6
    True
    """
    x = np.asarray(sr_img.dataobj, np.float64)
    y = np.asarray(acquired.dataobj, np.float64)
    op = slice_operator(sr_img, acquired, through_axis, thickness_mm, profile)
    field, lr_field = None, 1.0
    if bias is not None:
        field = bias_on_grid(bias, sr_img.affine, x.shape)
        lr_field = np.maximum(np.asarray(bias.dataobj, np.float64), MIN_BIAS)
    target = y
    if project and damped:
        # the method's own re-degradation with the field put back: y − b ⊙ (y / b − A x)
        target = lr_field * op(x)
    if field is not None:
        x = x * field
    if project:
        x = op.consistency(x, target)
    resid = op.relative_residual(x, y)
    out = nib.Nifti1Image(x.astype(np.float32), sr_img.affine, header=sr_img.header)
    out.set_data_dtype(np.float32)
    field_img = None
    if field is not None:
        field_img = nib.Nifti1Image(field.astype(np.float32), sr_img.affine, header=sr_img.header)
        field_img.set_data_dtype(np.float32)
    return RestoredImage(out, field_img, resid, project)
