"""AVSA networks: the R(2+1)D-18 video encoder, the Conv2D-10 audio encoder (supplement Table 1) and the
cross-modal translation transformers with their projection heads (§3.2, §A.1)."""

from avsa_train.models.audio import AUDIO_INPUT_CHANNELS, Conv2D10
from avsa_train.models.levels import scaled_channels
from avsa_train.models.transformer import (
    CONTEXTS,
    CrossModalTranslator,
    PerViewpointLayer,
    PerViewpointMLP,
    ProjectionHead,
    SelfAttention,
    Translation,
    TranslationLayer,
    TranslationTransformer,
)
from avsa_train.models.video import R2Plus1D18, R2Plus1DBlock, tran_mid_channels

__all__ = [
    "AUDIO_INPUT_CHANNELS",
    "CONTEXTS",
    "Conv2D10",
    "CrossModalTranslator",
    "PerViewpointLayer",
    "PerViewpointMLP",
    "ProjectionHead",
    "R2Plus1D18",
    "R2Plus1DBlock",
    "SelfAttention",
    "Translation",
    "TranslationLayer",
    "TranslationTransformer",
    "scaled_channels",
    "tran_mid_channels",
]
