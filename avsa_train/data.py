"""Streaming shard pipeline for training: shards → (rank, worker) streams → decoded, augmented batches.

Splitting. The shard list is shuffled per epoch with ``rng(seed, epoch)`` and dealt round-robin to the
``C = world_size × num_workers`` consumers, consumer ``c = rank · num_workers + worker``. When there are fewer
shards than consumers, every consumer reads every shard and keeps the samples whose running index ``i``
satisfies ``i % C == c``. Either way, each sample is seen **exactly once per epoch** across all consumers.
Each consumer's stream runs through epoch ``e``, then ``e + 1``, … (resampling for multi-epoch), so ranks
never run dry; the trainer counts steps, not samples.

Determinism. Shuffle buffers use ``rng(seed, epoch, consumer)``; every per-sample random choice (which V views
of the bank, flip, colour and volume jitter) uses ``rng(seed, "augment", epoch, key)``. Batching happens in
the worker; PyTorch's DataLoader returns worker batches round-robin, so the data order is a pure function of
(seed, start epoch, steps done): :meth:`ShardStream.resume_at` skips exactly the samples already consumed,
which makes ``--resume`` reproduce the uninterrupted run. After a resume at ``S`` batches, DataLoader worker
``w`` plays the part of worker ``(w + S) mod num_workers`` of the uninterrupted run, so the round-robin order
continues where it stopped; whole epochs are skipped by count (from ``manifest.json``) without reading them.
Resuming with a different ``--workers``, world size, batch size or seed gives a different (still valid) order.

Memory and I/O. Only the members a training item can use (its clips, its audio, masks when asked) are read and
kept in the shuffle buffer (:func:`member_wanted`, :func:`prune_members`). FOA, mono and virtual-mic stereo
renders of the drawn views are made from the sample's one unrotated FOA (:func:`derived`), not read per view.

Augmentation is applied **consistently** across modalities: a horizontal flip reverses the crop columns and
the masks, negates FOA Y, swaps stereo L/R, leaves mono unchanged (docs/CONVENTIONS.md §7) and negates the
azimuths of the sound-event labels (``with_events``).
"""

from __future__ import annotations

import fnmatch
import glob
import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from avsa_data import ambisonics, binaural, events, remote, renders
from avsa_data import format as fmt
from avsa_data.fsutil import parse_json
from avsa_data.geometry import rotation_yaw
from avsa_data.jobcontrol import usable_cpus
from avsa_data.options import OptionError
from avsa_data.reader import RawSample, iter_raw
from avsa_data.rng import rng_for

from . import allocator

AUDIO_FORMATS = {"mono": ("mono", 1), "stereo": ("stereo", 2), "ambi": ("foa", 4)}
#: The left↔right mirror of a ``[C, n]`` render, the audio twin of a horizontal image flip: FOA negates Y
#: (ACN 1), stereo swaps L/R, and mono (a cardioid at the look direction, symmetric) stays as it is.
AUDIO_MIRRORS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "mono": lambda a: a, "stereo": binaural.flip_stereo, "ambi": ambisonics.flip_horizontal}
#: Kinetics RGB statistics used to normalise video clips (as in the reference code).
VIDEO_MEAN = (0.43216, 0.394666, 0.37645)
VIDEO_STD = (0.22803, 0.22145, 0.216989)
#: Colour jitter of the reference (``ColorJitter(0.4, 0.4, 0.4, 0.2)``): brightness, contrast, saturation, hue.
COLOUR_JITTER = 0.4
HUE_JITTER = 0.2


def expand_urls(shards: str | Sequence[str]) -> list[str]:
    """A folder (its ``{split}-NNNNNN.tar``), a glob, a brace pattern, ``pipe:``/URL strings, or a list.

    A ``scheme://`` URL that does not end in ``.tar`` (``s3://bucket/prefix``) is a folder on object storage,
    listed through fsspec (docs/SCALING.md, "Object storage"); an fsspec URL may also hold a glob.
    """
    if isinstance(shards, (list, tuple)):
        return [u for s in shards for u in expand_urls(s)]
    s = str(shards)
    p = Path(s)
    if p.is_dir():
        urls = sorted(str(q) for q in p.glob("*.tar") if fmt.SHARD_RE.match(q.name))
        if not urls:
            raise FileNotFoundError(f"no shards ({{split}}-NNNNNN.tar) in {s}")
        return urls
    if "{" in s and "}" in s:
        import braceexpand

        return list(braceexpand.braceexpand(s))
    if _fsspec_url(s) and (any(ch in s for ch in "*?[") or not s.endswith(".tar")):
        store = remote.Store(s if not any(ch in s for ch in "*?[") else s.rsplit("/", 1)[0])
        pattern = s.rsplit("/", 1)[1] if any(ch in s for ch in "*?[") else "*"
        urls = [store.url_of(n) for n in store.shard_names() if fnmatch.fnmatchcase(n, pattern)]
        if not urls:
            raise FileNotFoundError(f"no shards ({{split}}-NNNNNN.tar) match {s}")
        return urls
    if any(ch in s for ch in "*?[") and "://" not in s and not s.startswith("pipe:"):
        urls = sorted(glob.glob(s))
        if not urls:
            raise FileNotFoundError(f"no shards match {s}")
        return urls
    return [s]


