"""The grid's names that the command line offers before any model code is loaded (this module imports nothing,
so ``avsa-train ablate --help`` stays fast): the grids, the scale presets and the ``--set`` grid names."""

from __future__ import annotations

GRIDS = ("table3",)
#: The scale presets (:data:`avsa_train.ablate.scales.SCALES`), in the order ``--scale`` lists them.
SCALE_NAMES = ("paper", "tiny", "cpu")

#: The grid's ``--set`` names, in ``--list`` order: ``(part, fields)``, the task-configuration field(s) each sets
#: (``seg_fpn_dim`` sets both FPN widths). Part ``grid``: a value of the grid itself
#: (:attr:`~avsa_train.ablate.scales.Scale.temporal_moments`).
SCALE_KEYS: dict[str, tuple[str, tuple[str, ...]]] = {
    # pre-training
    "width": ("pretrain", ("width",)),  # channel width multiplier of both encoders
    "batch_size": ("pretrain", ("batch_size",)),  # samples per step
    "lr": ("pretrain", ("lr",)),  # Adam learning rate
    "weight_decay": ("pretrain", ("weight_decay",)),
    "epochs": ("pretrain", ("epochs",)),  # pre-training epochs (ignored when ``steps`` is set)
    "steps": ("pretrain", ("max_steps",)),  # total pre-training steps (None: ``epochs`` × steps per epoch)
    "steps_per_epoch": ("pretrain", ("steps_per_epoch",)),  # None: train samples / batch size (manifest.json)
    "switch_epoch": ("pretrain", ("switch_epoch",)),  # easy → hard: epochs of the AVC stage before AVSA
    "easy_batch_size": ("pretrain", ("easy_batch_size",)),  # samples per step of the AVC stage (Table 2: 112)
    "temporal_moments": ("grid", ("temporal_moments",)),  # M moments per item of the temporal-negatives cell
    "color_jitter": ("pretrain", ("color_jitter",)),  # Table 2 cj
    "flip_p": ("pretrain", ("flip_p",)),  # Table 2 hf
    "workers": ("pretrain", ("workers",)),  # DataLoader workers (None: CPUs − 1, at most 8; evaluations: 0)
    "checkpoint_every": ("pretrain", ("checkpoint_every",)),  # pre-training checkpoint period in steps
    # AVC-Bin / AVSA-Bin
    "bin_epochs": ("binary", ("epochs",)),
    "bin_batch_size": ("binary", ("batch_size",)),
    "bin_lr": ("binary", ("lr",)),  # None: 1e-5 AVC, 1e-4 AVSA (the reference configs)
    "bin_milestones": ("binary", ("milestones",)),  # None: (5, 8) AVC, (8,) AVSA
    "bin_test_draws": ("binary", ("test_draws",)),  # evaluation passes over the val split
    # segmentation
    "seg_epochs": ("segmentation", ("epochs",)),
    "seg_batch_size": ("segmentation", ("batch_size",)),
    "seg_lr": ("segmentation", ("lr",)),
    "seg_milestones": ("segmentation", ("milestones",)),
    "seg_fpn_dim": ("segmentation", ("fpn_dim", "segm_dim")),  # FPN lateral and semantic channels (§A.2: 128)
    "seg_views": ("segmentation", ("views",)),  # viewpoints per training item of the head (§A.2: 4)
}
