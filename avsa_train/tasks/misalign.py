"""Negatives of the binary AVC-Bin and AVSA-Bin tasks (AVSA main text §5.2), made at the sound-field level.

Both tasks pair the V viewpoint crops of a sample with audio and ask a classifier whether the pair is aligned:

* **AVC-Bin** (audio-visual correspondence): a negative replaces the sample's sound field by the (world
  frame) FOA of a sample **from another video**. Each crop then hears that other scene rendered at its own
  viewpoint, so the negative differs only in content, not in how it was rendered.
* **AVSA-Bin** (audio-visual spatial alignment): a negative rotates the sample's own sound field about the
  vertical axis by a yaw ``δ`` before rendering. The crop at viewpoint ``(φ, θ)`` then hears what a camera at
  ``(φ − δ, θ)`` would hear: the right sounds from the wrong direction. The reference draws
  ``δ ~ U(−180°, 180°)`` (``rotate_mode: yaw``); ``min_yaw`` excludes the near-aligned ``|δ| < min_yaw``.

Positives and negatives take exactly the same path: the (possibly replaced or rotated) world FOA of each
moment is rendered for every viewpoint with :func:`avsa_data.samples.render_audio_from_meta` — the functions
and binaural settings of the shard builder — so mono, stereo and ambiX renders of a negative are what the
shard builder would have stored for that sound field, and no precomputed render can leak the label.

Yaw convention (:mod:`avsa_data.geometry`): positive angles turn to the **left**; a source at azimuth ``a``
ends up at ``a + δ``.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from avsa_data import ambisonics, codecs
from avsa_data import format as fmt
from avsa_data.geometry import rotation_yaw
from avsa_data.reader import RawSample, ShardFormatError, parse_meta
from avsa_data.rng import rng_for
from avsa_data.samples import render_audio_from_meta

#: Fraction of negatives (seed / reference ``misalign: 0.5``).
MISALIGN_RATE = 0.5
BINARY_TASKS = ("avc", "avsa")


def rotate_yaw(foa: NDArray, yaw_deg: float) -> NDArray[np.float32]:
    """Rotate an ambiX FOA ``[4, n]`` (W, Y, Z, X) about +z by ``yaw_deg`` degrees (positive = to the left)."""
    return ambisonics.rotate(foa, rotation_yaw(yaw_deg)).astype(np.float32, copy=False)


def draw_yaw(rng: np.random.Generator, min_yaw: float = 0.0, max_yaw: float = 180.0) -> float:
    """A signed yaw in degrees with ``|δ| ~ U(min_yaw, max_yaw)`` and a random sign."""
    if not 0.0 <= min_yaw <= max_yaw <= 180.0:
        raise ValueError(f"need 0 <= min_yaw <= max_yaw <= 180 degrees, got {min_yaw}, {max_yaw}")
    magnitude = float(rng.uniform(min_yaw, max_yaw))
    return magnitude if rng.random() < 0.5 else -magnitude


@dataclass(frozen=True)
class Misalignment:
    """The decision for one sample: ``label`` 1 = misaligned (negative), 0 = aligned.

    ``yaw`` (degrees) is the AVSA rotation (0 for AVC and for positives); ``donor`` is the index into the
    donor candidates for an AVC negative (``None`` otherwise).
    """

    label: int
    yaw: float = 0.0
    donor: int | None = None


def draw_misalignment(
    task: str,
    seed: int,
    phase: str,
    epoch: int,
    key: str,
    rate: float = MISALIGN_RATE,
    min_yaw: float = 0.0,
    n_donors: int = 0,
) -> Misalignment:
    """Deterministic draw for sample ``key`` from ``rng_for(seed, "misalign", task, phase, epoch, key)``.

    ``phase`` separates the fitting stream (``"train"``) from the evaluation draws (``"test"``), ``epoch`` the
    epochs (or the test draw index). ``n_donors`` is the number of AVC donor candidates (``> 0`` for AVC).
    """
    if task not in BINARY_TASKS:
        raise ValueError(f"task must be one of {BINARY_TASKS}, got {task!r}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"misalignment rate must be in [0, 1], got {rate}")
    rng = rng_for(seed, "misalign", task, phase, epoch, key)
    if rng.random() >= rate:
        return Misalignment(0)
    if task == "avsa":
        return Misalignment(1, yaw=draw_yaw(rng, min_yaw))
    if n_donors < 1:
        raise ValueError("an AVC-Bin negative needs audio from another video, but no donor sample was given")
    return Misalignment(1, donor=int(rng.integers(n_donors)))


@dataclass
class ResoundedSample(RawSample):
    """A :class:`RawSample` whose world-frame FOA is replaced per moment; every viewpoint render (foa, mono,
    stereo) is recomputed from it with the shard builder's functions. Video, masks and metadata are the
    original sample's."""

    world_foa: dict[int, NDArray[np.float32]] = field(default_factory=dict)

    def foa(self, moment: int = 0) -> NDArray[np.float32]:
        """``[4, n]`` float32 world-frame ambiX FOA of the moment (physical values, ``audio_scale`` applied)."""
        return self.world_foa[moment]

    def audio(self, view: int, moment: int = 0, render: str = "foa") -> NDArray[np.float32]:
        """``[C, n]`` render of viewpoint ``view`` from :meth:`foa` (never a precomputed member)."""
        if render not in fmt.RENDERS:
            raise ValueError(f"render must be one of {fmt.RENDERS}, got {render!r}")
        return render_audio_from_meta(self.foa(moment), self.meta, view, render)


def moments_of(sample: RawSample) -> int:
    """M, the moments per sample."""
    return int(sample.meta["moments_per_sample"])


