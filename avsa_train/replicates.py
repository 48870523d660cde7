"""The demo's comparisons over several pre-training seeds, with the causal control: which claims replicate.

    python -m avsa_train.replicates --out runs/replicates --seeds 0 1 2 [--quick] [--arms avsa,avc-only,broken]

One data set (the demo's synthetic data and shards, data seed ``--data-seed``) and one set of evaluation items
(evaluation seed ``--eval-seed``: the same views, negatives and head initialisations for every encoder), so
that every comparison is paired on identical items. Per pre-training seed ``s``, the arms
(:func:`avsa_train.demo.pretrain_arms`):

* ``AVSA``: the AVC stage, then AVSA from it (the demo's recipe);
* ``AVC only``: the AVC stage trained as many steps as both stages together;
* ``broken``: the **causal control**, the same two stages with ``--break-spatial-link`` — each sample's sound
  field turned by its own random yaw before its views are rendered, so the sounds are kept and their directions
  no longer match the video. Gains that are spatial must vanish here. Pre-trained for the seeds of
  ``--broken-seeds`` only (default: the first seed, once).

and once, a random initialisation (``scratch``, torch seed ``--eval-seed``). Each encoder is evaluated with
:func:`avsa_train.demo.evaluate`: AVC-Bin and AVSA-Bin (matched negatives, single-modality controls) and the
direction probe (``AVC only``: the probe only).

Gaps, per seed and pooled over the seeds: per item, the difference of the two encoders' per-item scores
(binary tasks: correct or not; probe: balanced sector accuracy), averaged over the seeds; its mean with the 95 %
interval of :func:`avsa_train.tasks.metrics.cluster_t_interval` over the held-out videos (each video one
observation: its items and the seeds' runs on them are correlated). Writes ``OUT/replicates.json`` and
``OUT/replicates.md``. Steps that finished in an earlier invocation are not run again (``OUT/done/``), so an
interrupted run continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from avsa_data.options import field_hint, typed_value
from avsa_train.demo import SCALES, DemoScale, Steps, evaluate, make_data, pretrain_arms, require_torch
from avsa_train.tasks.compare import read_items
from avsa_train.tasks.metrics import cluster_t_interval

#: The pre-trained arms (besides ``scratch``) and what each is evaluated on.
ARM_TASKS = {"AVSA": ("avc", "avsa", "probe"), "AVC only": ("probe",), "broken": ("avc", "avsa", "probe")}
#: The comparisons reported: (name, encoder A, encoder B, what); ``control`` is A's better single-modality control.
COMPARISONS = (
    ("AVC-Bin: AVSA − random init", "AVSA", "scratch", "avc"),
    ("AVC-Bin: AVSA − its better single-modality control", "AVSA", "control", "avc"),
    ("AVC-Bin: AVSA − broken spatial link", "AVSA", "broken", "avc"),
    ("AVSA-Bin: AVSA − random init", "AVSA", "scratch", "avsa"),
    ("AVSA-Bin: AVSA − its better single-modality control", "AVSA", "control", "avsa"),
    ("AVSA-Bin: AVSA − broken spatial link", "AVSA", "broken", "avsa"),
    ("AVSA-Bin: broken − its better single-modality control", "broken", "control", "avsa"),
    ("probe: AVSA − random init", "AVSA", "scratch", "probe"),
    ("probe: AVSA − AVC only", "AVSA", "AVC only", "probe"),
    ("probe: AVSA − broken spatial link", "AVSA", "broken", "probe"),
    ("probe: broken − random init", "broken", "scratch", "probe"),
)


class ResumableSteps(Steps):
    """:class:`~avsa_train.demo.Steps` that skips a step an earlier invocation finished (a marker in ``done``)."""

    def __init__(self, log: Path, done: Path, echo=print):
        super().__init__(log, echo)
        self.done = done
        done.mkdir(parents=True, exist_ok=True)

    def __call__(self, name: str, args: list[str]) -> None:
        marker = self.done / (name.replace("/", "_").replace(" ", "_") + ".json")
        if marker.is_file():
            self.timings[name] = json.loads(marker.read_text())["seconds"]
            self.echo(f"[replicates] {name}: done earlier")
            return
        super().__call__(name, args)
        marker.write_text(json.dumps({"seconds": self.timings[name], "args": args}))


def item_scores(eval_dir: Path, what: str, control: bool = False) -> dict[tuple, tuple[float, str]]:
    """Per-item score and video of one evaluation: ``what`` = ``avc`` / ``avsa`` (1 if correct; with ``control``,
    the better single-modality control's correctness, chosen as the evaluation reports it) or ``probe`` (balanced
    sector accuracy). Keys identify the item: ``(key, moment, draw)`` or ``(key, moment, view)``."""
    if what == "probe":
        return {(r["key"], r["moment"], r["view"]): (float(r["score"]), r["video_id"])
                for r in read_items(eval_dir / "probe_items.jsonl")}
    column = "correct"
    if control:
        best = json.loads((eval_dir / f"eval_{what}.json").read_text())["metrics"]["best_control"]
        column = f"correct_{best}_only"
    return {(r["key"], r["moment"], r["draw"]): (float(r[column]), r["video_id"])
            for r in read_items(eval_dir / f"eval_{what}_items.jsonl")}


def pooled_gap(pairs: Sequence[tuple[dict, dict]]) -> dict:
    """The gap A − B (percentage points) of per-item scores over one or more runs on the same items: per item the
    difference averaged over the runs, then the mean over items with its video-clustered 95 % interval."""
    keys = sorted(set.intersection(*(set(a) & set(b) for a, b in pairs)))
    if not keys:
        raise ValueError("the runs share no evaluation items (were they evaluated with the same --eval-seed?)")
    diffs = np.array([np.mean([a[k][0] - b[k][0] for a, b in pairs]) for k in keys])
    videos = [pairs[0][0][k][1] for k in keys]
    mean, lo, hi = cluster_t_interval(diffs, videos)
    return {"gap": round(100 * mean, 2), "gap_ci95_videos": [round(100 * lo, 2), round(100 * hi, 2)],
            "n": len(keys), "n_videos": len(set(videos)), "runs": len(pairs)}


def scale_with(sc: DemoScale, overrides: Sequence[str]) -> DemoScale:
    """``sc`` with ``FIELD=VALUE`` overrides (``avsa_steps=100``), each value typed by the field's type hint
    (:func:`avsa_data.options.typed_value`: ints, floats, ``true``/``false``, text, comma-separated tuples).
    Raises ``ValueError`` naming an unknown field or a bad value."""
    names = [f.name for f in fields(sc)]
    changes: dict = {}
    for item in overrides:
        name, sep, text = item.partition("=")
        if not sep or name not in names:
            raise ValueError(f"--set {item!r}: expected FIELD=VALUE with FIELD one of {', '.join(names)}")
        try:
            changes[name] = typed_value(text, field_hint(type(sc), name), text=True)
        except ValueError as e:
            raise ValueError(f"--set {item!r}: {name} {e}") from None
    return replace(sc, **changes)


def run_replicates(out: Path, seeds: Sequence[int], quick: bool = False, data_seed: int = 0, eval_seed: int = 0,
                   arms: Sequence[str] = tuple(ARM_TASKS), spec: str | None = None,
                   broken_seeds: Sequence[int] | None = None, overrides: Sequence[str] = (), echo=print) -> dict:
    """Run every arm for every seed into ``out`` (resumable) and return the per-seed and pooled gaps; ``spec``
    replaces the demo scale's audio features and ``overrides`` (``FIELD=VALUE``, :func:`scale_with`) any other
    field of it; the ``broken`` arm runs for ``broken_seeds`` only (default: the first of ``seeds``)."""
    broken_seeds = list(seeds[:1] if broken_seeds is None else broken_seeds)
    require_torch()
    sc: DemoScale = SCALES["quick" if quick else "full"]
    if spec is not None:
        sc = replace(sc, spec=spec)
    sc = scale_with(sc, overrides)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    steps = ResumableSteps(out / "replicates.log", out / "done", echo)
    t0 = time.time()
    shards = make_data(steps, out / "data", sc, data_seed)
    evals = out / "eval"
    dirs: dict[tuple[str, int | None], Path] = {
        ("scratch", None): evaluate(steps, "scratch", "none", shards, evals / "scratch", sc, eval_seed,
                                    ("avc", "avsa", "probe"))}
    for s in seeds:
        runs = out / "runs" / f"seed{s}"
        if "AVSA" in arms or "AVC only" in arms:
            ckpts = pretrain_arms(steps, shards, runs, sc, s, suffix=f" seed {s}", avc_only="AVC only" in arms)
            for arm in ("AVSA", "AVC only"):
                if arm in arms:
                    d = evals / f"seed{s}" / arm.lower().replace(" ", "-")
                    dirs[(arm, s)] = evaluate(steps, f"{arm} seed {s}", ckpts[arm], shards, d, sc, eval_seed,
                                              ARM_TASKS[arm])
        if "broken" in arms and s in broken_seeds:
            ckpts = pretrain_arms(steps, shards, runs / "broken", sc, s, extra=("--break-spatial-link",),
                                  suffix=f" broken seed {s}", avc_only=False)
            d = evals / f"seed{s}" / "broken"
            dirs[("broken", s)] = evaluate(steps, f"broken seed {s}", ckpts["AVSA"], shards, d, sc, eval_seed,
                                           ARM_TASKS["broken"])
    result = {"scale": "quick" if quick else "full", "spec": sc.spec, "overrides": list(overrides),
              "seeds": list(seeds), "data_seed": data_seed,
              "eval_seed": eval_seed, "comparisons": {}, "accuracy": accuracies(dirs, seeds),
              "wall_s": round(time.time() - t0, 1), "timings_s": steps.timings}
    for name, a, b, what in COMPARISONS:
        per_seed = {}
        for s in seeds:
            da, db = dirs.get((a, s)), dirs.get((b, s)) or dirs.get((b, None))
            if da is None or (db is None and b != "control"):
                continue
            sb = item_scores(da, what, control=True) if b == "control" else item_scores(db, what)
            per_seed[s] = (item_scores(da, what), sb)
        if per_seed:
            result["comparisons"][name] = {
                "per_seed": {str(s): pooled_gap([p]) for s, p in per_seed.items()},
                "pooled": pooled_gap(list(per_seed.values())),
            }
    (out / "replicates.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "replicates.md").write_text(render(result))
    return result


def accuracies(dirs: dict[tuple[str, int | None], Path], seeds: Sequence[int]) -> dict:
    """Each encoder's headline numbers per seed: AVC-Bin, AVSA-Bin (with the better control) and the probe."""
    rows: dict = {}
    for (arm, s), d in dirs.items():
        row = {}
        for task in ("avc", "avsa"):
            p = d / f"eval_{task}.json"
            if p.is_file():
                m = json.loads(p.read_text())["metrics"]
                row[task] = {"accuracy": m["accuracy"], "ci95_videos": m["ci95_videos"],
                             "best_control": m.get("best_control"),
                             "control_accuracy": (m.get("controls") or {}).get(m.get("best_control"), {}).get(
                                 "accuracy")}
        p = d / "probe.json"
        if p.is_file():
            m = json.loads(p.read_text())["metrics"]
            row["probe"] = {"balanced_accuracy": m["balanced_accuracy"]["mean"],
                            "ci95_videos": m["balanced_accuracy"]["ci95_videos"]}
        rows[f"{arm}" if s is None else f"{arm} seed {s}"] = row
    return rows


