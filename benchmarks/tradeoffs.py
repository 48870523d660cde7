"""Scaling and trade-offs: 1 vs 2 workers, JPEG quality, samples per shard. Real work on ``avsa-data synth`` data.

    python benchmarks/tradeoffs.py [--videos 4 --duration 10 --size 1920x960 --repeats 3]
        [--only workers,quality,shard_size] [--work DIR] [--result benchmarks/results/tradeoffs.json]

Every comparison is measured in this one run, with the configurations interleaved round by round
(A B C … A B C …) and each ratio taken within a round, so that drifts of a shared machine cancel; the median
over rounds is reported (with min and max). Where it helps, the CPU seconds used (this process and its
finished children) are recorded next to the wall time, and the load average at the start and the end.

* **workers**: ``avsa-data shard -j 1`` against ``-j 2`` (default profile: K = 8, foa + mono + stereo,
  synthetic masks), and the plain ffmpeg decode of the same frames at 1 and 2 parallel videos (the yardstick of
  ``shard.py``): the 2-worker / 1-worker throughput ratio of each says how much of the ideal 2× this machine
  gives. The loader's 1- vs 2-worker scaling is in the shard-size part (DataLoader workers).
* **quality**: ``--jpeg-quality`` 60 / 75 / 90 (default) / 95: video kB per sample (from the shards), shard
  wall time relative to 90, loader samples/s (``decode_item``, one process) relative to 90, and fidelity of the
  stored clips: PSNR (dB, over all pixels of all stored clips) of the decoded JPEG against the uncompressed
  crop, recomputed from the raw video with the shard builder's own ``CropGrid`` at each sample's stored
  viewpoints and frame indices.
* **shard_size**: ``--shard-size`` 4 / 16 / 64 / 256 samples per shard (``--stride 0.5``): files and MB per
  file; shard wall time relative to 256; training-loader throughput (``ShardStream`` + ``make_loader``, batch
  4 of V = 4 views, shuffle buffer 16) with 1 and 2 DataLoader workers, and the time to the first batch; the
  balance of an epoch over C consumers (most / fewest samples; fewer shards than consumers makes every consumer
  read every shard and keep 1/C of it); and **shuffle quality** of the epochs as the trainer orders them
  (2 consumers, batch 8, shuffle buffer 1 / 16 / 128 (the ``avsa-train`` default); shuffled shard lists,
  shuffle buffers, worker batches dealt round-robin; mean of 3 epochs): the fraction of same-video pairs inside
  a batch (against a uniformly random order of the same samples; each batch comes from one consumer, so it
  can only mix the videos of that consumer's shards) and the mean distance, in the stored order, between
  consecutive samples of a batch over its value for a random order (about 1 = shuffled, near 0 = batches
  follow the stored order). The loader timings skip 8
  batches after the first (what the workers prefetched meanwhile) before timing ``--batches``.

Writes benchmarks/results/tradeoffs.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from avsa_data.fsutil import read_json

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import add_synth_options, cpu_s, load_average, machine  # noqa: E402
from shard import _run, bytes_per_sample, decode_all, shard_all  # noqa: E402

QUALITIES = (60, 75, 90, 95)
SHARD_SIZES = (4, 16, 64, 256)
FULL = ["--labels", "synthetic"]


def _med(xs: list[float], nd: int = 3) -> float:
    return round(statistics.median(xs), nd)


def _spread(xs: list[float], nd: int = 3) -> list[float]:
    return [round(min(xs), nd), round(max(xs), nd)]


def rounds(configs: list, repeats: int, run) -> dict:
    """``run(config)`` for every config, ``repeats`` rounds of all configs in turn; {config: [values]}."""
    out: dict = {c: [] for c in configs}
    for _ in range(repeats):
        for c in configs:
            out[c].append(run(c))
    return out


def timed(fn, *args) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its finished children) of ``fn(*args)``."""
    c0 = cpu_s()
    t = fn(*args)
    return t, cpu_s() - c0


# ---------------------------------------------------------------------------------------------- workers


