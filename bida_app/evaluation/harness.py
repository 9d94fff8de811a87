"""``bida evaluate``: simulate thick slices from isotropic volumes, super-resolve, score.

The paper's experiment, for any isotropic T2w data: every HR volume is degraded to thick
slices at each scale ``s`` (slice thickness = spacing = ``s`` × HR voxel, along one world
axis, A-P by default, with the SLR slice profile), each method super-resolves the slices
back to the HR voxel size, and the result is scored against the HR volume:

* **PSNR** and **SSIM** over the brain field of view: the reference's zero padding is
  cropped away first (:func:`~bida_app.evaluation.metrics.crop_to_foreground`), as the
  paper does for its mice;
* **residual**: the data-consistency residual ``‖A(SR) − LR‖ / ‖LR‖`` with the operator
  that simulated the slices;
* **cDSC**: Dice of the skull-strip mask of SR against that of HR (rodent U-Net of
  ``--species``; the HR mask is computed once per volume and cached);
* **seconds**: wall time of the method alone.

Grids. The HR volume is trimmed (centred) along the through-plane axis to a whole number
of thick slices when that costs at most ``2 s`` voxels (e.g. 67 → 65 voxels for 2.5× and
5× on a 200 µm grid), so the slices tile it exactly and every method's output lands on the
HR grid voxel for voxel. Otherwise the last partial slice is dropped, outputs are resampled
onto the HR grid (cubic B-spline, through the shared world coordinates) and scores are
taken over the span of the slices only.

Resuming. LR and SR volumes, masks and the table live under ``OUT_DIR``; each row of
``results.csv`` is written as soon as it is scored, and a rerun skips every
(volume, scale, method) already in the table. ``run.json`` records the settings; a rerun with
settings that change the scores (profile, axis, species, recipe, steps, seed, weights) is
refused.

ECLARE (Remedios et al.) is run as an external program when ``run-eclare`` is on ``PATH``,
with the call documented in its README (``pip install eclare``)::

    run-eclare --in-fpath LR.nii.gz --out-dir DIR [--gpu-id N]

which writes ``DIR/<LR stem>_eclare.nii.gz``; slice thickness and profile are left to
ECLARE's own estimate (thickness = spacing here, its default assumption).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .. import __version__
from ..errors import BadDataError, BidaError, ExitCode
from ..physics.geometry import voxel_axis
from ..physics.operator import SliceOperator
from ..physics.simulate import ISOTROPY_RTOL, simulate_lr
from ..utils.io import atomic_path, write_json, write_nifti
from .metrics import consistency_residual, crop_to_foreground, dice, psnr, ssim

LOGGER = logging.getLogger(__name__)

COLUMNS: tuple[str, ...] = (
    "volume",
    "scale",
    "method",
    "psnr",
    "ssim",
    "cdsc",
    "residual",
    "seconds",
)
"""Columns of ``results.csv``, in order; the extras of :data:`EXTRA_COLUMNS` follow."""
EXTRA_COLUMNS: tuple[str, ...] = (
    "thickness_mm",
    "n_lr",
    "hr_slices",
    "skullstrip",
    "hr_file",
    "sr_file",
)
METHODS: tuple[str, ...] = ("cubic", "bida", "bida-self", "eclare")
#: Methods that run BiDA (with the shipped/--weights priors, or ``--prior self``).
BIDA_METHODS = ("bida", "bida-self")
#: Methods scored when none are named (``bida-self`` trains per volume and scale: opt in).
DEFAULT_METHODS: tuple[str, ...] = ("cubic", "bida", "eclare")
ECLARE_EXE = "run-eclare"
RESULTS, RESULTS_JSON, STATS, RUN_JSON = "results.csv", "results.json", "stats.csv", "run.json"
WORLD_AXES = {"LR": 0, "AP": 1, "SI": 2}
#: Settings that change the scores: a rerun into the same OUT_DIR must keep them.
FINGERPRINT: tuple[str, ...] = (
    "profile",
    "tbw",
    "axis",
    "species",
    "skullstrip",
    "cdsc",
    "steps",
    "seed",
    "weights",
    "n_samples",
    "eta",
    "null_shrinkage",
    "bida_profile",
    "self_prior_steps",
)


# ----------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class EvalSettings:
    """What ``bida evaluate`` does.

    Attributes
    ----------
    scales : tuple of float
        Super-resolution factors; slice thickness = spacing = scale × HR voxel size.
    methods : tuple of str
        Among :data:`METHODS`.
    profile : str
        Slice profile of the simulation (``"slr"``, ``"gaussian"``, ``"boxcar"``).
    tbw : float
        Time-bandwidth product of the SLR pulse.
    axis : str
        World through-plane axis (``"LR"``, ``"AP"``, ``"SI"``).
    species : str
        Skull-strip network for cDSC (``"rat"`` or ``"mouse"``).
    weights : str or None
        BiDA plane-model folder (default: the shipped weights).
    steps : int
        BiDA sampling steps.
    n_samples : int
        BiDA posterior samples averaged (K).
    eta : float
        BiDA DDIM stochasticity (0: deterministic).
    null_shrinkage : bool
        Shrink BiDA's null-space detail where the K samples disagree.
    bida_profile : str
        Slice profile of BiDA's forward model A (``"gaussian"`` as in the paper).
    self_prior_steps : int or None
        Training steps per plane of ``bida-self`` (default: the CPU/GPU budget).
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda"`` (BiDA, the skull-strip network, ECLARE's GPU).
    seed : int
        BiDA random seed.
    skullstrip_stride : int or None
        Patch stride overriding the published recipe (quick, non-published mode).
    skullstrip_slices : int or None
        Skull-strip only this many evenly spaced slices (quick, non-published mode).
    skullstrip_weights : str or None
        Folder of the converted skull-strip network (default: the fetched one).
    cdsc : bool
        Compute cDSC at all.
    eclare_exe : str
        Name or path of the ECLARE executable.
    """

    scales: tuple[float, ...] = (2.5, 5.0)
    methods: tuple[str, ...] = DEFAULT_METHODS
    profile: str = "slr"
    tbw: float = 16.0
    axis: str = "AP"
    species: str = "rat"
    weights: str | None = None
    steps: int = 16
    n_samples: int = 1
    eta: float = 0.0
    null_shrinkage: bool = False
    bida_profile: str = "gaussian"
    self_prior_steps: int | None = None
    device: str = "auto"
    seed: int = 0
    skullstrip_stride: int | None = None
    skullstrip_slices: int | None = None
    skullstrip_weights: str | None = None
    cdsc: bool = True
    eclare_exe: str = ECLARE_EXE

    def __post_init__(self) -> None:
        bad = [m for m in self.methods if m not in METHODS]
        if bad:
            raise BidaError(
                f"unknown method(s) {bad}; choose from {list(METHODS)}", ExitCode.USAGE
            )
        if not self.scales or any(not (s >= 1.0 and math.isfinite(s)) for s in self.scales):
            raise BidaError(f"scales must be >= 1, got {list(self.scales)}", ExitCode.USAGE)
        if self.axis not in WORLD_AXES:
            raise BidaError(f"axis must be one of {list(WORLD_AXES)}", ExitCode.USAGE)

    @property
    def quick_skullstrip(self) -> bool:
        """True when the skull-strip does not follow the published recipe."""
        return self.skullstrip_stride is not None or self.skullstrip_slices is not None

    @property
    def skullstrip_label(self) -> str:
        """How cDSC masks are made, for tables and figures."""
        if not self.cdsc:
            return "none"
        if not self.quick_skullstrip:
            return f"{self.species} (published recipe)"
        parts = []
        if self.skullstrip_stride is not None:
            parts.append(f"stride {self.skullstrip_stride}")
        if self.skullstrip_slices is not None:
            parts.append(f"{self.skullstrip_slices} slices")
        return f"{self.species} quick ({', '.join(parts)}; not the published recipe)"

    def fingerprint(self) -> dict[str, Any]:
        """The settings a resumed run must share with the first one."""
        uses_bida = bool(set(self.methods) & set(BIDA_METHODS))
        values = {
            "profile": self.profile,
            "tbw": self.tbw if self.profile == "slr" else None,
            "axis": self.axis,
            "species": self.species if self.cdsc else None,
            "skullstrip": self.skullstrip_label,
            "cdsc": self.cdsc,
            "steps": self.steps if uses_bida else None,
            "seed": self.seed if uses_bida else None,
            "weights": str(Path(self.weights).resolve()) if self.weights else None,
            "n_samples": self.n_samples if uses_bida else None,
            "eta": self.eta if uses_bida else None,
            "null_shrinkage": self.null_shrinkage if uses_bida else None,
            "bida_profile": self.bida_profile if uses_bida else None,
            "self_prior_steps": self.self_prior_steps if "bida-self" in self.methods else None,
        }
        return {k: values[k] for k in FINGERPRINT}


@dataclass(frozen=True)
class HRVolume:
    """One isotropic input volume."""

    name: str
    path: Path
    source: str


@dataclass
class EvaluationResult:
    """What :func:`run_evaluation` returns."""

    results: pd.DataFrame
    stats: pd.DataFrame
    notes: list[str]
    out_dir: Path
    computed: list[tuple[str, float, str]] = field(default_factory=list)
    skipped: list[tuple[str, float, str]] = field(default_factory=list)
    failed: list[tuple[str, float, str, str]] = field(default_factory=list)


# ----------------------------------------------------------------------------- inputs


def _stem(path: Path) -> str:
    name = path.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return path.stem


def _zooms(affine: np.ndarray) -> np.ndarray:
    return np.sqrt((np.asarray(affine, float)[:3, :3] ** 2).sum(axis=0))


def is_isotropic(path: Path) -> bool:
    """Whether a NIfTI file's voxels are isotropic (header only; bad files exit 65)."""
    try:
        img = nib.load(str(path))
    except Exception as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadDataError(f"{path}: cannot read NIfTI header ({reason})") from exc
    if len(img.shape) not in (3, 4) or (len(img.shape) == 4 and img.shape[3] != 1):
        LOGGER.info("skipping %s: not a 3D volume (shape %s)", path.name, img.shape)
        return False
    zooms = _zooms(img.affine)
    if np.allclose(zooms, zooms[0], rtol=ISOTROPY_RTOL):
        return True
    LOGGER.info("skipping %s: not isotropic (%s mm)", path.name, np.round(zooms, 4))
    return False


