"""Spherical geometry: the one place where the project's spatial conventions live.

Conventions (docs/CONVENTIONS.md is the prose version of this module):

* Cartesian axes: **x front, y left, z up** (right-handed).
* Azimuth φ (degrees) is measured from the front, **positive to the left** (counter-clockwise
  seen from above); elevation θ (degrees) is **positive up**.
  ``direction_to_vector(φ, θ) = (cos θ cos φ, cos θ sin φ, sin θ)``.
* Equirectangular frames (H rows × W columns): the **image centre is the front** (φ=0, θ=0);
  column ``u`` grows to the right, which is **turning right** (φ decreasing); row ``v`` grows
  downwards (θ decreasing). Pixel centres sit at half-integers::

      φ(u) = 180 - 360 (u + 0.5) / W        θ(v) = 90 - 180 (v + 0.5) / H

All public functions take and return **degrees**; radians are used only internally.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray


def wrap_azimuth(az_deg: ArrayLike) -> NDArray[np.float64]:
    """Wrap azimuth(s) in degrees to the half-open interval [-180, 180)."""
    a = np.asarray(az_deg, dtype=np.float64)
    return (a + 180.0) % 360.0 - 180.0


def direction_to_vector(az_deg: ArrayLike, el_deg: ArrayLike) -> NDArray[np.float64]:
    """Unit vector(s) ``[..., 3]`` = (x front, y left, z up) for azimuth/elevation in degrees."""
    az, el = np.broadcast_arrays(np.deg2rad(np.asarray(az_deg, dtype=np.float64)),
                                 np.deg2rad(np.asarray(el_deg, dtype=np.float64)))
    return np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], axis=-1)


def vector_to_direction(vec: ArrayLike) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(azimuth, elevation) in degrees of vector(s) ``[..., 3]`` (need not be unit length)."""
    v = np.asarray(vec, dtype=np.float64)
    x, y, z = v[..., 0], v[..., 1], v[..., 2]
    az = np.rad2deg(np.arctan2(y, x))
    el = np.rad2deg(np.arctan2(z, np.hypot(x, y)))
    return wrap_azimuth(az), el


def angular_distance(az1: ArrayLike, el1: ArrayLike, az2: ArrayLike, el2: ArrayLike) -> NDArray[np.float64]:
    """Great-circle angle in degrees between two directions (all arguments in degrees)."""
    d = np.sum(direction_to_vector(az1, el1) * direction_to_vector(az2, el2), axis=-1)
    return np.rad2deg(np.arccos(np.clip(d, -1.0, 1.0)))


def equirect_to_direction(
    u: ArrayLike, v: ArrayLike, height: int, width: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixel coordinates (column ``u``, row ``v``; pixel centres at integers) → (az, el) degrees."""
    u = np.asarray(u, dtype=np.float64)
    v = np.asarray(v, dtype=np.float64)
    az = 180.0 - 360.0 * (u + 0.5) / width
    el = 90.0 - 180.0 * (v + 0.5) / height
    return wrap_azimuth(az), el


def direction_to_equirect(
    az_deg: ArrayLike, el_deg: ArrayLike, height: int, width: int
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(az, el) degrees → continuous pixel coordinates (column ``u`` in [-0.5, W-0.5), row ``v``)."""
    az = wrap_azimuth(az_deg)
    el = np.asarray(el_deg, dtype=np.float64)
    u = (180.0 - az) / 360.0 * width - 0.5
    v = (90.0 - el) / 180.0 * height - 0.5
    return u, v


def equirect_direction_grid(height: int, width: int) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Azimuth and elevation (degrees) of every pixel centre of an H×W equirect, each ``[H, W]``."""
    uu, vv = np.meshgrid(np.arange(width), np.arange(height))
    return equirect_to_direction(uu, vv, height, width)


def rotation_yaw(az_deg: float) -> NDArray[np.float64]:
    """3×3 rotation about +z (up) by ``az_deg``: turns a direction to the **left** for positive angles."""
    a = np.deg2rad(az_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_pitch(el_deg: float) -> NDArray[np.float64]:
    """3×3 rotation about +y (left) by ``el_deg``: tilts the front **down** for positive angles.

    (Right-hand rule about +y maps +x towards -z.) ``rotation_pitch(θ) @ direction(0, θ)`` is the front.
    """
    a = np.deg2rad(el_deg)
    c, s = np.cos(a), np.sin(a)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def view_rotation(az_deg: float, el_deg: float) -> NDArray[np.float64]:
    """Rotation that brings the viewpoint direction (az, el) to the front (1, 0, 0).

    Yaw by ``-az`` first, then pitch by ``el`` (no roll), matching the gnomonic camera of
    :mod:`avsa_data.crops`: after rotation +y is the crop's left and +z its up.
    """
    return rotation_pitch(el_deg) @ rotation_yaw(-az_deg)
