"""Class statistics of the masks in shards (``avsa-data labels classes``), read with the torch-free reader.

Counts every pixel of every ``m{m}.v{k}.seg.png`` (or ``seg56.png`` with ``lowres``) of every sample: per class
id the pixel count and fraction, and the pixels whose confidence is at least the threshold (0.75 by default,
seed §A.2, the ones that train and evaluate).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from avsa_data import shard_format
from avsa_data.reader import iter_samples


@dataclass
class ClassStats:
    """Accumulated mask statistics. ``pixels``/``confident`` are per-class-id counts (index = class id)."""

    threshold: float = shard_format.CONFIDENCE_THRESHOLD
    lowres: bool = False
    samples: int = 0
    samples_with_masks: int = 0
    masks: int = 0
    pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    confident: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    names: dict[int, str] = field(default_factory=dict)
    backends: Counter = field(default_factory=Counter)
    missing_reasons: Counter = field(default_factory=Counter)

    def add(self, counts: np.ndarray, confident: np.ndarray) -> None:
        n = max(len(self.pixels), len(counts))
        self.pixels = np.pad(self.pixels, (0, n - len(self.pixels))) + np.pad(counts, (0, n - len(counts)))
        self.confident = np.pad(self.confident, (0, n - len(self.confident))) + np.pad(confident,
                                                                                      (0, n - len(confident)))

    def add_names(self, classes: dict, where: str) -> None:
        for k, name in classes.items():
            i = int(k)
            if self.names.setdefault(i, name) != name:
                raise ValueError(f"{where}: class {i} is {name!r} here but {self.names[i]!r} in earlier samples "
                                 "(shards made with different class lists)")

    def to_json(self) -> dict:
        total = int(self.pixels.sum())
        conf_total = int(self.confident.sum())
        ids = sorted(set(range(len(self.pixels))) | set(self.names))
        rows = []
        for i in ids:
            px = int(self.pixels[i]) if i < len(self.pixels) else 0
            cf = int(self.confident[i]) if i < len(self.confident) else 0
            rows.append({"id": i, "name": self.names.get(i, f"<unnamed {i}>"), "pixels": px,
                         "fraction": px / total if total else 0.0, "confident_pixels": cf,
                         "confident_fraction": cf / conf_total if conf_total else 0.0})
        return {
            "samples": self.samples,
            "samples_with_masks": self.samples_with_masks,
            "samples_without_masks": self.samples - self.samples_with_masks,
            "without_masks_reasons": dict(self.missing_reasons),
            "masks": self.masks,
            "lowres": self.lowres,
            "pixels": total,
            "confidence_threshold": self.threshold,
            "confident_pixels": conf_total,
            "confident_fraction": conf_total / total if total else 0.0,
            "backends": dict(self.backends),
            "classes": rows,
        }


def class_histogram(paths: Iterable[str | Path] | str | Path, threshold: float = shard_format.CONFIDENCE_THRESHOLD,
                    lowres: bool = False) -> ClassStats:
    """Class histogram of the masks of shards ``paths`` (a folder of shards, a ``.tar``, or a list of them)."""
    if isinstance(paths, (str, Path)):
        paths = [paths]
    urls: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            urls += sorted(q for q in p.glob("*.tar") if shard_format.SHARD_RE.match(q.name))
        elif p.is_file():
            urls.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such shard or folder")
    if not urls:
        raise FileNotFoundError(f"no shards ({{split}}-NNNNNN.tar) in {', '.join(map(str, paths))}")
    st = ClassStats(threshold=threshold, lowres=lowres)
    for s in iter_samples(urls):
        st.samples += 1
        lab = s.meta.get("labels") or {}
        st.backends[str(lab.get("backend", "none"))] += 1
        if not lab.get("present"):
            st.missing_reasons[str(lab.get("error", "no labels"))] += 1
            continue
        st.samples_with_masks += 1
        st.add_names(lab.get("classes") or {}, s.key)
        for m in range(int(s.meta["moments_per_sample"])):
            for k in range(len(s.meta["viewpoints"])):
                seg, conf = s.masks(k, m, lowres)  # bounded decoding, errors name shard, key and member
                seg = seg.ravel()
                st.masks += 1
                st.add(np.bincount(seg), np.bincount(seg[conf.ravel() >= threshold]))
    return st


def format_table(stats: ClassStats) -> str:
    """A human-readable table of :meth:`ClassStats.to_json`."""
    d = stats.to_json()
    lines = [f"{d['samples']} samples ({d['samples_with_masks']} with masks), {d['masks']} "
             f"{'56×56 ' if d['lowres'] else ''}masks, {d['pixels']} pixels; backends: "
             + ", ".join(f"{k} ({v})" for k, v in sorted(d["backends"].items()))]
    for reason, n in sorted(d["without_masks_reasons"].items()):
        lines.append(f"  without masks ({n} samples): {reason}")
    width = max([len(r["name"]) for r in d["classes"]] + [5])
    lines.append(f"{'id':>5}  {'class':<{width}}  {'pixels':>12}  {'fraction':>8}  {'confident':>12}  {'fraction':>8}")
    for r in d["classes"]:
        lines.append(f"{r['id']:>5}  {r['name']:<{width}}  {r['pixels']:>12}  {r['fraction']:>8.4f}  "
                     f"{r['confident_pixels']:>12}  {r['confident_fraction']:>8.4f}")
    lines.append(f"confident pixels (confidence ≥ {d['confidence_threshold']:g}): {d['confident_pixels']} of "
                 f"{d['pixels']} = {d['confident_fraction']:.4f}")
    return "\n".join(lines)
