"""The JSON files of a grid folder (``ablate.json``, ``cells/<cell>/{spec,pretrain,result}.json``,
``table3.json``): tolerant reads (a missing or torn file reads as ``None``: that step is redone) and atomic
writes (sorted keys, NaN → null), so a killed run never leaves a half-written file under a final name."""

from __future__ import annotations

import json
from pathlib import Path

from avsa_data import fsutil
from avsa_train.tasks.common import _jsonable

#: A cell's summary; a cell that has one (with the same spec) is complete and skipped on a rerun.
RESULT = "result.json"
SCHEMA_VERSION = 1


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_json(path, _jsonable(payload))


def read_json(path: Path) -> dict | None:
    """The document in ``path``, or ``None`` when it is missing or unreadable (the step that writes it reruns)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def plain(obj):
    """``obj`` as it reads back from JSON (tuples become lists), so saved and fresh specs compare equal."""
    return json.loads(json.dumps(obj))
