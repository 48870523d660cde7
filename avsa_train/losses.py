"""Contrastive losses of AVC, AVTS and AVSA pre-training, the negative-type curriculum and the pretext metrics.

Notation: ``B`` samples (video instances), ``V`` viewpoints, ``M`` moments, ``D`` embedding size, ``τ`` the
InfoNCE temperature (0.07, supplement Table 2). Embeddings are L2-normalised, scores are ``s = ⟨p, t⟩ / τ``.

* **AVC**, loss (7): cross-modal instance discrimination with one view per sample. Video ``v_i`` must pick its
  own audio ``a_i`` among the audio of the batch, and vice versa; the loss is the mean of both directions.
* **AVSA / AVTS**, loss (9): a joint InfoNCE over V views. The prediction for (sample ``i``, view ``j``) must
  pick target ``(i, j)`` among the candidates

  - *instance* negatives: view ``j`` of the other samples ``k ≠ i`` (easy);
  - *spatial* negatives: the other views ``j' ≠ j`` of the same sample (hard).

  For AVTS the V axis holds moments of one viewpoint instead of viewpoints of one moment: same maths.
  With an extra moments axis (``[B, M, V, D]``) *temporal* negatives are the same view at the other moments
  of the same sample; with spatial and temporal negatives together every view at every moment of the same
  sample is a negative (Table 3c "+ Spatial + Temporal").

Metrics (percent, as in the reference criterion): **AVC-Acc**: the positive scores strictly higher than every
other sample's target at the same view (and moment); **AVSA-Acc**: the positive scores ``≥`` every view of
the same sample at the same moment (ties count as correct); **AVTS-Acc** (4-D inputs): the positive scores
``≥`` the same view at every other moment of the same sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch.nn import functional as F

from avsa_train.models.transformer import Translation

#: InfoNCE temperature τ (supplement Table 2).
TEMPERATURE = 0.07
CURRICULUM_MODES = ("easy-to-hard", "none", "hard-only", "easy-only")


class LossOutput(NamedTuple):
    """A scalar loss and detached scalar metrics (accuracies in percent, mean cosine scores)."""

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Negatives:
    """Which negatives enter the joint contrastive loss (at least one kind)."""

    instance: bool = True
    spatial: bool = True
    temporal: bool = False

    def __post_init__(self) -> None:
        if not (self.instance or self.spatial or self.temporal):
            raise ValueError("Negatives needs at least one of instance, spatial, temporal")


def _candidate_masks(b: int, m: int, v: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Boolean ``[N, N]`` masks (N = b·m·v, flattened in (sample, moment, view) order) of each candidate kind."""
    grid = torch.stack(torch.meshgrid(torch.arange(b), torch.arange(m), torch.arange(v), indexing="ij"), -1)
    bi, mi, vi = (grid[..., k].reshape(-1).to(device) for k in range(3))
    same_b = bi[:, None] == bi[None, :]
    same_m = mi[:, None] == mi[None, :]
    same_v = vi[:, None] == vi[None, :]
    return {
        "instance": ~same_b & same_m & same_v,
        "spatial": same_b & same_m & ~same_v,
        "temporal": same_b & ~same_m & same_v,
        "spatiotemporal": same_b & ~same_m & ~same_v,
    }


