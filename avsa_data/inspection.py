"""`avsa-data inspect`: a contact sheet of one sample, and its audio as WAV files.

The sheet has one row per viewpoint: first / middle / last frame of the crop clip, the mask overlay (low-
confidence pixels, confidence < 0.75, hatched), and a polar plot (azimuth seen from above, front up, left
to the left) of the **FOA energy direction** of the unrotated field versus every viewpoint's direction, and of
each rotated render's energy direction (which should sit at the front when the view looks at the source).
Sound-event labels (``meta.events``) are drawn too: a marker with the class name on every crop where the event
is ``in_view``, at the pixel its view-relative direction projects to, and a cross per event on the polar plot.
Needs matplotlib (``pip install matplotlib`` or the ``[plot]`` extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from . import ambisonics, events, shard_format
from .reader import RawSample, ShardFormatError, iter_samples

_PALETTE = np.array([[0, 0, 0], [230, 25, 75], [60, 180, 75], [255, 225, 25], [0, 130, 200], [245, 130, 48],
                     [145, 30, 180], [70, 240, 240], [240, 50, 230], [210, 245, 60], [250, 190, 212],
                     [0, 128, 128], [220, 190, 255], [170, 110, 40], [255, 250, 200], [128, 0, 0]], np.uint8)


def find_sample(shard: Path | str, key: str | None = None) -> RawSample:
    """The sample ``key`` of ``shard`` (a .tar path, a shard folder, or an fsspec URL of a .tar; the first sample
    when ``key`` is None, in a folder the first of its first shard)."""
    shards: list | str = shard if isinstance(shard, str) else [shard]
    if isinstance(shard, Path) and shard.is_dir():
        shards = sorted(p for p in shard.glob("*.tar") if shard_format.SHARD_RE.match(p.name))
        if not shards:
            raise FileNotFoundError(f"{shard}: no shards ({{split}}-NNNNNN.tar) in this folder")
    for s in iter_samples(shards):
        if key is None or s.key == key:
            return s
    raise ShardFormatError(f"{shard}: no sample with key {key!r}")


def overlay(frame: np.ndarray, seg: np.ndarray, conf: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """RGB frame blended with class colours; pixels with confidence < 0.75 keep the raw frame."""
    colours = _PALETTE[seg.astype(np.int64) % len(_PALETTE)].astype(np.float32)
    out = frame.astype(np.float32)
    lab = seg > 0
    out[lab] = (1 - alpha) * out[lab] + alpha * colours[lab]
    return np.clip(out, 0, 255).astype(np.uint8)


def contact_sheet(sample: RawSample, png: Path, moment: int = 0) -> Path:
    """Write the contact sheet of ``sample`` to ``png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = sample.meta
    views = meta["viewpoints"]
    k = len(views)
    fig = plt.figure(figsize=(11, 2.1 * k + 1))
    gs = fig.add_gridspec(k, 6)
    for i, v in enumerate(views):
        clip = sample.clip(i, moment)
        t = clip.shape[0]
        for j, fi in enumerate((0, t // 2, t - 1)):
            ax = fig.add_subplot(gs[i, j])
            ax.imshow(clip[fi])
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_ylabel(f"v{i}\naz {v['azimuth']:.0f}°\nel {v['elevation']:.0f}°\nhfov {v['hfov']:.0f}°",
                              fontsize=7)
            if i == 0:
                ax.set_title(f"frame {fi}", fontsize=8)
            _event_markers(ax, sample, i, moment, clip.shape[1:3])
        ax = fig.add_subplot(gs[i, 3])
        masks = sample.masks(i, moment)
        if masks is not None:
            seg, conf = masks
            ax.imshow(overlay(clip[t // 2], seg, conf))
            low = (conf < shard_format.CONFIDENCE_THRESHOLD).astype(float)
            if low.any():
                ax.contourf(low, levels=[0.5, 1.5], colors="none", hatches=["////"])
            ax.set_title("mask (hatched: conf<0.75)" if i == 0 else "", fontsize=7)
        else:
            ax.text(0.5, 0.5, "no labels", ha="center", va="center", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    pax = fig.add_subplot(gs[:, 4:], projection="polar")
    _direction_plot(pax, sample, moment)
    fig.suptitle(f"{sample.key}  t={meta['times'][moment]:.2f}s  ({Path(sample.shard).name})", fontsize=9)
    fig.tight_layout()
    png = Path(png)
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=80)
    plt.close(fig)
    return png


def event_pixels(sample: RawSample, view: int, moment: int,
                 crop_hw: tuple[int, int]) -> list[tuple[dict, float, float]]:
    """(event, column, row) of every event ``in_view`` of viewpoint ``view``: where it projects in the crop."""
    v = sample.meta["viewpoints"][view]
    out = []
    for e in sample.events(view, moment):
        if e["in_view"]:
            col, row = events.crop_pixel(e["azimuth"], e["elevation"], v["hfov"], v["vfov"], crop_hw)
            out.append((e, col, row))
    return out


def _event_markers(ax, sample: RawSample, view: int, moment: int, crop_hw: tuple[int, int]) -> None:
    ax.set_xlim(-0.5, crop_hw[1] - 0.5)
    ax.set_ylim(crop_hw[0] - 0.5, -0.5)
    for e, col, row in event_pixels(sample, view, moment, crop_hw):
        ax.plot(col, row, marker="o", ms=9, mfc="none", mec="white", mew=2)
        ax.plot(col, row, marker="+", ms=9, mec="black", mew=1)
        ax.annotate(e["class_name"][:14], (col, row), xytext=(4, 4), textcoords="offset points", fontsize=5,
                    color="white", backgroundcolor=(0, 0, 0, 0.4))


def _direction_plot(ax, sample: RawSample, moment: int) -> None:
    """Polar plot: theta = azimuth (front at top, left to the left), radius = 90 - elevation."""
    ax.set_theta_zero_location("N")
    ax.set_theta_direction(1)  # counter-clockwise = azimuth positive to the left
    ax.set_rlim(0, 180)
    ax.set_rticks([30, 90, 150])
    ax.set_yticklabels(["el 60", "el 0", "el -60"], fontsize=6)
    az, el = ambisonics.energy_direction(sample.foa(moment))
    ax.plot(np.deg2rad(az), 90 - el, "r*", ms=16, label="FOA energy direction")
    for i, v in enumerate(sample.meta["viewpoints"]):
        ax.plot(np.deg2rad(v["azimuth"]), 90 - v["elevation"], "bo", ms=5)
        ax.annotate(f"v{i}", (np.deg2rad(v["azimuth"]), 90 - v["elevation"]), fontsize=7)
        raz, rel = ambisonics.energy_direction(sample.audio(i, moment, "foa"))  # stored or made from the FOA
        # the rotated field's energy direction, mapped back to world azimuth for comparison
        ax.plot(np.deg2rad(v["azimuth"] + raz), 90 - (v["elevation"] + rel), "g.", ms=4)
    for e in sample.events(None, moment):
        ax.plot(np.deg2rad(e["azimuth"]), 90 - e["elevation"], "kx", ms=9, mew=2)
        ax.annotate(f"{e['class_name'][:14]}#{e['track']}", (np.deg2rad(e["azimuth"]), 90 - e["elevation"]),
                    fontsize=6, color="black")
    ax.set_title("energy direction (red) vs viewpoints (blue)\n(green: per-view rotated FOA, mapped back; "
                 "black x: labelled sound events)", fontsize=7)


def write_wavs(sample: RawSample, out_dir: Path, moment: int = 0) -> list[Path]:
    """The unrotated FOA and every viewpoint's renders as 32-bit float WAVs in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sr = int(sample.meta["sr"])
    stem = sample.key.replace("/", "_")
    paths = [out_dir / f"{stem}.m{moment:02d}.foa_unrotated.wav"]
    sf.write(paths[0], sample.foa(moment).T, sr, subtype="FLOAT")
    for i in range(sample.num_views):
        for r in shard_format.RENDERS:
            p = out_dir / f"{stem}.m{moment:02d}.v{i:02d}.{r}.wav"
            sf.write(p, sample.audio(i, moment, r).T, sr, subtype="FLOAT")
            paths.append(p)
    return paths
