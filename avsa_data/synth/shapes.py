"""The shapes of the object classes, as masks in normalised tangent-plane coordinates.

``s`` points left and ``t`` up in the plane tangent to the sphere at the object's direction, scaled so that the
object's angular radius is 1 (:func:`avsa_data.synth.paint.object_masks` does the projection). Every shape is
filled in its class's primary colour at the centre; its ``primary`` mask is False where the secondary colour
shows (stripes, checker). :data:`SHAPES` maps each shape name to its mask function.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

#: (inside, primary) boolean masks of a shape, shaped like its ``s`` and ``t`` inputs.
ShapeMasks = tuple[NDArray[np.bool_], NDArray[np.bool_]]


def _in_unit_disc(s: NDArray, t: NDArray) -> NDArray[np.bool_]:
    return s * s + t * t <= 1.0


def _in_square(s: NDArray, t: NDArray) -> NDArray[np.bool_]:
    """Inside an axis-aligned square of half-side 0.85."""
    return np.maximum(np.abs(s), np.abs(t)) <= 0.85


def disc(s: NDArray, t: NDArray) -> ShapeMasks:
    inside = _in_unit_disc(s, t)
    return inside, inside


def square(s: NDArray, t: NDArray) -> ShapeMasks:
    inside = _in_square(s, t)
    return inside, inside


def triangle(s: NDArray, t: NDArray) -> ShapeMasks:
    """Equilateral, pointing up, its centroid slightly below the centre."""
    s2, t2 = s / 1.15, t / 1.15 + 0.1
    inside = (t2 >= -0.5) & (np.sqrt(3.0) * np.abs(s2) + t2 <= 1.0)
    return inside, inside


def ring(s: NDArray, t: NDArray) -> ShapeMasks:
    """A bullseye: a ring from radius 0.6 to 1 around a dot of radius 0.3."""
    r2 = s * s + t * t
    inside = ((r2 <= 1.0) & (r2 >= 0.6**2)) | (r2 <= 0.3**2)
    return inside, inside


def stripes(s: NDArray, t: NDArray) -> ShapeMasks:
    """A disc of 5 vertical bands, the middle one primary."""
    inside = _in_unit_disc(s, t)
    return inside, inside & (np.floor(s * 2.0 + 0.5) % 2 == 0)


def checker(s: NDArray, t: NDArray) -> ShapeMasks:
    """A square of 3×3 cells, the centre and corners primary."""
    inside = _in_square(s, t)
    cell = np.floor(s / 0.567 + 0.5) + np.floor(t / 0.567 + 0.5)
    return inside, inside & (cell % 2 == 0)


def cross(s: NDArray, t: NDArray) -> ShapeMasks:
    """A plus sign of arms 0.3 wide."""
    inside = ((np.abs(s) <= 0.3) & (np.abs(t) <= 1.0)) | ((np.abs(t) <= 0.3) & (np.abs(s) <= 1.0))
    return inside, inside


def diamond(s: NDArray, t: NDArray) -> ShapeMasks:
    inside = np.abs(s) + np.abs(t) <= 1.0
    return inside, inside


#: Shape name → its mask function ``(s, t) -> (inside, primary)``.
SHAPES: dict[str, Callable[[NDArray, NDArray], ShapeMasks]] = {
    "disc": disc,
    "square": square,
    "triangle": triangle,
    "ring": ring,
    "stripes": stripes,
    "checker": checker,
    "cross": cross,
    "diamond": diamond,
}


def shape_masks(shape: str, s: NDArray, t: NDArray) -> ShapeMasks:
    """(inside, primary) masks of the shape named ``shape`` at tangent-plane coordinates ``s`` (left), ``t`` (up),
    in units of the object's radius."""
    try:
        masks = SHAPES[shape]
    except KeyError:
        raise ValueError(f"unknown shape {shape!r}; choose from {tuple(SHAPES)}") from None
    return masks(s, t)
