"""Segmentation protocol (seed §A.2): confusion/mIoU against hand-computed values, the FPN head's geometry,
the confidence-masked loss, and `avsa-train segment` end to end on synthetic shards."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from conftest import run_train

from avsa_data.options import flat_dict
from avsa_train.models import Conv2D10, CrossModalTranslator, R2Plus1D18
from avsa_train.tasks.metrics import (
    confident_mask,
    confusion_matrix,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    segmentation_scores,
)
from avsa_train.tasks.segmentation import FPNHead, FPNSegmenter, segmentation_loss

# ------------------------------------------------------------------------------------------------ metrics

# fmt: off
# A 3×4 image with 3 classes. Confidence < 0.75 marks pixels that must be ignored (x below).
TARGET = np.array([[0, 0, 1, 1],
                   [0, 2, 2, 1],
                   [2, 2, 0, 0]])
PRED = np.array([[0, 1, 1, 1],
                 [0, 2, 0, 1],
                 [2, 1, 0, 2]])
CONF = np.array([[0.9, 0.9, 0.9, 0.5],   # (0,3): truth 1 → pred 1, ignored
                 [0.8, 0.9, 0.74, 1.0],  # (1,2): truth 2 → pred 0, ignored
                 [0.75, 0.9, 0.9, 0.1]])  # (2,3): truth 0 → pred 2, ignored; 0.75 itself is kept
# Counted pixels (truth → pred): (0,0) 0→0, (0,1) 0→1, (0,2) 1→1, (1,0) 0→0, (1,1) 2→2, (1,3) 1→1,
# (2,0) 2→2, (2,1) 2→1, (2,2) 0→0.
HAND_CONFUSION = np.array([[3, 1, 0],
                           [0, 2, 0],
                           [0, 1, 2]])
# fmt: on


def test_confusion_matrix_matches_hand_count_with_ignored_pixels():
    cm = confusion_matrix(torch.from_numpy(PRED), torch.from_numpy(TARGET), 3, confident_mask(torch.from_numpy(CONF)))
    np.testing.assert_array_equal(cm, HAND_CONFUSION)
    # without the mask the three low-confidence pixels count: 1→1, 2→0, 0→2
    full = confusion_matrix(PRED, TARGET, 3)
    np.testing.assert_array_equal(full - cm, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])


def test_iou_miou_and_pixel_accuracy_from_hand_matrix():
    # IoU_k = TP / (row + col - TP): class 0: 3/(4+3-3) = 3/4; class 1: 2/(2+4-2) = 1/2; class 2: 2/(3+2-2) = 2/3
    iou = iou_per_class(HAND_CONFUSION)
    np.testing.assert_allclose(iou, [3 / 4, 1 / 2, 2 / 3])
    assert mean_iou(HAND_CONFUSION) == pytest.approx((3 / 4 + 1 / 2 + 2 / 3) / 3)
    assert pixel_accuracy(HAND_CONFUSION) == pytest.approx(7 / 9)
    s = segmentation_scores(HAND_CONFUSION, ["bg", "a", "b"])
    assert s["per_class_iou"] == pytest.approx({"bg": 0.75, "a": 0.5, "b": 2 / 3})
    assert s["mean_class_accuracy"] == pytest.approx((3 / 4 + 1 + 2 / 3) / 3)
    assert s["confident_pixels"] == 9


def test_absent_class_is_left_out_of_the_mean_but_a_missed_class_counts_zero():
    # fmt: off
    cm = np.array([[5, 0, 0, 0],   # class 3 never appears nor is predicted → no IoU
                   [2, 0, 0, 0],   # class 1 appears but is never predicted → IoU 0
                   [0, 0, 3, 0],
                   [0, 0, 0, 0]])
    # fmt: on
    iou = iou_per_class(cm)
    assert math.isnan(iou[3]) and iou[1] == 0.0
    assert mean_iou(cm) == pytest.approx((5 / 7 + 0 + 1) / 3)
    assert segmentation_scores(cm)["per_class_iou"]["3"] is None


def test_confusion_matrix_rejects_bad_ids():
    with pytest.raises(ValueError, match="class ids"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)


# ------------------------------------------------------------------------------------------------ head


def _maps(width: float, b: int = 2, t: int = 8, size: int = 112):
    video = R2Plus1D18(width).eval()
    with torch.no_grad():
        _, maps = video(torch.randn(b, 3, t, size, size), return_maps=True)
    return video, maps


def test_fpn_head_outputs_56x56_logits_and_uses_dilated_convolutions():
    video, maps = _maps(0.125)
    head = FPNHead({k: video.level_channels[k] for k in ("block2", "block3", "block4", "block5")}, num_classes=5)
    out = head(maps)
    assert out.shape == (2, 5, 56, 56)
    semantic = [m for m in head.semantic.modules() if isinstance(m, torch.nn.Conv2d)]
    assert semantic and all(m.dilation == (2, 2) and m.kernel_size == (3, 3) for m in semantic)
    ups = {k: sum(isinstance(m, torch.nn.Upsample) for m in head.semantic[k].modules()) for k in head.semantic}
    assert ups == {"block2": 0, "block3": 1, "block4": 2, "block5": 3}
    assert all(head.lateral[k].out_channels == 128 and head.lateral[k].kernel_size == (1, 1) for k in head.lateral)
    # global temporal pooling: the head sees the time-average of each level
    flat = {k: v.mean(2, keepdim=True).expand_as(v) for k, v in maps.items()}
    torch.testing.assert_close(head(flat), out, rtol=1e-4, atol=1e-5)


def test_segmenter_with_audio_and_context_conditions_the_head():
    from avsa_train.audio_features import Spectrogram
    from avsa_train.tasks.common import Backbone

    w = 0.125
    video = R2Plus1D18(w)
    bb = Backbone(
        video, Conv2D10(4, w), CrossModalTranslator(video.out_dim, depth=1), Spectrogram(), {}, None, w, "ambi"
    )
    bb.freeze()
    model = FPNSegmenter(bb, 4, use_audio=True, use_context=True).eval()
    assert model.head.cond_dim == 3 * video.out_dim
    v, a = torch.randn(1, 2, 3, 8, 112, 112), torch.randn(1, 2, 4, 24000) * 0.1
    out = model(v, a)
    assert out.shape == (1, 2, 4, 56, 56)
    assert not torch.allclose(model(v, a * 0.0), out)  # the audio reaches the prediction


def test_loss_ignores_low_confidence_pixels():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 4, 4, requires_grad=True)
    seg = torch.randint(0, 3, (2, 4, 4))
    conf = torch.rand(2, 4, 4)
    loss = segmentation_loss(logits, seg, conf, 0.75)
    loss.backward()
    ignored = conf < 0.75
    assert torch.all(logits.grad.permute(0, 2, 3, 1)[ignored] == 0)
    assert torch.any(logits.grad.permute(0, 2, 3, 1)[~ignored] != 0)
    keep = ~ignored
    ref = torch.nn.functional.cross_entropy(logits.permute(0, 2, 3, 1)[keep], seg[keep])
    assert float(loss.detach()) == pytest.approx(float(ref.detach()), rel=1e-5)
    assert segmentation_loss(logits, seg, torch.zeros_like(conf), 0.75) is None


# ------------------------------------------------------------------------------------------------ CLI

SEGMENT_KEYS = {
    "miou",
    "miou_ci95_bootstrap_videos",
    "pixel_accuracy",
    "pixel_accuracy_ci95_bootstrap_videos",
    "mean_class_accuracy",
    "per_class_iou",
    "per_class_pixels",
    "confident_pixels",
    "n_videos",
    "confusion_matrix",
    "class_names",
    "eval_crops",
    "skipped_train_samples",
    "skipped_eval_samples",
}


def _check_segment_json(path, n_classes: int = 9):
    out = json.loads(path.read_text())
    assert out["schema"] == "avsa.eval.segmentation" and out["schema_version"] == 1
    m = out["metrics"]
    assert SEGMENT_KEYS <= set(m)
    assert 0 <= m["miou"] <= 100 and 0 <= m["pixel_accuracy"] <= 100
    cm = np.array(m["confusion_matrix"])
    assert cm.shape == (n_classes, n_classes) and cm.sum() == m["confident_pixels"] > 0
    assert m["pixel_accuracy"] == pytest.approx(100 * np.trace(cm) / cm.sum(), abs=1e-3)
    defined = [v for v in m["per_class_iou"].values() if v is not None]
    assert m["miou"] == pytest.approx(float(np.mean(defined)), abs=1e-3)
    assert len(m["class_names"]) == n_classes and m["class_names"][0] == "background"
    assert out["config"]["hfov_range"] == [45.0, 90.0] and out["config"]["confidence_threshold"] == 0.75
    return out


def test_segment_cli_end_to_end_from_scratch(synth_shards, tmp_path):
    out_dir = tmp_path / "seg"
    r = run_train("segment", "--ckpt", "none", "--shards", str(synth_shards), "--width", "0.125", "--epochs", "1",
                  "--batch-size", "4", "--views", "2", out=out_dir)
    assert "mIoU" in r.stdout
    out = _check_segment_json(out_dir / "segment.json")
    assert out["checkpoint"]["pretrained"] is False and out["checkpoint"]["width"] == 0.125
    assert len(out["history"]) == 1 and out["history"][0]["batches"] > 0


def test_segment_with_audio_context_and_finetuned_backbone(synth_shards, tmp_path):
    from avsa_train.tasks.common import load_backbone, write_metrics
    from avsa_train.tasks.segmentation import SegmentationConfig, run_segmentation

    torch.manual_seed(0)
    bb = load_backbone(None, width=0.125, audio_format="mono")
    cfg = SegmentationConfig(views=2, epochs=1, batch_size=4, use_audio=True, use_context=True, backbone="finetune")
    before = [p.detach().clone() for p in bb.video.parameters()]
    res = run_segmentation(bb, str(synth_shards), cfg, torch.device("cpu"), show_progress=False)
    assert any(not torch.equal(a, b) for a, b in zip(before, bb.video.parameters()))  # the encoder was trained
    _check_segment_json(write_metrics(tmp_path, "segment", res.to_json()))
    assert res.config["use_audio"] and res.config["use_context"] and res.config["backbone"] == "finetune"
    saved = flat_dict(cfg)  # the nested protocol saved flat, in the config's own order (and the class count)
    assert list(res.config) == [*saved, "num_classes"] and {k: res.config[k] for k in saved} == saved


# ------------------------------------------------------------------------------------------------ the learner


def _square_items(n: int, seed: int, size: int = 64, frames: int = 2) -> list[dict]:
    """A fixture with a learnable class: dark noisy clips with one bright square (class 1) at a random place;
    the rest is background (class 0). One viewpoint per item; the corners of every mask are unconfident. The
    masks have the crops' resolution, twice the head's output (as 56² masks of 64-px crops differ from it)."""
    rng = np.random.default_rng(seed)
    items = []
    for i in range(n):
        video = (0.3 * rng.standard_normal((1, 3, frames, size, size)) - 1.0).astype(np.float32)
        seg = np.zeros((1, size, size), np.uint8)
        side = int(rng.integers(10, 22))
        y, x = (int(v) for v in rng.integers(0, size - side, 2))
        video[..., y : y + side, x : x + side] += 2.5
        seg[:, y : y + side, x : x + side] = 1
        conf = np.ones(seg.shape, np.float32)
        conf[:, :4, :4] = 0.5
        items.append(
            {
                "video": video,
                "audio": np.zeros((1, 1, 16), np.float32),
                "seg": seg,
                "conf": conf,
                "video_id": f"v{i % 6}",
            }
        )
    return items


def test_segmenter_learns_a_learnable_class_better_than_all_background():
    """Training + evaluation of the FPN protocol on a frozen random encoder must beat the all-background
    prediction's mIoU on a class that a bright square gives away (a constant background answer, a skipped
    optimiser step or a misrouted label would not)."""
    from torch.utils.data import DataLoader

    from avsa_train.audio_features import Spectrogram
    from avsa_train.data.batches import collate
    from avsa_train.tasks.common import Backbone, multistep
    from avsa_train.tasks.segmentation import SegmentationConfig, SegmentationItems, _scores, evaluate, fit_segmenter

    torch.manual_seed(0)
    w = 0.125
    bb = Backbone(R2Plus1D18(w), Conv2D10(1, w), None, Spectrogram(), {}, None, w, "mono")
    bb.freeze()
    cfg = SegmentationConfig(views=1, epochs=3, batch_size=8, lr=3e-3, milestones=(2,), fpn_dim=32, segm_dim=32)
    model = FPNSegmenter(bb, 2, fpn_dim=cfg.fpn_dim, segm_dim=cfg.segm_dim)
    optimizer = torch.optim.Adam(model.head.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = multistep(optimizer, cfg.milestones, cfg.gamma)
    train, test = _square_items(96, seed=1), _square_items(24, seed=2)

    def loader(items, shuffle):
        return DataLoader(items, batch_size=cfg.batch_size, shuffle=shuffle,
                          collate_fn=lambda b: collate(b, SegmentationItems.columns))

    cpu = torch.device("cpu")
    history = fit_segmenter(model, optimizer, scheduler, cfg, cpu, lambda e: loader(train, True), False)
    assert [h["batches"] for h in history] == [12, 12, 12] and history[-1]["lr"] == pytest.approx(3e-4)
    confusion, per_video, crops = evaluate(model, loader(test, False), 2, 0.75, cpu, False)
    assert crops == 24 and sorted(per_video) == [f"v{i}" for i in range(6)]
    ours = _scores(confusion, per_video, ["background", "square"], seed=0)
    # the all-background answer on the same confident pixels
    truth = confusion.sum(1)
    background = np.zeros_like(confusion)
    background[:, 0] = truth
    base = segmentation_scores(background, ["background", "square"])
    assert ours["confident_pixels"] == int(truth.sum()) == 24 * (64 * 64 - 16)
    assert ours["per_class_iou"]["square"] >= 50.0, ours["per_class_iou"]
    assert ours["miou"] >= 100 * base["miou"] + 20.0, (ours["miou"], base["miou"])