def joint_contrastive_loss(
    pred: torch.Tensor,
    target: torch.Tensor,
    tau: float = TEMPERATURE,
    use_instance: bool = True,
    use_spatial: bool = True,
    use_temporal: bool = False,
    normalize: bool = True,
) -> LossOutput:
    """Joint InfoNCE, loss (9), of predictions against targets; see the module docstring.

    Args:
        pred: predicted embeddings ``[B, V, D]`` or ``[B, M, V, D]`` (e.g. ``Translation.a2v``).
        target: target embeddings of the same shape (e.g. ``Translation.video``); ``target[i, j]`` is the
            positive of ``pred[i, j]``.
        tau: temperature τ > 0.
        use_instance: add the same view of the other samples as negatives (easy, "in" in Table 2).
        use_spatial: add the other views of the same sample (same moment) as negatives (hard, "sn").
        use_temporal: add the other moments of the same sample as negatives ("tn"); needs 4-D inputs.
            With ``use_spatial`` too, every view at every other moment is a negative.
        normalize: L2-normalise ``pred`` and ``target`` first (idempotent for unit vectors).

    Returns:
        :class:`LossOutput`: the mean over all B·(M·)V predictions of
        ``−s_pos + log Σ_{c ∈ {pos} ∪ negatives} exp(s_c)``, and metrics ``AVC-Acc`` (when B > 1),
        ``AVSA-Acc`` (when V > 1), ``AVTS-Acc`` (4-D, M > 1), ``Score/Pos``, ``Score/Neg`` (mean cosines).
    """
    _check_loss_inputs(pred, target, tau, use_instance, use_spatial, use_temporal)
    if pred.ndim == 3:
        pred, target = pred.unsqueeze(1), target.unsqueeze(1)
    b, m, v, _ = pred.shape
    if normalize:
        pred, target = F.normalize(pred, p=2, dim=-1), F.normalize(target, p=2, dim=-1)
    p, t = pred.reshape(b * m * v, -1), target.reshape(b * m * v, -1)
    cos = p @ t.T  # [N, N], row: prediction, column: candidate target
    masks = _candidate_masks(b, m, v, cos.device)
    negatives = _negative_mask(masks, use_instance, use_spatial, use_temporal)
    if not bool(negatives.any()):
        raise ValueError(
            f"no negatives for B={b}, M={m}, V={v} with instance={use_instance}, spatial={use_spatial}, "
            f"temporal={use_temporal}"
        )
    scores = cos / tau
    pos = scores.diagonal()
    candidates = negatives | torch.eye(len(pos), dtype=torch.bool, device=cos.device)
    loss = (torch.logsumexp(scores.masked_fill(~candidates, float("-inf")), dim=1) - pos).mean()
    with torch.no_grad():
        metrics = _pretext_metrics(cos, scores, masks, negatives, (b, m, v))
    return LossOutput(loss, metrics)


def _check_loss_inputs(pred: torch.Tensor, target: torch.Tensor, tau: float, use_instance: bool, use_spatial: bool,
                       use_temporal: bool) -> None:
    """Raise ``ValueError`` for arguments :func:`joint_contrastive_loss` cannot use."""
    if pred.shape != target.shape or pred.ndim not in (3, 4):
        raise ValueError(
            f"pred and target must have the same shape [B, V, D] or [B, M, V, D], got {tuple(pred.shape)} "
            f"and {tuple(target.shape)}"
        )
    if tau <= 0:
        raise ValueError(f"tau must be > 0, got {tau}")
    if use_temporal and pred.ndim != 4:
        raise ValueError("use_temporal needs inputs with a moments axis, [B, M, V, D]")
    if not (use_instance or use_spatial or use_temporal):
        raise ValueError("at least one of use_instance, use_spatial, use_temporal must be set")


def _negative_mask(masks: dict[str, torch.Tensor], use_instance: bool, use_spatial: bool,
                   use_temporal: bool) -> torch.Tensor:
    """The ``[N, N]`` mask of the negatives of each prediction: the union of the chosen kinds of
    :func:`_candidate_masks`, with every view at every other moment when spatial and temporal are both chosen."""
    negatives = torch.zeros_like(masks["instance"])
    if use_instance:
        negatives |= masks["instance"]
    if use_spatial:
        negatives |= masks["spatial"]
    if use_temporal:
        negatives |= masks["temporal"]
    if use_spatial and use_temporal:
        negatives |= masks["spatiotemporal"]
    return negatives


def _pretext_metrics(cos: torch.Tensor, scores: torch.Tensor, masks: dict[str, torch.Tensor],
                     negatives: torch.Tensor, bmv: tuple[int, int, int]) -> dict[str, torch.Tensor]:
    """The metrics of the module docstring from the ``[N, N]`` cosines and scores: the accuracies whose
    competitors exist for ``bmv`` = (B, M, V), and the mean cosine of the positives and of the negatives."""
    b, m, v = bmv
    metrics: dict[str, torch.Tensor] = {}
    if b > 1:
        metrics["AVC-Acc"] = _accuracy(scores, masks["instance"], strict=True)
    if v > 1:
        metrics["AVSA-Acc"] = _accuracy(scores, masks["spatial"], strict=False)
    if m > 1:
        metrics["AVTS-Acc"] = _accuracy(scores, masks["temporal"], strict=False)
    metrics["Score/Pos"] = cos.diagonal().mean()
    metrics["Score/Neg"] = cos[negatives].mean()
    return metrics


