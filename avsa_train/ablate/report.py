"""``table3.json`` and ``table3.md``: per family and row, the paper's numbers next to ours (95 % CIs), the paired
differences from the default cell with their verdicts, and the cells' own numbers."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path

from avsa_train.ablate.grid import DEFAULT_CELL, FAMILIES, PAPER_SOURCE, PAPER_TABLE3, SCRATCH_CELL, Row
from avsa_train.ablate.paired import paired_all, verdict
from avsa_train.ablate.store import SCHEMA_VERSION

METRICS = ("avc", "avsa", "seg", "ucf")
METRIC_TITLES = {"avc": "AVC-Bin@4", "avsa": "AVSA-Bin@4", "seg": "Segm mIoU", "ucf": "UCF"}
#: The metrics a cell measures (UCF101 needs outside data).
MEASURED = ("avc", "avsa", "seg")
#: What each reading of "Direct Prediction" is (shown under the table).
DIRECT_PREDICTION_NOTE = (
    "Table 3e's *Direct Prediction* is run in two readings: `d0` — no translation network (depth 0), each "
    "viewpoint's features go straight to the projection heads; `noctx` — the authors' NoCtx network "
    "(`--context none`): a per-viewpoint MLP of depth 2 (two residual MLP blocks per layer) without attention, "
    "so no viewpoint sees another. Both are compared with the paper's single Direct Prediction row."
)


def _fmt(x, digits: int = 1) -> str:
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else f"{x:.{digits}f}"


def binary_ci(m: dict) -> list | None:
    """The 95 % CI of an AVC-/AVSA-Bin accuracy: clustered by video (``ci95_videos``), or the video bootstrap of
    results written before it existed."""
    return m.get("ci95_videos") or m.get("ci95_bootstrap_videos")


def gap_ci(g: dict) -> list:
    """The 95 % CI of a paired gap: clustered by video (``gap_ci95_videos``: accuracy gaps), else the video
    bootstrap (mIoU and AUC gaps, and results written before)."""
    return g.get("gap_ci95_videos") or g["gap_ci95_bootstrap_videos"]


def headline(result: dict) -> dict[str, tuple[float | None, list | None]]:
    """``{metric: (value, 95 % CI)}`` of a cell result (accuracies: CIs clustered by video; mIoU: video
    bootstrap; UCF ``(None, None)``)."""
    m = result["metrics"]
    return {
        "avc": (m["avc"]["accuracy"], binary_ci(m["avc"])),
        "avsa": (m["avsa"]["accuracy"], binary_ci(m["avsa"])),
        "seg": (m["seg"]["miou"], m["seg"]["miou_ci95_bootstrap_videos"]),
        "ucf": (None, None),
    }


def _with_ci(result: dict) -> dict:
    return {k: {"value": v, "ci95": ci} for k, (v, ci) in headline(result).items()}


# ---------------------------------------------------------------------------------------------- table3.json


def _row(r: Row, default_row: Row, results: dict, cells_dir: Path, seed: int) -> dict:
    res = results.get(r.cell)
    paper_delta = {}
    if r.cell != DEFAULT_CELL and r.paper_id is not None:
        paper_delta = {
            t: round(PAPER_TABLE3[r.paper_id][t] - PAPER_TABLE3[default_row.paper_id][t], 2) for t in MEASURED
        }
    paired = None
    if res is not None and r.cell != DEFAULT_CELL and DEFAULT_CELL in results:
        paired = paired_all(cells_dir, r.cell, seed)
    return {
        "id": r.id,
        "label": r.label,
        "cell": r.cell,
        "overrides": r.overrides,
        "paper": PAPER_TABLE3.get(r.paper_id) if r.paper_id else None,
        "in_paper": r.in_paper,
        "ours": None if res is None else _with_ci(res),
        "paired_vs_default": paired,
        "paper_delta": paper_delta,
        "verdicts": {t: verdict(d, (paired or {}).get(t)) for t, d in paper_delta.items()},
    }


def _best(rows: list[dict]) -> dict:
    """Per metric, the paper's best row and ours (``None`` where a row has no number)."""
    out = {}
    for m in MEASURED:
        paper = max((r for r in rows if r["paper"]), key=lambda r: r["paper"][m])["id"]
        have = [r for r in rows if r["ours"] and r["ours"][m]["value"] is not None]
        ours = max(have, key=lambda r: r["ours"][m]["value"])["id"] if len(have) == len(rows) else None
        out[m] = {"paper": paper, "ours": ours}
    return out


