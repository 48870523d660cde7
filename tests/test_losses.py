"""Losses (7) and (9), negative types, curriculum and pretext metrics on hand-built cases."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from torch.nn import functional as F

from avsa_train.losses import (
    Curriculum,
    Negatives,
    avc_loss,
    joint_contrastive_loss,
    translation_loss,
)
from avsa_train.models import CrossModalTranslator

TAU = 0.07

# B = 2 samples, V = 2 views, D = 2. Targets are the four axis directions.
T00, T01, T10, T11 = (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0), (0.0, -1.0)
# Predictions (unit vectors). Cosines, read off by hand:
#   p00 = ( .8,  .6): pos t00 = .8   spatial t01 =  .6   instance t10 = -.8
#   p01 = ( .6,  .8): pos t01 = .8   spatial t00 =  .6   instance t11 = -.8
#   p10 = ( .6, -.8): pos t10 = -.6  spatial t11 =  .8   instance t00 =  .6   <- wrong on both tasks
#   p11 = ( 0., -1.): pos t11 = 1.   spatial t10 =  0.   instance t01 = -1.
P00, P01, P10, P11 = (0.8, 0.6), (0.6, 0.8), (0.6, -0.8), (0.0, -1.0)
POS = [0.8, 0.8, -0.6, 1.0]
SPATIAL = [0.6, 0.6, 0.8, 0.0]
INSTANCE = [-0.8, -0.8, 0.6, -1.0]


def hand_batch() -> tuple[torch.Tensor, torch.Tensor]:
    pred = torch.tensor([[P00, P01], [P10, P11]], dtype=torch.float64)
    target = torch.tensor([[T00, T01], [T10, T11]], dtype=torch.float64)
    return pred, target


def nce(pos: float, negs: list[float], tau: float = TAU) -> float:
    """-log( exp(pos/τ) / (exp(pos/τ) + Σ exp(neg/τ)) ), written out."""
    return math.log(math.exp(pos / tau) + sum(math.exp(n / tau) for n in negs)) - pos / tau


def test_instance_only_loss_by_hand():
    pred, target = hand_batch()
    out = joint_contrastive_loss(pred, target, TAU, use_instance=True, use_spatial=False)
    expected = (nce(0.8, [-0.8]) + nce(0.8, [-0.8]) + nce(-0.6, [0.6]) + nce(1.0, [-1.0])) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)


def test_spatial_only_loss_by_hand():
    pred, target = hand_batch()
    out = joint_contrastive_loss(pred, target, TAU, use_instance=False, use_spatial=True)
    expected = (nce(0.8, [0.6]) + nce(0.8, [0.6]) + nce(-0.6, [0.8]) + nce(1.0, [0.0])) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)


def test_instance_plus_spatial_loss_by_hand():
    pred, target = hand_batch()
    out = joint_contrastive_loss(pred, target, TAU, use_instance=True, use_spatial=True)
    expected = (nce(0.8, [0.6, -0.8]) + nce(0.8, [0.6, -0.8]) + nce(-0.6, [0.8, 0.6]) + nce(1.0, [0.0, -1.0])) / 4
    assert out.loss.item() == pytest.approx(expected, rel=1e-9)
    # explicit log-sum-exp for the first prediction, as a reading aid: log(e^{.8/τ} + e^{.6/τ} + e^{-.8/τ}) - .8/τ
    first = math.log(math.exp(0.8 / TAU) + math.exp(0.6 / TAU) + math.exp(-0.8 / TAU)) - 0.8 / TAU
    assert nce(0.8, [0.6, -0.8]) == pytest.approx(first)


def test_hand_metrics_and_scores():
    pred, target = hand_batch()
    out = joint_contrastive_loss(pred, target, TAU)
    # p10 loses to its instance negative (.6 > -.6) and to its spatial negative (.8 > -.6): 3 of 4 correct.
    assert out.metrics["AVC-Acc"].item() == pytest.approx(75.0)
    assert out.metrics["AVSA-Acc"].item() == pytest.approx(75.0)
    assert out.metrics["Score/Pos"].item() == pytest.approx(sum(POS) / 4)
    assert out.metrics["Score/Neg"].item() == pytest.approx((sum(SPATIAL) + sum(INSTANCE)) / 8)
    # Metrics do not depend on which negatives enter the loss.
    out_easy = joint_contrastive_loss(pred, target, TAU, use_spatial=False)
    assert out_easy.metrics["AVSA-Acc"].item() == pytest.approx(75.0)


def test_avsa_acc_counts_ties_as_correct_avc_acc_does_not():
    s = 1.0 / math.sqrt(2.0)
    target = torch.tensor([[T00, T01], [T10, T11]], dtype=torch.float64)
    # p00 = (s, s): pos t00 = s, spatial t01 = s (tie), instance t10 = -s   -> AVSA correct, AVC correct
    # p01 = (-s, s): pos t01 = s, spatial t00 = -s, instance t11 = -s        -> both correct
    # p10 = (-s, -s): pos t10 = s, spatial t11 = s (tie), instance t00 = -s -> both correct
    # p11 = (s, -s): pos t11 = s, spatial t10 = -s, instance t01 = -s       -> both correct
    pred = torch.tensor([[(s, s), (-s, s)], [(-s, -s), (s, -s)]], dtype=torch.float64)
    out = joint_contrastive_loss(pred, target, TAU)
    assert out.metrics["AVSA-Acc"].item() == pytest.approx(100.0)
    assert out.metrics["AVC-Acc"].item() == pytest.approx(100.0)
    # Ties with an instance negative: make target (1, 0) equal to (0, 0) = (1, 0).
    target_tie = torch.tensor([[T00, T01], [T00, T11]], dtype=torch.float64)
    out_tie = joint_contrastive_loss(pred, target_tie, TAU)
    # p00 = (s, s): pos t00 = s, instance t10 = s: tie -> AVC wrong (strict >).
    # p10 = (-s, -s): pos t10 = -s, instance t00 = -s: tie -> wrong. p01, p11 are unchanged and correct.
    assert out_tie.metrics["AVC-Acc"].item() == pytest.approx(50.0)


def test_single_view_joint_loss_is_avc_and_avc_loss_matches_cross_entropy():
    g = torch.Generator().manual_seed(0)
    video = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    audio = F.normalize(torch.randn(5, 8, generator=g, dtype=torch.float64), dim=-1)
    labels = torch.arange(5)
    v2a = F.cross_entropy(video @ audio.T / TAU, labels)
    a2v = F.cross_entropy(audio @ video.T / TAU, labels)
    out = avc_loss(video, audio, TAU)
    assert out.loss.item() == pytest.approx(((v2a + a2v) / 2).item(), rel=1e-9)
    assert out.metrics["V2A/Loss"].item() == pytest.approx(v2a.item(), rel=1e-9)
    # V = 1: spatial negatives do not exist, so instance+spatial equals instance only
    both = joint_contrastive_loss(video[:, None], audio[:, None], TAU, use_instance=True, use_spatial=True)
    assert both.loss.item() == pytest.approx(v2a.item(), rel=1e-9)
    acc = (torch.argmax(video @ audio.T, 1) == labels).double().mean().item() * 100
    assert out.metrics["V2A/AVC-Acc"].item() == pytest.approx(acc)


def test_embeddings_are_normalised_inside_the_loss():
    pred, target = hand_batch()
    a = joint_contrastive_loss(pred, target, TAU)
    b = joint_contrastive_loss(3.0 * pred, 0.5 * target, TAU)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-9)


def _expected_4d(pred, target, tau, kinds):
    """Loss (9) over [B, M, V, D] with explicitly enumerated candidate sets."""
    pred, target = F.normalize(pred, dim=-1), F.normalize(target, dim=-1)
    b, m, v, _ = pred.shape
    total, count = 0.0, 0
    for i, mm, j in itertools.product(range(b), range(m), range(v)):
        negs = []
        for k, mm2, j2 in itertools.product(range(b), range(m), range(v)):
            if (k, mm2, j2) == (i, mm, j):
                continue
            instance = k != i and mm2 == mm and j2 == j
            spatial = k == i and mm2 == mm and j2 != j
            temporal = k == i and mm2 != mm and j2 == j
            spatiotemporal = k == i and mm2 != mm and j2 != j
            if (
                ("instance" in kinds and instance)
                or ("spatial" in kinds and spatial)
                or ("temporal" in kinds and temporal)
                or ("spatial" in kinds and "temporal" in kinds and spatiotemporal)
            ):
                negs.append(float(pred[i, mm, j] @ target[k, mm2, j2]))
        total += nce(float(pred[i, mm, j] @ target[i, mm, j]), negs, tau)
        count += 1
    return total / count


@pytest.mark.parametrize(
    "kinds",
    [
        ("instance",),
        ("spatial",),
        ("instance", "spatial"),
        ("temporal",),
        ("instance", "temporal"),
        ("instance", "spatial", "temporal"),
        ("spatial", "temporal"),
    ],
)
def test_moments_axis_negatives(kinds):
    g = torch.Generator().manual_seed(1)
    pred = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64)
    target = torch.randn(2, 3, 2, 4, generator=g, dtype=torch.float64)
    out = joint_contrastive_loss(
        pred,
        target,
        0.5,
        use_instance="instance" in kinds,
        use_spatial="spatial" in kinds,
        use_temporal="temporal" in kinds,
    )
    assert out.loss.item() == pytest.approx(_expected_4d(pred, target, 0.5, kinds), rel=1e-9)
    assert set(out.metrics) >= {"AVC-Acc", "AVSA-Acc", "AVTS-Acc"}


def test_3d_input_equals_4d_with_one_moment():
    pred, target = hand_batch()
    a = joint_contrastive_loss(pred, target, TAU)
    b = joint_contrastive_loss(pred[:, None], target[:, None], TAU)
    assert a.loss.item() == pytest.approx(b.loss.item(), rel=1e-12)


def test_bad_inputs_raise_clear_errors():
    pred, target = hand_batch()
    with pytest.raises(ValueError, match="same shape"):
        joint_contrastive_loss(pred, target[:, :1], TAU)
    with pytest.raises(ValueError, match=r"moments axis"):
        joint_contrastive_loss(pred, target, TAU, use_temporal=True)
    with pytest.raises(ValueError, match="no negatives"):
        joint_contrastive_loss(pred[:1], target[:1], TAU, use_instance=True, use_spatial=False)
    with pytest.raises(ValueError, match="at least one"):
        joint_contrastive_loss(pred, target, TAU, use_instance=False, use_spatial=False)
    with pytest.raises(ValueError, match="tau"):
        joint_contrastive_loss(pred, target, 0.0)
    with pytest.raises(ValueError, match="at least one"):
        Negatives(instance=False, spatial=False)


def test_curriculum_modes_and_switch():
    cur = Curriculum("easy-to-hard", switch_epoch=3)
    assert [cur.negatives_at(e) for e in range(5)] == [Negatives(True, False)] * 3 + [Negatives(True, True)] * 2
    assert Curriculum("none").negatives_at(0) == Negatives(True, True)
    assert Curriculum("hard-only").negatives_at(7) == Negatives(False, True)
    assert Curriculum("easy-only").negatives_at(500) == Negatives(True, False)
    assert Curriculum("easy-to-hard", 2, temporal=True).negatives_at(2) == Negatives(True, True, True)
    assert Curriculum("easy-to-hard", 2, temporal=True).negatives_at(1) == Negatives(True, False, False)
    with pytest.raises(ValueError, match="curriculum mode"):
        Curriculum("hard-to-easy")
    with pytest.raises(ValueError, match="epoch"):
        cur.negatives_at(-1)


def test_translation_loss_pairs_predictions_with_the_target_modality_and_backpropagates():
    torch.manual_seed(0)
    model = CrossModalTranslator(dim=32, depth=1, proj_dim=8)
    g = torch.Generator().manual_seed(2)
    video, audio = torch.randn(3, 4, 32, generator=g), torch.randn(3, 4, 32, generator=g)
    out = model(video, audio)
    res = translation_loss(out, Negatives(True, True), TAU)
    v2a = joint_contrastive_loss(out.v2a, out.audio, TAU)
    a2v = joint_contrastive_loss(out.a2v, out.video, TAU)
    assert res.loss.item() == pytest.approx(((v2a.loss + a2v.loss) / 2).item(), rel=1e-6)
    assert res.metrics["A2V/AVSA-Acc"].item() == pytest.approx(a2v.metrics["AVSA-Acc"].item())
    res.loss.backward()
    for name in (
        "v2a_transformer",
        "a2v_transformer",
        "video_head",
        "audio_head",
        "video_pred_head",
        "audio_pred_head",
    ):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(gr is not None and torch.isfinite(gr).all() for gr in grads), name
        assert any(gr.abs().sum() > 0 for gr in grads), name