def _accuracy(scores: torch.Tensor, others: torch.Tensor, strict: bool) -> torch.Tensor:
    """Percent of rows whose diagonal (positive) score beats every score selected by ``others`` in that row:
    strictly (``>``) or with ties counted as correct (``≥``)."""
    pos = scores.diagonal()
    best_other = scores.masked_fill(~others, float("-inf")).amax(dim=1)
    won = pos > best_other if strict else pos >= best_other
    return won.float().mean() * 100.0


def avc_loss(video: torch.Tensor, audio: torch.Tensor, tau: float = TEMPERATURE) -> LossOutput:
    """AVC loss (7): cross-modal instance discrimination, V = 1, negatives = the other samples in the batch.

    Args:
        video, audio: projected embeddings ``[B, D]`` (row ``i`` of each comes from the same clip), B ≥ 2.

    Returns:
        ``(L_{v→a} + L_{a→v}) / 2`` and metrics prefixed ``V2A/`` and ``A2V/``.
    """
    if video.ndim != 2 or video.shape != audio.shape:
        raise ValueError(f"video and audio must both be [B, D], got {tuple(video.shape)} and {tuple(audio.shape)}")
    v2a = joint_contrastive_loss(video[:, None], audio[:, None], tau, use_instance=True, use_spatial=False)
    a2v = joint_contrastive_loss(audio[:, None], video[:, None], tau, use_instance=True, use_spatial=False)
    return _combine({"V2A": v2a, "A2V": a2v})


def translation_loss(out: Translation, negatives: Negatives = Negatives(), tau: float = TEMPERATURE) -> LossOutput:
    """Loss (9) on a :class:`~avsa_train.models.transformer.Translation`: the mean of the V→A term
    (``v2a`` against ``audio``) and the A→V term (``a2v`` against ``video``); metrics prefixed ``V2A/``, ``A2V/``."""
    kw = {"use_instance": negatives.instance, "use_spatial": negatives.spatial, "use_temporal": negatives.temporal}
    return _combine(
        {
            "V2A": joint_contrastive_loss(out.v2a, out.audio, tau, **kw),
            "A2V": joint_contrastive_loss(out.a2v, out.video, tau, **kw),
        }
    )


def _combine(parts: dict[str, LossOutput]) -> LossOutput:
    loss = sum(p.loss for p in parts.values()) / len(parts)
    metrics = {f"{name}/Loss": p.loss.detach() for name, p in parts.items()}
    for name, p in parts.items():
        metrics.update({f"{name}/{k}": val for k, val in p.metrics.items()})
    return LossOutput(loss, metrics)


@dataclass(frozen=True)
class Curriculum:
    """Which negatives to use at each epoch (supplement §B, Table 3d).

    Modes:
        ``"easy-to-hard"``: instance negatives only for epochs ``[0, switch_epoch)`` (the AVC stage), then
        instance + spatial (the AVSA stage). The paper initialises AVSA from the AVC model of epoch 100.
        ``"none"``: instance + spatial from the start. ``"hard-only"``: spatial only.
        ``"easy-only"``: instance only.

    ``temporal=True`` adds temporal negatives wherever spatial ones are used (Table 3c "+ Spatial + Temporal").
    Epochs count from 0.
    """

    mode: str = "easy-to-hard"
    switch_epoch: int = 100
    temporal: bool = False

    def __post_init__(self) -> None:
        if self.mode not in CURRICULUM_MODES:
            raise ValueError(f"curriculum mode must be one of {CURRICULUM_MODES}, got {self.mode!r}")
        if self.switch_epoch < 0:
            raise ValueError(f"switch_epoch must be >= 0, got {self.switch_epoch}")

    def negatives_at(self, epoch: int) -> Negatives:
        """The :class:`Negatives` for 0-based ``epoch``."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch}")
        hard = Negatives(instance=True, spatial=True, temporal=self.temporal)
        easy = Negatives(instance=True, spatial=False, temporal=False)
        if self.mode == "easy-only":
            return easy
        if self.mode == "hard-only":
            return Negatives(instance=False, spatial=True, temporal=self.temporal)
        if self.mode == "none":
            return hard
        return easy if epoch < self.switch_epoch else hard
