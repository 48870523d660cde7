"""First-order ambisonics (FOA) in **ambiX**: ACN channel order (W, Y, Z, X), SN3D normalisation.

Signals are float arrays shaped ``[4, n_samples]`` (channels first). With SN3D a plane wave ``s(t)``
arriving from unit direction ``u = (x, y, z)`` (x front, y left, z up; see :mod:`avsa_data.geometry`)
is encoded as ``W = s, Y = y·s, Z = z·s, X = x·s``.

Functions here are pure numpy and never touch torch.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from .geometry import direction_to_vector, vector_to_direction, view_rotation

#: ACN index of each first-order channel in an ambiX signal.
W, Y, Z, X = 0, 1, 2, 3
#: Permutation from ACN order (W, Y, Z, X) to Cartesian (X, Y, Z) of the first-order part.
ACN_TO_XYZ = [X, Y, Z]
FOA_CHANNELS = 4


def check_foa(foa: ArrayLike, name: str = "foa") -> NDArray:
    """Validate an FOA array ``[4, n_samples]`` and return it as a float array.

    Raises ``ValueError`` naming the expected shape when the channel count is wrong (a common
    mistake is passing ``[n_samples, 4]`` as read by soundfile: transpose it first).
    """
    a = np.asarray(foa)
    if a.ndim != 2 or a.shape[0] != FOA_CHANNELS:
        raise ValueError(
            f"{name}: expected first-order ambisonics shaped [4, n_samples] (ACN W,Y,Z,X), got shape "
            f"{tuple(a.shape)}"
        )
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    return a


def check_sample_rate(sr: int, expected: int, name: str = "audio") -> None:
    """Raise ``ValueError`` if ``sr`` (Hz) differs from the ``expected`` rate (Hz)."""
    if int(sr) != int(expected):
        raise ValueError(f"{name}: expected sample rate {expected} Hz, got {sr} Hz (resample first)")


def sh_first_order(az_deg: ArrayLike, el_deg: ArrayLike) -> NDArray[np.float64]:
    """Real SN3D spherical harmonics up to order 1 in ACN order, ``[..., 4]`` = (1, y, z, x)."""
    v = direction_to_vector(az_deg, el_deg)
    return np.stack([np.ones(v.shape[:-1]), v[..., 1], v[..., 2], v[..., 0]], axis=-1)


def encode(signal: ArrayLike, az_deg: ArrayLike, el_deg: ArrayLike) -> NDArray:
    """Encode a mono plane wave into ambiX FOA.

    ``signal`` is ``[n_samples]``; ``az_deg``/``el_deg`` are scalars (a fixed source) or arrays of
    length ``n_samples`` (a moving source, one direction per sample). Returns ``[4, n_samples]``.
    """
    s = np.asarray(signal)
    if s.ndim != 1:
        raise ValueError(f"encode: expected a mono signal shaped [n_samples], got shape {tuple(s.shape)}")
    gains = sh_first_order(az_deg, el_deg)  # [4] or [n, 4]
    dtype = s.dtype if np.issubdtype(s.dtype, np.floating) else np.float64
    if gains.ndim == 1:
        return (gains[:, None] * s[None, :]).astype(dtype, copy=False)
    if gains.shape[0] != s.shape[0]:
        raise ValueError("encode: per-sample directions must have the same length as the signal")
    return (gains.T * s[None, :]).astype(dtype, copy=False)


def rotate(foa: ArrayLike, matrix: ArrayLike) -> NDArray:
    """Apply a 3×3 rotation (acting on Cartesian x, y, z) to an FOA signal. W is left unchanged."""
    a = check_foa(foa)
    R = np.asarray(matrix, dtype=np.float64)
    out = np.empty_like(a)
    out[W] = a[W]
    xyz = R.astype(a.dtype) @ a[ACN_TO_XYZ]
    out[X], out[Y], out[Z] = xyz[0], xyz[1], xyz[2]
    return out


def rotate_to_view(foa: ArrayLike, az_deg: float, el_deg: float) -> NDArray:
    """Rotate the sound field so that the viewpoint (az, el) in degrees becomes the front.

    Yaw by ``-az``, then pitch by ``el`` (:func:`avsa_data.geometry.view_rotation`), W fixed.
    A source at (az, el) ends up at azimuth 0, elevation 0.
    """
    return rotate(foa, view_rotation(az_deg, el_deg))


def rotate_from_view(foa: ArrayLike, az_deg: float, el_deg: float) -> NDArray:
    """Inverse of :func:`rotate_to_view`."""
    return rotate(foa, view_rotation(az_deg, el_deg).T)


def mono_render(foa: ArrayLike, az_deg: float = 0.0, el_deg: float = 0.0) -> NDArray:
    """First-order projection onto the spherical harmonics at the look direction: a cardioid.

    ``m = (W + u·(X, Y, Z)) / 2`` with ``u`` the look direction. A plane wave from the look
    direction has gain 1, from 90° off 0.5 and from behind 0. Returns ``[n_samples]``.
    """
    a = check_foa(foa)
    g = sh_first_order(az_deg, el_deg).astype(a.dtype)
    return 0.5 * (g @ a)


def flip_horizontal(foa: ArrayLike) -> NDArray:
    """Mirror the sound field left↔right (the audio twin of a horizontal image flip): negate Y."""
    a = np.array(check_foa(foa), copy=True)
    a[Y] = -a[Y]
    return a


def fuma_to_ambix(foa_fuma: ArrayLike) -> NDArray:
    """Convert first-order FuMa (W, X, Y, Z; W at -3 dB) to ambiX (W, Y, Z, X; SN3D).

    ``W_ambix = √2 · W_fuma``; X, Y, Z are unscaled at first order and reordered to ACN.
    """
    a = check_foa(foa_fuma, "fuma")
    return np.stack([a[0] * np.sqrt(2.0), a[2], a[3], a[1]]).astype(a.dtype, copy=False)


def ambix_to_fuma(foa: ArrayLike) -> NDArray:
    """Inverse of :func:`fuma_to_ambix`: ambiX (W, Y, Z, X) → FuMa (W/√2, X, Y, Z)."""
    a = check_foa(foa)
    return np.stack([a[W] / np.sqrt(2.0), a[X], a[Y], a[Z]]).astype(a.dtype, copy=False)


def intensity_vector(foa: ArrayLike) -> NDArray[np.float64]:
    """Time-averaged active intensity ``mean(W · (X, Y, Z))`` as a Cartesian vector ``[3]``.

    For a single plane wave it points at the source with length ``mean(s²)``.
    """
    a = np.asarray(check_foa(foa), dtype=np.float64)
    return (a[ACN_TO_XYZ] * a[W][None]).mean(axis=1)


def energy_direction(foa: ArrayLike) -> tuple[float, float]:
    """Direction of arrival (az, el) in degrees estimated from the intensity vector."""
    az, el = vector_to_direction(intensity_vector(foa))
    return float(az), float(el)


def field_energy(foa: ArrayLike) -> float:
    """Rotation-invariant energy ``sum(W²) + sum(X²+Y²+Z²)`` of an FOA signal (SN3D)."""
    a = np.asarray(check_foa(foa), dtype=np.float64)
    return float(np.sum(a**2))
