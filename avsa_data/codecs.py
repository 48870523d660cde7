"""Member codecs of the shard format: JPEG clips, FLAC audio, PNG masks, JSON metadata.

Every encoder is deterministic (same array → same bytes) so shards are reproducible byte for byte.

* Video clip: the T frames of one viewpoint stacked **vertically** into one baseline JPEG of
  ``(T·H) × W × 3`` (RGB, 4:2:0). 112 is a multiple of the 16-pixel JPEG MCU, so frames never bleed into
  each other. One member per clip keeps the tar overhead small and stays viewable in any image viewer.
* Audio: FLAC, 16-bit (default) or 24-bit integer PCM, channels in the order documented per member
  (docs/FORMAT.md). Decoded values are float32 in [-1, 1) and must be multiplied by the sample's
  ``audio_scale`` (meta.json). Every audio member carries Vorbis comments that say what its channels are
  (:data:`FLAC_TAGS`), including a ``WAVEFORMATEXTENSIBLE_CHANNEL_MASK``: see :func:`flac_tags`.
* Masks: 8-bit (or 16-bit when a class id exceeds 255) greyscale PNG; confidences as uint8 = round(255·c).

Decoders given the shape a member must have (``shape=``, from :func:`avsa_data.shard_format.member_shape`) read the
member's header first and raise :class:`MemberError` on a mismatch **before** decoding, so a small member
that declares a huge image or stream (a decompression bomb) never allocates more than its expected size.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct

import numpy as np
import simplejpeg
import soundfile as sf
from numpy.typing import NDArray

FLAC_SUBTYPES = {16: "PCM_16", 24: "PCM_24"}
#: Largest value representable in a 16-bit FLAC (full scale is 1.0); also safe for 24-bit.
FLAC_MAX = 1.0 - 2.0**-15
#: Greyscale PNG modes of masks as Pillow opens them (8-bit; 16-bit in its several spellings).
_MASK_MODES = ("L", "I;16", "I;16B", "I;16L", "I")


class MemberError(ValueError):
    """A member whose bytes do not decode to what its sample's ``meta.json`` declares (one line, no traceback)."""


def encode_clip_jpeg(frames: NDArray[np.uint8], quality: int = 90) -> bytes:
    """Encode ``[T, H, W, 3]`` uint8 RGB frames as one vertically tiled JPEG."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected uint8 frames shaped [T, H, W, 3], got {frames.dtype} {frames.shape}")
    t, h, w, _ = frames.shape
    tiled = np.ascontiguousarray(frames.reshape(t * h, w, 3))
    return simplejpeg.encode_jpeg(tiled, quality=int(quality), colorspace="RGB", colorsubsampling="420")


def jpeg_size(data: bytes) -> tuple[int, int]:
    """``(height, width)`` from a JPEG's header, without decoding it."""
    try:
        h, w, _, _ = simplejpeg.decode_jpeg_header(data)
    except ValueError as e:
        raise MemberError(f"not a readable JPEG ({_first_line(e)})") from None
    return int(h), int(w)


def _check_jpeg(data: bytes, shape: tuple[int, ...] | None) -> None:
    if shape is not None and jpeg_size(data) != tuple(shape[:2]):
        h, w = jpeg_size(data)
        raise MemberError(f"JPEG header says {h}×{w} pixels, expected {shape[0]}×{shape[1]} (refused before decoding)")


