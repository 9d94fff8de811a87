"""Find the T2w runs to super-resolve in a BIDS dataset (pybids)."""

from __future__ import annotations

import json
import logging
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import BidaError, ExitCode, raise_collected
from ..utils.nifti import RODENT_MAX_INPLANE_MM, check_header, voxel_sizes

LOGGER = logging.getLogger(__name__)
#: RAS names of the world axes, indexed by the axis of ``nib.aff2axcodes``.
WORLD_AXES = {"R": "LR", "L": "LR", "A": "AP", "P": "AP", "S": "SI", "I": "SI"}


@dataclass
class T2wRun:
    """One T2w run and what its header and sidecar say about the slices.

    Attributes
    ----------
    path : Path
        Absolute path of the NIfTI file.
    relpath : str
        Path relative to the BIDS root (for ``bids:raw:`` URIs).
    entities : dict
        BIDS entities (subject, session, acquisition, run, ...).
    shape, zooms : tuple
        Voxel grid and voxel sizes (mm, after ``header_scale``).
    through_axis : int
        Voxel axis with the largest spacing.
    world_axis : str
        World (RAS) axis of the through-plane direction: ``"LR"``, ``"AP"`` or ``"SI"``.
    anisotropy : float
        Ratio of the largest to the smallest voxel size.
    thickness_mm : float
        Slice thickness (sidecar ``SliceThickness``, else the spacing).
    thickness_source : str
        ``"sidecar"`` or ``"assumed equal to spacing"``.
    """

    path: Path
    relpath: str
    entities: dict
    shape: tuple[int, ...]
    zooms: tuple[float, ...]
    through_axis: int
    world_axis: str
    anisotropy: float
    thickness_mm: float
    thickness_source: str
    metadata: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def spacing_mm(self) -> float:
        """Distance between slice centres."""
        return float(self.zooms[self.through_axis])

    @property
    def inplane_mm(self) -> float:
        """Finest in-plane voxel size."""
        return float(min(z for i, z in enumerate(self.zooms) if i != self.through_axis))

    def to_dict(self) -> dict:
        """Plain description passed to workflow nodes and sidecars."""
        return {
            "path": str(self.path),
            "relpath": self.relpath,
            "entities": {
                k: (v if isinstance(v, (str, int, float)) else str(v))
                for k, v in self.entities.items()
            },
            "shape": list(self.shape),
            "zooms": list(self.zooms),
            "through_axis": self.through_axis,
            "world_axis": self.world_axis,
            "anisotropy": self.anisotropy,
            "thickness_mm": self.thickness_mm,
            "thickness_source": self.thickness_source,
            "spacing_mm": self.spacing_mm,
            "inplane_mm": self.inplane_mm,
            "warnings": list(self.warnings),
            "label": self.label,
        }

    @property
    def label(self) -> str:
        """Short name for logs: the file name without extension."""
        return self.path.name.split(".")[0]


def describe_run(
    path: Path, bids_root: Path, entities: dict, metadata: dict, header_scale: float = 1.0
) -> T2wRun:
    """Check the header (not the data) of one run and describe its slice geometry.

    Raises
    ------
    BidaError
        From :func:`bida_app.utils.nifti.check_header` (exit 65/66), naming the file.
    """
    img, warnings = check_header(path, header_scale=header_scale)
    shape = tuple(int(s) for s in img.shape[:3])
    affine = img.affine * np.array([[header_scale]] * 3 + [[1.0]])
    zooms = tuple(round(float(z), 6) for z in voxel_sizes(affine))
    through = int(np.argmax(zooms))
    codes = nib.aff2axcodes(affine)
    inplane = [z for i, z in enumerate(zooms) if i != through]
    if min(inplane) >= RODENT_MAX_INPLANE_MM:
        warnings.append(
            f"in-plane voxel size {min(inplane):.3g} mm is implausible for rodent MRI "
            "(header scaled x10?); consider --header_scale 0.1"
        )
    for msg in warnings:
        LOGGER.warning("%s: %s", path, msg)
    thickness_mm, source = zooms[through], "assumed equal to spacing"
    own = path.with_name(path.name.split(".")[0] + ".json")
    sidecar = own if own.is_file() else f"the sidecar metadata of {path}"
    if "SliceThickness" in metadata:
        value = metadata["SliceThickness"]
        number = isinstance(value, int | float) and not isinstance(value, bool)
        try:
            mm = float(value) if number else math.nan
        except OverflowError:  # a huge JSON integer
            mm = math.inf
        if math.isfinite(mm) and mm > 0:
            thickness_mm, source = mm * header_scale, "sidecar"
            ratio = thickness_mm / zooms[through]
            if not 0.1 <= ratio <= 10:
                LOGGER.warning(
                    "%s: SliceThickness %r is %.3g times the slice spacing %g mm of %s "
                    "(units, or a x10 header?)",
                    sidecar,
                    value,
                    ratio,
                    zooms[through],
                    path.name,
                )
                warnings.append(f"sidecar SliceThickness {value!r} far from the slice spacing")
        else:
            LOGGER.warning(
                "%s: SliceThickness %r is not a positive number of mm; using the slice "
                "spacing %g mm of %s",
                sidecar,
                value,
                zooms[through],
                path.name,
            )
            warnings.append(f"sidecar SliceThickness {value!r} ignored (not a positive number)")
    return T2wRun(
        path=path,
        relpath=path.relative_to(bids_root).as_posix(),
        entities=entities,
        shape=shape,
        zooms=zooms,
        through_axis=through,
        world_axis=WORLD_AXES[codes[through]],
        anisotropy=float(max(zooms) / min(zooms)),
        thickness_mm=thickness_mm,
        thickness_source=source,
        metadata=metadata,
        warnings=warnings,
    )


