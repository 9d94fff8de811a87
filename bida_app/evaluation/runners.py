"""The methods ``bida evaluate`` scores, run as the participant pipeline runs them.

Each method is a callable in :data:`RUNNERS` (name → function of the thick-slice image).
:func:`run_pipeline` wraps it as ``bida participant`` does: N4 on the slices (optional), the
method on the corrected slices, then the field is put back and the data-consistent methods
are projected onto the *acquired* slices (:func:`~bida_app.preprocess.restore.restore_acquired`),
so what is scored is what users get.

ECLARE (Remedios et al.) is run as an external program when ``run-eclare`` is on ``PATH``,
with the call documented in its README (``pip install eclare``)::

    run-eclare --in-fpath LR.nii.gz --out-dir DIR [--gpu-id N]

which writes ``DIR/<LR stem>_eclare.nii.gz``; slice thickness and profile are left to
ECLARE's own estimate (thickness = spacing here, its default assumption). It gets the
acquired slices (it has its own pipeline) and is neither N4-corrected nor projected.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import nibabel as nib

from ..errors import BadDataError, BidaError, ExitCode
from .inputs import _stem
from .settings import DATA_CONSISTENT, WORLD_AXIS_INDEX, EvalSettings

LOGGER = logging.getLogger(__name__)

#: A method: (thick-slice image, voxel axis, thickness mm, HR voxel mm, settings) -> image.
Runner = Callable[[nib.Nifti1Image, int, float, float, EvalSettings], nib.Nifti1Image]


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


def _cubic(img: nib.Nifti1Image, axis: int, thickness: float, hr_mm: float, s: EvalSettings):
    from ..methods.cubic import cubic_super_resolve

    return cubic_super_resolve(img, axis, thickness, hr_mm)[0]


def _dccubic(img: nib.Nifti1Image, axis: int, thickness: float, hr_mm: float, s: EvalSettings):
    from ..methods.dccubic import dc_cubic_super_resolve

    return dc_cubic_super_resolve(
        img, axis, thickness, hr_mm, profile=s.recon_profile, damping=s.dc_damping
    )[0]


def _bida(prior: str) -> Runner:
    def run(img: nib.Nifti1Image, axis: int, thickness: float, hr_mm: float, s: EvalSettings):
        from ..device import resolve_device
        from ..methods.bida import bida_super_resolve_image

        return bida_super_resolve_image(
            img,
            through_axis=axis,
            thickness_mm=thickness,
            target_mm=hr_mm,
            weights_dir=s.weights,
            prior=prior,
            self_prior_steps=s.self_prior_steps,
            steps=s.steps,
            n_samples=s.n_samples,
            eta=s.eta,
            null_shrinkage=s.null_shrinkage,
            t_start=s.t_start,
            slice_profile=s.recon_profile,
            dc_damping=s.dc_damping,
            seed=s.seed,
            device=resolve_device(s.device),
            progress=False,
        ).image

    return run


#: Whole-image methods by name (ECLARE is external: :func:`run_eclare`).
RUNNERS: dict[str, Runner] = {
    "cubic": _cubic,
    "dccubic": _dccubic,
    "bida": _bida("pretrained"),
    "bida-self": _bida("self"),
    "bida-finetune": _bida("finetune"),
}


def run_pipeline(
    method: str,
    lr_img: nib.Nifti1Image,
    lr_path: Path,
    axis: int,
    thickness_mm: float,
    hr_mm: float,
    work_dir: Path,
    settings: EvalSettings,
) -> nib.spatialimages.SpatialImage:
    """Super-resolve ``lr_img`` along voxel ``axis`` to ``hr_mm`` as ``bida participant`` does.

    N4 (when ``settings.n4``) → the method on the corrected slices → the field put back and,
    for the data-consistent methods, the projection onto the acquired slices with
    ``settings.recon_profile``.
    """
    if method == "eclare":
        return run_eclare(lr_path, work_dir / "eclare", settings)
    if method not in RUNNERS:
        raise BidaError(f"unknown method {method!r}", ExitCode.USAGE)
    from ..methods.dccubic import projection_is_damped
    from ..preprocess.restore import restore_acquired

    src, bias = lr_img, None
    if settings.n4:
        from ..preprocess.n4 import n4_correct

        n4 = n4_correct(lr_img, name=str(lr_path))
        src, bias = n4.corrected, n4.bias
    sr = RUNNERS[method](src, axis, thickness_mm, hr_mm, settings)
    return restore_acquired(
        sr,
        lr_img,
        axis,
        thickness_mm,
        bias=bias,
        profile=settings.recon_profile,
        project=method in DATA_CONSISTENT,
        damped=projection_is_damped(method, settings.dc_damping),
    ).image


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
                    PLANES_FOR_AXIS[WORLD_AXIS_INDEX[settings.axis]],
                    resolve_device(settings.device),
                )
            except BidaError as exc:
                raise BidaError(
                    f"{exc} (or leave bida out: --methods cubic eclare)", exc.code
                ) from exc
        runnable.append(method)
    return runnable, notes
