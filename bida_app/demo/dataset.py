"""Write a small, valid rodent BIDS dataset of synthetic phantoms (``bida demo-data``).

Layout::

    DIR/
      dataset_description.json  participants.tsv  README
      sub-01/anat/sub-01_acq-coronal_T2w.nii.gz (+ .json)   1 mm coronal slices (A-P)
      sub-01/anat/sub-01_acq-iso_T2w.nii.gz     (+ .json)   200 µm isotropic
      sub-02/anat/...                                       stored L-I-P (not RAS)
      sub-03/ses-1/anat/sub-03_ses-1_acq-coronal_T2w...     1 mm slices
      sub-03/ses-2/anat/sub-03_ses-2_acq-coronal_T2w...     1 mm slices, 1.2 mm spacing (gap)
      derivatives/phantom/sub-*/...desc-truth_T2w.nii.gz    HR truth of each thick-slice run
      derivatives/phantom/sub-*/...desc-brain_mask.nii.gz   brain mask on the HR grid
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from ..physics import SliceGeometry, SliceOperator
from ..utils.io import write_json, write_nifti
from .phantom import make_rat_phantom

LOGGER = logging.getLogger(__name__)
BIDS_VERSION = "1.9.0"


@dataclass(frozen=True)
class DemoRun:
    """One thick-slice acquisition of the demo dataset."""

    subject: str
    session: str | None
    thickness_mm: float
    spacing_mm: float
    store_axcodes: tuple[str, str, str]
    seed: int


DEMO_RUNS = (
    DemoRun("01", None, 1.0, 1.0, ("R", "A", "S"), 1),
    DemoRun("02", None, 1.0, 1.0, ("L", "I", "P"), 2),
    DemoRun("03", "1", 1.0, 1.0, ("R", "A", "S"), 3),
    DemoRun("03", "2", 1.0, 1.2, ("R", "A", "S"), 4),
)


def _reorient(data: np.ndarray, affine: np.ndarray, codes: tuple[str, str, str]):
    """Return data and affine stored in the voxel order ``codes`` (from RAS)."""
    ornt = nib.orientations.ornt_transform(
        nib.orientations.axcodes2ornt(("R", "A", "S")), nib.orientations.axcodes2ornt(codes)
    )
    out = nib.orientations.apply_orientation(data, ornt)
    aff = affine @ nib.orientations.inv_ornt_aff(ornt, data.shape)
    return out, aff


def _save(data: np.ndarray, affine: np.ndarray, path: Path, dtype=np.float32) -> None:
    img = nib.Nifti1Image(np.asarray(data, dtype=dtype), affine)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    write_nifti(img, path)


def _prefix(run: DemoRun) -> tuple[Path, str]:
    rel = Path(f"sub-{run.subject}")
    name = f"sub-{run.subject}"
    if run.session:
        rel /= f"ses-{run.session}"
        name += f"_ses-{run.session}"
    return rel / "anat", name


def make_demo_dataset(
    root: str | Path,
    *,
    shape: tuple[int, int, int] = (100, 120, 56),
    voxel_mm: float = 0.2,
    runs: tuple[DemoRun, ...] = DEMO_RUNS,
    with_isotropic: bool = True,
) -> Path:
    """Write the synthetic demo BIDS dataset to ``root`` and return its path.

    Parameters
    ----------
    root : path
        Output directory (created; existing files are overwritten).
    shape : tuple of int
        HR phantom grid (RAS). The A-P extent must be a multiple of every run's spacing.
    voxel_mm : float
        HR voxel size (isotropic).
    runs : tuple of DemoRun
        Thick-slice acquisitions to simulate.
    with_isotropic : bool
        Also write one isotropic ``acq-iso`` T2w run per subject/session.
    """
    root = Path(root)
    truth_root = root / "derivatives" / "phantom"
    for run in runs:
        ph = make_rat_phantom(shape, voxel_mm, seed=run.seed)
        n_lr = int(round(shape[1] * voxel_mm / run.spacing_mm))
        geom = SliceGeometry.from_lr(1, n_lr, run.spacing_mm, run.thickness_mm, voxel_mm)
        if geom.n_hr != shape[1]:
            raise ValueError(f"A-P extent {shape[1]} is not a multiple of {run.spacing_mm} mm")
        op = SliceOperator.from_geometry(geom, "gaussian")
        lr = op(ph.image.astype(np.float64))
        lr_affine = ph.affine @ np.linalg.inv(geom.hr_affine(np.eye(4)))
        anat, name = _prefix(run)
        data, aff = _reorient(lr, lr_affine, run.store_axcodes)
        _save(data, aff, root / anat / f"{name}_acq-coronal_T2w.nii.gz")
        write_json(
            root / anat / f"{name}_acq-coronal_T2w.json",
            {
                "SliceThickness": run.thickness_mm,
                "MagneticFieldStrength": 9.4,
                "Manufacturer": "synthetic phantom (bida demo)",
                "PulseSequenceType": "RARE (simulated)",
                "SimulatedSliceProfile": "gaussian",
            },
        )
        if with_isotropic:
            iso = make_rat_phantom(shape, voxel_mm, seed=run.seed + 100).image
            _save(iso, ph.affine, root / anat / f"{name}_acq-iso_T2w.nii.gz")
            write_json(
                root / anat / f"{name}_acq-iso_T2w.json",
                {"MagneticFieldStrength": 9.4, "Manufacturer": "synthetic phantom"},
            )
        _save(ph.image, ph.affine, truth_root / anat / f"{name}_acq-coronal_desc-truth_T2w.nii.gz")
        _save(
            ph.brain,
            ph.affine,
            truth_root / anat / f"{name}_acq-coronal_desc-brain_mask.nii.gz",
            dtype=np.uint8,
        )
    _write_metadata(root, truth_root, sorted({r.subject for r in runs}))
    LOGGER.info("Demo BIDS dataset written to %s", root)
    return root


def _write_metadata(root: Path, truth_root: Path, subjects: list[str]) -> None:
    write_json(
        root / "dataset_description.json",
        {
            "Name": "bida synthetic rat phantoms",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "raw",
            "License": "CC0",
            "Authors": ["bida developers"],
            "GeneratedBy": [{"Name": "bida demo-data"}],
        },
    )
    (root / "participants.tsv").write_text(
        "participant_id\tspecies\n" + "".join(f"sub-{s}\trat (synthetic)\n" for s in subjects)
    )
    (root / "participants.json").write_text(
        json.dumps({"species": {"Description": "species of the (synthetic) animal"}}, indent=2)
        + "\n"
    )
    (root / "README").write_text(
        "Synthetic rat-like head phantoms written by `bida demo-data`.\n"
        "Not real anatomy: for demonstrations and tests only.\n"
    )
    write_json(
        truth_root / "dataset_description.json",
        {
            "Name": "bida phantom ground truth",
            "BIDSVersion": BIDS_VERSION,
            "DatasetType": "derivative",
            "GeneratedBy": [{"Name": "bida demo-data"}],
        },
    )
