"""Find the T2w runs to super-resolve in a BIDS dataset (pybids)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from ..errors import BidaError, ExitCode
from ..utils.nifti import RODENT_MAX_INPLANE_MM, voxel_sizes

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
    """Read the header (not the data) of one run and describe its slice geometry."""
    from ..errors import BadDataError

    try:
        img = nib.load(str(path))
        shape = tuple(int(s) for s in img.shape)
        affine = img.affine * np.array([[header_scale]] * 3 + [[1.0]])
    except Exception as exc:
        raise BadDataError(f"{path}: cannot read NIfTI header ({exc})") from exc
    zooms = tuple(round(float(z), 6) for z in voxel_sizes(affine))
    through = int(np.argmax(zooms))
    codes = nib.aff2axcodes(affine)
    warnings = []
    inplane = [z for i, z in enumerate(zooms) if i != through]
    if min(inplane) > RODENT_MAX_INPLANE_MM:
        msg = (
            f"in-plane voxel size {min(inplane):.3g} mm is implausible for rodent MRI "
            "(header scaled x10?); consider --header_scale 0.1"
        )
        LOGGER.warning("%s: %s", path.name, msg)
        warnings.append(msg)
    thickness = metadata.get("SliceThickness")
    if isinstance(thickness, (int, float)) and thickness > 0:
        thickness_mm, source = float(thickness) * header_scale, "sidecar"
    else:
        thickness_mm, source = zooms[through], "assumed equal to spacing"
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
    """Index ``bids_dir`` with pybids; raise :class:`BidaError` for non-BIDS folders."""
    from bids import BIDSLayout
    from bids.exceptions import BIDSValidationError

    if not bids_dir.is_dir():
        raise BidaError(f"{bids_dir}: BIDS directory does not exist", ExitCode.MISSING_INPUT)
    if not (bids_dir / "dataset_description.json").is_file():
        raise BidaError(
            f"{bids_dir}: not a BIDS dataset (dataset_description.json is missing)",
            ExitCode.BIDS_INVALID,
        )
    try:
        return BIDSLayout(str(bids_dir), validate=validate, database_path=database_path)
    except BIDSValidationError as exc:
        raise BidaError(
            f"{bids_dir}: BIDS validation failed ({exc})", ExitCode.BIDS_INVALID
        ) from exc
    except Exception as exc:  # malformed JSON and the like
        reason = str(exc).splitlines()[0]
        raise BidaError(
            f"{bids_dir}: cannot index the dataset ({reason})", ExitCode.BIDS_INVALID
        ) from exc


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
        Unknown participant or session label, or nothing selected (exit 18).
    """
    root = Path(layout.root)
    subjects = sorted(layout.get_subjects())
    if participant_label:
        wanted = [label.removeprefix("sub-") for label in participant_label]
        missing = sorted(set(wanted) - set(subjects))
        if missing:
            raise BidaError(
                f"{root}: participant(s) not found: {', '.join(missing)} "
                f"(available: {', '.join(subjects) or 'none'})",
                ExitCode.NO_DATA,
            )
        subjects = wanted
    query = {"subject": subjects, "suffix": "T2w", "extension": [".nii", ".nii.gz"]}
    if session_label:
        query["session"] = [s.removeprefix("ses-") for s in session_label]
    files = layout.get(**query)
    if not files:
        raise BidaError(
            f"{root}: no T2w run selected (participants: {', '.join(subjects)}"
            + (f"; sessions: {', '.join(query['session'])}" if session_label else "")
            + ")",
            ExitCode.NO_DATA,
        )
    runs = []
    for bf in sorted(files, key=lambda f: f.path):
        entities = {
            k: v
            for k, v in bf.get_entities().items()
            if k not in ("suffix", "extension", "datatype")
        }
        runs.append(describe_run(Path(bf.path), root, entities, bf.get_metadata(), header_scale))
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
        query["subject"] = [s.removeprefix("sub-") for s in participant_label]
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