def workers_part(raw: Path, work: Path, seconds: float, repeats: int) -> dict:
    videos = sorted(raw.glob("*.mp4"))
    m_dec = rounds([1, 2], repeats, lambda j: timed(decode_all, videos, 16.0, j))
    m_sh = rounds([1, 2], repeats, lambda j: timed(shard_all, raw, work / f"shards_j{j}", j, FULL))
    t_dec = {j: [w for w, _ in m_dec[j]] for j in (1, 2)}
    t_sh = {j: [w for w, _ in m_sh[j]] for j in (1, 2)}
    out = {}
    for name, t, m in (("ffmpeg_decode", t_dec, m_dec), ("shard", t_sh, m_sh)):
        speedup = [a / b for a, b in zip(t[1], t[2])]  # throughput 2w / 1w = time 1w / time 2w
        out[name] = {
            "video_s_per_s_1w": round(seconds / statistics.median(t[1]), 2),
            "video_s_per_s_2w": round(seconds / statistics.median(t[2]), 2),
            "speedup_2w_over_1w_median": _med(speedup),
            "speedup_min_max": _spread(speedup),
            "cpu_s_per_video_s_1w": round(statistics.median([c for _, c in m[1]]) / seconds, 3),
            "cpu_s_per_video_s_2w": round(statistics.median([c for _, c in m[2]]) / seconds, 3),
        }
    out["shard_over_decode_1w"] = round(statistics.median(t_dec[1]) / statistics.median(t_sh[1]), 3)
    out["shard_over_decode_2w"] = round(statistics.median(t_dec[2]) / statistics.median(t_sh[2]), 3)
    return out


# ---------------------------------------------------------------------------------------------- quality


def loader_rate(urls: list[str], n: int, views: int = 4) -> tuple[float, float]:
    """(samples/s, CPU ms/sample) of ``decode_item`` over the first ``n`` samples (one process, as in loader.py)."""
    from avsa_train.data.items import decode_item
    from avsa_train.data.members import prune_members
    from avsa_train.data.partition import iter_epoch_raw
    from avsa_train.data.stream_config import StreamConfig

    cfg = StreamConfig(views=views, audio_format="ambi", batch_size=1, shuffle_buffer=1)
    t0, c0 = time.perf_counter(), time.process_time()
    k = 0
    while k < n:
        for s in iter_epoch_raw(urls, 0, 0, 0, 1, False, 1, map_sample=lambda s: prune_members(s, cfg)):
            decode_item(s, cfg, 0)
            k += 1
            if k >= n:
                break
    return k / (time.perf_counter() - t0), 1000 * (time.process_time() - c0) / k


def reference_crops(raw: Path, shards: Path) -> dict[tuple[str, int, int], np.ndarray]:
    """{(key, moment, view): uncompressed uint8 crop clip}, from the raw video at each sample's stored viewpoints
    and frame indices, with the shard builder's crop (``CropGrid``, bilinear)."""
    from avsa_data import media
    from avsa_data.crops import CropGrid
    from avsa_data.reader import iter_samples
    from avsa_data.viewpoints import Viewpoint

    metas = [s.meta for s in iter_samples(shards)]
    out = {}
    for vid in sorted({m["video_id"] for m in metas}):
        mine = [m for m in metas if m["video_id"] == vid]
        path = raw / Path(mine[0]["source"]["path"]).name
        wanted = sorted({i for m in mine for a, b in m["frame_indices"] for i in range(a, b)})
        frames = dict(media.iter_video_frames_at(path, mine[0]["fps"], wanted))
        for m in mine:
            for mi, (a, b) in enumerate(m["frame_indices"]):
                clip = np.stack([frames[min(i, max(frames))] for i in range(a, b)])
                for k, v in enumerate(m["viewpoints"]):
                    grid = CropGrid(Viewpoint.from_dict(v), tuple(m["crop_size"]))
                    out[(m["key"], mi, k)] = grid.sample(clip)
        del frames
    return out


def psnr(shards: Path, ref: dict) -> float:
    """PSNR (dB) of every stored clip against its uncompressed crop (one MSE over all pixels)."""
    from avsa_data.reader import iter_samples

    se, n = 0.0, 0
    for s in iter_samples(shards):
        for mi in range(int(s.meta["moments_per_sample"])):
            for k in range(s.num_views):
                d = s.clip(k, mi).astype(np.float64) - ref[(s.key, mi, k)]
                se += float(np.sum(d * d))
                n += d.size
    return round(10 * np.log10(255.0**2 / (se / n)), 2)


