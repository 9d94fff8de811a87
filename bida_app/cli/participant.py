"""Participant level: select runs, super-resolve the anisotropic ones, write derivatives."""

from __future__ import annotations

import logging
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..bids.derivatives import derivative_path, write_dataset_description
from ..bids.discovery import T2wRun, index_dataset, select_t2w_runs
from ..config import RunConfig
from ..errors import BidaError, ExitCode, raise_collected, report_error
from ..utils import lock
from ..utils.io import remove_stale_temporaries
from ..utils.lock import RunLocks
from .signals import on_interrupt
from .validate import check_options, check_paths, make_dirs

LOGGER = logging.getLogger("bida")

#: Options of the run that the workflow factory takes (:func:`workflow_options`).
WORKFLOW_OPTIONS = (
    *("method", "slice_profile", "dc_damping", "header_scale", "target_resolution", "n4"),
    "omp_nthreads",
    *("weights", "prior", "self_prior_steps", "steps", "eta", "n_samples", "null_shrinkage"),
    *("seed", "device"),
)
#: Options of the run recorded under ``Options`` in every sidecar.
RECORDED_OPTIONS = (
    *("seed", "header_scale", "anisotropy_threshold", "target_resolution", "device"),
    *("nprocs", "omp_nthreads"),
)


@dataclass
class RunOutcome:
    """What happened to one run."""

    run: T2wRun
    status: str  # "done", "skipped-isotropic", "skipped-existing", "failed"
    message: str = ""
    code: int = 0
    error: BidaError | None = None


def needs_sr(run: T2wRun, threshold: float) -> bool:
    """True if the run's anisotropy exceeds ``threshold``."""
    return run.anisotropy > threshold


def run_participant(cfg: RunConfig) -> int:
    """Run the participant level; return the process exit code.

    Every input is checked before anything is written (paths, options, headers, sidecars,
    data); then the selected participants are locked (in the output and the work folder),
    temporaries an interrupted run left behind are removed, and the workflow runs.
    """
    bids_dir, out_dir, work_dir = check_paths(cfg)
    check_options(cfg)
    if cfg.reports_only:
        from ..reports.regenerate import regenerate_reports

        regenerate_reports(out_dir, bids_dir, cfg.participant_label or None, work_dir=work_dir)
        return int(ExitCode.OK)
    layout = index_dataset(bids_dir, validate=not cfg.skip_bids_validator)
    runs = select_t2w_runs(
        layout,
        participant_label=cfg.participant_label,
        session_label=cfg.session_label,
        header_scale=cfg.header_scale,
    )
    subjects = sorted({f"sub-{run.entities['subject']}" for run in runs})
    locks = run_locks(out_dir, work_dir, subjects)
    for path, what in locks:  # refuse at once if another run holds one (nothing created)
        lock.probe(path, what)
    outcomes = [_triage(run, cfg, out_dir) for run in runs]
    raise_collected([o.error for o in outcomes if o.error is not None])
    todo = [o for o in outcomes if o.status == "todo"]
    if todo and cfg.method == "bida":
        check_weights(cfg, [o.run for o in todo])
    make_dirs(out_dir, work_dir)
    with RunLocks(locks):
        on_interrupt(
            "temporaries", lambda: remove_stale_temporaries(out_dir, subjects, skip=[work_dir])
        )
        for path in remove_stale_temporaries(out_dir, subjects, skip=[work_dir]):
            LOGGER.info("removed %s, left behind by an interrupted run", path)
        try:
            cfg.to_toml(work_dir / "config.toml")
            if todo:
                _run_workflow(todo, cfg, out_dir, work_dir)
            write_status(out_dir, outcomes)
            _write_reports(out_dir, outcomes)
        finally:
            write_dataset_description(out_dir, bids_dir)
    return _summarise(outcomes)


def run_locks(out_dir: Path, work_dir: Path, subjects: list[str]) -> list[tuple[Path, str]]:
    """The locks of a run: each participant in the output folder and in the work folder.

    Runs on different participants may share both folders (SLURM arrays); two runs on the
    same participant would corrupt each other's Nipype nodes, reports and derivatives.
    """
    return [(out_dir / f".{s}.bida.lock", f"{s} in {out_dir}") for s in subjects] + [
        (work_dir / f".{s}.bida.lock", f"{s} in the work directory {work_dir}") for s in subjects
    ]


def _write_reports(out_dir: Path, outcomes: list[RunOutcome]) -> None:
    """Per-participant HTML reports and the methods boilerplate; never fail the run."""
    from ..reports.boilerplate import write_citation
    from ..reports.participant import write_participant_report

    try:
        write_citation(out_dir)
    except Exception as exc:
        LOGGER.warning("%s: methods boilerplate not written (%s)", out_dir / "logs", exc)

    for subject in sorted({str(o.run.entities["subject"]) for o in outcomes}):
        try:
            write_participant_report(out_dir, subject)
        except Exception as exc:
            LOGGER.warning("sub-%s: report not written (%s)", subject, exc)


def write_status(out_dir: Path, outcomes: list[RunOutcome]) -> Path:
    """Merge this run's outcomes into ``logs/bida_status.json`` (read by the group level).

    Participant runs sharing the output folder (one SLURM array task each) merge in turn.
    """
    import json

    from ..utils.io import write_json
    from ..utils.lock import dir_lock

    path = out_dir / "logs" / "bida_status.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with dir_lock(path.parent):
        try:
            entries = {e["run"]: e for e in json.loads(path.read_text())}
        except (OSError, ValueError, KeyError, TypeError):
            entries = {}
        _merge_status(entries, outcomes)
        return write_json(path, sorted(entries.values(), key=lambda e: e["run"]))