def render(result: dict) -> str:
    """``replicates.md``: the gaps per seed and pooled, then each encoder's numbers."""
    seeds = result["seeds"]
    lines = ["# Replicates", "",
             f"Scale `{result['scale']}`, audio features `{result['spec']}`, data seed {result['data_seed']}, "
             f"evaluation seed {result['eval_seed']} "
             f"(identical items for every encoder), pre-training seeds {', '.join(map(str, seeds))}. Gaps in "
             "percentage points with 95 % CIs clustered by held-out video (cluster-robust SE, Student t on videos − 1 "
             "df); pooled: per item the gap averaged over the seeds.", "",
             "| comparison | " + " | ".join(f"seed {s}" for s in seeds) + " | pooled | items | videos |",
             "| --- | " + " | ".join("---" for _ in seeds) + " | --- | --- | --- |"]
    for name, c in result["comparisons"].items():
        cells = [_gap(c["per_seed"].get(str(s))) for s in seeds]
        p = c["pooled"]
        lines.append(f"| {name} | {' | '.join(cells)} | **{_gap(p)}** | {p['n']} | {p['n_videos']} |")
    lines += ["", "| encoder | AVC-Bin (%) | its better control | AVSA-Bin (%) | its better control | probe (%) |",
              "| --- | --- | --- | --- | --- | --- |"]
    for name, row in result["accuracy"].items():
        probe = row.get("probe")
        lines.append(f"| {name} | {' | '.join(_accuracy(row.get('avc')))} | {' | '.join(_accuracy(row.get('avsa')))} "
                     f"| {'–' if probe is None else format(probe['balanced_accuracy'], '.1f')} |")
    lines += ["", f"Wall time {result['wall_s']:.0f} s (steps done in earlier invocations count their own time)."]
    return "\n".join(lines) + "\n"