def _bids_runs(root: Path) -> list[tuple[Path, str]]:
    """T2w NIfTI runs of a BIDS dataset (pybids) and the demo dataset's phantom truths."""
    from bids import BIDSLayout

    try:
        layout = BIDSLayout(str(root), validate=False)
    except Exception as exc:
        raise BidaError(f"{root}: not a BIDS dataset ({exc})", ExitCode.BIDS_INVALID) from exc
    runs = [
        (Path(f.path), "bids") for f in layout.get(suffix="T2w", extension=[".nii", ".nii.gz"])
    ]
    truth = root / "derivatives" / "phantom"
    runs += [(p, "demo-truth") for p in sorted(truth.rglob("*desc-truth_T2w.nii*"))]
    return runs


def find_volumes(inputs: Sequence[str | os.PathLike[str]]) -> list[HRVolume]:
    """Isotropic HR volumes named by the command line.

    Parameters
    ----------
    inputs : sequence of path
        NIfTI files, or one BIDS dataset (every isotropic T2w run; for the demo dataset
        also its ``derivatives/phantom/*desc-truth_T2w`` volumes).

    Returns
    -------
    list of HRVolume
        Unique names (file stems, suffixed ``-2``, ``-3`` … on collisions).

    Raises
    ------
    BidaError
        A missing input (66), a directory that is not BIDS (16), no isotropic volume (18).
    BadDataError
        An unreadable NIfTI file (65).
    """
    candidates: list[tuple[Path, str]] = []
    for raw in inputs:
        path = Path(raw)
        if not path.exists():
            raise BidaError(f"{path}: no such file or directory", ExitCode.MISSING_INPUT)
        if path.is_dir():
            if not (path / "dataset_description.json").is_file():
                raise BidaError(
                    f"{path}: not a BIDS dataset (no dataset_description.json); pass NIfTI "
                    "files or a BIDS folder",
                    ExitCode.BIDS_INVALID,
                )
            candidates += _bids_runs(path.resolve())
        else:
            candidates.append((path.resolve(), "nifti"))
    volumes: list[HRVolume] = []
    seen: dict[str, int] = {}
    for path, source in dict.fromkeys(candidates):
        if not is_isotropic(path):
            continue
        name = _stem(path)
        seen[name] = seen.get(name, 0) + 1
        if seen[name] > 1:
            name = f"{name}-{seen[name]}"
        volumes.append(HRVolume(name, path, source))
    if not volumes:
        where = ", ".join(str(p) for p in inputs)
        raise BidaError(f"no isotropic T2w volume found in {where}", ExitCode.NO_DATA)
    return volumes


