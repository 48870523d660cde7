"""Log-spectrograms computed on the training device (GPU when the input is on one), batched.

``Spectrogram`` maps waveforms ``[..., n_samples]`` (float, full scale ±1, sample rate ``sr`` Hz; channels in
the caller's order, e.g. ambiX W, Y, Z, X or stereo L, R) to normalised log-spectrograms ``[..., F, T]``:

1. STFT with a periodic Hann window of ``n_fft`` samples, hop ``sr / frames_per_second`` samples (240 at
   24 kHz, so 1 s → 100 frames), centred frames with zero padding; only the first
   ``n_samples // hop`` frames are kept (as the reference trims librosa's extra frame).
2. Magnitude ``|X|`` (power 1, as in the reference). ``kind="mel128"`` applies a Slaney-style mel filterbank
   (librosa's default: Slaney mel scale, area-normalised triangles, 0 Hz … sr/2), ``n_mels`` = 128 bands;
   ``kind="stft129"`` keeps the linear-frequency bins (n_fft = 256 → 129 bins, supplement Table 1).
3. Log compression ``10·log10(max(S, 1e-10))`` (the reference's ``power_to_db`` applied to a magnitude
   spectrogram), floor at −100.
4. Fixed normalisation ``(L − mean) / std``. The defaults are scalars, −35 / 24 for mel and −31 / 20 for
   STFT, which round the per-bin YT-360 statistics the reference uses. Pass per-bin ``mean``/``std`` arrays
   (length F) to use dataset statistics instead.

Why fixed statistics: statistics estimated over the batch would make a clip's features depend on the other
clips in the batch, and per-utterance or per-channel standardisation would erase the absolute level and the
level differences between channels that carry the spatial information (W vs X/Y/Z, left vs right). A fixed
affine map keeps both and makes every item's features a pure function of its own waveform.

``kind="mel128+iv"`` (first-order ambisonics only): the 4 ``mel128`` channels of W, Y, Z, X followed by 3
**active-intensity-vector** channels in the same 128 mel bands and frames, ``N = 7`` (the DCASE SELD baselines'
"log-mel + IV" input). A magnitude spectrogram drops the sign of Y, Z, X relative to W, so a source in front of
the view and its mirror image behind it (or left / right) give identical log-mel channels; the intensity keeps
that sign. With the complex STFT ``S_c[f, t]`` of channel ``c`` (the same STFT as the log-mel channels):

5. Per bin, the active intensity ``I = Re(conj(S_W) · (S_Y, S_Z, S_X))`` (ACN order, like the input channels)
   divided by the bin's SN3D energy density ``E = (|S_W|² + |S_Y|² + |S_Z|² + |S_X|²) / 2 + ε`` (``ε`` =
   :data:`IV_EPS`). For one plane wave from unit direction ``u`` this is exactly ``(u_y, u_z, u_x)``; for a
   diffuse field it tends to 0; its length is at most 1 (Cauchy–Schwarz) and a silent bin gives 0.
6. Pooled into the mel bands as a weighted **mean** over each band's FFT bins (the ``mel128`` triangles,
   each rescaled to sum to 1), so every band stays in the unit ball whatever its width.
7. Fixed scaling ``IV / IV_STD`` with :data:`IV_STD` = 1/√3, the per-axis standard deviation of a unit vector
   drawn uniformly on the sphere: isotropic single sources give unit-variance channels, like the normalised
   log-mel ones. No mean is removed: 0 means "no direction", and its sign is the information.

Why this keeps the spatial information: every step is a pure function of the item's own bins. The division
by ``E`` is a positive per-bin scalar (it changes the length, never the direction or the sign, and removes the
level, which the log-mel channels already carry); the band mean and the scaling are fixed positive linear
maps. Dataset, batch or per-utterance statistics would subtract a mean direction or rescale each clip
differently, the same objection as for the spectrogram. Where this differs from the DCASE 2020–2024 SELD
baselines (``cls_feature_class.py``: 64 mel bands of the power spectrogram, 20 ms hop, ``E = |S_W|² +
(|S_Y|² + |S_Z|² + |S_X|²) / 3``, the per-bin IV summed with librosa's area-normalised mel weights, then a
``StandardScaler`` fitted on the development set per feature dimension) and why:

* the log-mel part is avsa's ``mel128`` (magnitude, 128 bands, 10 ms hop, 512-point FFT), so ``mel128+iv``
  adds channels to the paper's input and changes nothing else (the ablation varies one thing);
* ``E`` is the SN3D energy density, for which a plane wave gives a unit vector; DCASE's weights give
  ``0.75·u`` on SN3D input. Both are positive per-bin scalars, so the directions are the same;
* a weighted mean instead of the raw area-normalised weights: DCASE's band values scale with
  ``1 / band width`` and need the fitted scaler to be comparable across bands, ours do not;
* fixed statistics instead of a fitted scaler: no pass over a dataset, and the features of an item do not
  depend on which data the statistics came from (docs/DEVIATIONS.md).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from avsa_train.config import IV_KINDS, SPECTROGRAM_KINDS

#: Default n_fft per kind: 512 for mel (the authors' configs), 256 for the 129-bin STFT (Table 1).
DEFAULT_N_FFT = {"mel128": 512, "stft129": 256, "mel128+iv": 512}
#: Default (mean, std) of the log-spectrogram, in 10·log10 units of magnitude.
DEFAULT_STATS = {"mel128": (-35.0, 24.0), "stft129": (-31.0, 20.0), "mel128+iv": (-35.0, 24.0)}
LOG_FLOOR = 1e-10
#: Intensity-vector channels an IV kind adds (Y, Z, X).
IV_CHANNELS = 3
#: Energy floor ε of the per-bin intensity normalisation, in squared STFT-magnitude units of full-scale audio
#: (a bin of a full-scale sine has |S|² ≈ (n_fft/4)² ≈ 1.6e4 at n_fft 512): bins below it count as silent.
IV_EPS = 1e-8
#: Fixed scale of the IV channels: the per-axis std of a unit vector uniform on the sphere (1/√3).
IV_STD = 1.0 / np.sqrt(3.0)
#: ambiX channel count an IV kind needs (W, Y, Z, X).
FOA_CHANNELS = 4


def feature_channels(kind: str, audio_channels: int) -> int:
    """Channels N of the features of ``kind`` for ``audio_channels`` waveform channels: the same number for
    ``mel128`` / ``stft129``; 4 + 3 = 7 for ``mel128+iv``, which needs the 4 ambiX channels (ValueError
    otherwise)."""
    if kind not in SPECTROGRAM_KINDS:
        raise ValueError(f"spectrogram kind must be one of {SPECTROGRAM_KINDS}, got {kind!r}")
    if kind in IV_KINDS:
        if audio_channels != FOA_CHANNELS:
            raise ValueError(
                f"--spec {kind} needs first-order ambisonics (4 channels W, Y, Z, X: --audio-format ambi), "
                f"got {audio_channels} channel(s)"
            )
        return FOA_CHANNELS + IV_CHANNELS
    return audio_channels


_F_SP = 200.0 / 3.0  # Slaney mel scale: 3 mels per 200 Hz below 1 kHz
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(freq_hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear (3 mels / 200 Hz) below 1 kHz, logarithmic above. Hz → mels."""
    f = np.asarray(freq_hz, dtype=np.float64)
    linear = f / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, linear)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of :func:`hz_to_mel`. Mels → Hz."""
    m = np.asarray(mels, dtype=np.float64)
    linear = m * _F_SP
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log, linear)


def mel_filterbank(sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None) -> np.ndarray:
    """Slaney-normalised triangular mel filterbank ``[n_mels, n_fft // 2 + 1]`` (float32).

    Band ``k`` rises from mel point ``k`` to ``k+1`` and falls to ``k+2``, with ``n_mels + 2`` points evenly
    spaced in mels over ``[fmin, fmax]`` Hz (``fmax`` defaults to ``sr / 2``); each triangle is scaled by
    ``2 / (f_{k+2} − f_k)`` so that its area is constant. Bands narrower than the FFT bin spacing can be empty
    (all zeros), as in librosa.
    """
    fmax = sr / 2.0 if fmax is None else fmax
    if not 0.0 <= fmin < fmax <= sr / 2.0:
        raise ValueError(f"need 0 <= fmin < fmax <= sr/2, got fmin={fmin}, fmax={fmax}, sr={sr}")
    fft_hz = np.linspace(0.0, sr / 2.0, n_fft // 2 + 1)
    edges_hz = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges_hz)
    rising = (fft_hz[None, :] - edges_hz[:-2, None]) / widths[:-1, None]
    falling = (edges_hz[2:, None] - fft_hz[None, :]) / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(rising, falling))
    weights *= (2.0 / (edges_hz[2:] - edges_hz[:-2]))[:, None]
    return weights.astype(np.float32)


def _stat_buffer(value: float | Sequence[float] | np.ndarray, n_bins: int, name: str) -> torch.Tensor:
    arr = np.asarray(value, dtype=np.float32)
    if arr.ndim == 0:
        arr = np.full(n_bins, float(arr), dtype=np.float32)
    if arr.shape != (n_bins,):
        raise ValueError(f"{name} must be a scalar or have {n_bins} values (one per frequency bin), got {arr.shape}")
    if name == "std" and np.any(arr <= 0):
        raise ValueError("std must be > 0")
    return torch.from_numpy(arr)


class Spectrogram(nn.Module):
    """Normalised log-spectrogram ``[..., n_samples] → [..., F, T]``; see the module docstring.

    For ``kind="mel128+iv"`` the input must be ambiX FOA ``[..., 4, n_samples]`` (W, Y, Z, X) and the output is
    ``[..., 7, F, T]``: the 4 log-mel channels, then the intensity vector's Y, Z, X components.

    Args:
        kind: ``"mel128"`` (mel bands), ``"stft129"`` (linear-frequency STFT bins) or ``"mel128+iv"``.
        sr: sample rate in Hz (24000).
        n_fft: FFT size in samples (default 512 for mel, 256 for STFT → 129 bins).
        frames_per_second: spectrogram frame rate in Hz (100); ``sr`` must be a multiple of it.
        n_mels: mel bands (mel only).
        mean, std: normalisation statistics, scalars or one value per frequency bin (defaults: DEFAULT_STATS).

    Attributes:
        n_bins: F, the number of frequency rows of the output. hop: hop size in samples.
        with_iv: whether the output has the 3 intensity-vector channels.
    """

    def __init__(
        self,
        kind: str = "mel128",
        sr: int = 24000,
        n_fft: int | None = None,
        frames_per_second: int = 100,
        n_mels: int = 128,
        mean: float | Sequence[float] | np.ndarray | None = None,
        std: float | Sequence[float] | np.ndarray | None = None,
    ):
        super().__init__()
        if kind not in SPECTROGRAM_KINDS:
            raise ValueError(f"kind must be one of {SPECTROGRAM_KINDS}, got {kind!r}")
        if frames_per_second <= 0 or sr % frames_per_second != 0:
            raise ValueError(f"sr ({sr} Hz) must be a positive multiple of frames_per_second ({frames_per_second})")
        self.kind, self.sr = kind, sr
        self.with_iv = kind in IV_KINDS
        self.n_fft = DEFAULT_N_FFT[kind] if n_fft is None else n_fft
        self.hop = sr // frames_per_second
        if kind.startswith("mel"):
            fb = mel_filterbank(sr, self.n_fft, n_mels)
            self.register_buffer("filterbank", torch.from_numpy(fb), persistent=False)
            self.n_bins = n_mels
        else:
            self.filterbank = None
            self.n_bins = self.n_fft // 2 + 1
        if self.with_iv:
            # each band's triangle rescaled to sum to 1 (a weighted mean); bands with no FFT bin stay 0
            sums = fb.sum(axis=1, keepdims=True)
            band_mean = np.divide(fb, sums, out=np.zeros_like(fb), where=sums > 0)
            self.register_buffer("band_mean", torch.from_numpy(band_mean), persistent=False)
        mean = DEFAULT_STATS[kind][0] if mean is None else mean
        std = DEFAULT_STATS[kind][1] if std is None else std
        self.register_buffer("mean", _stat_buffer(mean, self.n_bins, "mean"), persistent=False)
        self.register_buffer("std", _stat_buffer(std, self.n_bins, "std"), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames T for ``n_samples`` samples: ``n_samples // hop`` (1 s at 24 kHz → 100)."""
        return n_samples // self.hop

    def out_channels(self, audio_channels: int) -> int:
        """Feature channels N for ``audio_channels`` waveform channels (:func:`feature_channels`)."""
        return feature_channels(self.kind, audio_channels)

    def stft(self, wave: torch.Tensor) -> torch.Tensor:
        """Complex STFT ``[..., n_samples] → [..., n_fft // 2 + 1, T]`` (step 1 of the module docstring)."""
        if wave.ndim < 1 or not torch.is_floating_point(wave):
            raise ValueError(f"waveform must be a float tensor [..., n_samples], got {wave.dtype} {tuple(wave.shape)}")
        n = wave.shape[-1]
        t = self.n_frames(n)
        if t < 1:
            raise ValueError(f"waveform has {n} samples, fewer than one hop ({self.hop})")
        spec = torch.stft(
            wave.reshape(-1, n),
            self.n_fft,
            hop_length=self.hop,
            win_length=self.n_fft,
            window=self.window.to(wave.device, wave.dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        )[..., :t]
        return spec.reshape(*wave.shape[:-1], *spec.shape[-2:])

    def log_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """Steps 2–4: complex STFT ``[..., n_fft // 2 + 1, T]`` → normalised log-(mel-)magnitudes ``[..., F, T]``."""
        mag = spec.abs()
        dev, dtype = mag.device, mag.dtype
        if self.filterbank is not None:
            mag = self.filterbank.to(dev, dtype) @ mag
        logspec = 10.0 * torch.log10(mag.clamp_min(LOG_FLOOR))
        return (logspec - self.mean.to(dev, dtype)[:, None]) / self.std.to(dev, dtype)[:, None]

    def intensity_vector(self, spec: torch.Tensor) -> torch.Tensor:
        """Steps 5–7: complex FOA STFT ``[..., 4, n_fft // 2 + 1, T]`` (W, Y, Z, X) → the scaled mel-band active
        intensity ``[..., 3, F, T]`` (Y, Z, X components; a plane wave from unit direction ``u`` gives
        ``(u_y, u_z, u_x) / IV_STD`` in every band it excites)."""
        if spec.ndim < 3 or spec.shape[-3] != FOA_CHANNELS:
            raise ValueError(f"intensity vector needs FOA [..., 4 (W, Y, Z, X), F, T], got {tuple(spec.shape)}")
        w, xyz = spec[..., :1, :, :], spec[..., 1:, :, :]
        active = (w.conj() * xyz).real  # [..., 3, F_lin, T]
        energy = 0.5 * (spec.real.square() + spec.imag.square()).sum(dim=-3, keepdim=True) + IV_EPS
        per_bin = active / energy
        band_mean = self.band_mean.to(per_bin.device, per_bin.dtype)
        return (band_mean @ per_bin) / IV_STD

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave``: float ``[..., n_samples]`` (``[..., 4, n_samples]`` for ``mel128+iv``) on any device →
        ``[..., F, T]`` (``[..., 7, F, T]``) on the same device."""
        if self.with_iv and (wave.ndim < 2 or wave.shape[-2] != FOA_CHANNELS):
            raise ValueError(
                f"--spec {self.kind} needs first-order ambisonics [..., 4 (W, Y, Z, X), n_samples], "
                f"got {tuple(wave.shape)}"
            )
        spec = self.stft(wave)
        out = self.log_spectrogram(spec)
        if self.with_iv:
            out = torch.cat([out, self.intensity_vector(spec)], dim=-3)
        return out
