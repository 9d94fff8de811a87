"""UNet sizes the trainer offers: the model presets plus a CPU-friendly ``small``."""

from __future__ import annotations

from ..models.config import PRESETS, UNetConfig

SMALL = UNetConfig(
    base_channels=16,
    channel_mult=(1, 2, 4),
    num_res_blocks=2,
    attention_levels=(2,),
    num_heads=4,
    groups=8,
)
"""~1.0M parameters: CPU-trainable priors and the scan-adaptive prior."""

TRAINING_PRESETS: dict[str, UNetConfig] = {**PRESETS}
TRAINING_PRESETS.setdefault("small", SMALL)


def training_preset(name: str) -> UNetConfig:
    """The UNet configuration of preset ``name`` (``tiny``, ``small`` or ``default``).

    Examples
    --------
    >>> training_preset("small").base_channels
    16
    >>> sorted(TRAINING_PRESETS)
    ['default', 'small', 'tiny']
    """
    try:
        return TRAINING_PRESETS[name]
    except KeyError:
        raise ValueError(
            f"unknown UNet preset {name!r}; choose from {sorted(TRAINING_PRESETS)}"
        ) from None


def preset_name(config: UNetConfig) -> str:
    """Name of the preset equal to ``config``, or ``"custom"``.

    Examples
    --------
    >>> preset_name(SMALL)
    'small'
    """
    return next((k for k, v in TRAINING_PRESETS.items() if v == config), "custom")
