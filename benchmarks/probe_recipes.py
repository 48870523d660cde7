"""Which direction-probe head recipe? Chosen on held-out TRAINING videos, never on the evaluation split.

    python benchmarks/probe_recipes.py --shards S --ckpt none --ckpt runs/avc/checkpoint.pt [--width 0.125]

The items of the train split of ``S`` (``avsa-train probe``'s items: every view of every moment, unaugmented)
are encoded once per feature: the hand-made :func:`avsa_train.tasks.direction_probe.doa_histogram` (a feature
that carries the direction) and the frozen audio encoder of each ``--ckpt``. The training videos are split by
id (sorted; even positions fit, odd positions score). Each recipe (head, learning rate, weight decay, batch,
epochs; the milestone at 70 % of the epochs) is fitted and scored with the probe's own functions: macro
balanced accuracy, macro ROC AUC and mean log loss on the held-out videos, the balanced accuracy on the fitting
ones (over-fitting shows as a gap), and CPU seconds. The evaluation split is not read.

Writes ``benchmarks/results/probe_recipes.json`` (or ``--result``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import torch  # noqa: E402

from avsa_train.data import sources  # noqa: E402
from avsa_train.tasks import direction_probe as dp  # noqa: E402
from avsa_train.tasks.common import load_backbone, seed_torch  # noqa: E402
from benchmarks.common import cpu_s  # noqa: E402

#: (head, lr, weight decay, batch, epochs); the first is the default of DirectionProbeConfig.
RECIPES = (
    ("linear", 1e-2, 1e-2, 64, 100),
    ("linear", 1e-2, 1e-3, 256, 200),
    ("linear", 1e-3, 1e-2, 64, 100),
    ("linear", 1e-2, 1e-4, 64, 100),
    ("linear", 1e-2, 1e-4, 256, 100),
    ("mlp", 1e-3, 1e-2, 64, 100),
    ("mlp", 1e-3, 1e-2, 256, 100),
)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", required=True, help="shards with sound-event labels and a train split")
    ap.add_argument("--ckpt", action="append", default=[], help="checkpoint or 'none' (repeatable)")
    ap.add_argument("--width", type=float, default=None, help="width of a --ckpt none encoder")
    ap.add_argument("--result", type=Path, default=HERE / "results" / "probe_recipes.json")
    args = ap.parse_args(argv)
    dev = torch.device("cpu")
    base = dp.DirectionProbeConfig()
    urls = sources.shard_urls(args.shards, base.train_split)
    features: dict[str, tuple[dp.FeatureFn, str]] = {"doa_histogram": (dp.doa_histogram, "ambi")}
    for ckpt in args.ckpt:
        seed_torch(base.seed)  # a random initialisation as `avsa-train probe --ckpt none` makes it
        backbone = load_backbone(ckpt, width=args.width, device=dev)
        features[f"encoder {ckpt}"] = (dp.backbone_features(backbone), backbone.audio_format)
    rows = []
    for name, (fn, audio_format) in features.items():
        items = dp.encode_split(urls, fn, audio_format, base, dev)
        videos = sorted(set(items.columns["video_id"]))
        fit_videos = set(videos[::2])
        fit_idx = [i for i, v in enumerate(items.columns["video_id"]) if v in fit_videos]
        held_idx = [i for i, v in enumerate(items.columns["video_id"]) if v not in fit_videos]
        fit_items, held = items.take(fit_idx), items.take(held_idx)
        for head, lr, wd, batch, epochs in RECIPES:
            cfg = replace(base, head=head, lr=lr, weight_decay=wd, batch_size=batch, epochs=epochs,
                          milestones=(int(0.7 * epochs),))
            t0, w0 = cpu_s(), time.perf_counter()
            probe, prior, _ = dp.fit_probe(fit_items, cfg, dev)
            cpu, wall = cpu_s() - t0, time.perf_counter() - w0
            m, _ = dp.summarise(dp.predict(probe, held), held.target.numpy(), prior.numpy(), held.columns["video_id"])
            mf, _ = dp.summarise(dp.predict(probe, fit_items), fit_items.target.numpy(), prior.numpy(),
                                 fit_items.columns["video_id"])
            row = {"feature": name, "head": head, "lr": lr, "weight_decay": wd, "batch_size": batch, "epochs": epochs,
                   "heldout_balanced_accuracy": m["balanced_accuracy"], "heldout_macro_auc": m["macro_auc"],
                   "heldout_log_loss": m["log_loss"], "prior_log_loss": m["prior_baseline"]["log_loss"],
                   "fit_balanced_accuracy": mf["balanced_accuracy"]["mean"], "cpu_s": round(cpu, 2),
                   "wall_s": round(wall, 2)}
            rows.append(row)
            print(f"{name:>40} {head:>6} lr {lr:g} wd {wd:g} batch {batch:>3} epochs {epochs:>3}: held-out balanced "
                  f"{m['balanced_accuracy']['mean']:.1f}% AUC {m['macro_auc']:.3f} "
                  f"(fit {mf['balanced_accuracy']['mean']:.1f}%) {cpu:.1f} CPU s", flush=True)
    payload = {"command": " ".join(["python", "benchmarks/probe_recipes.py", *(argv or sys.argv[1:])]),
               "fit_videos": len(fit_videos), "heldout_videos": len(videos) - len(fit_videos), "rows": rows}
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(payload, indent=1) + "\n")
    return payload


if __name__ == "__main__":
    main()
