"""The output folder as a BIDS derivatives dataset: names, sidecars, dataset_description."""

from __future__ import annotations

import json
import os
from pathlib import Path

from .. import __version__
from ..utils.io import write_json, write_text

CODE_URL = "https://github.com/bida-app/bida"
BIDS_VERSION = "1.9.0"
#: Entity order of BIDS file names (the subset that can occur in anat T2w names).
ENTITY_ORDER = (
    ("subject", "sub"),
    ("session", "ses"),
    ("task", "task"),
    ("acquisition", "acq"),
    ("ceagent", "ce"),
    ("reconstruction", "rec"),
    ("direction", "dir"),
    ("run", "run"),
    ("echo", "echo"),
    ("part", "part"),
    ("chunk", "chunk"),
)
BIDSIGNORE = ("*.html", "figures/", "logs/", "work/", "group_*.tsv")
#: ``desc-`` of the N4 field on the output grid, and suffixes of a method's companion images
#: (``desc-<method>Std``, ``desc-<method>Biascorr``): not results of their own.
BIAS_DESC = "biasfield"
COMPANION_SUFFIXES = ("Std", "Biascorr")


def is_companion(desc: str) -> bool:
    """Whether a ``desc-`` label names a companion image rather than a method's result.

    Examples
    --------
    >>> is_companion("dccubic"), is_companion("bidaStd"), is_companion("biasfield")
    (False, True, True)
    """
    return desc == BIAS_DESC or desc.endswith(COMPANION_SUFFIXES)


def derivative_path(
    out_dir: Path, entities: dict, desc: str, suffix: str = "T2w", ext: str = ".nii.gz"
) -> Path:
    """BIDS-derivative path of a run's output.

    Examples
    --------
    >>> derivative_path(Path("/out"), {"subject": "01", "session": "1", "run": 2}, "cubic")
    PosixPath('/out/sub-01/ses-1/anat/sub-01_ses-1_run-2_desc-cubic_T2w.nii.gz')
    """
    parts = []
    for key, short in ENTITY_ORDER:
        if entities.get(key) not in (None, ""):
            value = entities[key]
            if key == "run" and isinstance(value, int):
                value = str(value)
            parts.append(f"{short}-{value}")
    folder = out_dir / f"sub-{entities['subject']}"
    if entities.get("session"):
        folder /= f"ses-{entities['session']}"
    return folder / "anat" / ("_".join([*parts, f"desc-{desc}", suffix]) + ext)


def container_info() -> dict | None:
    """Container description from the environment set by our Docker/Singularity images."""
    kind = os.environ.get("BIDA_CONTAINER_TYPE")
    if not kind:
        return None
    info = {"Type": kind}
    if os.environ.get("BIDA_CONTAINER_TAG"):
        info["Tag"] = os.environ["BIDA_CONTAINER_TAG"]
    return info


def write_dataset_description(out_dir: Path, bids_dir: Path) -> Path:
    """Write (or refresh) ``dataset_description.json`` and ``.bidsignore`` in ``out_dir``.

    Called in a ``finally:`` block so it exists even after a failed run.
    """
    generated = {"Name": "bida", "Version": __version__, "CodeURL": CODE_URL}
    container = container_info()
    if container:
        generated["Container"] = container
    raw_uri = Path(bids_dir).resolve().as_uri()
    desc = {
        "Name": "bida: super-resolved rodent T2w (Biplanar DDNM Averaging)",
        "BIDSVersion": BIDS_VERSION,
        "DatasetType": "derivative",
        "GeneratedBy": [generated],
        "SourceDatasets": [{"URL": raw_uri}],
        "DatasetLinks": {"raw": raw_uri},
        "HowToAcknowledge": "Cite Gharib et al., 'Exploring the feasibility of zero-shot "
        "super-resolution in preclinical imaging' (MICCAI), and bida.",
    }
    path = write_json(out_dir / "dataset_description.json", desc)
    ignore = out_dir / ".bidsignore"
    lines = set(ignore.read_text().split()) if ignore.exists() else set()
    if not set(BIDSIGNORE) <= lines:
        write_text(ignore, "\n".join(sorted(lines | set(BIDSIGNORE))) + "\n")
    return path


def read_sidecar(path: Path) -> dict:
    """Read a JSON sidecar; ``{}`` if missing or unreadable."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