def option_urls(shards: str, flag: str = "--shards") -> list[str]:
    """:func:`expand_urls` of a command's ``--shards`` value; a local folder or file that does not exist, or one
    with no shards, is an :class:`~avsa_data.options.OptionError` naming ``flag`` (exit status 2)."""
    s = str(shards)
    local = not (_fsspec_url(s) or s.startswith("pipe:") or any(ch in s for ch in "*?[{"))
    if local and not Path(s).exists():
        raise OptionError(f"{flag} {s} does not exist (make shards with avsa-data shard --out {s})")
    try:
        return expand_urls(s)
    except FileNotFoundError as e:
        raise OptionError(f"{flag} {s}: {e} (make shards with avsa-data shard)") from None


def split_urls(urls: Sequence[str], split: str | None) -> list[str]:
    """Keep shards of one split (``train-000000.tar`` → ``train``); URLs that do not parse are kept."""
    if split is None:
        return list(urls)
    out = []
    for u in urls:
        m = fmt.SHARD_RE.match(Path(u.split("::")[-1]).name)
        if m is None or m.group("split") == split:
            out.append(u)
    return out


#: URL schemes always opened by webdataset's gopen (with curl), as before fsspec support.
_CURL_SCHEMES = frozenset({"http", "https", "sftp", "ftps", "scp"})


def _fsspec_url(url: str) -> bool:
    """Whether ``url`` is read through fsspec: a ``scheme://`` URL other than the curl ones; schemes webdataset
    also opens itself (``gs://`` with gsutil, ``file://``, ``hf://``, ``ais://``) only where fsspec has an
    installed implementation for them."""
    s = remote.scheme(url)
    if not s or s in _CURL_SCHEMES:
        return False
    from webdataset.gopen import gopen_schemes

    return s not in gopen_schemes and s != "file" or remote.has_implementation(s)


def open_url(url: str):
    """A readable binary stream for a local path, ``pipe:cmd``, an fsspec URL (``s3://…``) or any URL
    webdataset's gopen understands (``http(s)://`` with curl)."""
    if Path(url).exists():
        return open(url, "rb")
    if _fsspec_url(url):
        return remote.open_url(url)
    import webdataset as wds

    return wds.gopen(url, "rb")


@dataclass(frozen=True)
class StreamConfig:
    """What a stream yields: V views × ``moments`` moments per item, batched, with or without augmentation."""

    views: int = 4  # V viewpoints drawn from each sample's bank
    moments: int = 1  # moments per item (>1: AVTS temporal negatives; needs shards with M ≥ moments)
    audio_format: str = "ambi"  # mono | stereo | ambi
    batch_size: int = 28
    seed: int = 0
    shuffle_buffer: int = 256
    train: bool = True  # shuffle + augment
    flip_p: float = 0.5  # Table 2 hf
    with_events: bool = False  # add the per-view sound-event labels (meta.events) to each item
    color_jitter: bool = True  # Table 2 cj
    volume_jitter: float = 0.1  # ±10 %
    with_masks: bool = False
    hfov_range: tuple[float, float] | None = None  # keep only bank views with hfov in range (segmentation)
    drop_last: bool = True
    #: Ship the clips as uint8 with their colour transform and normalise them on the device, batched
    #: (:func:`model_video`): the GPU path, where the loader workers are the bottleneck.
    video_on_device: bool = False
    #: The causal control of pre-training: rotate each sample's sound field by a random yaw (uniform in
    #: [−180°, 180°), drawn per sample and epoch, the same for all its moments and views) before the views'
    #: audio is rendered, so the sounds are kept and their directions are no longer the video's.
    break_spatial_link: bool = False

    def __post_init__(self) -> None:
        if self.audio_format not in AUDIO_FORMATS:
            raise ValueError(f"audio_format must be one of {tuple(AUDIO_FORMATS)}, got {self.audio_format!r}")
        if self.views < 1 or self.moments < 1 or self.batch_size < 1:
            raise ValueError(
                f"views, moments and batch_size must be ≥ 1, got {self.views}, {self.moments}, {self.batch_size}"
            )
        if not 0.0 <= self.flip_p <= 1.0 or not 0.0 <= self.volume_jitter < 1.0:
            raise ValueError(
                f"flip_p must be in [0, 1] and volume_jitter in [0, 1), got {self.flip_p}, {self.volume_jitter}"
            )


def consumer_shards(
    urls: Sequence[str], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool
) -> tuple[list[str], bool]:
    """Shards of one consumer for one epoch, and whether samples must be sub-split by index."""
    order = list(urls)
    if shuffle:
        order = [order[i] for i in rng_for(seed, "shards", epoch).permutation(len(order))]
    if len(order) >= consumers:
        return order[consumer::consumers], False
    return order, True