def build_table(results: dict[str, dict], cells_dir: Path, settings: dict, seed: int) -> dict:
    """``table3.json``: per family and row, the paper's numbers and ours (with CIs) from the complete cells'
    ``results`` (cell → ``result.json``), paired with the default cell's items in ``cells_dir``."""
    fams = []
    for f in FAMILIES:
        default_row = next(x for x in f.rows if x.cell == DEFAULT_CELL)
        rows = [_row(r, default_row, results, cells_dir, seed) for r in f.rows]
        fams.append({"key": f.key, "title": f.title, "option": f.option, "rows": rows, "best": _best(rows)})
    scratch = results.get(SCRATCH_CELL)
    return {
        "schema": "avsa.ablate.table3",
        "schema_version": SCHEMA_VERSION,
        "paper_source": PAPER_SOURCE,
        "settings": settings,
        "units": "percent; CIs are 95 % video-bootstrap intervals",
        "families": fams,
        "scratch": None if scratch is None else _with_ci(scratch),
        # random init − the default cell on the same items: does pre-training beat no pre-training?
        "scratch_vs_default": None
        if scratch is None or DEFAULT_CELL not in results
        else paired_all(cells_dir, SCRATCH_CELL, seed),
        "cells": {
            c: {
                "rows": r["rows"],
                "seconds": r["seconds"],
                "pretrain": r.get("pretrain"),
                "metrics": r["metrics"],
            }
            for c, r in results.items()
        },
        "cells_seconds_total": round(sum(r["seconds"] for r in results.values()), 2),
    }


# ---------------------------------------------------------------------------------------------- table3.md


def _cell_text(entry: dict | None, bold: bool) -> str:
    if entry is None or entry["value"] is None:
        return "—"
    v = _fmt(entry["value"])
    v = f"**{v}**" if bold else v
    ci = entry.get("ci95")
    if ci and ci[0] is not None:
        v += f" [{_fmt(ci[0])}, {_fmt(ci[1])}]"
    return v


def _md_row(cols: list[str]) -> str:
    return "| " + " | ".join(cols) + " |"


def _header(*titles: str) -> list[str]:
    """A markdown table's title line and rule."""
    return [_md_row(list(titles)), _md_row(["---"] * len(titles))]


