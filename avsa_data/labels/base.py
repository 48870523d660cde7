"""The pseudo-label backend interface.

A backend turns (video, time) into an **equirect** class map and a per-pixel **confidence** map. The shard
builder crops both with the same grid as the RGB crop (nearest sampling). Confidences below
:data:`avsa_data.shard_format.CONFIDENCE_THRESHOLD` (0.75, seed §A.2) are *kept* in the shards; the threshold is
applied at train and evaluation time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
from numpy.typing import NDArray


class LabelError(Exception):
    """A label source is missing, malformed or inconsistent (one-line, user-facing message)."""


@dataclass(frozen=True)
class LabelFrame:
    """Equirect labels at one time: ``classes`` ``[H, W]`` integer ids (0 = background) and
    ``confidence`` ``[H, W]`` float32 in [0, 1]."""

    classes: NDArray[np.integer]
    confidence: NDArray[np.float32]

    def __post_init__(self) -> None:
        if self.classes.ndim != 2 or self.classes.shape != self.confidence.shape:
            raise LabelError(
                f"label frame: classes {self.classes.shape} and confidence {self.confidence.shape} "
                "must both be [H, W]"
            )


class VideoLabels(Protocol):
    """Labels of one video."""

    def at(self, t: float) -> LabelFrame:
        """Labels at time ``t`` seconds from the start of the video."""
        ...


@dataclass
class LabelBackend:
    """Base class: ``open`` a video's labels; ``describe`` what goes into every sample's metadata."""

    name: str = "none"
    class_names: list[str] = field(default_factory=list)

    def open(self, video_path: Path, video_id: str) -> VideoLabels | None:
        """Labels for one video, or ``None`` when this backend produces no masks."""
        return None

    def describe(self) -> dict:
        return {"backend": self.name, "classes": {str(i): n for i, n in enumerate(self.class_names)}}

    @property
    def produces_masks(self) -> bool:
        return False
