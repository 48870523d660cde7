"""`avsa-train probe`: where the sounding sources are relative to a view, from its frozen audio features."""

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
from avsa_train.tasks.direction_probe import DirectionProbeConfig


@command(
    "probe",
    help=f"""Direction probe on exact truth: predict, from the frozen audio feature of a view, which azimuth
sectors around the view hold an active sound event (meta.events of STARSS23 / DCASE-layout shards or of
`avsa-data synth --layout starss23`).

Items: every stored view of every moment of every labelled sample, unaugmented (fixed items: runs of several
checkpoints pair). Target: --sectors sectors of equal width, sector 0 centred on the view's front, counted to
the left; multi-label (at least one event in the sector). Head: z-scored features → linear (or --head mlp) →
per-sector binary cross-entropy, fitted on the train split over cached features, evaluated on val (or test). A
sector is predicted occupied when its probability exceeds its training base rate. Reports the macro balanced
accuracy (chance 50%), Hamming accuracy, ROC AUC per sector and the prior baseline, with video-clustered 95%
CIs (Student t). Writes OUT/probe.json and OUT/probe_items.jsonl (one line per item; compare two runs with
`python -m avsa_train.tasks.direction_probe compare A/probe_items.jsonl B/probe_items.jsonl`).
{SHARED_HELP}
\b
Examples:
  avsa-train probe --shards starss23-shards/ --ckpt runs/avsa/checkpoint.pt
  avsa-train probe --shards starss23-shards/ --ckpt none --width 0.125 --out probe-scratch/
""",
    sections={"Data": ["shards", "train_split", "eval_split", "sectors"],
              "Encoders": ["ckpt", "width", "audio_format", "spec"],
              "Probe": ["head", "hidden", "epochs", "batch_size", "lr", "milestones", "gamma", "weight_decay",
                        "standardize", "seed"],
              "Run": ["out", "overwrite", "device", "workers", "quiet"]},
)
@click.option("--shards", required=True, help="Shard folder (or glob/list) with sound-event labels, train and "
              "val (or test) splits.")
@backbone_options
@config_options(DirectionProbeConfig)
def probe(shards: str, ckpt: str, width, audio_format, spec, device: str, out, quiet: bool, overwrite: bool,
          **opts) -> None:
    from avsa_train.tasks.common import write_jsonl, write_metrics
    from avsa_train.tasks.direction_probe import run_direction_probe

    params = click.get_current_context().params
    cfg = config_from(DirectionProbeConfig, opts)  # checks the values
    check_ckpt(ckpt)
    check_shards(shards, (cfg.train_split,) + ((cfg.eval_split,) if cfg.eval_split else ()))
    out_dir = default_out(ckpt, out)

    def train(training):  # the probe's head trains in seconds on cached features: a rerun recomputes it
        backbone, dev = setup(ckpt, width, audio_format, spec, device, opts["seed"])
        result = run_direction_probe(backbone, shards, cfg, dev, show_progress=not quiet)
        write_jsonl(out_dir, "probe_items", result.item_rows())
        return write_metrics(out_dir, "probe", result.to_json()), result.metrics

    def lines(m: dict) -> list[str]:
        data = m["data"]["eval"]
        ba, base, gain = m["balanced_accuracy"], m["prior_baseline"], m["gain_over_prior"]["balanced_accuracy"]
        return [
            f"direction probe ({cfg.sectors} sectors, {m['split']} split): balanced accuracy {ba['mean']:.2f}% "
            f"(95% CI over videos {fmt_ci(ba['ci95_videos'])}; prior baseline {base['balanced_accuracy']['mean']:.2f}%,"
            f" gain {gain['gap']:+.2f} {fmt_ci(gain['gap_ci95_videos'])}), macro ROC AUC {m['macro_auc']}",
            f"  Hamming accuracy {m['hamming_accuracy']['mean']:.2f}% (prior baseline "
            f"{base['hamming_accuracy']['mean']:.2f}%) over {data['items']} items ({data['samples']} samples, "
            f"{data['videos']} videos, {data['items_with_events']} with events)",
        ]

    downstream_run("probe", "avsa-train probe", out_dir, params, overwrite, train, lines)
