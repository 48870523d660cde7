"""The shard format's names and schema (docs/FORMAT.md is the prose specification of this module).

A shard is a POSIX tar of WebDataset samples. A sample's key is ``{video_id}/{moment:06d}``; its members
are ``{key}.{suffix}`` with the suffixes built here. Video ids are sanitised to ``[A-Za-z0-9_-]`` so keys
contain no dots (WebDataset splits member names at the first dot of the base name).
"""

from __future__ import annotations

import re

#: Version of the shard layout. Bump on any change a reader could notice.
FORMAT_VERSION = 2

RENDERS = ("foa", "mono", "stereo")
RENDER_CHANNELS = {"foa": 4, "mono": 1, "stereo": 2}
#: Confidence threshold of seed §A.2: pixels below it are ignored at train and eval time.
CONFIDENCE_THRESHOLD = 0.75
#: Resolution of the segmentation target of seed §A.2 (FPN output).
SEG_LOWRES = 56

_ID_BAD = re.compile(r"[^A-Za-z0-9_-]+")
SHARD_RE = re.compile(r"^(?P<split>[A-Za-z0-9_-]+)-(?P<index>\d{6})\.tar$")


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
