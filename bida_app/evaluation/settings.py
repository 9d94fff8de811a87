"""What ``bida evaluate`` does: methods, simulation and reconstruction settings, fingerprint."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..config import (
    DEFAULT_DC_DAMPING,
    DEFAULT_SLICE_PROFILE,
    DEFAULT_STEPS,
    DEFAULT_T_START,
    SIMULATION_TBW,
    check_dc_damping,
)
from ..errors import BidaError, ExitCode

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
    "psnr_interior",
    "ssim_interior",
    "held_out",
    "hr_mask_dice_ref",
    "hr_mask_plausible",
    "thickness_mm",
    "n_lr",
    "hr_slices",
    "skullstrip",
    "hr_file",
    "sr_file",
)
#: Every method ``bida evaluate`` can score.
METHODS: tuple[str, ...] = ("cubic", "dccubic", "bida", "bida-self", "bida-finetune", "eclare")
#: Methods that run BiDA (with the shipped/--weights priors, or ``--prior self``).
BIDA_METHODS = ("bida", "bida-self", "bida-finetune")
#: BiDA methods that use the shipped or ``--weights`` priors (the leave-one-out guard applies).
PRETRAINED_BIDA = ("bida", "bida-finetune")
#: Methods whose output is projected onto the (acquired) slices at the end.
DATA_CONSISTENT = ("dccubic", *BIDA_METHODS)
#: Methods scored when none are named (``bida-self`` trains per volume and scale: opt in).
DEFAULT_METHODS: tuple[str, ...] = ("cubic", "dccubic", "bida", "eclare")
#: The method every other one is compared with (differences and paired tests).
BASELINE = "dccubic"
ECLARE_EXE = "run-eclare"
#: World axis name -> RAS axis index (the harness's ``--axis``).
WORLD_AXIS_INDEX = {"LR": 0, "AP": 1, "SI": 2}
#: Settings that change the scores: a rerun into the same OUT_DIR must keep them.
FINGERPRINT: tuple[str, ...] = (
    "profile",
    "tbw",
    "noise",
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
    "t_start",
    "recon_profile",
    "dc_damping",
    "self_prior_steps",
    "n4",
    "interior_mm",
)


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
    noise : float
        Rician noise on the simulated slices, per-channel standard deviation as a fraction of
        the HR volume's 99th percentile (0: noise-free); seeded by ``seed``, the volume and
        the scale.
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
    t_start : float
        BiDA's starting flow time (1: pure noise; below: warm start from dccubic).
    recon_profile : str
        Slice profile of the forward model ``A`` that the data-consistent methods assume
        (dccubic, BiDA, the final projection); the simulation's is ``profile``, so the two
        can differ on purpose (profile mismatch).
    dc_damping : float or "auto"
        Regularisation of dccubic's projection ("auto": Wiener gain for the noise level;
        a number: Tikhonov damping, 0 exact).
    self_prior_steps : int or None
        Training steps per plane of ``bida-self`` (default: the CPU/GPU budget).
    n4 : bool
        Run the participant pipeline's N4 before each method and put the field back after
        it (what users get); False feeds the simulated slices straight to the methods.
    interior_mm : float
        Erosion (mm) of the HR head mask that defines the interior scored beside the whole
        field, so that the brain outline does not dominate.
    allow_training_volumes : bool
        Score a prior on volumes it was trained on (rows are flagged ``held_out = False``);
        by default such a volume is refused for the BiDA methods.
    device : str
        ``"auto"``, ``"cpu"`` or ``"cuda[:N]"`` (BiDA, the skull-strip network, ECLARE's GPU).
    seed : int
        BiDA random seed; also seeds the simulated noise.
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
    tbw: float = SIMULATION_TBW
    noise: float = 0.0
    axis: str = "AP"
    species: str = "rat"
    weights: str | None = None
    steps: int = DEFAULT_STEPS
    n_samples: int = 1
    eta: float = 0.0
    null_shrinkage: bool = False
    t_start: float = DEFAULT_T_START
    recon_profile: str = DEFAULT_SLICE_PROFILE
    dc_damping: float | str = DEFAULT_DC_DAMPING
    self_prior_steps: int | None = None
    n4: bool = True
    interior_mm: float = 1.0
    allow_training_volumes: bool = False
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
        if self.axis not in WORLD_AXIS_INDEX:
            raise BidaError(f"axis must be one of {list(WORLD_AXIS_INDEX)}", ExitCode.USAGE)
        if not (self.noise >= 0 and math.isfinite(self.noise)):
            raise BidaError(f"noise must be >= 0, got {self.noise}", ExitCode.USAGE)
        try:
            check_dc_damping(self.dc_damping)
        except ValueError as exc:
            raise BidaError(f"dc_damping {exc}", ExitCode.USAGE) from None
        if not (self.interior_mm >= 0 and math.isfinite(self.interior_mm)):
            raise BidaError(f"interior erosion must be >= 0 mm, got {self.interior_mm}")

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
        uses_a = bool(set(self.methods) & set(DATA_CONSISTENT))
        values = {
            "profile": self.profile,
            "tbw": self.tbw if self.profile == "slr" else None,
            "noise": self.noise,
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
            "t_start": self.t_start if uses_bida else None,
            "recon_profile": self.recon_profile if uses_a else None,
            "dc_damping": self.dc_damping if uses_a else None,
            "self_prior_steps": self.self_prior_steps
            if {"bida-self", "bida-finetune"} & set(self.methods)
            else None,
            "n4": self.n4,
            "interior_mm": self.interior_mm,
        }
        return {k: values[k] for k in FINGERPRINT}
