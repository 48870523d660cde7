"""The downstream protocol: what binary evaluation and segmentation share beside their hyper-parameters.

Both tasks train a head on one split of the shards and evaluate it on another, drawing items through the
shard stream (:mod:`avsa_train.data`) with one seed. Their configs nest this part
(:func:`avsa_data.options.nested`): its fields are still the commands' ``--seed``, ``--train-split`` and
``--eval-split`` and the flat keys of their saved configurations.
"""

from __future__ import annotations

from dataclasses import dataclass

from avsa_data.options import option


@dataclass(frozen=True)
class DownstreamProtocol:
    """Splits, seed, loader workers and shuffle buffer of a downstream task (seed §5.2 / §A.2 defaults)."""

    shuffle_buffer: int = option(16, cli=False, help="Shuffle buffer of the training items, per DataLoader worker.")
    seed: int = option(0, help="Seed of initialisation, data order and augmentations.")
    workers: int = option(0, min=0, cli=False,  # the commands use the cores (avsa_train/cli/_common.py)
                          help="DataLoader worker processes (0 = in-process).")
    train_split: str = option("train", help="Split the task's head is trained on.")
    eval_split: str = option("val", help="Held-out split it is evaluated on.")

    def __post_init__(self) -> None:
        if self.shuffle_buffer < 1 or self.workers < 0:
            raise ValueError(f"shuffle_buffer must be ≥ 1 and workers ≥ 0, got {self.shuffle_buffer} and "
                             f"{self.workers}")
