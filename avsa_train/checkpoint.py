"""Checkpoints of ``avsa-train pretrain``: safe loading, integrity checks, durable atomic writes, exact resume,
and encoder loading for downstream tasks.

A checkpoint is a ``torch.save`` dict (load with :func:`load_checkpoint`; encoders with :func:`load_encoders`):

| key | content |
| --- | --- |
| ``video``, ``audio``, ``translator`` | state dicts of the R(2+1)D-18 (``f_v``), Conv2D-10 (``f_a``) and the translator
  with its four projection heads |
| ``optimizer``, ``scaler`` | Adam and AMP grad-scaler states (``scaler`` is ``None`` without AMP) |
| ``step``, ``epoch`` | optimisation steps done, and the 0-based epoch of the next step |
| ``world_size`` | DDP ranks of the run |
| ``rng`` | per rank: ``{"torch": CPU generator state, "cuda": CUDA generator states or None}`` |
| ``config`` | the resolved :class:`~avsa_train.config.PretrainConfig` as a dict (width, audio_format, spec, depth…) |
| ``avsa_version``, ``format`` | provenance; ``format`` = :data:`CHECKPOINT_FORMAT` |
| ``checksum`` | ``"sha256:<hex>"`` of every other entry (:func:`state_checksum`), checked on every load |

Safety: a checkpoint holds only tensors, numbers, strings, booleans, ``None``, lists, tuples and dicts
(:func:`plain` converts paths, numpy values and dataclasses when saving, and refuses anything else). It is read
with ``torch.load(weights_only=True)``, which never runs pickled code: a file holding any other object is
refused with one :class:`CheckpointError` line naming it — never unpickled. A file whose bytes changed after
saving (a bit flip, a partial copy) fails its checksum and is refused too. Format-1 checkpoints (before the
checksum) still load, with a warning that their integrity cannot be checked.

Writes go to ``.checkpoint.pt.<pid>.tmp`` in the same folder, are fsynced, renamed over the final name and the
folder fsynced (:func:`avsa_data.fsutil.atomic_write`): a crash never leaves a half-written checkpoint under
the final name, and the temporary files of a killed run are removed when the next run starts
(:func:`avsa_data.fsutil.remove_stale_tmp`).
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import os
import pickle
import re
import warnings
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path, PurePath

import numpy as np
import torch
from torch import nn

from avsa_data.fsutil import atomic_write
from avsa_train import __version__

#: 2: adds ``checksum``. 1: no checksum (still loads, unchecked).
CHECKPOINT_FORMAT = 2
ENCODER_KEYS = ("video", "audio", "translator")
#: What a checkpoint may hold (besides tensors), as said in every refusal.
ALLOWED = "tensors, numbers, strings, booleans, None, lists and dicts"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded safely or intact; the message is one line naming the file."""