def quality_part(raw: Path, work: Path, seconds: float, repeats: int, samples: int) -> dict:
    dirs = {q: work / f"shards_q{q}" for q in QUALITIES}
    t_sh = rounds(list(QUALITIES), repeats, lambda q: shard_all(raw, dirs[q], 2, [*FULL, "--jpeg-quality", str(q)]))
    urls = {q: sorted(str(p) for p in dirs[q].glob("*.tar")) for q in QUALITIES}
    meas = rounds(list(QUALITIES), repeats + 1, lambda q: loader_rate(urls[q], samples))
    rate = {q: [r for r, _ in meas[q]] for q in QUALITIES}
    ref = reference_crops(raw, dirs[90])
    rows = {}
    for q in QUALITIES:
        shard_rel = [t_sh[90][i] / t_sh[q][i] for i in range(repeats)]  # throughput q / throughput 90
        load_rel = [rate[q][i] / rate[90][i] for i in range(repeats + 1)]
        b = bytes_per_sample(dirs[q])
        rows[str(q)] = {
            "video_kB_per_sample": b["per_sample_kB"]["video"],
            "total_kB_per_sample": b["total_per_sample_kB"],
            "psnr_db": psnr(dirs[q], ref),
            "shard_video_s_per_s": round(seconds / statistics.median(t_sh[q]), 2),
            "shard_throughput_over_q90_median": _med(shard_rel),
            "shard_throughput_over_q90_min_max": _spread(shard_rel),
            "loader_samples_per_s": round(statistics.median(rate[q]), 2),
            "loader_cpu_ms_per_sample": round(statistics.median([c for _, c in meas[q]]), 2),
            "loader_over_q90_median": _med(load_rel),
            "loader_over_q90_min_max": _spread(load_rel),
        }
    return {"samples": b["samples"], "clips_compared": len(ref), "rows": rows}


# ---------------------------------------------------------------------------------------------- shard size


def loader_run(shards: Path, workers: int, batches: int, buffer: int = 16, warm: int = 8) -> tuple[float, float]:
    """(seconds to the first batch, samples/s over ``batches`` after ``warm`` more) of the training loader (the
    untimed ``warm`` batches drain what the workers prefetched while the first one was awaited)."""
    from avsa_train.data.batches import ShardStream, make_loader
    from avsa_train.data.sources import expand_urls, shard_sizes, split_urls
    from avsa_train.data.stream_config import StreamConfig

    cfg = StreamConfig(views=4, audio_format="ambi", batch_size=4, shuffle_buffer=buffer)
    urls = split_urls(expand_urls(shards), "train")
    t0 = time.perf_counter()
    it = iter(make_loader(ShardStream(urls, cfg, sizes=shard_sizes(shards)), num_workers=workers))
    next(it)
    t_first = time.perf_counter() - t0
    for _ in range(warm):
        next(it)
    t1 = time.perf_counter()
    for _ in range(batches):
        next(it)
    rate = batches * cfg.batch_size / (time.perf_counter() - t1)
    del it
    return t_first, rate


def epoch_order(shards: Path, consumers: int, batch: int, buffer: int, epoch: int = 0) -> list[list[str]]:
    """The batches (sample keys) of one epoch as the trainer sees them: each consumer's shuffled shard list and
    shuffle buffer, batches made per consumer and dealt round-robin (DataLoader order), last partial ones kept."""
    from avsa_train.data.partition import iter_epoch_raw
    from avsa_train.data.sources import expand_urls, split_urls

    urls = split_urls(expand_urls(shards), "train")
    per = []
    for c in range(consumers):
        keys = [s.key for s in iter_epoch_raw(urls, epoch, 0, c, consumers, True, buffer, map_sample=_key_only)]
        per.append([keys[i : i + batch] for i in range(0, len(keys), batch)])
    out = []
    for i in range(max(len(p) for p in per)):
        out += [p[i] for p in per if i < len(p)]
    return out


def _key_only(s):
    from avsa_data.reader import RawSample

    return RawSample(s.key, {}, s.shard)


def same_video_fraction(batches: list[list[str]]) -> float:
    pairs = same = 0
    for b in batches:
        vids = [k.split("/")[0] for k in b]
        for i in range(len(vids)):
            for j in range(i + 1, len(vids)):
                pairs += 1
                same += vids[i] == vids[j]
    return same / pairs if pairs else 0.0


def stored_gap(stored: list[str], batches: list[list[str]]) -> float:
    """Mean distance in the stored order between consecutive samples of a batch, over its value for a uniformly
    random order ((n + 1) / 3): about 1 when shuffled, near 0 when batches follow the stored order."""
    pos = {k: i for i, k in enumerate(stored)}
    gaps = [abs(pos[b[i]] - pos[b[i + 1]]) for b in batches for i in range(len(b) - 1)]
    return float(np.mean(gaps)) / ((len(stored) + 1) / 3) if gaps else 0.0


