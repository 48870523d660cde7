"""avsa_data.media: probing, frame streaming, audio decoding with channel order, sidecars and clear errors."""

from __future__ import annotations

import signal
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from avsa_data import media
from avsa_data.ambisonics import ambix_to_fuma
from avsa_data.media import commands, frame_pipe, probing

SR = 16000
FPS = 8.0
W, H = 64, 32
TONES = (300.0, 500.0, 700.0, 1100.0)  # one tone per channel: reveals any reordering


def tones(n: int, sr: int = SR, freqs=TONES) -> np.ndarray:
    t = np.arange(n) / sr
    return np.stack([0.2 * np.sin(2 * np.pi * f * t) for f in freqs]).astype(np.float32)


def solid_frames(n: int) -> list[np.ndarray]:
    """Frame i is a flat colour whose red channel encodes i (easy to recognise after lossy coding)."""
    return [np.full((H, W, 3), (20 + 25 * i, 128, 255 - 25 * i), dtype=np.uint8) for i in range(n)]


def peak_freqs(audio: np.ndarray, sr: int) -> list[float]:
    spec = np.abs(np.fft.rfft(audio, axis=1))
    f = np.fft.rfftfreq(audio.shape[1], 1.0 / sr)
    return [float(f[np.argmax(s)]) for s in spec]


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    frames = solid_frames(8)  # 1 s at 8 fps
    audio = tones(SR)
    return {
        "pcm": media.write_video(d / "pcm.mp4", frames, FPS, (W, H), audio=audio, sr=SR, audio_codec="pcm"),
        "aac": media.write_video(d / "aac.mp4", frames, FPS, (W, H), audio=audio, sr=SR, audio_codec="aac"),
        "silent": media.write_video(d / "silent.mp4", frames, FPS, (W, H)),
        "wav": media.write_audio(d / "side.wav", audio, SR),
        "flac": media.write_audio(d / "side.flac", audio, SR),
        "dir": d,
    }


def test_ffmpeg_comes_from_imageio_ffmpeg():
    import imageio_ffmpeg

    assert media.ffmpeg_exe() == imageio_ffmpeg.get_ffmpeg_exe()
    assert Path(media.ffmpeg_exe()).is_file()


@pytest.mark.parametrize("codec, name", [("pcm", "pcm_s16le"), ("aac", "aac")])
def test_probe_reports_streams(clips, codec, name):
    pr = media.probe(clips[codec])
    assert "mp4" in pr.format_name
    assert pr.has_video and pr.has_audio
    assert [s.kind for s in pr.streams] == ["video", "audio"]
    assert pr.video.codec == "h264"
    assert (pr.width, pr.height) == (W, H)
    assert pr.fps == pytest.approx(FPS)
    assert pr.audio.codec == name
    assert pr.sample_rate == SR
    assert pr.channels == 4
    assert pr.video_duration == pytest.approx(1.0, abs=1e-6)
    assert pr.audio_duration == pytest.approx(1.0, abs=0.01)
    assert pr.duration == pytest.approx(1.0, abs=1e-6)
    assert pr.video.packets == 8


def test_probe_video_only_and_sidecar(clips):
    pr = media.probe(clips["silent"])
    assert pr.has_video and not pr.has_audio and pr.channels is None
    side = media.probe(clips["wav"])
    assert not side.has_video and side.audio.codec == "pcm_s16le"
    assert side.channels == 4 and side.sample_rate == SR
    assert side.audio_duration == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("which", ["pcm", "aac", "wav", "flac"])
