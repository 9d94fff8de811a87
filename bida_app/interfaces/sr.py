"""Super-resolution interfaces: cubic, data-consistent cubic, BiDA; back to the acquired data."""

from __future__ import annotations

import nibabel as nib
import numpy as np

from ..config import DEFAULT_DC_DAMPING, DEFAULT_SLICE_PROFILE, DEFAULT_STEPS, PRIORS
from ..physics.profiles import PROFILE_KINDS, forward_model_label, slr_tbw
from . import _base
from ._base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits

#: Profile choices with the default first (a traits Enum defaults to its first value).
PROFILES = (DEFAULT_SLICE_PROFILE, *(k for k in PROFILE_KINDS if k != DEFAULT_SLICE_PROFILE))


def _dc_damping_trait(desc: str) -> traits.Either:
    """``--dc_damping``: "auto" or a number >= 0 (default :data:`DEFAULT_DC_DAMPING`)."""
    return traits.Either(
        traits.Range(low=0.0),
        traits.Enum("auto"),
        default=DEFAULT_DC_DAMPING,
        usedefault=True,
        desc=desc,
    )


class _CubicInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="thick-slice image")
    through_axis = traits.Int(mandatory=True, desc="voxel axis of the through-plane direction")
    thickness_mm = traits.Float(mandatory=True, desc="slice thickness (FWHM) in mm")
    target_mm = traits.Float(mandatory=True, desc="output through-plane voxel size in mm")
    data_consistent = traits.Bool(
        False, usedefault=True, desc="project onto the slices after interpolation (dccubic)"
    )
    slice_profile = traits.Enum(*PROFILES, usedefault=True, desc="slice profile of A")
    dc_damping = _dc_damping_trait(
        'regularisation of the projection ("auto": Wiener gain for the scan\'s noise; '
        "a number >= 0: Tikhonov damping, 0 exact)"
    )


class _SROutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="super-resolved image")
    std_file = File(desc="posterior standard deviation (BiDA with K > 1)")
    info_file = File(exists=True, desc="parameters, residual and timing (JSON)")


class CubicSR(SimpleInterface):
    """Cubic B-spline through-plane interpolation, optionally projected onto the slices.

    ``data_consistent`` gives the data-consistent baseline
    (:func:`bida_app.methods.dccubic.dc_cubic_super_resolve`).
    """

    input_spec = _CubicInputSpec
    output_spec = _SROutputSpec

    def _run_interface(self, runtime):
        from ..methods.cubic import cubic_super_resolve
        from ..methods.dccubic import dc_cubic_super_resolve
        from ..physics import SliceOperator

        img = nib.load(self.inputs.in_file)
        args = (img, self.inputs.through_axis, self.inputs.thickness_mm, self.inputs.target_mm)
        profile = self.inputs.slice_profile
        params = {"Interpolation": "cubic B-spline (order 3)", "Boundary": "nearest"}
        noise = {}  # what an "auto" projection read and kept
        with _base.Timer() as t:
            if self.inputs.data_consistent:
                damping = self.inputs.dc_damping
                sr, geom, resid, gain = dc_cubic_super_resolve(
                    *args, profile=profile, damping=damping
                )
                method = "dccubic"
                params |= {"Projection": _projection_text(damping), "Damping": damping}
                if gain is not None:
                    noise = gain.sidecar()
                    params["DampingMode"] = (
                        f"auto (Wiener gain for noise level {noise['NoiseLevelEstimate']:.4f} "
                        f"of the 99th percentile; keeps {gain.kept:.0%} of the correction)"
                    )
                else:
                    params["DampingMode"] = "given"
                params |= {
                    "SliceProfile": profile,
                    **slr_tbw(profile),
                    "ProfileFWHM": self.inputs.thickness_mm,
                }
            else:
                sr, geom = cubic_super_resolve(*args)
                op = SliceOperator.from_geometry(geom, profile)
                resid = op.relative_residual(np.asarray(sr.dataobj), np.asarray(img.dataobj))
                method = "cubic"
        self._results["out_file"] = _base.save_image(runtime, "sr_T2w.nii.gz", sr)
        self._results["info_file"] = _base.write_info(
            runtime,
            "super_resolution",
            t,
            {
                "Method": method,
                "MethodParameters": params,
                "Geometry": geom.as_dict(),
                "DataConsistencyResidual": resid,
                "DataConsistencyModel": forward_model_label(profile),
                **({"DataConsistencyDamping": params["Damping"]} if method == "dccubic" else {}),
                **noise,
            },
        )
        return runtime


def _projection_text(damping: float | str) -> str:
    """dccubic's projection, in words, for ``MethodParameters.Projection``."""
    if damping == "auto":
        return (
            "x <- x + pinv(A) W (y - A x) onto the slices, W the Wiener gain for the noise "
            "level estimated from the scan"
        )
    if damping == 0:
        return "x <- x + pinv(A) (y - A x) onto the slices"
    damped = "x <- x + A^T (A A^T + damping mean(diag(A A^T)) I)^-1 (y - A x)"
    return f"{damped} onto the slices (damped)"


