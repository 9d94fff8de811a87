"""Run a Nipype workflow with the plugin and resources the user asked for."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from ..config import RunConfig

LOGGER = logging.getLogger("bida")


def quiet_nipype(verbosity: int) -> None:
    """No telemetry (no network at run time); Nipype's warnings and node tracebacks only with
    ``-v``, its debug output with ``-vv`` (failed runs are reported in one line each)."""
    os.environ.setdefault("NIPYPE_NO_ET", "1")
    level = {0: "CRITICAL", 1: "WARNING"}.get(verbosity, "DEBUG")
    from nipype import config
    from nipype import logging as nlogging

    config.set("logging", "workflow_level", level)
    config.set("logging", "interface_level", level)
    config.set("logging", "utils_level", level)
    config.set("execution", "check_version", "false")
    nlogging.update_logging(config)


def plugin_settings(cfg: RunConfig) -> tuple[str, dict]:
    """Nipype plugin name and arguments from ``--plugin``, ``--plugin_args``, ``--nprocs``."""
    args: dict = {}
    if cfg.plugin_args:
        try:
            args = json.loads(cfg.plugin_args)
        except ValueError as exc:
            from ..errors import BidaError, ExitCode

            raise BidaError(f"--plugin_args is not valid JSON ({exc})", ExitCode.USAGE) from exc
    plugin = cfg.plugin or ("MultiProc" if cfg.nprocs > 1 else "Linear")
    if plugin == "MultiProc":
        args.setdefault("n_procs", cfg.nprocs)
        if cfg.mem_gb:
            args.setdefault("memory_gb", cfg.mem_gb)
        args.setdefault("raise_insufficient", False)
    return plugin, args


def run_workflow(wf, cfg: RunConfig, output_dir: Path) -> bool:
    """Run ``wf``; crash files go to ``output_dir/logs``. Return True on a clean run."""
    logs = output_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    wf.config["execution"].update(
        {
            "crashdump_dir": str(logs),
            "crashfile_format": "txt",
            "stop_on_first_crash": cfg.stop_on_first_crash,
            "remove_unnecessary_outputs": False,
            "hash_method": "content",
        }
    )
    if cfg.write_graph:
        try:
            wf.write_graph(graph2use="colored", format="svg", simple_form=True)
        except OSError as exc:  # graphviz's `dot` missing: the .dot file is still written
            LOGGER.warning("workflow graph written as DOT only (%s)", exc)
    plugin, args = plugin_settings(cfg)
    LOGGER.info("running the workflow with the %s plugin %s", plugin, args or "")
    try:
        wf.run(plugin=plugin, plugin_args=args)
    except RuntimeError as exc:
        crashes = sorted(logs.glob("crash-*.txt"))
        LOGGER.debug("workflow error", exc_info=exc)
        LOGGER.info(
            "workflow did not finish cleanly; crash files: %s",
            ", ".join(str(c) for c in crashes[-5:]) or "none",
        )
        return False
    return True


def crash_message(output_dir: Path, wf_name: str) -> str:
    """Last line of the newest crash file of a run's sub-workflow, with the file's path."""
    crashes = sorted(
        (p for p in (output_dir / "logs").glob("crash-*.txt") if wf_name in p.read_text()),
        key=lambda p: p.stat().st_mtime,
    )
    if not crashes:
        return "workflow failed (no crash file found)"
    lines = [ln for ln in crashes[-1].read_text().splitlines() if ln.strip()]
    tail = next((ln for ln in reversed(lines) if "Error" in ln), lines[-1] if lines else "")
    return f"{tail.strip()} (see {crashes[-1]})"
