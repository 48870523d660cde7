"""Shard throughput against plain ffmpeg decoding of the same frames, and bytes per sample.

    python benchmarks/shard.py [--videos 4 --duration 10 --size 1920x960 --repeats 3 --workers 1]

Both sides run in this process's machine, alternately (A B A B ...), and the ratio is taken pair by pair so
that drifts in machine speed cancel; the median ratio is reported. Throughput is seconds of video processed
per wall-clock second.

* baseline: one ``ffmpeg -i video -vf fps=16 -f rawvideo -pix_fmt rgb24 pipe:`` per video, output discarded
  (exactly the frames the shard builder decodes, with the same imageio-ffmpeg binary), N videos in parallel
  with ``--workers`` processes.
* avsa: ``avsa-data shard`` with the default profile (K = 8 viewpoints, 8 frames of 112², synthetic masks; the
  unrotated FOA, no per-view render stored: ``--renders auto``) and with every per-view render stored
  (``--renders foa,mono,stereo``, format 2's default).

Bytes per sample are split into video (JPEG clips), audio (FLAC), masks (PNG) and metadata; the container
overhead is the tar size over the sum of member sizes.

``breakdown_cpu_ms_per_sample`` (default profile, one process; CPU milliseconds of this process and of the ffmpeg
children it waited for; stages timed one after the other with the shard builder's own functions, so a guide to
where the time goes rather than a second throughput figure): reading the
FOA track, opening the labels, decoding the needed frames (what the baseline does, plus the frame selection),
then per sample the K NFOV crops, their JPEG encoding, the audio renders (rotation, mono, binaural), their FLAC
encoding, the masks (crop + PNG), and the tar write; ``build_sample`` is the real function on the same input
(its time should match crops + jpeg + render + flac + masks).

``cpu_ratio_1_worker`` (issue 17): a plain single-threaded ffmpeg decode of every frame to RGB against
``avsa-data shard -j 1``, CPU seconds with children, wall beside; ``--before DIR`` runs a checkout of the previous
code in the same rounds and compares its crops (PSNR) and, when the code before made the same bytes, says so
(``identical_to_before``). Both trees' modules are compiled to bytecode first, as ``pip install`` does (this
machine sets PYTHONDONTWRITEBYTECODE, so a checkout would otherwise recompile every module in every job).
``audio_levers``: the audio members' encoding CPU as FLAC today, FLAC level 0 and raw
16-bit PCM (format changes, not built) and the CPU ratio each would give (a projection: the job's CPU less the
encoding CPU saved). ``--soak N`` records the sample builder's RSS over N
samples (``--before``: both trees).

Writes benchmarks/results/shard.json (``--result`` to choose).
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
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from avsa_data import media
from avsa_data.reader import iter_samples

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import add_synth_options, cpu_s, load_average, machine  # noqa: E402


def _run(cmd: list[str]) -> None:
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def decode_all(videos: list[Path], fps: float, workers: int) -> float:
    """Wall seconds to decode every video at ``fps`` to raw RGB (discarded)."""
    exe = media.ffmpeg_exe()

    def one(v: Path) -> None:
        _run([exe, "-nostdin", "-v", "error", "-i", str(v), "-vf", f"fps={fps}", "-f", "rawvideo", "-pix_fmt",
              "rgb24", "-y", "/dev/null"])

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        list(ex.map(one, videos))
    return time.perf_counter() - t0


#: ``python -m avsa_data ARGS`` that also writes its own CPU seconds and its children's (ffmpeg) to the file
#: ``AVSA_BENCH_CPU_SPLIT`` names, as JSON, when it exits.
_CLI_WITH_CPU_SPLIT = r"""
import atexit, json, os, resource, runpy, sys
def _split():
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    with open(os.environ["AVSA_BENCH_CPU_SPLIT"], "w") as f:
        json.dump({"python": me.ru_utime + me.ru_stime, "ffmpeg": kids.ru_utime + kids.ru_stime}, f)
