"""Participant workflow factories (fMRIPrep/niworkflows style ``init_*_wf``)."""

from __future__ import annotations

import re
from pathlib import Path

from ..config import RunConfig


def run_wf_name(run_info: dict) -> str:
    """Nipype-safe workflow name of a run, e.g. ``run_sub_01_ses_1_acq_coronal_T2w``."""
    return "run_" + re.sub(r"[^0-9a-zA-Z]+", "_", run_info["label"]).strip("_")


def init_bida_wf(runs: list[dict], cfg: RunConfig, output_dir: Path, work_dir: Path):
    """Build the participant workflow: one sub-workflow per anisotropic T2w run.

    Parameters
    ----------
    runs : list of dict
        Run descriptions (:meth:`~bida_app.bids.discovery.T2wRun.to_dict`) to process.
    cfg : RunConfig
        The run's configuration.
    output_dir, work_dir : Path
        Derivatives root and Nipype base directory.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Not yet run.
    """
    from nipype.pipeline import engine as pe

    wf = pe.Workflow(name="bida_wf", base_dir=str(work_dir))
    for run in runs:
        wf.add_nodes([init_single_run_wf(run, cfg, output_dir, name=run_wf_name(run))])
    return wf


#: Methods whose output is projected onto the acquired slices at the end.
DATA_CONSISTENT_METHODS = ("dccubic", "bida")


def init_single_run_wf(run: dict, cfg: RunConfig, output_dir: Path, name: str = "run_wf"):
    """load → N4 → super-resolution → back to the acquired data → derivatives sink, for one run.

    The method (cubic, data-consistent cubic or BiDA) works on the N4-corrected slices; then
    :class:`~bida_app.interfaces.sr.RestoreAcquired` puts the bias field back and, for the
    data-consistent methods, projects onto the *acquired* slices, so the main derivative is in
    the acquired intensity space and re-degrades to the acquired data. With N4 the
    bias-corrected result (``desc-<method>Biascorr``) and the field on the output grid
    (``desc-biasfield``) are written too. BiDA adds its standardization (RAS, in-plane
    resampling, [-1, 1] scaling, padding) and the exact inverse back onto the output grid
    inside :class:`~bida_app.interfaces.sr.BidaSR`.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from ..interfaces.io import DerivativesSink, LoadT2w
    from ..interfaces.preprocess import N4Correct
    from ..interfaces.reports import RunReportFigures
    from ..interfaces.sr import BidaSR, CubicSR, RestoreAcquired

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    inputnode.inputs.in_file = run["path"]
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["out_file", "sidecar", "bias_file"]), name="outputnode"
    )
    load = pe.Node(LoadT2w(header_scale=cfg.header_scale), name="load", mem_gb=0.5)
    target = cfg.target_resolution or run["inplane_mm"]
    if cfg.method in ("cubic", "dccubic"):
        sr = pe.Node(
            CubicSR(
                through_axis=run["through_axis"],
                thickness_mm=run["thickness_mm"],
                target_mm=target,
                data_consistent=cfg.method == "dccubic",
                slice_profile=cfg.slice_profile,
            ),
            name=cfg.method,
            mem_gb=1.0,
        )
    else:
        sr = pe.Node(
            BidaSR(
                through_axis=run["through_axis"],
                thickness_mm=run["thickness_mm"],
                target_mm=target,
                weights_dir=cfg.weights,
                prior=cfg.prior,
                self_prior_steps=cfg.self_prior_steps,
                steps=cfg.steps,
                eta=cfg.eta,
                n_samples=cfg.n_samples,
                null_shrinkage=cfg.null_shrinkage,
                slice_profile=cfg.slice_profile,
                seed=cfg.seed,
                device=cfg.device,
                num_threads=cfg.omp_nthreads,
            ),
            name="bida",
            mem_gb=4.0,
            n_procs=cfg.omp_nthreads,
        )
    sink = pe.Node(
        DerivativesSink(
            run_info=run, output_dir=str(output_dir), method=cfg.method, config=_recorded(cfg)
        ),
        name="ds_t2w",
        run_without_submitting=True,
    )
    sink.overwrite = True  # always (re)write the final files, they are cheap
    merge = pe.Node(niu.Merge(3), name="merge_info", run_without_submitting=True)
    restore = pe.Node(
        RestoreAcquired(
            through_axis=run["through_axis"],
            thickness_mm=run["thickness_mm"],
            slice_profile=cfg.slice_profile,
            project=cfg.method in DATA_CONSISTENT_METHODS,
        ),
        name="restore_acquired",
        mem_gb=1.0,
    )

    wf.connect([
        (inputnode, load, [("in_file", "in_file")]),
        (load, restore, [("out_file", "acquired_file")]),
        (sr, restore, [("out_file", "in_file")]),
        (restore, merge, [("info_file", "in3")]),
        (restore, sink, [("out_file", "in_file")]),
    ])  # fmt: skip
    if cfg.n4:
        n4 = pe.Node(
            N4Correct(num_threads=cfg.omp_nthreads),
            name="n4",
            mem_gb=1.0,
            n_procs=cfg.omp_nthreads,
        )
        wf.connect(
            [
                (load, n4, [("out_file", "in_file")]),
                (n4, sr, [("out_file", "in_file")]),
                (n4, merge, [("info_file", "in1")]),
                (n4, outputnode, [("bias_file", "bias_file")]),
                (n4, restore, [("bias_file", "bias_file")]),
                (
                    restore,
                    sink,
                    [("corrected_file", "corrected_file"), ("bias_file", "bias_file")],
                ),
            ]
        )
    else:
        wf.connect([(load, sr, [("out_file", "in_file")])])
        merge.inputs.in1 = []
    wf.connect([
        (sr, merge, [("info_file", "in2")]),
        (merge, sink, [("out", "info_files")]),
        (sink, outputnode, [("out_file", "out_file"), ("out_sidecar", "sidecar")]),
    ])  # fmt: skip
    if cfg.method == "bida" and cfg.n_samples > 1:
        wf.connect([(sr, sink, [("std_file", "std_file")])])

    figs = pe.Node(
        RunReportFigures(run_info=run, output_dir=str(output_dir), method=cfg.method),
        name="report_figures",
        mem_gb=1.5,
    )
    figs.overwrite = True  # like ds_t2w: rewrite into output_dir even when cached
    wf.connect([(load, figs, [("out_file", "in_file")]), (sink, figs, [("out_file", "sr_file")])])
    if cfg.n4:
        wf.connect([
            (n4, figs, [("bias_file", "bias_file")]),
            (sink, figs, [("corrected_file", "corrected_file")]),
        ])  # fmt: skip
    if cfg.method == "bida" and cfg.n_samples > 1:
        wf.connect([(sink, figs, [("std_file", "std_file")])])
    return wf


def _recorded(cfg: RunConfig) -> dict:
    return {
        "seed": cfg.seed,
        "header_scale": cfg.header_scale,
        "anisotropy_threshold": cfg.anisotropy_threshold,
        "target_resolution": cfg.target_resolution,
        "device": cfg.device,
        "nprocs": cfg.nprocs,
        "omp_nthreads": cfg.omp_nthreads,
    }