def consumer_epoch_size(
    urls: Sequence[str], sizes: dict[str, int], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool
) -> int:
    """Samples consumer ``consumer`` reads in ``epoch``, from the shards' sample counts (no reading)."""
    mine, subsplit = consumer_shards(urls, epoch, seed, consumer, consumers, shuffle)
    n = sum(sizes[u] for u in mine)
    if not subsplit:
        return n
    return len(range(consumer, n, consumers))


def derived(s: RawSample, render: str) -> bool:
    """Whether ``render`` of ``s``'s views is made from the moment's one unrotated ``mMM.foa.flac``
    (:func:`avsa_data.renders.render_matrix`, :func:`view_audio`: one FLAC decode per moment instead of one per
    view) rather than read: FOA and mono always, stereo when it is virtual-mic
    (:func:`avsa_data.renders.derivable_renders`). HRIR stereo, a convolution, is read precomputed when stored."""
    return render in renders.derivable_renders(renders.binaural_mode(s.meta))


def member_wanted(cfg: StreamConfig) -> Callable[[str], bool]:
    """Whether ``decode_item(·, cfg)`` may read the member with this suffix (``m00.v01.jpg``): ``meta.json``,
    the clips, the unrotated FOA, the stored stereo renders when the format is stereo (HRIR stereo is read,
    :func:`derived`; ``prune_members`` drops what the sample's meta shows unused) and the low-resolution masks
    when asked. The reader passes the others over unread (:func:`avsa_data.reader.iter_raw`)."""
    render, _ = AUDIO_FORMATS[cfg.audio_format]
    maybe_stored = render not in renders.derivable_renders("hrir")  # stereo: stored for an HRIR, else derived

    def wanted(name: str) -> bool:
        parts = name.split(".")
        if name == fmt.meta_member():
            return True
        if len(parts) == 3:  # mMM.vKK.jpg, mMM.foa.flac (mMM.equirect.jpg is not read)
            return (parts[1].startswith("v") and parts[2] == "jpg") or (parts[1] == "foa" and parts[2] == "flac")
        if len(parts) == 4 and parts[3] == "flac":  # mMM.vKK.<render>.flac
            return parts[2] == render and maybe_stored
        return cfg.with_masks and len(parts) == 4 and parts[2] in ("seg56", "conf56")

    return wanted


def prune_members(s: RawSample, cfg: StreamConfig) -> RawSample:
    """``s`` without the members ``decode_item(·, cfg)`` never reads (:func:`member_wanted`): the stored renders
    when the wanted one is :func:`derived`, else (HRIR stereo, stored) the unrotated FOA."""
    render, _ = AUDIO_FORMATS[cfg.audio_format]
    wanted = member_wanted(cfg)
    make = derived(s, render)
    stored = not make and any(name.endswith(f".{render}.flac") and name.count(".") == 3 for name in s.members)

    def keep(name: str) -> bool:
        if not wanted(name):
            return False
        if name.count(".") == 3 and name.endswith(".flac"):  # mMM.vKK.<render>.flac
            return not make
        return not (stored and name.count(".") == 2 and name.endswith(".foa.flac"))

    pruned = RawSample(s.key, {name: data for name, data in s.members.items() if keep(name)}, s.shard)
    pruned.__dict__["meta"] = s.meta  # the decoded meta.json (a cached_property) carries over
    return pruned


def view_audio(
    s: RawSample, views: Sequence[int], moment: int, audio_format: str, flip: bool = False, gain: float = 1.0,
    field_yaw: float = 0.0,
) -> np.ndarray:
    """``[V, C, n]`` float32 audio of the viewpoints ``views`` at ``moment``, mirrored when ``flip``
    (:data:`AUDIO_MIRRORS`) and scaled by ``gain``; with ``field_yaw`` (degrees, positive = left) the sound field
    is first rotated about the vertical axis (:attr:`StreamConfig.break_spatial_link`).

    A :func:`derived` render (FOA, mono, virtual-mic stereo) comes from the moment's unrotated FOA, decoded
    once: rotation, render, mirror and gain of every view are folded into one ``[V·C, 4]`` matrix
    (:func:`avsa_data.renders.render_matrix`) and applied in one product. HRIR stereo is the stored render of each
    view (or, when not stored or the field is rotated, rendered from the FOA by :func:`avsa_data.renders.render_at`,
    as :meth:`avsa_data.reader.RawSample.audio` does).
    """
    render, channels = AUDIO_FORMATS[audio_format]
    mirror = AUDIO_MIRRORS[audio_format]
    turn = ambisonics.rotate(np.eye(4), rotation_yaw(field_yaw)) if field_yaw else None
    if not derived(s, render) and turn is not None:
        foa = (turn @ s.foa(moment)).astype(np.float32)
        rendered = [renders.render_at(foa, s.meta, s.audio_viewpoint(k), render) for k in views]
        return np.stack([mirror(a) if flip else a for a in rendered]) * np.float32(gain)
    if not derived(s, render):
        first = s.audio(views[0], moment, render)
        out = np.empty((len(views), *first.shape), np.float32)
        for j, k in enumerate(views):
            a = first if j == 0 else s.audio(k, moment, render)
            np.multiply(mirror(a) if flip else a, np.float32(gain), out=out[j])
        return out
    mats = [renders.render_matrix(s.audio_viewpoint(k), render) for k in views]  # [C, 4] each; the mirror acts on rows
    stacked = np.concatenate([mirror(m) if flip else m for m in mats]) * gain
    if turn is not None:
        stacked = stacked @ turn
    foa = s.foa(moment)
    return (stacked.astype(np.float32) @ foa).reshape(len(views), channels, foa.shape[1])


