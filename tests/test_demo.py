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
    png = (out / "demo.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["results"]) == {"AVSA", "scratch"}
    for init, m in metrics["results"].items():
        for col in D.HEADLINES:
            assert 0.0 <= m[col] <= 100.0 and math.isfinite(m[col]), (init, col, m)
            lo, hi = m[col + " CI"]
            assert lo <= m[col] <= hi, (init, col, m)
            assert m[col + " n"] > 0
            assert f"{m[col]:.1f} [{lo:.1f}, {hi:.1f}]" in report
    # the AVSA run really started from the AVC checkpoint and both pre-training runs logged a loss curve
    cfg = json.loads((out / "eval" / "avsa" / "eval_avsa.json").read_text())["checkpoint"]["config"]
    assert cfg["init"].endswith("avc/checkpoint.pt") and cfg["task"] == "avsa"
    for run in ("avc", "avsa"):
        steps, loss = D.read_curve(out / "runs" / run)
        assert steps and steps[-1] == cfg["max_steps"] if run == "avsa" else steps
        assert all(math.isfinite(v) for v in loss)
    assert set(metrics["timings_s"]) >= {"synth", "shard", "pretrain AVC", "pretrain AVSA"}
    # the quick scale learns: the pretext AVSA accuracy (V = 4, chance 25 %) ends well above chance
    pre = metrics["pretext_avsa_acc"]
    assert pre["last10"] > 40.0 and pre["last10"] > pre["first10"] + 10, pre
    assert f"{pre['last10']:.1f} % over the last 10" in report
    # paired gaps (pre-trained − scratch) on identical items, with a video-bootstrap interval around the gap
    for task in ("avc", "avsa"):
        g = metrics["paired_gaps"][task]
        lo, hi = g["gap_ci95_bootstrap_videos"]
        assert lo <= g["gap"] <= hi and g["n"] == metrics["results"]["AVSA"][f"{task.upper()}@4 n"]
        assert f"| {task.upper()}-Bin | {g['gap']:+.1f} | [{lo:+.1f}, {hi:+.1f}]" in report


def test_demo_without_the_train_extra_is_one_clear_error(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a))
    res = CliRunner().invoke(demo_cmd, ["--quick", "--out", str(tmp_path / "d")])
    assert res.exit_code == 1
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and "needs torch" in lines[0] and "pip install" in lines[0], res.output
    assert not (tmp_path / "d").exists()  # nothing written before the check


def test_collect_metrics_reads_the_evaluation_schema_and_refuses_another(tmp_path):
    avc = {"metrics": {"accuracy": 61.0, "ci95_wilson": [50, 70], "n": 40}}
    (tmp_path / "eval_avc.json").write_text(json.dumps(avc))
    (tmp_path / "segment.json").write_text(json.dumps(
        {"metrics": {"miou": 12.5, "miou_ci95_bootstrap_videos": [10, 15], "eval_crops": 64}}))
    m = D.collect_metrics(tmp_path)
    assert m == {"AVC@4": 61.0, "AVC@4 CI": [50, 70], "AVC@4 n": 40,
                 "Segm mIoU": 12.5, "Segm mIoU CI": [10, 15], "Segm mIoU n": 64}
    assert D._cell(61.0, [50, 70], 40) == "61.0 [50.0, 70.0] (n 40)" and D._cell(None) == "–"
    (tmp_path / "eval_avsa.json").write_text(json.dumps({"acc": 50}))
    with pytest.raises(D.DemoError, match="no metrics.accuracy"):
        D.collect_metrics(tmp_path)
