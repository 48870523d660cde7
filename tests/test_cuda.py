"""The CUDA path on a real GPU: uint8 clips normalised on the device, mixed precision, checkpoints with an AMP
scaler, a ``--device cuda`` run that resumes, and DDP over NCCL.

Every test here is skipped (saying so) on a machine without CUDA, which is where CI runs; run them on a GPU with
``pytest tests/test_cuda.py``. The CPU-side counterparts (the same checks with the CPU as the device) live in
test_pretrain.py.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from dataclasses import replace

import pytest
import torch
from conftest import run_cli

from avsa_train.config import resolve
from avsa_train.pretrain import negatives_at

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (none here)")

CUDA = torch.device("cuda", 0)
CPU = torch.device("cpu")


@pytest.fixture
def exact_fp32():
    """fp32 convolutions and matrix products without TF32, and deterministic cuDNN kernels, so that two
    computations of the same thing agree to float rounding (CPU vs GPU, DDP vs plain)."""
    flags = ("allow_tf32", "deterministic", "benchmark")
    saved = [getattr(torch.backends.cudnn, f) for f in flags], torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
    yield
    for f, v in zip(flags, saved[0]):
        setattr(torch.backends.cudnn, f, v)
    torch.backends.cuda.matmul.allow_tf32 = saved[1]


def _cfg(shards, task: str = "avsa", **kw):
    base = {"shards": str(shards), "width": 0.125, "batch_size": 2, "viewpoints": 2, "depth": 1}
    return resolve(task, None, {**base, **kw})


def _batches(shards, cfg, device):
    """The first batch of the training stream as a run on ``device`` gets it (uint8 clips on CUDA)."""
    from avsa_train.data import batches, sources
    from avsa_train.pretrain import stream_config

    scfg = replace(stream_config(cfg, device), shuffle_buffer=1)
    urls = sources.split_urls(sources.expand_urls(shards), "train")
    return next(iter(batches.ShardStream(urls, scfg)))


def test_uint8_clips_normalised_on_the_gpu_equal_the_cpu_floats(synth_shards, exact_fp32):
    """``model_video`` on CUDA (uint8 clips + colour transform) gives the worker-normalised float clips, and the
    step's loss on the GPU equals the CPU's."""
    from avsa_train.data.augment import model_video
    from avsa_train.pretrain import build_model, train_step

    cfg = _cfg(synth_shards)
    floats, raw = _batches(synth_shards, cfg, CPU), _batches(synth_shards, cfg, CUDA)
    assert raw["video"].dtype == torch.uint8 and floats["key"] == raw["key"]
    on_gpu = model_video(raw, CUDA)
    assert on_gpu.device.type == "cuda" and on_gpu.dtype == torch.float32
    torch.testing.assert_close(on_gpu.cpu(), floats["video"], rtol=1e-4, atol=1e-4)
    torch.manual_seed(0)
    net = build_model(cfg).eval()
    neg = negatives_at(cfg, 10**6)
    cpu_loss = train_step(net, floats, cfg, neg, CPU, False).loss.item()
    gpu_loss = train_step(net.to(CUDA), raw, cfg, neg, CUDA, False).loss.item()
    assert gpu_loss == pytest.approx(cpu_loss, rel=1e-4, abs=1e-5)


def test_mixed_precision_step_learns_and_its_scaler_survives_a_checkpoint(synth_shards, tmp_path):
    """Under AMP the forward runs in reduced precision (the loss still float32, close to the fp32 one), the
    GradScaler step moves the weights and lowers the loss on the same batch, and a checkpoint restores the
    scaler's state."""
    from avsa_train.checkpoint import load_checkpoint, save_checkpoint
    from avsa_train.fit import optimizer_step
    from avsa_train.pretrain import build_model, train_step

    cfg = _cfg(synth_shards)
    batch = _batches(synth_shards, cfg, CUDA)
    neg = negatives_at(cfg, 10**6)
    torch.manual_seed(0)
    net = build_model(cfg).to(CUDA).eval()  # no dropout: the two forward passes see the same network
    fp32 = train_step(net, batch, cfg, neg, CUDA, False).loss.item()
    amp = train_step(net, batch, cfg, neg, CUDA, True).loss
    assert amp.dtype == torch.float32 and amp.item() == pytest.approx(fp32, rel=0.02)
    net.train()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler("cuda")
    before = [p.detach().clone() for p in net.parameters()]
    losses = []
    for _ in range(8):
        out = train_step(net, batch, cfg, neg, CUDA, True)
        losses.append(out.loss.item())
        optimizer_step(out.loss, opt, scaler)
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0], losses
    assert any(not torch.equal(a, p.detach()) for a, p in zip(before, net.parameters()))
    path = save_checkpoint(tmp_path / "c.pt", net, opt, scaler, 8, 0, cfg.as_dict())
    restored = torch.amp.GradScaler("cuda")
    restored.load_state_dict(load_checkpoint(path)["scaler"])
    assert restored.get_scale() == scaler.get_scale() and restored.state_dict() == scaler.state_dict()


