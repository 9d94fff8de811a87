"""Interface writing a run's QC figures into ``sub-<label>/figures/`` of the output dataset."""

from __future__ import annotations

from pathlib import Path

from ._base import BaseInterfaceInputSpec, File, SimpleInterface, TraitedSpec, isdefined, traits


class _RunReportFiguresInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="thick-slice input (same world space)")
    sr_file = File(exists=True, mandatory=True, desc="super-resolved image")
    bias_file = File(exists=True, desc="N4 bias field (optional)")
    std_file = File(exists=True, desc="posterior standard deviation, K > 1 (optional)")
    corrected_file = File(exists=True, desc="bias-corrected result, with N4 (optional)")
    run_info = traits.Dict(
        mandatory=True, desc='run description: "label", "entities" (subject, session, ...)'
    )
    output_dir = traits.Str(mandatory=True, desc="derivatives root")
    method = traits.Str("", usedefault=True, desc="method name used in the figure names")
    n_slices = traits.Int(6, usedefault=True, desc="slices per mosaic")


class _RunReportFiguresOutputSpec(TraitedSpec):
    out_files = traits.List(File(exists=True), desc="figures written (QC JSON last)")


class RunReportFigures(SimpleInterface):
    """Render the QC figures of one run (:func:`bida_app.reports.figures.render_run_figures`).

    Files go to ``output_dir/sub-<label>/figures/<entities>_desc-<what>_T2w.{png,svg,json}``,
    each written atomically.
    """

    input_spec = _RunReportFiguresInputSpec
    output_spec = _RunReportFiguresOutputSpec

    def _run_interface(self, runtime):
        from ..reports.figures import entity_prefix, figures_dir, render_run_figures

        info = self.inputs.run_info
        entities = info.get("entities", {})
        prefix = entity_prefix(entities) or str(info.get("label", "run")).removesuffix("_T2w")
        files = render_run_figures(
            self.inputs.sr_file,
            figures_dir(self.inputs.output_dir, str(entities.get("subject", "unknown"))),
            prefix,
            in_file=self.inputs.in_file,
            bias_file=self.inputs.bias_file if isdefined(self.inputs.bias_file) else None,
            std_file=self.inputs.std_file if isdefined(self.inputs.std_file) else None,
            corrected_file=(
                self.inputs.corrected_file if isdefined(self.inputs.corrected_file) else None
            ),
            method=self.inputs.method,
            n_slices=self.inputs.n_slices,
        )
        self._results["out_files"] = [str(Path(f)) for f in files]
        return runtime
