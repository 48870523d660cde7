"""Test helper: an analytic spherical-head HRIR set written as a SOFA file (no downloads).

Brown & Duda (1998), "A structural model for binaural sound synthesis": each ear is a one-pole/one-zero
head-shadow filter plus a Woodworth–Schlosberg time delay, both functions of the angle of incidence θ
between the source direction and the ear's axis (θ = 0: source straight at the ear)::

    H(ω, θ) = (1 + j α(θ) ω / (2 ω0)) / (1 + j ω / (2 ω0)),   ω0 = c / a
    α(θ)    = (1 + α_min / 2) + (1 - α_min / 2) cos(θ / θ_min · 180°),   α_min = 0.1, θ_min = 150°
    T(θ)    = -(a / c) cos θ            for θ < 90°
              (a / c) (θ - 90°)         for θ ≥ 90°   (θ in radians)

with head radius a = 8.75 cm and c = 343 m/s, ears at azimuth ±90° (left ear on +y). The direction grid is a
Fibonacci spiral together with its left↔right mirror image, so the set is exactly symmetric.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

HEAD_RADIUS_M = 0.0875
SPEED_OF_SOUND = 343.0
ALPHA_MIN = 0.1
THETA_MIN_DEG = 150.0
#: Bulk delay (seconds) added to every HRIR so that the earliest (near-ear) arrival is still causal.
BULK_DELAY_S = 0.0005


def mirrored_fibonacci_grid(n_dirs: int) -> tuple[np.ndarray, np.ndarray]:
    """Azimuth, elevation (degrees) of ``2·(n_dirs // 2)`` directions: a Fibonacci spiral and its mirror (az → -az)."""
    half = n_dirs // 2
    k = np.arange(half) + 0.5
    el = np.rad2deg(np.arcsin(1.0 - 2.0 * k / half))
    az = (np.rad2deg(np.pi * (3.0 - np.sqrt(5.0)) * k) + 180.0) % 360.0 - 180.0
    return np.concatenate([az, -az]), np.concatenate([el, el])


def spherical_head_hrirs(az_deg: np.ndarray, el_deg: np.ndarray, sr: int, n_taps: int) -> np.ndarray:
    """Brown–Duda HRIRs ``[M, 2, n_taps]`` (ear 0 = left on +y, 1 = right) for directions in degrees."""
    az, el = np.deg2rad(az_deg), np.deg2rad(el_deg)
    y = np.cos(el) * np.sin(az)  # component along the left-ear axis
    nfft = 8 * n_taps
    omega = 2.0 * np.pi * np.fft.rfftfreq(nfft, 1.0 / sr)
    w0 = SPEED_OF_SOUND / HEAD_RADIUS_M
    out = np.empty((len(az), 2, n_taps))
    for ear, axis_sign in enumerate((1.0, -1.0)):
        theta = np.arccos(np.clip(axis_sign * y, -1.0, 1.0))  # incidence angle to this ear, radians
        alpha = (1 + ALPHA_MIN / 2) + (1 - ALPHA_MIN / 2) * np.cos(theta / np.deg2rad(THETA_MIN_DEG) * np.pi)
        delay = np.where(theta < np.pi / 2, -np.cos(theta), theta - np.pi / 2) * HEAD_RADIUS_M / SPEED_OF_SOUND
        shadow = (1 + 1j * alpha[:, None] * omega / (2 * w0)) / (1 + 1j * omega / (2 * w0))
        spectrum = shadow * np.exp(-1j * omega * (delay[:, None] + BULK_DELAY_S))
        out[:, ear] = np.fft.irfft(spectrum, nfft, axis=-1)[:, :n_taps]
    fade = n_taps // 8  # half-Hann fade-out of the truncated tail
    out[..., n_taps - fade :] *= np.cos(np.linspace(0.0, np.pi / 2, fade)) ** 2
    return out


def write_spherical_head_sofa(
    path: str | Path,
    sr: int = 48000,
    n_dirs: int = 500,
    n_taps: int = 256,
    *,
    cartesian: bool = False,
    swap_receivers: bool = False,
) -> Path:
    """Write a SimpleFreeFieldHRIR SOFA file of the Brown–Duda spherical head and return its path.

    ``cartesian`` stores SourcePosition as (x, y, z) metres instead of (az°, el°, r); ``swap_receivers``
    stores the right ear as receiver 0 (and says so in ReceiverPosition). Both describe the same head.
    """
    import sofar

    az, el = mirrored_fibonacci_grid(n_dirs)
    ir = spherical_head_hrirs(az, el, sr, n_taps)
    receivers = np.array([[0.0, HEAD_RADIUS_M, 0.0], [0.0, -HEAD_RADIUS_M, 0.0]])
    if swap_receivers:
        ir, receivers = ir[:, ::-1], receivers[::-1]
    s = sofar.Sofa("SimpleFreeFieldHRIR")
    s.Data_IR = np.ascontiguousarray(ir)
    s.Data_SamplingRate = float(sr)
    s.Data_Delay = np.zeros((1, 2))
    s.ReceiverPosition = receivers[:, :, None]
    radius = 1.5
    if cartesian:
        a, e = np.deg2rad(az), np.deg2rad(el)
        s.SourcePosition = radius * np.stack([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)], axis=-1)
        s.SourcePosition_Type = "cartesian"
        s.SourcePosition_Units = "metre"
    else:
        s.SourcePosition = np.stack([az, el, np.full_like(az, radius)], axis=-1)
    path = Path(path)
    sofar.write_sofa(str(path), s)
    return path
