"""Interfaces that read inputs and write BIDS derivatives."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib

from . import _base
from ._base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits


class _LoadT2wInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="input T2w NIfTI (BIDS dataset)")
    header_scale = traits.Float(1.0, usedefault=True, desc="scale applied to the affine")


class _LoadT2wOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="validated float32 copy (non-finite voxels set to 0)")


class LoadT2w(SimpleInterface):
    """Validate and load a T2w run (see :func:`bida_app.utils.nifti.load_volume`)."""

    input_spec = _LoadT2wInputSpec
    output_spec = _LoadT2wOutputSpec

    def _run_interface(self, runtime):
        from ..utils.nifti import load_volume

        img = load_volume(self.inputs.in_file, header_scale=self.inputs.header_scale)
        self._results["out_file"] = _base.save_image(runtime, "input_T2w.nii.gz", img)
        return runtime


class _SinkInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="super-resolved image")
    std_file = File(exists=True, desc="posterior standard deviation (BiDA, K > 1)")
    corrected_file = File(exists=True, desc="bias-corrected result (with N4)")
    bias_file = File(exists=True, desc="N4 bias field on the output grid (with N4)")
    info_files = traits.List(File(exists=True), desc="JSON info of the upstream nodes")
    run_info = traits.Dict(mandatory=True, desc="run description (entities, relpath, ...)")
    output_dir = traits.Str(mandatory=True, desc="derivatives root")
    method = traits.Str(mandatory=True, desc="method label used as desc-<method>")
    config = traits.Dict(desc="run options recorded in the sidecar")


class _SinkOutputSpec(TraitedSpec):
    out_file = File(desc="derivative NIfTI")
    out_sidecar = File(desc="derivative JSON sidecar")
    std_file = File(desc="uncertainty derivative")
    corrected_file = File(desc="bias-corrected derivative (desc-<method>Biascorr)")
    bias_file = File(desc="bias-field derivative (desc-biasfield)")


class DerivativesSink(SimpleInterface):
    """Write a run's derivative and its sidecar atomically into the output dataset."""

    input_spec = _SinkInputSpec
    output_spec = _SinkOutputSpec

    def _run_interface(self, runtime):
        from ..bids.sidecar import build_sidecar, write_derivative

        infos = (
            [_base.read_info(p) for p in self.inputs.info_files]
            if isdefined(self.inputs.info_files)
            else []
        )
        with _base.Timer() as t:
            std, corrected, bias = (
                nib.load(f) if isdefined(f) else None
                for f in (
                    self.inputs.std_file,
                    self.inputs.corrected_file,
                    self.inputs.bias_file,
                )
            )
            meta = build_sidecar(
                self.inputs.run_info,
                infos,
                self.inputs.config if isdefined(self.inputs.config) else {},
            )
            paths = write_derivative(
                Path(self.inputs.output_dir),
                self.inputs.run_info["entities"],
                self.inputs.method,
                nib.load(self.inputs.in_file),
                meta,
                std_img=std,
                corrected_img=corrected,
                bias_img=bias,
            )
        self._results["out_file"] = str(paths["image"])
        self._results["out_sidecar"] = str(paths["sidecar"])
        for key, name in (
            ("std", "std_file"),
            ("corrected", "corrected_file"),
            ("bias", "bias_file"),
        ):
            if key in paths:
                self._results[name] = str(paths[key])
        Path(runtime.cwd, "sink.json").write_text(json.dumps({"seconds": t.seconds}))
        return runtime
