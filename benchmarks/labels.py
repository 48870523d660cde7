"""Throughput of the ONNX pseudo-label backend, and the cost of its cube-map projection relative to the model.

    python benchmarks/labels.py [--size 1920x960 --face 512 --frames 10 --threads 0]

For each model, every frame goes through ``OnnxLabels.label_equirect`` (equirect → 6 cube faces → one batched
``session.run`` → softmax → projection back to a 4·n × 2·n equirect), and the seconds of each step are measured
inside that same call. Reported per model:

* ``frames_per_s``: frames labelled per wall-clock second (video decoding excluded);
* ``projection_over_model``: projection time / model time (the issue's "overhead of the projection step as a
  ratio of the model run time", both from the same calls), and ``pre_post_over_model``: faces + softmax +
  projection over model;
* ``batched_speedup``: one ``session.run`` on the 6 faces against six runs of one face (same faces, A/B
  alternated, median of the per-pair ratios).

Models (written with ``onnx.helper``, no downloads): ``tiny`` = the 1×1-convolution colour model the tests use
(almost no compute: the worst case for the projection ratio), and ``conv`` = three 3×3 convolutions (3→32→32→4,
ReLU), a small stand-in for a real network. The first call (which builds the cached sampling tables) is reported
separately as ``first_call_s``. Writes benchmarks/results/labels.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from avsa_data.geometry import angular_distance, equirect_direction_grid  # noqa: E402
from avsa_data.labels.onnx_model import OnnxLabels, OnnxSettings, normalise_faces, write_colour_model  # noqa: E402


def conv_model(path: Path, channels: int = 32) -> Path:
    """Three 3×3 convolutions (3 → C → C → 4 classes) with ReLU, dynamic batch and size."""
    import onnx
    from onnx import TensorProto, helper

    rng = np.random.default_rng(0)
    inits, nodes = [], []
    prev, cin = "image", 3
    for i, cout in enumerate((channels, channels, 4)):
        w = (rng.standard_normal((cout, cin, 3, 3)) / np.sqrt(9 * cin)).astype(np.float32)
        inits += [helper.make_tensor(f"W{i}", TensorProto.FLOAT, w.shape, w.ravel()),
                  helper.make_tensor(f"B{i}", TensorProto.FLOAT, (cout,), np.zeros(cout, np.float32))]
        out = "scores" if i == 2 else f"h{i}"
        nodes.append(helper.make_node("Conv", [prev, f"W{i}", f"B{i}"], [out if i == 2 else f"c{i}"],
                                      pads=[1, 1, 1, 1]))
        if i < 2:
            nodes.append(helper.make_node("Relu", [f"c{i}"], [out]))
        prev, cin = out, cout
    graph = helper.make_graph(nodes, "conv3", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                             ["N", 3, "S", "S"])],
                              [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["N", 4, "S", "S"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())
    return path


def make_frames(n: int, w: int, h: int, seed: int = 0) -> list[np.ndarray]:
    """Equirects with coloured discs on a noisy grey background (so softmax/projection see real boundaries)."""
    rng = np.random.default_rng(seed)
    az, el = equirect_direction_grid(h, w)
    frames = []
    for _ in range(n):
        img = rng.integers(90, 170, size=(h, w, 3), dtype=np.uint8)
        for colour in ((230, 25, 25), (25, 210, 25), (25, 25, 230)) * 3:
            m = angular_distance(az, el, rng.uniform(-180, 180), rng.uniform(-70, 70)) < rng.uniform(8, 25)
            img[m] = colour
        frames.append(img)
    return frames


def bench_model(name: str, path: Path, frames: list[np.ndarray], face: int, threads: int, pairs: int) -> dict:
    backend = OnnxLabels(model=path, settings=OnnxSettings(size=face, mean=(0, 0, 0), std=(1, 1, 1),
                                                           threads=threads, device="cpu"))
    t0 = time.perf_counter()
    backend.label_equirect(frames[0])
    first = time.perf_counter() - t0
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    for f in frames:
        backend.label_equirect(f, timings)
    wall = time.perf_counter() - t0
    n = len(frames)
    per = {k: v / n for k, v in timings.items()}

    # batched (one run of 6 faces) vs face by face (6 runs of 1), alternated
    from avsa_data.labels.cubemap import equirect_to_faces

    x = normalise_faces(equirect_to_faces(frames[0], face), (0, 0, 0), (1, 1, 1))
    sess, inp, out = backend.session, backend.input_name, backend.output_name
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        sess.run([out], {inp: x})
        t1 = time.perf_counter()
        for i in range(6):
            sess.run([out], {inp: x[i:i + 1]})
        t2 = time.perf_counter()
        ratios.append((t2 - t1) / (t1 - t0))
    return {
        "model": name,
        "face_size": face,
        "label_size": list(backend.label_size),
        "frames": n,
        "frames_per_s": round(n / wall, 3),
        "seconds_per_frame": {k: round(v, 5) for k, v in per.items()},
        "projection_over_model": round(per["projection"] / per["model"], 3),
        "pre_post_over_model": round((per["faces"] + per["softmax"] + per["projection"]) / per["model"], 3),
        "batched_speedup": round(statistics.median(ratios), 3),
        "first_call_s": round(first, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="1920x960", help="input equirect WxH")
    ap.add_argument("--face", type=int, default=512, help="cube-face side (pixels)")
    ap.add_argument("--frames", type=int, default=10)
    ap.add_argument("--threads", type=int, default=0, help="onnxruntime intra-op threads (0 = default)")
    ap.add_argument("--pairs", type=int, default=5, help="A/B pairs for the batching comparison")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.lower().split("x"))
    frames = make_frames(args.frames, w, h)
    with tempfile.TemporaryDirectory() as tmp:
        tiny = write_colour_model(Path(tmp) / "tiny.onnx", face_size=None)
        conv = conv_model(Path(tmp) / "conv.onnx")
        rows = [bench_model("tiny", tiny, frames, args.face, args.threads, args.pairs),
                bench_model("conv", conv, frames, args.face, args.threads, args.pairs)]
    result = {
        "benchmark": "labels",
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "cpus": os.cpu_count()},
        "config": {"size": args.size, "face": args.face, "frames": args.frames, "threads": args.threads,
                   "pairs": args.pairs},
        "results": rows,
    }
    out = HERE / "results" / "labels.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    for r in rows:
        print(f"{r['model']:>5}: {r['frames_per_s']:.2f} frames/s, per frame {r['seconds_per_frame']}, "
              f"projection/model {r['projection_over_model']}, batched speed-up ×{r['batched_speedup']}")
    print(f"→ {out}")


if __name__ == "__main__":
    main()
