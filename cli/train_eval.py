"""`avsa-train eval avc|avsa`: binary AVC-Bin / AVSA-Bin classifiers on frozen features."""

from __future__ import annotations

from pathlib import Path

import click

from cli._train_common import (
    SHARED_HELP,
    common_options,
    default_out,
    fmt_ci,
    friendly_errors,
    parse_milestones,
    report,
    setup,
)


@click.command(
    "eval",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    help=f"""Binary audio-visual classification on frozen features: TASK is avc (AVC-Bin: is the audio
from this video?) or avsa (AVSA-Bin: is the audio spatially aligned with the viewpoints, or rotated in yaw?).

Protocol (reference eval-avc.py / eval-avsa.py, 4-crop configs): items of V=4 viewpoints; half are negatives
(--misalign-rate 0.5); per crop, [video feature (through the pre-trained video→audio transformer with
--features transformer) ‖ audio feature] → dropout 0.5 → MLP(512) → 2 logits. 10 epochs of Adam, batch 32,
weight decay 1e-5; lr 1e-5 decayed ×0.1 at epochs 5, 8 (avc) or 1e-4 at epoch 8 (avsa). Fit on the train split,
evaluate on the val split with random views and no augmentation, averaging the 4 crops' logits per item.
Writes OUT/eval_TASK.json (accuracy with Wilson and video-bootstrap 95% CIs) and OUT/eval_TASK_items.jsonl
(one line per evaluated item, for paired comparisons of two checkpoints).
{SHARED_HELP}""",
)
@click.argument("task", type=click.Choice(["avc", "avsa"]))
@click.option("--shards", required=True, help="Shard folder (or glob/list) with train and val splits.")
@common_options
@click.option("--epochs", type=int, default=10, help="Classifier training epochs.")
@click.option("--batch-size", type=int, default=32, help="Items (of V crops) per batch.")
@click.option("--lr", type=float, default=None, help="Learning rate [default: 1e-5 avc, 1e-4 avsa].")
@click.option("--milestones", default=None, help="Epochs where lr ×= --gamma [default: 5,8 avc; 8 avsa].")
@click.option("--gamma", type=float, default=0.1, help="Learning-rate decay factor.")
@click.option("--weight-decay", type=float, default=1e-5, help="Adam weight decay.")
@click.option("--views", type=int, default=4, help="Viewpoints (crops) per item.")
@click.option(
    "--features",
    type=click.Choice(["transformer", "direct"]),
    default=None,
    help="Video features: through the pre-trained video→audio transformer (reference use_transf=audio) "
    "or the encoder's directly [default: transformer when the checkpoint has one].",
)
@click.option("--misalign-rate", type=float, default=0.5, help="Fraction of negative items.")
@click.option(
    "--min-yaw",
    type=float,
    default=0.0,
    help="AVSA: smallest |yaw| (degrees) of a rotated negative; the reference draws U(-180, 180).",
)
@click.option(
    "--test-draws", type=int, default=1, help="Evaluation passes over the val split, each with new views and negatives."
)
@click.option("--train-split", default="train", help="Split the classifier is fitted on.")
@click.option("--eval-split", default="val", help="Held-out split it is evaluated on.")
@friendly_errors
def eval_cmd(
    task: str,
    shards: str,
    ckpt: str,
    width: float | None,
    audio_format: str | None,
    spec: str | None,
    device: str,
    seed: int,
    workers: int,
    out: Path | None,
    quiet: bool,
    epochs: int,
    batch_size: int,
    lr: float | None,
    milestones: str | None,
    gamma: float,
    weight_decay: float,
    views: int,
    features: str | None,
    misalign_rate: float,
    min_yaw: float,
    test_draws: int,
    train_split: str,
    eval_split: str,
) -> None:
    from avsa_train.tasks.binary_eval import BinaryEvalConfig, run_binary_eval
    from avsa_train.tasks.common import write_jsonl, write_metrics

    backbone, dev = setup(ckpt, width, audio_format, spec, device, seed)
    if features is None:
        features = "transformer" if backbone.translator is not None else "direct"
    cfg = BinaryEvalConfig(
        task=task,
        views=views,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        milestones=parse_milestones(milestones),
        gamma=gamma,
        weight_decay=weight_decay,
        misalign_rate=misalign_rate,
        min_yaw=min_yaw,
        features=features,
        test_draws=test_draws,
        seed=seed,
        workers=workers,
        train_split=train_split,
        eval_split=eval_split,
    )
    result = run_binary_eval(backbone, shards, cfg, dev, show_progress=not quiet)
    out_dir = default_out(ckpt, out)
    path = write_metrics(out_dir, f"eval_{task}", result.to_json())
    write_jsonl(out_dir, f"eval_{task}_items", result.item_rows())
    m = result.metrics
    report(
        path,
        [
            f"{task.upper()}-Bin@{views}: accuracy {m['accuracy']:.2f}% (95% CI Wilson {fmt_ci(m['ci95_wilson'])}, "
            f"video bootstrap {fmt_ci(m.get('ci95_bootstrap_videos'))}) over {m['n']} items of {m['n_videos']} videos",
            f"  crop accuracy {m['crop_accuracy']:.2f}%, aligned {m['accuracy_aligned']}%, misaligned "
            f"{m['accuracy_misaligned']}%, ROC AUC {m['roc_auc']}",
        ],
    )
