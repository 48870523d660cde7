"""Paired comparisons of a cell with the default cell on the identical evaluation items: accuracy gaps with
McNemar p, mIoU gaps and ROC-AUC gaps, each with a video-bootstrap 95 % CI; and the verdict of such a gap
against the paper's difference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from avsa_train.ablate.grid import DEFAULT_CELL
from avsa_train.ablate.store import read_json
from avsa_train.tasks.metrics import cluster_bootstrap, mean_iou, paired_gap, roc_auc


def _items(cell_dir: Path, task: str) -> dict | None:
    path = cell_dir / "eval" / f"eval_{task}_items.jsonl"
    if not path.is_file():
        return None
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()]
    return {(r["key"], r["moment"], r["draw"]): r for r in rows}


def _paired_items(cells_dir: Path, cell: str, task: str) -> tuple[dict, dict, list] | None:
    """The per-item rows of ``cell`` and the default cell for ``task`` and their common keys (sorted), or
    ``None`` unless both were scored on the same items with the same labels."""
    a, b = _items(cells_dir / cell, task), _items(cells_dir / DEFAULT_CELL, task)
    if a is None or b is None or set(a) != set(b):
        return None
    keys = sorted(a)
    if any(a[k]["label"] != b[k]["label"] for k in keys):
        return None
    return a, b, keys


def paired_vs_default(cells_dir: Path, cell: str, task: str, seed: int = 0) -> dict | None:
    """Paired accuracy gap (``cell`` − ``base``) on the identical AVC-/AVSA-Bin items both were scored on:
    video-bootstrap 95 % CI and exact McNemar p (:func:`avsa_train.tasks.metrics.paired_gap`)."""
    paired = _paired_items(cells_dir, cell, task)
    if paired is None:
        return None
    a, b, keys = paired
    return paired_gap(
        [a[k]["correct"] for k in keys], [b[k]["correct"] for k in keys], [a[k]["video_id"] for k in keys], seed=seed
    )


def paired_segmentation_vs_default(cells_dir: Path, cell: str, seed: int = 0, n_boot: int = 2000) -> dict | None:
    """Paired mIoU gap (``cell`` − ``base``, percent) on the identical segmentation crops: the videos' confusion
    matrices of both cells are resampled together (video bootstrap), the gap's 95 % CI is the percentile interval
    of mIoU(A) − mIoU(B) over the replicates."""
    a = (read_json(cells_dir / cell / "eval" / "segment.json") or {}).get("metrics", {})
    b = (read_json(cells_dir / DEFAULT_CELL / "eval" / "segment.json") or {}).get("metrics", {})
    va, vb = a.get("per_video_confusion"), b.get("per_video_confusion")
    if not va or not vb or set(va) != set(vb):
        return None
    videos = sorted(va)
    stack = np.stack([np.stack([np.asarray(va[v]), np.asarray(vb[v])]) for v in videos]).astype(np.float64)
    if stack[:, 0].sum(axis=(1, 2)).tolist() != stack[:, 1].sum(axis=(1, 2)).tolist():
        return None  # not the same confident pixels

    def gap(s):
        return mean_iou(s[0]) - mean_iou(s[1])

    lo, hi = cluster_bootstrap(stack, gap, n_boot, seed=seed)
    total = stack.sum(0)
    return {
        "miou_a": round(100 * mean_iou(total[0]), 4),
        "miou_b": round(100 * mean_iou(total[1]), 4),
        "gap": round(100 * gap(total), 4),
        "gap_ci95_bootstrap_videos": [round(100 * lo, 4), round(100 * hi, 4)],
        "n_videos": len(videos),
    }


def paired_auc_vs_default(cells_dir: Path, cell: str, task: str, seed: int = 0, n_boot: int = 1000) -> dict | None:
    """Paired ROC-AUC gap (``cell`` − ``base``) of the misalignment scores on the identical AVC-/AVSA-Bin items:
    threshold-free, so it still compares two cells whose classifiers collapse to one answer. 95 % CI: videos
    resampled with replacement, the same draw for both cells."""
    paired = _paired_items(cells_dir, cell, task)
    if paired is None:
        return None
    a, b, keys = paired
    sa = np.array([a[k]["score"] for k in keys], dtype=np.float64)
    sb = np.array([b[k]["score"] for k in keys], dtype=np.float64)
    y = np.array([a[k]["label"] for k in keys])
    vids = [a[k]["video_id"] for k in keys]
    auc_a, auc_b = roc_auc(sa, y), roc_auc(sb, y)
    if auc_a is None or auc_b is None:
        return None
    groups = [np.flatnonzero(np.array(vids) == v) for v in sorted(set(vids))]
    rng = np.random.default_rng(seed)
    gaps = []
    for _ in range(n_boot):
        idx = np.concatenate([groups[i] for i in rng.integers(0, len(groups), len(groups))])
        ga, gb = roc_auc(sa[idx], y[idx]), roc_auc(sb[idx], y[idx])
        if ga is not None and gb is not None:
            gaps.append(ga - gb)
    lo, hi = np.percentile(gaps, [2.5, 97.5]) if gaps else (float("nan"), float("nan"))
    return {
        "auc_a": round(auc_a, 4),
        "auc_b": round(auc_b, 4),
        "gap": round(auc_a - auc_b, 4),
        "gap_ci95_bootstrap_videos": [round(float(lo), 4), round(float(hi), 4)],
        "n": len(keys),
        "n_videos": len(groups),
    }


def paired_all(cells_dir: Path, cell: str, seed: int = 0) -> dict:
    """Every paired gap of ``cell`` − ``base``: ``avc``, ``avsa`` (accuracy), ``seg`` (mIoU), ``avc_auc``,
    ``avsa_auc`` (``None`` where the two cells were not scored on the same items)."""
    return {
        "avc": paired_vs_default(cells_dir, cell, "avc", seed),
        "avsa": paired_vs_default(cells_dir, cell, "avsa", seed),
        "seg": paired_segmentation_vs_default(cells_dir, cell, seed),
        "avc_auc": paired_auc_vs_default(cells_dir, cell, "avc", seed),
        "avsa_auc": paired_auc_vs_default(cells_dir, cell, "avsa", seed),
    }


#: How a row's paired difference from the default reads against the paper's difference for the same rows.
VERDICTS = ("reproduced", "contradicted", "unresolved", "no paper difference", "not run")


def verdict(paper_delta: float, gap: dict | None) -> str:
    """``reproduced``: our paired 95 % CI (clustered by video where the gap has one) excludes 0 on the paper's
    side; ``contradicted``: it excludes 0 on the
    other side; ``unresolved``: it contains 0; ``no paper difference`` when the paper's two numbers are equal;
    ``not run`` without a paired gap."""
    if gap is None:
        return "not run"
    if paper_delta == 0:
        return "no paper difference"
    lo, hi = gap.get("gap_ci95_videos") or gap["gap_ci95_bootstrap_videos"]
    if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi)):
        return "unresolved"
    if lo > 0 or hi < 0:
        return "reproduced" if (lo > 0) == (paper_delta > 0) else "contradicted"
    return "unresolved"
