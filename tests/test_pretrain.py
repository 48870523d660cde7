"""`avsa-train pretrain` end to end on the synthetic shards: learning, exact resume, DDP, AVC → AVSA, errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_cli

from avsa_train.checkpoint import load_checkpoint, load_encoders
from avsa_train.config import resolve
from avsa_train.losses import Negatives
from avsa_train.pretrain import negatives_at

TINY = ["--width", "0.125", "--device", "cpu", "-q"]
#: A two-step run of batch 2 with in-process loading.
TWO_STEPS = ["--batch-size", "2", "--max-steps", "2", "--workers", "0"]
PRETRAIN = ["avsa_train", "pretrain"]


@pytest.fixture(autouse=True)
def _one_thread_per_process(monkeypatch):
    """Training subprocesses use one OpenMP thread: on a shared 2-core machine, spinning thread pools of
    concurrent processes slow each other down many times over (torchrun does the same for its ranks)."""
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _mean(xs) -> float:
    xs = list(xs)
    return sum(xs) / len(xs)


def test_loss_falls_and_avsa_accuracy_rises_above_chance(synth_shards, tmp_path):
    """4 samples (one shard), V = 4 views, no augmentation: the joint loss (9) is learnt and the spatial
    alignment accuracy leaves chance (25 %)."""
    run = tmp_path / "avsa"
    r = run_cli(
        *PRETRAIN,
        "--shards",
        str(synth_shards / "train-000000.tar"),
        "--task",
        "avsa",
        "--out",
        str(run),
        "--batch-size",
        "4",
        "--steps-per-epoch",
        "1",
        "--max-steps",
        "30",
        "--lr",
        "1e-3",
        "--curriculum",
        "none",
        "--no-color-jitter",
        "--flip-p",
        "0",
        "--volume-jitter",
        "0",
        "--workers",
        "0",
        *TINY,
        timeout=900,
    )
    assert "30 steps" in r.stdout
    m = _metrics(run)
    assert [x["step"] for x in m] == list(range(1, 31))
    assert {x["negatives"] for x in m} == {"instance+spatial"}
    first, last = _mean(x["loss"] for x in m[:6]), _mean(x["loss"] for x in m[-6:])
    assert last < first - 0.5, (first, last)
    acc = _mean((x["V2A/AVSA-Acc"] + x["A2V/AVSA-Acc"]) / 2 for x in m[-6:])
    assert acc > 25 + 30, acc
    assert all(0 <= x["V2A/AVC-Acc"] <= 100 and x["samples_per_s"] > 0 for x in m)

    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 30 and ck["epoch"] == 30 and ck["world_size"] == 1 and ck["avsa_version"]
    assert ck["config"]["task"] == "avsa" and ck["config"]["viewpoints"] == 4 and ck["config"]["lr"] == 1e-3
    assert {"video", "audio", "translator", "optimizer", "rng"} <= set(ck) and ck["scaler"] is None
    video, audio, translator, cfg = load_encoders(run / "checkpoint.pt")
    assert cfg["width"] == 0.125 and video.out_dim == 64 and translator.depth == 2
    torch.testing.assert_close(video.state_dict(), ck["video"])


def test_resume_is_exact(synth_shards, tmp_path):
    """6 steps straight vs 3 + 3 with --resume, through 2 DataLoader workers (round-robin batches, resumed at an
    odd step), dropout (depth 1) and the curriculum switch at epoch 1; the resumed half also restarts from an
    older checkpoint, as after a crash that lost the last one."""
    base = [
        *PRETRAIN,
        "--shards",
        str(synth_shards),
        "--task",
        "avsa",
        "--batch-size",
        "2",
        "--viewpoints",
        "2",
        "--depth",
        "1",
        "--curriculum",
        "easy-to-hard",
        "--switch-epoch",
        "1",
        "--steps-per-epoch",
        "2",
        "--workers",
        "2",
        *TINY,
    ]
    full, part = tmp_path / "full", tmp_path / "part"
    run_cli(*base, "--out", str(full), "--max-steps", "6")
    run_cli(*base, "--out", str(part), "--max-steps", "4", "--checkpoint-every", "3", "--keep-checkpoints")
    assert load_checkpoint(part / "checkpoint.pt")["step"] == 4
    shutil.copy(part / "checkpoint-step3.pt", part / "checkpoint.pt")  # step 4 was logged, its checkpoint lost
    run_cli(*PRETRAIN, "--out", str(part), "--resume", "--max-steps", "6", "-q")  # options from the checkpoint
    a, b = _metrics(full), _metrics(part)
    assert [x["step"] for x in a] == [x["step"] for x in b] == [1, 2, 3, 4, 5, 6]
    assert [x["negatives"] for x in a] == ["instance"] * 2 + ["instance+spatial"] * 4  # the curriculum switch
    assert [(x["stage"], x["batch_size"], x["viewpoints"]) for x in a] == [("avc", 4, 1)] * 2 + [("avsa", 2, 2)] * 4
    for x, y in zip(a, b):
        assert abs(x["loss"] - y["loss"]) < 1e-6, (x["step"], x["loss"], y["loss"])
        assert x["V2A/AVC-Acc"] == y["V2A/AVC-Acc"]
    assert load_checkpoint(part / "checkpoint.pt")["step"] == 6


def test_ddp_gradients_equal_single_process_with_doubled_batch(tmp_path):
    script = Path(__file__).parent / "scripts" / "ddp_grads.py"
    out = tmp_path / "grads.pt"
    r = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    ddp = torch.load(out, weights_only=True)
    sys.path.insert(0, str(script.parent))
    from ddp_grads import batch, tiny_model

    model = tiny_model()
    x, y = batch()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for g_ddp, p in zip(ddp, model.parameters()):
        torch.testing.assert_close(g_ddp, p.grad, atol=1e-6, rtol=1e-6)
        assert p.grad.abs().max() > 0


def test_pretrain_runs_under_torchrun_on_cpu(synth_shards, tmp_path):
    run = tmp_path / "ddp"
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "avsa_train",
            *PRETRAIN[1:],
            "--shards",
            str(synth_shards),
            "--task",
            "avc",
            *TWO_STEPS,
            "--out",
            str(run),
            *TINY,
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    m = _metrics(run)
    assert [x["step"] for x in m] == [1, 2]  # rank 0 logs; metrics are averaged over both ranks
    assert m[0]["samples_per_s"] > 0 and "V2A/AVC-Acc" in m[0] and "V2A/AVSA-Acc" not in m[0]
    ck = load_checkpoint(run / "checkpoint.pt")
    assert ck["step"] == 2 and ck["world_size"] == 2 and len(ck["rng"]) == 2  # one RNG state per rank
    assert not torch.equal(ck["rng"][0]["torch"], ck["rng"][1]["torch"])


def test_in_run_curriculum_trains_the_avc_stage_of_table2_first(synth_shards, tmp_path):
    """easy-to-hard with --switch-epoch N: the first N epochs are Table 2's AVC row (1 viewpoint, batch V × B =
    112, instance negatives, loss (7) on the direct projection heads — the translator's transformers and
    prediction heads get no update), then AVSA (V viewpoints, batch B, + spatial negatives, loss (9))."""
    from dataclasses import replace

    from avsa_train.checkpoint import build_model
    from avsa_train.pretrain import schedule

    cfg = resolve("avsa", None, {"shards": "s", "switch_epoch": 100, "epochs": 150})
    easy, avc = cfg.avc_stage(), resolve("avc", None, {"shards": "s"})
    keys = ("task", "viewpoints", "moments", "batch_size", "negatives", "lr", "weight_decay", "tau", "flip_p")
    assert [getattr(easy, k) for k in keys] == [getattr(avc, k) for k in keys]
    assert (easy.task, easy.viewpoints, easy.batch_size, easy.negatives) == ("avc", 1, 112, "instance")
    assert cfg.has_avc_stage and not replace(cfg, easy_stage="translation").has_avc_stage
    assert not replace(cfg, switch_epoch=0).has_avc_stage and not replace(cfg, curriculum="none").has_avc_stage
    sched = schedule(replace(cfg, steps_per_epoch=7), 1)
    assert (sched.easy_steps, sched.total) == (700, 700 + 50 * 7)
    assert [sched.epoch(s) for s in (0, 699, 700, 706, 707)] == [0, 99, 100, 100, 101]
    assert [sched.in_avc_stage(s) for s in (699, 700)] == [True, False]

    run = tmp_path / "cur"
    args = ["--shards", str(synth_shards), "--task", "avsa", "--out", str(run), *TWO_STEPS]
    args += ["--viewpoints", "2", "--depth", "1", "--switch-epoch", "1", "--steps-per-epoch", "2"]
    run_cli(*PRETRAIN, *args, *TINY)
    m = _metrics(run)
    assert [(x["stage"], x["batch_size"], x["viewpoints"], x["negatives"]) for x in m] == [
        ("avc", 4, 1, "instance")
    ] * 2
    assert all("V2A/AVC-Acc" in x and "V2A/AVSA-Acc" not in x for x in m)
    state = load_checkpoint(run / "checkpoint.pt")
    torch.manual_seed(state["config"]["seed"])  # the run's initialisation
    init = build_model(state["config"]).translator.state_dict()
    untouched = [k for k in init if torch.equal(init[k], state["translator"][k])]
    assert untouched == [k for k in init if "transformer" in k or "pred_head" in k]  # only the direct heads train
    run_cli(*PRETRAIN, "--out", str(run), "--resume", "--max-steps", "3", "-q")
    last = _metrics(run)[-1]
    assert (last["step"], last["stage"], last["batch_size"], last["viewpoints"]) == (3, "avsa", 2, 2)
    assert last["negatives"] == "instance+spatial" and "V2A/AVSA-Acc" in last
    after = load_checkpoint(run / "checkpoint.pt")["translator"]
    assert not torch.equal(after["v2a_transformer.0.ffn.0.weight"], init["v2a_transformer.0.ffn.0.weight"])


def test_avsa_starts_from_avc_and_avts_uses_temporal_negatives(synth_shards, tmp_path):
    avc = tmp_path / "avc"
    run_cli(*PRETRAIN, "--shards", str(synth_shards), "--task", "avc", "--out", str(avc), "--batch-size", "4",
            "--max-steps", "2", "--workers", "0", *TINY)
    a = load_checkpoint(avc / "checkpoint.pt")
    assert a["config"]["depth"] == 0 and a["config"]["batch_size"] == 4 and a["config"]["viewpoints"] == 1
    assert set(_metrics(avc)[-1]) >= {"V2A/AVC-Acc", "A2V/AVC-Acc", "loss"}
    avsa = tmp_path / "avsa"
    r = run_cli(
        *PRETRAIN,
        "--shards",
        str(synth_shards),
        "--task",
        "avsa",
        "--out",
        str(avsa),
        "--max-steps",
        "0",
        "--init",
        str(avc / "checkpoint.pt"),
        *TINY,
    )
    b = load_checkpoint(avsa / "checkpoint.pt")
    assert b["config"]["depth"] == 2 and b["step"] == 0 and "initialised from" in r.stderr
    for key in ("video", "audio"):
        torch.testing.assert_close(b[key], a[key])
    for head in ("video_head", "audio_head"):  # the AVC projections carry over; the transformers are new
        torch.testing.assert_close(b["translator"][f"{head}.linear.weight"], a["translator"][f"{head}.linear.weight"])
    avts = tmp_path / "avts"
    run_cli(*PRETRAIN, "--shards", str(synth_shards), "--task", "avts", "--moments", "2", "--out", str(avts),
            *TWO_STEPS, *TINY)
    m = _metrics(avts)
    assert m[-1]["negatives"] == "instance+temporal" and "V2A/AVTS-Acc" in m[-1] and "V2A/AVSA-Acc" not in m[-1]


def test_bad_options_fail_with_one_clear_message(synth_shards, tmp_path):
    from click.testing import CliRunner

    from avsa_train.cli.pretrain import pretrain

    cases = [
        (["--task", "avts"], "--moments-per-sample 4"),  # Table 2 AVTS: 4 moments; these shards have 2
        (["--task", "avts", "--moments", "1"], "--moments"),
        (["--task", "avsa", "--viewpoints", "9"], "--viewpoints"),
        (["--task", "avsa", "--init", str(tmp_path / "nope.pt")], "--init"),
        (["--task", "avc", "--viewpoints", "4"], "--viewpoints 1"),
        (["--task", "avsa", "--resume"], "holds no run to continue"),
        (["--task", "avsa", "--init", str(tmp_path)], "is a folder: use"),
    ]
    for extra, needle in cases:  # option values refused (exit status 2), before anything is written
        r = CliRunner().invoke(pretrain, ["--shards", str(synth_shards), "--out", str(tmp_path / "x"), *extra, *TINY])
        assert r.exit_code == 2 and r.exception is not None and needle in r.stderr, (extra, r.output)
        assert r.stderr.startswith("Error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_config_resolution_and_negatives(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("batch_size: 10\nlr: 0.001\ndepth: 4\n")
    cfg = resolve("avsa", y, {"shards": "s", "lr": 0.002})
    assert (cfg.batch_size, cfg.lr, cfg.depth, cfg.viewpoints, cfg.tau, cfg.weight_decay) == (
        10,
        0.002,
        4,
        4,
        0.07,
        1e-5,
    )
    avc = resolve("avc", None, {"shards": "s"})
    assert (avc.batch_size, avc.viewpoints, avc.depth, avc.epochs) == (112, 1, 0, 100)  # Table 2
    y.write_text("task: avc\nshards: s\n")
    assert resolve(None, y, {}).batch_size == 112  # the YAML's task picks the defaults
    y.write_text("bogus: 1\n")
    with pytest.raises(ValueError, match="unknown keys"):
        resolve("avsa", y, {"shards": "s"})
    saved = resolve("avsa", None, {"shards": "s", "batch_size": 6}).as_dict()
    assert resolve(None, None, {"max_steps": 9}, saved=saved).batch_size == 6  # --resume: the run's options
    with pytest.raises(ValueError, match="avsa run"):
        resolve("avc", None, {}, saved=saved)
    cur = resolve("avsa", None, {"shards": "s", "switch_epoch": 2})
    assert negatives_at(cur, 1) == Negatives(True, False, False)
    assert negatives_at(cur, 2) == Negatives(True, True, False)
    hard = resolve("avsa", None, {"shards": "s", "curriculum": "hard-only"})
    assert negatives_at(hard, 0) == Negatives(False, True, False)
    st = resolve("avsa", None, {"shards": "s", "moments": 2, "negatives": "spatial+temporal", "curriculum": "none"})
    assert negatives_at(st, 0) == Negatives(True, True, True)
    assert negatives_at(resolve("avts", None, {"shards": "s"}), 0) == Negatives(True, False, True)
    # the shipped Table 2 configs resolve
    configs = Path(__file__).parents[1] / "configs"
    for name, (bs, nv, m) in {"avc": (112, 1, 1), "avsa": (28, 4, 1), "avts": (28, 1, 4)}.items():
        c = resolve(None, configs / f"{name}.yaml", {"shards": "s", "init": "none"})
        assert (c.task, c.batch_size, c.viewpoints, c.moments, c.lr, c.weight_decay, c.tau, c.flip_p) == (
            name,
            bs,
            nv,
            m,
            1e-4,
            1e-5,
            0.07,
            0.5,
        )


def test_a_cuda_run_ships_uint8_clips_and_its_step_gives_the_float_loss(synth_shards):
    """On a CUDA device the stream ships uint8 clips (normalised on the device, ``model_video``); the training
    step must give the loss of the worker-normalised float batch. Checked on the CPU with the same step."""
    from dataclasses import replace

    from avsa_train.data import batches, sources
    from avsa_train.pretrain import build_model, stream_config, train_step

    cfg = resolve("avsa", None, {"shards": str(synth_shards), "width": 0.125, "batch_size": 2, "viewpoints": 2,
                                 "depth": 1})
    cpu = torch.device("cpu")
    assert stream_config(cfg, torch.device("cuda")).video_on_device and not stream_config(cfg, cpu).video_on_device
    scfg = replace(stream_config(cfg, cpu), shuffle_buffer=1)
    urls = sources.split_urls(sources.expand_urls(synth_shards), "train")
    floats = next(iter(batches.ShardStream(urls, scfg)))
    raw = next(iter(batches.ShardStream(urls, replace(scfg, video_on_device=True))))
    assert raw["video"].dtype == torch.uint8 and floats["key"] == raw["key"]
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    losses = [train_step(net, b, cfg, negatives_at(cfg, 10**6), cpu, False).loss.item() for b in (floats, raw)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4, abs=1e-5)