# ----------------------------------------------------------------------------- geometry


def slice_tiling(n_hr: int, factor: float, max_trim: int | None = None) -> tuple[int, int, bool]:
    """Centred HR span that a whole number of ``factor``-voxel slices tiles exactly.

    Parameters
    ----------
    n_hr : int
        HR voxels along the through-plane axis.
    factor : float
        Slice spacing in HR voxels (the scale).
    max_trim : int, optional
        Most voxels that may be trimmed (default ``ceil(2 * factor)``).

    Returns
    -------
    start, n : int
        First HR voxel and number of voxels kept.
    exact : bool
        False when no such span exists within ``max_trim``: then ``(0, n_hr)`` is returned
        and the slices cover ``floor(n_hr / factor) * factor`` voxels only.

    Examples
    --------
    >>> slice_tiling(67, 2.5), slice_tiling(67, 5.0), slice_tiling(60, 2.5)
    ((1, 65, True), (1, 65, True), (0, 60, True))
    >>> slice_tiling(56, 3.3)
    (0, 56, False)
    """
    max_trim = int(math.ceil(2 * factor)) if max_trim is None else max_trim
    n_lr = int(math.floor(n_hr / factor * (1 + 1e-9)))
    while n_lr >= 1:
        n = n_lr * factor
        if abs(n - round(n)) < 1e-6 and n_hr - round(n) <= max_trim:
            n = int(round(n))
            return (n_hr - n) // 2, n, True
        if n_hr - n > max_trim:
            break
        n_lr -= 1
    return 0, n_hr, False