def plain(obj, where: str = "checkpoint"):
    """``obj`` with only checkpoint-safe types: tensors, ``int``/``float``/``bool``/``str``/``None``, lists,
    tuples and dicts (with such keys). Paths and enums become strings, numpy scalars Python numbers, numpy
    arrays tensors, dataclasses dicts, sets sorted lists; anything else raises ``TypeError`` naming its
    ``where`` (e.g. ``checkpoint['config']['init']``)."""
    if obj is None or isinstance(obj, (bool, int, float, str, torch.Tensor)):
        return obj
    if isinstance(obj, PurePath):
        return str(obj)
    if isinstance(obj, enum.Enum):
        return plain(obj.value, where)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(obj))
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        obj = dataclasses.asdict(obj)
    if isinstance(obj, dict):
        kind = type(obj) if type(obj) in (dict, OrderedDict) else dict  # OrderedDict: state_dict()s
        return kind((plain(k, f"{where} key"), plain(v, f"{where}[{k!r}]")) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        kind = type(obj) if type(obj) in (list, tuple) else list  # namedtuples etc. become lists
        return kind(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    if isinstance(obj, (set, frozenset)):
        return sorted(plain(v, where) for v in obj)
    raise TypeError(f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}; a checkpoint holds only {ALLOWED}")


def state_checksum(state: dict) -> str:
    """``"sha256:<hex>"`` over every entry of ``state`` except ``checksum``, in a canonical order: dict keys
    sorted, each value tagged with its type; tensors as dtype, shape and raw bytes (C order, any device)."""
    h = hashlib.sha256()
    _feed(h, {k: v for k, v in state.items() if k != "checksum"}, "checkpoint")
    return "sha256:" + h.hexdigest()


def _key_order(k) -> tuple[str, str]:
    return type(k).__name__, repr(k)


def _feed(h, obj, where: str) -> None:
    if obj is None:
        h.update(b"N")
    elif isinstance(obj, bool):
        h.update(b"T" if obj else b"F")
    elif isinstance(obj, int):
        h.update(b"i%d;" % obj)
    elif isinstance(obj, float):
        h.update(b"f" + obj.hex().encode() + b";")
    elif isinstance(obj, str):
        b = obj.encode("utf-8", "surrogatepass")
        h.update(b"s%d:" % len(b) + b)
    elif isinstance(obj, torch.Tensor):
        if obj.layout != torch.strided or obj.is_quantized:
            raise TypeError(f"{where} is a {obj.layout} tensor; a checkpoint holds dense tensors only")
        t = obj.detach().resolve_conj().resolve_neg().cpu().contiguous().reshape(-1)
        h.update(f"t{t.dtype}{tuple(obj.shape)}:".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    elif isinstance(obj, dict):
        h.update(b"d%d:" % len(obj))
        for k in sorted(obj, key=_key_order):
            _feed(h, k, f"{where} key")
            _feed(h, obj[k], f"{where}[{k!r}]")
    elif isinstance(obj, (list, tuple)):
        h.update(b"l%d:" % len(obj))
        for i, v in enumerate(obj):
            _feed(h, v, f"{where}[{i}]")
    else:
        raise TypeError(f"{where} is a {type(obj).__qualname__}; a checkpoint holds only {ALLOWED}")


def rng_state() -> dict:
    """This process's torch generator states (CPU, and every CUDA device when available)."""
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    """Restore :func:`rng_state` (CUDA states only when CUDA is available here too)."""
    torch.set_rng_state(state["torch"].cpu())
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer,
    scaler,
    step: int,
    epoch: int,
    config: dict,
    rng: list[dict] | None = None,
    world_size: int = 1,
) -> Path:
    """Write a checkpoint durably and atomically (temporary file, fsync, ``os.replace``, fsync of the folder).

    ``model`` has ``video``, ``audio`` and ``translator`` sub-modules (an unwrapped
    :class:`~avsa_train.models.avsa.AVSAModel`); ``rng`` holds one :func:`rng_state` per rank (default: this
    process's). Every entry is made :func:`plain` (a ``TypeError`` names one that cannot be) and the
    :func:`state_checksum` is stored under ``checksum``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "avsa_version": __version__,
        **{k: getattr(model, k).state_dict() for k in ENCODER_KEYS},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": int(step),
        "epoch": int(epoch),
        "world_size": int(world_size),
        "rng": rng if rng is not None else [rng_state()],
        "config": dict(config),
    }
    state = plain(state)
    state["checksum"] = state_checksum(state)
    return atomic_write(path, lambda f: torch.save(state, f))


#: Options that never change what a run computes: where it writes, on which device, how much it prints.
RUN_ONLY_KEYS = ("out", "device", "quiet", "checkpoint_minutes")
#: Options a run resolves when it starts and saves resolved (``workers`` ``None`` → CPUs − 1): ``None`` in the
#: configuration asked for matches any saved value.
RESOLVED_AT_START = ("workers",)


def config_changes(saved: dict, config: dict, keys: Iterable[str] | None = None) -> list[str]:
    """The options of ``config`` whose value differs from a checkpoint's ``saved`` configuration (its
    ``"config"`` entry): the one rule for "does this checkpoint continue this run". ``keys``: the options to
    compare, in the order to report them (default: every option of either, sorted). :data:`RUN_ONLY_KEYS` never
    count, nor a :data:`RESOLVED_AT_START` option left ``None``; an option the checkpoint does not hold counts
    as ``None`` there. ``avsa-train pretrain --resume`` warns about the data-order options this returns
    (:data:`avsa_train.config.DATA_ORDER_KEYS`); ``avsa-train ablate`` resumes a cell's pre-training only when
    it returns none, and starts it over otherwise."""
    keys = sorted(set(saved) | set(config)) if keys is None else keys
    return [
        k
        for k in keys
        if k not in RUN_ONLY_KEYS
        and not (k in RESOLVED_AT_START and config.get(k) is None)
        and saved.get(k) != config.get(k)
    ]


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict of ``path``, read without unpickling code (``weights_only=True``) and checked
    against its stored checksum.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` (a ``ValueError``, one line
    naming the file) for one that holds other objects than :data:`ALLOWED` (refused, nothing of it is run),
    is corrupt or truncated, fails its checksum, or is not an avsa pre-training checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" not in str(e).lower():  # a damaged pickle stream, not a refused object
            raise CheckpointError(f"{path} is not a readable avsa checkpoint (corrupt or truncated? {e})") from None
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f"a pickled {found[1]} object" if found else "pickled objects"
        raise CheckpointError(
            f"{path}: refused to load: it holds {what}, which could run code; an avsa checkpoint holds only "
            f"{ALLOWED} (load only checkpoints written by avsa-train pretrain)"
        ) from None
    except Exception as e:  # noqa: BLE001 - a corrupt file can raise many things
        first = (str(e).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{path} is not a readable avsa checkpoint (corrupt or truncated? {type(e).__name__}: {first})"
        ) from None
    if not isinstance(state, dict) or any(k not in state for k in (*ENCODER_KEYS, "config")):
        raise CheckpointError(
            f"{path} is not an avsa pre-training checkpoint (needs 'video', 'audio', 'translator' and 'config' entries)"
        )
    stored = state.get("checksum")
    if stored is None and state.get("format", 1) == 1:
        warnings.warn(f"{path}: a format-1 checkpoint (no checksum): its integrity cannot be checked", stacklevel=2)
    elif stored is None:
        raise CheckpointError(f"{path}: format {state.get('format')} checkpoint without its checksum entry")
    else:
        try:
            actual = state_checksum(state)
        except TypeError as e:
            raise CheckpointError(f"{path}: not an avsa checkpoint ({e})") from None
        if stored != actual:
            raise CheckpointError(
                f"{path}: checksum mismatch (stored {str(stored)[:23]}…, content {actual[:23]}…): the file was "
                f"corrupted after it was written (bit flip, partial copy); use another checkpoint"
            )
    if not isinstance(state["config"], dict):
        raise CheckpointError(f"{path}: its 'config' entry is a {type(state['config']).__name__}, not a dict")
    return state


def build_model(config: dict) -> nn.Module:
    """An :class:`~avsa_train.models.avsa.AVSAModel` shaped like ``config`` (width, audio format, spec, depth…)."""
    from avsa_train.models.avsa import AVSAModel

    return AVSAModel(
        width=float(config.get("width", 1.0)),
        audio_format=config.get("audio_format", "ambi"),
        spec=config.get("spec", "mel128"),
        depth=int(config.get("depth", 2)),
        heads=int(config.get("heads", 1)),
        proj_dim=int(config.get("proj_dim", 128)),
        dropout=float(config.get("dropout", 0.1)),
        context=config.get("context", "attention"),
    )


def load_encoders(
    ckpt: str | os.PathLike | None,
    width: float | None = 1.0,
    audio_format: str | None = "ambi",
    device: str | torch.device = "cpu",
    depth: int = 2,
    spec: str | None = "mel128",
):
    """``(video_model, audio_model, translator, config)`` of a pre-training checkpoint; ``None``: random init.

    * ``video_model``: :class:`~avsa_train.models.video.R2Plus1D18`, ``[B, 3, T, H, W]`` → ``[B, 512·width]``
      (``return_maps=True`` for the FPN feature maps).
    * ``audio_model``: :class:`~avsa_train.models.audio.Conv2D10` on log-spectrograms ``[B, C, F, T]`` (compute
      them with ``Spectrogram(kind=config["spec"])``).
    * ``translator``: :class:`~avsa_train.models.transformer.CrossModalTranslator` with its projection heads.
    * ``config``: the run's resolved configuration (``width``, ``audio_format``, ``spec``, ``depth``, ``task``…).

    With a checkpoint, its own width / audio format / depth / spec are used (``width``, ``audio_format``,
    ``depth`` and ``spec`` only shape a random initialisation; ``None`` means the defaults 1.0 / ambi / mel128;
    ``spec="mel128+iv"`` gives a 7-channel audio encoder). Modules are on ``device``, in
    training mode; call ``.eval()`` for frozen features.
    """
    if ckpt is None:
        config = {
            "width": 1.0 if width is None else float(width),
            "audio_format": audio_format or "ambi",
            "depth": int(depth),
            "spec": spec or "mel128",
        }
        model = build_model(config)
    else:
        state = load_checkpoint(ckpt)
        config = dict(state["config"])
        model = build_model(config)
        for k in ENCODER_KEYS:
            getattr(model, k).load_state_dict(state[k])
    model.to(device)
    return model.video, model.audio, model.translator, config


def init_from(model: nn.Module, ckpt: str | os.PathLike, state: dict | None = None) -> list[str]:
    """Initialise ``model`` from another run's checkpoint (e.g. AVSA from AVC, Table 2).

    The encoders must match exactly; translator weights are copied where names and shapes agree (an AVC
    checkpoint has depth 0, so only the projection heads carry over). Returns the translator keys left as
    initialised. ``state``: the checkpoint already loaded with :func:`load_checkpoint` from ``ckpt``.
    """
    if state is None:
        state = load_checkpoint(ckpt)
    try:
        model.video.load_state_dict(state["video"])
        model.audio.load_state_dict(state["audio"])
    except RuntimeError as e:
        cfg = state["config"]
        raise ValueError(
            f"--init {ckpt}: its encoders (width {cfg.get('width')}, audio format "
            f"{cfg.get('audio_format')}) do not match this model's: {str(e).splitlines()[0]}"
        ) from e
    own = model.translator.state_dict()
    take = {k: v for k, v in state["translator"].items() if k in own and own[k].shape == v.shape}
    model.translator.load_state_dict(take, strict=False)
    return sorted(set(own) - set(take))
