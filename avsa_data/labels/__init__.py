"""Pseudo-label backends (``avsa-data shard --labels NAME``): see :mod:`avsa_data.labels.base`."""

from __future__ import annotations

from .base import LabelBackend, LabelError, LabelFrame, VideoLabels

BACKENDS = ("none", "synthetic")


def make_backend(name: str, **options) -> LabelBackend:
    """Instantiate a backend by name. Options are backend-specific (e.g. ``class_map``, ``model``)."""
    if name == "none":
        return LabelBackend()
    if name == "synthetic":
        from .synthetic import SyntheticLabels

        return SyntheticLabels(**options)
    raise ValueError(f"unknown label backend {name!r}; choose one of {BACKENDS}")


__all__ = ["BACKENDS", "LabelBackend", "LabelError", "LabelFrame", "VideoLabels", "make_backend"]