def trim_axis(img: nib.Nifti1Image, axis: int, start: int, n: int) -> nib.Nifti1Image:
    """Voxels ``start:start+n`` of ``img`` along ``axis``, with the affine moved to match."""
    if start == 0 and n == img.shape[axis]:
        return img
    index = [slice(None)] * 3
    index[axis] = slice(start, start + n)
    data = np.asarray(img.dataobj, dtype=np.float32)[tuple(index)]
    affine = img.affine.copy()
    affine[:3, 3] = img.affine[:3, :3] @ np.eye(3)[axis] * start + img.affine[:3, 3]
    out = nib.Nifti1Image(data, affine, header=img.header)
    out.set_sform(affine, code=1)
    out.set_qform(affine, code=1)
    return out


def slab_box(op: SliceOperator, n_hr: int, axis: int) -> tuple[slice, ...]:
    """HR voxels (box along ``axis``) whose centres lie inside the span of the slices."""
    centres = np.asarray(op.lr_centres, dtype=np.float64)
    half = float(np.median(np.diff(centres))) / 2.0 if len(centres) > 1 else n_hr / 2.0
    lo = max(0, int(math.ceil(centres[0] - half - 1e-6)))
    hi = min(n_hr - 1, int(math.floor(centres[-1] + half + 1e-6)))
    box = [slice(None)] * 3
    box[axis] = slice(lo, hi + 1)
    return tuple(box)


def to_hr_grid(sr_img: nib.spatialimages.SpatialImage, hr_img: nib.Nifti1Image) -> np.ndarray:
    """SR data on the HR grid: as is when the grids agree, else cubic B-spline resampling."""
    from ..preprocess.resample import resample_to_grid

    data = np.asarray(sr_img.dataobj, dtype=np.float64)
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise BadDataError(f"super-resolved output has shape {data.shape}, expected 3D")
    if data.shape == hr_img.shape and np.allclose(sr_img.affine, hr_img.affine, atol=1e-4):
        return data
    LOGGER.debug("resampling output %s onto the HR grid %s", data.shape, hr_img.shape)
    return resample_to_grid(data, sr_img.affine, hr_img.affine, hr_img.shape, order=3)


# ----------------------------------------------------------------------------- scoring


def score_volume(
    sr: np.ndarray,
    hr: np.ndarray,
    *,
    lr: np.ndarray | None = None,
    operator: SliceOperator | None = None,
    box: tuple[slice, ...] | None = None,
    sr_mask: np.ndarray | None = None,
    hr_mask: np.ndarray | None = None,
) -> dict[str, float]:
    """PSNR, SSIM, residual and cDSC of an SR volume on the HR grid.

    Parameters
    ----------
    sr, hr : ndarray
        Super-resolved and reference volumes (same grid).
    lr, operator : ndarray and SliceOperator, optional
        Thick slices and the operator that made them, for the residual (NaN without).
    box : tuple of slice, optional
        Region scored (the slices' span); PSNR/SSIM further crop ``hr``'s zero padding.
    sr_mask, hr_mask : ndarray, optional
        Skull-strip masks for cDSC (NaN without).

    Returns
    -------
    dict
        ``psnr`` (dB; ``inf`` for identical volumes), ``ssim``, ``cdsc``, ``residual``.

    Examples
    --------
    >>> hr = np.pad(np.random.default_rng(0).random((6, 6, 6)) + 1, 2)
    >>> s = score_volume(hr, hr, sr_mask=hr > 0, hr_mask=hr > 0)
    >>> s["psnr"], s["ssim"], s["cdsc"]
    (inf, 1.0, 1.0)
    """
    sr, hr = np.asarray(sr, np.float64), np.asarray(hr, np.float64)
    if sr.shape != hr.shape:
        raise ValueError(f"SR {sr.shape} and HR {hr.shape} are not on the same grid")
    box = box or (slice(None),) * hr.ndim
    x, ref = crop_to_foreground(sr[box], hr[box])
    out = {"psnr": psnr(x, ref), "ssim": ssim(x, ref), "cdsc": math.nan, "residual": math.nan}
    if lr is not None and operator is not None:
        out["residual"] = consistency_residual(sr, lr, operator)
    if sr_mask is not None and hr_mask is not None:
        out["cdsc"] = dice(np.asarray(sr_mask)[box], np.asarray(hr_mask)[box])
    return out


# ----------------------------------------------------------------------------- methods


