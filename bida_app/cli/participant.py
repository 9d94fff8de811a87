"""Participant level: select runs, super-resolve the anisotropic ones, write derivatives."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..bids.derivatives import derivative_path, write_dataset_description
from ..bids.discovery import T2wRun, index_dataset, select_t2w_runs
from ..config import RunConfig
from ..errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")


@dataclass
class RunOutcome:
    """What happened to one run."""

    run: T2wRun
    status: str  # "done", "skipped-isotropic", "skipped-existing", "failed"
    message: str = ""
    code: int = 0


def check_paths(cfg: RunConfig) -> tuple[Path, Path, Path]:
    """Resolve bids/output/work dirs and refuse unsafe combinations (exit 64/66/73)."""
    bids_dir = Path(cfg.bids_dir).resolve()
    out_dir = Path(cfg.output_dir).resolve()
    work_dir = Path(cfg.work_dir).resolve() if cfg.work_dir else out_dir / "work"
    if not bids_dir.is_dir():
        raise BidaError(f"{bids_dir}: BIDS directory does not exist", ExitCode.MISSING_INPUT)
    if out_dir == bids_dir:
        raise BidaError(f"{out_dir}: output_dir must not be the BIDS directory", ExitCode.USAGE)
    for label, path in (("output_dir", out_dir), ("work_dir", work_dir)):
        if bids_dir in path.parents and (bids_dir / "derivatives") not in [path, *path.parents]:
            raise BidaError(
                f"{path}: {label} is inside the BIDS directory; only "
                f"{bids_dir / 'derivatives'} may hold outputs",
                ExitCode.USAGE,
            )
    for path in (out_dir, work_dir):
        _ensure_writable(path)
    return bids_dir, out_dir, work_dir


def _ensure_writable(path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".bida-write-test"):
            pass
    except OSError as exc:
        raise BidaError(
            f"{path}: cannot create or write ({exc.strerror or exc})", ExitCode.CANT_CREATE
        ) from exc


def needs_sr(run: T2wRun, threshold: float) -> bool:
    """True if the run's anisotropy exceeds ``threshold``."""
    return run.anisotropy > threshold


def run_participant(cfg: RunConfig) -> int:
    """Run the participant level; return the process exit code."""
    bids_dir, out_dir, work_dir = check_paths(cfg)
    try:
        layout = index_dataset(bids_dir, validate=not cfg.skip_bids_validator)
        runs = select_t2w_runs(
            layout,
            participant_label=cfg.participant_label,
            session_label=cfg.session_label,
            header_scale=cfg.header_scale,
        )
        cfg.to_toml(work_dir / "config.toml")
        outcomes = [_process(run, cfg, out_dir) for run in runs]
    finally:
        write_dataset_description(out_dir, bids_dir)
    return _summarise(outcomes)


def _process(run: T2wRun, cfg: RunConfig, out_dir: Path) -> RunOutcome:
    if not needs_sr(run, cfg.anisotropy_threshold):
        LOGGER.info(
            "%s: isotropic enough (anisotropy %.2f <= %.2f), skipped",
            run.label,
            run.anisotropy,
            cfg.anisotropy_threshold,
        )
        return RunOutcome(run, "skipped-isotropic")
    target = derivative_path(out_dir, run.entities, cfg.method)
    if (
        target.exists()
        and target.with_name(target.name.replace(".nii.gz", ".json")).exists()
        and not cfg.overwrite
    ):
        LOGGER.info(
            "%s: %s exists, skipped (use --overwrite to recompute)", run.label, target.name
        )
        return RunOutcome(run, "skipped-existing")
    LOGGER.info(
        "%s: %s through-plane (%s, %.3g mm slices, %.3g mm spacing) -> %s",
        run.label,
        run.world_axis,
        run.thickness_source,
        run.thickness_mm,
        run.spacing_mm,
        cfg.method,
    )
    try:
        from ..workflows.direct import process_run

        process_run(run, cfg, out_dir)
    except BidaError as exc:
        return RunOutcome(run, "failed", str(exc), int(exc.code))
    except Exception as exc:  # keep going with the other runs
        LOGGER.exception("%s: processing failed", run.path)
        return RunOutcome(run, "failed", f"{run.path}: {exc}", int(ExitCode.FAILURE))
    return RunOutcome(run, "done")


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
    from .main import report_error

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
        ("XDG_CACHE_HOME", "xdg"),
    ):
        if not os.environ.get(var):
            os.environ[var] = str(cache / sub)


def elapsed(t0: float) -> float:
    """Seconds since ``t0`` rounded for sidecars."""
    return round(time.perf_counter() - t0, 3)
