"""Negatives of the binary AVC-Bin and AVSA-Bin tasks (AVSA main text §5.2), made at the sound-field level.

Both tasks pair the V viewpoint crops of a sample with audio and ask a classifier whether the pair is aligned.
The crops of a negative are the sample's own; only the audio each crop hears changes. Two constructions:

**matched** (the default): a negative's audio has the same distribution as a positive's, whatever viewpoint
sampler made the shards, so neither modality alone can tell the classes apart — only their pairing can.

* **AVSA-Bin**: the crop at bank viewpoint ``k`` hears the sample's own sound field rendered at bank viewpoint
  ``π(k)``, where ``π`` is a uniformly random derangement of the bank (no ``k`` keeps its own render). Every
  render is one a positive could have had (a viewpoint of the same moment drawn by the same sampler), and ``π``
  maps a uniformly random subset of views to a uniformly random subset, so the V renders of a negative are
  distributed as those of a positive. The crop hears the right sounds from the wrong direction: those of a
  camera turned to viewpoint ``π(k)``.
* **AVC-Bin**: the crop at bank viewpoint ``k`` hears the field of a sample **from another video** rendered at
  a viewpoint of **that** sample's own bank (``σ(k)``, a random injection into the donor's bank): audio exactly
  as that sample's positives hear it.

**reference** (the authors' ``eval-avc.py`` / ``eval-avsa.py``): AVSA-Bin rotates the sample's field about the
vertical axis by a yaw ``δ ~ U(−180°, 180°)`` (``rotate_mode: yaw``; ``min_yaw`` excludes ``|δ| < min_yaw``), so
the crop at ``(φ, θ)`` hears what a camera at ``(φ − δ, θ)`` would hear; AVC-Bin renders the other video's field
at **this** sample's viewpoints. Valid only when the viewpoints are drawn independently of the sound (the
``random`` and ``grid`` samplers): with ``--sampler energy`` the views point where the sound comes from, so a
positive's audio has its energy in front and a rotated or foreign field usually does not — an audio-only
classifier then scores about 70 % (docs/EVALUATION.md, "Controls").

Positives and negatives take exactly the same path: each crop's audio is rendered from a world-frame FOA at a
viewpoint record (:class:`ResoundedSample`) by the shard builder's functions (:func:`avsa_train.data.items.view_audio`,
:func:`avsa_data.renders.render_at`), so no precomputed render can leak the label.

Yaw convention (:mod:`avsa_data.geometry`): positive angles turn to the **left**; a source at azimuth ``a``
ends up at ``a + δ``.
"""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from avsa_data import ambisonics, codecs, shard_format
from avsa_data.geometry import angular_distance, rotation_yaw
from avsa_data.reader import RawSample, ShardFormatError, parse_meta
from avsa_data.renders import render_at
from avsa_data.rng import rng_for

#: Fraction of negatives (seed / reference ``misalign: 0.5``).
MISALIGN_RATE = 0.5
BINARY_TASKS = ("avc", "avsa")
#: How negatives are made (module docstring): ``matched`` keeps both modalities' distributions; ``reference``
#: is the authors' random yaw / foreign field at this sample's views (valid for sound-independent samplers).
NEGATIVE_KINDS = ("matched", "reference")


def rotate_yaw(foa: NDArray, yaw_deg: float) -> NDArray[np.float32]:
    """Rotate an ambiX FOA ``[4, n]`` (W, Y, Z, X) about +z by ``yaw_deg`` degrees (positive = to the left)."""
    return ambisonics.rotate(foa, rotation_yaw(yaw_deg)).astype(np.float32, copy=False)


def draw_derangement(rng: np.random.Generator, n: int) -> tuple[int, ...]:
    """A uniformly random permutation of ``range(n)`` with no fixed point (rejection: about e draws)."""
    if n < 2:
        raise ValueError(f"a derangement needs at least 2 elements, got {n}")
    while True:
        p = rng.permutation(n)
        if not np.any(p == np.arange(n)):
            return tuple(int(x) for x in p)


