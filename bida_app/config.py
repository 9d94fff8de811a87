"""One serialisable configuration object per run (written as TOML into the work dir)."""

from __future__ import annotations

import logging
import math
import tomllib
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from . import __version__
from .errors import BidaError, ExitCode

LOGGER = logging.getLogger("bida")

#: DDIM steps of BiDA sampling by default. The paper uses 16; with the shipped priors 4 steps
#: score 0.2-0.4 dB higher on the held-out mouse at a quarter of the time (model card), and 4
#: samples of 4 steps cost what one of 16 did.
DEFAULT_STEPS = 4
#: ``--prior`` choices: the shipped (or ``--weights``) priors, priors fitted on the scan's own
#: slices, or the former fine-tuned on them.
PRIORS = ("pretrained", "self", "finetune")
#: ``--method`` choices (each is the ``desc-`` label of its derivative) and the default: the
#: data-consistent baseline until BiDA beats it on held-out real volumes (see the README).
METHODS = ("dccubic", "cubic", "bida")
DEFAULT_METHOD = "dccubic"
#: Slice profile of the forward model A by default: Gaussian, FWHM = slice thickness (the
#: paper's model). ``--slice_profile slr`` is an SLR excitation of time-bandwidth product
#: DEFAULT_SLR_TBW (about a three-lobe sinc). The true profile is unknown and cannot be told
#: from one scan (docs/evaluation.md, "Slice profile").
DEFAULT_SLICE_PROFILE = "gaussian"
DEFAULT_SLR_TBW = 4.0
#: Regularisation of dccubic's projection onto the slices (``--dc_damping``).
#: ``"auto"`` multiplies the residual by the Wiener gain for the scan's own noise level
#: (:mod:`bida_app.methods.shrinkage`): exact on noise-free slices. On both real mice it is
#: within 0.004 dB of the exact projection up to 0.5 % Rician noise and 0.06-0.73 dB (2 %) and
#: 0.25-1.40 dB (4 %) above it (docs/evaluation.md). A number λ is the Tikhonov damping
#: ``Aᵀ(AAᵀ + λ d I)⁻¹`` (d = mean diag(AAᵀ); 0 is exact; 0.1, the 0.5.0 default, also holds
#: back what a sharper true slice profile would make wrong).
DEFAULT_DC_DAMPING: float | str = "auto"
#: ``auto``'s noise level is ``sqrt(σ̂² − (NOISE_FLOOR · p99)²)``, σ̂ the smaller of its two
#: upper bounds. Clean real anatomy reads at least this much (0.47-0.9 % of the 99th percentile
#: on the noise-free mice: fine texture and the averages' own residual noise), so a reading
#: below it is no evidence of noise and keeps the exact projection; on a noisy scan (2-3 %) it
#: lowers σ̂ by 1-3 %.
NOISE_FLOOR = 0.005


def check_dc_damping(value: float | str) -> float | str:
    """``value`` if it is a valid ``--dc_damping`` (a finite number >= 0, or ``"auto"``).

    Raises
    ------
    ValueError
        Anything else (the callers turn it into their own usage error).

    Examples
    --------
    >>> check_dc_damping("auto"), check_dc_damping(0)
    ('auto', 0.0)
    """
    if value == "auto":
        return value
    if isinstance(value, (str, bool)) or not (0 <= float(value) < math.inf):
        raise ValueError(f'must be a number >= 0 or "auto", got {value!r}')
    return float(value)


#: Time-bandwidth product of the sharp SLR slices that ``bida simulate`` and ``bida evaluate``
#: simulate by default (the paper's SigPy simulation).
SIMULATION_TBW = 16.0
#: BiDA's sampler starts at this flow time: 1 is pure noise (the paper); below 1 it starts from
#: the data-consistent cubic estimate noised to that time (a warm start, measured with
#: ``bida evaluate --t-start``: no better than a cold start with the shipped priors).
DEFAULT_T_START = 1.0


