"""`avsa-train segment`: semantic segmentation of viewpoints with an FPN head (seed §A.2)."""

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
    "segment",
    context_settings={"help_option_names": ["-h", "--help"], "show_default": True},
    help=f"""Train and evaluate the FPN segmentation head of seed §A.2 on the video encoder.

Head: global temporal pooling of the block2..block5 maps, 1×1 lateral convolutions to 128 channels (top-down
sum) with 3×3 smoothing, upsampling to 56×56 by 3×3 convolutions with dilation 2, summed, pixel-wise softmax.
Pixels with label confidence < 0.75 are ignored in the loss and the metrics. Seed defaults: Adam, batch 20
(items of V=4 viewpoints), lr 1e-4, weight decay 5e-4, 10 epochs, lr ×0.1 at epochs 5 and 8; random
viewpoints with 45–90° horizontal field of view, colour jitter and flips. Needs shards made with --labels.
--use-audio / --use-context add the audio feature / the transformer context (reference fpn-ctx variants).
Writes OUT/segment.json (mIoU, pixel accuracy, per-class IoU, video-bootstrap 95% CIs).
{SHARED_HELP}""",
)
@click.option("--shards", required=True, help="Shard folder (or glob/list) with masks, train and val splits.")
@common_options
@click.option(
    "--backbone",
    "backbone_mode",
    type=click.Choice(["frozen", "finetune"]),
    default="frozen",
    help="frozen: train the head only (reference head_only); finetune: train the encoders too.",
)
@click.option("--use-audio", is_flag=True, help="Condition the head on the viewpoint's audio feature.")
@click.option("--use-context", is_flag=True, help="Condition the head on the translator's context over the views.")
@click.option("--epochs", type=int, default=10, help="Training epochs.")
@click.option("--batch-size", type=int, default=20, help="Items (of V viewpoints) per batch.")
@click.option("--lr", type=float, default=1e-4, help="Adam learning rate.")
@click.option("--weight-decay", type=float, default=5e-4, help="Adam weight decay.")
@click.option("--milestones", default="5,8", help="Epochs where lr ×= --gamma.")
@click.option("--gamma", type=float, default=0.1, help="Learning-rate decay factor.")
@click.option("--views", type=int, default=4, help="Viewpoints per item.")
@click.option(
    "--hfov",
    nargs=2,
    type=float,
    default=(45.0, 90.0),
    help="Horizontal field of view range (degrees) of the training viewpoints.",
)
@click.option(
    "--eval-hfov",
    nargs=2,
    type=float,
    default=(45.0, 90.0),
    help="Field of view range (degrees) of the evaluated viewpoints.",
)
@click.option("--confidence", type=float, default=0.75, help="Label confidence below which pixels are ignored.")
@click.option("--train-split", default="train", help="Split the head is trained on.")
@click.option("--eval-split", default="val", help="Held-out split it is evaluated on.")
@friendly_errors
def segment(
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
    backbone_mode: str,
    use_audio: bool,
    use_context: bool,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    milestones: str,
    gamma: float,
    views: int,
    hfov: tuple[float, float],
    eval_hfov: tuple[float, float],
    confidence: float,
    train_split: str,
    eval_split: str,
) -> None:
    from avsa_train.tasks.common import write_metrics
    from avsa_train.tasks.segmentation import SegmentationConfig, run_segmentation

    backbone, dev = setup(ckpt, width, audio_format, spec, device, seed)
    cfg = SegmentationConfig(
        views=views,
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        weight_decay=weight_decay,
        milestones=parse_milestones(milestones) or (),
        gamma=gamma,
        hfov_range=tuple(hfov),
        eval_hfov_range=tuple(eval_hfov),
        use_audio=use_audio,
        use_context=use_context,
        backbone=backbone_mode,
        confidence_threshold=confidence,
        seed=seed,
        workers=workers,
        train_split=train_split,
        eval_split=eval_split,
    )
    result = run_segmentation(backbone, shards, cfg, dev, show_progress=not quiet)
    path = write_metrics(default_out(ckpt, out), "segment", result.to_json())
    m = result.metrics
    per_class = ", ".join(f"{k} {v:.1f}" for k, v in m["per_class_iou"].items() if v is not None)
    report(
        path,
        [
            f"segmentation: mIoU {m['miou']:.2f}% (95% CI video bootstrap {fmt_ci(m['miou_ci95_bootstrap_videos'])}), "
            f"pixel accuracy {m['pixel_accuracy']:.2f}% over {m['confident_pixels']} confident pixels "
            f"of {m['eval_crops']} crops",
            f"  per-class IoU: {per_class}",
        ],
    )
