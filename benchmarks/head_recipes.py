"""Which AVC-/AVSA-Bin head recipe? Chosen on held-out TRAINING videos, never on the validation split.

    python benchmarks/head_recipes.py --ckpt demo_out/runs/avsa/checkpoint.pt --shards demo_out/shards \
        [--task avsa] [--passes 6] [--holdout-every 5] [--seed 0]

The encoders are frozen, so the features of the training items are computed once (``--passes`` passes over the
train split, each with new views and negatives, exactly as ``avsa-train eval`` draws them: issue 13's
cached-feature heads), once with the pre-training augmentations (flip, colour and volume jitter: ``avsa-train
eval``'s default) and once without (``--no-augment``). The training videos are split by id: every
``--holdout-every``-th video (sorted) is held out, the others fit the head. The held-out videos' items are drawn
as ``avsa-train eval`` draws its evaluation items (every moment, random views, no augmentation). Each recipe
(training items augmented or not, head epochs, standardized features or not, learning-rate milestone) is fitted
on the fitting videos and scored on the held-out ones: item accuracy (logits of the V crops averaged), accuracy
of the aligned and of the misaligned items, and ROC AUC of the misalignment score. The validation split is not
read. The first recipe reproduces the old demo head (6 passes, one classifier step per item and pass,
raw features).

Writes ``benchmarks/results/head_recipes_{task}.json`` (or ``--result``) with CPU seconds beside wall time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import cpu_s, machine  # noqa: E402

#: (name, head epochs, standardize, milestone): the reference-like schedule of the old demo (6 epochs, × 0.1 at 5,
#: raw features) and the longer heads, raw and standardized.
RECIPES = (
    ("old demo: 6 epochs, raw", 6, False, 5),
    ("40 epochs, raw", 40, False, 30),
    ("40 epochs, standardized", 40, True, 30),
    ("100 epochs, standardized", 100, True, 75),
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ckpt", required=True, help="checkpoint whose frozen encoders are probed ('none': random)")
    ap.add_argument("--shards", required=True, help="shard folder with a train split")
    ap.add_argument("--task", choices=["avc", "avsa"], default="avsa")
    ap.add_argument("--width", type=float, default=None, help="width of a random encoder (--ckpt none)")
    ap.add_argument("--passes", type=int, default=6, help="encoded passes over the training items")
    ap.add_argument("--holdout-every", type=int, default=5, help="every N-th training video is held out")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--result", type=Path, default=None)
    args = ap.parse_args(argv)

    import torch

    from avsa_train.data import batches, sources
    from avsa_train.tasks import misalign
    from avsa_train.tasks.binary_eval import (
        BinaryEvalConfig,
        FrozenFeatures,
        encode_items,
        fit_cached_head,
        predict_features,
        summarise,
    )
    from avsa_train.tasks.binary_items import binary_stream
    from avsa_train.tasks.common import load_backbone, seed_torch
    from avsa_train.tasks.protocol import DownstreamProtocol

    t0, c0 = time.time(), cpu_s()
    dev = torch.device("cpu")
    seed_torch(args.seed)
    backbone = load_backbone(args.ckpt, width=args.width, device=dev)
    features = "transformer" if backbone.translator is not None else "direct"
    base = BinaryEvalConfig(task=args.task, features=features, epochs=args.passes, lr=args.lr, head_epochs=1,
                            protocol=DownstreamProtocol(seed=args.seed))
    urls = sources.shard_urls(args.shards, "train")
    donors = misalign.DonorBank(urls) if args.task == "avc" else None
    fmt = backbone.audio_format

    def videos_of(feats: FrozenFeatures, keep) -> FrozenFeatures:
        """The items of the videos for which ``keep(video_id)`` is true."""
        return feats.take(torch.tensor([keep(v) for v in feats.columns["video_id"]]).nonzero().flatten())

    def make_loader(stream):  # the task's own loader (avsa_train.tasks.binary_eval.run_binary)
        return batches.make_loader(stream, base.protocol.workers, pin_memory=False, seed=None)

    test_items = make_loader(binary_stream(urls, base, fmt, "test", 0, donors))
    every = encode_items(backbone, [(0, test_items)], base, dev, False, "encode held-out")
    held = set(sorted(set(every.columns["video_id"]))[:: args.holdout_every])
    holdout = videos_of(every, lambda v: v in held)
    rows, fitting_items = [], 0
    for augment in (True, False):
        cfg_a = replace(base, augment=augment)
        passes = ((e, make_loader(binary_stream(urls, cfg_a, fmt, "train", e, donors)))
                  for e in range(args.passes))
        fitting = videos_of(encode_items(backbone, passes, cfg_a, dev, False, "encode"), lambda v: v not in held)
        fitting_items = len(fitting)
        for name, epochs, standardize, milestone in RECIPES:
            seed_torch(args.seed)
            cfg = replace(cfg_a, head_epochs=epochs, standardize=standardize, milestones=(milestone,))
            c1 = cpu_s()
            head, _ = fit_cached_head(backbone, cfg, dev, fitting, show_progress=False)
            m = summarise(predict_features(head, holdout), args.task, seed=args.seed)
            rows.append({"recipe": name, "augment": augment, "head_epochs": epochs, "standardize": standardize,
                         "milestone": milestone,
                         **{k: m[k] for k in ("accuracy", "accuracy_aligned", "accuracy_misaligned", "roc_auc", "n",
                                              "n_videos")},
                         "cpu_seconds": round(cpu_s() - c1, 1)})
            print(f"{'augmented' if augment else 'plain':9s} {name:28s} held-out training videos: accuracy "
                  f"{m['accuracy']:.1f} % (aligned {m['accuracy_aligned']:.0f} %, misaligned "
                  f"{m['accuracy_misaligned']:.0f} %), AUC {m['roc_auc']:.3f}")
    result = {
        "task": f"{args.task}-bin",
        "checkpoint": backbone.describe(),
        "shards": str(args.shards),
        "passes": args.passes,
        "items": {"fitting": fitting_items, "held_out": len(holdout), "held_out_videos": sorted(held)},
        "lr": args.lr,
        "recipes": rows,
        "cpu_seconds": round(cpu_s() - c0, 1),
        "wall_seconds": round(time.time() - t0, 1),
        "machine": machine(),
        "command": [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])],
    }
    out = args.result or HERE / "results" / f"head_recipes_{args.task}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    print(f"written to {out} ({result['wall_seconds']} s wall, {result['cpu_seconds']} CPU-s)")
    return result


if __name__ == "__main__":
    main()
