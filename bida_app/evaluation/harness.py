"""``bida evaluate``: simulate thick slices from isotropic volumes, super-resolve, score.

The paper's experiment, for any isotropic T2w data: every HR volume is degraded to thick
slices at each scale ``s`` (slice thickness = spacing = ``s`` × HR voxel, along one world
axis, A-P by default, with the SLR slice profile), each method super-resolves the slices
back to the HR voxel size *as the participant pipeline does* (N4, the method, the field put
back, the projection onto the acquired slices: :mod:`~bida_app.evaluation.runners`), and the
result is scored against the HR volume (:mod:`~bida_app.evaluation.scoring`): PSNR/SSIM over
the whole field and over the interior (head mask eroded by 1 mm), the data-consistency
residual, cDSC (with the skull-strip network's own quality on the HR volume recorded beside
it), and the method's wall time. Every method is also reported against the data-consistent
baseline (``dccubic``): paired differences and Wilcoxon tests per scale (``baseline.csv``).

Leave-one-volume-out: a BiDA prior is scored only on volumes it was not trained on
(:mod:`~bida_app.evaluation.heldout`).

Resuming. LR and SR volumes, masks and the table live under ``OUT_DIR``; each row of
``results.csv`` is written as soon as it is scored, and a rerun skips every
(volume, scale, method) already in the table. ``run.json`` records the settings; a rerun with
settings that change the scores (profiles, noise, damping, axis, species, recipe, steps, seed,
weights, N4, interior) is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
import zlib
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
from ..physics.simulate import simulate_lr
from ..preprocess.orient import voxel_sizes
from ..utils.io import atomic_path, write_json, write_nifti
from .inputs import (
    HRVolume,
    find_volumes,
    is_isotropic,
    slab_box,
    slice_tiling,
    to_hr_grid,
    trim_axis,
)
from .runners import check_methods, eclare_command, run_pipeline
from .scoring import erode_mm, head_mask, mask_quality, score_volume
from .settings import (
    BASELINE,
    BIDA_METHODS,
    COLUMNS,
    DEFAULT_METHODS,
    EXTRA_COLUMNS,
    FINGERPRINT,
    METHODS,
    PRETRAINED_BIDA,
    WORLD_AXIS_INDEX,
    EvalSettings,
)

__all__ = [
    "BASELINE",
    "BIDA_METHODS",
    "COLUMNS",
    "DEFAULT_METHODS",
    "EXTRA_COLUMNS",
    "FINGERPRINT",
    "METHODS",
    "WORLD_AXIS_INDEX",
    "EvalSettings",
    "Evaluation",
    "EvaluationResult",
    "HRVolume",
    "eclare_command",
    "find_volumes",
    "is_isotropic",
    "run_evaluation",
    "score_volume",
    "slice_tiling",
    "trim_axis",
]

LOGGER = logging.getLogger(__name__)
RESULTS, RESULTS_JSON, STATS, RUN_JSON = "results.csv", "results.json", "stats.csv", "run.json"
BASELINE_CSV = "baseline.csv"


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
        self._held_out: dict[str, bool] = {}
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

    def hr_mask_quality(
        self, vol: HRVolume, mask: np.ndarray, ax: int, start: int, n: int
    ) -> dict[str, Any]:
        """How plausible the network's HR mask is (and its Dice against a reference mask
        stored beside the volume); a warning and a note when it looks wrong, so that a cDSC
        from a network off its domain is not read as a result."""
        ref = None
        if vol.reference_mask is not None:
            from ..utils.nifti import load_volume

            full = load_volume(vol.reference_mask)
            ref = np.asarray(trim_axis(full, ax, start, n).dataobj) > 0
            if ref.shape != mask.shape:
                LOGGER.warning("%s: not on the volume's grid, ignored", vol.reference_mask)
                ref = None
        q = mask_quality(mask, ref)
        if not q["plausible"]:
            msg = (
                f"cDSC of {vol.name} is not trustworthy: the {self.settings.species} "
                f"skull-strip mask of the HR volume {'; '.join(q['problems'])}"
            )
            if msg not in self.notes:
                LOGGER.warning("%s", msg)
                self.notes.append(msg)
        return q

    def interior(self, hr: np.ndarray, zooms: np.ndarray, vol_dir: Path, tag: str) -> np.ndarray:
        """Head mask of the HR volume eroded by ``interior_mm`` (cached on disk)."""
        mm = self.settings.interior_mm
        path = vol_dir / f"interior_{tag}_{mm:g}mm.nii.gz"
        if path.is_file():
            return np.asanyarray(nib.load(str(path)).dataobj) > 0
        inner = erode_mm(head_mask(hr, zooms), zooms, mm)
        write_nifti(nib.Nifti1Image(inner.astype(np.uint8), np.diag([*zooms, 1.0])), path)
        return inner

    def held_out(self, volumes: Sequence[HRVolume], methods: Sequence[str]) -> dict[str, bool]:
        """Leave-one-volume-out check of every volume against the priors ``bida`` uses."""
        held = {v.name: True for v in volumes}
        if not set(methods) & set(PRETRAINED_BIDA):
            return held
        from ..models.weights import PLANES_FOR_AXIS
        from .heldout import check_held_out, shipped_or_given_record

        s = self.settings
        record = shipped_or_given_record(s.weights, PLANES_FOR_AXIS[WORLD_AXIS_INDEX[s.axis]])
        for v in volumes:
            held[v.name] = check_held_out(v, record, s.allow_training_volumes)
            if not held[v.name]:
                msg = f"{v.name} trained the BiDA priors: its bida rows are NOT held out"
                LOGGER.warning("%s", msg)
                self.notes.append(msg)
        return held

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
        self._held_out = self.held_out(volumes, methods)
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
        zooms = voxel_sizes(hr_full.affine)
        hr_mm = float(zooms[ax])
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
            noise=s.noise,
            seed=[s.seed, zlib.crc32(vol.name.encode()), round(scale * 1000)],
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
        inner = self.interior(hr, zooms, vol_dir, f"{start}-{n}")
        hr_mask = self.hr_mask(hr_img, vol_dir, start, n) if s.cdsc else None
        quality = self.hr_mask_quality(vol, hr_mask, ax, start, n) if s.cdsc else {}
        out = []
        for method in methods:
            label = f"{vol.name} {scale_label(scale)} {method}"
            LOGGER.info("computing %s", label)
            try:
                t0 = time.perf_counter()
                sr_img = run_pipeline(method, lr_img, lr_path, ax, thickness, hr_mm, sc_dir, s)
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
                sr,
                hr,
                lr=lr,
                operator=op,
                box=box,
                interior=inner,
                sr_mask=sr_mask,
                hr_mask=hr_mask,
            )
            row = {
                "volume": vol.name,
                "scale": float(scale),
                "method": method,
                **scores,
                "seconds": round(seconds, 3),
                "held_out": bool(method not in BIDA_METHODS or self._held_out.get(vol.name, True)),
                "hr_mask_dice_ref": quality.get("dice_ref", float("nan")),
                "hr_mask_plausible": quality.get("plausible"),
                "thickness_mm": round(thickness, 6),
                "n_lr": int(lr_img.shape[ax]),
                "hr_slices": int(n),
                "skullstrip": s.skullstrip_label,
                "hr_file": hr_path.relative_to(self.out_dir).as_posix(),
                "sr_file": sr_path.relative_to(self.out_dir).as_posix(),
            }
            self.add_row(row)
            LOGGER.info(
                "%s: PSNR %.2f dB (interior %.2f), SSIM %.4f, cDSC %.4f, residual %.2e, %.1f s",
                label,
                scores["psnr"],
                scores["psnr_interior"],
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
        from .stats import ALPHA, against_baseline, wilcoxon_pairs

        self.write_table()
        order = [m for m in METHODS if m in set(self.results["method"])]
        stats = wilcoxon_pairs(self.results, methods=order, alpha=ALPHA)
        with atomic_path(self.out_dir / STATS) as tmp:
            stats.to_csv(tmp, index=False)
        vs_base = against_baseline(self.results, BASELINE, alpha=ALPHA)
        with atomic_path(self.out_dir / BASELINE_CSV) as tmp:
            vs_base.to_csv(tmp, index=False)
        if failed:
            self.notes.append(f"{len(failed)} run(s) failed; rerun to retry them")
        self.write_run_json(
            volumes, {"methods_run": list(methods), "failed": [list(f) for f in failed]}
        )
        write_report(self.out_dir, self.results, stats, self.notes, self.settings, vs_base)
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
