"""Training-sample throughput: shards against an on-the-fly baseline that does the reference's work per sample.

    python benchmarks/loader.py [--videos 4 --duration 10 --size 1920x960 --samples 40 --views 4]
        [--work DIR --result benchmarks/results/loader.json]

Both sides produce the same training item, in one process (samples per second **per worker**), alternately
(A B A B …) with the ratio taken pair by pair:

* **shards** (avsa): read the next sample from a shard, passing over the members the item never reads (as
  ``ShardStream`` does: ``member_wanted``, ``prune_members``), draw V of its K = 8 viewpoints, decode their
  JPEG clips and the moment's unrotated FOA, rotate it to each view (``avsa_train.data.members.derived``),
  colour-jitter /
  flip / volume-jitter and normalise (``avsa_train.data.items.decode_item``). Two paths, each paired with the same
  round's baseline: **CPU training** (the worker makes normalised float32 clips) and **GPU training**
  (``video_on_device``: the worker ships uint8 clips and a 3×4 colour transform; ``model_video`` applies them
  on the device for the whole batch; its cost, measured here on the CPU, is reported beside as
  ``device_normalisation``).
* **on the fly** (what the reference's data loader does for every sample): seek into the mp4 and decode the
  0.5 s window at 16 fps with one ffmpeg call (``-ss`` before ``-i``: a keyframe seek, not a decode from the
  start), decode the 1 s audio window the same way, sample V viewpoints, take V NFOV crops of 8 frames
  (one precomputed grid per view, vectorised over frames), rotate the FOA and render mono and stereo for each
  view. It uses the same optimised avsa_data functions as the shard builder, so it is not a straw man.

The timed process runs with the settings of a ``make_loader`` worker (``--process-settings worker``,
``avsa_train.data.batches.loader_worker_init``: glibc reuses freed decode buffers instead of faulting them in again,
and numpy's BLAS runs on one thread, whose idle pool would otherwise spin on the second core), for both
sides; ``--process-settings default`` keeps the libraries' defaults (as the results before issue 17's loader
pass were measured).
Each timed run also records the CPU seconds it used (this process + the ffmpeg children it waited for): on a
shared machine the wall-clock ratio moves with the neighbours' load, the CPU cost per sample much less. Note
that ffmpeg decodes with several threads, so the on-the-fly side can use more than one core per worker. The
shard side's minor page faults and system CPU per sample are recorded too.

After the paired runs, one instrumented pass over each side splits the CPU time per sample into stages
(``breakdown_cpu_ms_per_sample``; stages are timed separately, so this is a guide to where the time goes, not a
second measurement of the ratio):

* shards: ``read`` (tar members of one sample, the unwanted ones seeked over), ``jpeg`` (V clips), ``flac``
  (the unrotated FOA, its ``audio_scale`` multiply, and the V rotations, flip and gain as one matrix
  product), ``video_float`` (uint8 → normalised float32 with the fused colour jitter and flip, channels-first;
  GPU path: ``video_uint8``, the flipped uint8 clips stacked), ``rest`` (``decode_item`` minus those stages:
  draws, and the cold-cache cost of the first decode, since the stages are re-timed on the same sample after it);
* on the fly: ``ffmpeg_video`` (seek + decode 8 frames), ``ffmpeg_audio`` (seek + decode 1 s of FOA),
  ``crops`` (V NFOV crops), ``audio_render`` (V rotations + mono + stereo renders).

Then ``allocator_ab`` runs the shard side's worker loop (read + ``decode_item``) in fresh processes with glibc's
default allocator thresholds and with ``avsa_train.allocator.keep_freed_buffers`` (what ``make_loader``'s workers
use), alternately (both with one BLAS thread, as a worker), and ``--soak N`` runs N items in one such worker,
recording its RSS every N/20 items.

Writes benchmarks/results/loader.json.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from avsa_data import media
from avsa_data.crops import CropGrid
from avsa_data.renders import render_view
from avsa_data.rng import rng_for
from avsa_data.viewpoints import sample_random

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import add_synth_options, cpu_s, load_average, machine  # noqa: E402


def on_the_fly_item(video: Path, t: float, views: int, seed: int, w: int, h: int, clock: dict | None = None) -> dict:
    """One training item computed from the raw mp4, as the reference loader does.

    ``clock`` (optional) accumulates the CPU seconds of each stage (ffmpeg_video, ffmpeg_audio, crops,
    audio_render).
    """
    exe = media.ffmpeg_exe()
    t0 = cpu_s()
    start = max(t - 0.25, 0.0)
    raw = subprocess.run([exe, "-nostdin", "-v", "error", "-ss", f"{start:.3f}", "-i", str(video), "-t", "0.5",
                          "-vf", "fps=16", "-frames:v", "8", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"],
                         capture_output=True, check=True).stdout
    frames = np.frombuffer(raw, np.uint8).reshape(-1, h, w, 3)[:8]
    t1 = cpu_s()
    aud = subprocess.run([exe, "-nostdin", "-v", "error", "-ss", f"{max(t - 0.5, 0):.3f}", "-i", str(video), "-t",
                          "1.0", "-vn", "-ac", "4", "-ar", "24000", "-f", "f32le", "pipe:"],
                         capture_output=True, check=True).stdout
    foa = np.frombuffer(aud, np.float32).reshape(-1, 4).T
    t2 = cpu_s()
    rng = rng_for(seed, video.stem, int(t * 1000))
    bank = sample_random(rng, views)
    clips, audio = [], []
    crops = render = 0.0
    for v in bank:
        ta = time.process_time()
        clips.append(CropGrid(v).sample(frames))
        tb = time.process_time()
        r = render_view(foa, v, ("foa", "mono", "stereo"), 24000, "virtual-mic")
        audio.append(r["foa"])
        crops += tb - ta
        render += time.process_time() - tb
    if clock is not None:
        for k, dt in (("ffmpeg_video", t1 - t0), ("ffmpeg_audio", t2 - t1), ("crops", crops), ("audio_render", render)):
            clock[k] = clock.get(k, 0.0) + dt
    return {"video": np.stack(clips), "audio": np.stack(audio)}


def shard_breakdown(urls: list[str], cfg, n: int) -> dict:
    """CPU milliseconds per sample of each stage of the shard side (see the module docstring), over ``n``
    samples: ``read`` and ``decode_item`` as the timed runs do them, then the decoding stages again on the same
    sample (``rest`` = ``decode_item`` minus those stages, so the total is read + ``decode_item``)."""
    from avsa_train.data import augment, items, members, partition

    video_stage = "video_uint8" if cfg.video_on_device else "video_float"
    clock = dict.fromkeys(("read", "jpeg", "flac", video_stage, "decode_item"), 0.0)
    def forever():  # the shards again from the start when ``n`` exceeds their samples, as the timed runs do
        while True:
            yield from partition.iter_epoch_raw(urls, 0, 0, 0, 1, False, 1,
                                                map_sample=lambda s: members.prune_members(s, cfg),
                                                wanted=members.member_wanted(cfg))

    it = forever()
    for _ in range(n):
        t0 = time.process_time()
        s = next(it)
        t1 = time.process_time()
        item = items.decode_item(s, cfg, 0)
        t2 = time.process_time()
        views = item["views"].tolist()
        clips = [[s.clip(k, 0) for k in views]]
        t3 = time.process_time()
        items.view_audio(s, views, 0, cfg.audio_format, True, 1.05)
        t4 = time.process_time()
        if cfg.video_on_device:
            augment._stack_clips(clips, True)
        else:
            jitter = augment._jitter_affine(np.random.default_rng(0), augment.COLOUR_JITTER, augment.HUE_JITTER)
            augment._finish_video(clips, augment.colour_transform(jitter), True)
        t5 = time.process_time()
        del item, clips  # as the timed runs, which drop each item before the next one
        for k, dt in (("read", t1 - t0), ("decode_item", t2 - t1), ("jpeg", t3 - t2), ("flac", t4 - t3),
                      (video_stage, t5 - t4)):
            clock[k] += dt
    ms = {k: 1000 * v / n for k, v in clock.items()}
    ms["rest"] = ms.pop("decode_item") - ms["jpeg"] - ms["flac"] - ms[video_stage]
    return _rounded_with_total(ms)


_CHILD = r"""
import json, resource, sys, time
sys.path[:0] = [{root!r}]
from avsa_train.data.items import decode_item
from avsa_train.data.members import member_wanted, prune_members
from avsa_train.data.partition import iter_epoch_raw
from avsa_train.data.stream_config import StreamConfig
from threadpoolctl import threadpool_limits
threadpool_limits(1, user_api="blas")  # as a loader worker (after numpy's import: it limits loaded libraries)
if {keep}:  # the A/B: glibc's thresholds
    from avsa_train.allocator import keep_freed_buffers
    keep_freed_buffers()
