"""Class maps: from a label source's class ids (*source ids*) to the class ids written into shards (*output ids*).

A class map is a JSON file (docs/LABELS.md)::

    {"classes": ["background", "red_disc", ...]}                 # identity: source id = output id

    {"classes": [...output names, index = output id...],
     "source_classes": [...input names, index = source id...],   # which source ids exist
     "map": {"<source id>": <output id>, ...},                    # the rest go to "default"
     "default": 0,
     "ignore": [0],                                               # output ids whose pixels get confidence 0
     "panoptic": {"num_things": 80, "num_stuff": 54}}             # things/stuff PNG merge (precomputed backend)

A source id outside ``0 .. len(source_classes) - 1`` is an error (:class:`~avsa_data.labels.base.LabelError`):
the labels and the map disagree. Pixels whose output id is in ``ignore`` keep that id but get confidence 0, so
they are ignored at train and evaluation time like every pixel below the 0.75 threshold (this is how the
reference's "255 = unlabeled" is represented). The shipped ``coco_panoptic_to_avsa32`` map reduces the 134
COCO-panoptic categories of the YouTube-360 labels to the 32 classes of the paper (seed §A.2).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .base import LabelError

ASSETS = Path(__file__).resolve().parent.parent / "assets"
#: The shipped COCO-panoptic → AVSA-32 map (docs/LABELS.md, "The 32 classes").
DEFAULT_CLASS_MAP = "coco_panoptic_to_avsa32"


def builtin_class_map_path(name: str) -> Path | None:
    """Path of a class map shipped in ``avsa_data/assets`` (``name`` without ``.json``), or ``None``."""
    p = ASSETS / f"{name}.json"
    return p if "/" not in name and "\\" not in name and p.is_file() else None


@dataclass(frozen=True)
class ClassMap:
    """A lookup from source ids to output ids (see the module docstring).

    ``lut[s]`` is the output id of source id ``s``; ``ignore`` the output ids whose confidence is forced to 0;
    ``panoptic`` the (num_things, num_stuff) of the two-file panoptic layout, or ``None``.
    """

    classes: tuple[str, ...]
    source_classes: tuple[str, ...]
    lut: NDArray[np.int64] = field(repr=False)
    ignore: frozenset[int] = frozenset()
    name: str = "identity"
    sha256: str = ""
    panoptic: tuple[int, int] | None = None

    # ------------------------------------------------------------------------------------------ construction

    @classmethod
    def identity(cls, names: list[str] | tuple[str, ...], name: str = "identity") -> ClassMap:
        """Source id = output id for ``len(names)`` classes."""
        return cls.from_dict({"classes": list(names)}, name=name)

    @classmethod
    def load(cls, spec: str | Path) -> ClassMap:
        """Load a class-map JSON file, or a shipped map by name (``coco_panoptic_to_avsa32``)."""
        p = builtin_class_map_path(str(spec)) or Path(spec)
        if not p.is_file():
            raise LabelError(f"--class-map {spec}: no such file (nor a shipped map; shipped: {DEFAULT_CLASS_MAP})")
        raw = p.read_bytes()
        try:
            d = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise LabelError(f"--class-map {p}: not valid JSON ({e})") from e
        if not isinstance(d, dict):
            raise LabelError(f"--class-map {p}: expected a JSON object with a 'classes' list")
        return cls.from_dict(d, name=str(d.get("name") or p.stem), sha256=hashlib.sha256(raw).hexdigest(), where=p)

    @classmethod
    def from_dict(cls, d: dict, name: str = "identity", sha256: str = "", where: str | Path = "class map") -> ClassMap:
        """Build from the JSON object described in the module docstring; bad content raises ``LabelError``."""
        classes = d.get("classes")
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) for c in classes):
            raise LabelError(f"{where}: 'classes' must be a non-empty list of class names (index = class id)")
        source = d.get("source_classes", classes if "map" not in d else None)
        if not isinstance(source, list) or not source:
            raise LabelError(f"{where}: a class map with a 'map' needs 'source_classes' (names, index = source id)")
        n_out = len(classes)
        if "map" in d:
            if not isinstance(d["map"], dict):
                raise LabelError(f"{where}: 'map' must be an object {{source id: output id}}")
            default = d.get("default")
            lut = np.full(len(source), -1 if default is None else int(default), dtype=np.int64)
            for k, v in d["map"].items():
                try:
                    s, o = int(k), int(v)
                except (TypeError, ValueError):
                    raise LabelError(f"{where}: map entry {k!r}: {v!r} is not source id → output id") from None
                if not 0 <= s < len(source):
                    raise LabelError(f"{where}: map source id {s} is outside 0..{len(source) - 1}")
                lut[s] = o
            if (lut < 0).any():
                missing = np.flatnonzero(lut < 0)[:5].tolist()
                raise LabelError(f"{where}: source ids {missing} have no output id; add them to 'map' or set 'default'")
        else:
            if len(source) != n_out:
                raise LabelError(f"{where}: without a 'map', 'source_classes' must equal 'classes'")
            lut = np.arange(n_out, dtype=np.int64)
        if (lut >= n_out).any():
            raise LabelError(f"{where}: output id {int(lut.max())} is outside the {n_out} 'classes'")
        ignore = frozenset(int(i) for i in d.get("ignore", []))
        if any(not 0 <= i < n_out for i in ignore):
            raise LabelError(f"{where}: 'ignore' ids must be output ids 0..{n_out - 1}")
        pan = d.get("panoptic")
        panoptic = None
        if pan is not None:
            try:
                panoptic = (int(pan["num_things"]), int(pan["num_stuff"]))
            except (KeyError, TypeError, ValueError):
                raise LabelError(f"{where}: 'panoptic' must be {{\"num_things\": N, \"num_stuff\": M}}") from None
            if sum(panoptic) + 1 != len(source):
                raise LabelError(f"{where}: a panoptic map needs num_things + num_stuff + 1 (void) = "
                                 f"{sum(panoptic) + 1} source classes, got {len(source)}")
        return cls(tuple(classes), tuple(str(s) for s in source), lut, ignore, name, sha256, panoptic)

    # -------------------------------------------------------------------------------------------- applying

    @property
    def num_source(self) -> int:
        return len(self.source_classes)

    def apply(self, ids: NDArray[np.integer], where: str = "labels") -> tuple[NDArray[np.integer], NDArray[np.bool_]]:
        """Source ids → (output ids as uint8/uint16, mask of pixels to ignore). Out-of-map ids raise ``LabelError``."""
        ids = np.asarray(ids)
        if ids.size:
            lo, hi = int(ids.min()), int(ids.max())
            if lo < 0 or hi >= self.num_source:
                bad = lo if lo < 0 else hi
                raise LabelError(f"{where}: class id {bad} is outside the class map {self.name!r} "
                                 f"(source ids 0..{self.num_source - 1})")
        out_dtype = np.uint8 if len(self.classes) <= 256 else np.uint16
        classes = self.lut.astype(out_dtype)[ids]
        if self.ignore:
            ignored = np.isin(np.arange(len(self.classes)), sorted(self.ignore))[self.lut][ids]
        else:
            ignored = np.zeros(ids.shape, dtype=bool)
        return classes, ignored

    def merge_panoptic(self, things: NDArray[np.integer], stuff: NDArray[np.integer], where: str) -> NDArray[np.int64]:
        """Source ids from a things map (``0..T-1`` thing classes, ``T`` = no thing) and a stuff map (``0..S-1``
        stuff classes, ``S`` = void): thing where there is one, else ``T + stuff`` (void = ``T + S``)."""
        if self.panoptic is None:
            raise LabelError(f"{where}: things/stuff label files need a class map with a 'panoptic' entry "
                             f"(e.g. --class-map {DEFAULT_CLASS_MAP})")
        n_things, n_stuff = self.panoptic
        things = np.asarray(things, dtype=np.int64)
        stuff = np.asarray(stuff, dtype=np.int64)
        if things.size and int(things.max()) > n_things:
            raise LabelError(f"{where}: things class id {int(things.max())} is outside the class map "
                             f"(0..{n_things - 1}, {n_things} = no thing)")
        if stuff.size and int(stuff.max()) > n_stuff:
            raise LabelError(f"{where}: stuff class id {int(stuff.max())} is outside the class map "
                             f"(0..{n_stuff - 1}, {n_stuff} = void)")
        return np.where(things < n_things, things, n_things + stuff)

    def reduction_matrix(self) -> NDArray[np.float32]:
        """``[K_out, K_source]`` 0/1 matrix: output probability = sum of the probabilities of its source classes."""
        m = np.zeros((len(self.classes), self.num_source), dtype=np.float32)
        m[self.lut, np.arange(self.num_source)] = 1.0
        return m

    def describe(self) -> dict:
        """What goes into ``meta.json`` ``labels``: the class list (id → name) and where it came from."""
        return {
            "classes": {str(i): n for i, n in enumerate(self.classes)},
            "class_map": {"name": self.name, "sha256": self.sha256, "source_classes": self.num_source},
            "ignored_class_ids": sorted(self.ignore),
        }