def test_a_cuda_pretrain_run_resumes_to_the_uninterrupted_losses(synth_shards, tmp_path):
    """``avsa-train pretrain --device cuda`` (AMP on, uint8 clips): 4 steps in one run, and 2 + 2 with
    ``--resume``. With ``--deterministic`` the logged losses are the same bit for bit; without it they agree to
    the GPU's reduction-order noise (cuDNN autotuning, atomics), measured here against a repeat of the whole run."""
    from avsa_train.checkpoint import load_checkpoint

    args = ("pretrain", "--shards", str(synth_shards), "--task", "avsa", "--width", "0.125", "--batch-size", "2",
            "--viewpoints", "2", "--depth", "1", "--log-every", "1", "--init", "none", "--seed", "3",
            "--workers", "0", "-q", "--device", "cuda")

    def logged(run):
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2, 3, 4]
        return [r["loss"] for r in rows]

    def whole(name, *extra):
        run_cli("avsa_train", *args, *extra, "--max-steps", "4", "--out", str(tmp_path / name))
        return logged(tmp_path / name)

    def resumed(name, *extra):
        run_cli("avsa_train", *args, *extra, "--max-steps", "2", "--out", str(tmp_path / name))
        run_cli("avsa_train", *args, *extra, "--max-steps", "4", "--resume", "--out", str(tmp_path / name))
        return logged(tmp_path / name)

    det = ("--deterministic",)
    exact_whole, exact_split = whole("det-whole", *det), resumed("det-split", *det)
    print("deterministic: whole", exact_whole, "split", exact_split)
    assert exact_split == exact_whole
    state = load_checkpoint(tmp_path / "det-split" / "checkpoint.pt")
    assert state["step"] == 4 and state["scaler"] is not None and state["rng"][0]["cuda"] is not None
    a, b = whole("fast-whole"), whole("fast-again")
    split = resumed("fast-split")
    noise = max(abs(x - y) for x, y in zip(a, b))
    print("default: whole", a, "repeat", b, "split", split, "repeat noise", noise)
    assert split == pytest.approx(a, rel=1e-2, abs=1e-2)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ddp_over_nccl_gives_the_single_process_gradients(synth_shards, monkeypatch, exact_fp32):
    """The DDP wrapper on CUDA with the NCCL backend (one rank: a single GPU cannot hold two NCCL ranks): the
    project's AVC step (the prediction heads unused, ``find_unused_parameters``) gives the gradients of the
    unwrapped model, and the metric reduction and gather run over NCCL."""
    import torch.distributed as dist

    from avsa_train import distributed as D
    from avsa_train.pretrain import build_model, train_step

    cfg = _cfg(synth_shards, task="avc", viewpoints=1, depth=0)
    batch = _batches(synth_shards, cfg, CUDA)
    neg = negatives_at(cfg, 0)
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", str(_free_port()))
    dist.init_process_group("nccl", rank=0, world_size=1, device_id=CUDA)
    try:
        torch.manual_seed(0)
        plain = build_model(cfg).to(CUDA).train()
        torch.manual_seed(0)
        model = build_model(cfg).to(CUDA).train()
        info = D.DistInfo(rank=0, world_size=1, local_rank=0)
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[0], find_unused_parameters=True)
        for m in (plain, net):
            train_step(m, batch, cfg, neg, CUDA, False).loss.backward()
        grads = [(a.grad, b.grad) for a, b in zip(plain.parameters(), model.parameters())]
        assert any(g is None for g, _ in grads)  # the unused heads
        for g, h in grads:
            assert (g is None) == (h is None)
            if g is not None:
                torch.testing.assert_close(h, g, rtol=1e-3, atol=1e-5)
        t = torch.tensor([2.0], device=CUDA)
        dist.all_reduce(t)
        assert t.item() == 2.0
        assert D.mean_over_ranks({"loss": 1.5}, info, CUDA) == {"loss": 1.5}
        out: list = [None]
        dist.all_gather_object(out, {"rank": 0})
        assert out == [{"rank": 0}]
    finally:
        dist.destroy_process_group()


def test_torchrun_launches_a_cuda_pretrain_run(synth_shards, tmp_path):
    """``torchrun --nproc_per_node 1 -m avsa_train pretrain --device cuda``: the documented DDP entry runs on a
    GPU and writes its checkpoint."""
    import subprocess

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port",
           str(_free_port()), "-m", "avsa_train", "pretrain", "--shards", str(synth_shards), "--task", "avc",
           "--width", "0.125", "--batch-size", "2", "--max-steps", "2", "--workers", "1", "-q", "--device", "cuda",
           "--out", str(out)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env={**os.environ})
    assert p.returncode == 0, p.stdout + p.stderr
    assert (out / "checkpoint.pt").is_file()

