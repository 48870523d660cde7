"""Sound synthesis: the class sounds, their on/off envelopes, diffuse noise and the scene's ambiX FOA mix.

Audio is ``float64`` (``float32`` for the final mix) at ``sr`` Hz; FOA is ambiX (ACN W, Y, Z, X; SN3D), each
source encoded at its true direction (:func:`avsa_data.ambisonics.encode`). :data:`SOUNDS` maps each sound
type of :class:`~avsa_data.synth.classes.ObjectClass` to its synthesiser.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from ..ambisonics import W, encode
from ..geometry import wrap_azimuth
from ..rng import rng_for
from .classes import CLASSES, ObjectClass
from .config import SynthConfig
from .scene import Scene, Source


def _band_noise(rng: np.random.Generator, n: int, sr: int, band: tuple[float, float]) -> NDArray:
    """Gaussian noise of ``n`` samples at ``sr`` Hz, band-limited to ``band`` Hz (at most 0.45 · sr)."""
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    lo, hi = band[0], min(band[1], 0.45 * sr)
    spec[(f < lo) | (f > hi)] = 0.0
    return np.fft.irfft(spec, n)


def harmonic(c: ObjectClass, t: NDArray, sr: int, rng: np.random.Generator) -> NDArray:
    """Partials ``c.partials`` of a fundamental ``c.pitch`` Hz (±2 % per sound, random phases) below
    0.45 · sr, with ±1 % vibrato at ``c.rate`` Hz when ``c.rate`` is set."""
    f0 = c.pitch * (1.0 + rng.uniform(-0.02, 0.02))
    phase = 2 * np.pi * f0 * t
    if c.rate:  # vibrato: ±1 % at `rate` Hz
        phase += 0.01 * f0 / c.rate * np.sin(2 * np.pi * c.rate * t)
    return sum(
        a * np.sin((k + 1) * phase + rng.uniform(0, 2 * np.pi))
        for k, a in enumerate(c.partials)
        if a and (k + 1) * f0 < 0.45 * sr
    )


def noise(c: ObjectClass, t: NDArray, sr: int, rng: np.random.Generator) -> NDArray:
    """Noise in the band ``c.band`` Hz, amplitude-modulated (80 % deep) at ``c.rate`` Hz when it is set."""
    x = _band_noise(rng, len(t), sr, c.band)
    if c.rate:
        x = x * (1.0 - 0.8 * (0.5 + 0.5 * np.cos(2 * np.pi * c.rate * t)))
    return x


def bursts(c: ObjectClass, t: NDArray, sr: int, rng: np.random.Generator) -> NDArray:
    """``c.rate`` bursts per second of ``c.burst`` s (sine-squared gate, random offset) of a tone at ``c.pitch``
    Hz or, when ``c.pitch`` is 0, of noise in the band ``c.band`` Hz."""
    carrier = np.sin(2 * np.pi * c.pitch * t) if c.pitch else _band_noise(rng, len(t), sr, c.band)
    offset = rng.uniform(0, 1.0 / c.rate)
    local = (t + offset) % (1.0 / c.rate)
    gate = np.where(local < c.burst, np.sin(np.pi * np.clip(local / c.burst, 0, 1)) ** 2, 0.0)
    return carrier * gate


#: Sound type → its synthesiser ``(class, times in s, sr in Hz, rng) -> samples`` (any scale).
SOUNDS: dict[str, Callable[[ObjectClass, NDArray, int, np.random.Generator], NDArray]] = {
    "harmonic": harmonic,
    "noise": noise,
    "bursts": bursts,
}


def class_sound(cid: int, n: int, sr: int, rng: np.random.Generator) -> NDArray[np.float64]:
    """The class-specific mono sound of class ``cid``: ``n`` samples at ``sr`` Hz, unit RMS."""
    c = CLASSES[cid - 1]
    try:
        synthesise = SOUNDS[c.sound]
    except KeyError:
        raise ValueError(f"unknown sound type {c.sound!r}; choose from {tuple(SOUNDS)}") from None
    x = np.asarray(synthesise(c, np.arange(n) / sr, sr, rng), dtype=np.float64)
    return x / max(float(np.sqrt(np.mean(x**2))), 1e-12)


def envelope(src: Source, n: int, sr: int, ramp: float = 0.02) -> NDArray[np.float64]:
    """On/off gain over ``n`` samples at ``sr`` Hz: 1 inside ``src.on`` with ``ramp``-second raised-cosine edges."""
    env = np.zeros(n)
    if not src.sounding:
        return env
    t = np.arange(n) / sr
    for t0, t1 in src.on:
        up = np.clip((t - t0) / ramp, 0.0, 1.0)
        down = np.clip((t1 - t) / ramp, 0.0, 1.0) if math.isfinite(t1) else 1.0
        env = np.maximum(env, np.sin(0.5 * np.pi * np.minimum(up, down)) ** 2 * ((t >= t0) & (t < t1)))
    return env


def fibonacci_directions(n: int) -> tuple[NDArray, NDArray]:
    """``n`` nearly uniform directions on the sphere (azimuth, elevation in degrees)."""
    k = np.arange(n) + 0.5
    el = np.rad2deg(np.arcsin(1.0 - 2.0 * k / n))
    az = wrap_azimuth(np.rad2deg(np.pi * (1.0 + 5**0.5) * k))
    return az, el


def diffuse_noise(rng: np.random.Generator, n: int, sr: int, sources: int = 32) -> NDArray[np.float64]:
    """Diffuse FOA noise ``[4, n]`` (ambiX): ``sources`` uncorrelated pinkish noises from nearly uniform,
    randomly rotated directions; W has unit mean power."""
    az, el = fibonacci_directions(sources)
    az = wrap_azimuth(az + rng.uniform(-180, 180))
    f = np.fft.rfftfreq(n, 1.0 / sr)
    shape = 1.0 / np.sqrt(np.maximum(f, 50.0))
    out = np.zeros((4, n))
    for a, e in zip(az, el):
        x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n)
        out += encode(x, a, e)
    return out / max(float(np.sqrt(np.mean(out[W] ** 2))), 1e-12)


def render_foa(scene: Scene, cfg: SynthConfig) -> tuple[NDArray[np.float32], float]:
    """The scene's ambiX FOA ``[4, n_samples]`` at ``cfg.sr`` Hz and the peak-normalisation gain applied.

    Each sounding source: class sound × gain × on/off envelope, encoded at its true (per-sample, if moving)
    direction. Diffuse noise is added with W-channel power ``snr_db`` dB below the sources' W power. The
    mix is scaled so its largest sample magnitude is 0.7.
    """
    n, sr = cfg.n_samples, cfg.sr
    t = np.arange(n) / sr
    foa = np.zeros((4, n))
    for k, src in enumerate(scene.sources):
        if not src.sounding:
            continue
        sig = class_sound(src.class_id, n, sr, rng_for(scene.seed, scene.video_id, "sound", k))
        sig = sig * src.gain * envelope(src, n, sr)
        if src.az_speed:
            az, el = src.direction(t)
            foa += encode(sig, az, el)
        else:
            foa += encode(sig, src.az, src.el)
    p_signal = float(np.mean(foa[W] ** 2))
    if math.isfinite(cfg.snr_db):
        level = math.sqrt(p_signal / 10 ** (cfg.snr_db / 10)) if p_signal > 0 else 0.01
        foa += level * diffuse_noise(rng_for(scene.seed, scene.video_id, "diffuse"), n, sr)
    peak = float(np.max(np.abs(foa)))
    gain = 0.7 / peak if peak > 0 else 1.0
    return (foa * gain).astype(np.float32), gain