atexit.register(_split)
sys.argv = ["avsa_data", *sys.argv[1:]]
runpy.run_module("avsa_data", run_name="__main__", alter_sys=True)
"""


def shard_all(raw: Path, out: Path, workers: int, extra: list[str], tree: Path | None = None,
              split: Path | None = None) -> float:
    """Wall seconds of one ``avsa-data shard`` job; ``tree`` runs another checkout's code (PYTHONPATH);
    ``split``: a JSON file to receive the job's CPU seconds, its own (Python) and its children's (ffmpeg)."""
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, **({"PYTHONPATH": str(tree)} if tree else {}),
           **({"AVSA_BENCH_CPU_SPLIT": str(split)} if split else {})}
    cmd = [sys.executable, "-c", _CLI_WITH_CPU_SPLIT] if split else [sys.executable, "-m", "avsa_data"]
    t0 = time.perf_counter()
    subprocess.run([*cmd, "shard", "--src", str(raw), "--out", str(out), "-j", str(workers), "-q", *extra],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=tree)
    return time.perf_counter() - t0


def decode_one_thread(videos: list[Path], fps: float) -> None:
    """The yardstick of issue 17: a plain single-threaded ffmpeg decode of every frame at ``fps`` to RGB."""
    exe = media.ffmpeg_exe()
    for v in videos:
        _run([exe, "-nostdin", "-v", "error", "-threads", "1", "-i", str(v), "-vf", f"fps={fps}", "-f", "rawvideo",
              "-pix_fmt", "rgb24", "-y", "/dev/null"])


def peak_rss_children_mb() -> float:
    """Largest peak RSS (MB) of any finished child process so far (``ru_maxrss`` of RUSAGE_CHILDREN)."""
    return round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1)


def cpu_ratio(raw: Path, work: Path, videos: list[Path], repeats: int, before: Path | None) -> dict:
    """Plain decode CPU ÷ ``avsa-data shard -j 1`` CPU (children included), pair by pair, wall beside.

    With ``before`` (a checkout of the previous code) its shard job runs in the same rounds (decode, shard now,
    shard before, ...), so the speed-up and the crops' PSNR against the previous code come from one run.
    """
    rows: dict[str, list] = {"decode_cpu": [], "decode_wall": [], "shard_cpu": [], "shard_wall": []}
    if before:
        rows |= {"before_cpu": [], "before_wall": []}
    rss = {}
    for tree in (HERE.parent, before):  # bytecode, as ``pip install`` writes it (PYTHONDONTWRITEBYTECODE or not)
        if tree:
            subprocess.run([sys.executable, "-m", "compileall", "-q", "avsa_data", "cli"], cwd=tree, check=True,
                           stdout=subprocess.DEVNULL)
    for _ in range(repeats):
        c, t = cpu_s(), time.perf_counter()
        decode_one_thread(videos, 16.0)
        rows["decode_cpu"].append(cpu_s() - c)
        rows["decode_wall"].append(time.perf_counter() - t)
        sides = [("shard", None)] + ([("before", before)] if before else [])
        for name, tree in sides:
            c = cpu_s()
            split = work / f"cpu_{name}.split.json"
            rows[f"{name}_wall"].append(shard_all(raw, work / f"cpu_{name}", 1, ["--labels", "synthetic"], tree,
                                                  split))
            rows[f"{name}_cpu"].append(cpu_s() - c)
            parts = json.loads(split.read_text())
            rows.setdefault(f"{name}_python_cpu", []).append(parts["python"])
            rows.setdefault(f"{name}_ffmpeg_cpu", []).append(parts["ffmpeg"])
            rss[name] = peak_rss_children_mb()  # monotone: the "before" value may include "now"'s (run first)
    med = {k: statistics.median(v) for k, v in rows.items()}
    ratios = [d / s for d, s in zip(rows["decode_cpu"], rows["shard_cpu"])]
    wall = [d / s for d, s in zip(rows["decode_wall"], rows["shard_wall"])]
    out = {
        "rounds": repeats,
        "decode_cpu_s": round(med["decode_cpu"], 3), "decode_wall_s": round(med["decode_wall"], 3),
        "shard_cpu_s": round(med["shard_cpu"], 3), "shard_wall_s": round(med["shard_wall"], 3),
        "shard_python_cpu_s": round(med["shard_python_cpu"], 3),
        "shard_ffmpeg_cpu_s": round(med["shard_ffmpeg_cpu"], 3),
        "startup_import_cpu_s": startup_cpu(None),
        "cpu_ratio_decode_over_shard_median": round(statistics.median(ratios), 3),
        "cpu_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
        "wall_ratio_decode_over_shard_median": round(statistics.median(wall), 3),
        "wall_ratio_min_max": [round(min(wall), 3), round(max(wall), 3)],
        "peak_rss_MB_largest_process": rss.get("shard"),
        "bytes": bytes_per_sample(work / "cpu_shard"),
    }
    if before:
        bcpu = [d / s for d, s in zip(rows["decode_cpu"], rows["before_cpu"])]
        out["before"] = {
            "tree": str(before),
            "shard_cpu_s": round(med["before_cpu"], 3), "shard_wall_s": round(med["before_wall"], 3),
            "shard_python_cpu_s": round(med["before_python_cpu"], 3),
            "shard_ffmpeg_cpu_s": round(med["before_ffmpeg_cpu"], 3),
            "startup_import_cpu_s": startup_cpu(before),
            "breakdown_cpu_ms_per_sample": breakdown_of(before, videos),
            "cpu_ratio_decode_over_shard_median": round(statistics.median(bcpu), 3),
            "cpu_ratio_min_max": [round(min(bcpu), 3), round(max(bcpu), 3)],
            "speedup_cpu_before_over_now": round(med["before_cpu"] / med["shard_cpu"], 3),
            "bytes": bytes_per_sample(work / "cpu_before"),
        }
        out["crops_vs_before"] = crop_psnr(work / "cpu_shard", work / "cpu_before")
        out["identical_to_before"] = same_tars(work / "cpu_shard", work / "cpu_before")
    return out


#: The modules a default-profile shard job imports (start-up cost of every job).
JOB_MODULES = ("avsa_data.cli.main", "avsa_data.cli.shard", "avsa_data.shards", "avsa_data.samples",
               "avsa_data.labels.synthetic", "avsa_data.binaural", "avsa_data.crops_yuv", "tqdm")


def startup_cpu(tree: Path | None, rounds: int = 3) -> float:
    """CPU seconds (median of ``rounds``) of a fresh interpreter importing :data:`JOB_MODULES` from ``tree``."""
    env = {**os.environ, "PYTHONPATH": str(tree or HERE.parent)}
    cpu = []
    for _ in range(rounds):
        c = cpu_s()
        subprocess.run([sys.executable, "-c", f"import {', '.join(JOB_MODULES)}"], check=True, env=env,
                       cwd=tree or HERE.parent)
        cpu.append(cpu_s() - c)
    return round(statistics.median(cpu), 3)


def breakdown_of(tree: Path, videos: list[Path]) -> dict:
    """:func:`stage_breakdown` of another checkout (its own benchmark script and code), in a fresh process."""
    code = ("import json, sys; from pathlib import Path; sys.path.insert(0, 'benchmarks'); "
            "from shard import stage_breakdown; "
            f"print(json.dumps(stage_breakdown([Path(p) for p in {[str(v) for v in videos]!r}])))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(tree)}, cwd=tree)
    return json.loads(out.stdout.strip().splitlines()[-1])


def same_tars(a: Path, b: Path) -> bool:
    """Whether the two shard folders hold the same tar files, byte for byte."""
    names = sorted(p.name for p in a.glob("*.tar"))
    return bool(names) and names == sorted(p.name for p in b.glob("*.tar")) and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


def crop_psnr(now: Path, before: Path) -> dict:
    """PSNR (dB) of every decoded clip JPEG of ``now`` against the same member of ``before`` (same keys, views)."""
    import numpy as np

    from avsa_data import codecs

    old = {s.key: s.members for s in iter_samples(before)}
    psnr, same_other = [], True
    for s in iter_samples(now):
        for name, data in s.members.items():
            if name.endswith(".jpg"):
                a = codecs.decode_jpeg(data).astype(np.float64)
                b = codecs.decode_jpeg(old[s.key][name]).astype(np.float64)
                mse = float(np.mean((a - b) ** 2))
                psnr.append(99.0 if mse == 0 else 10 * np.log10(255.0**2 / mse))
            elif name.endswith((".flac", ".png")):
                same_other &= data == old[s.key][name]
    q = np.percentile(psnr, [0, 5, 50])
    return {"clips": len(psnr), "psnr_db_min": round(float(q[0]), 2), "psnr_db_p5": round(float(q[1]), 2),
            "psnr_db_median": round(float(q[2]), 2), "audio_and_mask_members_identical": bool(same_other)}


def engine_scaling(raw: Path, work: Path, seconds: float, repeats: int) -> dict:
    """Ray engine against the local engine at 1 and 2 CPUs (same config; the ratio is ray / local throughput)."""
    rows = {}
    for cpus in (1, 2):
        ratios, t_local, t_ray = [], [], []
        for _ in range(repeats):
            a = shard_all(raw, work / "eng_local", cpus, ["--labels", "synthetic"])
            b = shard_all(raw, work / "eng_ray", cpus, ["--labels", "synthetic", "--engine", "ray"])
            t_local.append(a)
            t_ray.append(b)
            ratios.append(a / b)
        rows[f"{cpus}cpu"] = {
            "local_video_s_per_s": round(seconds / statistics.median(t_local), 2),
            "ray_video_s_per_s": round(seconds / statistics.median(t_ray), 2),
            "ray_over_local_median": round(statistics.median(ratios), 3),
        }
    return rows


def stage_breakdown(videos: list[Path]) -> dict:
    """CPU milliseconds per sample of each stage of the default profile (see the module docstring)."""
    import io

    import numpy as np

    from avsa_data import codecs, crops_yuv
    from avsa_data import crops as crops_mod
    from avsa_data.crops import CropGrid
    from avsa_data.crops_yuv import crop_bank
    from avsa_data.labels import make_backend
    from avsa_data.samples import (
        SampleConfig,
        VideoInfo,
        _mask_members,
        audio_scale_for,
        audio_window,
        build_sample,
        clip_frame_indices,
        needed_frames,
        plan_samples,
        render_audio,
        sample_viewpoints,
    )
    from avsa_data.shards.video import decoder_threads
    from avsa_data.tario import add_sample

    cfg = SampleConfig()
    backend = make_backend("synthetic")
    ms = dict.fromkeys(("read_audio", "labels_open", "decode_frames", "crops", "jpeg", "render", "flac", "masks",
                        "tar", "build_sample"), 0.0)
    n = 0

    def tick(key: str, t0: float) -> float:
        t1 = cpu_s()
        ms[key] += 1000 * (t1 - t0)
        return t1

    for path in videos:
        t = cpu_s()
        pr = media.probe(path)
        foa = media.read_foa(media.find_audio_source(path, pr), cfg.sr, cfg.ambi_format)
        t = tick("read_audio", t)
        labels = backend.open(path, path.stem)
        t = tick("labels_open", t)
        duration = min(pr.duration, foa.shape[1] / cfg.sr)
        plans = plan_samples(duration, cfg)
        frames = dict(media.iter_video_frames_at(path, cfg.fps, needed_frames(plans, cfg), pix_fmt="yuv420p",
                                                 threads=decoder_threads(1), info=pr))  # as a -j 1 job decodes
        tick("decode_frames", t)
        info = VideoInfo(path.stem, "train", str(path), duration, pr.width, pr.height, pr.fps, str(path))
        sink = io.BytesIO()
        for plan in plans:
            n += 1
            for mt in plan.times:
                t = cpu_s()
                views = sample_viewpoints(cfg, info.video_id, plan.index)
                grids = [CropGrid(v, (cfg.crop_size, cfg.crop_size)) for v in views]
                idx = clip_frame_indices(mt, cfg)
                crops = crop_bank([frames[min(i, max(frames))] for i in idx], grids)
                t = tick("crops", t)
                for c in crops:
                    codecs.encode_clip_jpeg(c, cfg.jpeg_quality)
                t = tick("jpeg", t)
                window = audio_window(foa, mt, cfg)
                renders = [render_audio(window, v, cfg) for v in views]
                t = tick("render", t)
                scale = audio_scale_for(max([float(np.abs(window).max())]
                                            + [float(np.abs(a).max()) for r in renders for a in r.values()]))
                codecs.encode_flac(window / scale, cfg.sr, cfg.audio_bits)
                for r in renders:
                    for a in r.values():
                        codecs.encode_flac(a / scale, cfg.sr, cfg.audio_bits)
                t = tick("flac", t)
                lab = labels.at(idx[len(idx) // 2] / cfg.fps)
                grids56 = [CropGrid(v, (56, 56)) for v in views]
                dt = codecs.class_dtype(lab.classes)
                for k in range(len(views)):
                    _mask_members(lab, dt, grids[k], grids56[k], 0, k)
                tick("masks", t)
            for f in (crops_mod._grid_fractions, crops_mod._nearest_index, crops_mod._bilinear_taps,
                      crops_yuv._bank_maps):
                f.cache_clear()  # the real run meets every viewpoint once: no grid may come from the pass above
            t = cpu_s()
            sample = build_sample(plan, frames, foa, info, cfg, labels, backend.describe())
            t = tick("build_sample", t)
            add_sample(sink, sample)
            tick("tar", t)
        del frames
    out = {k: round(v / n, 2) for k, v in ms.items()}
    out["samples"] = n
    out["crops_to_masks_sum"] = round(sum(out[k] for k in ("crops", "jpeg", "render", "flac", "masks")), 2)
    return out


def audio_levers(videos: list[Path], repeats: int) -> dict:
    """CPU ms and kB per sample of the default profile's audio members (format 3: the unrotated FOA of each
    moment) encoded three ways, the same arrays each time, interleaved over ``repeats`` rounds (median): FLAC as
    the shard job writes it today (``codecs.encode_flac``, libFLAC's default level 5), FLAC level 0, and raw
    16-bit PCM (the quantised samples' bytes). The last two are **not** implemented; this measures what they
    would save."""
    import io

    import numpy as np
    import soundfile as sf

    from avsa_data import codecs
    from avsa_data.samples import (
        SampleConfig,
        audio_scale_for,
        audio_window,
        plan_samples,
        render_audio,
        sample_viewpoints,
    )

    cfg = SampleConfig()
    members: list[tuple[str, np.ndarray]] = []
    n = 0
    for video in videos:
        foa = media.read_foa(media.find_audio_source(video), cfg.sr, cfg.ambi_format)
        for plan in plan_samples(foa.shape[1] / cfg.sr, cfg):
            n += 1
            window = audio_window(foa, plan.times[0], cfg)
            views = sample_viewpoints(cfg, video.stem, plan.index, window)
            renders = [render_audio(window, v, cfg) for v in views]
            scale = audio_scale_for(max([float(np.abs(window).max())] + [float(np.abs(a).max()) for r in renders
                                                                           for a in r.values()]))
            members += [("foa", window / scale)] + [(k, a / scale) for r in renders for k, a in r.items()]

    def flac0(kind: str, a: np.ndarray) -> bytes:  # codecs.encode_flac with libFLAC's compression level 0
        buf = io.BytesIO()
        sf.write(buf, np.rint(a.T * 32768.0).astype(np.int16), cfg.sr, format="FLAC", subtype="PCM_16",
                 compression_level=0.0)
        return codecs._with_vorbis_comments(buf.getvalue(), codecs.flac_tags(kind))

    ways = {
        "flac_level5_today": lambda kind, a: codecs.encode_flac(a, cfg.sr, cfg.audio_bits, codecs.flac_tags(kind)),
        "flac_level0": flac0,
        "pcm16_raw": lambda kind, a: np.rint(a * 32768.0).astype("<i2").tobytes(),
    }
    cpu_ms: dict[str, list[float]] = {k: [] for k in ways}
    size: dict[str, int] = {}
    for _ in range(repeats):
        for name, encode in ways.items():
            t = cpu_s()
            size[name] = sum(len(encode(kind, a)) for kind, a in members)
            cpu_ms[name].append(1000 * (cpu_s() - t) / n)
    return {"samples": n, "members_per_sample": len(members) // n,
            **{k: {"cpu_ms_per_sample": round(statistics.median(v), 2), "kB_per_sample": round(size[k] / n / 1000, 1)}
               for k, v in cpu_ms.items()}}


_SOAK_CHILD = r"""
import inspect, json, resource, sys
from pathlib import Path
from avsa_data import media
from avsa_data.labels import make_backend
from avsa_data.samples import SampleConfig, SamplePlan, VideoInfo, build_sample, needed_frames, plan_samples
n, every, path = {n}, {every}, Path({path!r})
cfg = SampleConfig()
yuv = "pix_fmt" in inspect.signature(media.iter_video_frames_at).parameters  # the code before issue 17: RGB
pr = media.probe(path)
foa = media.read_foa(media.find_audio_source(path), cfg.sr)
backend = make_backend("synthetic")
labels = backend.open(path, path.stem)
plans = plan_samples(pr.duration, cfg)
frames = dict(media.iter_video_frames_at(path, cfg.fps, needed_frames(plans, cfg),
                                         **({{"pix_fmt": "yuv420p"}} if yuv else {{}})))
info = VideoInfo(path.stem, "train", str(path), pr.duration, pr.width, pr.height, pr.fps, str(path))
def rss_mb():
    return int(open("/proc/self/statm").read().split()[1]) * resource.getpagesize() / 2**20
rss = []
for i in range(n):  # sample index i: a new random viewpoint bank each time, the frames of plan i % len(plans)
    p = plans[i % len(plans)]
    build_sample(SamplePlan(i, p.times), frames, foa, info, cfg, labels, backend.describe())
    if (i + 1) % every == 0:
        rss.append([i + 1, round(rss_mb(), 1)])
print(json.dumps({{"rss_MB": rss, "peak_rss_MB": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}}))
"""


def shard_soak(video: Path, n: int, tree: Path | None = None) -> dict:
    """RSS of one shard worker's sample builder over ``n`` samples of one decoded video (new viewpoints each
    sample), every ``n / 20`` samples, in a fresh process; ``tree`` runs another checkout's code."""
    code = _SOAK_CHILD.format(n=n, every=max(1, n // 20), path=str(video))
    env = {**os.environ, "PYTHONPATH": str(tree or HERE.parent)}
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, env=env,
                         cwd=tree or HERE.parent)  # "-c" puts the working directory first on sys.path
    return json.loads(out.stdout.strip().splitlines()[-1])


def bytes_per_sample(out: Path) -> dict:
    kinds = {"video": 0, "audio": 0, "masks": 0, "meta": 0}
    n = 0
    for s in iter_samples(out):
        n += 1
        for name, data in s.members.items():
            k = ("video" if name.endswith(".jpg") else "audio" if name.endswith(".flac")
                 else "masks" if name.endswith(".png") else "meta")
            kinds[k] += len(data)
    members = sum(kinds.values())
    tar_bytes = sum(p.stat().st_size for p in out.glob("*.tar"))
    return {
        "samples": n,
        "per_sample_kB": {k: round(v / n / 1000, 1) for k, v in kinds.items()},
        "total_per_sample_kB": round(tar_bytes / n / 1000, 1),
        "container_overhead_pct": round(100 * (tar_bytes / members - 1), 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_synth_options(ap)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--work", type=Path, default=None, help="scratch folder (default: a temp dir)")
    ap.add_argument("--before", type=Path, default=None,
                    help="a checkout of the previous code: its shard job runs in the same CPU-ratio rounds")
    ap.add_argument("--cpu-videos", type=int, default=2, help="videos in the CPU-ratio rounds (1 worker)")
    ap.add_argument("--skip-throughput", action="store_true", help="only the CPU ratio and the breakdown")
    ap.add_argument("--result", type=Path, default=None, help="JSON to write (default results/shard.json)")
    ap.add_argument("--soak", type=int, default=0, help="samples of the shard-worker RSS soak (0: none)")
    ap.add_argument("--soak-only", action="store_true", help="only the soak (with --before: both trees)")
    ap.add_argument("--engine", choices=["local", "ray"], default="local",
                    help="ray: also compare the Ray engine with the local one at 1 and 2 CPUs")
    args = ap.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="avsa-bench-"))
    raw = work / "raw"
    if not raw.exists():
        _run([sys.executable, "-m", "avsa_data", "synth", "--out", str(raw), "--videos", str(args.videos),
              "--duration", str(args.duration), "--size", args.size, "--seed", "0", "--val-fraction", "0"])
    videos = sorted(raw.glob("*.mp4"))
    seconds = args.videos * args.duration
    mach = machine()
    soak = None
    profiles = {"default": ["--labels", "synthetic"],
                "stored_renders": ["--labels", "synthetic", "--renders", "foa,mono,stereo"]}
    if args.soak:
        soak = {"samples": args.soak, "now": shard_soak(videos[0], args.soak)}
        if args.before:
            soak["before"] = shard_soak(videos[0], args.soak, args.before)
        print("soak:", json.dumps(soak))
        if args.soak_only:
            out = args.result or HERE / "results" / "shard_soak.json"
            out.write_text(json.dumps({"benchmark": "shard soak", "machine": mach | {"load_average_at_end":
                                       load_average()}, "soak": soak}, indent=1))
            return
    cpu = cpu_ratio(raw, work, videos[: args.cpu_videos], args.repeats, args.before)
    print("CPU ratio (plain 1-thread decode / shard -j 1):", json.dumps(cpu))
    levers = audio_levers(videos[: args.cpu_videos], args.repeats)
    today = levers["flac_level5_today"]["cpu_ms_per_sample"]
    for name in ("flac_level0", "pcm16_raw"):  # what the job would cost with that audio encoding (not built)
        saved = cpu["bytes"]["samples"] * (today - levers[name]["cpu_ms_per_sample"]) / 1000
        levers[name]["projected_cpu_ratio"] = round(cpu["decode_cpu_s"] / (cpu["shard_cpu_s"] - saved), 3)
    print("audio encodings (format changes, not built):", json.dumps(levers))
    rows: dict[str, dict] = {}
    for name, extra in ({} if args.skip_throughput else profiles).items():
        ratios, t_dec, t_sh = [], [], []
        for _ in range(args.repeats):
            d = decode_all(videos, 16.0, args.workers)
            s = shard_all(raw, work / f"shards_{name}", args.workers, extra)
            t_dec.append(d)
            t_sh.append(s)
            ratios.append(d / s)  # throughput ratio shard / decode = decode time / shard time
        rows[name] = {
            "decode_s_median": round(statistics.median(t_dec), 3),
            "shard_s_median": round(statistics.median(t_sh), 3),
            "decode_video_s_per_s": round(seconds / statistics.median(t_dec), 2),
            "shard_video_s_per_s": round(seconds / statistics.median(t_sh), 2),
            "throughput_ratio_median": round(statistics.median(ratios), 3),
            "throughput_ratio_min_max": [round(min(ratios), 3), round(max(ratios), 3)],
            **bytes_per_sample(work / f"shards_{name}"),
        }
    scaling = engine_scaling(raw, work, seconds, args.repeats) if args.engine == "ray" else None
    breakdown = stage_breakdown(videos)
    result = {
        "benchmark": "shard",
        "machine": mach | {"load_average_at_end": load_average()},
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()} | {"work": str(work)},
        "targets": {"throughput_ratio": ">= 0.5", "cpu_ratio_1_worker": ">= 0.5",
                    "video_kB_per_sample": "<= 150 (K=8, 8 frames of 112²)",
                    "container_overhead_pct": "<= 5"},
        "cpu_ratio_1_worker": cpu,
        "audio_levers": levers,
        "soak": soak,
        "results": rows,
        "engine_scaling": scaling,
        "breakdown_cpu_ms_per_sample": breakdown,
    }
    out = args.result or HERE / "results" / ("shard_ray.json" if args.engine == "ray" else "shard.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"{'profile':10} {'ratio (shard/decode)':>22} {'video kB':>9} {'audio kB':>9} {'masks kB':>9} "
          f"{'total kB':>9} {'overhead %':>10}")
    for name, r in rows.items():
        k = r["per_sample_kB"]
        print(f"{name:10} {r['throughput_ratio_median']:>22.3f} {k['video']:>9.1f} {k['audio']:>9.1f} "
              f"{k['masks']:>9.1f} {r['total_per_sample_kB']:>9.1f} {r['container_overhead_pct']:>10.2f}")
    if scaling:
        print(f"{'cpus':6} {'local video-s/s':>16} {'ray video-s/s':>14} {'ray/local':>10}")
        for k, r in scaling.items():
            print(f"{k:6} {r['local_video_s_per_s']:>16.2f} {r['ray_video_s_per_s']:>14.2f} "
                  f"{r['ray_over_local_median']:>10.3f}")
    print("default profile, CPU ms/sample: " + ", ".join(f"{k} {v}" for k, v in breakdown.items()))
    print(f"→ {out}")


if __name__ == "__main__":
    main()
