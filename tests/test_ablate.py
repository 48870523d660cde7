"""`avsa-train ablate`: the Table 3 grid's definition against the paper, and the runner end to end on two cells
of the synthetic shards (results, table, resume, errors)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_cli

from avsa_data.options import flat_dict
from avsa_train import ablate
from avsa_train.config import PretrainConfig
from avsa_train.tasks.binary_eval import BinaryEvalConfig
from avsa_train.tasks.segmentation import SegmentationConfig

SEED_FILE = Path(__file__).parent / "data" / "seed_table3.txt"  # Table 3 of the seed, verbatim

# ------------------------------------------------------------------------------------------ grid definition


def test_grid_rows_differ_from_the_default_in_the_ablated_option_only():
    assert [f.key for f in ablate.FAMILIES] == ["a", "b", "c", "d", "e"]
    assert [len(f.rows) for f in ablate.FAMILIES] == [4, 4, 3, 4, 5]
    assert set(ablate.PAPER_TABLE3) == {r.id for r in ablate.all_rows() if r.in_paper and r.paper_row is None}
    beyond = [r for r in ablate.all_rows() if not r.in_paper]
    assert [(r.id, r.label, r.overrides) for r in beyond] == [("a/ambi-iv", "Ambisonics + IV", {"spec": "mel128+iv"})]
    # another reading of a paper row: the NoCtx reading of Direct Prediction, compared with the paper's row
    assert [(r.id, r.paper_row) for r in ablate.all_rows() if r.paper_row] == [("e/noctx", "e/d0")]
    scale = ablate.SCALES["tiny"]
    base = ablate.pretrain_values(ablate.DEFAULT_CELL, scale)
    assert {k: base[k] for k in ablate.DEFAULTS} == ablate.DEFAULTS
    assert base["task"] == "avsa" and base["moments"] == 1
    for fam in ablate.FAMILIES:
        # one row per family is the paper's own model, trained once for all families
        assert [r.cell for r in fam.rows].count(ablate.DEFAULT_CELL) == 1
        for row in fam.rows:
            values = ablate.pretrain_values(row.cell, scale)
            changed = {k for k in values if values[k] != base[k]}
            if row.cell == ablate.DEFAULT_CELL:
                assert row.overrides == {} and changed == set()
                continue
            if not row.in_paper:  # a row beyond the paper sets its own option, and nothing else differs
                assert changed == set(row.overrides) and all(values[k] == v for k, v in row.overrides.items())
                PretrainConfig(**values, shards="x").validate()
                continue
            if row.paper_row is not None:  # e/noctx: the default depth, the per-viewpoint MLP instead of attention
                assert row.overrides == {"context": "none"} and changed == {"context"}, (row, changed)
                continue
            # exactly the family's option is set, to a value other than the default ...
            assert list(row.overrides) == [fam.option], row
            assert row.overrides[fam.option] != ablate.DEFAULTS[fam.option]
            assert values[fam.option] == row.overrides[fam.option]
            # ... and nothing else differs but what that option forces (documented in ablate.IMPLIED)
            assert fam.option in changed and changed <= {fam.option, *ablate.IMPLIED.get(fam.option, ())}, row
            PretrainConfig(**values, shards="x").validate()
    # rows of one cell are one configuration; different cells are different configurations
    configs = {c: json.dumps(ablate.pretrain_values(c, scale), sort_keys=True) for c in ablate.cell_names()}
    assert len(set(configs.values())) == len(configs)
    for row in ablate.all_rows():
        assert json.dumps(ablate.pretrain_values(row.cell, scale), sort_keys=True) == configs[row.cell]
    # the paper reports identical numbers for "Instance" (c) and "Easy Only" (d): one run here too
    by_id = {r.id: r for r in ablate.all_rows()}
    assert by_id["c/instance"].cell == by_id["d/easy-only"].cell
    assert ablate.PAPER_TABLE3["c/instance"] == ablate.PAPER_TABLE3["d/easy-only"]
    st = ablate.pretrain_values("spatial-temporal", scale)
    assert st["negatives"] == "spatial+temporal" and st["moments"] == scale.temporal_moments >= 2
    v1 = ablate.pretrain_values("v1", scale)
    assert v1["viewpoints"] == 1 and v1["negatives"] == "instance"
    # the curriculum's easy stage is Table 2's AVC stage, identical for every cell that has one (whatever its V)
    paper = ablate.SCALES["paper"]
    stages = {}
    for cell in ablate.cell_names():
        cfg = PretrainConfig(**ablate.pretrain_values(cell, paper), shards="x").validate()
        if cfg.has_avc_stage:
            e = cfg.avc_stage()
            stages[cell] = (e.task, e.viewpoints, e.batch_size, e.negatives, cfg.switch_epoch, cfg.epochs)
    assert set(stages) == set(ablate.cell_names()) - {"v1", "instance", "hard-only", "no-curriculum"}
    assert set(stages.values()) == {("avc", 1, 112, "instance", 100, 150)}


def _seed_table3(text: str) -> dict[str, dict[str, list[float]]]:
    """``{family key: {row label: [AVC, AVSA, Segm, UCF]}}`` parsed from the seed's Table 3 blocks."""
    out: dict[str, dict[str, list[float]]] = {}
    pending: dict[str, list[float]] | None = None  # rows under an "AVC@4 AVSA@4 Segm UCF" header
    for line in text.splitlines():
        clean = re.sub(r"</?b>", "", line).strip()
        if clean.split() == ["AVC@4", "AVSA@4", "Segm", "UCF"]:
            pending = {}
            continue
        m = re.match(r"^(.+?)\t([\d.]+)\t([\d.]+)\t([\d.]+)\t([\d.]+)$", clean)
        if m and pending is not None:
            pending[m.group(1).strip()] = [float(x) for x in m.groups()[1:]]
            continue
        cap = re.match(r"^\(([a-e])\) ", clean)
        if cap and pending:
            out[cap.group(1)] = pending
            pending = None
    return out


