"""Broken inputs for testing readers (``avsa-data synth --corrupt``): each one must make the matching
:mod:`avsa_data.media` reader raise :class:`~avsa_data.media.MediaError` with a one-line reason.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import media
from ..fsutil import atomic_write_bytes
from ..rng import rng_for
from .config import SynthConfig
from .paint import iter_frames
from .scene import Scene, Source
from .sound import render_foa

#: Corrupt variants: name → (file name, :class:`avsa_data.media.MediaError` kind a reader must raise).
CORRUPT_VARIANTS: dict[str, tuple[str, str]] = {
    "truncated": ("corrupt_truncated.mp4", "truncated"),
    "no_audio": ("corrupt_no_audio.mp4", "no_audio"),
    "stereo": ("corrupt_stereo.mp4", "channels"),
    "short_audio": ("corrupt_short_audio.mp4", "duration"),
    "unreadable": ("corrupt_unreadable.mp4", "unreadable"),
}


_FTYP = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"


def write_corrupt_variants(out_dir: str | os.PathLike, seed: int) -> dict[str, Path]:
    """Write one broken input per :data:`CORRUPT_VARIANTS` entry into ``out_dir`` and return name → path.

    * ``truncated``: a valid 256×128 mp4 (index at the front) cut to 60 % of its bytes;
    * ``no_audio``: video only, no sidecar;
    * ``stereo``: a 2-channel audio track where 4 are expected;
    * ``short_audio``: 4 s of video with 0.5 s of audio;
    * ``unreadable``: an MP4 ``ftyp`` box followed by 4096 random bytes, named ``.mp4``.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = SynthConfig(
        videos=1, duration=2.0, seed=seed, size=(256, 128), fps=8.0, sr=16000, audio_codec="pcm", snr_db=30.0
    )
    scene = Scene("corrupt", seed, (Source(class_id=1, az=30.0, el=10.0, radius=15.0),))
    foa, _ = render_foa(scene, cfg)
    paths = {name: out / fname for name, (fname, _) in CORRUPT_VARIANTS.items()}

    full = out / ".corrupt_full.mp4"
    media.write_video(full, iter_frames(scene, cfg), cfg.fps, cfg.size, audio=foa, sr=cfg.sr, audio_codec="pcm")
    data = full.read_bytes()
    full.unlink()
    atomic_write_bytes(paths["truncated"], data[: int(len(data) * 0.6)])

    media.write_video(paths["no_audio"], iter_frames(scene, cfg), cfg.fps, cfg.size)
    media.write_video(
        paths["stereo"], iter_frames(scene, cfg), cfg.fps, cfg.size, audio=foa[:2], sr=cfg.sr, audio_codec="pcm"
    )
    long_cfg = replace(cfg, duration=4.0)
    media.write_video(
        paths["short_audio"],
        iter_frames(scene, long_cfg),
        cfg.fps,
        cfg.size,
        audio=foa[:, : cfg.sr // 2],
        sr=cfg.sr,
        audio_codec="pcm",
    )
    # An MP4 file-type box, so that no other demuxer claims the file, then random bytes.
    junk = rng_for(seed, "corrupt", "unreadable").integers(0, 256, 4096, dtype=np.uint8).tobytes()
    atomic_write_bytes(paths["unreadable"], _FTYP + junk)
    return paths
