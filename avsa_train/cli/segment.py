"""`avsa-train segment`: semantic segmentation of viewpoints with an FPN head (seed §A.2)."""

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
from avsa_train.tasks.segmentation import SegmentationConfig


@command(
    "segment",
    help=f"""Train and evaluate the FPN segmentation head of seed §A.2 on the video encoder.

Head: global temporal pooling of the block2..block5 maps, 1×1 lateral convolutions to 128 channels (top-down
sum) with 3×3 smoothing, upsampling to 56×56 by 3×3 convolutions with dilation 2, summed, pixel-wise softmax.
Pixels with label confidence < 0.75 are ignored in the loss and the metrics. Seed defaults: Adam, batch 20
(items of V=4 viewpoints), lr 1e-4, weight decay 5e-4, 10 epochs, lr ×0.1 at epochs 5 and 8; random
viewpoints with 45–90° horizontal field of view, colour jitter and flips. Needs shards made with --labels.
--use-audio / --use-context add the audio feature / the transformer context (reference fpn-ctx variants).
Writes OUT/segment.json (mIoU, pixel accuracy, per-class IoU, video-bootstrap 95% CIs).
{SHARED_HELP}
\b
Examples:
  avsa-train segment --shards shards/ --ckpt runs/avsa/checkpoint.pt
  avsa-train segment --shards shards/ --ckpt runs/avsa/checkpoint.pt --use-context --epochs 3 --milestones 2
""",
    sections={"Data": ["shards", "train_split", "eval_split", "views", "hfov_range", "eval_hfov_range",
                       "confidence_threshold"],
              "Encoders": ["ckpt", "width", "audio_format", "spec", "backbone", "use_audio", "use_context"],
              "Training": ["epochs", "batch_size", "lr", "weight_decay", "milestones", "gamma", "seed"],
              "Run": ["out", "overwrite", "device", "workers", "quiet"]},
)
@click.option("--shards", required=True, help="Shard folder (or glob/list) with masks, train and val splits.")
@backbone_options
@config_options(SegmentationConfig)
def segment(shards: str, ckpt: str, width, audio_format, spec, device: str, out, quiet: bool, overwrite: bool,
            **opts) -> None:
    from avsa_data.options import OptionError
    from avsa_train.tasks.common import write_metrics
    from avsa_train.tasks.segmentation import run_segmentation

    params = click.get_current_context().params
    cfg = config_from(SegmentationConfig, opts)
    check_ckpt(ckpt)
    meta = check_shards(shards, (cfg.protocol.train_split, cfg.protocol.eval_split), cfg.views)
    if not meta.get("labels", {}).get("present", False):
        raise OptionError(f"segment needs segmentation masks, and --shards {shards} has none: shard with "
                          f"avsa-data shard --labels synthetic|precomputed|onnx")
    out_dir = default_out(ckpt, out)

    def train(training):
        backbone, dev = setup(ckpt, width, audio_format, spec, device, opts["seed"])
        result = run_segmentation(backbone, shards, cfg, dev, show_progress=not quiet, training=training)
        return write_metrics(out_dir, "segment", result.to_json()), result.metrics

    def lines(m: dict) -> list[str]:
        per_class = ", ".join(f"{k} {v:.1f}" for k, v in m["per_class_iou"].items() if v is not None)
        return [
            f"segmentation: mIoU {m['miou']:.2f}% (95% CI video bootstrap {fmt_ci(m['miou_ci95_bootstrap_videos'])}), "
            f"pixel accuracy {m['pixel_accuracy']:.2f}% over {m['confident_pixels']} confident pixels "
            f"of {m['eval_crops']} crops",
            f"  per-class IoU: {per_class}",
        ]

    downstream_run("segment", "avsa-train segment", out_dir, params, overwrite, train, lines)
