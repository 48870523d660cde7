"""Run folders of avsa-train (issue 27): a rerun never replaces a finished run, SIGINT leaves a checkpoint that
resumes to the result of an uninterrupted run, option values are checked before anything is written, each
refusal names its option, and the exit status says whose move it is (README, "Exit status")."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from conftest import run_cli

from avsa_data import jobcontrol
from avsa_data.cli import main as data_cli
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, ShardJobError
from avsa_data.shards.outputs import LocalOutput, config_bytes
from avsa_train.checkpoint import load_checkpoint
from avsa_train.cli import main as train_cli

#: A tiny AVC pre-training on the CPU (batch 2, width 0.125, data loaded in-process).
TINY_AVC = ["--task", "avc", "--width", "0.125", "--batch-size", "2", "--workers", "0", "--device", "cpu", "-q"]


@pytest.fixture(autouse=True)
def _one_thread_per_process(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _pretrain(shards: Path, out: Path, *extra: str, check: bool = True):
    """``avsa-train pretrain`` in this process (as the command line runs it, without a new interpreter's start)."""
    r = CliRunner().invoke(train_cli.main, ["pretrain", "--shards", str(shards), "--out", str(out), *TINY_AVC, *extra])
    assert not check or r.exit_code == 0, r.output
    return r


def _losses(run: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_a_rerun_never_replaces_a_finished_run(synth_shards, tmp_path):
    run = tmp_path / "r1"
    _pretrain(synth_shards, run, "--max-steps", "2")
    kept = {p.name: p.read_bytes() for p in (run / "checkpoint.pt", run / "metrics.jsonl")}
    again = _pretrain(synth_shards, run, "--max-steps", "2")
    assert "is finished (2 steps" in again.stdout and "nothing to do" in again.stdout, again.output
    for extra, named in ((["--max-steps", "1"], "--max-steps 2 there, 1 here"), (["--max-steps", "2", "--lr", "1e-3"],
                                                                                 "--lr 1e-4 there, 0.001 here")):
        r = _pretrain(synth_shards, run, *extra, check=False)
        assert r.exit_code == 2 and named in r.stderr and "--overwrite" in r.stderr, r.output
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert {p: (run / p).read_bytes() for p in kept} == kept  # untouched
    longer = _pretrain(synth_shards, run, "--max-steps", "3")  # more steps of the same run: continued
    assert "3 steps" in longer.stdout and _losses(run)[:2] == [json.loads(x)["loss"] for x in
                                                                kept["metrics.jsonl"].decode().splitlines()]
    assert load_checkpoint(run / "checkpoint.pt")["step"] == 3
    _pretrain(synth_shards, run, "--max-steps", "1", "--overwrite")  # replaced only when asked
    assert len(_losses(run)) == 1 and load_checkpoint(run / "checkpoint.pt")["step"] == 1


def test_sigint_mid_run_leaves_a_checkpoint_that_resumes_to_the_uninterrupted_result(synth_shards, tmp_path):
    steps = ["--max-steps", "12", "--depth", "0"]
    run, straight = tmp_path / "interrupted", tmp_path / "straight"
    cmd = [sys.executable, "-m", "avsa_train", "pretrain", "--shards", str(synth_shards), "--out", str(run),
           *TINY_AVC, *steps]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and p.poll() is None and not (
            (run / "metrics.jsonl").is_file() and (run / "metrics.jsonl").read_text().strip()):
        time.sleep(0.05)
    assert p.poll() is None, p.communicate()
    p.send_signal(signal.SIGINT)
    out, err = p.communicate(timeout=300)
    assert p.returncode == 130, (out, err)
    found = re.search(r"^interrupted at step (\d+) — rerun the same command to resume$", err, re.M)
    assert found and "Traceback" not in err, err
    stopped = int(found[1])
    assert 1 <= stopped < 12 and load_checkpoint(run / "checkpoint.pt")["step"] == stopped
    assert len(_losses(run)) == stopped
    rerun = run_cli(*cmd[2:])
    assert "12 steps" in rerun.stdout
    run_cli(*cmd[2:7], str(straight), *cmd[8:])
    a, b = _losses(straight), _losses(run)
    assert len(a) == len(b) == 12 and max(abs(x - y) for x, y in zip(a, b)) < 1e-6, (a, b)
    torch.testing.assert_close(load_checkpoint(run / "checkpoint.pt")["video"],
                               load_checkpoint(straight / "checkpoint.pt")["video"])


def _tiny_fit(state_path: Path, stop_at: int | None = None):
    """Three epochs of five batches of a dropout MLP with a step schedule, checkpointed by a TrainingState;
    ``stop_at``: a stop signal arrives during that step (as SIGINT would). Returns (model, history)."""
    from avsa_data.rng import rng_for
    from avsa_train.fit import StepOutput, fit
    from avsa_train.runs import TrainingState, resumable
    from avsa_train.tasks.common import multistep

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    sched = multistep(opt, [1], 0.5)
    training = TrainingState(state_path)
    done = [0]

    def batches(epoch, state):
        g = rng_for(0, "tiny", epoch)
        for _ in range(5):
            yield torch.from_numpy(g.normal(size=(6, 4))).float(), torch.from_numpy(g.integers(0, 2, 6))

    def step(batch, epoch):
        done[0] += 1
        if stop_at is not None and done[0] == stop_at:
            jobcontrol._STOP.requested = signal.SIGINT
        x, y = batch
        loss = torch.nn.functional.cross_entropy(model(x), y)
        return StepOutput(loss, {"loss": float(loss.detach()), "n": 1})

    state = fit(model, opt, step, batches, range(3), summarise=dict, scheduler=sched,
                **resumable(training, {"model": model}, opt, sched))
    return model, state.history


def test_an_interrupted_downstream_fit_continues_exactly(tmp_path):
    """The downstream tasks' loop (fit + TrainingState): stopped at step 7 (mid-epoch 2), resumed from its state
    file, it ends with the weights, history and RNG stream of an uninterrupted run."""
    from avsa_train.runs import Interrupted

    straight, _ = None, None
    straight, history = _tiny_fit(tmp_path / "a.state.pt")
    try:
        with pytest.raises(Interrupted, match="interrupted at step 7"):
            _tiny_fit(tmp_path / "b.state.pt", stop_at=7)
    finally:
        jobcontrol._STOP.requested = None
    resumed, history_b = _tiny_fit(tmp_path / "b.state.pt")
    assert history_b == history
    torch.testing.assert_close(resumed.state_dict(), straight.state_dict(), rtol=0, atol=0)


def test_a_bad_hfov_writes_nothing(tmp_path):
    out = tmp_path / "hs"
    r = CliRunner().invoke(data_cli.main, ["shard", "--src", str(tmp_path), "--out", str(out), "--hfov", "90", "25"])
    assert r.exit_code == 2 and r.stderr.count("\n") == 1, r.output
    assert "--hfov" in r.stderr and "give the smaller first: --hfov 25 90" in r.stderr
    assert not out.exists()
    r = CliRunner().invoke(train_cli.main, ["segment", "--shards", str(tmp_path), "--ckpt", "none", "--out", str(out),
                                            "--hfov", "90", "45"])
    assert r.exit_code == 2 and "--hfov 45 90" in r.stderr and not out.exists(), r.output


def test_an_output_with_no_finished_shard_accepts_a_new_configuration(tmp_path):
    """A job that stopped before writing a shard (config.json and .work left behind) does not block a job of
    another configuration; once a shard is written, the output is refused without --overwrite."""
    out = tmp_path / "hs"
    (out / ".work" / "frag").mkdir(parents=True)
    (out / "config.json").write_bytes(config_bytes(JobConfig(sample=SampleConfig(seed=7)), "src"))
    LocalOutput(out).open(JobConfig(), "src", overwrite=False)
    assert not (out / "config.json").exists() and not (out / ".work").exists()  # cleared for the new job
    (out / "config.json").write_bytes(config_bytes(JobConfig(sample=SampleConfig(seed=7)), "src"))
    (out / "train-000000.tar").write_bytes(b"")
    with pytest.raises(ShardJobError, match="another configuration.*--overwrite"):
        LocalOutput(out).open(JobConfig(), "src", overwrite=False)


def _one_val_video(shards: Path, tmp_path: Path) -> Path:
    """A copy of ``shards`` whose manifest lists one video in its val split."""
    copy = tmp_path / "one_val"
    shutil.copytree(shards, copy)
    m = json.loads((copy / "manifest.json").read_text())
    val = sorted(k for k, v in m["videos"].items() if v["split"] == "val")
    for k in val[1:]:
        m["videos"][k]["samples"] = 0
    (copy / "manifest.json").write_text(json.dumps(m))
    return copy


def test_each_refusal_names_its_option_and_exits_as_the_table_says(synth_shards, tmp_path):
    """2: an option value refused; 1: bad input data (README "Exit status"; 75 and 130: the shard reliability
    tests and the SIGINT test). One line each, naming the option and the fix; nothing written."""
    out = tmp_path / "out"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    missing = str(tmp_path / "missing")
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    cases = [
        (data_cli, ["synth", "--out", str(out), "--size", "300x100"], 2, "--size must be an even 2:1"),
        (data_cli, ["shard", "--src", str(tmp_path), "--out", str(out), "--renders", "foa,mnoo"], 2, "--renders"),
        (data_cli, ["shard", "--src", str(tmp_path), "--out", str(out), "--hfov", "0", "90"], 2, "--hfov MIN MAX"),
        (train_cli, ["pretrain", "--shards", missing, "--out", str(out)], 2, f"--shards {missing} does not exist"),
        (train_cli, ["ablate", "--shards", missing, "--out", str(out)], 2, f"--shards {missing} does not exist"),
        (train_cli, ["eval", "avc", "--shards", missing, "--ckpt", "none", "--out", str(out)], 2,
         f"--shards {missing} does not exist"),
        (train_cli, ["segment", "--shards", str(synth_shards), "--ckpt", str(run_dir), "--out", str(out)], 2,
         f"--ckpt {run_dir} is a folder: use {run_dir / 'checkpoint.pt'}"),
        (train_cli, ["eval", "avsa", "--shards", str(synth_shards), "--ckpt", "none", "--views", "9", "--out",
                     str(out)], 2, "--views 9: the shards have banks of 8 viewpoints"),
        (train_cli, ["eval", "avc", "--shards", str(_one_val_video(synth_shards, tmp_path)), "--ckpt", "none",
                     "--out", str(out)], 2, "eval avc needs ≥ 2 videos in each split"),
        (train_cli, ["pretrain", "--shards", str(synth_shards), "--task", "avsa", "--viewpoints", "9", "--out",
                     str(out)], 2, "--viewpoints 9: the shards have banks of 8 viewpoints"),
        (train_cli, ["eval", "avsa", "--shards", str(synth_shards), "--ckpt", str(garbage), "--out", str(out), "-q",
                     "--workers", "0", "--device", "cpu"], 1, "garbage.pt: refused to load"),
    ]
    for cli, args, code, needle in cases:
        r = CliRunner().invoke(cli.main, args)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert r.exit_code == code and needle in r.stderr, (args, r.exit_code, r.output)
        assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in r.stderr, r.output
        if code == 2:
            assert not out.exists(), args  # refused before anything was written
        shutil.rmtree(out, ignore_errors=True)
    assert "interrupted at step 3 — rerun the same command to resume" in str(jobcontrol.Interrupted(3))
    r = CliRunner().invoke(data_cli.main, ["inspect", str(synth_shards)])  # a folder: its first sample
    assert r.exit_code == 0 and r.output.startswith("synth_0000/") and "8 viewpoints" in r.output, r.output