@pytest.mark.parametrize("sr", [SR, 24000])
def test_read_audio_keeps_channel_order(clips, which, sr):
    audio = media.read_audio(clips[which], sr)
    assert audio.dtype == np.float32 and audio.shape[0] == 4
    assert audio.shape[1] == pytest.approx(sr, abs=2)  # 1 s, resampled by ffmpeg
    assert peak_freqs(audio, sr) == pytest.approx(list(TONES), abs=1.5)
    rms = np.sqrt(np.mean(audio[:, sr // 10 : -sr // 10] ** 2, axis=1))
    np.testing.assert_allclose(rms, 0.2 / np.sqrt(2), rtol=0.1)


def test_pcm_roundtrip_is_16_bit_exact(clips):
    audio = media.read_audio(clips["pcm"], SR)
    np.testing.assert_allclose(audio, tones(SR), atol=1.0 / 32768 + 1e-7)


def test_read_foa_converts_fuma(tmp_path):
    ambix = tones(SR) * np.array([1.0, 0.5, -0.3, 0.8], dtype=np.float32)[:, None]
    path = media.write_audio(tmp_path / "fuma.wav", ambix_to_fuma(ambix), SR)
    back = media.read_foa(path, SR, "fuma")
    np.testing.assert_allclose(back, ambix, atol=3e-4)
    assert media.read_foa(path, SR, "ambix").shape == (4, SR)
    with pytest.raises(ValueError, match="ambi_format"):
        media.read_foa(path, SR, "acn")


def test_iter_video_frames_native_resampled_and_scaled(clips):
    frames = list(media.iter_video_frames(clips["pcm"], FPS))
    assert len(frames) == 8
    assert all(f.shape == (H, W, 3) and f.dtype == np.uint8 for f in frames)
    reds = [float(f[..., 0].mean()) for f in frames]
    np.testing.assert_allclose(reds, [20 + 25 * i for i in range(8)], atol=6)
    half = list(media.iter_video_frames(clips["pcm"], FPS / 2, size=(32, 16)))
    assert len(half) == 4 and half[0].shape == (16, 32, 3)
    np.testing.assert_allclose([f[..., 0].mean() for f in half], [20 + 50 * i for i in range(4)], atol=6)


def test_select_expression_forms():
    assert media.select_expression([3]) == "between(n,3,3)"
    assert media.select_expression([5, 1, 2]) == "between(n,1,2)+between(n,5,5)"
    assert media.select_expression([0, 1, 4, 5, 8, 9]) == "between(n,0,9)*lt(mod(n-0,4),2)"  # a stride plan
    with pytest.raises(ValueError):
        media.select_expression([])


@pytest.mark.parametrize("indices", [[1, 2, 5, 6], [0, 3, 4, 7], [6, 7, 9, 40]])
def test_iter_video_frames_at_yields_exactly_the_asked_frames(clips, indices):
    """The select filter (its commas escaped in the filter graph) keeps exactly frames ``indices`` of the full
    decode, with their own content; indices past the end (8 frames) are not yielded."""
    every = list(media.iter_video_frames(clips["pcm"], FPS))
    got = list(media.iter_video_frames_at(clips["pcm"], FPS, indices))
    assert [i for i, _ in got] == [i for i in indices if i < len(every)]
    for i, frame in got:
        np.testing.assert_array_equal(frame, every[i])


def test_every_reading_command_puts_its_options_where_ffmpeg_applies_them(clips):
    """ffmpeg ignores options after the output ('Trailing option(s) found'): run each reading command with
    warnings shown and check it has none (e.g. the decoder's ``-threads`` must come before ``-i``)."""
    path = str(clips["pcm"])
    for cmd in (
        commands.probe(path, scan_packets=True),
        commands.decode_audio(path, sr=SR),
        commands.decode_audio(path, frames=1),
        commands.decode_video(path, FPS, (32, 16), media.select_expression([1, 2]), "yuv420p", threads=1),
    ):
        loud = [c if c != "error" else "warning" for c in cmd]
        res = subprocess.run(loud, capture_output=True)
        assert res.returncode == 0, res.stderr.decode()[-300:]
        assert b"Trailing option" not in res.stderr and b"may be ignored" not in res.stderr, " ".join(cmd)
    one = list(media.iter_video_frames(clips["pcm"], FPS, threads=1))
    np.testing.assert_array_equal(np.stack(one), np.stack(list(media.iter_video_frames(clips["pcm"], FPS))))


def test_find_audio_source(tmp_path, clips):
    frames = solid_frames(2)
    v = media.write_video(tmp_path / "clip.mp4", frames, FPS, (W, H), audio=tones(SR // 4), sr=SR, audio_codec="pcm")
    assert media.find_audio_source(v) == v
    side = media.write_audio(tmp_path / "clip.flac", tones(SR // 4), SR)
    assert media.find_audio_source(v) == side  # a sidecar wins
    wav = media.write_audio(tmp_path / "clip.wav", tones(SR // 4), SR)
    assert media.find_audio_source(v) == wav  # .wav before .flac
    with pytest.raises(media.MediaError) as e:
        media.find_audio_source(clips["silent"])
    assert e.value.kind == "no_audio" and "sidecar" in str(e.value)


def test_read_foa_rejects_wrong_channel_count(tmp_path):
    stereo = media.write_audio(tmp_path / "st.wav", tones(SR // 4)[:2], SR)
    with pytest.raises(media.MediaError) as e:
        media.read_foa(stereo, SR)
    assert e.value.kind == "channels"
    assert "4-channel" in str(e.value) and "got 2" in str(e.value)
    assert "\n" not in str(e.value)


def test_missing_unreadable_and_truncated(tmp_path, clips):
    with pytest.raises(media.MediaError) as e:
        media.probe(tmp_path / "nope.mp4")
    assert e.value.kind == "missing"
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(range(256)) * 8)
    for fn in (media.probe, lambda p: media.read_audio(p, SR), lambda p: media.iter_video_frames(p, FPS)):
        with pytest.raises(media.MediaError) as e:
            fn(junk)
        assert e.value.kind == "unreadable" and "\n" not in str(e.value)
    cut = tmp_path / "cut.mp4"
    data = clips["pcm"].read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(media.MediaError, match="truncated") as e:
        media.probe(cut)
    assert e.value.kind == "truncated"
    with pytest.raises(media.MediaError, match="truncated"):
        media.read_audio(cut, SR)
    with pytest.raises(media.MediaError, match="truncated"):
        list(media.iter_video_frames(cut, FPS))


def test_check_durations():
    media.check_durations(10.0, 10.2, 0.5)
    with pytest.raises(media.MediaError, match="audio lasts 2.000 s but video 10.000 s") as e:
        media.check_durations(10.0, 2.0, 0.5)
    assert e.value.kind == "duration"


def test_writers_are_deterministic_and_atomic(tmp_path):
    frames = solid_frames(4)
    a = media.write_video(tmp_path / "a.mp4", frames, FPS, (W, H), audio=tones(SR // 2), sr=SR)
    b = media.write_video(tmp_path / "b.mp4", frames, FPS, (W, H), audio=tones(SR // 2), sr=SR)
    assert a.read_bytes() == b.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]  # no temporary files left
    with pytest.raises(ValueError, match="frames must be uint8"):
        media.write_video(tmp_path / "c.mp4", [np.zeros((H, W), np.uint8)], FPS, (W, H))
    assert not (tmp_path / "c.mp4").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
    with pytest.raises(ValueError, match="channels, n_samples"):
        media.write_audio(tmp_path / "x.wav", np.zeros(10), SR)


def test_write_video_refuses_bad_options_before_writing_anything(tmp_path):
    """A bad audio codec or output extension is a ValueError that leaves the folder as it was (no temporary
    audio input, no partial video)."""
    frames, audio = solid_frames(2), tones(SR // 4)
    with pytest.raises(ValueError, match="audio codec"):
        media.write_video(tmp_path / "a.mp4", frames, FPS, (W, H), audio=audio, sr=SR, audio_codec="mp3")
    with pytest.raises(ValueError, match="unsupported output extension"):
        media.write_video(tmp_path / "a.avi", frames, FPS, (W, H), audio=audio, sr=SR)
    assert list(tmp_path.iterdir()) == []


def test_header_parsing_of_real_world_stream_lines():
    """probe() parses ffmpeg's own description; check it on lines as printed for typical 360° uploads."""
    text = "\n".join(
        [
            "Input #0, mov,mp4,m4a,3gp,3g2,mj2, from 'yt360.mp4':",
            "  Duration: 00:03:25.47, start: 0.000000, bitrate: 15301 kb/s",
            "  Stream #0:0[0x1](und): Video: hevc (Main) (hvc1 / 0x31637668), yuv420p(tv, bt709), 3840x1920 "
            "[SAR 1:1 DAR 2:1], 15000 kb/s, 29.97 fps, 29.97 tbr, 30k tbn (default)",
            "  Stream #0:1[0x2](eng): Audio: aac (LC) (mp4a / 0x6134706D), 48000 Hz, 4.0, fltp, 256 kb/s (default)",
            "  Stream #0:2[0x3](eng): Audio: opus, 48000 Hz, ambisonic 1, fltp",
            "  Stream #0:3: Audio: pcm_s24le, 44100 Hz, 5.1(side), s32 (24 bit), 6350 kb/s",
            "  Stream #0:4: Audio: flac, 96000 Hz, 6 channels, s32 (24 bit)",
            "  Stream #0:5[0x6](und): Data: none (tmcd / 0x64636D74)",
            "Output #0, framecrc, to 'pipe:1':",
            "  Stream #0:0: Video: hevc, yuv420p, 3840x1920, 29.97 fps",
        ]
    )
    fmt, dur, streams = probing._parse_header(text)
    assert fmt == "mov,mp4,m4a,3gp,3g2,mj2" and dur == pytest.approx(205.47)
    assert [s.kind for s in streams] == ["video", "audio", "audio", "audio", "audio", "data"]
    v = streams[0]
    assert (v.codec, v.width, v.height, v.fps) == ("hevc", 3840, 1920, pytest.approx(29.97))
    assert [(s.codec, s.sample_rate, s.channels) for s in streams[1:5]] == [
        ("aac", 48000, 4),
        ("opus", 48000, 4),
        ("pcm_s24le", 44100, 6),
        ("flac", 96000, 6),
    ]


def test_decoded_frames_are_writable(clips):
    frame = next(iter(media.iter_video_frames(clips["pcm"], FPS)))
    frame[0, 0] = 0  # consumers may draw on frames in place
    assert frame.flags.writeable


# ------------------------------------------------------------------ failures in the frame reader's helper threads


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory) -> Path:
    """24 frames of 512×256 (9 MB of RGB): ffmpeg blocks on the pipe long before it could finish on its own."""
    frames = [np.full((256, 512, 3), 10 * i, dtype=np.uint8) for i in range(24)]
    return media.write_video(tmp_path_factory.mktemp("long") / "long.mp4", frames, FPS, (512, 256))


def _decoders(monkeypatch, wrap=lambda proc: proc) -> list:
    """Record (and optionally alter) the ffmpeg decoders that media starts."""
    procs, real = [], subprocess.Popen

    def popen(cmd, *a, **k):
        proc = real(cmd, *a, **k)
        if "rawvideo" in cmd:
            procs.append(wrap(proc))
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen)
    return procs


def _consume(path, timeout: float = 60.0) -> dict:
    """Iterate all frames in a thread; fail the test if that does not end within ``timeout`` seconds."""
    res: dict = {"frames": 0}

    def run() -> None:
        try:
            for _ in media.iter_video_frames(path, FPS):
                res["frames"] += 1
        except BaseException as e:  # noqa: BLE001
            res["error"] = e

    th = threading.Thread(target=run, daemon=True)
    th.start()
    th.join(timeout)
    assert not th.is_alive(), f"the consumer is still waiting after {timeout} s (a helper thread's error was lost)"
    return res


def _gone(proc) -> bool:
    """The process has exited and been reaped: its pid no longer exists."""
    import os

    if proc.poll() is None:
        return False
    try:
        os.kill(proc.pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_closing_the_frame_iterator_early_kills_and_reaps_ffmpeg(long_clip, monkeypatch):
    """A consumer that stops after one frame closes the iterator: no error, and the ffmpeg process (blocked on
    the full pipe: it could not finish 24 frames of 512×256 by itself) is killed and reaped."""
    procs = _decoders(monkeypatch)
    it = media.iter_video_frames(long_clip, FPS)
    first = next(it)
    closer = threading.Thread(target=it.close, daemon=True)
    closer.start()
    closer.join(60)
    assert not closer.is_alive(), "closing the iterator still waits after 60 s: ffmpeg was not killed"
    assert first.shape == (256, 512, 3)
    (proc,) = procs
    assert proc.returncode == -signal.SIGKILL and _gone(proc)


def test_an_error_in_the_frame_reader_thread_reaches_the_caller_and_kills_ffmpeg(long_clip, monkeypatch):
    """A MemoryError while the reader thread allocates frame 3 is raised to the consumer (not a hang), and the
    ffmpeg process, blocked on the pipe at that moment, is killed and reaped."""
    procs = _decoders(monkeypatch)
    real_read, calls = frame_pipe.read_exact, []
    boom = MemoryError("injected: cannot allocate a frame")

    def read_exact(stream, n):
        calls.append(n)
        if len(calls) == 3:
            raise boom
        return real_read(stream, n)

    monkeypatch.setattr(frame_pipe, "read_exact", read_exact)
    res = _consume(long_clip)
    assert res.get("error") is boom and res["frames"] <= 2
    (proc,) = procs
    assert _gone(proc) and proc.returncode == -signal.SIGKILL  # killed (it could not have finished 24 frames by itself)


def test_an_error_in_the_stderr_thread_reaches_the_caller(long_clip, monkeypatch):
    class FailingPipe:
        def __init__(self, pipe):
            self.pipe = pipe

        def read(self, n):
            raise OSError("injected: stderr pipe failed")

        def close(self):
            self.pipe.close()

    def wrap(proc):
        proc.stderr = FailingPipe(proc.stderr)
        return proc

    procs = _decoders(monkeypatch, wrap)
    res = _consume(long_clip)
    assert isinstance(res.get("error"), OSError) and "stderr pipe failed" in str(res["error"])
    (proc,) = procs
    assert _gone(proc)
