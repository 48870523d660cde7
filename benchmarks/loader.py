"""Training-sample throughput: shards against an on-the-fly baseline that does the reference's work per sample.

    python benchmarks/loader.py [--videos 4 --duration 10 --size 1920x960 --samples 40 --views 4]

Both sides produce the same training item, in one process (samples per second **per worker**), alternately
(A B A B …) with the ratio taken pair by pair:

* **shards** (avsa): read the next sample from a shard, draw V of its K = 8 viewpoints, decode their JPEG clips
  and FLAC renders, colour-jitter / flip / volume-jitter (``avsa_train.data.decode_item``).
* **on the fly** (what the reference's data loader does for every sample): seek into the mp4 and decode the
  0.5 s window at 16 fps with one ffmpeg call (``-ss`` before ``-i``: a keyframe seek, not a decode from the
  start), decode the 1 s audio window the same way, sample V viewpoints, take V NFOV crops of 8 frames
  (one precomputed grid per view, vectorised over frames), rotate the FOA and render mono and stereo for each
  view. It uses the same optimised avsa_data functions as the shard builder, so it is not a straw man.

Writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avsa_data import media
from avsa_data.crops import CropGrid
from avsa_data.rng import rng_for
from avsa_data.samples import render_view_audio
from avsa_data.viewpoints import sample_random

HERE = Path(__file__).resolve().parent


def on_the_fly_item(video: Path, t: float, views: int, seed: int, w: int, h: int) -> dict:
    """One training item computed from the raw mp4, as the reference loader does."""
    exe = media.ffmpeg_exe()
    start = max(t - 0.25, 0.0)
    raw = subprocess.run([exe, "-nostdin", "-v", "error", "-ss", f"{start:.3f}", "-i", str(video), "-t", "0.5",
                          "-vf", "fps=16", "-frames:v", "8", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)[:8]
    aud = subprocess.run([exe, "-nostdin", "-v", "error", "-ss", f"{max(t - 0.5, 0):.3f}", "-i", str(video), "-t",
                          "1.0", "-vn", "-ac", "4", "-ar", "24000", "-f", "f32le", "pipe:"],
                         capture_output=True, check=True).stdout
    foa = np.frombuffer(aud, np.float32).reshape(-1, 4).T
    rng = rng_for(seed, video.stem, int(t * 1000))
    bank = sample_random(rng, views)
    clips, audio = [], []
    for v in bank:
        clips.append(CropGrid(v).sample(frames))
        r = render_view_audio(foa, v, ("foa", "mono", "stereo"), 24000, "virtual-mic")
        audio.append(r["foa"])
    return {"video": np.stack(clips), "audio": np.stack(audio)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--size", default="1920x960")
    ap.add_argument("--samples", type=int, default=40, help="items per timed run")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    args = ap.parse_args()

    from avsa_train.data import StreamConfig, decode_item, iter_epoch_raw

    work = args.work or Path(tempfile.mkdtemp(prefix="avsa-loader-"))
    raw, shards = work / "raw", work / "shards_loader"
    if not raw.exists():
        subprocess.run([sys.executable, "-m", "cli.data", "synth", "--out", str(raw), "--videos", str(args.videos),
                        "--duration", str(args.duration), "--size", args.size, "--val-fraction", "0"], check=True)
    if not (shards / "manifest.json").exists():
        shutil.rmtree(shards, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "cli.data", "shard", "--src", str(raw), "--out", str(shards),
                        "--stride", "0.5", "-q", "-j", str(os.cpu_count() or 1)], check=True)
    urls = sorted(str(p) for p in shards.glob("*.tar"))
    videos = sorted(raw.glob("*.mp4"))
    w, h = (int(x) for x in args.size.split("x"))
    cfg = StreamConfig(views=args.views, audio_format="ambi", batch_size=1, shuffle_buffer=1)
    times = [0.5 + 0.5 * i for i in range(int((args.duration - 1) / 0.5) + 1)]
    jobs = [(v, t) for t in times for v in videos][: args.samples]

    def run_shards() -> float:
        t0 = time.perf_counter()
        n = 0
        while n < args.samples:
            for s in iter_epoch_raw(urls, 0, 0, 0, 1, False, 1):
                decode_item(s, cfg, 0)
                n += 1
                if n >= args.samples:
                    break
        return n / (time.perf_counter() - t0)

    def run_fly() -> float:
        t0 = time.perf_counter()
        for v, t in jobs:
            on_the_fly_item(v, t, args.views, 0, w, h)
        return len(jobs) / (time.perf_counter() - t0)

    ratios, a, b = [], [], []
    for _ in range(args.repeats):
        sa, sb = run_shards(), run_fly()
        a.append(sa)
        b.append(sb)
        ratios.append(sa / sb)
    result = {
        "benchmark": "loader",
        "machine": {"platform": platform.platform(), "python": sys.version.split()[0], "cpus": os.cpu_count()},
        "config": {k: str(v) for k, v in vars(args).items()},
        "shards_samples_per_s_median": round(statistics.median(a), 2),
        "on_the_fly_samples_per_s_median": round(statistics.median(b), 2),
        "ratio_median": round(statistics.median(ratios), 2),
        "ratio_min_max": [round(min(ratios), 2), round(max(ratios), 2)],
        "target": ">= 50x",
    }
    out = HERE / "results" / "loader.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{'side':12} {'samples/s/worker':>18}")
    print(f"{'shards':12} {result['shards_samples_per_s_median']:>18.2f}")
    print(f"{'on the fly':12} {result['on_the_fly_samples_per_s_median']:>18.2f}")
    print(f"ratio (median of pairs): {result['ratio_median']}×  (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
