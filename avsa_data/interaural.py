"""Interaural cues of binaural renders, and how far a renderer is from the measured head.

A binaural render is checked against the *reference*: the mono source convolved with the measured HRIR of
the nearest measurement direction (what a listener in the recording room would get, up to the grid). For a
white-noise plane wave ``s`` from ``(az, el)`` (degrees, azimuth positive left, elevation up) the renderer
gets the ambiX FOA ``encode(s, az, el)``, and three cues of its ``[2, n]`` output (0 = left, 1 = right) are
compared with the reference's:

* **ILD**: broadband level of left over right, dB;
* **ITD**: lag (whole samples, positive = the right ear lags) of the cross-correlation peak of the two ears
  low-passed at :data:`ITD_BAND_HZ` (4th-order Butterworth, zero phase);
* **high-band ear levels**: the level of each ear high-passed at :data:`HIGH_BAND_HZ`, dB.

Pure numpy/scipy; nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import scipy.signal
from numpy.typing import ArrayLike, NDArray

from . import ambisonics
from .binaural import resample_filters
from .geometry import direction_to_vector
from .hrir_sets import HrirSet

#: ITD is measured on the ears' signals below this frequency (Hz).
ITD_BAND_HZ = 1500.0
#: Ear levels are compared above this frequency (Hz).
HIGH_BAND_HZ = 4000.0


def ild_db(stereo: ArrayLike) -> float:
    """Broadband level of left over right (dB) of a ``[2, n]`` render."""
    a = np.asarray(stereo, dtype=np.float64)
    left, right = (np.mean(a[ear] ** 2) + 1e-20 for ear in (0, 1))
    return float(10.0 * np.log10(left / right))


def itd_samples(stereo: ArrayLike, sr: int, band_hz: float = ITD_BAND_HZ) -> int:
    """Samples by which the right ear lags the left (cross-correlation peak of the ears below ``band_hz``)."""
    sos = scipy.signal.butter(4, band_hz, fs=sr, output="sos")
    low = scipy.signal.sosfiltfilt(sos, np.asarray(stereo, dtype=np.float64), axis=-1)
    lags = scipy.signal.correlation_lags(low.shape[1], low.shape[1])
    return int(lags[np.argmax(scipy.signal.correlate(low[1], low[0]))])


def band_levels_db(stereo: ArrayLike, sr: int, above_hz: float = HIGH_BAND_HZ) -> NDArray[np.float64]:
    """Level (dB) of each ear above ``above_hz``, ``[2]``."""
    sos = scipy.signal.butter(4, above_hz, btype="highpass", fs=sr, output="sos")
    high = scipy.signal.sosfiltfilt(sos, np.asarray(stereo, dtype=np.float64), axis=-1)
    return 10.0 * np.log10(np.mean(high**2, axis=-1) + 1e-20)


def reference_render(hrirs: HrirSet, signal: ArrayLike, az_deg: float, el_deg: float, sr: int) -> NDArray:
    """``signal`` convolved with the measured HRIR nearest to ``(az_deg, el_deg)``, at ``sr`` Hz, ``[2, n]``."""
    s = np.asarray(signal, dtype=np.float64)
    nearest = int(np.argmax(direction_to_vector(hrirs.azimuth, hrirs.elevation) @ direction_to_vector(az_deg, el_deg)))
    ir = resample_filters(hrirs.ir[nearest], hrirs.sr, sr)  # [2, N]
    return np.stack([scipy.signal.fftconvolve(s, ir[ear])[: len(s)] for ear in (0, 1)])


@dataclass(frozen=True)
class CueErrors:
    """Absolute cue errors per direction: ILD (dB), ITD (samples), high-band level of each ear (dB, ``[D, 2]``)."""

    azimuth: NDArray[np.float64]
    elevation: NDArray[np.float64]
    ild_db: NDArray[np.float64]
    itd_samples: NDArray[np.float64]
    high_band_db: NDArray[np.float64]

    def summary(self) -> dict[str, float]:
        """Median and worst of each error, and the number of directions."""
        return {
            "directions": float(len(self.azimuth)),
            "ild_median_db": float(np.median(self.ild_db)), "ild_worst_db": float(np.max(self.ild_db)),
            "itd_median_samples": float(np.median(self.itd_samples)),
            "itd_worst_samples": float(np.max(self.itd_samples)),
            "high_band_median_db": float(np.median(self.high_band_db)),
            "high_band_worst_db": float(np.max(self.high_band_db)),
        }


def side_directions(n: int = 400, max_abs_elevation: float = 40.0,
                    azimuth_range: tuple[float, float] = (20.0, 160.0)) -> tuple[NDArray, NDArray]:
    """Directions (degrees) of an ``n``-point Fibonacci sphere with |el| ≤ ``max_abs_elevation`` and
    ``azimuth_range[0] ≤ |az| ≤ azimuth_range[1]`` (sources to the sides, both hemispheres)."""
    k = np.arange(n) + 0.5
    el = np.rad2deg(np.arcsin(1.0 - 2.0 * k / n))
    az = (np.rad2deg(np.pi * (3.0 - np.sqrt(5.0)) * k) + 180.0) % 360.0 - 180.0
    keep = (np.abs(el) <= max_abs_elevation) & (np.abs(az) >= azimuth_range[0]) & (np.abs(az) <= azimuth_range[1])
    return az[keep], el[keep]


def plane_wave_errors(
    render: Callable[[NDArray], NDArray], hrirs: HrirSet, az_deg: ArrayLike, el_deg: ArrayLike, sr: int,
    seconds: float = 0.5, seed: int = 0,
) -> CueErrors:
    """Cue errors of ``render`` (FOA ``[4, n]`` → ``[2, n]`` at ``sr``) against :func:`reference_render` for a
    fresh white-noise plane wave from each direction (``seed`` fixes the noise)."""
    rng = np.random.default_rng(seed)
    az, el = np.atleast_1d(np.asarray(az_deg, float)), np.atleast_1d(np.asarray(el_deg, float))
    ild, itd, high = [], [], []
    for a, e in zip(az, el):
        s = rng.standard_normal(int(round(seconds * sr)))
        ref = reference_render(hrirs, s, a, e, sr)
        out = np.asarray(render(ambisonics.encode(s, a, e)), dtype=np.float64)
        ild.append(abs(ild_db(out) - ild_db(ref)))
        itd.append(abs(itd_samples(out, sr) - itd_samples(ref, sr)))
        high.append(np.abs(band_levels_db(out, sr) - band_levels_db(ref, sr)))
    return CueErrors(az, el, np.array(ild), np.array(itd, dtype=float), np.array(high))


def mixture_errors(
    render: Callable[[NDArray], NDArray], hrirs: HrirSet, n_sources: int, sr: int, trials: int = 20,
    seconds: float = 0.5, seed: int = 1,
) -> CueErrors:
    """Cue errors of ``render`` on ``trials`` mixtures of ``n_sources`` uncorrelated white-noise plane waves at
    random directions (|el| ≤ 37°), against the sum of their :func:`reference_render`. The FOA is scaled by
    ``1/√n_sources`` before rendering (and the output back), to stay in a realistic level range.
    ``azimuth``/``elevation`` of the result are those of each mixture's first source."""
    rng = np.random.default_rng(seed)
    n = int(round(seconds * sr))
    first_az, first_el, ild, itd, high = [], [], [], [], []
    for _ in range(trials):
        az = rng.uniform(-180.0, 180.0, n_sources)
        el = np.rad2deg(np.arcsin(rng.uniform(-0.6, 0.6, n_sources)))
        sig = rng.standard_normal((n_sources, n))
        ref = sum(reference_render(hrirs, s, a, e, sr) for s, a, e in zip(sig, az, el))
        foa = sum(ambisonics.encode(s, a, e) for s, a, e in zip(sig, az, el))
        gain = np.sqrt(n_sources)
        out = np.asarray(render(foa / gain), dtype=np.float64) * gain
        first_az.append(az[0])
        first_el.append(el[0])
        ild.append(abs(ild_db(out) - ild_db(ref)))
        itd.append(abs(itd_samples(out, sr) - itd_samples(ref, sr)))
        high.append(np.abs(band_levels_db(out, sr) - band_levels_db(ref, sr)))
    return CueErrors(np.array(first_az), np.array(first_el), np.array(ild), np.array(itd, dtype=float),
                     np.array(high))
