"""The shard job's configuration (:class:`JobConfig`), its unit of work (:class:`VideoTask`) and the names of
its output folder."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace

from .. import layouts, shard_format
from ..events import EventOptions
from ..labels import BACKENDS
from ..labels.options import LabelOptions
from ..options import nested, option
from ..samples import SampleConfig

VIDEO_EXTS = layouts.VIDEO_EXTS
WORK = ".work"
#: The files a job writes next to its shards.
OUTPUTS = ("manifest.json", "failures.jsonl", "config.json")
#: Where phase 1 runs (``--engine``): a local process pool, or a Ray cluster.
ENGINES = ("local", "ray")

@dataclass(frozen=True)
class JobConfig:
    """Options of a shard job. ``sample`` fields and the label description determine the bytes. The nested
    configs' fields are options of ``avsa-data shard`` under their own names."""

    sample: SampleConfig = nested(SampleConfig)
    labels: str = option("none", choices=BACKENDS,
                         help="Pseudo-label backend for segmentation masks (docs/LABELS.md): synthetic (the synth "
                         "truth sidecar), precomputed (--label-dir), onnx (--model).")
    label_options: LabelOptions = nested(LabelOptions)  # --label-dir, --model, --onnx-*
    labels_optional: bool = option(False, help="Write samples without masks (and say so in meta.json) when a "
                                   "video's labels are unusable.")
    shard_size: int | None = 256  # samples per shard
    shard_mb: float | None = None  # or a target size in MB (one flag sets either: --shard-size 256 or 500MB)
    max_av_mismatch: float = option(0.5, unit="SECONDS", help="Tolerated audio/video duration mismatch (s).")
    #: Largest input frame (width, height) in pixels; larger inputs are failures (an 8K equirect decodes to
    #: 88 MB per RGB frame; 16384×8192 drove one worker to 8.4 GB).
    max_resolution: tuple[int, int] = option((7680, 3840), form="size",
                                             help="Largest input frame WIDTHxHEIGHT; larger videos are recorded as "
                                             "failures before decoding (a worker holds several decoded RGB frames "
                                             "of 3 bytes per pixel; a 16384x8192 input took 8.4 GB).")
    #: Tolerated deviation of width / height from the 2:1 of an equirectangular frame (relative).
    aspect_tolerance: float = 0.01
    events: EventOptions = nested(EventOptions)  # how sound-event CSVs are read

    def with_hrir_set(self) -> JobConfig:
        """This job with its sample config's HRIR set resolved and checked (:meth:`SampleConfig.with_hrir_set`)."""
        return replace(self, sample=self.sample.with_hrir_set())

    def hashed_fields(self) -> dict:
        return {
            "format_version": shard_format.FORMAT_VERSION,
            "sample": self.sample.as_dict(),
            "labels": self.labels,
            "label_options": self.label_options.hashed(),
            "labels_optional": self.labels_optional,
            "shard_size": self.shard_size,
            "shard_mb": self.shard_mb,
            "max_av_mismatch": self.max_av_mismatch,
            "max_resolution": list(self.max_resolution),
            "aspect_tolerance": self.aspect_tolerance,
            "events": self.events.as_dict(),
        }

    @property
    def config_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.hashed_fields(), sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class VideoTask:
    video_id: str
    split: str
    path: str
    audio: str | None = None  # the FOA file (layouts with separate audio); None: container or sidecar
    events: str | None = None  # the sound-event CSV (avsa_data.events); None: the layout has none
    #: :func:`avsa_data.input_identity.video_identity` of the input, or ``{"path", "error"}`` if unreadable.
    identity: dict | None = field(default=None, compare=False, hash=False)
