"""Conv2D-10 audio encoder ``f_a`` (AVSA supplement, Table 1).

Input: an N-channel log-spectrogram ``[B, N, F, T]`` (N = 1 mono, 2 stereo L/R, 4 ambiX W/Y/Z/X, 7 for ambiX
with ``--spec mel128+iv``: the 4 log-mel channels and the intensity vector's Y/Z/X; F frequency bins, T frames;
Table 1 uses F = 129, T = 100). The network is a plain (non-residual) stack of conv–BN–ReLU layers, as in
Table 1 and the authors' ``Conv2D``:

=========  ==========  ========  ===========  ======================
layer      kernel      stride    channels     size for 129×100 input
=========  ==========  ========  ===========  ======================
conv1      7×7         2         64           65×50
block2.1   3×3         1         64           65×50
block2.2   3×3         1         64           65×50
block3.1   3×3         2         128          33×25
block3.2   3×3         1         128          33×25
block4.1   3×3         2         256          17×13
block4.2   3×3         1         256          17×13
block5.1   3×3         1         512          17×13
block5.2   3×3         1         512          17×13
max pool   global                512          1×1
=========  ==========  ========  ===========  ======================

With 128 mel bins the sizes are 64×50, 32×25, 16×13. Channel counts scale with ``width``.
"""

from __future__ import annotations

import torch
from torch import nn

from avsa_train.models.levels import LEVELS, run_levels, scaled_channels

#: Output channels of conv1 and of block2..block5 at width 1.0 (Table 1).
AUDIO_CHANNELS = (64, 64, 128, 256, 512)
AUDIO_LEVELS = LEVELS
#: Spectrogram channels per audio format: mono, stereo (L, R), ambiX FOA (W, Y, Z, X).
AUDIO_INPUT_CHANNELS = {"mono": 1, "stereo": 2, "ambi": 4}


def conv_bn_relu(n_in: int, n_out: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """``kernel×kernel`` 2-D convolution (no bias, 'same' padding), batch-norm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(n_in, n_out, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(n_out),
        nn.ReLU(inplace=True),
    )


class Conv2D10(nn.Module):
    """Conv2D-10 of Table 1. ``forward(x)`` → ``[B, 512·width]`` (global max pool over F×T).

    Args:
        in_channels: N, the spectrogram channels (1, 2, 4, or 7 with intensity vectors).
        width: channel multiplier (1.0 = the paper's network).
    """

    def __init__(self, in_channels: int = 4, width: float = 1.0):
        super().__init__()
        if in_channels < 1:
            raise ValueError(f"in_channels must be >= 1, got {in_channels}")
        self.in_channels = in_channels
        c1, c2, c3, c4, c5 = (scaled_channels(c, width) for c in AUDIO_CHANNELS)
        self.conv1 = conv_bn_relu(in_channels, c1, kernel=7, stride=2)
        self.block2 = nn.Sequential(conv_bn_relu(c1, c2), conv_bn_relu(c2, c2))
        self.block3 = nn.Sequential(conv_bn_relu(c2, c3, stride=2), conv_bn_relu(c3, c3))
        self.block4 = nn.Sequential(conv_bn_relu(c3, c4, stride=2), conv_bn_relu(c4, c4))
        self.block5 = nn.Sequential(conv_bn_relu(c4, c5), conv_bn_relu(c5, c5))
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.out_dim = c5
        self.level_channels = {"conv1": c1, "block2": c2, "block3": c3, "block4": c4, "block5": c5}

    def forward(self, x: torch.Tensor, return_maps: bool = False):
        """``x``: ``[B, N, F, T]``. Returns ``[B, out_dim]``, and with ``return_maps`` also a dict of the
        per-level maps ``{'conv1', 'block2', 'block3', 'block4', 'block5'}``, each ``[B, C, F', T']``."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"audio input must be [B, {self.in_channels}, F, T], got {tuple(x.shape)}")
        return run_levels(self, x, return_maps)
