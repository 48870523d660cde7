"""Pre-training learns: a short AVSA run brings the pretext loss clearly below its chance value.

The fixture is the demo's recipe at CI size (docs/RESULTS.md, "Why the earlier tiny runs did not learn"): dense
synthetic scenes, the ``energy`` viewpoint sampler, 64-px crops, lr 1e-3, no colour jitter or flip. The loss
(9) with instance + spatial negatives ranks the positive among ``1 + (B − 1) + (V − 1)`` candidates, so an
encoder that has learnt nothing scores about ``ln(B + V − 1)``; a trained one must score well below that. The
loss is measured after training, in eval mode, over every batch of the train split (not the last training
batches' running numbers). At this CI size the model does not yet generalise to held-out videos (measured in
docs/RESULTS.md); the demo's scale does.

How far below depends on the run's trajectory, which a change of a few quantisation steps in the audio moves
(issue 17's loader derives the views' FOA from the unrotated FOA: ≤ 1.3 steps of 16 bits): over seeds 0–3 this
recipe reached 1.81, 1.65, 1.42, 1.71 after 60 steps and 0.74, 1.12, 0.80, 1.69 after 100 (chance 2.20). The
test trains 100 steps and asks for 0.3 below chance: every seed passes with room, and a learner that learns
nothing (≈ chance) fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from conftest import run_cli

from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig
from avsa_data.synth import SynthConfig
from avsa_train.checkpoint import load_checkpoint
from avsa_train.config import resolve
from avsa_train.data.batches import ShardStream
from avsa_train.data.sources import expand_urls, split_urls
from avsa_train.data.stream_config import StreamConfig
from avsa_train.losses import Negatives
from avsa_train.pretrain import build_model, compute_loss

SYNTH = SynthConfig(videos=8, duration=4.0, size=(256, 128), seed=5, val_fraction=0.25, sounding_objects=(4, 6),
                    object_radius=(14.0, 20.0))
SHARD = JobConfig(sample=SampleConfig(viewpoints_per_moment=4, stride=0.5, sampler="energy", crop_size=48,
                                      renders=("foa",), seed=0), labels="none", shard_size=8)
BATCH, VIEWS = 6, 4


@pytest.fixture(scope="module")
def dense_shards(test_data):
    return test_data.shards(test_data.raw(SYNTH), SHARD)


def pretext_loss(ckpt, shards, split: str = "train") -> float:
    """Mean loss (9), instance + spatial negatives, over the batches of ``split`` (eval mode, no augmentation)."""
    state = load_checkpoint(ckpt)
    cfg = resolve("avsa", None, {}, saved=state["config"])
    model = build_model(cfg)
    for k in ("video", "audio", "translator"):
        getattr(model, k).load_state_dict(state[k])
    model.eval()
    scfg = StreamConfig(views=VIEWS, batch_size=BATCH, train=False, audio_format=cfg.audio_format, drop_last=True)
    stream = ShardStream(split_urls(expand_urls(str(shards)), split), scfg, infinite=False)
    losses = []
    with torch.no_grad():
        for batch in stream:
            out = compute_loss(model, batch["video"], batch["audio"], cfg, Negatives(True, True, False), False)
            losses.append(float(out.loss))
    assert losses, f"no {split} batch"
    return sum(losses) / len(losses)


def test_short_pretraining_brings_the_pretext_loss_below_chance(dense_shards, tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    run = tmp_path / "avsa"
    run_cli("avsa_train", "pretrain", "--shards", str(dense_shards), "--task", "avsa", "--out", str(run),
            "--width", "0.125", "--batch-size", str(BATCH), "--viewpoints", str(VIEWS), "--lr", "1e-3",
            "--max-steps", "100", "--curriculum", "none", "--no-color-jitter", "--flip-p", "0", "--workers", "0",
            "--device", "cpu", "--seed", "0", "-q", timeout=600)
    chance = math.log(BATCH + VIEWS - 1)
    loss = pretext_loss(run / "checkpoint.pt", dense_shards)
    assert loss < chance - 0.3, (loss, chance)