def shuffle_quality(shards: Path, consumers: int, batch: int, buffers: tuple[int, ...], epochs: int = 3) -> dict:
    """Shuffle metrics of ``epochs`` epochs (means), against a uniformly random order of the same samples."""
    man = read_json(shards / "manifest.json", "the shard manifest written by avsa-data shard")
    stored = [k for s in man["shards"] if s["split"] == "train" for k in s["samples"]]
    rng = np.random.default_rng(0)
    rand = []
    for _ in range(200):  # a uniformly random order of the same samples, batched the same way
        p = [stored[i] for i in rng.permutation(len(stored))]
        rand.append(same_video_fraction([p[i : i + batch] for i in range(0, len(p), batch)]))
    out = {"random_order_same_video_pair_frac": round(float(np.mean(rand)), 4),
           "random_order_stored_gap": 1.0}
    for buf in buffers:
        same, rho = [], []  # per epoch: same-video pair fraction, stored-order gap
        for e in range(epochs):
            order = epoch_order(shards, consumers, batch, buf, e)
            flat = [k for b in order for k in b]
            assert sorted(flat) == sorted(stored), "an epoch must hold every sample once"
            same.append(same_video_fraction(order))
            rho.append(stored_gap(stored, order))
        out[f"buffer_{buf}"] = {
            "same_video_pair_frac": round(float(np.mean(same)), 4),
            "stored_gap_over_random": round(float(np.mean(rho)), 3),
        }
    return out


def consumer_balance(shards: Path, consumers: int) -> dict:
    from avsa_train.data.partition import consumer_epoch_size, consumer_shards
    from avsa_train.data.sources import expand_urls, shard_sizes, split_urls

    urls = split_urls(expand_urls(shards), "train")
    sizes = shard_sizes(shards)
    n = [consumer_epoch_size(urls, sizes, 0, 0, c, consumers, True) for c in range(consumers)]
    _, subsplit = consumer_shards(urls, 0, 0, 0, consumers, True)
    read = sum(sizes.values()) if subsplit else max(n)
    return {"most": max(n), "fewest": min(n), "every_consumer_reads_every_shard": subsplit,
            "samples_read_by_busiest_consumer": read}


def shard_size_part(raw: Path, work: Path, seconds: float, repeats: int, batches: int) -> dict:
    dirs = {n: work / f"shards_n{n}" for n in SHARD_SIZES}
    t_sh = rounds(list(SHARD_SIZES), repeats,
                  lambda n: shard_all(raw, dirs[n], 2, ["--stride", "0.5", "--shard-size", str(n)]))
    grid = [(n, w) for n in SHARD_SIZES for w in (1, 2)]
    runs = rounds(grid, repeats + 1, lambda c: loader_run(dirs[c[0]], c[1], batches))
    rows = {}
    for n in SHARD_SIZES:
        tars = sorted(dirs[n].glob("*.tar"))
        rel = [t_sh[256][i] / t_sh[n][i] for i in range(repeats)]
        r1 = [r for _, r in runs[(n, 1)]]
        r2 = [r for _, r in runs[(n, 2)]]
        scaling = [b / a for a, b in zip(r1, r2)]
        rows[str(n)] = {
            "files": len(tars),
            "MB_per_file_mean": round(sum(p.stat().st_size for p in tars) / len(tars) / 1e6, 2),
            "shard_video_s_per_s": round(seconds / statistics.median(t_sh[n]), 2),
            "shard_throughput_over_size256_median": _med(rel),
            "loader_samples_per_s_1w": round(statistics.median(r1), 2),
            "loader_samples_per_s_2w": round(statistics.median(r2), 2),
            "loader_speedup_2w_over_1w_median": _med(scaling),
            "loader_speedup_min_max": _spread(scaling),
            "first_batch_s_1w": _med([t for t, _ in runs[(n, 1)]], 2),
            "first_batch_s_2w": _med([t for t, _ in runs[(n, 2)]], 2),
            "balance_2_consumers": consumer_balance(dirs[n], 2),
            "balance_8_consumers": consumer_balance(dirs[n], 8),
            "shuffle_2_consumers_batch_8": shuffle_quality(dirs[n], 2, 8, (1, 16, 128)),
        }
    from avsa_train.data.sources import count_samples

    loader = {"batch_size": 4, "views": 4, "shuffle_buffer": 16, "timed_batches": batches}
    return {"samples": count_samples(dirs[256]), "loader": loader, "rows": rows}


