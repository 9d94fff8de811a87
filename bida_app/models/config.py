"""Size and shape of the 2D slice UNet, as a serialisable dataclass with named presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any


@dataclass(frozen=True)
class UNetConfig:
    """Hyper-parameters of :class:`~bida_app.models.unet.UNet`.

    Parameters
    ----------
    in_channels : int
        Image channels (1 for MR slices); the output has the same number.
    base_channels : int
        Feature channels at full resolution.
    channel_mult : tuple of int
        Channel multiplier per resolution level; ``len - 1`` down-samplings.
    num_res_blocks : int
        Residual blocks per level on the encoder side (the decoder has one more).
    attention_levels : tuple of int
        Level indices (0 = full resolution) that get self-attention after each block.
        The bottleneck always has one attention block when this is not empty.
    num_heads : int
        Attention heads.
    groups : int
        GroupNorm groups (must divide every channel count).
    dropout : float
        Dropout inside residual blocks (training only).
    time_scale : float
        The network sees ``t * time_scale`` in its sinusoidal embedding (t in [0, 1]).

    Examples
    --------
    >>> cfg = UNetConfig.preset("tiny")
    >>> cfg.factor
    4
    >>> UNetConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    in_channels: int = 1
    base_channels: int = 32
    channel_mult: tuple[int, ...] = (1, 2, 3, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (3,)
    num_heads: int = 4
    groups: int = 8
    dropout: float = 0.0
    time_scale: float = 1000.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "channel_mult", tuple(int(m) for m in self.channel_mult))
        object.__setattr__(self, "attention_levels", tuple(int(a) for a in self.attention_levels))
        if not self.channel_mult or self.num_res_blocks < 1:
            raise ValueError("UNetConfig needs at least one level and one residual block")
        for ch in self.level_channels:
            if ch % self.groups or ch % self.num_heads:
                raise ValueError(
                    f"channel count {ch} must be divisible by groups={self.groups} "
                    f"and num_heads={self.num_heads}"
                )
        if any(a < 0 or a >= len(self.channel_mult) for a in self.attention_levels):
            raise ValueError(f"attention_levels {self.attention_levels} outside the levels")

    @property
    def level_channels(self) -> tuple[int, ...]:
        """Feature channels at each level."""
        return tuple(self.base_channels * m for m in self.channel_mult)

    @property
    def n_down(self) -> int:
        """Number of 2× down-samplings."""
        return len(self.channel_mult) - 1

    @property
    def factor(self) -> int:
        """Input height and width must be multiples of this (``2 ** n_down``)."""
        return 2**self.n_down

    @property
    def time_dim(self) -> int:
        """Width of the time-embedding MLP."""
        return 4 * self.base_channels

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dictionary."""
        d = asdict(self)
        d["channel_mult"] = list(self.channel_mult)
        d["attention_levels"] = list(self.attention_levels)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> UNetConfig:
        """Inverse of :meth:`to_dict`; unknown keys are rejected."""
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown UNetConfig keys: {sorted(unknown)}")
        return cls(**data)

    @classmethod
    def preset(cls, name: str) -> UNetConfig:
        """A named configuration from :data:`PRESETS`."""
        try:
            return PRESETS[name]
        except KeyError:
            raise ValueError(
                f"unknown UNet preset {name!r}; choose from {sorted(PRESETS)}"
            ) from None


PRESETS: dict[str, UNetConfig] = {
    # ~76k parameters: unit tests on CPU.
    "tiny": UNetConfig(
        base_channels=8,
        channel_mult=(1, 2, 2),
        num_res_blocks=1,
        attention_levels=(2,),
        num_heads=2,
        groups=4,
    ),
    # ~1.0M parameters: CPU-trainable priors (the shipped weights), scan-adaptive priors on GPU.
    "small": UNetConfig(
        base_channels=16,
        channel_mult=(1, 2, 4),
        num_res_blocks=2,
        attention_levels=(2,),
        num_heads=4,
        groups=8,
    ),
    # ~5.6M parameters, ~38 TFLOP per 144x144x64 volume (2 planes x 16 steps): sized so that
    # a volume takes <= 10 min on a 2-core CPU (see benchmarks/inference.py).
    "default": UNetConfig(
        base_channels=32,
        channel_mult=(1, 2, 3, 4),
        num_res_blocks=2,
        attention_levels=(3,),
        num_heads=4,
        groups=8,
    ),
}
"""Named configurations; ``small`` is what the shipped weights use, ``default`` the size meant
for priors trained on a GPU."""


def preset_name(config: UNetConfig) -> str:
    """Name of the preset equal to ``config``, or ``"custom"``.

    Examples
    --------
    >>> preset_name(PRESETS["small"]), preset_name(UNetConfig(base_channels=24))
    ('small', 'custom')
    """
    return next((k for k, v in PRESETS.items() if v == config), "custom")