def _accuracy(r: dict | None) -> tuple[str, str]:
    """An encoder's binary accuracy and its better control, as two table cells."""
    if r is None:
        return "–", "–"
    control = "–" if r["control_accuracy"] is None else f"{r['best_control']} {r['control_accuracy']:.1f}"
    return f"{r['accuracy']:.1f}", control


def _gap(g: dict | None) -> str:
    if not g:
        return "–"
    lo, hi = g["gap_ci95_videos"]
    return f"{g['gap']:+.1f} [{lo:+.1f}, {hi:+.1f}]"


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m avsa_train.replicates", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="output folder (resumable)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="pre-training seeds")
    ap.add_argument("--quick", action="store_true", help="the demo's quick scale")
    ap.add_argument("--data-seed", type=int, default=0, help="seed of the synthetic data and shards")
    ap.add_argument("--eval-seed", type=int, default=0, help="seed of the evaluation items and heads")
    ap.add_argument("--arms", default=",".join(ARM_TASKS), help="pre-trained arms: AVSA, AVC only, broken")
    ap.add_argument("--spec", default=None, help="audio features of every encoder (default: the demo's)")
    ap.add_argument("--broken-seeds", type=int, nargs="+", default=None,
                    help="seeds of the causal control (default: the first of --seeds)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="change a field of the demo's scale (avsa_train.demo.DemoScale), e.g. avsa_steps=100; "
                         "repeatable")
    args = ap.parse_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    unknown = [a for a in arms if a not in ARM_TASKS]
    if unknown:
        ap.error(f"--arms: unknown {', '.join(unknown)}; choose from {', '.join(ARM_TASKS)}")
    try:
        scale_with(SCALES["full"], args.overrides)
    except ValueError as e:
        ap.error(str(e))
    result = run_replicates(args.out, args.seeds, args.quick, args.data_seed, args.eval_seed, arms, args.spec,
                            args.broken_seeds, args.overrides)
    print(render(result))
    return result


if __name__ == "__main__":
    main()
