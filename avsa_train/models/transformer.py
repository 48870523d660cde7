"""Cross-modal feature translation networks (AVSA main text §3.2, Fig. 3; supplement §A.1).

Two transformers translate the V viewpoint features of one modality into the other: ``g_{v→a}`` maps video
features to predicted audio features, ``g_{a→v}`` audio to video. Each layer is a post-norm transformer
encoder layer, as in the authors' ``TransformerLayer``::

    h = LayerNorm(x + Dropout(W_0 · Attention(W_qr x, W_key x, W_val x)))
    y = ReLU(LayerNorm(h + Dropout(W_2 · ReLU(W_1 h))))

with base dimension 512 (``W_key, W_qr, W_val, W_0, W_2``: 512 outputs) and expansion 4 (``W_1``: 2048),
dropout 0.1. There is **no positional encoding**: attention runs over the set of viewpoints, so the network is
permutation-equivariant in V and must read where a viewpoint is from the features themselves.

``heads`` defaults to 1: the authors' AVSA configs (``Cur-Loc4-TransfD2.yaml``) set ``multihead: false``,
i.e. one attention head scaled by ``1/√512`` with no attention dropout; ``heads=8`` gives their multi-head
variant.

Two readings of the paper's "direct prediction" (Table 3e: a model "without the transformer networks"):

* ``depth=0``: no translation network at all, only the projection heads (``a2v = video_pred_head(audio)``);
* ``context="none"``: the authors' ``NoCtxTransformer`` (``use_context: false`` in their code) — ``depth``
  layers of :class:`PerViewpointLayer`, each two residual MLP blocks applied to every viewpoint on its own, the
  same feed-forward capacity as the transformer without the attention that mixes the viewpoints.

Output heads: linear 512 → 128 maps, followed by L2 normalisation. As in the reference criterion, predictions
and targets have separate heads: ``a2v = video_pred_head(g_{a→v}(audio))`` is contrasted with
``video = video_head(video)``, and ``v2a = audio_pred_head(g_{v→a}(video))`` with ``audio = audio_head(audio)``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    """Multi-head scaled dot-product self-attention over the token axis (``-2``); no positional encoding."""

    def __init__(self, dim: int = 512, heads: int = 1, attention_dropout: float = 0.0):
        super().__init__()
        if dim % heads != 0:
            raise ValueError(f"dim ({dim}) must be a multiple of heads ({heads})")
        self.heads = heads
        self.head_dim = dim // heads
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(attention_dropout)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        return x.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)  # [..., heads, V, head_dim]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self._split(self.query(x)), self._split(self.key(x)), self._split(self.value(x))
        attn = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        ctx = self.dropout(attn) @ v  # [..., heads, V, head_dim]
        return self.out(ctx.transpose(-3, -2).flatten(-2))


class TranslationLayer(nn.Module):
    """One post-norm transformer layer with a ReLU on its output (see the module docstring)."""

    def __init__(
        self, dim: int = 512, heads: int = 1, expansion: int = 4, dropout: float = 0.1, attention_dropout: float = 0.0
    ):
        super().__init__()
        self.attention = SelfAttention(dim, heads, attention_dropout)
        self.attention_dropout = nn.Dropout(dropout)
        self.attention_norm = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(
            nn.Linear(dim, dim * expansion), nn.ReLU(inplace=True), nn.Linear(dim * expansion, dim)
        )
        self.ffn_dropout = nn.Dropout(dropout)
        self.ffn_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.attention_norm(x + self.attention_dropout(self.attention(x)))
        return F.relu(self.ffn_norm(h + self.ffn_dropout(self.ffn(h))))


class TranslationTransformer(nn.Sequential):
    """``depth`` stacked :class:`TranslationLayer`; depth 0 is the identity. Input/output ``[..., V, dim]``."""

    def __init__(
        self,
        depth: int = 2,
        dim: int = 512,
        heads: int = 1,
        expansion: int = 4,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
    ):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        super().__init__(*[TranslationLayer(dim, heads, expansion, dropout, attention_dropout) for _ in range(depth)])


class PerViewpointLayer(nn.Module):
    """Two post-norm residual MLP blocks with ReLU outputs, applied to each token on its own (no attention)::

        h = ReLU(LayerNorm(x + Dropout(W_2 · ReLU(W_1 x))))
        y = ReLU(LayerNorm(h + Dropout(W_4 · ReLU(W_3 h))))

    as the authors' ``NoCtxTransformerLayer`` (``W_1, W_3``: ``expansion · dim`` outputs)."""

    def __init__(self, dim: int = 512, expansion: int = 4, dropout: float = 0.1):
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(dim, dim * expansion), nn.ReLU(inplace=True), nn.Linear(dim * expansion, dim))
            for _ in range(2)
        )
        self.dropouts = nn.ModuleList(nn.Dropout(dropout) for _ in range(2))
        self.norms = nn.ModuleList(nn.LayerNorm(dim) for _ in range(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block, drop, norm in zip(self.blocks, self.dropouts, self.norms):
            x = F.relu(norm(x + drop(block(x))))
        return x


class PerViewpointMLP(nn.Sequential):
    """``depth`` stacked :class:`PerViewpointLayer`: the translation network without spatial context (the
    authors' ``NoCtxTransformer``). Input/output ``[..., V, dim]``; token ``i``'s output depends on token ``i``
    only."""

    def __init__(self, depth: int = 2, dim: int = 512, expansion: int = 4, dropout: float = 0.1):
        if depth < 0:
            raise ValueError(f"depth must be >= 0, got {depth}")
        super().__init__(*[PerViewpointLayer(dim, expansion, dropout) for _ in range(depth)])


#: Translation networks: ``attention`` — the transformer over the viewpoints (the paper's model); ``none`` — the
#: per-viewpoint MLP without context (:class:`PerViewpointMLP`, the authors' NoCtx variant).
CONTEXTS = ("attention", "none")


class ProjectionHead(nn.Module):
    """Linear map ``in_dim → out_dim`` followed by L2 normalisation of the last axis."""

    def __init__(self, in_dim: int = 512, out_dim: int = 128, normalize: bool = True):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)
        self.normalize = normalize

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.linear(x)
        return F.normalize(y, p=2, dim=-1) if self.normalize else y


class Translation(NamedTuple):
    """Outputs of :class:`CrossModalTranslator`, each ``[..., V, proj_dim]`` and unit-norm.

    ``v2a`` (audio predicted from video) is contrasted with ``audio``; ``a2v`` (video predicted from audio)
    with ``video``.
    """

    v2a: torch.Tensor
    a2v: torch.Tensor
    audio: torch.Tensor
    video: torch.Tensor


class CrossModalTranslator(nn.Module):
    """Video→audio and audio→video translation over V viewpoints, plus the four 128-d projection heads.

    Args:
        dim: feature dimension of the encoders (512 · width).
        depth: transformer depth D (0 = direct prediction, 1, 2 or 4 in Table 3e).
        context: ``attention`` (transformer over the viewpoints) or ``none`` (per-viewpoint MLP, NoCtx).
        proj_dim: output embedding dimension (128).
        heads: attention heads (1 as in the authors' configs; must divide ``dim``).
        expansion: FFN expansion (4: ``W_1`` has ``4·dim`` outputs).
        dropout: dropout after attention and FFN (0.1).
        attention_dropout: dropout on the attention probabilities (0 as in the single-head reference).
    """

    # The layer arguments repeat TranslationTransformer's (and PerViewpointMLP's) on purpose: this class builds
    # either network, two of them, from the same keywords.
    def __init__(
        self,
        dim: int = 512,
        depth: int = 2,
        proj_dim: int = 128,
        heads: int = 1,
        expansion: int = 4,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        context: str = "attention",
    ):
        super().__init__()
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        self.dim, self.depth, self.proj_dim, self.context = dim, depth, proj_dim, context

        def network() -> nn.Module:
            if context == "none":
                return PerViewpointMLP(depth, dim, expansion, dropout)
            return TranslationTransformer(depth, dim, heads, expansion, dropout, attention_dropout)

        # the names stay *_transformer for either network (checkpoints, downstream features)
        self.v2a_transformer = network()
        self.a2v_transformer = network()
        self.video_head = ProjectionHead(dim, proj_dim)
        self.audio_head = ProjectionHead(dim, proj_dim)
        self.video_pred_head = ProjectionHead(dim, proj_dim)
        self.audio_pred_head = ProjectionHead(dim, proj_dim)

    def forward(self, video: torch.Tensor, audio: torch.Tensor) -> Translation:
        """``video``, ``audio``: encoder features ``[B, V, dim]`` (or ``[B, M, V, dim]``: attention runs over
        the V viewpoints of each moment separately). Returns :class:`Translation`."""
        if video.shape != audio.shape or video.ndim < 3 or video.shape[-1] != self.dim:
            raise ValueError(
                f"video and audio features must both be [B, V, {self.dim}] (or [B, M, V, {self.dim}]), "
                f"got {tuple(video.shape)} and {tuple(audio.shape)}"
            )
        return Translation(
            v2a=self.audio_pred_head(self.v2a_transformer(video)),
            a2v=self.video_pred_head(self.a2v_transformer(audio)),
            audio=self.audio_head(audio),
            video=self.video_head(video),
        )
