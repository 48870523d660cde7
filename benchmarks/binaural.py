"""Binaural renderers: render cost per sample against today's decoder, and cue accuracy against the measured head.

    python benchmarks/binaural.py [--repeats 15] [--sets ku100,mit-kemar] [--directions 400]

**Cost.** One stereo render of one viewpoint, the unit of work of ``avsa-data shard`` (and of a reader
rendering ``--renders foa`` shards on the fly): a 1 s FOA window at 24 kHz (three sources plus diffuse noise)
rendered by each renderer. The renderers are interleaved with the baseline, ``ls`` (the HRIR decoder of
format_version 1), render by render, and the ratio is taken pair by pair (median, min, max), for wall time and for
CPU seconds (``time.process_time``, this process only: the renders do not start threads of their own beyond
numpy's FFT). ``virtual-mic`` (the default, no HRIR) is measured the same way. Decoder construction (SOFA read,
filter design; cached per process) is reported separately as ``build_s``.

**Accuracy.** For each HRIR set and renderer, :func:`avsa_data.interaural.plane_wave_errors` on the side
directions of an ``--directions``-point Fibonacci sphere (|el| ≤ 40°, 20° ≤ |az| ≤ 160°; 200 of 400), 0.5 s of
white noise each, against direct convolution with the nearest measured HRIR: ILD error (dB), ITD error below
1.5 kHz (samples at 24 kHz), each ear's level error above 4 kHz (dB). Then the same cues for *mixtures* of 2 and
16 uncorrelated white-noise plane waves at random directions (|el| ≤ 37°, 20 mixtures each) against the sum of
their direct convolutions, where a parametric renderer's one-direction-per-bin model no longer holds exactly.

Writes benchmarks/results/binaural.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from common import load_average, machine  # noqa: E402

from avsa_data import ambisonics, binaural, hrir_sets, interaural  # noqa: E402

SR = 24000
BASELINE = "ls"


def scene(rng: np.random.Generator, seconds: float = 1.0) -> np.ndarray:
    """FOA ``[4, n]``: three noise sources at fixed directions plus diffuse noise (32 weak plane waves)."""
    n = int(seconds * SR)
    foa = sum(ambisonics.encode(rng.standard_normal(n), az, el) for az, el in ((30, 0), (-100, 20), (160, -10)))
    for az, el in zip(rng.uniform(-180, 180, 32), np.rad2deg(np.arcsin(rng.uniform(-1, 1, 32)))):
        foa = foa + 0.1 * ambisonics.encode(rng.standard_normal(n), az, el)
    return (0.2 * foa).astype(np.float32)


def renderers(sofa: str) -> dict:
    out = {"virtual-mic": binaural.Binauralizer("virtual-mic", SR)}
    for name in binaural.HRIR_DECODERS:
        out[name] = binaural.Binauralizer("hrir", SR, sofa, name)
    return out


def cost(sofa: str, repeats: int) -> dict:
    rng = np.random.default_rng(0)
    foa = scene(rng)
    build = {}
    for name in binaural.HRIR_DECODERS:
        binaural._cached_decoder.cache_clear()
        t = time.perf_counter()
        binaural.Binauralizer("hrir", SR, sofa, name)
        build[name] = round(time.perf_counter() - t, 3)
    rend = renderers(sofa)
    for r in rend.values():  # warm up (FFT plans, caches)
        r(foa)
    res = {}
    for name, r in rend.items():
        if name == BASELINE:
            continue
        wall_ratio, cpu_ratio, walls, cpus, base_walls, base_cpus = [], [], [], [], [], []
        for _ in range(repeats):
            pair = {}
            for which, fn in ((name, r), (BASELINE, rend[BASELINE])):
                w0, c0 = time.perf_counter(), time.process_time()
                fn(foa)
                pair[which] = (time.perf_counter() - w0, time.process_time() - c0)
            walls.append(pair[name][0])
            cpus.append(pair[name][1])
            base_walls.append(pair[BASELINE][0])
            base_cpus.append(pair[BASELINE][1])
            wall_ratio.append(pair[name][0] / pair[BASELINE][0])
            cpu_ratio.append(pair[name][1] / max(pair[BASELINE][1], 1e-9))
        res[name] = {
            "wall_ratio_vs_ls": [round(statistics.median(wall_ratio), 2), round(min(wall_ratio), 2),
                                 round(max(wall_ratio), 2)],
            "cpu_ratio_vs_ls": [round(statistics.median(cpu_ratio), 2), round(min(cpu_ratio), 2),
                                round(max(cpu_ratio), 2)],
            "wall_ms_per_render": round(1e3 * statistics.median(walls), 2),
            "cpu_ms_per_render": round(1e3 * statistics.median(cpus), 2),
            "cpu_ns_per_audio_sample": round(1e9 * statistics.median(cpus) / foa.shape[1], 1),
            "ls_wall_ms_per_render": round(1e3 * statistics.median(base_walls), 2),
            "ls_cpu_ms_per_render": round(1e3 * statistics.median(base_cpus), 2),
        }
    return {"render": "1 viewpoint, 1 s FOA window at 24 kHz -> stereo", "build_s": build, "renderers": res}


def accuracy(sofa: str, n_directions: int) -> dict:
    hrirs = hrir_sets.read_hrir_sofa(hrir_sets.resolve_sofa(sofa))
    az, el = interaural.side_directions(n_directions)
    out = {}
    for name in binaural.HRIR_DECODERS:
        r = binaural.Binauralizer("hrir", SR, sofa, name)
        plane = interaural.plane_wave_errors(r, hrirs, az, el, SR, seconds=0.5, seed=0).summary()
        out[name] = {"plane_waves": {k: round(v, 2) for k, v in plane.items()}}
        for n_sources in (2, 16):
            mix = interaural.mixture_errors(r, hrirs, n_sources, SR).summary()
            out[name][f"mixtures_{n_sources}"] = {k: round(v, 2) for k, v in mix.items()}
        print(sofa, name, json.dumps(out[name]), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=15, help="A/B render pairs per renderer")
    ap.add_argument("--sets", default="ku100,mit-kemar", help="HRIR sets (names or SOFA paths); missing ones skipped")
    ap.add_argument("--directions", type=int, default=400, help="Fibonacci points before the side-direction filter")
    ap.add_argument("--result", default=str(HERE / "results" / "binaural.json"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    result = {"command": " ".join(sys.argv), "machine": machine(), "sets": {}}
    for sofa in [s for s in args.sets.split(",") if s]:
        try:
            path = hrir_sets.resolve_sofa(sofa)
        except (FileNotFoundError, ValueError) as e:
            print(f"skipping {sofa}: {e}", flush=True)
            continue
        entry = {"sofa_file": path.name, "sofa_sha256": hrir_sets.file_sha256(path)}
        entry["cost"] = cost(sofa, args.repeats)
        print(sofa, json.dumps(entry["cost"]), flush=True)
        entry["accuracy"] = accuracy(sofa, args.directions)
        result["sets"][sofa] = entry
    result["load_average_at_end"] = load_average()
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    Path(args.result).write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
