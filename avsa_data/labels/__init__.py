"""Pseudo-label backends (``avsa-data shard --labels NAME``): see :mod:`avsa_data.labels.base` and docs/LABELS.md.

* ``none``: no masks.
* ``synthetic``: the ground truth of ``avsa-data synth`` (:mod:`.synthetic`).
* ``precomputed``: per-frame label PNGs made beforehand, ids or COCO-panoptic things/stuff (:mod:`.precomputed`).
* ``onnx``: a user-supplied ONNX segmentation model run on cube faces (:mod:`.onnx_model`).
"""

from __future__ import annotations

from .base import LabelBackend, LabelError, LabelFrame, VideoLabels

BACKENDS = ("none", "synthetic", "precomputed", "onnx")

#: Options each backend accepts (``avsa-data shard`` passes them as strings; option ``x_y`` is ``--x-y``).
BACKEND_OPTIONS = {
    "none": (),
    "synthetic": (),
    "precomputed": ("label_dir", "class_map", "label_fps", "max_gap"),
    "onnx": ("model", "class_map", "onnx_size", "onnx_mean", "onnx_std", "onnx_output", "onnx_layout", "onnx_fov",
             "onnx_device", "onnx_threads"),
}


def option_flag(key: str) -> str:
    """The command-line spelling of backend option ``key`` (for error messages), as
    :class:`~avsa_data.labels.options.LabelOptions` declares it (``max_gap`` is ``--label-max-gap``)."""
    from dataclasses import fields

    from avsa_data.options import flag_of

    from .options import LabelOptions

    return next((flag_of(f) for f in fields(LabelOptions) if f.name == key), "--" + key.replace("_", "-"))


def make_backend(name: str, **options: str) -> LabelBackend:
    """Instantiate a backend by name. ``options`` are backend-specific strings (see :data:`BACKEND_OPTIONS`);
    one the backend does not use is an error (``ValueError``), as are bad values (``LabelError``)."""
    if name not in BACKENDS:
        raise ValueError(f"unknown label backend {name!r}; choose one of {BACKENDS}")
    unused = sorted(k for k in options if k not in BACKEND_OPTIONS[name])
    if unused:
        raise ValueError(f"{', '.join(option_flag(k) for k in unused)} is not used by --labels {name}")
    if name == "none":
        return LabelBackend()
    if name == "synthetic":
        from .synthetic import SyntheticLabels

        return SyntheticLabels()
    if name == "precomputed":
        from .precomputed import PrecomputedLabels

        return PrecomputedLabels.from_options(**options)
    from .onnx_model import OnnxLabels

    return OnnxLabels.from_options(**options)


__all__ = ["BACKENDS", "BACKEND_OPTIONS", "LabelBackend", "LabelError", "LabelFrame", "VideoLabels", "make_backend"]