def _main_table(table: dict) -> list[str]:
    """Table 3's layout: every row's numbers with CIs next to the paper's, the best row of a family in bold."""
    s = table["settings"]
    lines = [
        "# Table 3 ablations: avsa rerun vs the paper",
        "",
        f"Scale `{s['scale']}`, seed {s['seed']}, shards `{s['shards']}`. Ours: our number [95 % video-bootstrap "
        "CI]; paper: the published number (supplement Table 3). All values in percent; bold marks the best row of "
        "a family in each column (ours and the paper's separately). Rows with the same `cell` are one training "
        "run. Every cell is scored on the same evaluation items.",
        "",
        "| Table 3 row | cell | AVC-Bin@4 ours | paper | AVSA-Bin@4 ours | paper | Segm mIoU ours | paper | "
        "UCF ours¹ | paper |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for f in table["families"]:
        lines.append(f"| **({f['key']}) {f['title']}** | | | | | | | | | |")
        for r in f["rows"]:
            cols = [r["label"], f"`{r['cell']}`"]
            if not r["paper"]:
                cols[0] += "²"
            for m in MEASURED:
                best = f["best"][m]
                cols.append(_cell_text(r["ours"][m] if r["ours"] else None, best["ours"] == r["id"]))
                paper = f"{r['paper'][m]:.2f}" if r["paper"] else "—"
                cols.append(f"**{paper}**" if best["paper"] == r["id"] else paper)
            cols += ["n/a" if r["ours"] else "—", f"{r['paper']['ucf']:.2f}" if r["paper"] else "—"]
            lines.append(_md_row(cols))
    if table.get("scratch"):
        sc = table["scratch"]
        lines.append("| **reference** | | | | | | | | | |")
        lines.append(
            f"| Random init (no pre-training) | `{SCRATCH_CELL}` | {_cell_text(sc['avc'], False)} | – | "
            f"{_cell_text(sc['avsa'], False)} | – | {_cell_text(sc['seg'], False)} | – | n/a | – |"
        )
    return lines + [
        "",
        "¹ UCF101 action recognition (`avsa-train finetune`) needs the UCF101 videos and split lists, which this "
        "grid does not have; run it per cell checkpoint (`cells/<cell>/pretrain/checkpoint.pt`) where they are.",
        "",
        "² Not in the paper: a row avsa adds (Ambisonics + IV: `--spec mel128+iv`, the 4 log-mel channels plus 3 "
        "active-intensity-vector channels, which keep the front/back and left/right signs that magnitude "
        "spectrograms drop).",
        "",
        DIRECT_PREDICTION_NOTE,
        "",
        f"Curriculum: every cell with the easy → hard curriculum and hard negatives first trains the AVC stage of "
        f"Table 2 for {s.get('switch_epoch')} epochs in the same job (1 viewpoint, batch "
        f"{s.get('easy_batch_size')}, the direct projection heads, loss (7), instance negatives), then AVSA "
        f"(V viewpoints, batch {s.get('batch_size')}, loss (9) with the row's negatives). The paper starts AVSA from "
        "a separately trained AVC model (epoch 100) with a fresh optimiser; here the optimiser state carries over.",
        "",
    ]


def _section(title: str | None, intro: str | None, columns: Sequence[str], rows: Iterable[list[str]]) -> list[str]:
    """A markdown section: ``title``, ``intro`` (each followed by a blank line, left out when ``None``), a table
    of ``columns`` with one line per row, and a blank line."""
    head = [text for part in (title, intro) if part is not None for text in (part, "")]
    return [*head, *_header(*columns), *(_md_row(cols) for cols in rows), ""]


def _gap_text(g: dict | None) -> str:
    if g is None:
        return "—"
    lo, hi = gap_ci(g)
    return f"{g['gap']:+.1f} [{_fmt(lo)}, {_fmt(hi)}]"


def _mcnemar_text(g: dict | None) -> str:
    return "—" if g is None else f"{g['mcnemar_p']:.2g}"


def _non_default_rows(table: dict, measured_only: bool = False):
    """``(family, row)`` of every row that is not the default cell (with ``measured_only``: that has numbers)."""
    for f in table["families"]:
        for r in f["rows"]:
            if r["cell"] != DEFAULT_CELL and (r.get("ours") or not measured_only):
                yield f, r


def _paired_cols(table: dict):
    for f, r in _non_default_rows(table):
        cols = [f"({f['key']}) {r['label']}", f"`{r['cell']}`"]
        for t in MEASURED:
            g = (r.get("paired_vs_default") or {}).get(t)
            v = r.get("verdicts", {}).get(t, "not run" if r.get("in_paper", True) else "not in the paper")
            pd = r.get("paper_delta", {}).get(t)
            cols += [_gap_text(g), "—" if pd is None else f"{pd:+.2f}", v]
            if t != "seg":
                cols.append(_mcnemar_text(g))
        yield cols
    if table.get("scratch_vs_default"):
        cols = ["Random init (no pre-training)", f"`{SCRATCH_CELL}`"]
        for t in MEASURED:
            g = table["scratch_vs_default"].get(t)
            cols += [_gap_text(g), "–", "–"]
            if t != "seg":
                cols.append(_mcnemar_text(g))
        yield cols


def _paired_section(table: dict) -> list[str]:
    """Each row's paired difference from ``base`` with the paper's difference and the verdict."""
    return _section(
        "## Paired differences from the default (ambisonics, V = 4, + spatial, curriculum, D = 2)",
        "Accuracy of the row's cell minus the default cell `base` on the identical AVC-/AVSA-Bin items, with the "
        "95 % CI of the gap clustered by video (cluster-robust SE, t on videos − 1 df) and the exact McNemar p on the "
        "items only one of them gets right (which counts items as independent); "
        "segmentation: mIoU of the row's cell minus `base` on the identical crops, videos resampled together. "
        "Paper Δ: the same difference in the published Table 3. Verdict: *reproduced* — our CI excludes 0 on the "
        "paper's side; *contradicted* — it excludes 0 on the other side; *unresolved* — it contains 0.",
        [
            "Table 3 row",
            "cell",
            "AVC-Bin Δ [95 % CI]",
            "paper Δ",
            "verdict",
            "McNemar p",
            "AVSA-Bin Δ [95 % CI]",
            "paper Δ",
            "verdict",
            "McNemar p",
            "Segm mIoU Δ [95 % CI]",
            "paper Δ",
            "verdict",
        ],
        _paired_cols(table),
    )


def _auc_text(g: dict | None) -> str:
    if g is None:
        return "—"
    lo, hi = g["gap_ci95_bootstrap_videos"]
    return f"{g['gap']:+.3f} [{lo:+.3f}, {hi:+.3f}]"


def _auc_cols(table: dict):
    for f, r in _non_default_rows(table, measured_only=True):
        g = r.get("paired_vs_default") or {}
        yield [
            f"({f['key']}) {r['label']}",
            f"`{r['cell']}`",
            _auc_text(g.get("avc_auc")),
            _auc_text(g.get("avsa_auc")),
        ]
    if table.get("scratch_vs_default"):
        g = table["scratch_vs_default"]
        yield [
            "Random init (no pre-training)",
            f"`{SCRATCH_CELL}`",
            _auc_text(g.get("avc_auc")),
            _auc_text(g.get("avsa_auc")),
        ]


def _auc_section(table: dict) -> list[str]:
    """The threshold-free check: paired ROC-AUC gaps from ``base``."""
    return _section(
        None,
        "Threshold-free check (a classifier that answers one label for every item has an accuracy equal to that "
        "label's share, whatever the features): paired ROC-AUC gap of the misalignment scores, row − `base`, "
        "same items, videos resampled together. The paper reports accuracies only, so no verdict is given here.",
        ["Table 3 row", "cell", "AVC-Bin AUC Δ [95 % CI]", "AVSA-Bin AUC Δ [95 % CI]"],
        _auc_cols(table),
    )


def _verdict_counts(family: dict, metric: str) -> str:
    counts: dict[str, int] = {}
    for r in family["rows"]:
        if r["cell"] != DEFAULT_CELL and r.get("in_paper", True):  # rows beyond the paper have no direction
            v = r.get("verdicts", {}).get(metric, "not run")
            counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{n} {k}" for k, n in counts.items()) or "—"


def _direction_section(table: dict) -> list[str]:
    """Per family and metric, the count of the non-default rows by verdict."""
    return _section(
        "### The paper's direction per family and metric",
        "Counts of the family's non-default rows by verdict (see above).",
        ["family", "AVC-Bin@4", "AVSA-Bin@4", "Segm mIoU"],
        ([f"({f['key']}) {f['title']}"] + [_verdict_counts(f, t) for t in MEASURED] for f in table["families"]),
    )


def _cell_rows(info: dict) -> str:
    return ", ".join(info["rows"]) or "reference"


def _beyond_accuracy_cols(c: str, info: dict) -> list[str]:
    cols = [f"`{c}`", _cell_rows(info)]
    for t in ("avc", "avsa"):
        m = info["metrics"][t]
        cols += [_fmt(m.get("roc_auc"), 3), f"{_fmt(m.get('accuracy_aligned'))} / {_fmt(m.get('accuracy_misaligned'))}"]
    return cols


def _beyond_accuracy_section(table: dict) -> list[str]:
    """Per cell: ROC AUC and the accuracies on each label of AVC-/AVSA-Bin."""
    return _section(
        "## AVC-/AVSA-Bin beyond accuracy",
        "A binary classifier trained on few items can collapse to one answer; its accuracy is then the share of "
        "that label among the test items, whatever the features. The ROC AUC of the misalignment score is "
        "threshold-free (0.5 = chance); aligned / misaligned are the accuracies on each label.",
        [
            "cell",
            "rows",
            "AVC-Bin AUC",
            "AVC-Bin aligned / misaligned",
            "AVSA-Bin AUC",
            "AVSA-Bin aligned / misaligned",
        ],
        (_beyond_accuracy_cols(c, info) for c, info in table["cells"].items()),
    )


def _control_text(m: dict) -> list[str]:
    """Best single-modality control and the model's paired gap over it (``—`` for results without controls)."""
    if not m.get("controls"):
        return ["—", "—"]
    best = m["best_control"]
    return [f"{best} only {_fmt(m['controls'][best]['accuracy'])}", _gap_text(m["gap_over_best_control"])]


def _controls_section(table: dict) -> list[str]:
    """Per cell: the better single-modality control of AVC-/AVSA-Bin and the cell's paired gap over it."""
    rows = ([f"`{c}`", _cell_rows(info), *_control_text(info["metrics"]["avc"]),
             *_control_text(info["metrics"]["avsa"])] for c, info in table["cells"].items())
    return _section(
        "## Single-modality controls",
        "The same head trained on the audio features alone and on the video features alone, on the same items; the "
        "better of the two, and the cell's paired gap over it [95 % CI clustered by video]. A cell shows "
        "audio-visual alignment only where this gap is above 0.",
        ["cell", "rows", "AVC-Bin best control", "AVC-Bin gap over it", "AVSA-Bin best control",
         "AVSA-Bin gap over it"],
        rows,
    )


def _best_section(table: dict) -> list[str]:
    """Per family and metric, the paper's best row and ours."""
    labels = {r["id"]: r["label"] for f in table["families"] for r in f["rows"]}
    rows = (
        [f"({f['key']}) {f['title']}", METRIC_TITLES[m], labels[b["paper"]], labels[b["ours"]] if b["ours"] else "—"]
        for f in table["families"]
        for m, b in ((m, f["best"][m]) for m in MEASURED)
    )
    return _section("## Best row per family", None, ["family", "metric", "paper's best", "ours"], rows)


def _pretrain_cols(c: str, info: dict) -> list[str]:
    pre = info.get("pretrain") or {}
    fin = pre.get("final") or {}
    accs = [_fmt(pretext_accuracy(fin, kind)) for kind in ("AVC", "AVSA")]
    return [
        f"`{c}`",
        _cell_rows(info),
        str(pre.get("steps", "—")),
        _fmt(fin.get("loss"), 3),
        *accs,
        f"{info['seconds']:.0f}",
    ]


def _cells_section(table: dict) -> list[str]:
    """Per cell: pre-training steps, the final pretext numbers and the cell's time."""
    return _section(
        "## Cells",
        "Pretext numbers are means over the last 10 logged pre-training steps (V2A and A2V averaged); chance is "
        "1/batch for AVC-Acc and 1/V for AVSA-Acc.",
        ["cell", "rows", "pre-training steps", "pretext loss", "pretext AVC-Acc", "pretext AVSA-Acc", "seconds"],
        (_pretrain_cols(c, info) for c, info in table["cells"].items()),
    ) + [f"Total cell time {table['cells_seconds_total']:.0f} s.", ""]


def pretext_accuracy(final: dict, kind: str) -> float | None:
    """The mean of V2A and A2V ``kind``-Acc (``AVC`` or ``AVSA``) of a pre-training summary (``None``: not logged)."""
    acc = [final[k] for k in (f"V2A/{kind}-Acc", f"A2V/{kind}-Acc") if k in final]
    return sum(acc) / len(acc) if acc else None


def render_markdown(table: dict) -> str:
    """``table3.md``: Table 3's layout, our number [95 % CI] next to the paper's for every row, then the paired
    differences from the default, the AUC check, the verdict counts, the cells' numbers."""
    sections = (
        _main_table,
        _paired_section,
        _auc_section,
        _direction_section,
        _beyond_accuracy_section,
        _controls_section,
        _best_section,
        _cells_section,
    )
    return "\n".join(line for section in sections for line in section(table))


def log_line(i: int, n: int, cell: str, result: dict, ran: bool) -> str:
    """The line printed when a cell is done (or found done): its pretext and evaluation headline numbers."""
    h = headline(result)
    fin = (result.get("pretrain") or {}).get("final") or {}
    acc = pretext_accuracy(fin, "AVSA")
    pretext = f"pretext loss {_fmt(fin.get('loss'), 3)} AVSA-Acc {_fmt(acc)}% | " if acc is not None else ""
    status = f"{result['seconds']:.0f} s" if ran else "done earlier, skipped"
    return (
        f"[{i}/{n}] {cell} ({_cell_rows(result)}): {pretext}AVC-Bin {_fmt(h['avc'][0])}% "
        f"AVSA-Bin {_fmt(h['avsa'][0])}% mIoU {_fmt(h['seg'][0])}% ({status})"
    )