def draw_injection(rng: np.random.Generator, n: int, into: int) -> tuple[int, ...]:
    """``n`` distinct indices of ``range(into)`` in random order (a uniformly random injection); with
    ``into < n`` the indices repeat (each of ``range(into)`` at most ``ceil(n / into)`` times)."""
    if into < 1:
        raise ValueError("the donor has no viewpoints")
    reps = -(-n // into)
    return tuple(int(x) for x in np.concatenate([rng.permutation(into) for _ in range(reps)])[:n])


def draw_yaw(rng: np.random.Generator, min_yaw: float = 0.0, max_yaw: float = 180.0) -> float:
    """A signed yaw in degrees with ``|δ| ~ U(min_yaw, max_yaw)`` and a random sign."""
    if not 0.0 <= min_yaw <= max_yaw <= 180.0:
        raise ValueError(f"need 0 <= min_yaw <= max_yaw <= 180 degrees, got {min_yaw}, {max_yaw}")
    magnitude = float(rng.uniform(min_yaw, max_yaw))
    return magnitude if rng.random() < 0.5 else -magnitude


@dataclass(frozen=True)
class Misalignment:
    """The decision for one sample: ``label`` 1 = misaligned (negative), 0 = aligned.

    ``yaw`` (degrees) is the reference AVSA rotation (0 otherwise); ``donor`` is the index into the donor
    candidates for an AVC negative (``None`` otherwise); ``pairing`` (matched negatives) gives, for each bank
    viewpoint ``k`` of the sample, the viewpoint whose render its crop hears: an index into the sample's own
    bank (AVSA, a derangement) or into the donor's (AVC, drawn by :func:`pair_with_donor` once the donor's bank
    is known).
    """

    label: int
    yaw: float = 0.0
    donor: int | None = None
    pairing: tuple[int, ...] | None = None


def draw_misalignment(
    task: str,
    seed: int,
    phase: str,
    epoch: int,
    key: str,
    rate: float = MISALIGN_RATE,
    min_yaw: float = 0.0,
    n_donors: int = 0,
    negatives: str = "matched",
    bank_size: int = 0,
) -> Misalignment:
    """Deterministic draw for sample ``key`` from ``rng_for(seed, "misalign", task, phase, epoch, key)``.

    ``phase`` separates the fitting stream (``"train"``) from the evaluation draws (``"test"``), ``epoch`` the
    epochs (or the test draw index). ``n_donors`` is the number of AVC donor candidates (``> 0`` for AVC);
    ``negatives`` one of :data:`NEGATIVE_KINDS`; ``bank_size`` the sample's viewpoints (matched AVSA negatives
    derange them, so it must be ≥ 2).
    """
    if task not in BINARY_TASKS:
        raise ValueError(f"task must be one of {BINARY_TASKS}, got {task!r}")
    if negatives not in NEGATIVE_KINDS:
        raise ValueError(f"negatives must be one of {NEGATIVE_KINDS}, got {negatives!r}")
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"misalignment rate must be in [0, 1], got {rate}")
    rng = rng_for(seed, "misalign", task, phase, epoch, key)
    if rng.random() >= rate:
        return Misalignment(0)
    if task == "avsa":
        if negatives == "reference":
            return Misalignment(1, yaw=draw_yaw(rng, min_yaw))
        if bank_size < 2:
            raise ValueError(f"{key}: a matched AVSA-Bin negative pairs each crop with another viewpoint's audio, "
                             f"but the sample's bank has {bank_size} viewpoint(s); shard with -k ≥ 2")
        return Misalignment(1, pairing=draw_derangement(rng, bank_size))
    if n_donors < 1:
        raise ValueError("an AVC-Bin negative needs audio from another video, but no donor sample was given")
    return Misalignment(1, donor=int(rng.integers(n_donors)))


def pair_with_donor(
    decision: Misalignment, seed: int, phase: str, epoch: int, key: str, bank_size: int, donor_bank_size: int
) -> Misalignment:
    """A matched AVC negative's ``pairing``: each of the sample's ``bank_size`` viewpoints → a viewpoint of the
    donor's bank (:func:`draw_injection`), from ``rng_for(seed, "misalign-pairing", phase, epoch, key)``."""
    rng = rng_for(seed, "misalign-pairing", phase, epoch, key)
    return replace(decision, pairing=draw_injection(rng, bank_size, donor_bank_size))


