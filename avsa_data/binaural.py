"""Binaural (two-ear) stereo for a listener facing the viewpoint.

The input is FOA that has already been rotated so that the viewpoint is the front
(:func:`avsa_data.ambisonics.rotate_to_view`): ambiX, ACN order (W, Y, Z, X), SN3D, shaped
``[4, n_samples]``. The output is ``[2, n_samples]`` float32 with **channel 0 = Left, 1 = Right**.

Two modes:

* ``"virtual-mic"`` (default, needs no data). The reference's "projection" binauraliser, simplified to
  two virtual first-order cardioid microphones pointing at ±90° azimuth (left/right ears)::

      L = (W + Y) / 2        R = (W - Y) / 2

  i.e. :func:`avsa_data.ambisonics.mono_render` looking at azimuth +90° and -90°.
* ``"hrir"``. A renderer built from a measured head-related impulse response set in a SOFA file (AES69
  ``SimpleFreeFieldHRIR``), one of :data:`HRIR_DECODERS`:

  - ``"parametric"`` (default, :class:`ParametricHrirDecoder`): DirAC-style. Per STFT bin the intensity
    vector gives a direction and a diffuseness ψ; the direct part ``√(1-ψ)·W`` gets the measured HRTF nearest
    to that direction, the diffuse part ``√ψ·FOA`` the MagLS decoder. A single plane wave is rendered with the
    measured HRIR of its direction (the interaural time and level differences of the real head), which no
    linear first-order decoder can do.
  - ``"magls"`` (:func:`fit_magls_filters`): linear first-order decoder, least squares below
    :data:`MAGLS_CUTOFF_HZ`, magnitude least squares above (Schörkhuber, Zaunschirm & Höldrich 2018).
  - ``"ls"`` (:func:`fit_sh_filters`, the renderer of shard format_version 1): the HRIRs ``h_ear(d_m, t)`` at the
    M measurement directions ``d_m`` are fitted, by (quadrature-weighted) least squares, onto the first-order
    SN3D spherical harmonics ``Y_c(d)``: ``h_ear(d, t) ≈ Σ_c Y_c(d) H_ear,c(t)``, and decoding is
    ``ear = Σ_c foa_c * H_ear,c`` (convolution). It loses 10–20 dB above 4 kHz and most of the ITD.

  Filters are resampled to the audio rate (polyphase, gain-corrected so the frequency response is kept).
  Measured accuracy and cost: docs/FORMAT.md "Binaural renders", benchmarks/binaural.py.

HRIR sets (which SOFA files avsa names and pins by sha256, finding the one a shard recorded, reading it, the
SOFA conventions handled) are :mod:`avsa_data.hrir_sets`.

Nothing here imports torch; scipy is imported only where an HRIR renderer needs it.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from numpy.typing import ArrayLike, NDArray

from . import ambisonics, hrir_sets
from .geometry import direction_to_vector

#: The binaural render modes.
MODES = ("virtual-mic", "hrir")
#: Azimuth (degrees, positive left) of the left virtual cardioid; the right one is at minus this.
VIRTUAL_MIC_AZIMUTH = 90.0
#: The ``--binaural hrir`` renderers (see the module doc); the first is the default, chosen by measurement
#: (benchmarks/binaural.py, docs/FORMAT.md "Binaural renders").
HRIR_DECODERS = ("parametric", "magls", "ls")
DEFAULT_HRIR_DECODER = HRIR_DECODERS[0]
#: MagLS: least squares below this frequency (Hz), magnitude least squares above.
MAGLS_CUTOFF_HZ = 1000.0
#: Parametric renderer: STFT frame (samples, Hann, hop = frame / 2) and the intensity/energy smoothing
#: (frames, centred moving average) that estimates each bin's direction and diffuseness.
PARAMETRIC_FRAME = 512
PARAMETRIC_SMOOTHING_FRAMES = 5
#: Angular width (degrees) of the kernel estimating the sampling density of the measurement grid.
DENSITY_KERNEL_DEG = 15.0


# ----------------------------------------------------------------------------------------------- validation


def _check_sr(sr: float) -> int:
    """A positive whole sample rate in Hz, as ``int``."""
    try:
        ok = float(sr) > 0 and float(sr) == int(sr)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(f"sample rate must be a positive whole number of Hz, got {sr!r}")
    return int(sr)


def check_stereo(stereo: ArrayLike, name: str = "stereo") -> NDArray:
    """Validate a binaural array ``[2, n_samples]`` (channel 0 = Left, 1 = Right)."""
    a = np.asarray(stereo)
    if a.ndim != 2 or a.shape[0] != 2:
        raise ValueError(f"{name}: expected stereo shaped [2, n_samples] (Left, Right), got shape {tuple(a.shape)}")
    return a


def flip_stereo(stereo: ArrayLike) -> NDArray:
    """Swap Left and Right of a ``[2, n_samples]`` stereo signal.

    The stereo twin of :func:`avsa_data.ambisonics.flip_horizontal`: binauralising a left↔right mirrored
    sound field gives the swapped stereo of the original (exactly for virtual mics and symmetric heads).
    """
    return np.ascontiguousarray(check_stereo(stereo)[::-1])


# ----------------------------------------------------------------------------------------------- virtual mics


def virtual_mic_binaural(foa_rotated: ArrayLike) -> NDArray[np.float32]:
    """Two virtual cardioids at ±90° azimuth: ``L = (W + Y)/2``, ``R = (W - Y)/2``. Returns ``[2, n]`` float32."""
    a = ambisonics.check_foa(foa_rotated, "foa_rotated")
    left = ambisonics.mono_render(a, VIRTUAL_MIC_AZIMUTH, 0.0)
    right = ambisonics.mono_render(a, -VIRTUAL_MIC_AZIMUTH, 0.0)
    return np.stack([left, right]).astype(np.float32, copy=False)


# ----------------------------------------------------------------------------------------------- SOFA files


# ----------------------------------------------------------------------------------------------- HRIR decoder


def sampling_weights(az_deg: ArrayLike, el_deg: ArrayLike) -> NDArray[np.float64]:
    """Approximate quadrature weights (mean 1) of a measurement grid: inverse kernel density on the sphere.

    A uniform grid gets equal weights; a grid denser near the horizon gets smaller weights there, so the
    least-squares fit is not biased towards over-sampled regions.
    """
    u = direction_to_vector(az_deg, el_deg).reshape(-1, 3)
    kappa = 1.0 / np.deg2rad(DENSITY_KERNEL_DEG) ** 2
    density = np.empty(len(u))
    for i in range(0, len(u), 1024):  # blocks keep memory at 1024 × M
        density[i : i + 1024] = np.exp(kappa * (u[i : i + 1024] @ u.T - 1.0)).sum(axis=1)
    w = 1.0 / density
    return w / w.mean()


def fit_sh_filters(hrirs: hrir_sets.HrirSet) -> NDArray[np.float64]:
    """Least-squares first-order SN3D spherical-harmonic filters ``[2, 4, N]`` (ear, ACN channel, taps).

    Solves ``min Σ_m w_m ‖h(d_m) - Σ_c Y_c(d_m) H_c‖²`` per ear and tap. Directions that leave a harmonic
    unobserved (e.g. a horizontal-only set and Z) get the minimum-norm (zero) filter for it.
    """
    sh = ambisonics.sh_first_order(hrirs.azimuth, hrirs.elevation)  # [M, 4]
    sw = np.sqrt(sampling_weights(hrirs.azimuth, hrirs.elevation))[:, None]
    m, ears, n = hrirs.ir.shape
    coef, *_ = np.linalg.lstsq(sw * sh, sw * hrirs.ir.reshape(m, ears * n), rcond=None)  # [4, 2N]
    return np.ascontiguousarray(coef.reshape(4, ears, n).transpose(1, 0, 2))


def resample_filters(filters: NDArray, sr_in: int, sr_out: int) -> NDArray[np.float64]:
    """Resample impulse responses along the last axis from ``sr_in`` to ``sr_out`` Hz, keeping their gain.

    ``resample_poly`` keeps waveform amplitude; an impulse response's taps scale with the sample period, so
    the result is multiplied by ``sr_in / sr_out`` (a unit impulse keeps unit DC gain).
    """
    if sr_in == sr_out:
        return np.asarray(filters, dtype=np.float64)
    ratio = Fraction(sr_out, sr_in)
    from scipy.signal import resample_poly  # imported where used: scipy.signal + .ndimage cost ~0.9 CPU-s per job

    out = resample_poly(filters, ratio.numerator, ratio.denominator, axis=-1)
    return out * (sr_in / sr_out)


def fit_magls_filters(hrirs: hrir_sets.HrirSet, sr: int, cutoff_hz: float = MAGLS_CUTOFF_HZ) -> NDArray[np.float64]:
    """Magnitude-least-squares first-order SN3D filters ``[2, 4, n_taps]`` at ``sr`` Hz (Schörkhuber,
    Zaunschirm & Höldrich 2018, "Binaural rendering of Ambisonic signals via magnitude least squares").

    The HRIRs are resampled to ``sr`` and transformed (FFT of ``n_taps`` = twice their length, at least 256).
    Below ``cutoff_hz`` each bin is the (quadrature-weighted) complex least-squares fit of the HRTFs. Above
    it, phase is given up where first order cannot follow it: bin ``k`` fits the measured *magnitudes*
    ``|h(d_m, f_k)|`` with the phase the decoder of bin ``k-1`` produces at each direction, which is the
    one-step form of the iterative MagLS solution and keeps the phase smooth across frequency.
    """
    ir = resample_filters(hrirs.ir, hrirs.sr, sr)  # [M, 2, N]
    n_fft = max(256, 2 * int(2 ** np.ceil(np.log2(ir.shape[-1]))))
    spectra = np.fft.rfft(ir, n_fft, axis=-1)  # [M, 2, K]
    sh = ambisonics.sh_first_order(hrirs.azimuth, hrirs.elevation)  # [M, 4]
    sw = np.sqrt(sampling_weights(hrirs.azimuth, hrirs.elevation))[:, None]
    fit = np.linalg.pinv(sw * sh) * sw.T  # [4, M]: weighted least-squares solve
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    coef = np.zeros((4, 2, len(freqs)), dtype=complex)
    for k, f in enumerate(freqs):
        if f < cutoff_hz or k == 0:
            coef[:, :, k] = fit @ spectra[:, :, k]
        else:
            phase = np.angle(sh @ coef[:, :, k - 1])  # [M, 2]
            coef[:, :, k] = fit @ (np.abs(spectra[:, :, k]) * np.exp(1j * phase))
    return np.ascontiguousarray(np.fft.irfft(coef, n_fft, axis=-1).transpose(1, 0, 2))


@dataclass(frozen=True, eq=False)
class HrirDecoder:
    """Linear first-order ambisonic → binaural decoder (``ls`` or ``magls``): ``filters`` ``[2, 4, n_taps]``
    (ear L/R, ACN W,Y,Z,X) at ``sr`` Hz."""

    filters: NDArray[np.float32]
    sr: int
    sofa_path: str
    n_directions: int
    name: str = "ls"
    params: tuple[tuple[str, object], ...] = ()

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        """Binaural ``[2, n]`` float32 of FOA ``[4, n]`` (at ``self.sr``): ``ear = Σ_c foa_c * H_ear,c``.

        The output has the input's length: the convolution tail is cut, nothing else is compensated (the
        HRIRs' own onset delay is kept).
        """
        a = np.asarray(ambisonics.check_foa(foa_rotated, "foa_rotated"), dtype=np.float64)
        n = a.shape[1]
        if n == 0:
            return np.zeros((2, 0), dtype=np.float32)
        import scipy.fft  # imported where used: 0.3 CPU-s per shard job, which virtual-mic renders never need

        nfft = scipy.fft.next_fast_len(n + self.filters.shape[-1] - 1, real=True)
        spec = scipy.fft.rfft(a, nfft, axis=-1)  # [4, K]
        h = scipy.fft.rfft(self.filters.astype(np.float64), nfft, axis=-1)  # [2, 4, K]
        ears = scipy.fft.irfft(np.einsum("ck,eck->ek", spec, h), nfft, axis=-1)[:, :n]
        return ears.astype(np.float32)


@dataclass(frozen=True, eq=False)
class ParametricHrirDecoder:
    """DirAC-style parametric binaural renderer (Pulkki 2007; Laitinen & Pulkki 2009, binaural DirAC).

    Per STFT bin (Hann frame ``frame``, hop ``frame/2``, zero-padded so the HRIRs fit without wrap-around),
    the active intensity ``I = Re{W* (X, Y, Z)}`` and energy ``E = (|W|² + |X|² + |Y|² + |Z|²)/2`` (SN3D: a
    plane wave has ``|I| = E``) are averaged over ``smoothing_frames`` frames; the direction of ``I`` picks
    the nearest measured HRTF and the diffuseness ``ψ = 1 - |I|/E`` splits the bin::

        ear = sqrt(1 - ψ) · W · HRTF_ear(direction of I)  +  sqrt(ψ) · Σ_c foa_c · D_ear,c

    where ``D`` is the MagLS decoder (``diffuse``), which renders the diffuse part without decorrelators.
    A single plane wave (ψ = 0) is therefore rendered with the measured HRIR of its nearest direction.
    """

    hrtf: NDArray[np.complex64]  # [M, 2, K] measured HRTFs at the STFT bins
    directions: NDArray[np.float64]  # [M, 3] unit vectors of the measurements
    diffuse: HrirDecoder
    sr: int
    sofa_path: str
    frame: int = PARAMETRIC_FRAME
    smoothing_frames: int = PARAMETRIC_SMOOTHING_FRAMES
    name: str = "parametric"

    @property
    def n_fft(self) -> int:
        return 2 * (self.hrtf.shape[-1] - 1)

    @property
    def params(self) -> tuple[tuple[str, object], ...]:
        return (("frame", self.frame), ("hop", self.frame // 2), ("smoothing_frames", self.smoothing_frames),
                ("hrtf_selection", "nearest measured direction"), ("diffuse_decoder", "magls"),
                *self.diffuse.params)

    @functools.cached_property
    def _tree(self):
        import scipy.spatial

        return scipy.spatial.cKDTree(self.directions)

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        """Binaural ``[2, n]`` float32 of FOA ``[4, n]`` at ``self.sr`` (the HRIR onset delay is kept)."""
        a = np.asarray(ambisonics.check_foa(foa_rotated, "foa_rotated"), dtype=np.float64)
        n = a.shape[1]
        if n == 0:
            return np.zeros((2, 0), dtype=np.float32)
        import scipy.fft  # imported where used (see HrirDecoder.__call__)

        frame, hop, nfft = self.frame, self.frame // 2, self.n_fft
        n_frames = (n + frame) // hop + 1  # frames start at -frame/2 so every sample is covered twice
        padded = np.zeros((4, (n_frames - 1) * hop + frame))
        padded[:, frame // 2 : frame // 2 + n] = a
        window = np.hanning(frame + 1)[:-1]  # periodic Hann: shifted copies at hop frame/2 sum to 1
        frames = np.lib.stride_tricks.sliding_window_view(padded, frame, axis=1)[:, ::hop] * window
        spec = scipy.fft.rfft(frames, nfft, axis=-1)  # [4, F, K]
        w, xyz = spec[0], spec[[ambisonics.X, ambisonics.Y, ambisonics.Z]]
        intensity = np.real(np.conj(w)[None] * xyz)  # [3, F, K]
        energy = 0.5 * (np.abs(w) ** 2 + np.sum(np.abs(xyz) ** 2, axis=0))
        if self.smoothing_frames > 1:
            from scipy.ndimage import uniform_filter1d  # imported where used (see resample_poly's import)

            intensity = uniform_filter1d(intensity, self.smoothing_frames, axis=1, mode="nearest")
            energy = uniform_filter1d(energy, self.smoothing_frames, axis=0, mode="nearest")
        norm = np.linalg.norm(intensity, axis=0)
        diffuseness = np.clip(1.0 - norm / np.maximum(energy, 1e-30), 0.0, 1.0)
        unit = np.moveaxis(intensity / np.maximum(norm, 1e-30), 0, -1)  # [F, K, 3]
        _, nearest = self._tree.query(unit.reshape(-1, 3))
        nearest = nearest.reshape(unit.shape[:2])  # [F, K]
        bins = np.arange(self.hrtf.shape[-1])
        direct = np.sqrt(1.0 - diffuseness)[None] * w[None] * np.moveaxis(self.hrtf[nearest, :, bins[None, :]], -1, 0)
        d_spec = scipy.fft.rfft(self.diffuse.filters.astype(np.float64), nfft, axis=-1)  # [2, 4, K]
        diffuse = np.sqrt(diffuseness)[None] * np.einsum("cfk,eck->efk", spec, d_spec)
        out = scipy.fft.irfft(direct + diffuse, nfft, axis=-1)  # [2, F, nfft]
        ears = np.zeros((2, (n_frames - 1) * hop + nfft))
        for i in range(n_frames):  # overlap-add
            ears[:, i * hop : i * hop + nfft] += out[:, i]
        return ears[:, frame // 2 : frame // 2 + n].astype(np.float32)


def _freeze(a: NDArray) -> NDArray:
    a.setflags(write=False)
    return a


@functools.lru_cache(maxsize=16)
def _cached_decoder(path: str, sr: int, mtime_ns: int, decoder: str) -> HrirDecoder | ParametricHrirDecoder:
    hrirs = hrir_sets.read_hrir_sofa(path)
    m = int(hrirs.ir.shape[0])
    if decoder == "ls":
        filters = _freeze(resample_filters(fit_sh_filters(hrirs), hrirs.sr, sr).astype(np.float32))
        return HrirDecoder(filters, sr, path, m, "ls", (("fit", "weighted least squares, all frequencies"),))
    magls = HrirDecoder(_freeze(fit_magls_filters(hrirs, sr).astype(np.float32)), sr, path, m, "magls",
                        (("cutoff_hz", MAGLS_CUTOFF_HZ),))
    if decoder == "magls":
        return magls
    import scipy.fft  # imported where used (see HrirDecoder.__call__)

    ir = resample_filters(hrirs.ir, hrirs.sr, sr)
    n_fft = int(scipy.fft.next_fast_len(PARAMETRIC_FRAME + max(ir.shape[-1], magls.filters.shape[-1]) - 1, real=True))
    n_fft += n_fft % 2
    hrtf = _freeze(np.fft.rfft(ir, n_fft, axis=-1).astype(np.complex64))
    return ParametricHrirDecoder(hrtf, direction_to_vector(hrirs.azimuth, hrirs.elevation), magls, sr, path)


def load_hrir_decoder(
    path: str | os.PathLike, sr: int, decoder: str = DEFAULT_HRIR_DECODER
) -> HrirDecoder | ParametricHrirDecoder:
    """The ``decoder`` (one of :data:`HRIR_DECODERS`) of SOFA file ``path`` (or a set name) at ``sr`` Hz.

    Decoders are cached per (file, sr, file modification time, decoder), so repeated calls are cheap.
    """
    if decoder not in HRIR_DECODERS:
        raise ValueError(f"HRIR decoder must be one of {HRIR_DECODERS}, got {decoder!r}")
    sr = _check_sr(sr)
    p = hrir_sets.resolve_sofa(path).resolve()
    return _cached_decoder(str(p), sr, p.stat().st_mtime_ns, decoder)


# ----------------------------------------------------------------------------------------------- provenance



def binaural_meta(mode: str, sr: int, sofa: str | os.PathLike | None = None,
                  decoder: str = DEFAULT_HRIR_DECODER) -> dict:
    """The ``meta.json`` ``binaural`` record of a render: enough to redo it, and to check it is redone right.

    ``virtual-mic``: the cardioid azimuths. ``hrir``: the SOFA spec as given (``sofa``: a path or set name),
    :func:`avsa_data.hrir_sets.sofa_identity`, the decoder name and its parameters.
    """
    if mode not in MODES:
        raise ValueError(f"binaural mode must be one of {MODES}, got {mode!r}")
    if mode == "virtual-mic":
        return {"mode": mode, "sofa": None, "decoder": "virtual-mic",
                "decoder_params": {"left_azimuth_deg": VIRTUAL_MIC_AZIMUTH, "right_azimuth_deg": -VIRTUAL_MIC_AZIMUTH,
                                   "pattern": "cardioid (W ± Y) / 2"}}
    spec = "default" if sofa is None else str(sofa)
    dec = load_hrir_decoder(spec, sr, decoder)
    return {"mode": mode, "sofa": spec, **hrir_sets.sofa_identity(spec), "decoder": dec.name,
            "decoder_params": {k: v for k, v in dec.params}}



# ----------------------------------------------------------------------------------------------- public API


def binauralize(
    foa_rotated: ArrayLike, sr: int, mode: str = "virtual-mic", sofa: str | os.PathLike | None = None,
    decoder: str = DEFAULT_HRIR_DECODER,
) -> NDArray[np.float32]:
    """Stereo ``[2, n_samples]`` float32 (0 = Left, 1 = Right) for a listener facing the front of ``foa_rotated``.

    ``foa_rotated`` is ambiX FOA ``[4, n_samples]`` (W, Y, Z, X; SN3D) at ``sr`` Hz, already rotated so that
    the viewpoint is the front. ``mode`` is ``"virtual-mic"`` (cardioids at ±90°; ``sofa`` is ignored) or
    ``"hrir"`` (``decoder`` of :data:`HRIR_DECODERS` built from the SOFA file ``sofa``; ``None`` means
    ``"default"``, see :func:`avsa_data.hrir_sets.resolve_sofa`).
    """
    return Binauralizer(mode, sr, sofa, decoder)(foa_rotated)


class Binauralizer:
    """A configured binaural renderer: ``Binauralizer(mode, sr, sofa)(foa_rotated) -> [2, n]`` float32.

    In ``"hrir"`` mode the SOFA file is read (and its decoder built, or taken from the cache) on construction,
    so configuration errors surface immediately.
    """

    def __init__(self, mode: str = "virtual-mic", sr: int = 24000, sofa: str | os.PathLike | None = None,
                 decoder: str = DEFAULT_HRIR_DECODER) -> None:
        if mode not in MODES:
            raise ValueError(f"binaural mode must be one of {MODES}, got {mode!r}")
        self.mode = mode
        self.sr = _check_sr(sr)
        self.decoder = (load_hrir_decoder("default" if sofa is None else sofa, self.sr, decoder)
                        if mode == "hrir" else None)

    def __call__(self, foa_rotated: ArrayLike) -> NDArray[np.float32]:
        if self.decoder is None:
            return virtual_mic_binaural(foa_rotated)
        return self.decoder(foa_rotated)