def index_dataset(bids_dir: Path, *, validate: bool, database_path: Path | None = None):
    """Index ``bids_dir`` with pybids; raise :class:`BidaError` (one line) if it is not BIDS."""
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    check_dataset_description(bids_dir, validate=validate)
    try:
        return BIDSLayout(str(bids_dir), validate=validate, database_path=database_path)
    except BIDSValidationError as exc:
        raise BidaError(
            f"{bids_dir}: BIDS validation failed ({one_line(exc)})", ExitCode.BIDS_INVALID
        ) from exc
    except PermissionError as exc:
        raise BidaError(
            f"{exc.filename or bids_dir}: cannot read (permission denied)", ExitCode.MISSING_INPUT
        ) from exc
    except Exception as exc:  # malformed JSON and the like
        named = _JSON_FILE_RE.search(str(exc))
        bad = Path(named[1]) if named else _first_bad_json(bids_dir)
        if bad is not None:
            raise BidaError(f"{bad}: {_json_problem(bad)}", ExitCode.BAD_DATA) from exc
        raise BidaError(
            f"{bids_dir}: cannot index the dataset ({one_line(exc)})", ExitCode.BIDS_INVALID
        ) from exc


#: How pybids names the JSON file it could not decode.
_JSON_FILE_RE = re.compile(r"filename='([^']+)'")


def check_bids_root(bids_dir: Path) -> None:
    """Refuse a ``bids_dir`` that is missing, not a directory or unreadable (exit 66)."""
    if not bids_dir.exists():
        raise BidaError(f"{bids_dir}: BIDS directory does not exist", ExitCode.MISSING_INPUT)
    if not bids_dir.is_dir():
        raise BidaError(
            f"{bids_dir}: is not a directory (expected the root of a BIDS dataset)",
            ExitCode.MISSING_INPUT,
        )
    if not os.access(bids_dir, os.R_OK | os.X_OK):
        raise BidaError(f"{bids_dir}: cannot read (permission denied)", ExitCode.MISSING_INPUT)