@dataclass
class ResoundedSample(RawSample):
    """A :class:`RawSample` as a binary task presents it: the world-frame FOA replaced per moment and, with
    ``audio_viewpoints``, the crop of bank viewpoint ``k`` paired with the render at the viewpoint record
    ``audio_viewpoints[k]`` (degrees, a ``meta.viewpoints`` entry of this sample's or a donor's bank) instead
    of its own. Every render (foa, mono, stereo) is recomputed with the shard builder's functions; video, masks
    and metadata are the original sample's."""

    world_foa: dict[int, NDArray[np.float32]] = field(default_factory=dict)
    audio_viewpoints: dict[int, dict] | None = None

    def foa(self, moment: int = 0) -> NDArray[np.float32]:
        """``[4, n]`` float32 world-frame ambiX FOA of the moment (physical values, ``audio_scale`` applied)."""
        return self.world_foa[moment]

    def audio_viewpoint(self, view: int) -> dict:
        """The viewpoint record the crop of ``view`` hears (its own unless the pairing says otherwise)."""
        own = self.viewpoint(view)
        return own if self.audio_viewpoints is None else self.audio_viewpoints[view]

    def audio(self, view: int, moment: int = 0, render: str = "foa") -> NDArray[np.float32]:
        """``[C, n]`` render heard with the crop of ``view``, from :meth:`foa` (never a precomputed member)."""
        if render not in shard_format.RENDERS:
            raise ValueError(f"render must be one of {shard_format.RENDERS}, got {render!r}")
        return render_at(self.foa(moment), self.meta, self.audio_viewpoint(view), render)


def moments_of(sample: RawSample) -> int:
    """M, the moments per sample."""
    return int(sample.meta["moments_per_sample"])


def resound(
    sample: RawSample, world_foa: dict[int, NDArray], audio_viewpoints: dict[int, dict] | None = None
) -> ResoundedSample:
    """``sample`` with its world FOA replaced by ``world_foa`` (moment → ``[4, n]``) and, with
    ``audio_viewpoints``, each crop paired with the render at another viewpoint record; renders are recomputed."""
    n = int(sample.meta["audio_samples"])
    for m, a in world_foa.items():
        ambisonics.check_foa(a, f"{sample.key} moment {m}")
        if a.shape[1] != n:
            raise ValueError(
                f"{sample.key}: replacement audio of moment {m} has {a.shape[1]} samples, expected {n} (audio_samples)"
            )
    return ResoundedSample(
        sample.key, sample.members, sample.shard,
        world_foa={m: np.asarray(a, np.float32) for m, a in world_foa.items()}, audio_viewpoints=audio_viewpoints,
    )


def aligned(sample: RawSample) -> ResoundedSample:
    """The positive: the sample's own sound field, re-rendered through the same path as the negatives."""
    return resound(sample, {m: sample.foa(m) for m in range(moments_of(sample))})


def rotated(sample: RawSample, yaw_deg: float) -> ResoundedSample:
    """AVSA-Bin negative: every moment's world FOA rotated by ``yaw_deg`` (degrees, positive = left)."""
    return resound(sample, {m: rotate_yaw(sample.foa(m), yaw_deg) for m in range(moments_of(sample))})


def repaired(sample: RawSample, pairing: tuple[int, ...]) -> ResoundedSample:
    """Matched AVSA-Bin negative: the crop of bank viewpoint ``k`` hears the sample's own field rendered at
    bank viewpoint ``pairing[k]``."""
    if len(pairing) != sample.num_views:
        raise ValueError(f"{sample.key}: pairing of {len(pairing)} viewpoints for a bank of {sample.num_views}")
    return resound(sample, {m: sample.foa(m) for m in range(moments_of(sample))},
                   {k: sample.viewpoint(j) for k, j in enumerate(pairing)})


@dataclass(frozen=True)
class Donor:
    """An AVC-Bin donor: its key, world FOA per moment (``[4, n]`` each) and viewpoint bank (meta records)."""

    key: str
    foa: list[NDArray[np.float32]]
    viewpoints: list[dict]


def swapped(sample: RawSample, donor_foa: list[NDArray], donor_views: list[dict] | None = None) -> ResoundedSample:
    """AVC-Bin negative: moment ``m`` hears the donor's world FOA of moment ``m mod len(donor_foa)``, rendered
    at the sample's own viewpoints (reference) or, with ``donor_views`` (one record per bank viewpoint of the
    sample), at those viewpoints of the donor's bank (matched)."""
    if not donor_foa:
        raise ValueError("swapped: the donor has no audio")
    views = None if donor_views is None else dict(enumerate(donor_views))
    return resound(sample, {m: donor_foa[m % len(donor_foa)] for m in range(moments_of(sample))}, views)


