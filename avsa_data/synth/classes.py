"""The object classes of synthetic scenes: each a visual shape with its colours, and a sound.

Class id = index in :data:`CLASSES` + 1; id 0 is the background. The shapes are drawn by
:mod:`avsa_data.synth.shapes`, the sounds synthesised by :mod:`avsa_data.synth.sound`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ObjectClass:
    """A visual class (shape + colours, RGB uint8) and its sound.

    ``shape`` names an entry of :data:`avsa_data.synth.shapes.SHAPES`; ``secondary`` is the second colour of
    two-colour shapes (stripes, checker). ``sound`` names an entry of :data:`avsa_data.synth.sound.SOUNDS`:
    ``harmonic`` (``pitch`` Hz fundamental, ``partials`` amplitudes), ``noise`` (band ``band`` Hz, optional
    amplitude modulation at ``rate`` Hz) or ``bursts`` (``rate`` bursts per second of ``burst`` s, carrier a tone
    at ``pitch`` Hz or, if ``pitch`` is 0, noise in ``band``).
    """

    name: str
    shape: str
    colour: tuple[int, int, int]
    secondary: tuple[int, int, int] | None
    sound: str
    pitch: float = 0.0
    partials: tuple[float, ...] = (1.0,)
    band: tuple[float, float] = (0.0, 0.0)
    rate: float = 0.0
    burst: float = 0.0


#: Object classes; class id = index + 1 (0 is background).
CLASSES: tuple[ObjectClass, ...] = (
    ObjectClass(
        "red_disc", "disc", (220, 30, 30), None, "harmonic", pitch=220.0, partials=(1.0, 0.5, 0.33, 0.25, 0.2, 0.16)
    ),
    ObjectClass("green_square", "square", (30, 190, 60), None, "noise", band=(2000.0, 4000.0)),
    ObjectClass("blue_triangle", "triangle", (30, 70, 230), None, "bursts", band=(600.0, 1800.0), rate=4.0, burst=0.06),
    ObjectClass(
        "yellow_ring", "ring", (245, 215, 20), None, "harmonic", pitch=523.0, partials=(1.0, 0.4, 0.2), rate=5.0
    ),
    ObjectClass("magenta_stripes", "stripes", (230, 40, 210), (245, 245, 245), "noise", band=(200.0, 500.0), rate=1.5),
    ObjectClass("cyan_checker", "checker", (20, 220, 230), (20, 20, 20), "bursts", pitch=1500.0, rate=8.0, burst=0.03),
    ObjectClass(
        "orange_cross",
        "cross",
        (250, 140, 10),
        None,
        "harmonic",
        pitch=330.0,
        partials=(1.0, 0.0, 0.33, 0.0, 0.2, 0.0, 0.14),
    ),
    ObjectClass("black_diamond", "diamond", (20, 20, 20), None, "bursts", pitch=110.0, rate=2.0, burst=0.12),
)
CLASS_NAMES: tuple[str, ...] = ("background",) + tuple(c.name for c in CLASSES)


def class_id(name: str) -> int:
    """Class id (1-based) of a class name."""
    try:
        return CLASS_NAMES.index(name)
    except ValueError:
        raise ValueError(f"unknown class {name!r}; choose from {CLASS_NAMES[1:]}") from None
