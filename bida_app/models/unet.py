"""Time-conditioned 2D UNet for single-channel slices (the plane prior of BiDA).

Residual blocks with GroupNorm and a scale/shift from a sinusoidal time embedding,
multi-head self-attention at the coarse levels, strided-convolution down-sampling and
nearest-neighbour up-sampling. The network is fully convolutional: any height and width that
are multiples of ``config.factor`` work (144x144 axial, 144x64 sagittal, padded other FOVs).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .config import UNetConfig


def timestep_embedding(t: torch.Tensor, dim: int, scale: float = 1000.0) -> torch.Tensor:
    """Sinusoidal embedding of continuous times ``t`` (shape ``(B,)``) into ``(B, dim)``.

    Examples
    --------
    >>> timestep_embedding(torch.tensor([0.0, 0.5]), 8).shape
    torch.Size([2, 8])
    """
    half = dim // 2
    freqs = torch.exp(
        -math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half
    )
    args = (t.float() * scale)[:, None] * freqs[None, :]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, time scale/shift, GroupNorm → SiLU → dropout → conv, + skip."""

    def __init__(self, c_in: int, c_out: int, time_dim: int, groups: int, dropout: float):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(time_dim, 2 * c_out)
        self.norm2 = nn.GroupNorm(groups, c_out)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over all pixels, with a residual connection."""

    def __init__(self, channels: int, heads: int, groups: int):
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # contiguous (b, heads, hw, d) operands select the fused (flash) kernels on CPU too
        q, k, v = qkv.permute(1, 0, 2, 4, 3).contiguous().unbind(0)
        out = F.scaled_dot_product_attention(q, k, v)
        out = out.transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj(out)


class _Level(nn.Module):
    """Residual blocks (each optionally followed by attention) at one resolution."""

    def __init__(self, blocks: list[ResBlock], attns: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)


class UNet(nn.Module):
    """Predicts the flow velocity ``v`` of a noisy slice ``x_t`` at time ``t``.

    Parameters
    ----------
    config : UNetConfig
        Sizes; see :mod:`bida_app.models.config`.

    Examples
    --------
    >>> net = UNet(UNetConfig.preset("tiny"))
    >>> net(torch.zeros(2, 1, 16, 8), torch.tensor([0.3, 0.9])).shape
    torch.Size([2, 1, 16, 8])
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = cfg = config
        chans = cfg.level_channels
        td = cfg.time_dim
        self.time_mlp = nn.Sequential(
            nn.Linear(cfg.base_channels, td), nn.SiLU(), nn.Linear(td, td)
        )
        self.in_conv = nn.Conv2d(cfg.in_channels, chans[0], 3, padding=1)

        def attn(level: int, ch: int) -> nn.Module:
            if level in cfg.attention_levels:
                return Attention(ch, cfg.num_heads, cfg.groups)
            return nn.Identity()

        def block(c_in: int, c_out: int) -> ResBlock:
            return ResBlock(c_in, c_out, td, cfg.groups, cfg.dropout)

        skip_ch = [chans[0]]
        ch = chans[0]
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for lvl, c in enumerate(chans):
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks):
                blocks.append(block(ch, c))
                attns.append(attn(lvl, c))
                ch = c
                skip_ch.append(ch)
            self.down.append(_Level(blocks, attns))
            if lvl < cfg.n_down:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
                skip_ch.append(ch)

        self.mid1 = block(ch, ch)
        self.mid_attn = (
            Attention(ch, cfg.num_heads, cfg.groups) if cfg.attention_levels else nn.Identity()
        )
        self.mid2 = block(ch, ch)

        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for lvl in reversed(range(len(chans))):
            c = chans[lvl]
            blocks, attns = [], []
            for _ in range(cfg.num_res_blocks + 1):
                blocks.append(block(ch + skip_ch.pop(), c))
                attns.append(attn(lvl, c))
                ch = c
            self.up.append(_Level(blocks, attns))
            if lvl > 0:
                self.upsample.append(nn.Conv2d(ch, ch, 3, padding=1))

        self.out_norm = nn.GroupNorm(cfg.groups, ch)
        self.out_conv = nn.Conv2d(ch, cfg.in_channels, 3, padding=1)

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Velocity for ``x`` of shape ``(B, C, H, W)`` at times ``t`` of shape ``(B,)``."""
        f = self.config.factor
        if x.shape[-2] % f or x.shape[-1] % f:
            raise ValueError(f"UNet input height/width must be multiples of {f}, got {x.shape}")
        if t.ndim == 0:
            t = t.expand(x.shape[0])
        emb = self.time_mlp(
            timestep_embedding(t, self.config.base_channels, self.config.time_scale).to(x.dtype)
        )
        h = self.in_conv(x)
        skips = [h]
        for lvl, level in enumerate(self.down):
            for blk, att in zip(level.blocks, level.attns, strict=True):
                h = att(blk(h, emb))
                skips.append(h)
            if lvl < len(self.downsample):
                h = self.downsample[lvl](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for blk, att in zip(level.blocks, level.attns, strict=True):
                h = att(blk(torch.cat([h, skips.pop()], dim=1), emb))
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.out_conv(F.silu(self.out_norm(h)))
