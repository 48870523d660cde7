"""The shard format's names and schema (docs/FORMAT.md is the prose specification of this module).

A shard is a POSIX tar of WebDataset samples. A sample's key is ``{video_id}/{moment:06d}``; its members
are ``{key}.{suffix}`` with the suffixes built here. Video ids are sanitised to ``[A-Za-z0-9_-]`` so keys
contain no dots (WebDataset splits member names at the first dot of the base name).
"""

from __future__ import annotations

import math
import re

#: Version of the shard layout. Bump on any change a reader could notice.
#: 2: ``meta.json`` holds ``member_sha256`` (sha256 of every other member) and ``meta_sha256`` (of itself).
#: 3: ``renders`` may be empty, and by default (``--renders auto``) holds only the renders that are not a matrix
#: of the unrotated FOA: none with virtual-mic stereo, ``["stereo"]`` with an HRIR
#: (:func:`avsa_data.renders.derivable_renders`).
FORMAT_VERSION = 3
#: Versions this code reads (version 1 shards have no checksums; version 2 shards always store ≥ 1 render).
READABLE_VERSIONS = (1, 2, 3)

RENDERS = ("foa", "mono", "stereo")
BINAURAL_MODES = ("virtual-mic", "hrir")
RENDER_CHANNELS = {"foa": 4, "mono": 1, "stereo": 2}


#: Confidence threshold of seed §A.2: pixels below it are ignored at train and eval time.
CONFIDENCE_THRESHOLD = 0.75
#: Resolution of the segmentation target of seed §A.2 (FPN output).
SEG_LOWRES = 56

#: Hard limits of the format. A ``meta.json`` beyond them is refused before anything is decoded, and no member
#: may decode to more than ``MAX_DECODED_BYTES``: a reader's memory per member is bounded whatever a shard says.
MAX_MOMENTS = 64
MAX_VIEWS = 256
MAX_FRAMES_PER_CLIP = 256
MAX_CROP = 1024
MAX_EQUIRECT_WIDTH = 8192
MAX_SR = 384_000
MAX_DECODED_BYTES = 64 << 20  # one decoded member: float32 audio or uint8 RGB
MAX_MEMBER_BYTES = 256 << 20  # one stored (compressed) member
MAX_META_BYTES = 4 << 20  # meta.json

