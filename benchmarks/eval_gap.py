"""Does AVSA pre-training beat a random initialisation on AVSA-Bin? A paired comparison on synthetic data.

    python benchmarks/eval_gap.py --work /tmp/gap [--videos 48 --duration 4 --width 0.25 --audio-format ambi]
        [--ckpt CKPT | --pretrain-args "--epochs 30 ..."] [--task avsa] [--eval-epochs 10 --test-draws 4]

1. Synthetic data at the demo's scale (``avsa-data synth`` with dense scenes + ``avsa-data shard --labels
   synthetic --sampler energy --crop-size 64``) in ``WORK/`` unless
   ``--shards`` is given; kept between runs.
2. A checkpoint: ``--ckpt`` or ``avsa-train pretrain --shards WORK/shards --out WORK/pretrain`` with
   ``--pretrain-args`` appended (the newest ``*.pt``/``*.pth`` under ``WORK/pretrain`` is used).
3. ``avsa-train eval TASK`` on the checkpoint and on ``--ckpt none`` (same width, audio format, spectrogram
   and seed). With the same seed both runs see **identical** items — the same samples, views and negatives —
   so the comparison is paired: the gap, its video-bootstrap 95 % CI and an exact McNemar test on the items
   only one of the two gets right.

Writes ``benchmarks/results/eval_gap.json`` (or ``--result``) and prints a summary. The numbers are what they
are: a gap that is not significant is reported as such.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import run_cli as run  # noqa: E402
from common import synth_shards  # noqa: E402

#: The evaluation metrics copied, side by side, for the pre-trained and the scratch checkpoint.
HEADLINE_METRICS = ("accuracy", "ci95_wilson", "ci95_bootstrap_videos", "roc_auc", "accuracy_aligned",
                    "accuracy_misaligned")


def make_shards(work: Path, videos: int, duration: float, seed: int) -> Path:
    return synth_shards(
        work,
        ["--videos", str(videos), "--duration", str(duration), "--size", "512x256", "--seed", str(seed),
         "--val-fraction", "0.1667",
         # the demo's learning scale (docs/RESULTS.md): dense scenes, energy sampler, 64-px crops
         "--sounding-objects", "4", "6", "--object-radius", "14", "20"],
        ["--labels", "synthetic", "-k", "4", "--sampler", "energy", "--crop-size", "64", "--stride", "0.5",
         "--seed", str(seed), "-q"],
    )  # fmt: skip


def pretrain(shards: Path, work: Path, width: float, audio_format: str, seed: int, extra: str) -> Path:
    out = work / "pretrain"
    run(
        [
            "avsa_train",
            "pretrain",
            "--shards",
            str(shards),
            "--out",
            str(out),
            "--width",
            str(width),
            "--audio-format",
            audio_format,
            "--seed",
            str(seed),
            *shlex.split(extra),
        ]
    )
    ckpts = sorted((p for p in out.rglob("*") if p.suffix in (".pt", ".pth")), key=lambda p: p.stat().st_mtime)
    if not ckpts:
        raise SystemExit(f"no checkpoint (*.pt, *.pth) under {out}")
    return ckpts[-1]


def evaluate(
    task: str, ckpt: str, shards: Path, out: Path, seed: int, extra: list[str], reuse: bool = False
) -> tuple[dict, list[dict]]:
    if not (reuse and (out / f"eval_{task}.json").is_file() and (out / f"eval_{task}_items.jsonl").is_file()):
        _run_eval(task, ckpt, shards, out, seed, extra)
    metrics = json.loads((out / f"eval_{task}.json").read_text())
    items = [json.loads(ln) for ln in (out / f"eval_{task}_items.jsonl").read_text().splitlines() if ln]
    return metrics, items


def _run_eval(task: str, ckpt: str, shards: Path, out: Path, seed: int, extra: list[str]) -> None:
    run(
        [
            "avsa_train",
            "eval",
            task,
            "--ckpt",
            ckpt,
            "--shards",
            str(shards),
            "--out",
            str(out),
            "--seed",
            str(seed),
            "-q",
            *extra,
        ]
    )


def compare(task: str, pre: tuple[dict, list[dict]], scratch: tuple[dict, list[dict]], seed: int = 0) -> dict:
    """Paired gap (pre-trained − scratch) on the items both runs evaluated; see the module docstring."""
    from avsa_train.tasks.compare import paired_items_gap

    gap = paired_items_gap(pre[1], scratch[1], seed=seed)
    return {
        "task": f"{task}-bin",
        "pretrained": {k: pre[0]["metrics"].get(k) for k in HEADLINE_METRICS},
        "scratch": {k: scratch[0]["metrics"].get(k) for k in HEADLINE_METRICS},
        "paired": gap,
        "checkpoint": pre[0]["checkpoint"],
        "eval_config": pre[0]["config"],
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", type=Path, required=True, help="working folder (data, checkpoint, eval outputs)")
    ap.add_argument("--task", choices=["avsa", "avc"], default="avsa")
    ap.add_argument("--shards", type=Path, default=None, help="existing shards (train + val) instead of synth")
    ap.add_argument("--videos", type=int, default=48)
    ap.add_argument("--duration", type=float, default=4.0)
    ap.add_argument("--ckpt", default=None, help="existing checkpoint instead of pre-training")
    ap.add_argument("--pretrain-args", default="", help="extra arguments for avsa-train pretrain")
    ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--audio-format", choices=["mono", "stereo", "ambi"], default="ambi")
    ap.add_argument(
        "--eval-args",
        default="--epochs 10 --test-draws 4 --workers 2",
        help="extra arguments for both avsa-train eval runs",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--reuse-evals",
        action="store_true",
        help="use the evaluation outputs already in WORK/eval-pretrained and WORK/eval-scratch (e.g. copied from "
        "an `avsa-data demo` run, whose evaluations use the same seed, so the items are paired) instead of rerunning",
    )
    ap.add_argument("--result", type=Path, default=HERE / "results" / "eval_gap.json")
    args = ap.parse_args(argv)

    t0 = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    shards = args.shards or make_shards(args.work, args.videos, args.duration, args.seed)
    ckpt = args.ckpt or str(pretrain(shards, args.work, args.width, args.audio_format, args.seed, args.pretrain_args))
    extra = shlex.split(args.eval_args)
    pre = evaluate(args.task, ckpt, shards, args.work / "eval-pretrained", args.seed, extra, args.reuse_evals)
    info = pre[0]["checkpoint"]
    scratch_extra = [
        "--width",
        str(info["width"]),
        "--audio-format",
        info["audio_format"],
        "--spec",
        info["spectrogram"],
        *extra,
    ]
    if pre[0]["config"].get("features"):
        scratch_extra += ["--features", pre[0]["config"]["features"]]
    scratch = evaluate(
        args.task, "none", shards, args.work / "eval-scratch", args.seed, scratch_extra, args.reuse_evals
    )
    result = compare(args.task, pre, scratch, args.seed)
    from avsa_train.data.sources import split_sample_count

    result["data"] = {
        "shards": str(shards),
        "generated": args.shards is None,
        "train_samples": split_sample_count(shards, "train"),
        "val_samples": split_sample_count(shards, "val"),
    }
    if args.shards is None:
        result["data"].update(videos=args.videos, duration=args.duration, seed=args.seed)
    result["command"] = [Path(sys.argv[0]).name, *(argv if argv is not None else sys.argv[1:])]
    result["pretrain_args"] = None if args.ckpt else args.pretrain_args
    result["reused_evals"] = bool(args.reuse_evals)
    result["wall_seconds"] = round(time.time() - t0, 1)
    args.result.parent.mkdir(parents=True, exist_ok=True)
    args.result.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
    g = result["paired"]
    print(
        f"{args.task.upper()}-Bin: pre-trained {g['accuracy_a']}% vs scratch {g['accuracy_b']}% → gap "
        f"{g['gap']} points (95% CI {g['gap_ci95_bootstrap_videos']}), McNemar p = {g['mcnemar_p']:.3g} over "
        f"{g['n']} paired items of {g['n_videos']} videos; written to {args.result}"
    )
    return result


if __name__ == "__main__":
    main()