@dataclass
class RunConfig:
    """Every option of a participant/group run, resolved to plain values."""

    bids_dir: str
    output_dir: str
    analysis_level: str
    work_dir: str = ""
    participant_label: list[str] = field(default_factory=list)
    session_label: list[str] = field(default_factory=list)
    skip_bids_validator: bool = False
    method: str = DEFAULT_METHOD
    device: str = "auto"
    seed: int = 0
    anisotropy_threshold: float = 1.5
    target_resolution: float = 0.0  # 0: in-plane resolution of each run
    header_scale: float = 1.0
    nprocs: int = 1
    omp_nthreads: int = 1
    mem_gb: float = 0.0
    overwrite: bool = False
    steps: int = DEFAULT_STEPS
    eta: float = 0.0
    n_samples: int = 1
    null_shrinkage: bool = False
    slice_profile: str = DEFAULT_SLICE_PROFILE
    dc_damping: float | str = DEFAULT_DC_DAMPING  # a number >= 0, or "auto"
    weights: str = ""
    prior: str = "pretrained"  # one of PRIORS
    self_prior_steps: int = 0  # 0: the scan-adaptive prior's default budget
    n4: bool = True
    plugin: str = ""
    plugin_args: str = ""
    write_graph: bool = False
    stop_on_first_crash: bool = False
    reports_only: bool = False
    verbosity: int = 0
    version: str = __version__

    def to_toml(self, path: str | Path) -> Path:
        """Write the configuration as a flat TOML table ``[bida]`` (atomically)."""
        from .utils.io import write_text

        lines = ["[bida]"]
        for key, value in asdict(self).items():
            lines.append(f"{key} = {_toml_value(value)}")
        return write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def default(cls, name: str) -> Any:
        """Default of the field ``name`` (the parser's default for the option of that name)."""
        for f in fields(cls):
            if f.name == name:
                if f.default_factory is not MISSING:
                    return f.default_factory()
                return f.default
        raise KeyError(name)

    @classmethod
    def from_namespace(cls, ns: Any) -> RunConfig:
        """The configuration from parsed arguments: each field taken from ``ns`` by name.

        An attribute that is absent or ``None`` (an option left unset whose value is computed
        later, e.g. ``--target_resolution``) gives the field's default; paths become strings
        and sequences lists, as the fields declare.
        """
        values = {}
        for f in fields(cls):
            value = getattr(ns, f.name, None)
            if value is not None:
                values[f.name] = _as_field_type(f.type, value)
        return cls(**values)

    @classmethod
    def read_toml(cls, path: str | Path) -> dict[str, Any]:
        """The option values of a file written by :meth:`to_toml`, checked against the fields.

        Keys this version does not know are ignored with a warning; ``version`` is left out
        (a run always records the version that ran it).

        Raises
        ------
        BidaError
            Exit 64, one line naming the file: missing or unreadable, not TOML, no ``[bida]``
            table, or a value of the wrong type.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise BidaError(f"{path}: configuration file not found", ExitCode.USAGE) from None
        except (OSError, UnicodeDecodeError) as exc:
            why = getattr(exc, "strerror", None) or exc
            raise BidaError(
                f"{path}: cannot read the configuration ({why})", ExitCode.USAGE
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise BidaError(f"{path}: not a TOML file ({exc})", ExitCode.USAGE) from exc
        table = data.get("bida")
        if not isinstance(table, dict):
            raise BidaError(f"{path}: no [bida] table (not a bida config.toml)", ExitCode.USAGE)
        types = {f.name: _FIELD_TYPES[f.type] for f in fields(cls) if f.name != "version"}
        unknown = sorted(set(table) - {f.name for f in fields(cls)})
        if unknown:
            LOGGER.warning("%s: unknown option(s) %s ignored", path, ", ".join(unknown))
        return {
            key: _checked(path, key, types[key], value)
            for key, value in table.items()
            if key in types
        }

    @classmethod
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a configuration written by :meth:`to_toml` (unknown keys are ignored)."""
        return cls(**cls.read_toml(path))


#: Python type of each field annotation of :class:`RunConfig` (TOML values are checked).
_FIELD_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list[str]": list,
    "float | str": (float, str),
}


_EXPECTED = {
    str: "a string",
    int: "an integer",
    float: "a number",
    bool: "true or false",
    list: "a list of strings",
    (float, str): 'a number or "auto"',
}


def _as_field_type(annotation: str, value: Any) -> Any:
    """``value`` as a field annotated ``annotation`` holds it (Path -> str, tuple -> list)."""
    if annotation == "str":
        return str(value)
    if annotation == "list[str]":
        return [str(v) for v in value]
    return value


def _checked(path: Path, key: str, kind: Any, value: Any) -> Any:
    """``value`` of ``key`` in the file ``path`` if it is a ``kind``, else exit 64."""
    floats = kind is float or (isinstance(kind, tuple) and float in kind)
    if floats and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    ok = isinstance(value, kind) and (kind is bool or not isinstance(value, bool))
    if ok and kind is list:
        ok = all(isinstance(v, str) for v in value)
    if not ok:
        expected = _EXPECTED[kind]
        raise BidaError(f"{path}: {key} = {value!r} is not {expected}", ExitCode.USAGE)
    return value


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