def decode_clip_jpeg(data: bytes, num_frames: int, shape: tuple[int, ...] | None = None) -> NDArray[np.uint8]:
    """Decode a vertically tiled JPEG into ``[T, H, W, 3]`` uint8 RGB frames (``shape``: the expected
    ``(T·H, W, 3)``, checked against the header before decoding)."""
    _check_jpeg(data, shape)
    img = _decode_jpeg(data)
    th, w, _ = img.shape
    if th % num_frames:
        raise ValueError(f"tiled clip height {th} is not a multiple of T={num_frames}")
    return img.reshape(num_frames, th // num_frames, w, 3)


def encode_jpeg(image: NDArray[np.uint8], quality: int = 90) -> bytes:
    """Encode one ``[H, W, 3]`` uint8 RGB image."""
    return simplejpeg.encode_jpeg(np.ascontiguousarray(image), quality=int(quality), colorspace="RGB")


def decode_jpeg(data: bytes, shape: tuple[int, ...] | None = None) -> NDArray[np.uint8]:
    """Decode one ``[H, W, 3]`` uint8 RGB JPEG (``shape``: checked against the header before decoding)."""
    _check_jpeg(data, shape)
    return _decode_jpeg(data)


def _decode_jpeg(data: bytes) -> NDArray[np.uint8]:
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", strict=True)
    except ValueError as e:  # corrupt entropy-coded data, premature end, …
        raise MemberError(f"corrupt JPEG ({_first_line(e)})") from None


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


#: Channel mask of the 4-channel ambiX members: the four top speakers TFL+TFC+TFR+TBL (0xF000). Not a
#: speaker claim but a guard: FLAC's default for 4 channels is quad (FL FR BL BR), and the WAVEFORMATEXTENSIBLE
#: value for "no speaker positions", 0x0, is rejected by ffmpeg ("Invalid value", then quad). With this mask
#: ffmpeg reports "4 channels (TFL+TFC+TFR+TBL)" and refuses an automatic downmix (``-ac 2``) instead of
#: mixing W/Y/Z/X as loudspeaker feeds; the AMBISONIC_* tags say what the channels really are.
AMBIX_CHANNEL_MASK = 0xF000
#: Vorbis comments of each kind of audio member (``foa`` also for the unrotated ``m{m}.foa.flac``).
FLAC_TAGS: dict[str, dict[str, str]] = {
    "foa": {
        "WAVEFORMATEXTENSIBLE_CHANNEL_MASK": f"0x{AMBIX_CHANNEL_MASK:04X}",
        "AMBISONIC": "ambiX",
        "AMBISONIC_ORDER": "1",
        "AMBISONIC_CHANNEL_ORDERING": "ACN",
        "AMBISONIC_NORMALIZATION": "SN3D",
        "CHANNELS": "W,Y,Z,X",
        "COMMENT": "first-order ambisonics (ambiX: ACN W,Y,Z,X, SN3D), not loudspeaker feeds",
    },
    "mono": {"WAVEFORMATEXTENSIBLE_CHANNEL_MASK": "0x0004", "CHANNELS": "M",
             "COMMENT": "mono: first-order cardioid (W + X) / 2 of the rotated FOA"},
    "stereo": {"WAVEFORMATEXTENSIBLE_CHANNEL_MASK": "0x0003", "CHANNELS": "left,right",
               "COMMENT": "binaural stereo: left ear, right ear"},
}


def flac_tags(render: str) -> dict[str, str]:
    """The Vorbis comments of an audio member of kind ``render`` (``foa``, ``mono`` or ``stereo``)."""
    if render not in FLAC_TAGS:
        raise ValueError(f"no FLAC tags for render {render!r}; choose from {tuple(FLAC_TAGS)}")
    return dict(FLAC_TAGS[render])


def _with_vorbis_comments(flac: bytes, tags: dict[str, str], vendor: str = "avsa") -> bytes:
    """``flac`` with its VORBIS_COMMENT metadata block replaced by one holding ``tags`` (FLAC format, RFC 9639)."""
    if flac[:4] != b"fLaC":
        raise ValueError("not a FLAC stream")
    pos, blocks = 4, []
    while True:
        header = flac[pos]
        length = int.from_bytes(flac[pos + 1 : pos + 4], "big")
        blocks.append((header & 0x7F, flac[pos + 4 : pos + 4 + length]))
        pos += 4 + length
        if header & 0x80:  # last metadata block
            break
    entries = [f"{k}={v}".encode() for k, v in tags.items()]
    body = struct.pack("<I", len(vendor)) + vendor.encode() + struct.pack("<I", len(entries))
    body += b"".join(struct.pack("<I", len(e)) + e for e in entries)
    blocks = [b for b in blocks if b[0] != 4]  # 4 = VORBIS_COMMENT
    blocks.insert(1, (4, body))  # STREAMINFO must stay first
    out = bytearray(b"fLaC")
    for i, (kind, data) in enumerate(blocks):
        out += bytes([kind | (0x80 if i == len(blocks) - 1 else 0)]) + len(data).to_bytes(3, "big") + data
    return bytes(out) + flac[pos:]


def encode_flac(audio: NDArray, sr: int, bits: int = 16, tags: dict[str, str] | None = None) -> bytes:
    """Encode ``[C, n_samples]`` float audio (|x| ≤ 1) as ``bits``-bit (16 or 24) integer FLAC at ``sr`` Hz.

    FLAC is lossless: decoding returns exactly the ``bits``-bit quantised values. ``tags`` become the
    stream's Vorbis comments (e.g. :func:`flac_tags`).
    """
    if bits not in FLAC_SUBTYPES:
        raise ValueError(f"FLAC bit depth must be 16 or 24, got {bits}")
    a = np.asarray(audio)
    if a.dtype != np.float32 or bits != 16:  # float32 · 2^15 and its clip bounds are exact: no need for float64
        a = a.astype(np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected audio shaped [channels, n_samples], got {a.shape}")
    peak = float(np.max(np.abs(a))) if a.size else 0.0
    if peak > 1.0:
        raise ValueError(f"audio peak {peak:.3f} exceeds full scale 1.0; scale it (see audio_scale)")
    buf = io.BytesIO()
    clipped = np.clip(a.T, -1.0, FLAC_MAX) if peak > FLAC_MAX else a.T
    if bits == 16:
        # Quantise as libsndfile does (round half to even of x·2^15) and hand it integers: the same bytes,
        # without libsndfile's slower float path (about 40 % of the FLAC encoding time).
        clipped = np.rint(clipped * 32768.0).astype(np.int16)
    sf.write(buf, clipped, int(sr), format="FLAC", subtype=FLAC_SUBTYPES[bits])
    return _with_vorbis_comments(buf.getvalue(), tags) if tags else buf.getvalue()


def decode_flac(data: bytes, shape: tuple[int, int] | None = None, sr: int | None = None,
                bits: int | None = None) -> tuple[NDArray[np.float32], int]:
    """Decode FLAC bytes → (``[C, n_samples]`` float32, sample rate in Hz).

    With ``shape`` (``(C, n)``), ``sr`` or ``bits``, the stream info (channels, length, rate, bit depth) is
    checked before decoding, and at most ``n + 1`` frames are decoded whatever the header claims.
    """
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:  # one parse of the stream info, for the checks and the read
            frames = -1
            if shape is not None or sr is not None or bits is not None:
                if f.format != "FLAC":
                    raise MemberError(f"not FLAC but {f.format}")
                if shape is not None and (f.channels, f.frames) != tuple(shape):
                    raise MemberError(f"FLAC stream info says {f.channels} channels × {f.frames} samples, "
                                      f"expected {shape[0]} × {shape[1]} (refused before decoding)")
                if sr is not None and f.samplerate != sr:
                    raise MemberError(f"FLAC sample rate {f.samplerate} Hz, expected {sr} Hz")
                if bits is not None and f.subtype != FLAC_SUBTYPES.get(bits):
                    raise MemberError(f"FLAC sample format {f.subtype}, expected {FLAC_SUBTYPES.get(bits)}")
                if shape is not None:
                    frames = int(shape[1]) + 1  # one more than declared: a stream longer than its header shows
            # integers from libFLAC, scaled here: libsndfile's own float conversion is 1.3× slower per 16-bit
            # member and gives the same values (k / 2^15, or k / 2^31 for 24-bit samples left-aligned in int32)
            wide = f.subtype not in ("PCM_S8", "PCM_U8", "PCM_16")
            a, rate = f.read(frames, dtype="int32" if wide else "int16", always_2d=True), f.samplerate
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise MemberError(f"not a readable FLAC ({_first_line(e)})") from None
    if shape is not None and a.shape[::-1] != tuple(shape):
        raise MemberError(f"FLAC decodes to {a.shape[1]} channels × {a.shape[0]} samples, expected "
                          f"{shape[0]} × {shape[1]}")
    out = np.ascontiguousarray(a.T, dtype=np.float32)  # [C, n]
    out *= np.float32(2.0**-31 if wide else 2.0**-15)
    return out, int(rate)


def encode_png(array: NDArray) -> bytes:
    """Lossless greyscale PNG of a 2-D uint8 or uint16 array (no metadata chunks, deterministic; zlib level 6).

    Written with OpenCV's libpng (1.2× faster than Pillow for the 32 small masks of a sample; Pillow is then
    imported only by readers, :func:`decode_png`)."""
    import cv2

    a = np.asarray(array)
    if a.ndim != 2:
        raise ValueError(f"expected a 2-D mask, got shape {a.shape}")
    if a.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"masks must be uint8 or uint16, got {a.dtype}")
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(a), [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError(f"OpenCV could not encode a {a.dtype} {a.shape} PNG")
    return buf.tobytes()


def decode_png(data: bytes, shape: tuple[int, int] | None = None) -> NDArray:
    """Decode a greyscale PNG mask → 2-D uint8 or uint16 (``shape``: ``(H, W)`` and a greyscale mode are
    checked against the header before decoding)."""
    from PIL import Image  # imported where used: a shard job writes PNGs (encode_png) but never reads one

    try:
        img = Image.open(io.BytesIO(data), formats=["PNG"])
        if shape is not None:
            if (img.height, img.width) != tuple(shape):
                raise MemberError(f"PNG header says {img.height}×{img.width} pixels, expected {shape[0]}×{shape[1]} "
                                  f"(refused before decoding)")
            if img.mode not in _MASK_MODES:
                raise MemberError(f"PNG mode {img.mode}, expected 8- or 16-bit greyscale")
        a = np.asarray(img)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        if isinstance(e, MemberError):
            raise
        raise MemberError(f"not a readable PNG ({_first_line(e)})") from None
    if img.mode.startswith("I;16") or a.dtype.itemsize > 1:
        return a.astype(np.uint16)
    return a.astype(np.uint8)


def class_dtype(classes: NDArray) -> type:
    """The mask dtype of a class-id map: uint8 when all its ids fit in 0..255 (or it is empty), else uint16."""
    return np.uint8 if not classes.size or int(classes.max()) <= 255 else np.uint16


def confidence_to_uint8(conf: NDArray) -> NDArray[np.uint8]:
    """Confidence in [0, 1] → uint8 ``round(255 · c)``."""
    return np.clip(np.rint(np.asarray(conf, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def confidence_from_uint8(conf: NDArray[np.uint8]) -> NDArray[np.float32]:
    return np.asarray(conf, dtype=np.float32) / 255.0


def encode_json(obj: object) -> bytes:
    """Canonical JSON (sorted keys, no spaces) so equal metadata gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode("utf-8")


def decode_json(data: bytes) -> dict:
    return json.loads(data.decode("utf-8"))


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def meta_digest(meta: dict) -> str:
    """The ``meta_sha256`` of a sample: sha256 of the canonical JSON (:func:`encode_json`) of ``meta`` without
    its ``meta_sha256`` field (format_version 2)."""
    return sha256_hex(encode_json({k: v for k, v in meta.items() if k != "meta_sha256"}))
