"""R(2+1)D-18 video encoder ``f_v`` (AVSA supplement, Table 1).

Input: a clip ``[B, 3, T=8, H=112, W=112]`` (channels RGB, normalised). Activation sizes (spatial × temporal)
follow Table 1: conv1 56×8, block2 56×8, block3 28×4, block4 14×2, block5 7×1, then a global max pool to a
512-d feature (``512 · width``).

Every residual block has two (2+1)D convolutions, each a spatial ``1×3×3`` convolution, BN, ReLU and a
temporal ``3×1×1`` convolution. The block layout follows the authors' reference ``BasicR2P1DBlock``::

    x ─ spatial(s) ─ BN ─ ReLU ─ temporal(t) ─ BN ─ ReLU ─ spatial ─ BN ─ ReLU ─ temporal ─┐
    └──────────────── shortcut: 1×1×1 conv, stride (t, s, s), only when the shape changes ─ + ─ BN ─ ReLU

i.e. the output batch-norm is applied to the sum, so the shortcut convolution has no BN of its own.

Two factorisations (``factorisation=``):

* ``"reference"`` (default, the authors' code): conv1 is a full ``3×7×7`` 3-D convolution and the
  intermediate channel count of every (2+1)D convolution equals its output channel count.
* ``"tran2018"`` (Tran et al., CVPR 2018): conv1 is factorised into ``1×7×7`` then ``3×1×1`` and every (2+1)D
  convolution uses ``M = ⌊t·d²·N_in·N_out / (d²·N_in + t·N_out)⌋`` intermediate channels, so that it has
  about the parameters of the full ``t×d×d`` convolution it replaces.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from avsa_train.models.levels import LEVELS, run_levels, scaled_channels

Factorisation = Literal["reference", "tran2018"]
#: Output channels of conv1 and of block2..block5 at width 1.0 (Table 1).
VIDEO_CHANNELS = (64, 64, 128, 256, 512)
VIDEO_LEVELS = LEVELS


def tran_mid_channels(n_in: int, n_out: int, t: int = 3, d: int = 3) -> int:
    """Intermediate channels of a (2+1)D conv replacing a ``t×d×d`` conv (Tran et al. 2018, §3.5)."""
    return (t * d * d * n_in * n_out) // (d * d * n_in + t * n_out)


class Conv2Plus1D(nn.Sequential):
    """Spatial ``1×d×d`` conv (``n_in → n_mid``, stride ``(1, s, s)``), BN, ReLU, temporal ``t×1×1`` conv
    (``n_mid → n_out``, stride ``(st, 1, 1)``). No BN/ReLU after the temporal conv (the caller adds them)."""

    def __init__(self, n_in: int, n_mid: int, n_out: int, stride: tuple[int, int] = (1, 1), d: int = 3, t: int = 3):
        st, ss = stride
        super().__init__(
            nn.Conv3d(n_in, n_mid, (1, d, d), stride=(1, ss, ss), padding=(0, d // 2, d // 2), bias=False),
            nn.BatchNorm3d(n_mid),
            nn.ReLU(inplace=True),
            nn.Conv3d(n_mid, n_out, (t, 1, 1), stride=(st, 1, 1), padding=(t // 2, 0, 0), bias=False),
        )


class R2Plus1DBlock(nn.Module):
    """Residual block of two (2+1)D convolutions; ``stride=(s_t, s_s)`` is applied by the first one."""

    def __init__(
        self, n_in: int, n_out: int, stride: tuple[int, int] = (1, 1), factorisation: Factorisation = "reference"
    ):
        super().__init__()
        mid1, mid2 = (
            (n_out, n_out)
            if factorisation == "reference"
            else (tran_mid_channels(n_in, n_out), tran_mid_channels(n_out, n_out))
        )
        self.conv_a = Conv2Plus1D(n_in, mid1, n_out, stride=stride)
        self.bn_a = nn.BatchNorm3d(n_out)
        self.conv_b = Conv2Plus1D(n_out, mid2, n_out)
        self.bn_out = nn.BatchNorm3d(n_out)
        self.relu = nn.ReLU(inplace=True)
        st, ss = stride
        self.shortcut = (
            nn.Conv3d(n_in, n_out, 1, stride=(st, ss, ss), bias=False) if n_in != n_out or stride != (1, 1) else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_b(self.relu(self.bn_a(self.conv_a(x))))
        res = x if self.shortcut is None else self.shortcut(x)
        return self.relu(self.bn_out(y + res))


class R2Plus1D18(nn.Module):
    """R(2+1)D-18 of Table 1. ``forward(x)`` → ``[B, 512·width]`` (global max pool over T×H×W).

    Args:
        width: channel multiplier (1.0 = the paper's network; e.g. 0.25 for fast tests).
        factorisation: ``"reference"`` (authors' code, default) or ``"tran2018"``; see the module docstring.
    """

    def __init__(self, width: float = 1.0, factorisation: Factorisation = "reference"):
        super().__init__()
        if factorisation not in ("reference", "tran2018"):
            raise ValueError(f"factorisation must be 'reference' or 'tran2018', got {factorisation!r}")
        c1, c2, c3, c4, c5 = (scaled_channels(c, width) for c in VIDEO_CHANNELS)
        if factorisation == "reference":
            self.conv1 = nn.Sequential(
                nn.Conv3d(3, c1, (3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False),
                nn.BatchNorm3d(c1),
                nn.ReLU(inplace=True),
            )
        else:
            self.conv1 = nn.Sequential(
                Conv2Plus1D(3, tran_mid_channels(3, c1, t=3, d=7), c1, stride=(1, 2), d=7),
                nn.BatchNorm3d(c1),
                nn.ReLU(inplace=True),
            )

        def stage(n_in: int, n_out: int, stride: tuple[int, int]) -> nn.Sequential:
            return nn.Sequential(
                R2Plus1DBlock(n_in, n_out, stride, factorisation), R2Plus1DBlock(n_out, n_out, (1, 1), factorisation)
            )

        self.block2 = stage(c1, c2, (1, 1))
        self.block3 = stage(c2, c3, (2, 2))
        self.block4 = stage(c3, c4, (2, 2))
        self.block5 = stage(c4, c5, (2, 2))
        self.pool = nn.AdaptiveMaxPool3d(1)
        self.out_dim = c5
        self.level_channels = {"conv1": c1, "block2": c2, "block3": c3, "block4": c4, "block5": c5}

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        """``x``: ``[B, 3, T, H, W]``. Returns ``[B, out_dim]``, and with ``return_maps`` also a dict of the
        per-level maps ``{'conv1', 'block2', 'block3', 'block4', 'block5'}``, each ``[B, C, T', H', W']``."""
        if x.ndim != 5 or x.shape[1] != 3:
            raise ValueError(f"video input must be [B, 3, T, H, W], got {tuple(x.shape)}")
        return run_levels(self, x, return_maps)
