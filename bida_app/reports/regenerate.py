"""``--reports_only``: re-render figures and HTML reports from existing derivatives.

Nothing is recomputed: the super-resolved image, its uncertainty map and sidecar come from
``output_dir``; the thick-slice input from ``bids_dir`` through the sidecar's
``Sources: ["bids:raw:<path>"]`` (with the run's recorded ``--header_scale``); the N4 bias field
from the Nipype work folder when one is given and still holds it (else that panel is left out).
"""

from __future__ import annotations

import logging
from pathlib import Path

import nibabel as nib
import numpy as np

from ..bids.derivatives import BIAS_DESC
from ..bids.discovery import bare_labels, describe_selection
from ..errors import BidaError, ExitCode
from .boilerplate import write_citation
from .collect import Derivative, find_derivatives, through_axis
from .figures import figures_dir, render_run_figures
from .participant import write_participant_report

LOGGER = logging.getLogger(__name__)
RAW_PREFIX = "bids:raw:"


def raw_source(meta: dict, bids_dir: Path) -> Path | None:
    """The input file named by the first ``bids:raw:`` URI of ``Sources`` (if it exists).

    Examples
    --------
    >>> raw_source({"Sources": ["bids:raw:sub-01/anat/x.nii.gz"]}, Path("/nonexistent"))
    """
    sources = meta.get("Sources")
    for uri in sources if isinstance(sources, list) else []:
        if isinstance(uri, str) and uri.startswith(RAW_PREFIX):
            path = Path(bids_dir) / uri[len(RAW_PREFIX) :]
            return path if path.is_file() else None
    return None


def _input_image(path: Path, meta: dict) -> nib.Nifti1Image:
    img = nib.load(str(path))
    options = meta.get("Options") if isinstance(meta.get("Options"), dict) else {}
    scale = options.get("header_scale", 1.0)
    affine = img.affine.copy()
    if isinstance(scale, (int, float)) and scale not in (0, 1):
        affine[:3, :] *= float(scale)
    return nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), affine)


def find_bias_field(work_dir: Path | None, source: Path | None) -> Path | None:
    """The N4 bias field the participant workflow left in ``work_dir`` for ``source``."""
    if work_dir is None or source is None or not Path(work_dir).is_dir():
        return None
    from ..workflows.base import run_wf_name

    name = run_wf_name({"label": source.name.split(".")[0]})
    found = sorted(
        Path(work_dir).glob(f"**/{name}/n4/n4_biasfield.nii.gz"),
        key=lambda p: p.stat().st_mtime,
    )
    return found[-1] if found else None


def regenerate_run(
    output_dir: Path, bids_dir: Path, d: Derivative, work_dir: Path | None = None
) -> list[Path]:
    """Re-render the figures of one derivative; return the files written."""
    source = raw_source(d.meta, bids_dir)
    if source is None:
        LOGGER.warning(
            "%s: input not found in %s (Sources: %s); input panels left out",
            d.sidecar.name,
            bids_dir,
            d.meta.get("Sources"),
        )
    bias = find_bias_field(work_dir, source)
    if bias is None:  # the field on the output grid, written beside the result
        written = d.image.with_name(d.image.name.replace(f"desc-{d.desc}_", f"desc-{BIAS_DESC}_"))
        bias = written if written.is_file() else None
    corrected = d.image.with_name(
        d.image.name.replace(f"desc-{d.desc}_", f"desc-{d.desc}Biascorr_")
    )
    return render_run_figures(
        d.image,
        figures_dir(output_dir, d.subject),
        d.prefix,
        in_file=_input_image(source, d.meta) if source else None,
        bias_file=bias,
        std_file=d.std,
        corrected_file=corrected if corrected.is_file() else None,
        method=d.desc,
        world_axis=through_axis(d.meta)[1],
    )


def regenerate_reports(
    output_dir: str | Path,
    bids_dir: str | Path,
    subjects: list[str] | None = None,
    *,
    work_dir: str | Path | None = None,
) -> list[Path]:
    """Re-render every selected participant's figures and ``sub-<label>.html``.

    Parameters
    ----------
    output_dir, bids_dir : path
        bida output folder and the raw BIDS dataset.
    subjects : list of str, optional
        Participant labels (with or without ``sub-``); default: all with derivatives.
    work_dir : path, optional
        Nipype work folder of the participant run, searched for N4 bias fields.

    Returns
    -------
    list of Path
        The participant reports written.

    Raises
    ------
    BidaError
        Exit 66 when no derivative of the selected participants exists.
    """
    from tqdm import tqdm

    output_dir, bids_dir = Path(output_dir), Path(bids_dir)
    wanted = set(bare_labels(subjects, "sub-"))
    derivatives = [d for d in find_derivatives(output_dir) if not wanted or d.subject in wanted]
    if not derivatives:
        of = f" of {describe_selection(sorted(wanted))}" if wanted else ""
        raise BidaError(
            f"{output_dir}: no bida derivatives{of} to make reports from; run the participant "
            "level first",
            ExitCode.MISSING_INPUT,
        )
    for d in tqdm(derivatives, desc="reports", unit="run", disable=len(derivatives) < 3):
        regenerate_run(output_dir, bids_dir, d, Path(work_dir) if work_dir else None)
    reports = [
        write_participant_report(output_dir, s) for s in sorted({d.subject for d in derivatives})
    ]
    write_citation(output_dir)
    LOGGER.info("%d participant reports regenerated", len(reports))
    return reports
