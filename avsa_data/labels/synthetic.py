"""``--labels synthetic``: ground-truth class maps from the ``{stem}.truth.npz`` sidecar of ``avsa-data synth``.

The truth maps are equirect class ids (0 = background) at ``label_fps`` with a deliberately imperfect
confidence map (low near object edges). ``at(t)`` returns the truth frame nearest in time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsa_data.synth import CLASS_NAMES

from .base import LabelBackend, LabelError, LabelFrame


@dataclass
class SyntheticVideoLabels:
    times: np.ndarray  # [F] seconds
    classes: np.ndarray  # [F, H, W] uint8
    confidence: np.ndarray  # [F, H, W] float16
    max_gap: float

    def at(self, t: float) -> LabelFrame:
        i = int(np.argmin(np.abs(self.times - t)))
        if abs(float(self.times[i]) - t) > self.max_gap:
            raise LabelError(f"no truth label frame within {self.max_gap:.3f} s of t={t:.3f} s")
        return LabelFrame(self.classes[i], self.confidence[i].astype(np.float32))


@dataclass
class SyntheticLabels(LabelBackend):
    name: str = "synthetic"
    class_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))

    def open(self, video_path: Path, video_id: str) -> SyntheticVideoLabels:
        truth = Path(video_path).with_suffix(".truth.npz")
        if not truth.is_file():
            raise LabelError(f"--labels synthetic: no truth sidecar {truth.name} next to {Path(video_path).name}")
        try:
            with np.load(truth) as d:
                names = [str(x) for x in d["class_names"]]
                times = np.asarray(d["label_times"], np.float64)
                classes = np.asarray(d["labels"])
                conf = np.asarray(d["confidence"])
                fps = float(d["label_fps"])
        except (KeyError, ValueError, OSError) as e:
            raise LabelError(f"--labels synthetic: unreadable truth sidecar {truth.name} ({e})") from e
        if names != self.class_names:
            raise LabelError(f"{truth.name}: class list {names} differs from the generator's {self.class_names}")
        return SyntheticVideoLabels(times, classes, conf, max_gap=1.0 / fps)

    @property
    def produces_masks(self) -> bool:
        return True