def iter_epoch_raw(
    urls: Sequence[str], epoch: int, seed: int, consumer: int, consumers: int, shuffle: bool, buffer: int,
    map_sample: Callable[[RawSample], RawSample] | None = None,
    wanted: Callable[[str], bool] | None = None,
) -> Iterator[RawSample]:
    """Raw samples of one consumer for one epoch (a partition of the epoch across consumers).

    ``map_sample`` (optional) maps each sample before it enters the shuffle buffer (e.g. :func:`prune_members`);
    ``wanted`` (optional, e.g. :func:`member_wanted`) names the members worth reading at all.
    """
    mine, subsplit = consumer_shards(urls, epoch, seed, consumer, consumers, shuffle)

    def raw() -> Iterator[RawSample]:
        i = 0
        for u in mine:
            with open_url(u) as f:
                for s in iter_raw(u, f, wanted=wanted):
                    if not subsplit or i % consumers == consumer:
                        yield s if map_sample is None else map_sample(s)
                    i += 1

    if not shuffle or buffer <= 1:
        yield from raw()
        return
    rng = rng_for(seed, "buffer", epoch, consumer)
    buf: list[RawSample] = []
    for s in raw():
        buf.append(s)
        if len(buf) >= buffer:
            j = int(rng.integers(len(buf)))
            buf[j], buf[-1] = buf[-1], buf[j]
            yield buf.pop()
    while buf:
        j = int(rng.integers(len(buf)))
        buf[j], buf[-1] = buf[-1], buf[j]
        yield buf.pop()


#: Rec. 601 luma weights (the grey of the saturation jitter).
_LUMA = np.array([0.299, 0.587, 0.114])
#: RGB → YIQ (luma, two chroma axes); a hue shift is a rotation of the chroma plane.
_RGB_TO_YIQ = np.array([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])


def _hue_matrix(shift: float) -> np.ndarray:
    """3×3 RGB matrix rotating the hue by ``shift`` turns (fractions of 360°) and keeping the luma."""
    a = 2.0 * np.pi * shift
    rot = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(a), -np.sin(a)], [0.0, np.sin(a), np.cos(a)]])
    return (np.linalg.inv(_RGB_TO_YIQ) @ rot @ _RGB_TO_YIQ).astype(np.float32)


def _jitter_affine(rng: np.random.Generator, strength: float, hue: float) -> tuple[np.ndarray, np.ndarray]:
    """Draw one colour jitter and return it as ``(A, k)``: jittered ``x`` = ``clip(x @ A.T + mean(x) · k, 0, 1)``.

    Brightness ``b``, contrast ``c`` (about the mean of the brightened block), saturation ``s`` (about the luma)
    and the hue rotation ``H`` are all affine in the colour, so they compose into one 3×3 matrix
    ``A = c·b·H·S`` (``S = s·I + (1 − s)·1·lumaᵀ``) and one offset along ``k = (1 − c)·b·H·S·1`` scaled by the
    block's mean. Draw order (b, c, s, then the hue when ``hue`` > 0) is that of the step-by-step form.
    """
    b = 1 + rng.uniform(-strength, strength)
    c = 1 + rng.uniform(-strength, strength)
    s = 1 + rng.uniform(-strength, strength)
    sat = s * np.eye(3) + (1 - s) * np.outer(np.ones(3), _LUMA)
    hs = (_hue_matrix(rng.uniform(-hue, hue)).astype(np.float64) if hue > 0 else np.eye(3)) @ sat
    return c * b * hs, (1 - c) * b * hs.sum(axis=1)


def colour_jitter(clip: np.ndarray, rng: np.random.Generator, strength: float = 0.4, hue: float = 0.0) -> np.ndarray:
    """Brightness, contrast and saturation jitter (factors uniform in ``1 ± strength``) and, with ``hue`` > 0, a
    hue shift uniform in ``± hue`` turns, of ``[.., T, H, W, 3]`` float RGB clips in [0, 1]; one draw for the
    whole array, so every view and frame of an item gets the same jitter (the contrast pivots on the mean of
    each ``[T, H, W, 3]`` block). Applied as one fused colour affine (:func:`_jitter_affine`), clipped once."""
    a, k = _jitter_affine(rng, strength, hue)
    x = np.asarray(clip, np.float32)
    mean = x.mean(axis=(-4, -3, -2, -1), keepdims=True, dtype=np.float64)
    out = x @ a.T.astype(np.float32) + (mean * k).astype(np.float32)
    return np.clip(out, 0.0, 1.0, out=out)