cfg = StreamConfig(views={views}, audio_format="ambi", batch_size=1, shuffle_buffer=1)
urls, n, soak_every = {urls!r}, {n}, {soak_every}
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
def items():
    while True:
        yield from iter_epoch_raw(urls, 0, 0, 0, 1, False, 1, keep=lambda s: prune_members(s, cfg),
                                  wanted=member_wanted(cfg))
it = items()
for _ in range(10):  # warm up: imports, first-touch of the caches
    decode_item(next(it), cfg, 0)
r0, c0, rss = resource.getrusage(resource.RUSAGE_SELF), time.process_time(), []
for i in range(n):
    decode_item(next(it), cfg, 0)
    if soak_every and (i + 1) % soak_every == 0:
        rss.append([i + 1, round(rss_mb(), 1)])
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"cpu_ms": 1000 * (time.process_time() - c0) / n, "faults": (r1.ru_minflt - r0.ru_minflt) / n,
                  "sys_ms": 1000 * (r1.ru_stime - r0.ru_stime) / n, "rss_MB": rss,
                  "peak_rss_MB": round(r1.ru_maxrss / 1024, 1)}}))
"""


def loader_worker(urls: list[str], views: int, n: int, keep: bool, soak_every: int = 0) -> dict:
    """One loader worker's loop (read + ``decode_item``) over ``n`` items in a fresh process: CPU ms and minor
    page faults per item, with glibc's default allocator thresholds or ``avsa_train.allocator``'s; with
    ``soak_every`` its RSS every so many items and its peak RSS."""
    code = _CHILD.format(root=str(HERE.parent), keep=keep, views=views, urls=urls, n=n, soak_every=soak_every)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def allocator_ab(urls: list[str], views: int, n: int, repeats: int) -> dict:
    """glibc defaults against ``keep_freed_buffers`` in the loader worker loop, alternately, pair by pair."""
    rows: dict[str, list] = {"default": [], "keep": []}
    for _ in range(repeats):
        for k in rows:
            rows[k].append(loader_worker(urls, views, n, k == "keep"))
    med = {k: {m: round(statistics.median(r[m] for r in v), 2) for m in ("cpu_ms", "faults", "sys_ms")}
           for k, v in rows.items()}
    ratio = [a["cpu_ms"] / b["cpu_ms"] for a, b in zip(rows["default"], rows["keep"])]
    return {"items": n, "rounds": repeats, **med, "cpu_default_over_keep_median": round(statistics.median(ratio), 3)}


def device_normalisation_cost(urls: list[str], cfg, batch: int = 8, rounds: int = 5) -> dict:
    """CPU ms per item of :func:`avsa_train.data.augment.model_video` on batches of ``batch`` uint8 items, here on the
    CPU (torch's threads): the work the GPU path moves out of the loader workers onto the device."""
    import torch

    from avsa_train.data import augment, batches, items, members, partition

    it = partition.iter_epoch_raw(urls, 0, 0, 0, 1, False, 1, map_sample=lambda s: members.prune_members(s, cfg),
                          wanted=members.member_wanted(cfg))
    b = batches.collate([items.decode_item(next(it), cfg, 0) for _ in range(batch)])
    augment.model_video(b, torch.device("cpu"))  # warm-up
    times = []
    for _ in range(rounds):
        c0 = cpu_s()
        augment.model_video(b, torch.device("cpu"))
        times.append(1000 * (cpu_s() - c0) / batch)
    return {"batch": batch, "cpu_ms_per_item_median": round(statistics.median(times), 2),
            "torch_threads": torch.get_num_threads()}


def _rounded_with_total(ms: dict) -> dict:
    out = {k: round(v, 2) for k, v in ms.items()}
    out["total"] = round(sum(ms.values()), 2)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synth_options(ap)
    ap.add_argument("--samples", type=int, default=40, help="items per timed run")
    ap.add_argument("--views", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--result", type=Path, default=HERE / "results" / "loader.json", help="JSON to write")
    ap.add_argument("--soak", type=int, default=10_000, help="items of the loader-worker soak (0: none)")
    ap.add_argument("--allocator-items", type=int, default=200, help="items per allocator A/B run (0: none)")
    ap.add_argument("--process-settings", choices=["worker", "default"], default="worker",
                    help="settings of the timed process (both sides): 'worker' = those of a make_loader worker "
                         "(avsa_train.data.batches.loader_worker_init: glibc keeps freed buffers, numpy's BLAS on one "
                         "thread), 'default' = glibc's and OpenBLAS's defaults")
    args = ap.parse_args()
    if args.process_settings == "worker":
        from avsa_train.data.batches import loader_worker_init

        loader_worker_init(0)

    from avsa_train.data.items import decode_item
    from avsa_train.data.members import member_wanted, prune_members
    from avsa_train.data.partition import iter_epoch_raw
    from avsa_train.data.stream_config import StreamConfig

    work = args.work or Path(tempfile.mkdtemp(prefix="avsa-loader-"))
    raw, shards = work / "raw", work / "shards_loader"
    if not raw.exists():
        subprocess.run([sys.executable, "-m", "avsa_data", "synth", "--out", str(raw), "--videos", str(args.videos),
                        "--duration", str(args.duration), "--size", args.size, "--val-fraction", "0"], check=True)
    if not (shards / "manifest.json").exists():
        shutil.rmtree(shards, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "avsa_data", "shard", "--src", str(raw), "--out", str(shards),
                        "--stride", "0.5", "-q", "-j", str(os.cpu_count() or 1)], check=True)
    urls = sorted(str(p) for p in shards.glob("*.tar"))
    videos = sorted(raw.glob("*.mp4"))
    w, h = (int(x) for x in args.size.split("x"))
    cfg = StreamConfig(views=args.views, audio_format="ambi", batch_size=1, shuffle_buffer=1)
    times = [0.5 + 0.5 * i for i in range(int((args.duration - 1) / 0.5) + 1)]
    jobs = [(v, t) for t in times for v in videos][: args.samples]

    paths = {"cpu_training": cfg, "gpu_training": replace(cfg, video_on_device=True)}
    faults: dict[str, list] = {p: [] for p in paths}  # (minor page faults, system CPU ms) per sample, shard side

    def run_shards(path: str) -> tuple[float, float]:
        c = paths[path]
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0, c0 = time.perf_counter(), cpu_s()
        n = 0
        while n < args.samples:
            for s in iter_epoch_raw(urls, 0, 0, 0, 1, False, 1, keep=lambda s: prune_members(s, c),
                                    wanted=member_wanted(c)):
                decode_item(s, c, 0)
                n += 1
                if n >= args.samples:
                    break
        wall, cpu = time.perf_counter() - t0, cpu_s() - c0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        faults[path].append(((r1.ru_minflt - r0.ru_minflt) / n, 1000 * (r1.ru_stime - r0.ru_stime) / n))
        return n / wall, cpu / n

    def run_fly() -> tuple[float, float]:
        t0, c0 = time.perf_counter(), cpu_s()
        for v, t in jobs:
            on_the_fly_item(v, t, args.views, 0, w, h)
        return len(jobs) / (time.perf_counter() - t0), (cpu_s() - c0) / len(jobs)

    rows: dict[str, list] = {p: [] for p in (*paths, "on_the_fly")}  # (samples/s, CPU s per sample) per round
    mach = machine()
    for _ in range(args.repeats):  # A B C A B C …: each path paired with the baseline of its own round
        for path in paths:
            rows[path].append(run_shards(path))
        rows["on_the_fly"].append(run_fly())
    fly_clock: dict = {}
    for v, t in jobs:
        on_the_fly_item(v, t, args.views, 0, w, h, fly_clock)
    alloc = allocator_ab(urls, args.views, args.allocator_items, args.repeats) if args.allocator_items else None
    soak = loader_worker(urls, args.views, args.soak, True, max(1, args.soak // 20)) if args.soak else None
    breakdown = {
        "shards": shard_breakdown(urls, cfg, args.samples),
        "shards_gpu_training": shard_breakdown(urls, paths["gpu_training"], args.samples),
        "on_the_fly": _rounded_with_total({k: 1000 * s / len(jobs) for k, s in fly_clock.items()}),
    }

    def summary(path: str) -> dict:
        sps, cpu = [r[0] for r in rows[path]], [r[1] for r in rows[path]]
        ratios = [x[0] / f[0] for x, f in zip(rows[path], rows["on_the_fly"])]
        cpu_ratios = [f[1] / x[1] for x, f in zip(rows[path], rows["on_the_fly"])]  # samples per CPU-second
        return {
            "samples_per_s_median": round(statistics.median(sps), 2),
            "cpu_ms_per_sample_median": round(1000 * statistics.median(cpu), 2),
            "ratio_median": round(statistics.median(ratios), 2),
            "ratio_min_max": [round(min(ratios), 2), round(max(ratios), 2)],
            "cpu_ratio_median": round(statistics.median(cpu_ratios), 2),
            "cpu_ratio_min_max": [round(min(cpu_ratios), 2), round(max(cpu_ratios), 2)],
            "minor_page_faults_per_sample_median": round(statistics.median(f for f, _ in faults[path])),
            "system_cpu_ms_per_sample_median": round(statistics.median(s for _, s in faults[path]), 2),
        }

    cpu_path, gpu_path = summary("cpu_training"), summary("gpu_training")
    fly_sps = [r[0] for r in rows["on_the_fly"]]
    result = {
        "benchmark": "loader",
        "machine": mach | {"load_average_at_end": load_average()},
        "config": {k: str(v) for k, v in vars(args).items()},
        "target": ">= 50x",
        "on_the_fly_samples_per_s_median": round(statistics.median(fly_sps), 2),
        "on_the_fly_cpu_ms_per_sample_median": round(1000 * statistics.median(r[1] for r in rows["on_the_fly"]), 2),
        # the CPU-training path (float clips made in the worker), under the keys of earlier results
        **{("shards_" + k if not k.startswith(("ratio", "cpu_ratio")) else k): v for k, v in cpu_path.items()},
        "gpu_training_path": gpu_path | {
            "device_normalisation": device_normalisation_cost(urls, paths["gpu_training"])},
        "breakdown_cpu_ms_per_sample": breakdown,
        "allocator_ab": alloc,
        "soak": soak and {"items": args.soak, "peak_rss_MB": soak["peak_rss_MB"], "rss_MB_every": soak["rss_MB"],
                          "cpu_ms_per_item": round(soak["cpu_ms"], 2)},
    }
    out = args.result
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{'side':26} {'samples/s/worker':>18} {'CPU ms/sample':>14} {'ratio (min-max)':>22} {'per CPU-s':>10}")
    for name, r in (("shards, CPU training", cpu_path), ("shards, GPU training", gpu_path)):
        lo, hi = r["ratio_min_max"]
        print(f"{name:26} {r['samples_per_s_median']:>18.2f} {r['cpu_ms_per_sample_median']:>14.2f} "
              f"{r['ratio_median']:>10.2f}× ({lo:.2f}–{hi:.2f}) {r['cpu_ratio_median']:>9.2f}×")
    print(f"{'on the fly':26} {result['on_the_fly_samples_per_s_median']:>18.2f} "
          f"{result['on_the_fly_cpu_ms_per_sample_median']:>14.2f}")
    print("GPU path, the normalisation the device does (measured here on the CPU):",
          json.dumps(result["gpu_training_path"]["device_normalisation"]))
    print("allocator A/B:", json.dumps(alloc))
    if soak:
        print(f"soak {args.soak} items: peak RSS {soak['peak_rss_MB']} MB; RSS every {args.soak // 20}: "
              + " ".join(str(r) for _, r in soak["rss_MB"]))
    for side, ms in breakdown.items():
        print(f"{side} CPU ms/sample: " + ", ".join(f"{k} {v:.2f}" for k, v in ms.items()))
    print(f"→ {out}")


if __name__ == "__main__":
    main()
