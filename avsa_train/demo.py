"""`avsa-data demo`: the whole system in one command, on a synthetic dataset made on the spot.

synth (train + val) → shard → pretrain AVC → pretrain AVSA initialised from AVC → AVC-Bin, AVSA-Bin and
segmentation, each also from a random initialisation (the scratch baseline) → ``DIR/report.md`` and
``DIR/demo.png`` (contact sheet, loss curves, audio-direction plot).

It lives beside the training code, not in the torch-free ``avsa_data``, because it drives training. It runs each
step as the ``avsa-data`` / ``avsa-train`` command a user would type (one subprocess each, so the report is what
those commands produce). Training needs PyTorch (the ``[train]`` extra); this module itself imports neither torch
nor matplotlib at import time, so ``avsa-data demo`` without them stops with one clear line
(:func:`require_torch`).
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path


class DemoError(Exception):
    """A demo step failed or a requirement is missing (one-line message)."""


@dataclass(frozen=True)
class DemoScale:
    """Sizes of one demo run, chosen by measurement (docs/RESULTS.md, "Why the earlier tiny runs did not learn").

    ``quick`` finishes in about 3 minutes on 2 CPU cores, ``full`` in about 10. Everything that differs from
    the paper's Table 2 (crop size, learning rate, no colour jitter / flip, dense scenes, the energy viewpoint
    sampler) is listed in docs/DEVIATIONS.md; the normal CLI defaults are untouched.
    """

    videos: int
    duration: float
    size: str
    views: int  # K, viewpoints per sample in the shards
    width: float  # channel width multiplier of the encoders
    avc_steps: int
    avsa_steps: int
    batch: int
    eval_epochs: int
    seg_epochs: int
    #: fraction of the videos held out for validation (the demo wants ≥ 8 validation videos at full scale)
    val_fraction: float = 1.0 / 3.0
    #: sounding visible objects per video (min, max) and their angular radius (degrees): dense scenes, so that
    #: most viewpoints see a sounding object (the paper's data has people and instruments in most views)
    sounding_objects: tuple[int, int] = (4, 6)
    object_radius: tuple[float, float] = (14.0, 20.0)
    #: viewpoint sampler of the shards: ``energy`` puts most views where the sound comes from
    sampler: str = "energy"
    #: crop side (pixels): 64 instead of 112 costs ~4× less per step and learns as fast (measured)
    crop_size: int = 64
    #: pre-training learning rate: Table 2's 1e-4 is for 100+ epochs; 1e-3 learns in a few hundred steps
    lr: float = 1e-3
    #: evaluation passes over the validation split (new views and negatives each): more paired items
    test_draws: int = 3
    #: seconds between the samples of a video: more, shorter videos and 2 samples per second give the model
    #: variety instead of a few scenes to memorise (measured in docs/RESULTS.md)
    stride: float = 0.5
    #: learning rate of the evaluation heads: the protocols' 1e-5 / 1e-4 over 10 epochs do not converge in a
    #: demo's few epochs (the heads stay constant classifiers), so the demo trains them faster.
    head_lr: float = 1e-3
    #: binary probes: cached-feature heads (``avsa-train eval --head-epochs``): the ``eval_epochs`` passes of
    #: training items are encoded once, then the classifier trains ``head_epochs`` passes over them on
    #: standardized features, lr × 0.1 at ``head_milestone``. Chosen on held-out *training* videos of the demo's
    #: data (docs/RESULTS.md, "Evaluation heads"): the reference schedule left the heads answering one class.
    head_epochs: int = 40
    head_milestone: int = 30
    #: the heads' training items keep the pre-training augmentations (flip, colour and volume jitter) although
    #: the encoders were pre-trained without them: on videos neither pre-training nor validation uses, augmented
    #: items gave AVC-Bin 89.3 % against 82.7 % without (docs/RESULTS.md, "Training items without augmentation")
    head_augment: bool = True


SCALES = {
    "quick": DemoScale(videos=16, duration=4.0, size="512x256", views=4, width=0.125, avc_steps=10, avsa_steps=60,
                       batch=16, eval_epochs=3, seg_epochs=2, val_fraction=0.25, test_draws=1),
    "full": DemoScale(videos=48, duration=4.0, size="512x256", views=4, width=0.125, avc_steps=20, avsa_steps=200,
                      batch=16, eval_epochs=4, seg_epochs=3, val_fraction=1.0 / 6.0),
}


def require_torch() -> None:
    """Raise ``DemoError`` unless the ``[train]`` extra (PyTorch, matplotlib) is installed."""
    missing = [m for m in ("torch", "matplotlib") if importlib.util.find_spec(m) is None]
    if missing:
        raise DemoError(
            f"the demo trains models and plots them, and needs {' and '.join(missing)} (the [train] extra): "
            "pip install torch==2.13.0 && pip install -e '.[train]'"
        )


def _run(step: str, args: list[str], log: Path) -> float:
    """Run ``python -m <args>``; append its output to ``log``; raise DemoError naming the step on failure."""
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n$ {' '.join(args)}\n")
        f.flush()
        r = subprocess.run([sys.executable, "-m", *args], stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        raise DemoError(f"step '{step}' failed (exit {r.returncode}); see {log}")
    return time.time() - t0


def run_demo(out: Path, quick: bool = False, seed: int = 0, echo=print) -> Path:
    """Run every step into ``out`` and return the path of ``out/report.md``."""
    require_torch()
    sc = SCALES["quick" if quick else "full"]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / "demo.log"
    log.write_text("")
    raw, shards, runs, evals = out / "raw", out / "shards", out / "runs", out / "eval"
    for done in (runs, evals):  # the demo recomputes its runs (the training commands would keep finished ones)
        shutil.rmtree(done, ignore_errors=True)
    timings: dict[str, float] = {}
    common = ["--device", "cpu", "--seed", str(seed), "--quiet"]

    def step(name: str, args: list[str]) -> None:
        echo(f"[demo] {name} …")
        timings[name] = _run(name, args, log)
        echo(f"[demo] {name}: {timings[name]:.1f} s")

    step("synth", ["avsa_data", "synth", "--out", str(raw), "--videos", str(sc.videos), "--duration",
                   str(sc.duration), "--size", sc.size, "--seed", str(seed), "--val-fraction", f"{sc.val_fraction:.4f}",
                   "--sounding-objects", *map(str, sc.sounding_objects), "--object-radius",
                   *map(str, sc.object_radius), "-q"])
    step("shard", ["avsa_data", "shard", "--src", str(raw), "--out", str(shards), "--labels", "synthetic",
                   "-k", str(sc.views), "--sampler", sc.sampler, "--crop-size", str(sc.crop_size), "--stride",
                   str(sc.stride), "--moments-per-sample", "1", "--shard-size", "16", "--seed", str(seed), "-q",
                   "--overwrite"])
    pre = ["--shards", str(shards), "--width", str(sc.width), "--batch-size", str(sc.batch), "--workers", "0",
           "--lr", str(sc.lr), "--no-color-jitter", "--flip-p", "0", *common]
    avc_dir, avsa_dir = runs / "avc", runs / "avsa"
    step("pretrain AVC", ["avsa_train", "pretrain", "--task", "avc", "--out", str(avc_dir), "--max-steps",
                          str(sc.avc_steps), *pre])
    step("pretrain AVSA", ["avsa_train", "pretrain", "--task", "avsa", "--out", str(avsa_dir), "--max-steps",
                           str(sc.avsa_steps), "--viewpoints", str(min(4, sc.views)), "--init",
                           str(avc_dir / "checkpoint.pt"), *pre])
    ev = ["--shards", str(shards), "--workers", "0", "--lr", str(sc.head_lr), *common]
    draws = ["--test-draws", str(sc.test_draws)]
    # items are decoded in the evaluating process (``ev``: --workers 0): on 2 cores, a loader worker's hand-over
    # of ~50 MB float batches through shared memory cost more than its overlap saved (47 vs 40 s per evaluation)
    binary = ["--epochs", str(sc.eval_epochs), "--head-epochs", str(sc.head_epochs), "--milestones",
              str(sc.head_milestone), "--standardize", "--augment" if sc.head_augment else "--no-augment"]
    results: dict[str, dict] = {}
    for name, ckpt in (("AVSA", avsa_dir / "checkpoint.pt"), ("scratch", "none")):
        d = evals / name.lower()
        extra = ["--width", str(sc.width)] if ckpt == "none" else []
        for task in ("avc", "avsa"):
            step(f"{task.upper()}-Bin ({name})", ["avsa_train", "eval", task, "--ckpt", str(ckpt), "--out", str(d),
                                                  *draws, *extra, *ev, *binary])
        step(f"segmentation ({name})", ["avsa_train", "segment", "--ckpt", str(ckpt), "--out", str(d), "--epochs",
                                        str(sc.seg_epochs), "--milestones", str(sc.seg_epochs - 1),
                                        "--batch-size", str(sc.batch), *extra, *ev])
        results[name] = collect_metrics(d)
    gaps = {}
    for task in ("avc", "avsa"):
        gap = evals / f"gap_{task}.json"
        items = [str(evals / d / f"eval_{task}_items.jsonl") for d in ("avsa", "scratch")]
        step(f"paired gap {task.upper()}-Bin", ["avsa_train.tasks.compare", *items, "--out", str(gap)])
        gaps[task] = json.loads(gap.read_text())
    report = write_report(out, sc, results, timings, [avc_dir, avsa_dir], shards, gaps)
    echo(f"[demo] report → {report}")
    return report


#: report column → (metrics file, headline field, confidence-interval field) in ``metrics`` of that JSON.
HEADLINES = {
    "AVC@4": ("eval_avc.json", "accuracy", "ci95_wilson"),
    "AVSA@4": ("eval_avsa.json", "accuracy", "ci95_wilson"),
    "Segm mIoU": ("segment.json", "miou", "miou_ci95_bootstrap_videos"),
}


def collect_metrics(eval_dir: Path) -> dict:
    """Headline numbers (percent), their 95 % CIs and item counts from the evaluation JSONs in ``eval_dir``.

    Raises ``DemoError`` when a JSON the demo wrote lacks its ``metrics`` block (a schema change would
    otherwise show up as an empty report).
    """
    out: dict = {}
    for col, (fname, field, ci_field) in HEADLINES.items():
        p = eval_dir / fname
        if not p.exists():
            continue
        m = json.loads(p.read_text()).get("metrics")
        if not isinstance(m, dict) or field not in m:
            raise DemoError(f"{p}: no metrics.{field}; was it written by this version of avsa-train?")
        out[col] = m[field]
        out[col + " CI"] = m.get(ci_field)
        out[col + " n"] = m.get("n", m.get("eval_crops"))
    return out


def read_curve(run_dir: Path, key: str = "loss") -> tuple[list[int], list[float]]:
    steps, vals = [], []
    p = run_dir / "metrics.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            r = json.loads(line)
            if key in r and "step" in r:
                steps.append(int(r["step"]))
                vals.append(float(r[key]))
    return steps, vals


def pretext_accuracy(run_dir: Path) -> tuple[list[int], list[float]]:
    """Per logged step, the pretext AVSA accuracy (percent; mean of the V→A and A→V directions) of a run."""
    steps, vals = [], []
    p = run_dir / "metrics.jsonl"
    if p.exists():
        for line in p.read_text().splitlines():
            r = json.loads(line)
            if "V2A/AVSA-Acc" in r and "A2V/AVSA-Acc" in r:
                steps.append(int(r["step"]))
                vals.append((float(r["V2A/AVSA-Acc"]) + float(r["A2V/AVSA-Acc"])) / 2)
    return steps, vals


def write_report(out: Path, sc: DemoScale, results: dict, timings: dict, runs: list[Path], shards: Path,
                 gaps: dict | None = None) -> Path:
    png = out / "demo.png"
    _figure(png, runs, shards)
    gaps = gaps or {}
    acc_steps, acc = pretext_accuracy(runs[-1])
    tail = acc[-10:]
    pretext = {"first10": sum(acc[:10]) / max(1, len(acc[:10])), "last10": sum(tail) / max(1, len(tail)),
               "steps": acc_steps[-1] if acc_steps else 0, "chance": 100.0 / 4}
    lines = ["# avsa demo report", "",
             f"Synthetic data: {sc.videos} videos × {sc.duration:g} s at {sc.size} (dense scenes: "
             f"{sc.sounding_objects[0]}–{sc.sounding_objects[1]} sounding objects), K = {sc.views} viewpoints per "
             f"sample from the `{sc.sampler}` sampler, {sc.crop_size}-px crops; encoders at width ×{sc.width}. "
             f"Pre-training: AVC {sc.avc_steps} steps, then AVSA {sc.avsa_steps} steps, batch {sc.batch}, lr "
             f"{sc.lr:g}. Total time {sum(timings.values()):.0f} s on this machine.", "",
             f"Pretext AVSA accuracy (V = 4, chance 25 %; training batches): {pretext['first10']:.1f} % over the "
             f"first 10 steps → {pretext['last10']:.1f} % over the last 10.", "",
             "| initialisation | AVC@4 (%) | AVSA@4 (%) | Segm mIoU (%) |", "| --- | --- | --- | --- |"]
    for name, m in results.items():
        cells = [_cell(m.get(k), m.get(k + " CI"), m.get(k + " n")) for k in HEADLINES]
        lines.append(f"| {name} | {' | '.join(cells)} |")
    if gaps:
        lines += ["", "Paired gap, AVSA-pretrained − scratch, on the same items (percentage points; 95 % CI from a "
                  "bootstrap over validation videos; exact McNemar p on the items only one model gets right):", "",
                  "| task | gap | 95 % CI | McNemar p | items | videos |", "| --- | --- | --- | --- | --- | --- |"]
        for task, g in gaps.items():
            lo, hi = g["gap_ci95_bootstrap_videos"]
            lines.append(f"| {task.upper()}-Bin | {g['gap']:+.1f} | [{lo:+.1f}, {hi:+.1f}] | {g['mcnemar_p']:.2g} | "
                         f"{g['n']} | {g['n_videos']} |")
    lines += ["", "Brackets: 95 % confidence interval (Wilson for the binary tasks, a bootstrap over validation "
              "videos for segmentation); n: evaluated items (binary tasks, half of them negatives in expectation, "
              f"{sc.test_draws} draw(s) of views and negatives per validation sample) or crops (segmentation). "
              "Chance is 50 % for AVC@4 and AVSA@4. The binary heads are cached-feature heads (not the reference "
              f"protocol): {sc.eval_epochs} passes of training items "
              f"({'with the pre-training augmentations' if sc.head_augment else 'drawn without augmentation'}) "
              "encoded once by the frozen encoders, then "
              f"{sc.head_epochs} classifier epochs on standardized features at lr {sc.head_lr:g} (× 0.1 at "
              f"{sc.head_milestone}); segmentation trains {sc.seg_epochs} epochs at lr {sc.head_lr:g}; the protocols: "
              "10 epochs at 1e-5 / 1e-4. The demo's scale and why it differs from Table 2: "
              "docs/DEVIATIONS.md and docs/RESULTS.md.", "",
              f"![contact sheet, pre-training curves, audio direction]({png.name})", "", "## Step timings", "",
              "| step | seconds |", "| --- | --- |"]
    lines += [f"| {k} | {v:.1f} |" for k, v in timings.items()]
    report = out / "report.md"
    report.write_text("\n".join(lines) + "\n")
    (out / "metrics.json").write_text(json.dumps({"results": results, "paired_gaps": gaps, "pretext_avsa_acc": pretext,
                                                  "timings_s": timings}, indent=1))
    return report


def _cell(v, ci=None, n=None) -> str:
    """``62.5 [40.1, 80.3] (n 24)``; ``–`` for a missing value."""
    if v is None:
        return "–"
    s = f"{v:.1f}"
    if ci and all(isinstance(c, (int, float)) for c in ci):
        s += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    if n:
        s += f" (n {n})"
    return s


def _figure(png: Path, runs: list[Path], shards: Path) -> None:
    """Contact sheet of the first validation sample, pre-training loss curves, and an audio-direction plot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    from avsa_data import ambisonics
    from avsa_data.inspection import contact_sheet
    from avsa_data.reader import iter_samples

    val = sorted(shards.glob("val-*.tar")) or sorted(shards.glob("*.tar"))
    sample = next(iter_samples(val[0]))
    sheet = png.with_name("contact_sheet.png")
    contact_sheet(sample, sheet)
    fig = plt.figure(figsize=(16, 13))
    grid = fig.add_gridspec(2, 3, height_ratios=[1.5, 1.0])
    ax0 = fig.add_subplot(grid[0, :])
    ax0.imshow(plt.imread(sheet))
    ax0.axis("off")
    ax0.set_title("contact sheet of the first validation sample (crops, audio, masks per viewpoint)", fontsize=13)
    ax1 = fig.add_subplot(grid[1, 0])
    for r in runs:
        s, v = read_curve(r)
        if s:
            ax1.plot(s, v, label=r.name.upper())
    ax1.set_xlabel("training step")
    ax1.set_ylabel("contrastive loss (InfoNCE, nats)")
    ax1.legend()
    ax1.set_title("pre-training loss", fontsize=12)
    ax3 = fig.add_subplot(grid[1, 1])
    s, v = pretext_accuracy(runs[-1])
    if s:
        k = min(10, len(v))
        smooth = np.convolve(v, np.ones(k) / k, mode="valid")
        ax3.plot(s, v, color="0.75", lw=1, label="per step")
        ax3.plot(s[k - 1:], smooth, color="C1", lw=2, label=f"mean of {k} steps")
    ax3.axhline(25.0, color="k", ls="--", lw=1, label="chance (V = 4)")
    ax3.set_ylim(0, 100)
    ax3.set_xlabel("AVSA training step")
    ax3.set_ylabel("pretext AVSA accuracy (%)")
    ax3.legend(fontsize=9)
    ax3.set_title("which view does each audio belong to?", fontsize=12)
    ax2 = fig.add_subplot(grid[1, 2], projection="polar")
    ax2.set_theta_zero_location("N")
    views = sample.meta["viewpoints"]
    for k, v in enumerate(views):
        # energy direction of each view's rotated FOA: a sound in front of a view sits at the centre
        az, el = ambisonics.energy_direction(sample.audio(k, 0, "foa"))
        ax2.plot(np.deg2rad(az), 90 - el, "o", label=f"v{k} (view az {v['azimuth']:.0f}°)")
    gaz, gel = ambisonics.energy_direction(sample.foa(0))
    ax2.plot(np.deg2rad(gaz), 90 - gel, "r*", ms=14, label="world frame")
    ax2.set_rlim(0, 180)
    ax2.set_title("FOA energy direction per view\n(angle: azimuth; radius: 90° − elevation)", fontsize=12)
    ax2.legend(fontsize=8, loc="lower left", bbox_to_anchor=(0.9, -0.1))
    fig.tight_layout()
    fig.savefig(png, dpi=100)
    plt.close(fig)