def eclare_command(exe: str, lr_path: Path, out_dir: Path, gpu_id: int | None = None) -> list[str]:
    """Command line of ECLARE for one LR volume (see the module docstring).

    Examples
    --------
    >>> eclare_command("run-eclare", Path("lr.nii.gz"), Path("out"), 0)
    ['run-eclare', '--in-fpath', 'lr.nii.gz', '--out-dir', 'out', '--gpu-id', '0']
    """
    cmd = [exe, "--in-fpath", str(lr_path), "--out-dir", str(out_dir)]
    if gpu_id is not None:
        cmd += ["--gpu-id", str(gpu_id)]
    return cmd


def _gpu_id(device: str) -> int | None:
    from ..device import resolve_device

    dev = resolve_device(device)
    return (dev.index or 0) if dev.type == "cuda" else None


def run_eclare(lr_path: Path, work_dir: Path, settings: EvalSettings) -> nib.Nifti1Image:
    """Call ECLARE on ``lr_path``; return its output image (exit code and output checked)."""
    exe = shutil.which(settings.eclare_exe)
    if exe is None:
        raise BidaError(f"{settings.eclare_exe}: not found on PATH", ExitCode.MISSING_INPUT)
    work_dir.mkdir(parents=True, exist_ok=True)
    cmd = eclare_command(exe, lr_path, work_dir, _gpu_id(settings.device))
    LOGGER.debug("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    (work_dir / "eclare.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        lines = [ln for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else ""
        raise BidaError(
            f"{settings.eclare_exe} exited with {proc.returncode}: {last} "
            f"(full output in {work_dir / 'eclare.log'})",
            ExitCode.FAILURE,
        )
    expected = work_dir / f"{_stem(lr_path)}_eclare.nii.gz"
    found = [expected] if expected.is_file() else sorted(work_dir.glob("*eclare*.nii*"))
    if not found:
        raise BidaError(
            f"{settings.eclare_exe} wrote no *_eclare.nii.gz into {work_dir}", ExitCode.FAILURE
        )
    try:
        return nib.load(str(found[0]))
    except Exception as exc:
        raise BadDataError(f"{found[0]}: cannot read ECLARE output ({exc})") from exc


def run_method(
    method: str,
    lr_img: nib.Nifti1Image,
    lr_path: Path,
    axis: int,
    thickness_mm: float,
    hr_mm: float,
    work_dir: Path,
    settings: EvalSettings,
) -> nib.spatialimages.SpatialImage:
    """Super-resolve ``lr_img`` along voxel ``axis`` to ``hr_mm`` with one method."""
    if method == "cubic":
        from ..methods.cubic import cubic_super_resolve

        return cubic_super_resolve(lr_img, axis, thickness_mm, hr_mm)[0]
    if method in BIDA_METHODS:
        from ..device import resolve_device
        from ..methods.bida import bida_super_resolve_image

        return bida_super_resolve_image(
            lr_img,
            through_axis=axis,
            thickness_mm=thickness_mm,
            target_mm=hr_mm,
            weights_dir=settings.weights,
            prior="self" if method == "bida-self" else "pretrained",
            self_prior_steps=settings.self_prior_steps,
            steps=settings.steps,
            n_samples=settings.n_samples,
            eta=settings.eta,
            null_shrinkage=settings.null_shrinkage,
            slice_profile=settings.bida_profile,
            seed=settings.seed,
            device=resolve_device(settings.device),
            progress=False,
        ).image
    if method == "eclare":
        return run_eclare(lr_path, work_dir / "eclare", settings)
    raise BidaError(f"unknown method {method!r}", ExitCode.USAGE)


def check_methods(settings: EvalSettings) -> tuple[list[str], list[str]]:
    """Methods that can run, and notes on those that cannot (ECLARE not installed).

    BiDA weights are loaded here, so a missing or corrupt weights folder stops the run
    before any work (exit 66/65).
    """
    runnable, notes = [], []
    for method in dict.fromkeys(settings.methods):
        if method == "eclare" and shutil.which(settings.eclare_exe) is None:
            msg = (
                f"eclare skipped: no '{settings.eclare_exe}' executable on PATH "
                "(pip install eclare, see https://github.com/sremedios/eclare)"
            )
            LOGGER.warning("%s", msg)
            notes.append(msg)
            continue
        if method == "bida":
            from ..device import resolve_device
            from ..methods.bida import PLANES_FOR_AXIS, get_plane_models

            try:
                get_plane_models(
                    settings.weights,
                    PLANES_FOR_AXIS[WORLD_AXES[settings.axis]],
                    resolve_device(settings.device),
                )
            except BidaError as exc:
                raise BidaError(
                    f"{exc} (or leave bida out: --methods cubic eclare)", exc.code
                ) from exc
        runnable.append(method)
    return runnable, notes


# ----------------------------------------------------------------------------- run


def scale_label(scale: float) -> str:
    """Folder name of a scale.

    Examples
    --------
    >>> scale_label(2.5), scale_label(5.0)
    ('x2.5', 'x5')
    """
    return f"x{scale:g}"


def _key(volume: str, scale: float, method: str) -> tuple[str, float, str]:
    return str(volume), round(float(scale), 6), str(method)


class Evaluation:
    """One evaluation folder: inputs, settings, the growing results table.

    Parameters
    ----------
    out_dir : path
        ``OUT_DIR`` (created).
    settings : EvalSettings
        What to run.
    progress : bool
        Show tqdm bars.
    """

    def __init__(
        self, out_dir: str | os.PathLike[str], settings: EvalSettings, progress: bool = True
    ) -> None:
        self.out_dir = Path(out_dir)
        self.settings = settings
        self.progress = progress
        self.notes: list[str] = []
        self._stripper: Any = None
        self._recipe: Any = None
        self.results = self._load_results()
        self._fingerprint = settings.fingerprint()

    # ---- bookkeeping ------------------------------------------------------------------

    def _load_results(self) -> pd.DataFrame:
        path = self.out_dir / RESULTS
        if not path.is_file():
            return pd.DataFrame(columns=[*COLUMNS, *EXTRA_COLUMNS])
        try:
            df = pd.read_csv(path)
        except Exception as exc:
            raise BadDataError(f"{path}: cannot read the results table ({exc})") from exc
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise BadDataError(f"{path}: not a bida results table (no {missing})")
        return df

    def check_resume(self) -> None:
        """Refuse to mix results of different settings in one folder."""
        path = self.out_dir / RUN_JSON
        if not path.is_file() or self.results.empty:
            return
        old = self.previous_fingerprint()
        new = self.settings.fingerprint()
        diff = [k for k in FINGERPRINT if None not in (old.get(k), new[k]) and old[k] != new[k]]
        if diff:
            changes = ", ".join(f"{k}: {old[k]!r} -> {new[k]!r}" for k in diff)
            raise BidaError(
                f"{self.out_dir} holds results made with other settings ({changes}); use "
                "another OUT_DIR or the same settings",
                ExitCode.USAGE,
            )

    def previous_fingerprint(self) -> dict[str, Any]:
        """Fingerprint recorded by earlier runs into this folder (empty if none)."""
        path = self.out_dir / RUN_JSON
        if not path.is_file():
            return {}
        try:
            return dict(json.loads(path.read_text()).get("fingerprint", {}))
        except (ValueError, AttributeError) as exc:
            raise BadDataError(f"{path}: unreadable ({exc})") from exc

    def fingerprint(self) -> dict[str, Any]:
        """This run's fingerprint, keeping earlier values for settings it does not use."""
        old, new = self.previous_fingerprint(), self.settings.fingerprint()
        if self.results.empty:
            return new
        return {k: new[k] if new[k] is not None else old.get(k) for k in FINGERPRINT}

    def done(self) -> set[tuple[str, float, str]]:
        """Keys of the rows already in the table."""
        return {
            _key(v, s, m)
            for v, s, m in zip(
                self.results["volume"], self.results["scale"], self.results["method"], strict=True
            )
        }

    def add_row(self, row: dict[str, Any]) -> None:
        """Append a row and rewrite ``results.csv`` atomically."""
        new = pd.DataFrame([row], columns=[*COLUMNS, *EXTRA_COLUMNS])
        self.results = new if self.results.empty else pd.concat([self.results, new])
        self.results = self.results.reset_index(drop=True)
        self.write_table()

    def write_table(self) -> None:
        """``results.csv`` and ``results.json`` (non-finite numbers become ``null``)."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(self.out_dir / RESULTS) as tmp:
            self.results.to_csv(tmp, index=False)
        with atomic_path(self.out_dir / RESULTS_JSON) as tmp:
            tmp.write_text(self.results.to_json(orient="records", indent=2) + "\n")

    def write_run_json(self, volumes: Sequence[HRVolume], extra: dict[str, Any]) -> Path:
        """Settings, fingerprint, inputs and notes of this run."""
        return write_json(
            self.out_dir / RUN_JSON,
            {
                "GeneratedBy": {"Name": "bida evaluate", "Version": __version__},
                "settings": asdict(self.settings),
                "fingerprint": self._fingerprint,
                "volumes": [
                    {"name": v.name, "path": str(v.path), "source": v.source} for v in volumes
                ],
                "notes": self.notes,
                **extra,
            },
        )

    # ---- skull-strip ------------------------------------------------------------------

    def _skullstrip(self, img: nib.Nifti1Image) -> np.ndarray:
        from .skullstrip import RECIPES, SkullStripper, with_recipe

        s = self.settings
        if self._stripper is None:
            from ..device import resolve_device

            device = resolve_device(s.device)
            self._stripper = SkullStripper.load(s.species, s.skullstrip_weights, device=device)
            changes = {} if s.skullstrip_stride is None else {"stride": s.skullstrip_stride}
            self._recipe = with_recipe(s.species, **changes) if changes else RECIPES[s.species]
        slices = None
        if s.skullstrip_slices:
            ax = self._recipe.slice_axis
            ornt = nib.orientations.io_orientation(img.affine)
            n = img.shape[int(np.flatnonzero(ornt[:, 0] == ax)[0])]
            k = min(s.skullstrip_slices, n)
            slices = np.unique(np.round(np.linspace(0, n - 1, k + 2)[1:-1]).astype(int))
        mask = self._stripper.predict_mask(
            img, s.species, slices=slices, recipe=self._recipe, progress=self.progress
        )
        return np.asanyarray(mask.dataobj).astype(np.uint8)

    def hr_mask(self, hr_img: nib.Nifti1Image, vol_dir: Path, start: int, n: int) -> np.ndarray:
        """Skull-strip mask of the (trimmed) HR volume, cached on disk."""
        path = vol_dir / f"hr_mask_{start}-{n}.nii.gz"
        if path.is_file():
            return np.asanyarray(nib.load(str(path)).dataobj).astype(np.uint8)
        mask = self._skullstrip(hr_img)
        write_nifti(nib.Nifti1Image(mask, hr_img.affine), path)
        return mask

    # ---- the loop ---------------------------------------------------------------------

    def run(self, volumes: Sequence[HRVolume]) -> EvaluationResult:
        """Evaluate every volume × scale × method not yet in the table."""
        from ..utils.nifti import load_volume

        s = self.settings
        self.check_resume()
        self._fingerprint = self.fingerprint()
        methods, notes = check_methods(s)
        self.notes = notes
        if not methods:
            raise BidaError(f"no method can run ({'; '.join(notes)})", ExitCode.MISSING_INPUT)
        if s.quick_skullstrip and s.cdsc:
            self.notes.append(f"cDSC masks: {s.skullstrip_label}")
        self.write_run_json(volumes, {"methods_run": methods})
        done = self.done()
        jobs = [(v, sc, m) for v in volumes for sc in s.scales for m in methods]
        computed, skipped, failed = [], [], []
        bar = tqdm(total=len(jobs), desc="evaluate", unit="run", disable=not self.progress)
        for vol in volumes:
            todo = []
            for sc, m in [(sc, m) for sc in s.scales for m in methods]:
                if _key(vol.name, sc, m) not in done:
                    todo.append((sc, m))
                    continue
                LOGGER.info(
                    "skipping %s %s %s: already in %s", vol.name, scale_label(sc), m, RESULTS
                )
                skipped.append(_key(vol.name, sc, m))
                bar.update(1)
            if not todo:
                continue
            hr_full = load_volume(vol.path)
            for sc in s.scales:
                pending = [m for scale, m in todo if scale == sc]
                if not pending:
                    continue
                for m, ok, err in self._run_scale(vol, hr_full, sc, pending, bar):
                    (computed if ok else failed).append(
                        _key(vol.name, sc, m) + ((err,) if not ok else ())
                    )
        bar.close()
        return self.finish(volumes, methods, computed, skipped, failed)

    def _run_scale(
        self,
        vol: HRVolume,
        hr_full: nib.Nifti1Image,
        scale: float,
        methods: Sequence[str],
        bar: Any,
    ) -> list[tuple[str, bool, str]]:
        s = self.settings
        ax = voxel_axis(hr_full.affine, s.axis)
        hr_mm = float(_zooms(hr_full.affine)[ax])
        thickness = scale * hr_mm
        start, n, exact = slice_tiling(hr_full.shape[ax], scale)
        if not exact:
            LOGGER.info(
                "%s: %d voxels along %s are not a whole number of %g-voxel slices; scoring "
                "within the slices' span",
                vol.name,
                hr_full.shape[ax],
                s.axis,
                scale,
            )
        hr_img = trim_axis(hr_full, ax, start, n)
        vol_dir = self.out_dir / "volumes" / vol.name
        hr_path = vol_dir / f"hr_{start}-{n}.nii.gz"
        if not hr_path.is_file():
            write_nifti(hr_img, hr_path)
        sc_dir = vol_dir / scale_label(scale)
        lr_img, meta = simulate_lr(
            hr_img,
            thickness_mm=thickness,
            spacing_mm=thickness,
            axis=s.axis,
            profile=s.profile,
            tbw=s.tbw,
            source=str(vol.path),
        )
        lr_path = sc_dir / "lr.nii.gz"
        if not lr_path.is_file():
            write_nifti(lr_img, lr_path)
            write_json(sc_dir / "lr.json", meta)
        hr = np.asarray(hr_img.dataobj, np.float64)
        lr = np.asarray(lr_img.dataobj, np.float64)
        op = SliceOperator.from_affines(
            hr_img.affine,
            hr_img.shape[ax],
            lr_img.affine,
            lr_img.shape[ax],
            ax,
            s.profile,
            thickness_mm=thickness,
            tbw=s.tbw,
        )
        box = slab_box(op, hr.shape[ax], ax)
        hr_mask = self.hr_mask(hr_img, vol_dir, start, n) if s.cdsc else None
        out = []
        for method in methods:
            label = f"{vol.name} {scale_label(scale)} {method}"
            LOGGER.info("computing %s", label)
            try:
                t0 = time.perf_counter()
                sr_img = run_method(method, lr_img, lr_path, ax, thickness, hr_mm, sc_dir, s)
                seconds = time.perf_counter() - t0
                sr = to_hr_grid(sr_img, hr_img)
            except BidaError as exc:
                if exc.code in (ExitCode.MISSING_INPUT, ExitCode.USAGE):
                    raise
                LOGGER.error("%s failed: %s", label, exc)
                out.append((method, False, str(exc)))
                bar.update(1)
                continue
            except Exception as exc:  # one broken run must not lose the others
                LOGGER.debug("%s failed", label, exc_info=True)
                LOGGER.error("%s failed: %s: %s", label, type(exc).__name__, exc)
                out.append((method, False, str(exc)))
                bar.update(1)
                continue
            sr_path = sc_dir / f"{method}.nii.gz"
            sr_out = nib.Nifti1Image(sr.astype(np.float32), hr_img.affine, header=hr_img.header)
            write_nifti(sr_out, sr_path)
            sr_mask = None
            if s.cdsc:
                sr_mask = self._skullstrip(sr_out)
                write_nifti(
                    nib.Nifti1Image(sr_mask, hr_img.affine), sc_dir / f"{method}_mask.nii.gz"
                )
            scores = score_volume(
                sr, hr, lr=lr, operator=op, box=box, sr_mask=sr_mask, hr_mask=hr_mask
            )
            row = {
                "volume": vol.name,
                "scale": float(scale),
                "method": method,
                **scores,
                "seconds": round(seconds, 3),
                "thickness_mm": round(thickness, 6),
                "n_lr": int(lr_img.shape[ax]),
                "hr_slices": int(n),
                "skullstrip": s.skullstrip_label,
                "hr_file": hr_path.relative_to(self.out_dir).as_posix(),
                "sr_file": sr_path.relative_to(self.out_dir).as_posix(),
            }
            self.add_row(row)
            LOGGER.info(
                "%s: PSNR %.2f dB, SSIM %.4f, cDSC %.4f, residual %.2e, %.1f s",
                label,
                scores["psnr"],
                scores["ssim"],
                scores["cdsc"],
                scores["residual"],
                seconds,
            )
            out.append((method, True, ""))
            bar.update(1)
        return out

    def finish(
        self,
        volumes: Sequence[HRVolume],
        methods: Sequence[str],
        computed: list,
        skipped: list,
        failed: list,
    ) -> EvaluationResult:
        """Statistics, figures and the HTML summary from the whole table."""
        from .report import write_report
        from .stats import ALPHA, wilcoxon_pairs

        self.write_table()
        order = [m for m in METHODS if m in set(self.results["method"])]
        stats = wilcoxon_pairs(self.results, methods=order, alpha=ALPHA)
        with atomic_path(self.out_dir / STATS) as tmp:
            stats.to_csv(tmp, index=False)
        if failed:
            self.notes.append(f"{len(failed)} run(s) failed; rerun to retry them")
        self.write_run_json(
            volumes, {"methods_run": list(methods), "failed": [list(f) for f in failed]}
        )
        write_report(self.out_dir, self.results, stats, self.notes, self.settings)
        return EvaluationResult(
            self.results, stats, self.notes, self.out_dir, computed, skipped, failed
        )


def run_evaluation(
    inputs: Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    settings: EvalSettings | None = None,
    *,
    progress: bool = True,
) -> EvaluationResult:
    """Find the isotropic volumes in ``inputs`` and evaluate them into ``out_dir``.

    Raises
    ------
    BidaError
        Missing input (66), no isotropic volume (18), unreadable file (65), settings that
        differ from the folder's earlier run (64), missing BiDA or skull-strip weights (66).
    """
    settings = settings or EvalSettings()
    out = Path(out_dir).resolve()
    for raw in inputs:
        src = Path(raw).resolve()
        if src.is_dir() and (out == src or src in out.parents):
            raise BidaError(f"{out}: OUT_DIR must not be inside the input {src}", ExitCode.USAGE)
    volumes = find_volumes(inputs)
    LOGGER.info("%d isotropic volume(s): %s", len(volumes), ", ".join(v.name for v in volumes))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BidaError(f"{out}: cannot create ({exc})", ExitCode.CANT_CREATE) from exc
    return Evaluation(out, settings, progress=progress).run(volumes)
