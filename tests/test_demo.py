"""`avsa-data demo`: the README's first command, end to end (the --quick scale), and its failure modes."""

from __future__ import annotations

import importlib.util
import json
import math

import pytest
from click.testing import CliRunner
from conftest import run_cli

from avsa_train import demo as D
from avsa_train.cli.demo import demo as demo_cmd


def test_quick_demo_runs_every_stage_and_reports_real_metrics(tmp_path):
    out = tmp_path / "demo"
    r = run_cli("avsa_data", "demo", "--quick", "--out", str(out), timeout=900)
    report = (out / "report.md").read_text()
    assert report in r.stdout  # the report is printed at the end
    assert D.seed_spread_sentence(quick=True) in report  # a quick run does not quote the full scale's spread
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == set(D.ARMS)
    binary_and_probe = set(D.HEADLINES) - {"Segm mIoU"}  # segmentation only with --segmentation
    expected = {"AVSA": binary_and_probe, "scratch": binary_and_probe, "AVC only": {"Probe"}}
    assert "avsa-data demo --segmentation` adds it" in report
    for init, m in metrics["results"].items():
        assert {col for col in D.HEADLINES if col in m} == expected[init], (init, m)
        for col in expected[init]:
            assert 0.0 <= m[col] <= 100.0 and math.isfinite(m[col]), (init, col, m)
            lo, hi = m[col + " CI"]
            assert lo <= m[col] <= hi, (init, col, m)
            assert m[col + " n"] > 0
            n = m[col + " n"] if col.startswith(("Probe", "Segm")) else None  # the binary tables give n elsewhere
            assert D._cell(m[col], m[col + " CI"], n) in report
        for col in ("AVC@4", "AVSA@4"):
            if col in m:  # the single-modality controls, each an accuracy on the same items
                assert set(m[col + " controls"]) == {"audio", "video"}
                assert all(0.0 <= v <= 100.0 for v in m[col + " controls"].values())
                assert m[col + " gap over best control"]["control"] in ("audio", "video")
    # the AVSA run really started from the AVC checkpoint and the pre-training runs logged a loss curve
    cfg = json.loads((out / "eval" / "avsa" / "eval_avsa.json").read_text())["checkpoint"]["config"]
    assert cfg["init"].endswith("avc/checkpoint.pt") and cfg["task"] == "avsa"
    only = json.loads((out / "eval" / "avc-only" / "probe.json").read_text())["checkpoint"]["config"]
    assert only["task"] == "avc" and only["max_steps"] == D.SCALES["quick"].avc_steps + cfg["max_steps"]
    for run in ("avc", "avsa", "avc-only"):
        steps, loss = D.read_curve(out / "runs" / run)
        assert steps and all(math.isfinite(v) for v in loss)
    assert set(metrics["timings_s"]) >= {"synth", "shard", "pretrain AVC", "pretrain AVSA", "pretrain AVC only"}
    # the quick scale learns: the pretext AVSA accuracy (V = 4, chance 25 %) ends well above chance
    pre = metrics["pretext_avsa_acc"]
    assert pre["last10"] > 40.0 and pre["last10"] > pre["first10"] + 10, pre
    assert f"{pre['last10']:.1f} % over the last 10" in report
    # paired gaps on identical items, with intervals clustered by video around the gap
    for task in ("avc", "avsa", "probe", "probe vs AVC only"):
        g = metrics["paired_gaps"][task]
        lo, hi = g["gap_ci95_videos"]
        assert lo <= g["gap"] <= hi and D._gap(g) in report
    versus = [D._verdict(metrics["paired_gaps"][k]) for k in ("probe", "probe vs AVC only")]
    assert f"encoders {versus[0]} random init and {versus[1]} AVC pre-training alone" in report
    for task in ("avc", "avsa"):
        assert metrics["paired_gaps"][task]["n"] == metrics["results"]["AVSA"][f"{task.upper()}@4 n"]


@pytest.mark.parametrize("segmentation", [False, True])
def test_segmentation_runs_only_when_asked(tmp_path, monkeypatch, segmentation):
    """The demo's steps, recorded instead of run: segmentation of the AVSA and random-init encoders is added by
    ``segmentation`` and by nothing else."""
    ran: list[list[str]] = []
    monkeypatch.setattr(D, "require_torch", lambda: None)
    monkeypatch.setattr(D, "_run", lambda step, args, log: ran.append(args) or 0.0)
    monkeypatch.setattr(D, "paired", lambda *a: {})
    monkeypatch.setattr(D, "write_report", lambda out, *a, **k: out / "report.md")
    D.run_demo(tmp_path, quick=True, segmentation=segmentation, echo=lambda *a: None)
    segmented = [a[a.index("--out") + 1] for a in ran if a[:2] == ["avsa_train", "segment"]]
    assert segmented == ([str(tmp_path / "eval" / "avsa"), str(tmp_path / "eval" / "scratch")] if segmentation
                         else [])
    assert sum(a[:2] == ["avsa_train", "probe"] for a in ran) == 3  # AVSA, AVC only, scratch either way


def test_demo_without_the_train_extra_is_one_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    res = CliRunner().invoke(demo_cmd, ["--quick", "--out", str(tmp_path / "d")])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "needs torch" in lines[0] and "pip install" in lines[0], res.output
    assert not (tmp_path / "d").exists()  # nothing written before the check


def test_verdict_reads_the_interval_not_the_point():
    assert D._verdict({"gap": 3.0, "gap_ci95_videos": [0.1, 5.9]}) == "beat"
    assert D._verdict({"gap": 3.0, "gap_ci95_videos": [-0.1, 6.1]}) == "did not differ from"
    assert D._verdict({"gap": -1.3, "gap_ci95_videos": [-2.4, -0.3]}) == "scored below"
    assert D._verdict(None) == D._verdict({"gap": 5.0}) == "did not differ from"


def test_collect_metrics_reads_the_evaluation_schema_and_refuses_another(tmp_path):
    avc = {"metrics": {"accuracy": 61.0, "ci95_videos": [50, 70], "n": 40}}
    (tmp_path / "eval_avc.json").write_text(json.dumps(avc))
    (tmp_path / "segment.json").write_text(json.dumps(
        {"metrics": {"miou": 12.5, "miou_ci95_bootstrap_videos": [10, 15], "eval_crops": 64}}))
    (tmp_path / "probe.json").write_text(json.dumps(
        {"metrics": {"balanced_accuracy": {"mean": 57.0, "ci95_videos": [52, 62]}, "data": {"eval": {"items": 90}},
                     "prior_baseline": {"balanced_accuracy": {"mean": 50.0}}}}))
    m = D.collect_metrics(tmp_path)
    assert m == {"AVC@4": 61.0, "AVC@4 CI": [50, 70], "AVC@4 n": 40, "Probe": 57.0, "Probe CI": [52, 62],
                 "Probe n": 90, "Probe prior": 50.0, "Segm mIoU": 12.5, "Segm mIoU CI": [10, 15], "Segm mIoU n": 64}
    assert D._cell(61.0, [50, 70], 40) == "61.0 [50.0, 70.0] (n 40)" and D._cell(None) == "–"
    (tmp_path / "eval_avsa.json").write_text(json.dumps({"acc": 50}))
    with pytest.raises(D.DemoError, match="no metrics.accuracy"):
        D.collect_metrics(tmp_path)