_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_-]+)-(?P<index>\d{6})\.tar$")
#: A sample key ``{video_id}/{moment:06d}`` and a member suffix (``m00.v01.foa.flac``): no absolute or ``..`` paths.
KEY_RE = re.compile(r"^[A-Za-z0-9_-]+/[0-9]{6,}$")
SUFFIX_RE = re.compile(r"^[a-z0-9]+(\.[a-z0-9]+)*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def sanitize_id(name: str) -> str:
    """A WebDataset-safe video id: runs of characters outside ``[A-Za-z0-9_-]`` become ``_``."""
    out = _ID_BAD.sub("_", name).strip("_")
    if not out:
        raise ValueError(f"cannot derive a video id from {name!r}")
    return out


def sample_key(video_id: str, moment: int) -> str:
    return f"{video_id}/{moment:06d}"


def shard_name(split: str, index: int) -> str:
    return f"{split}-{index:06d}.tar"


def meta_member() -> str:
    return "meta.json"


def foa_member(m: int) -> str:
    """Unrotated (original orientation) FOA of moment ``m``: 4 ch ambiX."""
    return f"m{m:02d}.foa.flac"


def clip_member(m: int, k: int) -> str:
    """Crop clip of viewpoint ``k`` at moment ``m``: T frames tiled vertically in one JPEG."""
    return f"m{m:02d}.v{k:02d}.jpg"


def render_member(m: int, k: int, render: str) -> str:
    """Audio render (``foa`` rotated / ``mono`` / ``stereo``) of viewpoint ``k`` at moment ``m``."""
    if render not in RENDERS:
        raise ValueError(f"unknown render {render!r}; choose from {RENDERS}")
    return f"m{m:02d}.v{k:02d}.{render}.flac"


def seg_member(m: int, k: int, lowres: bool = False) -> str:
    return f"m{m:02d}.v{k:02d}.seg{SEG_LOWRES if lowres else ''}.png"


def conf_member(m: int, k: int, lowres: bool = False) -> str:
    return f"m{m:02d}.v{k:02d}.conf{SEG_LOWRES if lowres else ''}.png"


def equirect_member(m: int) -> str:
    return f"m{m:02d}.equirect.jpg"


def expected_members(meta: dict) -> list[str]:
    """All member suffixes a sample with this ``meta.json`` must contain, in canonical write order."""
    names = [meta_member()]
    k_views = len(meta["viewpoints"])
    has_masks = bool(meta.get("labels", {}).get("present", False))
    for m in range(int(meta["moments_per_sample"])):
        names.append(foa_member(m))
        if meta.get("equirect_size"):
            names.append(equirect_member(m))
        for k in range(k_views):
            names.append(clip_member(m, k))
            for r in meta["renders"]:
                names.append(render_member(m, k, r))
            if has_masks:
                names += [seg_member(m, k), conf_member(m, k), seg_member(m, k, True), conf_member(m, k, True)]
    return names


# ------------------------------------------------------------------------------------------- meta schema

#: Every top-level ``meta.json`` field (``member_sha256`` and ``meta_sha256`` from format_version 2 on).
META_FIELDS = frozenset({
    "format_version", "key", "video_id", "split", "moment", "source", "moments_per_sample", "times",
    "frame_indices", "label_times", "viewpoints", "fps", "frames_per_clip", "crop_size", "sr", "audio_samples",
    "audio_scale", "audio_format", "audio_bits", "renders", "binaural", "labels", "equirect_size", "audio", "events",
})
CHECKSUM_FIELDS = frozenset({"member_sha256", "meta_sha256"})
#: Fields that format_version 1 samples do not have.
V2_FIELDS = CHECKSUM_FIELDS | {"audio", "events"}


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_num(x: object) -> bool:
    return (isinstance(x, (int, float)) and not isinstance(x, bool)) and math.isfinite(x)


def meta_problems(meta: object, strict: bool = True) -> list[str]:
    """Every way ``meta`` (a decoded ``meta.json``) breaks the schema of docs/FORMAT.md, as one line each.

    Types and ranges of every field a reader uses are checked, and their consistency (M times, K viewpoints,
    ``key == video_id/moment``), within the format's hard limits (``MAX_*``): an empty list means a reader may
    size its buffers from ``meta`` (:func:`member_shape`). ``strict`` also flags unknown or missing
    informational fields and, from format_version 2 on, missing checksums (what ``avsa-data verify`` reports;
    readers check only what they use).
    """
    return _schema_problems(meta, strict)[0]


def meta_check(meta: object) -> tuple[list[str], bool]:
    """One pass of the schema for ``avsa-data verify``: (the strict :func:`meta_problems`, whether a reader may
    use ``meta``, i.e. whether ``meta_problems(meta, strict=False)`` is empty)."""
    problems, strict_only = _schema_problems(meta, strict=True)
    return problems, len(problems) == strict_only


def _schema_problems(meta: object, strict: bool) -> tuple[list[str], int]:
    """:func:`meta_problems`, and how many of them only ``strict`` reports (the others are the same lines,
    in the same order, that ``strict=False`` gives). The checks run in the order of their lines."""
    if not isinstance(meta, dict):
        return [f"meta.json must be a JSON object, got {type(meta).__name__}"], 0
    c = _MetaCheck(meta)
    version = meta.get("format_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        c.bad("format_version", f"one of {READABLE_VERSIONS} (this reader's versions)")
        return c.out, 0  # a different layout: the other fields mean nothing
    _check_identity(c)
    m, t = _check_clip_fields(c)
    sr, n = _check_audio_fields(c, version)
    _check_labels(c, strict)
    _check_viewpoints(c)
    _check_equirect(c)
    _check_moment_lists(c, m, t)
    if sr is not None and n is not None and n > 600 * sr:
        c.out.append(f"meta.json audio_samples {n} is more than 10 minutes at {sr} Hz")
    if strict:
        _check_informational_fields(c, version)
    _check_checksums(c)
    return c.out, c.strict_only


class _MetaCheck:
    """The problems found so far in one decoded ``meta.json`` (``out``, one line each; ``strict_only`` of them
    only a strict check reports), and the typed-field checks that add them."""

    def __init__(self, meta: dict) -> None:
        self.meta = meta
        self.out: list[str] = []
        self.strict_only = 0

    def bad(self, name: str, want: str) -> None:
        text = repr(self.meta[name]) if name in self.meta else "nothing (missing)"
        self.out.append(f"meta.json {name} must be {want}, got {text[:80] + '…' if len(text) > 80 else text}")

    def int_field(self, name: str, lo: int, hi: int) -> int | None:
        v = self.meta.get(name)
        if not _is_int(v) or not lo <= v <= hi:
            self.bad(name, f"an integer in {lo}..{hi}")
            return None
        return v

    def num_field(self, name: str, lo: float, hi: float, lo_open: bool = False) -> float | None:
        v = self.meta.get(name)
        if not _is_num(v) or not (lo < v if lo_open else lo <= v) or v > hi:
            self.bad(name, f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
            return None
        return float(v)

    def list_of(self, name: str, n: int | None, ok, want: str) -> list | None:
        v = self.meta.get(name)
        if not isinstance(v, list) or (n is not None and len(v) != n) or not all(ok(x) for x in v):
            self.bad(name, f"a list of {n if n is not None else ''} {want}".replace("  ", " "))
            return None
        return v


def _check_identity(c: _MetaCheck) -> None:
    """``key``, ``video_id``, ``split``, ``moment``, and ``key == video_id/moment``."""
    meta = c.meta
    key, vid, split, moment = meta.get("key"), meta.get("video_id"), meta.get("split"), meta.get("moment")
    if not isinstance(key, str) or not KEY_RE.match(key):
        c.bad("key", "'{video_id}/{moment:06d}'")
    if not isinstance(vid, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", vid):
        c.bad("video_id", "a string of [A-Za-z0-9_-]")
    if not isinstance(split, str) or not re.fullmatch(r"[A-Za-z0-9_-]+", split):
        c.bad("split", "a string of [A-Za-z0-9_-]")
    if not _is_int(moment) or moment < 0:
        c.bad("moment", "an integer ≥ 0")
    elif isinstance(key, str) and isinstance(vid, str) and key != sample_key(vid, moment):
        c.out.append(f"meta.json key {key!r} != video_id/moment {sample_key(vid, moment)!r}")


def _check_clip_fields(c: _MetaCheck) -> tuple[int | None, int | None]:
    """``moments_per_sample`` (M), ``frames_per_clip`` (T), ``fps``, ``crop_size`` and the size a clip decodes
    to; returns (M, T), each ``None`` when bad."""
    m = c.int_field("moments_per_sample", 1, MAX_MOMENTS)
    t = c.int_field("frames_per_clip", 1, MAX_FRAMES_PER_CLIP)
    c.num_field("fps", 0.0, 1000.0, lo_open=True)
    crop = c.meta.get("crop_size")
    if not (isinstance(crop, list) and len(crop) == 2 and all(_is_int(x) and 1 <= x <= MAX_CROP for x in crop)):
        c.bad("crop_size", f"[H, W] integers in 1..{MAX_CROP}")
    elif t is not None and t * crop[0] * crop[1] * 3 > MAX_DECODED_BYTES:
        c.out.append(f"meta.json frames_per_clip × crop_size ({t}×{crop[0]}×{crop[1]}) decodes to more than "
                     f"{MAX_DECODED_BYTES >> 20} MiB")
    return m, t


def _check_audio_fields(c: _MetaCheck, version: int) -> tuple[int | None, int | None]:
    """``sr``, ``audio_samples``, ``audio_scale``, ``audio_bits``, ``audio_format``, ``renders``, ``binaural`` and
    ``audio``; returns (sr, audio_samples), each ``None`` when bad."""
    meta = c.meta
    sr = c.int_field("sr", 1, MAX_SR)
    n = c.int_field("audio_samples", 1, MAX_DECODED_BYTES // 16)  # 4 channels of float32
    scale = meta.get("audio_scale")
    if not _is_num(scale) or scale <= 0 or math.frexp(scale)[0] != 0.5 or not 2.0**-8 <= scale <= 2.0**16:
        c.bad("audio_scale", "a power of two in [2^-8, 2^16] (a number)")
    if meta.get("audio_bits") not in (16, 24) or isinstance(meta.get("audio_bits"), bool):
        c.bad("audio_bits", "16 or 24")
    if meta.get("audio_format") != "ambix":
        c.bad("audio_format", "'ambix'")
    renders = meta.get("renders")
    if not (isinstance(renders, list) and (renders or version >= 3)
            and all(isinstance(r, str) and r in RENDERS for r in renders) and len(set(renders)) == len(renders)):
        c.bad("renders", f"a list of distinct renders from {RENDERS}" + (" (format 3: may be empty)" if version >= 3
                                                                           else ", not empty"))
    binaural = meta.get("binaural")
    if not (isinstance(binaural, dict) and binaural.get("mode") in BINAURAL_MODES
            and isinstance(binaural.get("sofa"), (str, type(None)))):
        c.bad("binaural", f"{{mode: one of {BINAURAL_MODES}, sofa: a path or null}}")
    audio = meta.get("audio")
    if "audio" in meta and not (isinstance(audio, dict) and isinstance(audio.get("channel_order"), dict)):
        c.bad("audio", "an object with 'channel_order' (render → channel names)")
    return sr, n


def _check_labels(c: _MetaCheck, strict: bool) -> None:
    """``labels.present``; strictly also its ``classes`` and ``confidence_threshold``."""
    labels = c.meta.get("labels")
    if not (isinstance(labels, dict) and isinstance(labels.get("present"), bool)):
        c.bad("labels", "an object with a boolean 'present'")
    elif strict and not (isinstance(labels.get("classes", {}), dict) and _is_num(labels.get("confidence_threshold"))):
        c.bad("labels", "an object with 'classes' (id → name) and a numeric 'confidence_threshold'")
        c.strict_only += 1


def _check_viewpoints(c: _MetaCheck) -> None:
    """``viewpoints``: 1..MAX_VIEWS records ``{azimuth, elevation, hfov, vfov}`` in degrees (the first bad one)."""
    views = c.meta.get("viewpoints")
    if not isinstance(views, list) or not 1 <= len(views) <= MAX_VIEWS:
        c.bad("viewpoints", f"a list of 1..{MAX_VIEWS} viewpoints")
        return
    for i, v in enumerate(views):
        ok = isinstance(v, dict) and set(v) == {"azimuth", "elevation", "hfov", "vfov"} and all(
            _is_num(v[f]) for f in v)
        if not ok or not (-360 <= v["azimuth"] <= 360 and -90 <= v["elevation"] <= 90
                          and 0 < v["hfov"] < 180 and 0 < v["vfov"] < 180):
            c.out.append(f"meta.json viewpoints[{i}] must be {{azimuth, elevation, hfov, vfov}} in degrees "
                         f"(|az| ≤ 360, |el| ≤ 90, 0 < fov < 180), got {str(v)[:80]}")
            break


def _check_equirect(c: _MetaCheck) -> None:
    """``equirect_size``: null or a [W, H] that decodes within the limits."""
    eq = c.meta.get("equirect_size")
    if eq is not None and not (isinstance(eq, list) and len(eq) == 2 and all(_is_int(x) and x >= 1 for x in eq)
                               and eq[0] <= MAX_EQUIRECT_WIDTH and eq[0] * eq[1] * 3 <= MAX_DECODED_BYTES):
        c.bad("equirect_size", f"null or [W, H] integers with W ≤ {MAX_EQUIRECT_WIDTH}")


def _check_moment_lists(c: _MetaCheck, m: int | None, t: int | None) -> None:
    """``times``, ``label_times`` and ``frame_indices``: one entry per moment (M), clips of T frames (checked
    only when M, and T, are good)."""
    if m is None:
        return
    c.list_of("times", m, _is_num, "moment times (s)")
    c.list_of("label_times", m, _is_num, "times (s)")
    fi = c.list_of("frame_indices", m, lambda x: isinstance(x, list) and len(x) == 2 and all(map(_is_int, x)),
                   "[start, stop) frame index pairs")
    if fi is not None and t is not None and any(b - a != t for a, b in fi):
        c.out.append(f"meta.json frame_indices {fi[:4]} do not span frames_per_clip = {t} frames")


def _check_informational_fields(c: _MetaCheck, version: int) -> None:
    """Strict only: ``source``, unknown fields and missing ones (checksums from format_version 2 on)."""
    meta, out = c.meta, c.out
    before = len(out)
    if not isinstance(meta.get("source"), dict):
        c.bad("source", "an object (path, audio, duration, width, height, fps)")
    allowed = META_FIELDS | (CHECKSUM_FIELDS if version >= 2 else frozenset())
    required = (META_FIELDS | CHECKSUM_FIELDS) if version >= 2 else META_FIELDS - V2_FIELDS
    out += [f"meta.json has an unknown field {f!r}" for f in sorted(set(meta) - allowed)]
    out += [f"meta.json lacks the field {f!r}" for f in sorted(required - set(meta))
            if not any(f"meta.json {f} must" in p for p in out)]
    c.strict_only += len(out) - before


def _check_checksums(c: _MetaCheck) -> None:
    """``member_sha256`` (an object of sha256 hex strings, bounded) and ``meta_sha256``, when present."""
    meta = c.meta
    sums = meta.get("member_sha256")
    if "member_sha256" in meta and not (isinstance(sums, dict) and len(sums) <= 16 * MAX_MOMENTS * MAX_VIEWS and all(
            isinstance(k, str) and isinstance(h, str) and _HEX64.match(h) for k, h in sums.items())):
        c.bad("member_sha256", "an object {member suffix: sha256 hex}")
    ms = meta.get("meta_sha256")
    if "meta_sha256" in meta and not (isinstance(ms, str) and _HEX64.match(ms)):
        c.bad("meta_sha256", "a sha256 hex string")


def member_shape(meta: dict, suffix: str) -> tuple[int, ...]:
    """Decoded shape of member ``suffix`` of a sample whose ``meta`` passed :func:`meta_problems`.

    Clip JPEG ``(T·H, W, 3)`` (frames tiled vertically), equirect JPEG ``(H, W, 3)``, FLAC ``(channels,
    audio_samples)``, PNG mask ``(H, W)``. Readers compare a member's header with it before decoding.
    """
    parts = suffix.split(".")
    ch, cw = meta["crop_size"]
    if parts[-1] == "jpg":
        if parts[1] == "equirect":
            w, h = meta["equirect_size"] or (0, 0)
            return (h, w, 3)
        return (meta["frames_per_clip"] * ch, cw, 3)
    if parts[-1] == "flac":
        render = "foa" if len(parts) == 3 else parts[2]
        return (RENDER_CHANNELS[render], meta["audio_samples"])
    if parts[-1] == "png":
        return (SEG_LOWRES, SEG_LOWRES) if parts[2].endswith(str(SEG_LOWRES)) else (ch, cw)
    raise ValueError(f"unknown member {suffix!r}")
