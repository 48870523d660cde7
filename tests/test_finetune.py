"""Action recognition fine-tuning (`avsa-train finetune`, seed §A.3): split files, clip sampling and
transforms, and the command end to end on small labelled perspective clips of the synth classes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_train

from avsa_data import media
from avsa_data.rng import rng_for
from avsa_data.synth import CLASSES, shape_masks
from avsa_train.tasks.action import (
    ActionDataError,
    eval_transform,
    load_split,
    random_resized_crop,
    take_clip,
    train_transform,
    uniform_starts,
)

N_CLASSES, N_TRAIN, N_TEST = 3, 3, 2


def write_action_clips(
    out: Path,
    n_classes: int = N_CLASSES,
    n_train: int = N_TRAIN,
    n_test: int = N_TEST,
    size: tuple[int, int] = (96, 72),
    frames: int = 20,
    fps: float = 16.0,
    seed: int = 0,
) -> Path:
    """``out/{train,test}/<class>/<class>_NN.mp4``: a synth class's shape and colours moving over a blocky
    random background, one class per video (regular perspective videos, not 360°)."""
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    for cls in CLASSES[:n_classes]:
        for split, n in (("train", n_train), ("test", n_test)):
            d = out / split / cls.name
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                rng = rng_for(seed, "action-clips", cls.name, split, i)
                bg = rng.uniform(60, 160, size=(h // 8 + 1, w // 8 + 1, 3)).repeat(8, 0).repeat(8, 1)[:h, :w]
                r = rng.uniform(0.2, 0.3) * h
                x0, y0 = rng.uniform(r, w - r), rng.uniform(r, h - r)
                vx, vy = rng.uniform(-1.5, 1.5, size=2)
                video = []
                for f in range(frames):
                    cx, cy = np.clip(x0 + vx * f, r, w - r), np.clip(y0 + vy * f, r, h - r)
                    inside, primary = shape_masks(cls.shape, (cx - xx) / r, (cy - yy) / r)
                    img = bg.copy()
                    img[inside] = cls.secondary or cls.colour
                    img[primary] = cls.colour
                    video.append(img.astype(np.uint8))
                media.write_video(d / f"{cls.name}_{i:02d}.mp4", video, fps, size)
    return out


@pytest.fixture(scope="module")
def action_clips(tmp_path_factory) -> Path:
    return write_action_clips(tmp_path_factory.mktemp("action") / "clips")


# ------------------------------------------------------------------------------------------------ splits


def _touch(p: Path) -> None:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_bytes(b"")


def test_ucf101_split_files(tmp_path):
    videos, splits = tmp_path / "UCF-101", tmp_path / "ucfTrainTestlist"
    splits.mkdir()
    (splits / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 Archery\n")
    (splits / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nArchery/v_Archery_g08_c01.avi 2\n"
    )
    (splits / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nArchery/v_Archery_g01_c01.avi\r\n"
    )
    for rel in (
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi",
        "Archery/v_Archery_g08_c01.avi",
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi",
        "Archery/v_Archery_g01_c01.avi",
    ):
        _touch(videos / rel)
    s = load_split("ucf101", videos, splits)
    assert s.classes == ["ApplyEyeMakeup", "Archery"]
    assert [(e.rel, e.label) for e in s.train] == [
        ("ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi", 0),
        ("Archery/v_Archery_g08_c01.avi", 1),
    ]
    assert [e.label for e in s.test] == [0, 1]
    (videos / "Archery/v_Archery_g01_c01.avi").unlink()
    with pytest.raises(ActionDataError, match="1 listed videos are missing"):
        load_split("ucf101", videos, splits)
    assert len(load_split("ucf101", videos, splits, allow_missing=True).test) == 1


def test_hmdb51_split_files(tmp_path):
    videos, splits = tmp_path / "hmdb51", tmp_path / "splits"
    splits.mkdir()
    (splits / "wave_test_split1.txt").write_text("a.avi 1\nb.avi 2\nc.avi 0\n")
    (splits / "brush_hair_test_split1.txt").write_text("d.avi 2\ne.avi 1\n")
    (splits / "brush_hair_test_split2.txt").write_text("d.avi 1\ne.avi 2\n")
    for rel in ("wave/a.avi", "wave/b.avi", "brush_hair/d.avi", "brush_hair/e.avi"):
        _touch(videos / rel)
    s = load_split("hmdb51", videos, splits)
    assert s.classes == ["brush_hair", "wave"]
    assert sorted((e.rel, e.label) for e in s.train) == [("brush_hair/e.avi", 0), ("wave/a.avi", 1)]
    assert sorted((e.rel, e.label) for e in s.test) == [("brush_hair/d.avi", 0), ("wave/b.avi", 1)]
    with pytest.raises(ActionDataError, match="--splits is required"):
        load_split("hmdb51", videos, None)


def test_folder_layouts(action_clips, tmp_path):
    s = load_split("folder", action_clips, None)
    assert s.classes == sorted(c.name for c in CLASSES[:N_CLASSES])
    assert len(s.train) == N_CLASSES * N_TRAIN and len(s.test) == N_CLASSES * N_TEST
    assert all(s.classes[e.label] == e.path.parent.name for e in s.train + s.test)
    flat, lists = tmp_path / "flat", tmp_path / "lists"  # <class>/<video> with train.txt / test.txt
    lists.mkdir()
    for split, entries in (("train", s.train), ("test", s.test)):
        rels = []
        for e in entries:
            rel = f"{e.path.parent.name}/{split}-{e.path.name}"
            (flat / rel).parent.mkdir(parents=True, exist_ok=True)
            (flat / rel).symlink_to(e.path)
            rels.append(rel)
        (lists / f"{split}.txt").write_text("\n".join(rels) + "\n")
    s2 = load_split("folder", flat, lists)
    assert s2.classes == s.classes
    assert [e.label for e in s2.train] == [e.label for e in s.train] and len(s2.test) == len(s.test)
    with pytest.raises(ActionDataError, match="train/<class>"):
        load_split("folder", action_clips / "train", None)


# ------------------------------------------------------------------------------------------------ clips


def test_uniform_starts_and_padding():
    assert uniform_starts(40, 8, 5) == [0, 8, 16, 24, 32]
    assert uniform_starts(5, 8, 3) == [0, 0, 0]
    frames = np.arange(5)[:, None, None, None] * np.ones((5, 2, 2, 3), np.uint8)
    clip = take_clip(frames, 2, 8)
    assert clip.shape == (8, 2, 2, 3) and list(clip[:, 0, 0, 0]) == [2, 3, 4, 4, 4, 4, 4, 4]


def test_transforms_shapes_and_crop_bounds():
    rng = np.random.default_rng(0)
    for _ in range(200):
        top, left, ch, cw = random_resized_crop(rng, 72, 96)
        assert 0 <= top and top + ch <= 72 and 0 <= left and left + cw <= 96 and ch > 0 and cw > 0
    clip = np.random.default_rng(1).integers(0, 255, (8, 72, 96, 3), dtype=np.uint8)
    x = train_transform(clip, np.random.default_rng(2))
    y = eval_transform(clip)
    assert x.shape == y.shape == (3, 8, 112, 112) and x.dtype == y.dtype == torch.float32
    assert torch.isfinite(x).all() and torch.isfinite(y).all()


def test_eval_transform_is_the_central_crop_normalised_as_in_pretraining():
    """A 96×72 clip whose red channel is 0 | 255 left | right and green 0 | 255 top | bottom: the central 112²
    crop of the 128-pixel resize keeps both edges in its middle; values are the reference code's Kinetics
    normalisation ``(v / 255 − mean) / std``."""
    mean, std = np.array([0.43216, 0.394666, 0.37645]), np.array([0.22803, 0.22145, 0.216989])
    clip = np.zeros((4, 72, 96, 3), np.uint8)
    clip[:, :, 48:, 0] = 255
    clip[:, 36:, :, 1] = 255
    clip[..., 2] = 100
    y = eval_transform(clip).numpy()
    lo, hi = (0 - mean) / std, (1 - mean) / std
    np.testing.assert_allclose(y[0, :, :, :50], lo[0], atol=1e-5)
    np.testing.assert_allclose(y[0, :, :, 63:], hi[0], atol=1e-5)
    np.testing.assert_allclose(y[1, :, :50], lo[1], atol=1e-5)
    np.testing.assert_allclose(y[1, :, 63:], hi[1], atol=1e-5)
    np.testing.assert_allclose(y[2], (100 / 255 - mean[2]) / std[2], atol=1e-5)


# ------------------------------------------------------------------------------------------------ command

FINETUNE_KEYS = {
    "clip_accuracy",
    "clip_accuracy_ci95_bootstrap_videos",
    "clip_top5",
    "video_accuracy",
    "video_accuracy_ci95_wilson",
    "video_top5",
    "n_test_videos",
    "n_test_clips",
    "clips_per_test_video",
    "per_class_video_accuracy",
    "video_confusion_matrix",
}


def test_finetune_cli_end_to_end_from_scratch(action_clips, tmp_path):
    r = run_train("finetune", "--ckpt", "none", "--videos", str(action_clips), "--dataset", "folder", "--width",
                  "0.125", "--epochs", "2", "--batch-size", "4", "--test-clips", "3", "--milestones", "1", out=tmp_path)
    assert "clip accuracy" in r.stdout and "video accuracy" in r.stdout
    out = json.loads((tmp_path / "finetune.json").read_text())
    assert out["schema"] == "avsa.eval.finetune" and out["schema_version"] == 1
    m = out["metrics"]
    assert FINETUNE_KEYS <= set(m)
    assert m["n_test_videos"] == N_CLASSES * N_TEST and m["n_test_clips"] == 3 * m["n_test_videos"]
    cm = np.array(m["video_confusion_matrix"])
    assert cm.shape == (N_CLASSES, N_CLASSES) and cm.sum() == m["n_test_videos"]
    assert m["video_accuracy"] == pytest.approx(100 * np.trace(cm) / cm.sum(), abs=1e-3)
    hits = m["clip_accuracy"] / 100 * m["n_test_clips"]  # a share of the test clips, not any number in [0, 100]
    assert hits == pytest.approx(round(hits), abs=1e-3) and m["clip_top5"] >= m["clip_accuracy"]
    assert [h["lr"] for h in out["history"]] == pytest.approx([1e-4, 3e-5])  # decayed ×0.3 at epoch 1
    assert out["data"]["classes"] == sorted(c.name for c in CLASSES[:N_CLASSES])
    assert out["checkpoint"]["pretrained"] is False


class _FixedScores(torch.nn.Module):
    """A stand-in classifier that gives every clip the same class scores."""

    def __init__(self, scores: list[float]):
        super().__init__()
        self.register_buffer("scores", torch.tensor(scores))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scores.expand(x.shape[0], -1)


def test_top1_and_top5_accuracy_count_the_rank_of_the_true_class(action_clips):
    """7 classes, the test videos are of classes 0, 1, 2 (2 each). The scores rank class 2 first, class 0 third
    and class 1 sixth: top-1 hits class 2 only (1/3), top-5 classes 2 and 0 (2/3), per clip and per video."""
    from avsa_train.tasks.action import FinetuneConfig, _topk_hits, evaluate

    test = load_split("folder", action_clips, None).test
    assert sorted(e.label for e in test) == [0, 0, 1, 1, 2, 2]
    model = _FixedScores([5.0, 1.0, 7.0, 6.0, 2.0, 4.0, 0.0])
    m = evaluate(model, test, FinetuneConfig(batch_size=4, test_clips=2), 7, torch.device("cpu"), False)
    assert m["clip_accuracy"] == m["video_accuracy"] == pytest.approx(100 / 3, abs=1e-3)
    assert m["clip_top5"] == m["video_top5"] == pytest.approx(200 / 3, abs=1e-3)
    assert m["n_test_clips"] == 12 and m["per_class_video_accuracy"][2] == 100.0
    assert np.array(m["video_confusion_matrix"])[:, 2].tolist() == [2, 2, 2, 0, 0, 0, 0]
    # fewer classes than k: top-k is every class, so it always hits
    scores = torch.tensor([[0.1, 0.5, 0.4]] * 3)
    assert _topk_hits(scores, torch.tensor([0, 1, 2]), 5).all()
    assert _topk_hits(scores, torch.tensor([0, 1, 2]), 2).tolist() == [False, True, True]


def test_finetune_trains_the_whole_video_network(action_clips):
    from avsa_train.tasks.action import FinetuneConfig, run_finetune
    from avsa_train.tasks.common import load_backbone

    torch.manual_seed(0)
    bb = load_backbone(None, width=0.125)
    before = {n: p.detach().clone() for n, p in bb.video.named_parameters()}
    cfg = FinetuneConfig(epochs=1, batch_size=3, test_clips=2, milestones=())
    res = run_finetune(bb, load_split("folder", action_clips, None), cfg, torch.device("cpu"), show_progress=False)
    changed = [n for n, p in bb.video.named_parameters() if not torch.equal(before[n], p)]
    assert any(n.startswith("conv1") for n in changed) and any(n.startswith("block5") for n in changed)
    assert res.history[0]["train_clips"] == 9 and res.metrics["n_test_clips"] == 2 * N_CLASSES * N_TEST
