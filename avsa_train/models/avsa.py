"""The full pre-training model: f_v (R(2+1)D-18), f_a (Conv2D-10 on log-spectrograms) and the cross-modal
translator with its projection heads (main text §3, supplement §A.1).

``forward`` takes a batch of the shard pipeline — ``video [B, M, V, 3, T, H, W]``, ``audio [B, M, V, C, n]``
waveforms (channels: ambiX W, Y, Z, X; stereo L, R; or mono) — and returns what the task's loss needs:

* ``output="translation"`` (AVSA, AVTS): the :class:`~avsa_train.models.transformer.Translation` whose loss (9)
  :func:`avsa_train.losses.translation_loss` computes. ``tokens="views"`` (AVSA): the translator attends over
  the V viewpoints of each moment. ``tokens="moments"`` (AVTS): over the M moments of each viewpoint.
* ``output="embeddings"`` (AVC): ``(video_head(f_v), audio_head(f_a))``, each ``[B, (M,) V, P]``, for loss (7)
  (:func:`avsa_train.losses.avc_loss`): direct projection heads, as the reference InstDisc model.

Spectrograms are computed on the model's device, batched (:class:`~avsa_train.audio_features.Spectrogram`).
"""

from __future__ import annotations

import torch
from torch import nn

from avsa_train.audio_features import Spectrogram, feature_channels
from avsa_train.models.audio import AUDIO_INPUT_CHANNELS, Conv2D10
from avsa_train.models.transformer import CrossModalTranslator, Translation
from avsa_train.models.video import R2Plus1D18

OUTPUTS = ("translation", "embeddings")
TOKENS = ("views", "moments")


class AVSAModel(nn.Module):
    """Video and audio encoders + translator. Sub-modules ``video``, ``audio``, ``translator``, ``spectrogram``.

    Args:
        width: channel multiplier of both encoders (feature size ``512 · width``).
        audio_format: ``mono`` (1 ch), ``stereo`` (2 ch) or ``ambi`` (4 ch, ambiX).
        spec: ``mel128``, ``stft129`` or ``mel128+iv`` (ambi only: 4 log-mel + 3 intensity-vector channels into
            the audio encoder; see :mod:`avsa_train.audio_features`).
        depth, heads, proj_dim, dropout: translator depth D (0 = direct prediction), attention heads, embedding
            size P (128) and dropout (0.1).
        context: ``attention`` (the transformer over the viewpoints) or ``none`` (per-viewpoint MLP, the
            authors' NoCtx variant; see :mod:`avsa_train.models.transformer`).
        sr: audio sample rate in Hz.
    """

    # The translator's arguments (depth, heads, proj_dim, dropout, context) repeat CrossModalTranslator's on
    # purpose: the whole model is built from one flat set of keywords (a run config, as checkpoint.py does).
    def __init__(
        self,
        width: float = 1.0,
        audio_format: str = "ambi",
        spec: str = "mel128",
        depth: int = 2,
        heads: int = 1,
        proj_dim: int = 128,
        dropout: float = 0.1,
        sr: int = 24000,
        factorisation: str = "reference",
        context: str = "attention",
    ):
        super().__init__()
        if audio_format not in AUDIO_INPUT_CHANNELS:
            raise ValueError(f"audio_format must be one of {tuple(AUDIO_INPUT_CHANNELS)}, got {audio_format!r}")
        self.audio_channels = AUDIO_INPUT_CHANNELS[audio_format]
        self.video = R2Plus1D18(width=width, factorisation=factorisation)
        self.audio = Conv2D10(in_channels=feature_channels(spec, self.audio_channels), width=width)
        self.spectrogram = Spectrogram(kind=spec, sr=sr)
        self.translator = CrossModalTranslator(
            dim=self.video.out_dim, depth=depth, proj_dim=proj_dim, heads=heads, dropout=dropout, context=context
        )

    def encode(self, video: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Features of flattened clips: video ``[N, 3, T, H, W]`` → ``[N, D]``; audio ``[N, C, n]`` → ``[N, D]``."""
        if audio.ndim != 3 or audio.shape[1] != self.audio_channels:
            raise ValueError(f"audio must be [N, {self.audio_channels}, n_samples], got {tuple(audio.shape)}")
        with torch.autocast(audio.device.type, enabled=False):  # log of small magnitudes: keep float32
            spec = self.spectrogram(audio.float())
        return self.video(video), self.audio(spec)

    def forward(
        self, video: torch.Tensor, audio: torch.Tensor, output: str = "translation", tokens: str = "views"
    ) -> Translation | tuple[torch.Tensor, torch.Tensor]:
        """``video [B, M, V, 3, T, H, W]`` and ``audio [B, M, V, C, n]`` → outputs ``[B, (M,) V, P]`` (the moments
        axis is dropped when M = 1); see the module docstring for ``output`` and ``tokens``."""
        if output not in OUTPUTS or tokens not in TOKENS:
            raise ValueError(f"output must be one of {OUTPUTS} and tokens one of {TOKENS}, got {output!r}, {tokens!r}")
        if video.ndim != 7 or audio.ndim != 5 or video.shape[:3] != audio.shape[:3]:
            raise ValueError(
                f"expected video [B, M, V, 3, T, H, W] and audio [B, M, V, C, n] with the same B, M, V; "
                f"got {tuple(video.shape)} and {tuple(audio.shape)}"
            )
        b, m, v = video.shape[:3]
        fv, fa = self.encode(video.flatten(0, 2), audio.flatten(0, 2))
        fv, fa = fv.view(b, m, v, -1), fa.view(b, m, v, -1)
        if output == "embeddings":
            ev, ea = self.translator.video_head(fv), self.translator.audio_head(fa)
            return (ev[:, 0], ea[:, 0]) if m == 1 else (ev, ea)
        if tokens == "moments":
            tr = self.translator(fv.transpose(1, 2), fa.transpose(1, 2))  # attention over the M moments
            tr = Translation(*(t.transpose(1, 2) for t in tr))
        else:
            tr = self.translator(fv, fa)
        return Translation(*(t[:, 0] for t in tr)) if m == 1 else tr