def _merge_status(entries: dict, outcomes: list[RunOutcome]) -> None:
    for o in outcomes:
        entries[o.run.relpath] = {
            "run": o.run.relpath,
            "subject": o.run.entities.get("subject"),
            "session": o.run.entities.get("session"),
            "status": o.status,
            "message": o.message,
            "code": o.code,
            "version": __version__,
        }


def check_weights(cfg: RunConfig, runs: list[T2wRun]) -> None:
    """Fail early (exit 66/65) when a plane model BiDA needs is missing or corrupt."""
    from ..models.weights import PLANES_FOR_AXIS, resolve_weights_dir, verify_plane_model

    if cfg.prior != "pretrained":
        return
    root = resolve_weights_dir(cfg.weights)
    ras_axis = {"LR": 0, "AP": 1, "SI": 2}
    for plane in sorted({p for r in runs for p in PLANES_FOR_AXIS[ras_axis[r.world_axis]]}):
        verify_plane_model(root, plane)


def _triage(run: T2wRun, cfg: RunConfig, out_dir: Path) -> RunOutcome:
    """Decide what to do with a run: skip it, reject bad data, or process it."""
    from ..bids.sidecar import sidecar_path
    from ..utils.nifti import load_volume

    if not needs_sr(run, cfg.anisotropy_threshold):
        LOGGER.info(
            "%s: isotropic enough (anisotropy %.2f <= %.2f), skipped",
            run.label,
            run.anisotropy,
            cfg.anisotropy_threshold,
        )
        return RunOutcome(run, "skipped-isotropic")
    target = derivative_path(out_dir, run.entities, cfg.method)
    if target.exists() and sidecar_path(target).exists() and not cfg.overwrite:
        LOGGER.info(
            "%s: %s exists, skipped (use --overwrite to recompute)", run.label, target.name
        )
        return RunOutcome(run, "skipped-existing")
    try:
        load_volume(run.path, header_scale=cfg.header_scale)
    except BidaError as exc:
        return RunOutcome(run, "failed", str(exc), int(exc.code), error=exc)
    LOGGER.info(
        "%s: %s through-plane, %.3g mm slices (%s), %.3g mm spacing -> %s",
        run.label,
        run.world_axis,
        run.thickness_mm,
        run.thickness_source,
        run.spacing_mm,
        cfg.method,
    )
    return RunOutcome(run, "todo")


def _run_workflow(todo: list[RunOutcome], cfg: RunConfig, out_dir: Path, work_dir: Path) -> None:
    """Build and run the Nipype workflow; mark each run done or failed."""
    from ..bids.sidecar import sidecar_path
    from ..workflows.base import init_bida_wf, run_wf_name
    from ..workflows.execute import crash_message, quiet_nipype, run_workflow

    quiet_nipype(cfg.verbosity)
    infos = [o.run.to_dict() for o in todo]
    nipype_dir = work_dir / f"bida_{__version__.replace('.', '_')}"
    wf = init_bida_wf(infos, out_dir, nipype_dir, **workflow_options(cfg))
    run_workflow(wf, cfg, out_dir)
    for outcome, info in zip(todo, infos, strict=True):
        if sidecar_path(derivative_path(out_dir, outcome.run.entities, cfg.method)).exists():
            outcome.status = "done"
        else:
            outcome.status = "failed"
            crash = crash_message(out_dir, run_wf_name(info))
            bad_data = "bida_app.errors.BadDataError: " in crash
            outcome.code = int(ExitCode.BAD_DATA if bad_data else ExitCode.FAILURE)
            crash = re.sub(r"bida_app\.errors\.\w+: ", "", crash)  # ours speak for themselves
            outcome.message = f"{outcome.run.path}: {crash}"


def workflow_options(cfg: RunConfig) -> dict:
    """Keyword arguments of :func:`~bida_app.workflows.base.init_single_run_wf` for a run."""
    options = {name: getattr(cfg, name) for name in WORKFLOW_OPTIONS}
    return options | {"recorded": recorded_options(cfg)}


def recorded_options(cfg: RunConfig) -> dict:
    """Run options recorded under ``Options`` in every sidecar."""
    return {name: getattr(cfg, name) for name in RECORDED_OPTIONS}


def _summarise(outcomes: list[RunOutcome]) -> int:
    counts: dict[str, int] = {}
    for o in outcomes:
        counts[o.status] = counts.get(o.status, 0) + 1
    LOGGER.info(
        "bida %s finished: %s",
        __version__,
        ", ".join(f"{n} {s}" for s, n in sorted(counts.items())),
    )
    failed = [o for o in outcomes if o.status == "failed"]
    if not failed:
        return int(ExitCode.OK)
    for o in failed:
        report_error(o.message)
    return failed[0].code or int(ExitCode.FAILURE)


def runtime_env(work_dir: Path) -> None:
    """Point caches of matplotlib, numba and torch at writable places under the work dir."""
    cache = work_dir / "cache"
    for var, sub in (
        ("MPLCONFIGDIR", "matplotlib"),
        ("NUMBA_CACHE_DIR", "numba"),
        ("TORCH_HOME", "torch"),
    ):
        if not os.environ.get(var):
            os.environ[var] = str(cache / sub)


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` rounded for sidecars."""
    return round(time.perf_counter() - t0, 3)
