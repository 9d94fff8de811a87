"""Checks of the command line made before anything is written: paths, plugin, device.

Every check raises :class:`~bida_app.errors.BidaError` with one line and the exit code of the
BIDS-Apps execution spec; none of them creates a file or a folder.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import fields
from pathlib import Path

from ..bids.discovery import check_bids_root
from ..config import RunConfig, check_dc_damping
from ..errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")

#: Methods that run on a torch device (``--device``).
DEVICE_METHODS = ("bida",)
#: Options only BiDA reads: given with another method they are ignored, with a warning.
BIDA_ONLY_OPTIONS = (
    "device",
    "steps",
    "eta",
    "n_samples",
    "null_shrinkage",
    "weights",
    "prior",
    "self_prior_steps",
)


def check_paths(cfg: RunConfig) -> tuple[Path, Path, Path]:
    """Resolve bids/output/work dirs and refuse unsafe or unwritable ones (exit 64/66/73).

    Nothing is created: a folder that does not exist yet must be creatable in its nearest
    existing parent.
    """
    bids_dir = Path(cfg.bids_dir).resolve()
    out_dir = Path(cfg.output_dir).resolve()
    work_dir = Path(cfg.work_dir).resolve() if cfg.work_dir else out_dir / "work"
    check_bids_root(bids_dir)
    if out_dir == bids_dir:
        raise BidaError(f"{out_dir}: output_dir must not be the BIDS directory", ExitCode.USAGE)
    if work_dir in (bids_dir, out_dir):
        raise BidaError(
            f"{work_dir}: work_dir must differ from the BIDS and output directories",
            ExitCode.USAGE,
        )
    for label, path in (("output_dir", out_dir), ("work_dir", work_dir)):
        if bids_dir in path.parents and (bids_dir / "derivatives") not in [path, *path.parents]:
            raise BidaError(
                f"{path}: {label} is inside the BIDS directory; only "
                f"{bids_dir / 'derivatives'} may hold outputs",
                ExitCode.USAGE,
            )
        check_creatable(path)
    return bids_dir, out_dir, work_dir


def check_creatable(path: Path) -> None:
    """Refuse (exit 73) a folder that is a file, or that cannot be created or written."""
    probe = path
    while not probe.exists():
        if probe.is_symlink():  # dangling link
            raise BidaError(f"{path}: {probe} is a broken symbolic link", ExitCode.CANT_CREATE)
        probe = probe.parent
    if not probe.is_dir():
        raise BidaError(
            f"{path}: cannot create or write ({probe} is not a directory)", ExitCode.CANT_CREATE
        )
    if not os.access(probe, os.W_OK | os.X_OK):
        raise BidaError(
            f"{path}: cannot create or write ({probe} is not writable)", ExitCode.CANT_CREATE
        )


def make_dirs(*paths: Path) -> None:
    """Create the output folders (exit 73 on failure), after every check passed."""
    for path in paths:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BidaError(
                f"{path}: cannot create or write ({exc.strerror or exc})", ExitCode.CANT_CREATE
            ) from exc


def nipype_plugins() -> list[str]:
    """Names accepted by ``--plugin`` (Nipype's ``<Name>Plugin`` classes)."""
    from nipype.pipeline import plugins

    return sorted(
        n[: -len("Plugin")] for n in dir(plugins) if n.endswith("Plugin") and n != "Plugin"
    )


def check_options(cfg: RunConfig) -> None:
    """Check ``--dc_damping``, ``--plugin``, ``--plugin_args`` and ``--device``; warn on unused
    options.

    ``cfg.plugin`` is normalised to Nipype's spelling (``multiproc`` -> ``MultiProc``).

    Raises
    ------
    BidaError
        Exit 64 for an unknown plugin, plugin arguments that are not a JSON object, or
        ``--device cuda`` without a visible CUDA device for a method that uses it.
    """
    try:
        check_dc_damping(cfg.dc_damping)
    except ValueError as exc:
        raise BidaError(f"--dc_damping {exc}", ExitCode.USAGE) from None
    if cfg.plugin:
        valid = nipype_plugins()
        match = {name.lower(): name for name in valid}.get(cfg.plugin.lower())
        if match is None:
            raise BidaError(
                f"--plugin {cfg.plugin}: unknown Nipype plugin (choose from {', '.join(valid)})",
                ExitCode.USAGE,
            )
        cfg.plugin = match
    if cfg.plugin_args:
        try:
            args = json.loads(cfg.plugin_args)
        except ValueError as exc:
            raise BidaError(
                f"--plugin_args is not valid JSON ({exc}); e.g. '{{\"n_procs\": 4}}'",
                ExitCode.USAGE,
            ) from exc
        if not isinstance(args, dict):
            raise BidaError(
                f"--plugin_args is not a JSON object ({{...}}): got {type(args).__name__}",
                ExitCode.USAGE,
            )
    if cfg.method in DEVICE_METHODS:
        if cfg.device != "auto":  # cuda[:N] without that GPU: one line, exit 64
            from ..device import resolve_device

            resolve_device(cfg.device)
        return
    defaults = {f.name: f.default for f in fields(RunConfig)}
    unused = [
        f"--{name}" for name in BIDA_ONLY_OPTIONS if getattr(cfg, name) != defaults.get(name)
    ]
    if unused:
        LOGGER.warning(
            "%s unused by --method %s (only --method bida reads them)",
            ", ".join(unused),
            cfg.method,
        )