def check_dataset_description(bids_dir: Path, *, validate: bool) -> None:
    """Refuse a missing or non-directory ``bids_dir`` and check ``dataset_description.json``.

    A missing file is exit 16; an invalid one is exit 16 too, or only a warning with
    ``--skip_bids_validator`` (``validate=False``).
    """
    check_bids_root(bids_dir)
    path = bids_dir / "dataset_description.json"
    if not path.is_file():
        raise BidaError(
            f"{bids_dir}: not a BIDS dataset (dataset_description.json is missing)",
            ExitCode.BIDS_INVALID,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BidaError(
            f"{path}: cannot read ({exc.strerror or exc})", ExitCode.MISSING_INPUT
        ) from exc
    try:
        desc = json.loads(text)
        problem = "" if isinstance(desc, dict) else "not a JSON object"
        if not problem and "BIDSVersion" not in desc:
            problem = "the required field BIDSVersion is missing"
    except ValueError:
        problem = _json_problem(path)
    if not problem:
        return
    if validate:
        raise BidaError(
            f"{path}: {problem} (use --skip_bids_validator to go on anyway)",
            ExitCode.BIDS_INVALID,
        )
    LOGGER.warning("%s: %s (ignored: --skip_bids_validator)", path, problem)


def _json_problem(path: Path) -> str:
    """Why the sidecar ``path`` is unusable, in a few words ("" if it is a JSON object)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        return f"not valid JSON ({one_line(exc)})"
    except OSError as exc:
        return f"cannot read ({exc.strerror or exc})"
    return "" if isinstance(data, dict) else f"not a JSON object ({type(data).__name__})"


def _first_bad_json(bids_dir: Path) -> Path | None:
    """The first JSON file pybids would index that is not a readable JSON object."""
    for path in sorted(bids_dir.rglob("*.json")):
        parts = path.relative_to(bids_dir).parts
        if any(p.startswith(".") or p in ("derivatives", "sourcedata", "code") for p in parts):
            continue
        if _json_problem(path):
            return path
    return None


def one_line(exc: BaseException) -> str:
    """An exception's message folded into one line."""
    return " ".join(str(exc).split()) or type(exc).__name__


def bare_labels(labels: list[str] | None, prefix: str) -> list[str]:
    """Labels as BIDS entities hold them: ``sub-01`` and ``01`` both give ``01``.

    Examples
    --------
    >>> bare_labels(["sub-01", "02"], "sub-")
    ['01', '02']
    """
    return [label.removeprefix(prefix) for label in labels or []]


def describe_selection(subjects: list[str], sessions: list[str] | None = None) -> str:
    """The participant/session filter of a run, for error messages.

    Examples
    --------
    >>> describe_selection(["01", "02"], ["1"])
    'participant(s) 01, 02; session(s) 1'
    """
    text = f"participant(s) {', '.join(subjects)}"
    return text + (f"; session(s) {', '.join(sessions)}" if sessions else "")


def select_t2w_runs(
    layout,
    *,
    participant_label: list[str] | None = None,
    session_label: list[str] | None = None,
    header_scale: float = 1.0,
) -> list[T2wRun]:
    """Every T2w run of the selected participants/sessions, sorted by path.

    Raises
    ------
    BidaError
        Unknown participant or session label, or nothing selected (exit 18); a bad header
        (exit 65/66; :class:`~bida_app.errors.InputErrors` listing every bad run).
    """
    root = Path(layout.root)
    subjects = sorted(layout.get_subjects())
    if participant_label:
        wanted = bare_labels(participant_label, "sub-")
        missing = sorted(set(wanted) - set(subjects))
        if missing:
            raise BidaError(
                f"{root}: participant(s) not found: {', '.join(missing)} "
                f"(available: {', '.join(subjects) or 'none'})",
                ExitCode.NO_DATA,
            )
        subjects = wanted
    query = {"subject": subjects, "suffix": "T2w", "extension": [".nii", ".nii.gz"]}
    sessions = bare_labels(session_label, "ses-")
    if sessions:
        query["session"] = sessions
    files = layout.get(**query)
    if not files:
        selection = describe_selection(subjects, sessions)
        raise BidaError(f"{root}: no T2w run selected ({selection})", ExitCode.NO_DATA)
    runs, errors = [], []
    for bf in sorted(files, key=lambda f: f.path):
        entities = {
            k: v
            for k, v in bf.get_entities().items()
            if k not in ("suffix", "extension", "datatype")
        }
        try:
            runs.append(
                describe_run(Path(bf.path), root, entities, bf.get_metadata(), header_scale)
            )
        except BidaError as exc:
            errors.append(exc)
    raise_collected(errors)
    return runs


def isotropic_t2w_runs(
    root: str | Path, participant_label: list[str] | None = None, rtol: float = 1e-3
) -> list[tuple[Path, dict]]:
    """Isotropic T2w NIfTI runs of a BIDS dataset, with their sidecar metadata.

    Parameters
    ----------
    root : path
        BIDS dataset.
    participant_label : list of str, optional
        Subjects to keep (``01`` or ``sub-01``).
    rtol : float
        Relative tolerance on the voxel sizes for a run to count as isotropic.

    Returns
    -------
    list of (Path, dict)

    Raises
    ------
    BidaError
        Exit 16 when ``root`` is not a BIDS dataset, 18 when no isotropic T2w run is found.
    """
    from bids import BIDSLayout

    root = Path(root)
    if not (root / "dataset_description.json").is_file():
        raise BidaError(
            f"{root}: not a BIDS dataset (no dataset_description.json)", ExitCode.BIDS_INVALID
        )
    try:
        layout = BIDSLayout(str(root), validate=False)
    except Exception as exc:
        raise BidaError(f"{root}: not a BIDS dataset ({exc})", ExitCode.BIDS_INVALID) from exc
    query: dict = {"suffix": "T2w", "extension": [".nii", ".nii.gz"]}
    if participant_label:
        query["subject"] = bare_labels(participant_label, "sub-")
    runs = []
    for f in layout.get(**query):
        zooms = np.sqrt((nib.load(f.path).affine[:3, :3] ** 2).sum(axis=0))
        if np.allclose(zooms, zooms[0], rtol=rtol):
            runs.append((Path(f.path), f.get_metadata()))
        else:
            LOGGER.info("%s: not isotropic (%s mm), not used", f.filename, np.round(zooms, 4))
    if not runs:
        raise BidaError(f"{root}: no isotropic T2w runs found", ExitCode.NO_DATA)
    return runs
