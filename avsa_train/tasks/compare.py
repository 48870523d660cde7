"""Paired comparison of two binary evaluations (AVC-Bin / AVSA-Bin) scored on the same items.

``avsa-train eval`` writes ``eval_TASK_items.jsonl``, one line per evaluated item with its ``key``, ``moment``,
``draw``, ``label``, ``yaw``, ``video_id`` and whether the prediction was ``correct``. Two runs with the same
shards, seed and ``--test-draws`` (e.g. a pre-trained checkpoint and ``--ckpt none``) see identical items, so
their accuracy gap can be tested paired: :func:`paired_items_gap` checks that the items and labels agree and
returns the gap with a video-bootstrap 95 % CI and an exact McNemar test (:func:`metrics.paired_gap`).

    python -m avsa_train.tasks.compare A/eval_avsa_items.jsonl B/eval_avsa_items.jsonl --out gap.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .metrics import paired_gap


def read_items(path: str | Path) -> list[dict]:
    """The rows of an ``eval_TASK_items.jsonl`` file."""
    return [json.loads(ln) for ln in Path(path).read_text().splitlines() if ln.strip()]


def paired_items_gap(items_a: list[dict], items_b: list[dict], seed: int = 0) -> dict:
    """Accuracy gap A − B (percent) on the items both runs evaluated (see :func:`metrics.paired_gap`).

    Raises ``ValueError`` when the runs evaluated different items or gave an item different labels.
    """

    def keyed(rows: list[dict]) -> dict:
        return {(r["key"], r["moment"], r["draw"]): r for r in rows}

    a, b = keyed(items_a), keyed(items_b)
    if set(a) != set(b):
        raise ValueError("the two runs evaluated different items: use the same shards, seed and --test-draws")
    keys = sorted(a)
    for k in keys:
        if a[k]["label"] != b[k]["label"] or abs(a[k]["yaw"] - b[k]["yaw"]) > 1e-6:
            raise ValueError(f"item {k} has different labels in the two runs: not a paired comparison")
    return paired_gap(
        [a[k]["correct"] for k in keys], [b[k]["correct"] for k in keys], [a[k]["video_id"] for k in keys], seed=seed
    )


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("items_a", type=Path, help="eval_TASK_items.jsonl of model A (e.g. pre-trained)")
    ap.add_argument("items_b", type=Path, help="eval_TASK_items.jsonl of model B (e.g. scratch)")
    ap.add_argument("--out", type=Path, default=None, help="write the result JSON here")
    ap.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    args = ap.parse_args(argv)
    return report_gap(paired_items_gap(read_items(args.items_a), read_items(args.items_b), args.seed), args.out)


def report_gap(gap: dict, out: Path | None) -> dict:
    """Print a paired comparison as JSON, also into ``out`` when given, and return it."""
    text = json.dumps(gap, indent=1)
    if out:
        out.write_text(text + "\n")
    print(text)
    return gap


if __name__ == "__main__":
    main()
