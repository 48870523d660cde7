"""Downstream metrics: segmentation confusion matrices and IoU, accuracies, and their confidence intervals.

Conventions:

* A confusion matrix ``C`` is ``[K, K]`` int64 with rows = ground-truth class and columns = predicted class,
  counted over **confident** pixels only (confidence ``≥ threshold``, 0.75 in seed §A.2). Pixels below the
  threshold are unlabelled: they count neither as errors nor as hits, whatever the prediction.
* ``IoU_k = C[k,k] / (Σ_j C[k,j] + Σ_i C[i,k] − C[k,k])`` (TP / (TP + FN + FP)). A class whose union is 0 (never
  in the ground truth nor predicted over confident pixels) has no IoU (``nan``) and is left out of the mean:
  ``mIoU`` is the mean over classes with a defined IoU. Pixel accuracy is ``trace(C) / ΣC``.
* The confusion matrix is accumulated over the whole evaluation set (dataset-level IoU, as in the usual
  segmentation benchmarks); the reference code instead averages per-image IoUs (docs/EVALUATION.md).
* Accuracies are returned as fractions in ``[0, 1]``; the commands report percentages.

Confidence intervals: :func:`wilson_interval` for a binomial proportion of independent trials;
:func:`cluster_t_interval`, the one the reports lead with, for the mean of per-item values whose items come in
clusters (videos): a cluster-robust standard error with Student t on ``G − 1`` degrees of freedom, which keeps its
coverage with the 8–12 validation videos of a small evaluation (a percentile bootstrap over so few clusters is
too narrow); and :func:`cluster_bootstrap`, which resamples whole clusters with replacement (kept for statistics
that are not means, such as mIoU).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
import torch
from scipy.stats import norm
from scipy.stats import t as student_t

from avsa_data.shard_format import CONFIDENCE_THRESHOLD  # 0.75: pixels below it are ignored (seed §A.2)


def confident_mask(conf: torch.Tensor, threshold: float = CONFIDENCE_THRESHOLD) -> torch.Tensor:
    """Boolean mask of the pixels whose label confidence (in [0, 1]) is ``≥ threshold``."""
    return conf >= threshold


def confusion_matrix(
    pred: torch.Tensor | np.ndarray,
    target: torch.Tensor | np.ndarray,
    num_classes: int,
    valid: torch.Tensor | np.ndarray | None = None,
) -> np.ndarray:
    """``[K, K]`` int64 confusion matrix (rows: truth, columns: prediction) of integer class maps.

    Args:
        pred: predicted class ids, any shape.
        target: ground-truth class ids, same shape.
        num_classes: K; ids must lie in ``[0, K)``.
        valid: optional boolean mask of the same shape; only ``True`` pixels are counted (e.g. the confident
            pixels, :func:`confident_mask`).
    """
    p = torch.as_tensor(pred).reshape(-1).long()
    t = torch.as_tensor(target).reshape(-1).long().to(p.device)
    if p.shape != t.shape:
        raise ValueError(f"pred and target must have the same number of pixels, got {p.numel()} and {t.numel()}")
    if valid is not None:
        v = torch.as_tensor(valid).reshape(-1).to(p.device).bool()
        if v.shape != p.shape:
            raise ValueError(f"valid mask must match pred/target ({p.numel()} pixels), got {v.numel()}")
        p, t = p[v], t[v]
    if p.numel() and (
        int(p.min()) < 0 or int(p.max()) >= num_classes or int(t.min()) < 0 or int(t.max()) >= num_classes
    ):
        raise ValueError(
            f"class ids must be in [0, {num_classes}); got pred {int(p.min())}..{int(p.max())}, "
            f"target {int(t.min())}..{int(t.max())}"
        )
    counts = torch.bincount(t * num_classes + p, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).cpu().numpy().astype(np.int64)


def iou_per_class(confusion: np.ndarray) -> np.ndarray:
    """Per-class IoU ``[K]`` (``nan`` where the class's union is empty) of a confusion matrix."""
    c = np.asarray(confusion, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"confusion matrix must be square [K, K], got {c.shape}")
    tp = np.diag(c)
    union = c.sum(0) + c.sum(1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.where(union > 0, union, 1.0), np.nan)


def mean_iou(confusion: np.ndarray) -> float:
    """Mean of the defined per-class IoUs (``nan`` if no class has a non-empty union)."""
    iou = iou_per_class(confusion)
    return float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan")


def pixel_accuracy(confusion: np.ndarray) -> float:
    """``trace(C) / ΣC`` over the counted (confident) pixels; ``nan`` when no pixel was counted."""
    c = np.asarray(confusion, dtype=np.float64)
    total = c.sum()
    return float(np.trace(c) / total) if total > 0 else float("nan")


def segmentation_scores(confusion: np.ndarray, class_names: Sequence[str] | None = None) -> dict:
    """mIoU, pixel accuracy, mean class accuracy and per-class IoU (fractions; ``None`` where undefined)."""
    c = np.asarray(confusion, dtype=np.float64)
    iou = iou_per_class(c)
    support = c.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        class_acc = np.where(support > 0, np.diag(c) / np.where(support > 0, support, 1.0), np.nan)
    names = list(class_names) if class_names is not None else [str(k) for k in range(len(iou))]
    if len(names) != len(iou):
        raise ValueError(f"{len(names)} class names for a {len(iou)}-class confusion matrix")
    return {
        "miou": _finite_or_none(mean_iou(c)),
        "pixel_accuracy": _finite_or_none(pixel_accuracy(c)),
        "mean_class_accuracy": _finite_or_none(
            float(np.nanmean(class_acc)) if np.isfinite(class_acc).any() else float("nan")
        ),
        "per_class_iou": {n: _finite_or_none(float(v)) for n, v in zip(names, iou)},
        "per_class_pixels": {n: int(s) for n, s in zip(names, support)},
        "confident_pixels": int(c.sum()),
    }


def _finite_or_none(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (fractions). ``(nan, nan)`` when ``trials`` is 0."""
    if trials < 0 or successes < 0 or successes > trials:
        raise ValueError(f"need 0 <= successes <= trials, got {successes} / {trials}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if trials == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + confidence / 2))
    p = successes / trials
    denom = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def cluster_bootstrap(
    cluster_stats: np.ndarray,
    statistic: Callable[[np.ndarray], float],
    n_boot: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``statistic`` resampling clusters with replacement.

    Args:
        cluster_stats: ``[n_clusters, ...]`` additive per-cluster statistics (e.g. ``[correct, total]`` per
            video, or a confusion matrix per video). A replicate sums the resampled clusters' rows
            (with multiplicity) and applies ``statistic`` to the sum.
        statistic: maps a summed statistic (shape ``cluster_stats.shape[1:]``) to a number.
        n_boot: bootstrap replicates.
        confidence: two-sided coverage of the interval.
        seed: seed of the replicate draws (``numpy.random.default_rng``).

    Returns ``(nan, nan)`` with fewer than 2 clusters. Replicates whose statistic is ``nan`` are dropped.
    """
    stats = np.asarray(cluster_stats, dtype=np.float64)
    n = stats.shape[0] if stats.ndim else 0
    if n < 2:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    weights = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot)  # [n_boot, n]
    sums = np.tensordot(weights.astype(np.float64), stats, axes=(1, 0))  # [n_boot, ...]
    values = np.array([statistic(s) for s in sums], dtype=np.float64)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    return float(np.quantile(values, alpha)), float(np.quantile(values, 1 - alpha))


def cluster_t_interval(
    values: Sequence[float] | np.ndarray, clusters: Sequence[str], confidence: float = 0.95
) -> tuple[float, float, float]:
    """Mean of per-item ``values`` and its confidence interval when items are correlated within ``clusters``.

    The standard error is the cluster-robust (CR1) one of the item mean: each cluster's summed residuals
    ``Σ_{i∈g} (x_i − x̄)`` count as one observation, ``var = G/(G−1) · Σ_g (Σ_{i∈g} (x_i − x̄))² / N²``, and the
    interval uses Student t with ``G − 1`` degrees of freedom (the few-cluster correction of Cameron & Miller,
    "A practitioner's guide to cluster-robust inference", 2015, §VI). With equal cluster sizes this is the
    t-interval of the per-cluster means. Items of one cluster therefore add no more evidence than their cluster.

    Returns ``(mean, low, high)`` in the values' units; the bounds are ``nan`` with fewer than 2 clusters.
    """
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    ids = list(clusters)
    if x.size == 0 or len(ids) != x.size:
        raise ValueError(f"need the same non-zero number of values and cluster ids, got {x.size} and {len(ids)}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    mean = float(x.mean())
    names = sorted(set(ids))
    g = len(names)
    if g < 2:
        return mean, float("nan"), float("nan")
    index = {v: i for i, v in enumerate(names)}
    sums = np.zeros(g)
    np.add.at(sums, [index[v] for v in ids], x - mean)
    se = math.sqrt(g / (g - 1) * float((sums**2).sum())) / x.size
    half = float(student_t.ppf(0.5 + confidence / 2, g - 1)) * se
    return mean, mean - half, mean + half


def accuracy_summary(
    correct: Sequence[bool] | np.ndarray, clusters: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0
) -> dict:
    """Accuracy of a list of per-item outcomes with a Wilson 95 % CI and, given each item's cluster (video id),
    a cluster-bootstrap 95 % CI. All values in percent."""
    c = np.asarray(correct, dtype=bool).reshape(-1)
    k, n = int(c.sum()), int(c.size)
    lo, hi = wilson_interval(k, n)
    out = {
        "accuracy": _pct(k / n) if n else None,
        "ci95_wilson": [_pct(lo), _pct(hi)],
        "correct": k,
        "n": n,
    }
    if clusters is not None:
        ids = list(clusters)
        if len(ids) != n:
            raise ValueError(f"{len(ids)} cluster ids for {n} outcomes")
        names = sorted(set(ids))
        index = {v: i for i, v in enumerate(names)}
        per = np.zeros((len(names), 2))
        for ok, vid in zip(c, ids):
            per[index[vid]] += (float(ok), 1.0)
        blo, bhi = cluster_bootstrap(per, lambda s: s[0] / s[1] if s[1] > 0 else float("nan"), n_boot, seed=seed)
        out["ci95_bootstrap_videos"] = [_pct(blo), _pct(bhi)]
        _, tlo, thi = cluster_t_interval(c.astype(np.float64), ids)
        out["ci95_videos"] = [_pct(max(0.0, tlo)), _pct(min(1.0, thi))]
        out["n_videos"] = len(names)
    return out


def _pct(x: float) -> float | None:
    return round(100.0 * x, 4) if math.isfinite(x) else None


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """Area under the ROC curve of ``scores`` for binary ``labels`` (1 = positive class), ties counted half
    (the Mann–Whitney statistic). ``None`` when one class is absent."""
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels).reshape(-1).astype(bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    from scipy.stats import rankdata

    ranks = rankdata(s)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def paired_gap(
    correct_a: Sequence[bool], correct_b: Sequence[bool], clusters: Sequence[str], n_boot: int = 2000, seed: int = 0
) -> dict:
    """Accuracy gap ``A − B`` (percent) of two models scored on the **same** items.

    Returns the gap; ``gap_ci95_videos``, its 95 % CI clustered by video (:func:`cluster_t_interval` on the
    per-item differences: each video one observation, t on ``G − 1`` degrees of freedom), the one to read; the
    cluster-bootstrap CI (``gap_ci95_bootstrap_videos``, narrower than it should be at few videos); and the exact
    two-sided McNemar test on the discordant items (``b01``: only A right, ``b10``: only B right), which treats
    items as independent.
    """
    a = np.asarray(correct_a, dtype=bool).reshape(-1)
    b = np.asarray(correct_b, dtype=bool).reshape(-1)
    ids = list(clusters)
    if not (a.size == b.size == len(ids)) or a.size == 0:
        raise ValueError(f"need the same non-zero number of outcomes and clusters, got {a.size}, {b.size}, {len(ids)}")
    only_a, only_b = int((a & ~b).sum()), int((~a & b).sum())
    from scipy.stats import binomtest

    p = binomtest(only_a, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    names = sorted(set(ids))
    index = {v: i for i, v in enumerate(names)}
    per = np.zeros((len(names), 3))
    for x, y, vid in zip(a, b, ids):
        per[index[vid]] += (float(x), float(y), 1.0)
    lo, hi = cluster_bootstrap(per, lambda s: (s[0] - s[1]) / s[2], n_boot, seed=seed)
    _, tlo, thi = cluster_t_interval(a.astype(np.float64) - b.astype(np.float64), ids)
    return {
        "accuracy_a": _pct(float(a.mean())),
        "accuracy_b": _pct(float(b.mean())),
        "gap": _pct(float(a.mean() - b.mean())),
        "gap_ci95_videos": [_pct(tlo), _pct(thi)],
        "ci_method": "cluster-robust SE of the item mean, Student t with (videos - 1) df",
        "gap_ci95_bootstrap_videos": [_pct(lo), _pct(hi)],
        "only_a_correct": only_a,
        "only_b_correct": only_b,
        "mcnemar_p": float(p),
        "n": int(a.size),
        "n_videos": len(names),
    }
