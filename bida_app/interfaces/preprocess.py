"""Interfaces of the preprocessing steps (N4 bias-field correction)."""

from __future__ import annotations

import nibabel as nib

from . import _base
from ._base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, traits


class _N4InputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to correct")
    shrink_factor = traits.Int(
        4, usedefault=True, desc="N4 shrink factor (lowered for few slices)"
    )
    n_iterations = traits.List(
        traits.Int, [50, 50, 30], usedefault=True, desc="iterations per fitting level"
    )
    num_threads = traits.Int(1, usedefault=True, nohash=True, desc="ITK threads")


class _N4OutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="bias-corrected image")
    bias_file = File(exists=True, desc="estimated multiplicative bias field")
    info_file = File(exists=True, desc="parameters and timing (JSON)")


class N4Correct(SimpleInterface):
    """N4 bias-field correction with ANTsPy (:func:`bida_app.preprocess.n4.n4_correct`)."""

    input_spec = _N4InputSpec
    output_spec = _N4OutputSpec

    def _run_interface(self, runtime):
        from ..preprocess.n4 import n4_correct

        with _base.Timer() as t:
            res = n4_correct(
                nib.load(self.inputs.in_file),
                shrink_factor=self.inputs.shrink_factor,
                convergence={"iters": list(self.inputs.n_iterations), "tol": 1e-7},
                n_threads=self.inputs.num_threads,
                name=self.inputs.in_file,
            )
        self._results["out_file"] = _base.save_image(runtime, "n4_T2w.nii.gz", res.corrected)
        self._results["bias_file"] = _base.save_image(runtime, "n4_biasfield.nii.gz", res.bias)
        sidecar = {"BiasFieldCorrection": {"Method": "N4 (ANTsPy)", **res.params}}
        self._results["info_file"] = _base.write_info(runtime, "n4", t, sidecar)
        return runtime