def apply(sample: RawSample, decision: Misalignment, donor: Donor | None = None) -> ResoundedSample:
    """The sample as the binary task presents it under ``decision`` (see :func:`draw_misalignment`);
    ``donor`` is the chosen donor for an AVC negative."""
    if decision.label == 0:
        return aligned(sample)
    if decision.donor is not None:
        if donor is None or not donor.foa:
            raise ValueError("an AVC-Bin negative needs donor audio")
        views = None if decision.pairing is None else [donor.viewpoints[j] for j in decision.pairing]
        return swapped(sample, donor.foa, views)
    if decision.pairing is not None:
        return repaired(sample, decision.pairing)
    return rotated(sample, decision.yaw)


def mean_offset(presented: ResoundedSample, views: list[int], decision: Misalignment) -> float:
    """AVSA: the mean over the crops ``views`` of the angle (degrees) between a crop's viewpoint and the direction
    its audio was rendered for — the audio viewpoint of a matched negative, the viewpoint turned by ``−δ`` of a
    reference one; 0 for a positive."""
    if decision.label == 0:
        return 0.0
    angles = []
    for k in views:
        own = presented.viewpoint(k)
        az, el = float(own["azimuth"]), float(own["elevation"])
        if decision.pairing is not None:
            heard = presented.audio_viewpoint(k)
            angles.append(float(angular_distance(az, el, float(heard["azimuth"]), float(heard["elevation"]))))
        else:
            angles.append(float(angular_distance(az, el, az - decision.yaw, el)))
    return float(np.mean(angles))


def describe(decision: Misalignment, donor_key: str | None = None, views: list[int] | None = None) -> str:
    """How an item's audio was made, for telling repeated items apart: ``""`` (aligned), ``yaw:+37.2000``,
    ``pair:3,0`` (the audio viewpoints of the item's crops ``views``), or ``donor:KEY`` with ``@j,…`` for the
    donor viewpoints heard (matched)."""
    if decision.label == 0:
        return ""
    heard = ""
    if decision.pairing is not None and views is not None:
        heard = ",".join(str(decision.pairing[k]) for k in views)
    if decision.donor is not None:
        return f"donor:{donor_key}" + (f"@{heard}" if heard else "")
    if decision.pairing is not None:
        return f"pair:{heard}"
    return f"yaw:{decision.yaw:+.4f}"


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
                if suffix == shard_format.meta_member() or (suffix.endswith(".foa.flac") and suffix.count(".") == 2):
                    self._where.setdefault(key, (url, {}))[1][suffix] = name
        for key in sorted(self._where):
            if shard_format.meta_member() in self._where[key][1]:
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

    def donor(self, index: int) -> Donor:
        """Donor ``index``: its key, world FOA of each moment and viewpoint bank (:meth:`world_foa`)."""
        foa, meta = self._read_donor(index)
        return Donor(self.keys[index], foa, list(meta["viewpoints"]))

    def world_foa(self, index: int) -> list[NDArray[np.float32]]:
        """The donor's world-frame FOA ``[4, n]`` of each of its moments (``audio_scale`` applied)."""
        return self._read_donor(index)[0]

    def _read_donor(self, index: int) -> tuple[list[NDArray[np.float32]], dict]:
        key = self.keys[index]
        url, members = self._where[key]
        meta, problems = parse_meta(self._read(url, members[shard_format.meta_member()]), strict=False)
        if problems:
            raise ShardFormatError(f"{url}: {key}.meta.json: {problems[0]}")
        scale = np.float32(meta["audio_scale"])
        out = []
        for m in range(int(meta["moments_per_sample"])):
            name = members.get(shard_format.foa_member(m))
            if name is None:
                raise ShardFormatError(f"{url}: {key}: member {shard_format.foa_member(m)} missing")
            try:  # bounded: the stream info must say 4 × audio_samples before anything is decoded
                a, _ = codecs.decode_flac(self._read(url, name), (4, meta["audio_samples"]), meta["sr"],
                                          meta["audio_bits"])
            except codecs.MemberError as e:
                raise ShardFormatError(f"{url}: {key}.{shard_format.foa_member(m)}: {e}") from None
            out.append(a * scale)
        return out, meta
