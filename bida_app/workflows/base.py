"""Participant workflow factories (fMRIPrep/niworkflows style ``init_*_wf``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ..config import DEFAULT_DC_DAMPING, DEFAULT_METHOD, DEFAULT_SLICE_PROFILE, DEFAULT_STEPS


def run_wf_name(run_info: dict) -> str:
    """Nipype-safe workflow name of a run, e.g. ``run_sub_01_ses_1_acq_coronal_T2w``."""
    return "run_" + re.sub(r"[^0-9a-zA-Z]+", "_", run_info["label"]).strip("_")


def init_bida_wf(runs: list[dict], output_dir: Path, work_dir: Path, **run_options: Any):
    """Build the participant workflow: one sub-workflow per anisotropic T2w run.

    Parameters
    ----------
    runs : list of dict
        Run descriptions (:meth:`~bida_app.bids.discovery.T2wRun.to_dict`) to process.
    output_dir : Path
        Derivatives root.
    work_dir : Path
        Nipype base directory.
    **run_options
        Keyword arguments of :func:`init_single_run_wf` (``method``, ``n4``, ...), the same
        for every run.

    Inputs
    ------
    None; each run's input file is set on the ``inputnode`` of its sub-workflow
    (:func:`run_wf_name` names it).

    Outputs
    -------
    None; each sub-workflow's ``outputnode`` lists the files it wrote.

    Returns
    -------
    nipype.pipeline.engine.Workflow
        ``bida_wf``, not yet run.
    """
    from nipype.pipeline import engine as pe

    wf = pe.Workflow(name="bida_wf", base_dir=str(work_dir))
    for run in runs:
        sub_wf = init_single_run_wf(run, output_dir, name=run_wf_name(run), **run_options)
        wf.add_nodes([sub_wf])
    return wf


#: Methods whose output is projected onto the acquired slices at the end.
DATA_CONSISTENT_METHODS = ("dccubic", "bida")


def init_single_run_wf(
    run: dict,
    output_dir: Path,
    *,
    method: str = DEFAULT_METHOD,
    slice_profile: str = DEFAULT_SLICE_PROFILE,
    dc_damping: float | str = DEFAULT_DC_DAMPING,
    header_scale: float = 1.0,
    target_resolution: float = 0.0,
    n4: bool = True,
    omp_nthreads: int = 1,
    weights: str = "",
    prior: str = "pretrained",
    self_prior_steps: int = 0,
    steps: int = DEFAULT_STEPS,
    eta: float = 0.0,
    n_samples: int = 1,
    null_shrinkage: bool = False,
    seed: int = 0,
    device: str = "auto",
    recorded: dict | None = None,
    name: str = "run_wf",
):
    """load → N4 → super-resolution → back to the acquired data → derivatives sink, for one run.

    The method (cubic, data-consistent cubic or BiDA) works on the N4-corrected slices; then
    :class:`~bida_app.interfaces.sr.RestoreAcquired` puts the bias field back and, for the
    data-consistent methods, projects onto the *acquired* slices, so the main derivative is in
    the acquired intensity space and re-degrades to the acquired data. With N4 the
    bias-corrected result (``desc-<method>Biascorr``) and the field on the output grid
    (``desc-biasfield``) are written too. BiDA adds its standardization (RAS, in-plane
    resampling, [-1, 1] scaling, padding) and the exact inverse back onto the output grid
    inside :class:`~bida_app.interfaces.sr.BidaSR`. The derivatives and the run's report
    figures are written into ``output_dir`` by the workflow's last nodes.

    Parameters
    ----------
    run : dict
        The run (:meth:`~bida_app.bids.discovery.T2wRun.to_dict`): path, through-plane voxel
        axis, slice thickness, in-plane voxel size, BIDS entities.
    output_dir : Path
        Derivatives root.
    method : {"dccubic", "cubic", "bida"}
        Super-resolution method; also the ``desc-`` label of the derivative.
    slice_profile : {"gaussian", "slr", "boxcar"}
        Slice profile of the forward model A (dccubic, BiDA and the final projection).
    dc_damping : float or "auto"
        Regularisation of dccubic's projection ("auto": Wiener gain for the scan's noise
        level; a number: Tikhonov damping, 0 exact; :mod:`bida_app.methods.dccubic`), and
        BiDA's data term (the slices as that dccubic explains them).
    header_scale : float
        Factor applied to the voxel sizes of the input header.
    target_resolution : float
        Through-plane voxel size of the output in mm; 0 for the run's in-plane size.
    n4 : bool
        Correct the bias field (N4) before super-resolution and put it back after.
    omp_nthreads : int
        CPU threads of the N4 and BiDA nodes.
    weights, prior, self_prior_steps, steps, eta, n_samples, null_shrinkage, seed, device
        BiDA only (see :class:`~bida_app.interfaces.sr.BidaSR`): plane-model folder ("" for
        the shipped one), ``"pretrained"``, ``"self"`` or ``"finetune"``, training steps of
        the scan-adaptive or fine-tuned prior (0: its default), DDIM steps, DDIM
        stochasticity, posterior samples (K > 1 adds the ``desc-bidaStd`` map), null-space
        shrinkage, random seed, torch device.
    recorded : dict, optional
        Run options recorded under ``Options`` in the sidecar.
    name : str
        Name of the workflow.

    Inputs
    ------
    in_file
        The thick-slice T2w image (preset to ``run["path"]``).

    Outputs
    -------
    out_file
        The main derivative, ``desc-<method>``, in the acquired intensity space.
    sidecar
        Its JSON sidecar.
    bias_file
        N4's bias field on the slices' grid (with ``n4`` only).

    Returns
    -------
    nipype.pipeline.engine.Workflow
        Not yet run.
    """
    from nipype.interfaces import utility as niu
    from nipype.pipeline import engine as pe

    from ..interfaces.io import DerivativesSink, LoadT2w
    from ..interfaces.preprocess import N4Correct
    from ..interfaces.reports import RunReportFigures
    from ..interfaces.sr import BidaSR, CubicSR, RestoreAcquired
    from ..methods.dccubic import projection_is_damped

    wf = pe.Workflow(name=name)
    inputnode = pe.Node(niu.IdentityInterface(fields=["in_file"]), name="inputnode")
    inputnode.inputs.in_file = run["path"]
    outputnode = pe.Node(
        niu.IdentityInterface(fields=["out_file", "sidecar", "bias_file"]), name="outputnode"
    )
    load = pe.Node(LoadT2w(header_scale=header_scale), name="load", mem_gb=0.5)
    target = target_resolution or run["inplane_mm"]
    if method in ("cubic", "dccubic"):
        sr = pe.Node(
            CubicSR(
                through_axis=run["through_axis"],
                thickness_mm=run["thickness_mm"],
                target_mm=target,
                data_consistent=method == "dccubic",
                slice_profile=slice_profile,
                dc_damping=dc_damping,
            ),
            name=method,
            mem_gb=1.0,
        )
    else:
        sr = pe.Node(
            BidaSR(
                through_axis=run["through_axis"],
                thickness_mm=run["thickness_mm"],
                target_mm=target,
                weights_dir=weights,
                prior=prior,
                self_prior_steps=self_prior_steps,
                steps=steps,
                eta=eta,
                n_samples=n_samples,
                null_shrinkage=null_shrinkage,
                slice_profile=slice_profile,
                dc_damping=dc_damping,
                seed=seed,
                device=device,
                num_threads=omp_nthreads,
            ),
            name="bida",
            mem_gb=4.0,
            n_procs=omp_nthreads,
        )
    sink = pe.Node(
        DerivativesSink(
            run_info=run, output_dir=str(output_dir), method=method, config=recorded or {}
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
            slice_profile=slice_profile,
            project=method in DATA_CONSISTENT_METHODS,
            damped=projection_is_damped(method, dc_damping),
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
    if n4:
        n4 = pe.Node(
            N4Correct(num_threads=omp_nthreads),
            name="n4",
            mem_gb=1.0,
            n_procs=omp_nthreads,
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
    if method == "bida" and n_samples > 1:
        wf.connect([(sr, sink, [("std_file", "std_file")])])

    figs = pe.Node(
        RunReportFigures(run_info=run, output_dir=str(output_dir), method=method),
        name="report_figures",
        mem_gb=1.5,
    )
    figs.overwrite = True  # like ds_t2w: rewrite into output_dir even when cached
    wf.connect([(load, figs, [("out_file", "in_file")]), (sink, figs, [("out_file", "sr_file")])])
    if n4:
        wf.connect([
            (n4, figs, [("bias_file", "bias_file")]),
            (sink, figs, [("corrected_file", "corrected_file")]),
        ])  # fmt: skip
    if method == "bida" and n_samples > 1:
        wf.connect([(sink, figs, [("std_file", "std_file")])])
    return wf