def test_paper_numbers_are_the_seeds_table3():
    seed = _seed_table3(SEED_FILE.read_text())
    assert sorted(seed) == ["a", "b", "c", "d", "e"]
    for fam in ablate.FAMILIES:
        assert [r.label for r in fam.rows if r.in_paper and r.paper_row is None] == list(seed[fam.key]), fam.key
        labels = {r.id: r.label for r in fam.rows}
        for row in fam.rows:
            if row.paper_id is None:
                continue
            paper = ablate.PAPER_TABLE3[row.paper_id]
            assert [paper[m] for m in ("avc", "avsa", "seg", "ucf")] == seed[fam.key][labels[row.paper_id]], row.id


def test_selection_overrides_and_scales():
    assert ablate.select() == ablate.cell_names()
    assert ablate.select(["a"]) == ["mono", "stereo", "base", "ambi-iv"]
    assert ablate.select(["c", "d"]) == ["instance", "base", "spatial-temporal", "hard-only", "no-curriculum"]
    assert ablate.select(None, ["a/mono", "base", "d/easy-only"]) == ["mono", "base", "instance"]
    with pytest.raises(ValueError, match="unknown cell 'nope'"):
        ablate.select(None, ["nope"])
    with pytest.raises(ValueError, match="unknown family x"):
        ablate.select(["x"])
    assert ablate.parse_overrides(["steps=5", "bin_lr=none", "seg_milestones=1,2", "lr=3e-4"]) == {
        "steps": 5,
        "bin_lr": None,
        "seg_milestones": (1, 2),
        "lr": 3e-4,
    }
    for bad in (["nokey=1"], ["steps"], ["steps=abc"]):
        with pytest.raises(ValueError, match="--set"):
            ablate.parse_overrides(bad)
    paper = ablate.SCALES["paper"]  # Table 2 and the protocols' defaults
    pre = paper.pretrain
    assert (pre.width, pre.batch_size, pre.lr, pre.weight_decay) == (1.0, 28, 1e-4, 1e-5)
    assert pre.color_jitter and pre.flip_p == 0.5 and pre.max_steps is None and pre.epochs == 150
    assert paper.binary == BinaryEvalConfig() and paper.segmentation == SegmentationConfig()  # the protocols'
    assert (paper.get("bin_epochs"), paper.get("bin_batch_size"), paper.get("bin_lr")) == (10, 32, None)
    assert (paper.get("seg_epochs"), paper.get("seg_batch_size"), paper.get("seg_fpn_dim")) == (10, 20, 128)
    assert paper.get("seg_milestones") == (5, 8)
    with pytest.raises(ValueError, match="unknown scale"):
        ablate.resolve_scale("huge")


def _run(scale: ablate.Scale) -> ablate.GridRun:
    return ablate.GridRun(shards="/s", out=Path("/o"), scale_name="tiny", scale=scale, seed=5, device="cpu")