def resound(sample: RawSample, world_foa: dict[int, NDArray]) -> ResoundedSample:
    """``sample`` with its world FOA replaced by ``world_foa`` (moment → ``[4, n]``); renders are recomputed."""
    n = int(sample.meta["audio_samples"])
    for m, a in world_foa.items():
        ambisonics.check_foa(a, f"{sample.key} moment {m}")
        if a.shape[1] != n:
            raise ValueError(
                f"{sample.key}: replacement audio of moment {m} has {a.shape[1]} samples, expected {n} (audio_samples)"
            )
    return ResoundedSample(
        sample.key, sample.members, sample.shard, world_foa={m: np.asarray(a, np.float32) for m, a in world_foa.items()}
    )


def aligned(sample: RawSample) -> ResoundedSample:
    """The positive: the sample's own sound field, re-rendered through the same path as the negatives."""
    return resound(sample, {m: sample.foa(m) for m in range(moments_of(sample))})


def rotated(sample: RawSample, yaw_deg: float) -> ResoundedSample:
    """AVSA-Bin negative: every moment's world FOA rotated by ``yaw_deg`` (degrees, positive = left)."""
    return resound(sample, {m: rotate_yaw(sample.foa(m), yaw_deg) for m in range(moments_of(sample))})


def swapped(sample: RawSample, donor_foa: list[NDArray]) -> ResoundedSample:
    """AVC-Bin negative: moment ``m`` hears the donor's world FOA of moment ``m mod len(donor_foa)``."""
    if not donor_foa:
        raise ValueError("swapped: the donor has no audio")
    return resound(sample, {m: donor_foa[m % len(donor_foa)] for m in range(moments_of(sample))})


def apply(sample: RawSample, decision: Misalignment, donor_foa: list[NDArray] | None = None) -> ResoundedSample:
    """The sample as the binary task presents it under ``decision`` (see :func:`draw_misalignment`);
    ``donor_foa`` is the chosen donor's world FOA per moment for an AVC negative."""
    if decision.label == 0:
        return aligned(sample)
    if decision.donor is not None:
        if not donor_foa:
            raise ValueError("an AVC-Bin negative needs donor audio")
        return swapped(sample, donor_foa)
    return rotated(sample, decision.yaw)


class DonorBank:
    """Every sample of a split that can lend its world FOA to an AVC-Bin negative, by key.

    The bank indexes the shard files once (tar headers only) and reads a donor's ``m{m}.foa.flac`` and
    ``meta.json`` members by random access when needed, so the donor of a sample depends only on the seeded
    draw — not on the DataLoader worker that handles it or on the order of the stream. Needs local shard files.
    """

    def __init__(self, urls: list[str]):
        self.keys: list[str] = []
        self.video_ids: list[str] = []
        self._where: dict[str, tuple[str, dict[str, str]]] = {}
        for url in urls:
            if not Path(url).is_file():
                raise ValueError(f"AVC-Bin reads donor audio by random access and needs local shard files, got {url}")
            size = Path(url).stat().st_size
            try:
                with tarfile.open(url, "r:") as tar:
                    infos = tar.getmembers()
            except tarfile.TarError as e:
                raise ShardFormatError(f"{url}: corrupt or truncated tar ({e})") from None
            for ti in infos:
                name = ti.name
                if ti.offset_data + ti.size > size:  # never read a member the file cannot hold
                    raise ShardFormatError(f"{url}: member {name!r} declares {ti.size} bytes past the end of the "
                                           f"file (truncated or damaged)")
                slash = name.rfind("/")
                dot = name.find(".", slash + 1)
                if dot < 0:
                    continue
                key, suffix = name[:dot], name[dot + 1 :]
                if suffix == fmt.meta_member() or (suffix.endswith(".foa.flac") and suffix.count(".") == 2):
                    self._where.setdefault(key, (url, {}))[1][suffix] = name
        for key in sorted(self._where):
            if fmt.meta_member() in self._where[key][1]:
                self.keys.append(key)
                self.video_ids.append(key.rsplit("/", 1)[0])
        self._tars: dict[tuple[int, str], tarfile.TarFile] = {}

    def __len__(self) -> int:
        return len(self.keys)

    def candidates(self, video_id: str) -> list[int]:
        """Indices of the samples of every other video (sorted by key)."""
        return [i for i, v in enumerate(self.video_ids) if v != video_id]

    def _read(self, url: str, name: str) -> bytes:
        handle = (os.getpid(), url)  # one handle per process: DataLoader workers must not share file offsets
        if handle not in self._tars:
            self._tars[handle] = tarfile.open(url, "r:")
        f = self._tars[handle].extractfile(name)
        if f is None:
            raise ValueError(f"{url}: member {name} is not a file")
        return f.read()

    def world_foa(self, index: int) -> list[NDArray[np.float32]]:
        """The donor's world-frame FOA ``[4, n]`` of each of its moments (``audio_scale`` applied)."""
        key = self.keys[index]
        url, members = self._where[key]
        meta, problems = parse_meta(self._read(url, members[fmt.meta_member()]), strict=False)
        if problems:
            raise ShardFormatError(f"{url}: {key}.meta.json: {problems[0]}")
        scale = np.float32(meta["audio_scale"])
        out = []
        for m in range(int(meta["moments_per_sample"])):
            name = members.get(fmt.foa_member(m))
            if name is None:
                raise ShardFormatError(f"{url}: {key}: member {fmt.foa_member(m)} missing")
            try:  # bounded: the stream info must say 4 × audio_samples before anything is decoded
                a, _ = codecs.decode_flac(self._read(url, name), (4, meta["audio_samples"]), meta["sr"],
                                          meta["audio_bits"])
            except codecs.MemberError as e:
                raise ShardFormatError(f"{url}: {key}.{fmt.foa_member(m)}: {e}") from None
            out.append(a * scale)
        return out
