"""tools/identity_check.py, the script that says whether a restructuring changed any output: its normalisation
(volatile fields only), its record of files and checkpoints, and its comparison (a change must be reported)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

_TOOL = Path(__file__).parent.parent / "tools" / "identity_check.py"
_SPEC = importlib.util.spec_from_file_location("identity_check", _TOOL)
ic = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(ic)


def test_only_volatile_fields_are_left_out(tmp_path):
    row = {"step": 3, "loss": 1.25, "time": 12.0, "samples_per_s": 9.1, "wall_s": 1.0, "mtime_ns": 7,
           "nested": {"epoch_seconds": 3.0, "acc": 50.0}}
    assert ic.normalise([row]) == [{"loss": 1.25, "nested": {"acc": 50.0}, "step": 3}]
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text(json.dumps(row) + "\n")
    b.write_text(json.dumps(row | {"time": 99.0}) + "\n")
    assert ic.file_entry(a)["sha256"] == ic.file_entry(b)["sha256"]  # a time is not a change
    b.write_text(json.dumps(row | {"loss": 1.2500001}) + "\n")
    assert ic.file_entry(a)["sha256"] != ic.file_entry(b)["sha256"]  # a loss is


def test_a_changed_tensor_or_file_is_reported(tmp_path, capsys):
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    torch.save({"model": {"w": w}, "step": 2}, tmp_path / "a.pt")
    torch.save({"model": {"w": w.clone()}, "step": 2}, tmp_path / "b.pt")
    w2 = w.clone()
    w2[1, 2] = torch.nextafter(w2[1, 2], torch.tensor(100.0))  # one ulp
    torch.save({"model": {"w": w2}, "step": 2}, tmp_path / "c.pt")
    ea = ic.checkpoint_entries(tmp_path / "a.pt")
    eb = {k.replace("b.pt", "a.pt"): v for k, v in ic.checkpoint_entries(tmp_path / "b.pt").items()}
    ec = {k.replace("c.pt", "a.pt"): v for k, v in ic.checkpoint_entries(tmp_path / "c.pt").items()}
    rec = {"commit": "0" * 40}
    assert ic.compare(rec | {"entries": ea}, rec | {"entries": eb}, echo=lambda *_: None) == 0
    lines = []
    assert ic.compare(rec | {"entries": ea}, rec | {"entries": ec}, echo=lines.append) == 1
    assert lines[0] == "differs: a.pt.model.w" and lines[-1].endswith("1 differ")
    only = []
    assert ic.compare(rec | {"entries": ea}, rec | {"entries": {}}, echo=only.append) == 1
    assert only[0].startswith("only in base: a.pt")
