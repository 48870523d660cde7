"""Checkpoints of ``avsa-train pretrain``: atomic writes, exact resume, and encoder loading for downstream tasks.

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

Writes go to a temporary file in the same folder, then ``os.replace``: a crash never leaves a half-written
checkpoint under the final name.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from avsa_train import __version__

CHECKPOINT_FORMAT = 1
ENCODER_KEYS = ("video", "audio", "translator")


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
    """Write a checkpoint atomically (temporary file + ``os.replace``).

    ``model`` has ``video``, ``audio`` and ``translator`` sub-modules (an unwrapped
    :class:`~avsa_train.models.avsa.AVSAModel`); ``rng`` holds one :func:`rng_state` per rank (default: this
    process's).
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
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(state, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict:
    """The checkpoint dict of ``path``; a clear error for a missing, corrupt or foreign file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        state = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # noqa: BLE001 - a corrupt file can raise many things
        raise ValueError(f"{path} is not a readable avsa checkpoint ({type(e).__name__}: {e})") from e
    if not isinstance(state, dict) or any(k not in state for k in (*ENCODER_KEYS, "config")):
        raise ValueError(
            f"{path} is not an avsa pre-training checkpoint (needs 'video', 'audio', 'translator' and 'config' entries)"
        )
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
):
    """``(video_model, audio_model, translator, config)`` of a pre-training checkpoint; ``None``: random init.

    * ``video_model``: :class:`~avsa_train.models.video.R2Plus1D18`, ``[B, 3, T, H, W]`` → ``[B, 512·width]``
      (``return_maps=True`` for the FPN feature maps).
    * ``audio_model``: :class:`~avsa_train.models.audio.Conv2D10` on log-spectrograms ``[B, C, F, T]`` (compute
      them with ``Spectrogram(kind=config["spec"])``).
    * ``translator``: :class:`~avsa_train.models.transformer.CrossModalTranslator` with its projection heads.
    * ``config``: the run's resolved configuration (``width``, ``audio_format``, ``spec``, ``depth``, ``task``…).

    With a checkpoint, its own width / audio format / depth are used (``width``, ``audio_format`` and ``depth``
    only shape a random initialisation; ``None`` means the defaults 1.0 / ambi). Modules are on ``device``, in
    training mode; call ``.eval()`` for frozen features.
    """
    if ckpt is None:
        config = {
            "width": 1.0 if width is None else float(width),
            "audio_format": audio_format or "ambi",
            "depth": int(depth),
            "spec": "mel128",
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


def init_from(model: nn.Module, ckpt: str | os.PathLike) -> list[str]:
    """Initialise ``model`` from another run's checkpoint (e.g. AVSA from AVC, Table 2).

    The encoders must match exactly; translator weights are copied where names and shapes agree (an AVC
    checkpoint has depth 0, so only the projection heads carry over). Returns the translator keys left as
    initialised.
    """
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
