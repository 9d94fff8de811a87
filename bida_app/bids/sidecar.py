"""Assemble a derivative's JSON sidecar and write the derivative files atomically."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np

from .. import __version__
from ..utils.io import write_json, write_nifti
from .derivatives import BIAS_DESC, derivative_path

#: Options of the run recorded in every sidecar.
RECORDED_OPTIONS = (
    "seed",
    "header_scale",
    "anisotropy_threshold",
    "target_resolution",
    "device",
    "nprocs",
    "omp_nthreads",
)


def build_sidecar(run_info: dict, stage_infos: list[dict], config: dict | None = None) -> dict:
    """Merge the run description and each stage's info into one sidecar dictionary.

    Parameters
    ----------
    run_info : dict
        From :meth:`bida_app.bids.discovery.T2wRun.to_dict`.
    stage_infos : list of dict
        ``{"stage": name, "seconds": float, "sidecar": {...}}`` from each node; the
        ``sidecar`` entries are merged in order, timings are collected in ``Timings``.
    config : dict
        Run options; those in :data:`RECORDED_OPTIONS` are recorded.

    Examples
    --------
    >>> meta = build_sidecar({"relpath": "sub-01/anat/sub-01_T2w.nii.gz", "zooms": [1, 1, 2]},
    ...                      [{"stage": "sr", "seconds": 2.0, "sidecar": {"Method": "cubic"}}])
    >>> meta["Sources"], meta["Method"], meta["RuntimeSeconds"]
    (['bids:raw:sub-01/anat/sub-01_T2w.nii.gz'], 'cubic', 2.0)
    """
    config = config or {}
    meta: dict = {
        "Description": "Through-plane super-resolution of a thick-slice T2w run",
        "Sources": [f"bids:raw:{run_info['relpath']}"],
        "SkullStripped": False,
        "InputVoxelSize": [round(float(z), 6) for z in run_info.get("zooms", [])],
    }
    for key, name in (("through_axis", "Voxel"), ("world_axis", "World")):
        if key in run_info:
            meta.setdefault("ThroughPlaneAxis", {})[name] = run_info[key]
    if "thickness_mm" in run_info:
        meta["SliceThickness"] = run_info["thickness_mm"]
        meta["SliceThicknessSource"] = run_info.get("thickness_source", "")
        meta["SliceSpacing"] = run_info.get("spacing_mm")
    timings: dict[str, float] = {}
    for info in stage_infos:
        meta.update(info.get("sidecar", {}))
        if "stage" in info:
            timings[info["stage"]] = float(info.get("seconds", 0.0))
    for key in RECORDED_OPTIONS:
        if key in config:
            meta.setdefault("Options", {})[key] = config[key]
    meta["Seed"] = config.get("seed", meta.get("Seed", 0))
    meta["SoftwareVersion"] = __version__
    meta["Warnings"] = list(run_info.get("warnings", [])) + meta.get("Warnings", [])
    meta["Timings"] = timings
    meta["RuntimeSeconds"] = round(sum(timings.values()), 3)
    return meta


def write_derivative(
    out_dir: Path,
    entities: dict,
    method: str,
    img: nib.Nifti1Image,
    sidecar: dict,
    *,
    std_img: nib.Nifti1Image | None = None,
    corrected_img: nib.Nifti1Image | None = None,
    bias_img: nib.Nifti1Image | None = None,
) -> dict[str, Path]:
    """Write ``desc-<method>_T2w.nii.gz``, its companions and the JSON sidecars.

    Companions: ``desc-<method>Std`` (posterior SD), ``desc-<method>Biascorr`` (the result
    before the N4 field was put back) and ``desc-biasfield`` (that field on the output grid).
    The main sidecar is written last: its presence marks a finished run.
    """
    image = derivative_path(out_dir, entities, method)
    paths = {"image": image}
    meta = dict(sidecar)
    meta["OutputVoxelSize"] = [
        round(float(z), 6) for z in np.sqrt((img.affine[:3, :3] ** 2).sum(axis=0))
    ]
    write_nifti(_float32(img), image)
    raw = meta["Sources"][0]
    main = str(image.relative_to(out_dir))
    companions = (
        ("std", std_img, f"{method}Std", STD_DESCRIPTION, [raw, main]),
        ("corrected", corrected_img, f"{method}Biascorr", CORRECTED_DESCRIPTION, [raw]),
        ("bias", bias_img, BIAS_DESC, BIAS_DESCRIPTION, [raw]),
    )
    for key, extra, desc, text, sources in companions:
        if extra is None:
            continue
        path = derivative_path(out_dir, entities, desc)
        write_nifti(_float32(extra), path)
        write_json(
            _json_of(path),
            {"Description": text, "Sources": sources, "SkullStripped": False, "Method": method},
        )
        paths[key] = path
    if corrected_img is not None:
        meta["BiasCorrectedCompanion"] = str(paths["corrected"].relative_to(out_dir))
    paths["sidecar"] = write_json(_json_of(image), meta)
    return paths


STD_DESCRIPTION = "Voxel-wise standard deviation of the posterior samples"
CORRECTED_DESCRIPTION = (
    "Super-resolved image in the N4 bias-corrected intensity space (before the bias field "
    "was put back); not data-consistent with the acquired slices"
)
BIAS_DESCRIPTION = "N4 multiplicative bias field resampled onto the output grid"


def sidecar_path(image: Path) -> Path:
    """The JSON sidecar beside a ``.nii.gz`` derivative."""
    return _json_of(image)


def _json_of(image: Path) -> Path:
    return image.with_name(image.name.replace(".nii.gz", ".json"))


def _float32(img: nib.Nifti1Image) -> nib.Nifti1Image:
    out = nib.Nifti1Image(np.asarray(img.dataobj, dtype=np.float32), img.affine, img.header)
    out.set_data_dtype(np.float32)
    out.header.set_xyzt_units("mm")
    return out