def test_every_set_key_reaches_the_task_config_a_cell_runs_with():
    """Each grid name of ``--set`` changes the field of the configuration that pre-training, AVC-/AVSA-Bin or
    segmentation actually receive (and nothing else of it); PART.FIELD reaches any other field."""
    tiny = ablate.SCALES["tiny"]
    targets = {  # grid name → (the config a cell runs with, its field(s)): written out here, not read from SCALE_KEYS
        "width": ("pretrain", ["width"]),
        "batch_size": ("pretrain", ["batch_size"]),
        "lr": ("pretrain", ["lr"]),
        "weight_decay": ("pretrain", ["weight_decay"]),
        "epochs": ("pretrain", ["epochs"]),
        "steps": ("pretrain", ["max_steps"]),
        "steps_per_epoch": ("pretrain", ["steps_per_epoch"]),
        "switch_epoch": ("pretrain", ["switch_epoch"]),
        "easy_batch_size": ("pretrain", ["easy_batch_size"]),
        "color_jitter": ("pretrain", ["color_jitter"]),
        "flip_p": ("pretrain", ["flip_p"]),
        "workers": ("pretrain", ["workers"]),
        "checkpoint_every": ("pretrain", ["checkpoint_every"]),
        "bin_epochs": ("binary", ["epochs"]),
        "bin_batch_size": ("binary", ["batch_size"]),
        "bin_lr": ("binary", ["lr"]),
        "bin_milestones": ("binary", ["milestones"]),
        "bin_test_draws": ("binary", ["test_draws"]),
        "seg_epochs": ("segmentation", ["epochs"]),
        "seg_batch_size": ("segmentation", ["batch_size"]),
        "seg_lr": ("segmentation", ["lr"]),
        "seg_milestones": ("segmentation", ["milestones"]),
        "seg_fpn_dim": ("segmentation", ["fpn_dim", "segm_dim"]),
        "seg_views": ("segmentation", ["views"]),
        "binary.hidden": ("binary", ["hidden"]),
        "binary.eval_split": ("binary", ["eval_split"]),  # a field of the nested DownstreamProtocol
        "segmentation.hfov_range": ("segmentation", ["hfov_range"]),
        "pretrain.tau": ("pretrain", ["tau"]),
    }
    assert set(ablate.SCALE_KEYS) - {"temporal_moments"} <= set(targets)
    values = {"color_jitter": "true", "flip_p": "0.25", "bin_milestones": "1", "seg_milestones": "1,2"}
    values |= {"segmentation.hfov_range": "50,70", "pretrain.tau": "0.2", "lr": "0.002"}
    values |= {"bin_lr": "0.002", "seg_lr": "0.002", "weight_decay": "0.002"}

    def configs(run):
        return {
            "pretrain": run.pretrain_config("base"),
            "binary": run.binary_config("avsa", "direct"),
            "segmentation": run.segmentation_config(),
        }

    before = {k: flat_dict(v) for k, v in configs(_run(tiny)).items()}
    for key, (part, fields) in targets.items():
        raw = values.get(key, "7")
        change = ablate.parse_overrides([f"{key}={raw}"])
        after = {k: flat_dict(v) for k, v in configs(_run(ablate.resolve_scale("tiny", change))).items()}
        for p in after:
            diff = {f for f in after[p] if after[p][f] != before[p][f]}
            if key == "workers" and p != "pretrain":  # the evaluations use the scale's workers too
                assert diff == {"workers"} and after[p]["workers"] == 7
                continue
            assert diff == (set(fields) if p == part else set()), (key, p, diff)
        assert all(after[part][f] == change[key] for f in fields), key
        # the change is part of the settings, so a rerun into the same folder redoes the cells
        assert _run(ablate.resolve_scale("tiny", change)).cell_spec("base") != _run(tiny).cell_spec("base"), key
    # the presets' settings are the grid names only (PART.FIELD appears once a field differs from its default)
    assert list(tiny.as_dict()) == list(ablate.SCALE_KEYS)
    changed = ablate.resolve_scale("tiny", ablate.parse_overrides(["binary.hidden=64"]))
    assert changed.as_dict()["binary.hidden"] == 64 and _run(changed).settings()["binary.hidden"] == 64
    st = ablate.pretrain_values("spatial-temporal", ablate.resolve_scale("tiny", {"temporal_moments": 3}))
    assert st["moments"] == 3
    for bad, message in (
        ("binary.task=avc", "each cell or the run sets it"),
        ("pretrain.viewpoints=8", "each cell or the run sets it"),
        ("pretrain.max_steps=5", "use its grid name, --set steps"),
        ("binary.nope=1", "expected KEY=VALUE"),
        ("binary.hidden=x", "binary.hidden must be int"),
        ("segmentation.hfov_range=50", "must be tuple of 2 float"),
    ):
        with pytest.raises(ValueError, match=message):
            ablate.parse_overrides([bad])


