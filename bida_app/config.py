"""One serialisable configuration object per run (written as TOML into the work dir)."""

from __future__ import annotations

import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from . import __version__

#: ``--method`` choices (each is the ``desc-`` label of its derivative) and the default: the
#: data-consistent baseline until BiDA beats it on held-out real volumes (see the README).
METHODS = ("dccubic", "cubic", "bida")
DEFAULT_METHOD = "dccubic"
#: Slice profile of the forward model A by default: an SLR excitation of time-bandwidth product
#: DEFAULT_SLR_TBW (about a three-lobe sinc, a common 2D excitation). The true profile is
#: unknown; measured on both real mice (docs/evaluation.md, "Slice profile"), a Gaussian A
#: loses to plain cubic on sharp SLR slices and a sharp (TBW 16) SLR A gives away 0.3-0.4 dB on
#: Gaussian slices, while TBW 4 stays within 0.3 dB of the matched profile in every case.
DEFAULT_SLICE_PROFILE = "slr"
DEFAULT_SLR_TBW = 4.0
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
    steps: int = 16
    eta: float = 0.0
    n_samples: int = 1
    null_shrinkage: bool = False
    slice_profile: str = DEFAULT_SLICE_PROFILE
    weights: str = ""
    prior: str = "pretrained"
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
    def from_toml(cls, path: str | Path) -> RunConfig:
        """Read a configuration written by :meth:`to_toml` (unknown keys are ignored)."""
        data = tomllib.loads(Path(path).read_text()).get("bida", {})
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