class _BidaInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="thick-slice image (bias-corrected)")
    through_axis = traits.Int(mandatory=True, desc="voxel axis of the through-plane direction")
    thickness_mm = traits.Float(mandatory=True, desc="slice thickness (FWHM) in mm")
    target_mm = traits.Float(mandatory=True, desc="output through-plane voxel size in mm")
    weights_dir = traits.Str("", usedefault=True, desc="plane models folder ('' = shipped)")
    prior = traits.Enum(*PRIORS, usedefault=True, desc="prior source")
    self_prior_steps = traits.Int(0, usedefault=True, desc="--prior self steps (0: default)")
    steps = traits.Int(DEFAULT_STEPS, usedefault=True, desc="DDIM steps")
    eta = traits.Float(0.0, usedefault=True, desc="DDIM stochasticity")
    n_samples = traits.Int(1, usedefault=True, desc="posterior samples (K)")
    null_shrinkage = traits.Bool(False, usedefault=True, desc="shrink disagreeing null space")
    slice_profile = traits.Enum(*PROFILES, usedefault=True, desc="slice profile of A")
    dc_damping = _dc_damping_trait(
        "data term: the slices as dccubic with this regularisation explains them"
    )
    seed = traits.Int(0, usedefault=True, desc="random seed")
    device = traits.Str("auto", usedefault=True, nohash=True, desc="torch device")
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="CPU threads for torch")


class BidaSR(SimpleInterface):
    """BiDA super-resolution (:func:`bida_app.methods.bida.bida_super_resolve_image`).

    Plane models are cached per process, so a MultiProc worker loads them once.
    """

    input_spec = _BidaInputSpec
    output_spec = _SROutputSpec

    def _run_interface(self, runtime):
        from ..device import resolve_device, set_threads
        from ..methods.bida import bida_super_resolve_image

        set_threads(self.inputs.num_threads)
        with _base.Timer() as t:
            res = bida_super_resolve_image(
                nib.load(self.inputs.in_file),
                through_axis=self.inputs.through_axis,
                thickness_mm=self.inputs.thickness_mm,
                target_mm=self.inputs.target_mm,
                weights_dir=self.inputs.weights_dir or None,
                prior=self.inputs.prior,
                self_prior_steps=self.inputs.self_prior_steps or None,
                steps=self.inputs.steps,
                eta=self.inputs.eta,
                n_samples=self.inputs.n_samples,
                null_shrinkage=self.inputs.null_shrinkage,
                slice_profile=self.inputs.slice_profile,
                dc_damping=self.inputs.dc_damping,
                seed=self.inputs.seed,
                device=resolve_device(self.inputs.device),
            )
        self._results["out_file"] = _base.save_image(runtime, "sr_T2w.nii.gz", res.image)
        if res.std_image is not None:
            self._results["std_file"] = _base.save_image(runtime, "sr_std.nii.gz", res.std_image)
        self._results["info_file"] = _base.write_info(runtime, "super_resolution", t, res.sidecar)
        return runtime


class _RestoreInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="super-resolved (bias-corrected) image")
    acquired_file = File(exists=True, mandatory=True, desc="the acquired thick slices")
    bias_file = File(exists=True, desc="N4 multiplicative field on the slices' grid")
    through_axis = traits.Int(mandatory=True, desc="voxel axis of the through-plane direction")
    thickness_mm = traits.Float(mandatory=True, desc="slice thickness (FWHM) in mm")
    slice_profile = traits.Enum(*PROFILES, usedefault=True, desc="slice profile of A")
    project = traits.Bool(True, usedefault=True, desc="project onto the acquired slices")
    damped = traits.Bool(
        False, usedefault=True, desc="the method's projection was damped: keep its residual"
    )


class _RestoreOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="result in the acquired intensity space")
    corrected_file = File(desc="the bias-corrected result (with N4 only)")
    bias_file = File(desc="the bias field on the output grid (with N4 only)")
    info_file = File(exists=True, desc="residual against the acquired slices (JSON)")


class RestoreAcquired(SimpleInterface):
    """Put N4's field back and re-project onto the acquired slices.

    See :func:`bida_app.preprocess.restore.restore_acquired`. Its sidecar entries override
    the method's: ``DataConsistencyResidual`` is against the acquired data.
    """

    input_spec = _RestoreInputSpec
    output_spec = _RestoreOutputSpec

    def _run_interface(self, runtime):
        from ..preprocess.restore import restore_acquired

        sr = nib.load(self.inputs.in_file)
        bias = nib.load(self.inputs.bias_file) if isdefined(self.inputs.bias_file) else None
        with _base.Timer() as t:
            res = restore_acquired(
                sr,
                nib.load(self.inputs.acquired_file),
                self.inputs.through_axis,
                self.inputs.thickness_mm,
                bias=bias,
                profile=self.inputs.slice_profile,
                project=self.inputs.project,
                damped=self.inputs.damped,
            )
        self._results["out_file"] = _base.save_image(runtime, "restored_T2w.nii.gz", res.image)
        if res.bias is not None:
            self._results["corrected_file"] = self.inputs.in_file
            self._results["bias_file"] = _base.save_image(runtime, "biasfield_hr.nii.gz", res.bias)
        profile = self.inputs.slice_profile
        self._results["info_file"] = _base.write_info(
            runtime,
            "restore_acquired",
            t,
            {
                "IntensitySpace": "acquired" if bias is not None else "acquired (no N4)",
                "BiasFieldReapplied": bias is not None,
                "FinalProjection": (
                    "x <- x + pinv(A) (b A x_method - A x): the damped projection's residual "
                    "against the slices it was given carried over to the acquired slices "
                    f"(b: bias field; {profile} profile, FWHM = slice thickness)"
                    if res.projected and self.inputs.damped
                    else f"x <- x + pinv(A) (y - A x) onto the acquired slices ({profile} "
                    "profile, FWHM = slice thickness)"
                    if res.projected
                    else "none (the method is not data-consistent)"
                ),
                "DataConsistencyResidual": res.residual,
                "DataConsistencyReference": "acquired slices (before N4)",
                "DataConsistencyModel": forward_model_label(profile),
            },
        )
        return runtime
