"""What the two encoders of Table 1 share: five levels (conv1, block2 … block5) and a global max pool.

Both :class:`~avsa_train.models.video.R2Plus1D18` and :class:`~avsa_train.models.audio.Conv2D10` name their
levels :data:`LEVELS` and run them with :func:`run_levels`, which also returns the per-level maps that the
segmentation head (seed §A.2, an FPN over block2 … block5) reads.
"""

from __future__ import annotations

import torch
from torch import nn

#: The levels of both encoders, in order (Table 1's row names without the ``.1``/``.2`` of the sub-blocks).
LEVELS = ("conv1", "block2", "block3", "block4", "block5")


def scaled_channels(channels: int, width: float) -> int:
    """``channels · width`` rounded, at least 1."""
    if width <= 0:
        raise ValueError(f"width must be > 0, got {width}")
    return max(1, int(round(channels * width)))


def run_levels(encoder: nn.Module, x: torch.Tensor, return_maps: bool):
    """Run ``encoder``'s :data:`LEVELS` on ``x``, then its global ``pool``: ``[B, C]``, and with ``return_maps``
    also ``{level: map}`` (each map the level's output, before pooling)."""
    maps = {}
    h = x
    for name in LEVELS:
        h = getattr(encoder, name)(h)
        maps[name] = h
    feat = encoder.pool(h).flatten(1)
    return (feat, maps) if return_maps else feat
