"""Exponential moving average of a network's weights (the weights that get shipped)."""

from __future__ import annotations

import copy

import torch
from torch import nn


class EMA:
    """Shadow copy ``θ_ema ← d θ_ema + (1 - d) θ`` of a module's parameters and buffers.

    The decay warms up as ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so short
    runs are not dominated by the random initialisation.

    Parameters
    ----------
    model : nn.Module
        The trained network (not modified).
    decay : float
        Target decay.

    Examples
    --------
    >>> net = nn.Linear(2, 1)
    >>> ema = EMA(net, decay=0.9)
    >>> with torch.no_grad():
    ...     _ = net.weight.add_(1.0)
    >>> ema.update(net)
    >>> bool(torch.allclose(ema.module.weight, net.weight))  # first update: decay 0.1 / 1.0
    False
    """

    def __init__(self, model: nn.Module, decay: float = 0.999) -> None:
        self.decay = float(decay)
        self.updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        """Decay used by the next update."""
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the shadow weights towards ``model``'s."""
        d = self.current_decay()
        src = model.state_dict()
        for name, shadow in self.module.state_dict().items():
            value = src[name].detach()
            if shadow.is_floating_point():
                shadow.mul_(d).add_(value.to(shadow.dtype), alpha=1 - d)
            else:
                shadow.copy_(value)
        self.updates += 1

    def state_dict(self) -> dict:
        """Shadow weights and the update count."""
        return {"module": self.module.state_dict(), "updates": self.updates, "decay": self.decay}

    def load_state_dict(self, state: dict) -> None:
        """Inverse of :meth:`state_dict`."""
        self.module.load_state_dict(state["module"])
        self.updates = int(state["updates"])
        self.decay = float(state.get("decay", self.decay))
