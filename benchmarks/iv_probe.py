"""Training-free check of the audio features: can a linear probe on pooled features tell where the source is?

Issue 15, item 5. Synthetic single-source items, each rendered for one random viewpoint exactly as the shards
hold it (``avsa_data``: a class sound of the synthesiser encoded into ambiX at a random direction on the sphere,
diffuse FOA noise, ``rotate_to_view``; mono = the cardioid render, stereo = the virtual-mic render). Each audio
input is turned into features by the training front end (:class:`avsa_train.audio_features.Spectrogram`),
**pooled** (time mean in 8 equal groups of frequency rows, per channel) and given to an L2-regularised
logistic regression fitted on the training items. Two questions, both relative to the view:

* ``front``: is the source in the view's front hemisphere (rotated x > 0)?
* ``left``: is it in the left hemisphere (rotated y > 0)?

Magnitude spectrograms of first-order ambisonics are identical for a source and its mirror image behind the
view (|X| is the same), so ambisonics ``mel128`` should sit near chance on ``front``; the intensity vector keeps
the sign of X relative to W and should be near perfect. Every spec is scored on the same test items: the table
gives accuracy with a Wilson 95 % interval and the paired gap to ambisonics ``mel128`` (item-bootstrap 95 % CI,
exact McNemar p). It also times the feature extraction of each spec against ambisonics ``mel128`` (CPU seconds
and wall, same run, interleaved).

    python benchmarks/iv_probe.py                 # 2000 items (1200 train / 800 test), writes results/iv_probe.json
    python benchmarks/iv_probe.py --items 400 --result /tmp/probe.json

Randomness: item ``i`` draws from ``rng_for(seed, "iv_probe", i)`` only, so results do not depend on order.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from avsa_data.ambisonics import encode, mono_render, rotate_to_view  # noqa: E402
from avsa_data.binaural import virtual_mic_binaural  # noqa: E402
from avsa_data.geometry import direction_to_vector, view_rotation  # noqa: E402
from avsa_data.rng import rng_for  # noqa: E402
from avsa_data.synth import CLASSES, class_sound, diffuse_noise  # noqa: E402
from avsa_train.audio_features import Spectrogram  # noqa: E402
from avsa_train.tasks.metrics import paired_gap, wilson_interval  # noqa: E402
from benchmarks.common import cpu_model, cpu_s, load_average  # noqa: E402

SR = 24000
#: (name, audio format, spec): every input the probe compares; the reference is ambisonics mel128.
INPUTS = (
    ("mono mel128", "mono", "mel128"),
    ("stereo mel128", "stereo", "mel128"),
    ("ambi mel128", "ambi", "mel128"),
    ("ambi stft129", "ambi", "stft129"),
    ("ambi mel128+iv", "ambi", "mel128+iv"),
)
REFERENCE = "ambi mel128"
QUESTIONS = ("front", "left")
BAND_GROUPS = 8


def make_item(seed: int, index: int, seconds: float) -> tuple[dict[str, np.ndarray], dict[str, bool], dict]:
    """Renders ``{audio format: [C, n]}``, labels ``{question: bool}`` and the item's description."""
    rng = rng_for(seed, "iv_probe", index)
    n = int(SR * seconds)
    cid = int(rng.integers(1, len(CLASSES) + 1))
    az = float(rng.uniform(-180, 180))
    el = float(np.degrees(np.arcsin(rng.uniform(-1, 1))))  # uniform on the sphere
    view_az, view_el = float(rng.uniform(-180, 180)), float(rng.uniform(-30, 30))
    gain = 0.1 * 10 ** (rng.uniform(-10, 10) / 20)  # the level says nothing about the direction
    snr_db = float(rng.uniform(5, 25))
    world = encode(gain * class_sound(cid, n, SR, rng), az, el)
    world = world + gain * 10 ** (-snr_db / 20) * diffuse_noise(rng, n, SR)
    foa = rotate_to_view(world, view_az, view_el).astype(np.float32)
    rel = view_rotation(view_az, view_el) @ np.asarray(direction_to_vector(az, el))  # as rotate_to_view
    renders = {"ambi": foa, "mono": mono_render(foa)[None].astype(np.float32), "stereo": virtual_mic_binaural(foa)}
    labels = {"front": bool(rel[0] > 0), "left": bool(rel[1] > 0)}
    return renders, labels, {"class": cid, "az": az, "el": el, "view": [view_az, view_el], "snr_db": snr_db}


