"""`avsa-train eval avc|avsa`: binary AVC-Bin / AVSA-Bin classifiers on frozen features."""

from __future__ import annotations

import click

from avsa_data.cli._command import command
from avsa_data.cli._options import config_from, config_options
from avsa_train.cli._common import (  # the same names in eval, probe and segment: their shared plumbing
    SHARED_HELP,
    backbone_options,
    check_ckpt,
    check_shards,
    default_out,
    downstream_run,
    fmt_ci,
    setup,
)
from avsa_train.tasks.binary_eval import BinaryEvalConfig
from avsa_train.tasks.misalign import BINARY_TASKS


@command(
    "eval",
    help=f"""Binary audio-visual classification on frozen features: TASK is avc (AVC-Bin: is the audio
from this video?) or avsa (AVSA-Bin: is the audio spatially aligned with the viewpoints?).

Protocol (reference eval-avc.py / eval-avsa.py, 4-crop configs): items of V=4 viewpoints; half are negatives
(--misalign-rate 0.5), by default matched: their audio is distributed as a positive's (AVSA: each crop hears
its scene rendered at another viewpoint of the bank; AVC: another video at that video's own viewpoints), so
one modality alone cannot tell them apart (--negatives reference: the authors' random yaw). Per crop, [video
feature (through the pre-trained video→audio transformer with --features transformer) ‖ audio feature] →
dropout 0.5 → MLP(512) → 2 logits. 10 epochs of Adam, batch 32, weight decay 1e-5; lr 1e-5 decayed ×0.1 at
epochs 5, 8 (avc) or 1e-4 at epoch 8 (avsa). Fit on the train split, evaluate on the val split with random views
and no augmentation, averaging the 4 crops' logits per item; repeated items are counted once. The same head is
also trained on the audio features alone and on the video features alone (--no-controls: not), and the
model's paired gap over the better control is reported. Writes OUT/eval_TASK.json (accuracies with 95% CIs
clustered by video) and OUT/eval_TASK_items.jsonl (one line per evaluated item, for paired comparisons of two
checkpoints).
{SHARED_HELP}
\b
Examples:
  avsa-train eval avc --shards shards/ --ckpt runs/avsa/checkpoint.pt
  avsa-train eval avsa --shards shards/ --ckpt none --width 0.125 --out eval-scratch/
  avsa-train eval avsa --shards shards/ --ckpt runs/avsa/checkpoint.pt --head-epochs 40 --standardize
""",
    sections={"Data": ["task", "shards", "train_split", "eval_split", "views", "misalign_rate", "negatives",
                       "min_yaw", "test_draws", "augment"],
              "Encoders": ["ckpt", "width", "audio_format", "spec", "features"],
              "Classifier": ["epochs", "batch_size", "lr", "milestones", "gamma", "weight_decay", "head_epochs",
                             "standardize", "controls", "seed"],
              "Run": ["out", "overwrite", "device", "workers", "quiet"]},
)
@click.argument("task", type=click.Choice(BINARY_TASKS))
@click.option("--shards", required=True, help="Shard folder (or glob/list) with train and val splits.")
@backbone_options
@config_options(BinaryEvalConfig, unset={"features": "transformer when the checkpoint has one, else direct"})
def eval_cmd(task: str, shards: str, ckpt: str, width, audio_format, spec, device: str, out, quiet: bool,
             overwrite: bool, **opts) -> None:
    from avsa_train.tasks.binary_eval import run_binary_eval
    from avsa_train.tasks.common import write_jsonl, write_metrics

    params = click.get_current_context().params
    cfg = config_from(BinaryEvalConfig, {**opts, "features": opts["features"] or "direct"}, task=task)  # checks
    check_ckpt(ckpt)
    check_shards(shards, (cfg.protocol.train_split, cfg.protocol.eval_split), cfg.views)
    if task == "avc":
        check_donors(shards, (cfg.protocol.train_split, cfg.protocol.eval_split))
    out_dir = default_out(ckpt, out)

    def train(training):
        backbone, dev = setup(ckpt, width, audio_format, spec, device, opts["seed"])
        if opts["features"] is None:
            opts["features"] = "transformer" if backbone.translator is not None else "direct"
        cfg = config_from(BinaryEvalConfig, opts, task=task)
        result = run_binary_eval(backbone, shards, cfg, dev, show_progress=not quiet, training=training)
        write_jsonl(out_dir, f"eval_{task}_items", result.item_rows())
        return write_metrics(out_dir, f"eval_{task}", result.to_json()), result.metrics

    def lines(m: dict) -> list[str]:
        out = [
            f"{task.upper()}-Bin@{cfg.views}: accuracy {m['accuracy']:.2f}% (95% CI clustered by video "
            f"{fmt_ci(m.get('ci95_videos'))}) over {m['n']} unique items of {m['n_videos']} videos "
            f"({m.get('n_repeats_dropped', 0)} repeated draws not counted)",
            f"  crop accuracy {m['crop_accuracy']:.2f}%, aligned {m['accuracy_aligned']}%, misaligned "
            f"{m['accuracy_misaligned']}%, ROC AUC {m['roc_auc']}",
        ]
        if "controls" in m:
            c, g = m["controls"], m["gap_over_best_control"]
            out.append(f"  controls: audio only {c['audio']['accuracy']:.2f}% {fmt_ci(c['audio']['ci95_videos'])}, "
                       f"video only {c['video']['accuracy']:.2f}% {fmt_ci(c['video']['ci95_videos'])}; model − "
                       f"{m['best_control']} only {g['gap']:+.2f} points {fmt_ci(g['gap_ci95_videos'])}")
        return out + [f"  note: {n}" for n in m.get("notes", [])]

    downstream_run(f"eval_{task}", "avsa-train eval", out_dir, params, overwrite, train, lines)


def check_donors(shards: str, splits: tuple[str, ...]) -> None:
    """AVC-Bin's negatives hear another video of the same split: each split needs ≥ 2 videos (counted in the
    shards' manifest.json; not checked without one)."""
    from avsa_data.options import OptionError
    from avsa_train.data.sources import split_video_count

    for split in splits:
        n = split_video_count(shards, split)
        if n is not None and n < 2:
            raise OptionError(f"eval avc needs ≥ 2 videos in each split (a negative hears another video's audio), "
                              f"and the '{split}' split of --shards {shards} has {n}: shard more videos into it "
                              f"(--list), or use eval avsa")
