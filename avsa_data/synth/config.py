"""Parameters of the synthetic generator (:class:`SynthConfig`) and the output-format constants."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import overload

from .. import media
from ..options import OptionError, check_choices, option
from .classes import CLASSES

#: Version of the raw-input layout written here (docs/FORMAT.md, "Raw input").
FORMAT_VERSION = 1
AUDIO_LAYOUTS = ("container", "sidecar")
#: Folder layouts of the output: the flat raw-input folder, or STARSS23-shaped (avsa_data.layouts).
LAYOUTS = ("flat", "starss23")


class _CountAt:
    """Read-only attribute of a :class:`SynthConfig`: how many samples (frames) its ``duration`` holds at the
    rate (per second) in its field ``rate``, rounded, at least one."""

    def __init__(self, rate: str) -> None:
        self.rate = rate

    @overload
    def __get__(self, cfg: None, owner: type | None = None) -> _CountAt: ...
    @overload
    def __get__(self, cfg: SynthConfig, owner: type | None = None) -> int: ...
    def __get__(self, cfg: SynthConfig | None, owner: type | None = None) -> int | _CountAt:
        if cfg is None:  # looked up on the class (help(), autodoc): the attribute itself, as for a property
            return self
        return max(1, int(round(cfg.duration * getattr(cfg, self.rate))))


@dataclass(frozen=True)
class SynthConfig:
    """Generator parameters. Sizes are (W, H) pixels; rates in Hz / frames per second; times in seconds."""

    videos: int = option(8, min=0, help="Number of videos.")
    duration: float = option(10.0, unit="SECONDS", help="Length of each video (seconds).")
    seed: int = option(0, help="Master seed; the same seed gives byte-identical files.")
    size: tuple[int, int] = option((1024, 512), form="size", help="Equirect frame size WIDTHxHEIGHT (2:1, even).")
    fps: float = option(16.0, unit="FPS", help="Video frame rate (frames per second).")
    sr: int = option(24000, unit="HZ", help="Audio sample rate (Hz).")
    ambi_format: str = option("ambix", flag="--format", choices=media.AMBI_FORMATS,
                              help="Channel convention of the written FOA: ambiX (ACN W,Y,Z,X; SN3D) or FuMa "
                              "(W,X,Y,Z; W at -3 dB).")
    audio_layout: str = option("container", choices=AUDIO_LAYOUTS,
                               help="4-channel track inside the .mp4, or a same-stem .wav sidecar (PCM s16le) next "
                               "to it.")
    audio_codec: str = option("aac", choices=tuple(sorted(media.AUDIO_CODECS)),
                              help="Codec of the in-container track (the sidecar is always PCM).")
    snr_db: float = option(20.0, unit="DB", help="Sources-to-diffuse-noise power ratio on the W channel (dB); 'inf' "
                           "for no noise.")
    label_fps: float = option(4.0, unit="FPS", help="Rate of the ground-truth class maps (frames per second).")
    label_size: tuple[int, int] = option((256, 128), form="size",
                                         help="Size WIDTHxHEIGHT of the ground-truth class maps.")
    ctrl_rate: float = option(100.0, cli=False, help="Rate (Hz) of the source tracks (direction, activity) in the "
                              "truth file.")
    val_fraction: float = option(0.25, help="Fraction of videos (the last ones) marked 'val'.")
    crf: int = option(23, cli=False, help="x264 constant rate factor of the written video.")
    layout: str = option("flat", choices=LAYOUTS,
                         help="flat: one folder (docs/FORMAT.md, Raw input). starss23: the STARSS23 / DCASE SELD "
                         "layout, video_dev/ foa_dev/ metadata_dev/ with dev-train-synth / dev-test-synth splits and "
                         "exact sound-event CSVs (frame,class,source,azimuth,elevation at 100 ms; classes in "
                         "metadata_dev/classes.json).")
    #: (min, max) number of sounding visible objects per video, both inclusive (at most 8, the classes).
    sounding_objects: tuple[int, int] = option((1, 4), help="MIN MAX sounding visible objects per video (distinct "
                                               "classes, at most 8). The demo uses denser scenes (docs/SYNTH.md) so "
                                               "that most viewpoints see a sound source.")
    #: (min, max) angular radius of the objects, degrees (drawn uniformly).
    object_radius: tuple[float, float] = option((10.0, 16.0), unit="DEGREES",
                                                help="MIN MAX angular radius of the objects (degrees).")

    def __post_init__(self) -> None:
        w, h = self.size
        if w <= 0 or h <= 0 or w % 2 or h % 2 or w != 2 * h:
            raise OptionError(f"--size must be an even 2:1 equirect WIDTHxHEIGHT such as 1024x512, got "
                              f"{self.size[0]}x{self.size[1]}")
        lw, lh = self.label_size
        if lw <= 0 or lh <= 0 or lw != 2 * lh:
            raise OptionError(f"--label-size must be a 2:1 equirect WIDTHxHEIGHT such as 256x128, got "
                              f"{lw}x{lh}")
        if self.videos < 0:
            raise OptionError(f"--videos must be ≥ 0, got {self.videos}")
        if not self.duration > 0 or not self.fps > 0 or not self.label_fps > 0 or not self.ctrl_rate > 0:
            raise OptionError("--duration (s), --fps, --label-fps and --ctrl-rate (Hz) must all be > 0")
        if self.sr < 8000:
            raise OptionError(f"--sr must be ≥ 8000 Hz, got {self.sr}")
        check_choices(self)  # --format, --audio-layout, --audio-codec, --layout
        if math.isnan(self.snr_db):
            raise OptionError("--snr-db must be a number of dB (or inf for no noise), got nan")
        if not 0.0 <= self.val_fraction < 1.0:
            raise OptionError(f"--val-fraction must be in [0, 1), got {self.val_fraction}")
        lo, hi = self.sounding_objects
        if not 1 <= lo <= hi <= len(CLASSES):
            raise OptionError(f"--sounding-objects MIN MAX must satisfy 1 ≤ MIN ≤ MAX ≤ {len(CLASSES)}, got {lo} {hi}")
        rlo, rhi = self.object_radius
        if not 0.0 < rlo <= rhi < 60.0:
            raise OptionError(f"--object-radius MIN MAX must satisfy 0 < MIN ≤ MAX < 60 degrees, got {rlo:g} {rhi:g}")

    #: Video frames per video (frame ``i`` at ``i / fps`` s).
    n_frames = _CountAt("fps")
    #: Audio samples per video.
    n_samples = _CountAt("sr")
    #: Ground-truth class maps per video (map ``i`` at ``i / label_fps`` s).
    n_label_frames = _CountAt("label_fps")
    #: Source-track entries per video (entry ``i`` at ``i / ctrl_rate`` s).
    n_ctrl = _CountAt("ctrl_rate")

    def to_json(self) -> dict:
        d = asdict(self)
        d["size"], d["label_size"] = list(self.size), list(self.label_size)
        d["sounding_objects"], d["object_radius"] = list(self.sounding_objects), list(self.object_radius)
        return d