def colour_transform(jitter: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
    """The colour jitter (:func:`_jitter_affine`, or ``None``) and the normalisation as one ``[3, 4]`` float32
    transform of uint8 RGB: normalised ``y = clip(A·x + k·mean(x) + shift, lo, hi)`` with ``A = T[:, :3]``,
    ``k = T[:, 3]``, ``x`` in 0..255 and ``mean(x)`` over the clip's ``[T, H, W, 3]`` values (the contrast
    pivot), ``shift``/``lo``/``hi`` the normalised images of 0 and 1 (:func:`_normalised_bounds`). The scaling
    by 1/255 and :data:`VIDEO_MEAN`/:data:`VIDEO_STD` are folded in, so the clip to [0, 1] of the jittered
    colour becomes a clip to ``[lo, hi]`` (no jitter: ``k = 0`` and the clip changes nothing)."""
    scale = 1.0 / np.array(VIDEO_STD, np.float64)
    out = np.zeros((3, 4), np.float64)
    if jitter is None:
        out[:, :3] = np.diag(scale / 255.0)
    else:
        out[:, :3] = jitter[0] * scale[:, None] / 255.0
        out[:, 3] = jitter[1] * scale / 255.0
    return out.astype(np.float32)


def _normalised_bounds() -> tuple[np.ndarray, np.ndarray]:
    """(``shift`` = ``lo``, ``hi``) float64: the normalised values of colour 0 and 1 per channel."""
    std = np.array(VIDEO_STD, np.float64)
    lo = -np.array(VIDEO_MEAN, np.float64) / std
    return lo, lo + 1.0 / std


def _finish_video(clips: list[list[np.ndarray]], colour: np.ndarray, flip: bool) -> np.ndarray:
    """``[M][V]`` uint8 ``[T, H, W, 3]`` clips → ``[M, V, 3, T, H, W]`` float32, in one pass per colour plane.

    Per clip: the colour transform ``colour`` (:func:`colour_transform`: jitter and normalisation), the
    columns mirrored when ``flip``; written straight into the channels-first output. The worker-side twin of
    :func:`model_video` (same transform, numpy instead of torch).
    """
    m_, v_ = len(clips), len(clips[0])
    t, h, w, _ = clips[0][0].shape
    out = np.empty((m_, v_, 3, t, h, w), np.float32)
    tmp = np.empty((t, h, w), np.float32)
    planes = np.empty((3, t, h, w), np.float32)  # one clip's R, G, B as float, reused for every clip
    shift, hi = _normalised_bounds()
    a, k = colour[:, :3], colour[:, 3].astype(np.float64)
    jittered = not np.array_equal(colour, colour_transform(None))
    lo32, hi32 = shift.astype(np.float32), hi.astype(np.float32)
    for m, row in enumerate(clips):
        for v, x in enumerate(row):
            offset = (k * float(x.sum(dtype=np.uint64)) / x.size + shift).astype(np.float32)
            if flip:
                x = x[:, :, ::-1]
            for ch in range(3):
                np.copyto(planes[ch], x[..., ch], casting="unsafe")  # uint8 → float32, exact
            for ch in range(3):
                o = out[m, v, ch]
                if not jittered:
                    np.multiply(planes[ch], a[ch, ch], out=o)
                    o += offset[ch]
                    continue
                np.multiply(planes[0], a[ch, 0], out=o)
                for src in (1, 2):
                    np.multiply(planes[src], a[ch, src], out=tmp)
                    o += tmp
                o += offset[ch]
                np.clip(o, lo32[ch], hi32[ch], out=o)
    return out


def _stack_clips(clips: list[list[np.ndarray]], flip: bool) -> np.ndarray:
    """``[M][V]`` uint8 ``[T, H, W, 3]`` clips → one ``[M, V, T, H, W, 3]`` uint8 array, mirrored when ``flip``
    (``cv2.flip`` of the clip as one ``[T·H, W, 3]`` image: 20× faster than a reversed-stride copy)."""
    t, h, w, c = clips[0][0].shape
    out = np.empty((len(clips), len(clips[0]), t, h, w, c), np.uint8)
    for m, row in enumerate(clips):
        for v, x in enumerate(row):
            if flip:
                cv2.flip(x.reshape(t * h, w, c), 1, dst=out[m, v].reshape(t * h, w, c))
            else:
                out[m, v] = x
    return out


def model_video(batch: dict, device: torch.device) -> torch.Tensor:
    """``batch["video"]`` on ``device`` as the model takes it, ``[B, M, V, 3, T, H, W]`` float32 normalised.

    A stream with ``video_on_device`` ships uint8 ``[B, M, V, T, H, W, 3]`` clips and each item's colour
    transform ``colour [B, 3, 4]`` (:func:`colour_transform`); they are applied here, on the device and for
    the whole batch (4× less to copy to a GPU, and no float conversion in the loader workers).
    """
    video = batch["video"].to(device, non_blocking=True)
    if video.dtype != torch.uint8:
        return video
    colour = batch["colour"].to(device, non_blocking=True)
    b, m, v, t, h, w, _ = video.shape
    x = video.permute(0, 1, 2, 6, 3, 4, 5).float().reshape(b, m, v, 3, t * h * w)  # channels first
    mean = x.mean(dim=(-2, -1))  # [B, M, V]: the contrast pivot of each clip, in 0..255
    shift, hi = (torch.tensor(z, dtype=torch.float32, device=device) for z in _normalised_bounds())
    out = colour[:, None, None, :, :3] @ x  # [B, M, V, 3, T·H·W]
    out += (colour[:, None, None, :, 3] * mean[..., None] + shift)[..., None]
    out = torch.maximum(torch.minimum(out, hi[:, None]), shift[:, None])
    return out.view(b, m, v, 3, t, h, w)


def decode_item(s: RawSample, cfg: StreamConfig, epoch: int) -> dict:
    """Decode and augment one sample into numpy arrays.

    Returns ``video [M, V, 3, T, H, W]`` float32 (normalised; with ``cfg.video_on_device`` the uint8 clips
    ``[M, V, T, H, W, 3]`` and their ``colour [3, 4]`` transform instead, see :func:`model_video`),
    ``audio [M, V, C, n]`` float32 waveforms,
    optional ``seg``/``conf`` ``[M, V, 56, 56]`` (int64 ids, float confidence), optional ``events`` (``[M][V]``
    lists of :func:`avsa_data.events.view_events` dicts, azimuths negated when flipped), ``views [V]`` bank
    indices, ``flip`` (bool) and ``key``.
    """
    meta = s.meta
    rng = rng_for(cfg.seed, "augment", epoch, s.key)
    bank = list(range(len(meta["viewpoints"])))
    if cfg.hfov_range is not None:
        lo, hi = cfg.hfov_range
        ok = [k for k in bank if lo <= meta["viewpoints"][k]["hfov"] <= hi]
        bank = ok or bank
    if cfg.views > len(bank):
        raise ValueError(f"{s.key}: {cfg.views} views requested but the bank has {len(bank)}")
    views = sorted(rng.choice(bank, size=cfg.views, replace=False).tolist()) if cfg.train else bank[: cfg.views]
    M = int(meta["moments_per_sample"])
    if cfg.moments > M:
        raise ValueError(f"{s.key}: {cfg.moments} moments requested but samples have {M} (--moments-per-sample)")
    moments = list(range(cfg.moments)) if cfg.moments > 1 or not cfg.train else [int(rng.integers(M))]
    flip = cfg.train and rng.random() < cfg.flip_p
    gain = 1.0 + (rng.uniform(-cfg.volume_jitter, cfg.volume_jitter) if cfg.train else 0.0)
    yaw = 0.0
    if cfg.break_spatial_link:
        yaw = float(rng_for(cfg.seed, "spatial-link", epoch, s.key).uniform(-180.0, 180.0))

    audio = np.stack([view_audio(s, views, m, cfg.audio_format, flip, gain, yaw) for m in moments])
    colour = colour_transform(_jitter_affine(rng, COLOUR_JITTER, HUE_JITTER) if cfg.train and cfg.color_jitter
                              else None)
    clips = [[s.clip(k, m) for k in views] for m in moments]
    item = {
        "video": _stack_clips(clips, flip) if cfg.video_on_device else _finish_video(clips, colour, flip),
        "audio": audio,
        "views": np.array(views),
        "flip": flip,
        "key": s.key,
    }
    if cfg.video_on_device:
        item["colour"] = colour
    if cfg.with_events:
        item["events"] = [[events.mirror(s.events(k, m)) if flip else s.events(k, m) for k in views] for m in moments]
    if cfg.with_masks:
        segs, confs = [], []
        for m in moments:
            pairs = [s.masks(k, m, lowres=True) for k in views]
            if any(p is None for p in pairs):
                raise ValueError(f"{s.key}: segmentation requested but the sample has no masks (shard with --labels)")
            segs.append(np.stack([p[0] for p in pairs]))
            confs.append(np.stack([p[1] for p in pairs]))
        seg, conf = np.stack(segs).astype(np.int64), np.stack(confs).astype(np.float32)
        if flip:
            seg, conf = seg[..., ::-1], conf[..., ::-1]
        item["seg"], item["conf"] = np.ascontiguousarray(seg), np.ascontiguousarray(conf)
    return item


def collate(items: list[dict]) -> dict:
    out = {k: torch.from_numpy(np.stack([it[k] for it in items])) for k in ("video", "audio", "views")}
    if "colour" in items[0]:
        out["colour"] = torch.from_numpy(np.stack([it["colour"] for it in items]))
    out["flip"] = torch.tensor([it["flip"] for it in items])
    out["key"] = [it["key"] for it in items]
    if "events" in items[0]:
        out["events"] = [it["events"] for it in items]
    if "seg" in items[0]:
        out["seg"] = torch.from_numpy(np.stack([it["seg"] for it in items]))
        out["conf"] = torch.from_numpy(np.stack([it["conf"] for it in items]))
    return out


class ShardStream(IterableDataset):
    """Infinite (epoch after epoch) stream of collated batches for one rank; see the module docstring.

    Args:
        urls: the shards (e.g. ``split_urls(expand_urls(folder), "train")``).
        cfg: what each item and batch hold.
        rank, world_size: this process's DDP rank and the number of ranks.
        start_epoch: the first data epoch of the stream.
        infinite: continue with the next epoch at the end of one (training); ``False``: one epoch only.
        sizes: samples per shard URL (:func:`shard_sizes`); lets :meth:`resume_at` skip whole epochs unread.
    """

    def __init__(
        self,
        urls: Sequence[str],
        cfg: StreamConfig,
        *,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        infinite: bool = True,
        sizes: dict[str, int] | None = None,
    ):
        super().__init__()
        if not urls:
            raise ValueError("no shards given")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        self.urls = list(urls)
        self.cfg = cfg
        self.rank, self.world_size = rank, world_size
        self.start_epoch = start_epoch
        self.infinite = infinite
        self.sizes = {u: int(sizes[u]) for u in self.urls} if sizes and all(u in sizes for u in self.urls) else None
        self.skip_batches = 0  # batches of this rank already consumed (resume)

    def resume_at(self, epoch: int, batches_done_in_epoch_stream: int) -> None:
        """Continue the stream that started at ``epoch`` after this rank consumed that many batches.

        The trainer calls ``resume_at(0, steps_done)``: the data order is then the one of the uninterrupted run
        (same seed, world size, workers and batch size).
        """
        if batches_done_in_epoch_stream < 0:
            raise ValueError(f"batches done must be ≥ 0, got {batches_done_in_epoch_stream}")
        self.start_epoch = epoch
        self.skip_batches = batches_done_in_epoch_stream

    def _worker(self) -> tuple[int, int]:
        """(logical worker id, workers): DataLoader worker ``w`` continues the part of worker ``(w + S) mod nw``
        of the uninterrupted run, so that the round-robin order over workers resumes at batch ``S``."""
        info = get_worker_info()
        wid, nw = (info.id, info.num_workers) if info is not None else (0, 1)
        return (wid + self.skip_batches) % nw, nw

    def _consumer(self) -> tuple[int, int, int]:
        wid, nw = self._worker()
        return self.rank * nw + wid, self.world_size * nw, wid

    def _skipped_samples(self) -> int:
        """Samples this (logical) worker consumed before the resume point: the batches it made times B."""
        wid, nw = self._worker()
        return max(0, -(-(self.skip_batches - wid) // nw)) * self.cfg.batch_size

    def iter_raw_samples(self, skip: int = 0, prune: bool = False) -> Iterator[tuple[int, RawSample]]:
        """(epoch, raw sample) pairs of this consumer, epoch after epoch, after the first ``skip`` ones.

        Whole epochs inside ``skip`` are passed over without reading when the shard sizes are known.
        ``prune``: leave unread, or drop, the members this stream's items never use (:func:`member_wanted`,
        :func:`prune_members`).
        """
        c, C, _ = self._consumer()
        cfg = self.cfg
        map_sample = (lambda s: prune_members(s, cfg)) if prune else None
        wanted = member_wanted(cfg) if prune else None
        epochs = itertools.count(self.start_epoch) if self.infinite else iter([self.start_epoch])
        for e in epochs:
            if skip and self.sizes is not None:
                n = consumer_epoch_size(self.urls, self.sizes, e, cfg.seed, c, C, cfg.train)
                if 0 < n <= skip:
                    skip -= n
                    continue
            n = 0
            for s in iter_epoch_raw(self.urls, e, cfg.seed, c, C, cfg.train, cfg.shuffle_buffer, map_sample, wanted):
                n += 1
                if skip:
                    skip -= 1
                    continue
                yield e, s
            if n == 0 and self.infinite:
                raise ValueError(
                    f"consumer {c} of {C} (rank × DataLoader worker) got no sample in epoch {e}: there are more "
                    f"consumers than samples; use fewer --workers or ranks"
                )

    def __iter__(self) -> Iterator[dict]:
        batch: list[dict] = []
        for e, s in self.iter_raw_samples(self._skipped_samples(), prune=True):
            batch.append(decode_item(s, self.cfg, e))
            if len(batch) == self.cfg.batch_size:
                yield collate(batch)
                batch = []
        if batch and not self.cfg.drop_last:
            yield collate(batch)


def auto_workers(world_size_on_node: int = 1) -> int:
    """DataLoader workers per rank that keep a GPU fed: the node's CPUs shared by its ranks, at most 8."""
    return max(1, min(8, usable_cpus() // max(1, world_size_on_node) - 1))


def loader_worker_init(_worker_id: int) -> None:
    """``DataLoader(worker_init_fn=...)``: the settings of a loader worker process. glibc keeps freed decode
    buffers (:func:`avsa_train.allocator.keep_freed_buffers`), and numpy's BLAS runs on one thread: a worker is one
    core's share, and an idle OpenBLAS pool spin-waits after each small matrix product (the renders'
    rotations), which doubled a worker's CPU time per item in ``benchmarks/loader.py``."""
    from threadpoolctl import threadpool_limits

    allocator.keep_freed_buffers()
    threadpool_limits(1, user_api="blas")


def make_loader(stream: ShardStream, num_workers: int = 2, pin_memory: bool | None = None, seed: int = 0) -> DataLoader:
    """A DataLoader over worker-side batches (``batch_size=None``), pinned when CUDA is available.

    It draws its worker seeds from its own generator, never from torch's global RNG, so creating it does not
    shift the dropout masks of the model (exact resume).
    """
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    return DataLoader(
        stream,
        batch_size=None,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=False,
        prefetch_factor=4 if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(int(seed)),
        worker_init_fn=loader_worker_init if num_workers > 0 else None,
    )


def read_manifest(shards_dir: str | Path) -> dict | None:
    """``manifest.json`` of a shard folder (a path or an fsspec URL), or None if there is none."""
    if isinstance(shards_dir, str) and _fsspec_url(shards_dir) and not shards_dir.endswith(".tar"):
        where, data = remote.join(shards_dir, "manifest.json"), remote.Store(shards_dir).read_bytes("manifest.json")
    else:
        p = Path(shards_dir) / "manifest.json"
        where, data = str(p), p.read_bytes() if p.is_file() else None
    if data is None:
        return None
    m = parse_json(data, where, "the manifest.json written by avsa-data shard (rerun it to rewrite the file)")
    if not isinstance(m, dict) or not isinstance(m.get("shards"), list):
        raise ValueError(f"{where}: not an avsa-data manifest (an object with a list 'shards'; docs/FORMAT.md)")
    return m


def has_manifest(shards: str | Path | Sequence[str]) -> bool:
    """Whether ``shards`` is a shard folder (a path or an fsspec URL) with ``manifest.json``."""
    return isinstance(shards, (str, Path)) and read_manifest(shards) is not None


def _manifest(shards_dir: str | Path) -> dict:
    m = read_manifest(shards_dir)
    if m is None:
        raise FileNotFoundError(f"{shards_dir}/manifest.json does not exist (is {shards_dir} an avsa-data shard "
                                f"folder?)")
    return m


def count_samples(shards_dir: str | Path, split: str | None = None) -> int:
    """Samples listed in ``manifest.json`` (optionally of one split)."""
    m = _manifest(shards_dir)
    return sum(s["num_samples"] for s in m["shards"] if split is None or s["split"] == split)


def shard_sizes(shards_dir: str | Path) -> dict[str, int]:
    """``{path of a shard: samples}`` from ``manifest.json`` of a shard folder (paths as :func:`expand_urls`)."""
    m = _manifest(shards_dir)
    if isinstance(shards_dir, str) and remote.is_url(shards_dir):
        return {remote.join(shards_dir, s["name"]): int(s["num_samples"]) for s in m["shards"]}
    return {str(Path(shards_dir) / s["name"]): int(s["num_samples"]) for s in m["shards"]}


def peek_meta(urls: Sequence[str]) -> dict:
    """``meta.json`` of the first sample of the first shard (to check options before starting workers)."""
    for u in urls:
        with open_url(u) as f:
            for s in iter_raw(u, f):
                return s.meta
    raise ValueError(f"the shards hold no samples: {list(urls)[:3]}")


def check_shards_fit(meta: dict, cfg: StreamConfig) -> None:
    """An :class:`~avsa_data.options.OptionError` naming the option when the shards cannot give ``cfg``'s items (too
    few views or moments, no masks)."""
    k, m = len(meta["viewpoints"]), int(meta["moments_per_sample"])
    if cfg.views > k:
        raise OptionError(
            f"--viewpoints {cfg.views}: the shards have banks of {k} viewpoints; use --viewpoints ≤ {k}, or re-shard "
            f"with avsa-data shard --viewpoints-per-moment {cfg.views}"
        )
    if cfg.moments > m:
        raise OptionError(
            f"--moments {cfg.moments}: the shards have {m} moment(s) per sample; use --moments ≤ {m}, or re-shard "
            f"with avsa-data shard --moments-per-sample {cfg.moments}"
        )
    if cfg.with_masks and not meta.get("labels", {}).get("present", False):
        raise OptionError("segmentation needs masks but the shards have none: re-shard with avsa-data shard --labels "
                          "synthetic|precomputed|onnx")
