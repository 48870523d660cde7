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
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

SPECTROGRAM_KINDS = ("mel128", "stft129")
#: Default n_fft per kind: 512 for mel (the authors' configs), 256 for the 129-bin STFT (Table 1).
DEFAULT_N_FFT = {"mel128": 512, "stft129": 256}
#: Default (mean, std) of the log-spectrogram, in 10·log10 units of magnitude.
DEFAULT_STATS = {"mel128": (-35.0, 24.0), "stft129": (-31.0, 20.0)}
LOG_FLOOR = 1e-10

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

    Args:
        kind: ``"mel128"`` (mel bands) or ``"stft129"`` (linear-frequency STFT bins).
        sr: sample rate in Hz (24000).
        n_fft: FFT size in samples (default 512 for mel, 256 for STFT → 129 bins).
        frames_per_second: spectrogram frame rate in Hz (100); ``sr`` must be a multiple of it.
        n_mels: mel bands (mel only).
        mean, std: normalisation statistics, scalars or one value per frequency bin (defaults: DEFAULT_STATS).

    Attributes:
        n_bins: F, the number of frequency rows of the output. hop: hop size in samples.
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
        self.n_fft = DEFAULT_N_FFT[kind] if n_fft is None else n_fft
        self.hop = sr // frames_per_second
        if kind == "mel128":
            self.register_buffer(
                "filterbank", torch.from_numpy(mel_filterbank(sr, self.n_fft, n_mels)), persistent=False
            )
            self.n_bins = n_mels
        else:
            self.filterbank = None
            self.n_bins = self.n_fft // 2 + 1
        mean = DEFAULT_STATS[kind][0] if mean is None else mean
        std = DEFAULT_STATS[kind][1] if std is None else std
        self.register_buffer("mean", _stat_buffer(mean, self.n_bins, "mean"), persistent=False)
        self.register_buffer("std", _stat_buffer(std, self.n_bins, "std"), persistent=False)
        self.register_buffer("window", torch.hann_window(self.n_fft, periodic=True), persistent=False)

    def n_frames(self, n_samples: int) -> int:
        """Frames T for ``n_samples`` samples: ``n_samples // hop`` (1 s at 24 kHz → 100)."""
        return n_samples // self.hop

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """``wave``: float ``[..., n_samples]`` on any device → ``[..., F, T]`` on the same device."""
        if wave.ndim < 1 or not torch.is_floating_point(wave):
            raise ValueError(f"waveform must be a float tensor [..., n_samples], got {wave.dtype} {tuple(wave.shape)}")
        n = wave.shape[-1]
        t = self.n_frames(n)
        if t < 1:
            raise ValueError(f"waveform has {n} samples, fewer than one hop ({self.hop})")
        lead = wave.shape[:-1]
        dev, dtype = wave.device, wave.dtype
        x = wave.reshape(-1, n)
        spec = torch.stft(
            x,
            self.n_fft,
            hop_length=self.hop,
            win_length=self.n_fft,
            window=self.window.to(dev, dtype),
            center=True,
            pad_mode="constant",
            return_complex=True,
        ).abs()[..., :t]
        if self.filterbank is not None:
            spec = self.filterbank.to(dev, dtype) @ spec
        logspec = 10.0 * torch.log10(spec.clamp_min(LOG_FLOOR))
        out = (logspec - self.mean.to(dev, dtype)[:, None]) / self.std.to(dev, dtype)[:, None]
        return out.reshape(*lead, self.n_bins, t)