def test_the_command_line_reads_its_options_without_loading_torch():
    """``avsa-train ablate --help`` stays fast: the options come from the torch-free ``keys`` module, whose
    names are the presets' and the grid's own."""
    assert ablate.SCALE_NAMES == tuple(ablate.SCALES) and ablate.GRIDS == ("table3",)
    code = ("import sys, avsa_train.cli.ablate; "
            "print([m for m in ('torch', 'avsa_train.ablate.scales') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


# ------------------------------------------------------------------------------------------ the runner

#: A few steps and one epoch of every evaluation: the machinery, not the numbers (curriculum switch at step 2).
FAST = [
    "steps=2",
    "batch_size=2",
    "steps_per_epoch=1",
    "switch_epoch=1",
    "workers=0",
    "bin_epochs=1",
    "bin_batch_size=8",
    "seg_epochs=1",
    "seg_batch_size=4",
]


def _ablate(shards, out, *extra: str, check: bool = True):
    sets = [a for s in FAST for a in ("--set", s)]
    args = ["avsa_train", "ablate", "--shards", str(shards), "--out", str(out), "--device", "cpu", "-q"]
    return run_cli(*args, *sets, *extra, check=check)


def _finite(x) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def test_ablate_two_cells_end_to_end_resume_and_errors(synth_shards, tmp_path):
    import torch

    from avsa_train.checkpoint import load_checkpoint, state_checksum

    out = tmp_path / "grid"
    r = _ablate(synth_shards, out, "--cells", "base,a/mono,a/ambi-iv", "--no-scratch")
    assert "table3.md" in r.stdout
    assert r.stderr.count("training and evaluating") == 3 and "] mono (a/mono)" in r.stderr
    results = {}
    for cell, fmt in (("base", "ambi"), ("mono", "mono"), ("ambi-iv", "ambi")):
        res = json.loads((out / "cells" / cell / "result.json").read_text())
        results[cell] = res
        m = res["metrics"]
        for task in ("avc", "avsa"):
            assert _finite(m[task]["accuracy"]) and 0 <= m[task]["accuracy"] <= 100
            lo, hi = m[task]["ci95_bootstrap_videos"]
            assert lo <= m[task]["accuracy"] <= hi and m[task]["n"] > 0
        assert _finite(m["seg"]["miou"]) and 0 <= m["seg"]["miou"] <= 100 and m["seg"]["eval_crops"] > 0
        assert m["ucf"] is None
        # the cell really pre-trained its configuration and evaluated with its audio format
        ck = load_checkpoint(out / "cells" / cell / "pretrain" / "checkpoint.pt")
        assert ck["step"] == 2 and ck["config"]["audio_format"] == fmt and ck["config"]["viewpoints"] == 4
        spec = "mel128+iv" if cell == "ambi-iv" else "mel128"
        assert ck["config"]["spec"] == spec
        assert ck["audio"]["conv1.0.weight"].shape[1] == {"mono": 1, "ambi": 4}[fmt] + 3 * (cell == "ambi-iv")
        ev = json.loads((out / "cells" / cell / "eval" / "eval_avsa.json").read_text())
        assert ev["checkpoint"]["pretrained"] and ev["checkpoint"]["audio_format"] == fmt
        assert ev["checkpoint"]["spectrogram"] == spec  # evaluated with the features it was trained on
        negs = [json.loads(ln)["negatives"] for ln in (out / "cells" / cell / "pretrain" / "metrics.jsonl").open()]
        assert negs == ["instance", "instance+spatial"]  # easy → hard
    assert results["base"]["rows"] == ["a/ambi", "b/v4", "c/spatial", "d/curriculum", "e/d2"]

    md = (out / "table3.md").read_text()
    for text in ("(a) Spatial audio format", "(e) Modeling spatial context", "| Mono | `mono` |", "82.39", "89.83"):
        assert text in md, text
    avc_mono = results["mono"]["metrics"]["avc"]["accuracy"]
    mono_line = next(ln for ln in md.splitlines() if ln.startswith("| Mono | `mono` |"))
    assert f"{avc_mono:.1f}" in mono_line and "82.39" in mono_line and "n/a" in mono_line
    d2_line = next(ln for ln in md.splitlines() if ln.startswith("| Transformer (Depth=2) | `base` |"))
    assert f"{results['base']['metrics']['avc']['accuracy']:.1f}" in d2_line  # the shared cell fills every family
    iv_line = next(ln for ln in md.splitlines() if ln.startswith("| Ambisonics + IV² | `ambi-iv` |"))
    avsa_iv = results["ambi-iv"]["metrics"]["avsa"]["accuracy"]
    assert f"{avsa_iv:.1f}" in iv_line and iv_line.count("| — |") == 4  # no paper numbers (AVC, AVSA, Segm, UCF)
    assert "² Not in the paper" in md
    stereo_line = next(ln for ln in md.splitlines() if ln.startswith("| Stereo | `stereo` |"))
    assert "— | 84.47" in stereo_line  # not run: no number of ours
    table = json.loads((out / "table3.json").read_text())
    rows = {r["id"]: r for f in table["families"] for r in f["rows"]}
    assert rows["a/mono"]["paper"] == ablate.PAPER_TABLE3["a/mono"]
    assert rows["a/mono"]["ours"]["avc"]["value"] == avc_mono and rows["a/stereo"]["ours"] is None
    assert rows["a/ambi-iv"]["paper"] is None and not rows["a/ambi-iv"]["in_paper"]
    assert rows["a/ambi-iv"]["paired_vs_default"]["avsa"]["n"] == results["base"]["metrics"]["avsa"]["n"]
    gap = rows["a/mono"]["paired_vs_default"]["avsa"]
    assert gap["n"] == results["base"]["metrics"]["avsa"]["n"]  # the same items for both cells
    assert gap["gap"] == pytest.approx(
        results["mono"]["metrics"]["avsa"]["accuracy"] - results["base"]["metrics"]["avsa"]["accuracy"], abs=1e-3
    )

    # rerun: finished cells are skipped, nothing is trained again
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.json")}
    ckpts = {p: p.stat().st_mtime_ns for p in out.glob("cells/*/pretrain/checkpoint.pt")}
    r = _ablate(synth_shards, out, "--cells", "base,mono", "--no-scratch")
    assert r.stderr.count("done earlier, skipped") == 2 and "training and evaluating" not in r.stderr
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/*.json")} == stamps
    # a partial cell (its segmentation and result missing) is completed without pre-training again
    (out / "cells" / "mono" / "result.json").unlink()
    (out / "cells" / "mono" / "eval" / "segment.json").unlink()
    r = _ablate(synth_shards, out, "--cells", "mono", "--no-scratch")
    assert "[1/1] mono: training and evaluating" in r.stderr
    assert (out / "cells" / "mono" / "result.json").is_file() and (
        out / "cells" / "mono" / "eval" / "segment.json"
    ).is_file()
    assert {p: p.stat().st_mtime_ns for p in out.glob("cells/*/pretrain/checkpoint.pt")} == ckpts

    # a cell killed after its checkpoint but before pretrain.json: its pre-training resumes from a checkpoint of
    # its own configuration (checkpoint.config_changes finds none) and starts over from one of another
    for cell in ("base", "mono"):
        (out / "cells" / cell / "result.json").unlink()
        (out / "cells" / cell / "pretrain.json").unlink()
    other = out / "cells" / "mono" / "pretrain" / "checkpoint.pt"
    state = load_checkpoint(other)
    state["config"]["lr"] *= 2
    state["checksum"] = state_checksum(state)
    torch.save(state, other)
    r = _ablate(synth_shards, out, "--cells", "base,mono", "--no-scratch")
    resumed = {c: json.loads((out / "cells" / c / "pretrain.json").read_text())["resumed"] for c in ("base", "mono")}
    assert resumed == {"base": True, "mono": False}, r.stderr
    assert load_checkpoint(other)["config"]["lr"] == results["mono"]["spec"]["pretrain"]["lr"]  # trained again

    # bad input: one clear line, no traceback
    for extra, rc, message in (
        (["--cells", "nope"], 2, "unknown cell 'nope'"),
        (["--families", "z"], 2, "unknown family z"),
        (["--scale", "huge"], 2, "Invalid value for '--scale'"),
        (["--set", "steps=3"], 2, "holds a grid run with other settings (steps)"),
    ):
        r = _ablate(synth_shards, out, *extra, check=False)
        assert r.returncode == rc and message in r.stderr and "Traceback" not in r.stderr, (extra, r.stderr)
    empty = tmp_path / "empty"
    empty.mkdir()
    for shards, message in ((empty, "no shards"), (tmp_path / "missing", "does not exist")):
        r = _ablate(shards, tmp_path / "other", check=False)
        assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert len([ln for ln in r.stderr.splitlines() if ln.strip()]) == 1


def test_verdicts_and_the_paired_segmentation_gap(tmp_path):
    """A row's verdict reads our paired CI against the sign of the paper's difference; the segmentation gap
    resamples both cells' per-video confusion matrices together."""
    import numpy as np

    ci = lambda lo, hi: {"gap_ci95_bootstrap_videos": [lo, hi]}  # noqa: E731
    assert ablate.verdict(2.0, ci(0.5, 3.0)) == "reproduced"
    assert ablate.verdict(-2.0, ci(-3.0, -0.1)) == "reproduced"
    assert ablate.verdict(-2.0, ci(0.5, 3.0)) == "contradicted"
    assert ablate.verdict(2.0, ci(-1.0, 3.0)) == "unresolved"
    assert ablate.verdict(0.0, ci(0.5, 3.0)) == "no paper difference"
    assert ablate.verdict(1.0, None) == "not run"

    rng = np.random.default_rng(0)
    cells = tmp_path / "cells"

    def write(cell, confusions):
        path = cells / cell / "eval" / "segment.json"
        path.parent.mkdir(parents=True)
        per_video = {f"v{i}": c.tolist() for i, c in enumerate(confusions)}
        path.write_text(json.dumps({"metrics": {"per_video_confusion": per_video}}))

    good, bad = [], []
    for _ in range(6):  # per video: 2 classes, the same pixels; "good" gets more of them right
        n0, n1 = rng.integers(200, 400, 2)
        good.append(np.array([[n0 - 10, 10], [20, n1 - 20]]))
        bad.append(np.array([[n0 - 60, 60], [90, n1 - 90]]))
    write("base", bad)
    write("better", good)
    g = ablate.paired_segmentation_vs_default(cells, "better")
    assert g["gap"] > 0 and g["gap_ci95_bootstrap_videos"][0] > 0 and g["n_videos"] == 6
    assert g["gap"] == pytest.approx(g["miou_a"] - g["miou_b"], abs=1e-3)
    write("other-pixels", [c + 1 for c in good])  # not the same crops: no paired gap
    assert ablate.paired_segmentation_vs_default(cells, "other-pixels") is None
    assert ablate.paired_segmentation_vs_default(cells, "missing") is None


def test_paired_auc_gap_separates_scores_that_accuracy_cannot(tmp_path):
    """Two cells whose classifiers both answer "aligned" for every item tie on accuracy; the paired AUC gap
    still sees that one cell's scores rank the misaligned items higher."""
    import numpy as np

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 2, 240)
    vids = [f"v{i % 8}" for i in range(240)]

    def write(cell, scores):
        path = tmp_path / "cells" / cell / "eval" / "eval_avsa_items.jsonl"
        path.parent.mkdir(parents=True)
        rows = [
            {"key": f"k{i}", "moment": 0, "draw": 0, "video_id": v, "label": int(y), "score": float(s), "pred": 0}
            for i, (v, y, s) in enumerate(zip(vids, labels, scores))
        ]
        rows = [{**r, "correct": int(r["pred"] == r["label"])} for r in rows]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    write("base", rng.normal(size=240) - 5.0)  # all "aligned", scores unrelated to the label
    write("better", labels + rng.normal(size=240) - 5.0)  # all "aligned", scores follow the label
    cells = tmp_path / "cells"
    assert ablate.paired_vs_default(cells, "better", "avsa")["gap"] == 0.0
    g = ablate.paired_auc_vs_default(cells, "better", "avsa")
    assert g["auc_a"] > 0.7 and abs(g["auc_b"] - 0.5) < 0.1
    assert g["gap_ci95_bootstrap_videos"][0] > 0 and g["n"] == 240 and g["n_videos"] == 8
    assert ablate.paired_auc_vs_default(cells, "missing", "avsa") is None