# ---------------------------------------------------------------------------------------------- main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synth_options(ap)
    ap.add_argument("--repeats", type=int, default=3, help="rounds of every comparison")
    ap.add_argument("--samples", type=int, default=30, help="items per loader timing in the quality part")
    ap.add_argument("--batches", type=int, default=40, help="timed batches per loader run in the shard-size part")
    ap.add_argument("--only", default="workers,quality,shard_size", help="comma-separated parts to run")
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--result", type=Path, default=HERE / "results" / "tradeoffs.json", help="JSON to write")
    args = ap.parse_args()
    parts = {p.strip() for p in args.only.split(",") if p.strip()}
    bad = parts - {"workers", "quality", "shard_size"}
    if bad:
        ap.error(f"unknown parts: {sorted(bad)}")

    work = args.work or Path(tempfile.mkdtemp(prefix="avsa-tradeoffs-"))
    raw = work / "raw"
    if not raw.exists():
        _run([sys.executable, "-m", "avsa_data", "synth", "--out", str(raw), "--videos", str(args.videos),
              "--duration", str(args.duration), "--size", args.size, "--seed", "0", "--val-fraction", "0"])
    seconds = args.videos * args.duration
    out_path = args.result
    result = json.loads(out_path.read_text()) if out_path.exists() and parts != {"workers", "quality", "shard_size"} \
        else {}
    result.update({
        "benchmark": "tradeoffs",
        "machine": machine(),
        "config": vars(args) | {"work": str(work), "result": str(out_path)},
    })
    t_start = time.perf_counter()
    if "workers" in parts:
        result["workers"] = workers_part(raw, work, seconds, args.repeats + 1)
    if "quality" in parts:
        result["jpeg_quality"] = quality_part(raw, work, seconds, args.repeats, args.samples)
    if "shard_size" in parts:
        result["shard_size"] = shard_size_part(raw, work, seconds, args.repeats, args.batches)
    result["wall_s"] = round(time.perf_counter() - t_start, 1)
    result["machine"]["load_average_at_end"] = load_average()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1) + "\n")
    report(result)
    print(f"→ {out_path}")


def report(r: dict) -> None:
    if "workers" in r:
        w = r["workers"]
        print(f"{'workers':14} {'1w video-s/s':>13} {'2w video-s/s':>13} {'2w/1w':>7}")
        for k in ("ffmpeg_decode", "shard"):
            print(f"{k:14} {w[k]['video_s_per_s_1w']:>13.2f} {w[k]['video_s_per_s_2w']:>13.2f} "
                  f"{w[k]['speedup_2w_over_1w_median']:>7.3f}")
        print(f"shard / decode throughput: {w['shard_over_decode_1w']} (1 worker), {w['shard_over_decode_2w']} "
              f"(2 workers)")
    if "jpeg_quality" in r:
        print(f"{'quality':8} {'video kB':>9} {'PSNR dB':>8} {'shard/q90':>10} {'loader s/s':>11} {'loader/q90':>11}")
        for q, x in r["jpeg_quality"]["rows"].items():
            print(f"{q:8} {x['video_kB_per_sample']:>9.1f} {x['psnr_db']:>8.2f} "
                  f"{x['shard_throughput_over_q90_median']:>10.3f} {x['loader_samples_per_s']:>11.2f} "
                  f"{x['loader_over_q90_median']:>11.3f}")
    if "shard_size" in r:
        print(f"{'per shard':9} {'files':>5} {'MB/file':>8} {'shard/256':>9} {'load 1w':>8} {'load 2w':>8} "
              f"{'2w/1w':>6} {'1st batch 2w s':>14} {'same-video buf1/16/128 (random)':>34} {'gap buf1/16/128':>16}")
        for n, x in r["shard_size"]["rows"].items():
            sq = x["shuffle_2_consumers_batch_8"]
            same = "/".join(f"{sq[f'buffer_{b}']['same_video_pair_frac']:.3f}" for b in (1, 16, 128))
            same += f" ({sq['random_order_same_video_pair_frac']})"
            gap = "/".join(f"{sq[f'buffer_{b}']['stored_gap_over_random']:.2f}" for b in (1, 16, 128))
            print(f"{n:9} {x['files']:>5} {x['MB_per_file_mean']:>8.2f} "
                  f"{x['shard_throughput_over_size256_median']:>9.3f} {x['loader_samples_per_s_1w']:>8.2f} "
                  f"{x['loader_samples_per_s_2w']:>8.2f} {x['loader_speedup_2w_over_1w_median']:>6.3f} "
                  f"{x['first_batch_s_2w']:>14.2f} {same:>34} "
                  f"{gap:>16}")


if __name__ == "__main__":
    main()
