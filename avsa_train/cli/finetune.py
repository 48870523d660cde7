"""`avsa-train finetune`: action recognition by fine-tuning the video encoder (seed §A.3)."""

from __future__ import annotations

from pathlib import Path

import click

from avsa_data.cli._command import command
from avsa_data.cli._options import config_from, config_options
from avsa_train.cli._common import SHARED_HELP, backbone_options, check_ckpt, default_out, downstream_run, fmt_ci, setup
from avsa_train.tasks.action import FinetuneConfig


@command(
    "finetune",
    help=f"""Fine-tune the whole video encoder with a linear layer after its global max pool for action
recognition on regular (not 360°) videos: UCF101, HMDB51, or a folder of <class>/<video> files.

Seed §A.3 defaults: Adam, 100 epochs, batch 28, lr 1e-4 decayed at epochs 40, 60 and 80 (×0.3, the
reference's factor), split 1. Clips of 8 frames at 16 fps; training: random clip, random resized crop to 112,
flip, colour jitter; test: shorter side 128, centre crop 112, N=25 uniformly spaced clips per video.
Reports clip accuracy and video accuracy (softmax averaged over a video's clips). Writes OUT/finetune.json.

Layouts: ucf101: --videos UCF-101/ (Class/v_*.avi), --splits ucfTrainTestlist/ (classInd.txt,
trainlist01.txt, testlist01.txt). hmdb51: --videos hmdb51/ (class/*.avi), --splits with
class_test_split1.txt files (1 = train, 2 = test). folder: --videos DIR with train/<class>/* and test/<class>/*,
or DIR/<class>/* with --splits holding train.txt and test.txt (lines <class>/<video>).
{SHARED_HELP}
With --eval-every K the model of the best periodic video accuracy is also kept in OUT/finetune.best.pt.

\b
Examples:
  avsa-train finetune --dataset ucf101 --videos UCF-101/ --splits ucfTrainTestlist/ --ckpt runs/avsa/checkpoint.pt
  avsa-train finetune --dataset folder --videos clips/ --ckpt none --epochs 5 --eval-every 1
""",
    sections={"Data": ["dataset", "videos", "splits", "fold", "skip_missing", "fps", "frames", "clips_per_video",
                       "test_clips"],
              "Encoders": ["ckpt", "width", "audio_format", "spec"],
              "Training": ["epochs", "batch_size", "lr", "milestones", "gamma", "weight_decay", "dropout",
                           "eval_every", "seed"],
              "Run": ["out", "overwrite", "device", "workers", "quiet"]},
)
@click.option(
    "--videos",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    required=True,
    help="Folder of the dataset's videos.",
)
@click.option(
    "--splits",
    type=click.Path(path_type=Path, exists=True, file_okay=False),
    default=None,
    help="Folder of the split files (required for ucf101 and hmdb51).",
)
@click.option("--dataset", type=click.Choice(["ucf101", "hmdb51", "folder"]), required=True, help="Dataset layout.")
@click.option("--fold", type=int, default=1, help="Official split number (1, 2 or 3).")
@click.option("--skip-missing", is_flag=True, help="Skip listed videos that are missing instead of failing.")
@backbone_options
@config_options(FinetuneConfig)
def finetune(videos: Path, splits: Path | None, dataset: str, fold: int, skip_missing: bool, ckpt: str, width,
             audio_format, spec, device: str, out, quiet: bool, overwrite: bool, **opts) -> None:
    from avsa_train.tasks.action import load_split, run_finetune
    from avsa_train.tasks.common import write_metrics

    params = click.get_current_context().params
    cfg = config_from(FinetuneConfig, opts)
    check_ckpt(ckpt)
    split = load_split(dataset, videos, splits, fold, allow_missing=skip_missing)
    out_dir = default_out(ckpt, out)

    def train(training):
        backbone, dev = setup(ckpt, width, audio_format, spec, device, opts["seed"])
        result = run_finetune(backbone, split, cfg, dev, show_progress=not quiet, dataset=dataset, training=training)
        return write_metrics(out_dir, "finetune", result.to_json()), result.metrics

    def lines(m: dict) -> list[str]:
        return [
            f"{dataset} split {fold}: clip accuracy {m['clip_accuracy']:.2f}% (95% CI video bootstrap "
            f"{fmt_ci(m['clip_accuracy_ci95_bootstrap_videos'])}), video accuracy {m['video_accuracy']:.2f}% "
            f"(Wilson {fmt_ci(m['video_accuracy_ci95_wilson'])}) over {m['n_test_videos']} test videos × "
            f"{m['clips_per_test_video']} clips; top-5 clip {m['clip_top5']:.2f}%, video {m['video_top5']:.2f}%",
        ]

    downstream_run("finetune", "avsa-train finetune", out_dir, params, overwrite, train, lines)