def pooled(features: torch.Tensor, groups: int = BAND_GROUPS) -> np.ndarray:
    """``[N, F, T]`` features → ``[N · groups]``: the time mean of each channel in ``groups`` equal groups of
    frequency rows."""
    n, f, _ = features.shape
    edges = np.linspace(0, f, groups + 1).round().astype(int)
    mean_t = features.mean(dim=-1)
    return torch.stack([mean_t[:, a:b].mean(dim=-1) for a, b in zip(edges[:-1], edges[1:])], dim=-1).reshape(-1).numpy()


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-2, steps: int = 200) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (mean log-loss + ``l2 · |w|²``) on standardised ``x``, by L-BFGS.
    Returns ``(w, b)`` for the standardised features."""
    xt, yt = torch.tensor(x, dtype=torch.float64), torch.tensor(y, dtype=torch.float64)
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(xt @ w + b, yt) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    return w.detach().numpy(), float(b.detach())


def probe(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray) -> np.ndarray:
    """Predicted labels of ``test_x`` by a probe fitted on ``(train_x, train_y)`` (statistics of train only)."""
    mu, sd = train_x.mean(0), train_x.std(0) + 1e-8
    w, b = fit_logistic((train_x - mu) / sd, train_y.astype(float))
    return ((test_x - mu) / sd) @ w + b > 0


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--items", type=int, default=2000, help="items in all (60 %% train, 40 %% test)")
    ap.add_argument("--seconds", type=float, default=1.0, help="audio per item (the shards' 1 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", type=Path, default=Path(__file__).parent / "results" / "iv_probe.json")
    args = ap.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    t_start, cpu_start, load_start = time.perf_counter(), cpu_s(), load_average()
    specs = {kind: Spectrogram(kind) for kind in {s for _, _, s in INPUTS}}
    feats: dict[str, list[np.ndarray]] = {name: [] for name, _, _ in INPUTS}
    timing = {name: {"cpu_s": 0.0, "wall_s": 0.0} for name, _, _ in INPUTS}
    labels: dict[str, list[bool]] = {q: [] for q in QUESTIONS}
    for i in range(args.items):
        renders, lab, _ = make_item(args.seed, i, args.seconds)
        for q in QUESTIONS:
            labels[q].append(lab[q])
        for name, fmt, kind in INPUTS:  # interleaved: every spec sees the same load conditions
            wave = torch.from_numpy(renders[fmt])
            c0, w0 = time.process_time(), time.perf_counter()
            with torch.no_grad():
                f = specs[kind](wave)
            timing[name]["cpu_s"] += time.process_time() - c0
            timing[name]["wall_s"] += time.perf_counter() - w0
            feats[name].append(pooled(f))
        if (i + 1) % 200 == 0:
            print(f"  {i + 1}/{args.items} items", file=sys.stderr, flush=True)
    n_train = int(round(0.6 * args.items))
    test_ids = [f"item{i}" for i in range(n_train, args.items)]
    results: dict = {}
    for q in QUESTIONS:
        y = np.array(labels[q])
        correct = {}
        for name, _, _ in INPUTS:
            x = np.stack(feats[name])
            pred = probe(x[:n_train], y[:n_train], x[n_train:])
            correct[name] = pred == y[n_train:]
        rows = {}
        for name, fmt, kind in INPUTS:
            ok = correct[name]
            lo, hi = wilson_interval(int(ok.sum()), ok.size)
            row = {
                "audio_format": fmt,
                "spec": kind,
                "features": int(np.stack(feats[name]).shape[1]),
                "accuracy": 100.0 * float(ok.mean()),
                "ci95_wilson": [100.0 * lo, 100.0 * hi],
            }
            if name != REFERENCE:
                row["paired_vs_reference"] = paired_gap(ok, correct[REFERENCE], test_ids, seed=args.seed)
            rows[name] = row
        results[q] = {"positive_share_test": 100.0 * float(y[n_train:].mean()), "inputs": rows}
    ref = timing[REFERENCE]
    for name in timing:
        timing[name]["cpu_ratio_vs_reference"] = timing[name]["cpu_s"] / max(ref["cpu_s"], 1e-12)
        timing[name]["wall_ratio_vs_reference"] = timing[name]["wall_s"] / max(ref["wall_s"], 1e-12)
    payload = {
        "benchmark": "iv_probe",
        "command": "python benchmarks/iv_probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "items": args.items,
        "train_items": n_train,
        "test_items": args.items - n_train,
        "seconds_per_item": args.seconds,
        "seed": args.seed,
        "pooling": f"time mean per channel in {BAND_GROUPS} equal groups of frequency rows",
        "probe": "L2-regularised logistic regression (l2 1e-2 on standardised features), L-BFGS",
        "reference": REFERENCE,
        "results": results,
        "feature_extraction": timing,
        "wall_s": round(time.perf_counter() - t_start, 2),
        "cpu_s": round(cpu_s() - cpu_start, 2),
        "machine": {"cpu": cpu_model(), "load_average_start": load_start, "load_average_end": load_average()},
    }
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(payload, indent=2) + "\n")
    print(render(payload))
    return payload


def render(payload: dict) -> str:
    lines = [
        f"{payload['test_items']} test items ({payload['train_items']} train), seed {payload['seed']}",
        "| input | features | front: accuracy [95 % CI] | Δ vs ambi mel128 [95 % CI] | McNemar p | "
        "left: accuracy [95 % CI] | Δ vs ambi mel128 [95 % CI] | McNemar p | feature CPU × |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name, _, _ in INPUTS:
        cols = [name, str(payload["results"]["front"]["inputs"][name]["features"])]
        for q in QUESTIONS:
            r = payload["results"][q]["inputs"][name]
            cols.append(f"{r['accuracy']:.1f} [{r['ci95_wilson'][0]:.1f}, {r['ci95_wilson'][1]:.1f}]")
            g = r.get("paired_vs_reference")
            if g is None:
                cols += ["—", "—"]
            else:
                lo, hi = g["gap_ci95_bootstrap_videos"]
                cols += [f"{g['gap']:+.1f} [{lo:.1f}, {hi:.1f}]", f"{g['mcnemar_p']:.2g}"]
        cols.append(f"{payload['feature_extraction'][name]['cpu_ratio_vs_reference']:.2f}")
        lines.append("| " + " | ".join(cols) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
