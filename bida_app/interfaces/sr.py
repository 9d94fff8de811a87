"""Super-resolution interfaces: cubic baseline and BiDA."""

from __future__ import annotations

import nibabel as nib
import numpy as np
from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)

from ..physics.profiles import PROFILE_KINDS
from ._base import Timer, out_path, write_info


class _CubicInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="thick-slice image")
    through_axis = traits.Int(mandatory=True, desc="voxel axis of the through-plane direction")
    thickness_mm = traits.Float(mandatory=True, desc="slice thickness (FWHM) in mm")
    target_mm = traits.Float(mandatory=True, desc="output through-plane voxel size in mm")


class _SROutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="super-resolved image")
    std_file = File(desc="posterior standard deviation (BiDA with K > 1)")
    info_file = File(exists=True, desc="parameters, residual and timing (JSON)")


class CubicSR(SimpleInterface):
    """Cubic B-spline through-plane interpolation (:mod:`bida_app.methods.cubic`)."""

    input_spec = _CubicInputSpec
    output_spec = _SROutputSpec

    def _run_interface(self, runtime):
        from ..methods.cubic import cubic_super_resolve
        from ..physics import SliceOperator

        img = nib.load(self.inputs.in_file)
        with Timer() as t:
            sr, geom = cubic_super_resolve(
                img, self.inputs.through_axis, self.inputs.thickness_mm, self.inputs.target_mm
            )
        op = SliceOperator.from_geometry(geom, "gaussian")
        lr = np.asarray(img.dataobj, dtype=np.float64)
        resid = np.linalg.norm(op(np.asarray(sr.dataobj, np.float64)) - lr)
        self._results["out_file"] = out_path(runtime, "sr_T2w.nii.gz")
        nib.save(sr, self._results["out_file"])
        self._results["info_file"] = write_info(
            runtime,
            "sr.json",
            {
                "stage": "super_resolution",
                "seconds": t.seconds,
                "sidecar": {
                    "Method": "cubic",
                    "MethodParameters": {
                        "Interpolation": "cubic B-spline (order 3)",
                        "Boundary": "nearest",
                    },
                    "Geometry": geom.as_dict(),
                    "DataConsistencyResidual": float(resid / max(np.linalg.norm(lr), 1e-12)),
                    "DataConsistencyModel": "gaussian slice profile, FWHM = slice thickness",
                },
            },
        )
        return runtime


class _BidaInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="thick-slice image (bias-corrected)")
    through_axis = traits.Int(mandatory=True, desc="voxel axis of the through-plane direction")
    thickness_mm = traits.Float(mandatory=True, desc="slice thickness (FWHM) in mm")
    target_mm = traits.Float(mandatory=True, desc="output through-plane voxel size in mm")
    weights_dir = traits.Str("", usedefault=True, desc="plane models folder ('' = shipped)")
    prior = traits.Enum("pretrained", "self", usedefault=True, desc="prior source")
    self_prior_steps = traits.Int(0, usedefault=True, desc="--prior self steps (0: default)")
    steps = traits.Int(16, usedefault=True, desc="DDIM steps")
    eta = traits.Float(0.0, usedefault=True, desc="DDIM stochasticity")
    n_samples = traits.Int(1, usedefault=True, desc="posterior samples (K)")
    null_shrinkage = traits.Bool(False, usedefault=True, desc="shrink disagreeing null space")
    slice_profile = traits.Enum(*PROFILE_KINDS, usedefault=True, desc="slice profile of A")
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
        with Timer() as t:
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
                seed=self.inputs.seed,
                device=resolve_device(self.inputs.device),
            )
        self._results["out_file"] = out_path(runtime, "sr_T2w.nii.gz")
        nib.save(res.image, self._results["out_file"])
        if res.std_image is not None:
            self._results["std_file"] = out_path(runtime, "sr_std.nii.gz")
            nib.save(res.std_image, self._results["std_file"])
        self._results["info_file"] = write_info(
            runtime,
            "sr.json",
            {
                "stage": "super_resolution",
                "seconds": t.seconds,
                "sidecar": res.sidecar,
            },
        )
        return runtime
