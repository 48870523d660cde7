"""`avsa-data shard` as a hostile or unlucky user meets it: two jobs on one output, inputs that change between
runs, environment errors (disk full, out of memory, a killed ffmpeg), a killed main process, leftovers of a
killed cleanup, awkward input folders and damaged output files (issue 14)."""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from avsa_data import media, synth
from avsa_data.jobcontrol import exclusive_lock
from avsa_data.reader import iter_samples
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, JobStopped, ShardJobError, run_shard_job
from avsa_data.shards import video as shard_video
from avsa_data.shards.discovery import discover
from avsa_data.shards.video import VideoResult

#: Small and fast: 2 views, FOA only, 32 px crops, 2 samples per shard.
JOB = JobConfig(sample=SampleConfig(viewpoints_per_moment=2, renders=("foa",), crop_size=32), shard_size=2)
CLI_JOB = ["-k", "2", "--renders", "foa", "--crop-size", "32", "--shard-size", "2", "-q"]
SYNTH = synth.SynthConfig(videos=4, duration=2.0, size=(256, 128), seed=5, audio_codec="pcm")


def _write_videos(raw: Path, indices) -> None:
    for i in indices:
        synth.write_scene(synth.make_scene(SYNTH, i), SYNTH, raw)


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> Path:
    """Four 2 s synthetic videos (256×128), written once; tests copy the ones they need."""
    raw = tmp_path_factory.mktemp("rel") / "all"
    _write_videos(raw, range(4))
    return raw


def _raw(videos: Path, dst: Path, indices=(0, 1, 2)) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for i in indices:
        for p in videos.glob(f"{synth.video_id(i)}.*"):
            shutil.copy2(p, dst / p.name)
    return dst


@pytest.fixture(scope="module")
def raw3(videos, tmp_path_factory) -> Path:
    """Videos 0–2 in a folder that tests only read (sample meta names the input path, so tests comparing bytes
    with :func:`reference` read this folder)."""
    return _raw(videos, tmp_path_factory.mktemp("raw3") / "raw")


@pytest.fixture(scope="module")
def reference(raw3, tmp_path_factory) -> Path:
    """Shards of :func:`raw3` made in one uninterrupted run."""
    out = tmp_path_factory.mktemp("ref") / "out"
    run_shard_job(raw3, out, JOB, workers=1, progress=False)
    return out


def _tars(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.tar"))}


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _failures(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "failures.jsonl").read_text().splitlines()]


def _cli(*args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "avsa_data", "shard", *args], capture_output=True, text=True,
                          timeout=300, env={**os.environ, **(env or {})}, **kw)


# ---------------------------------------------------------------------------------- item 2: one job per --out


def test_a_second_job_on_the_same_out_exits_at_once_naming_the_first(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw")
    out = tmp_path / "out"
    first = subprocess.Popen([sys.executable, "-m", "avsa_data", "shard", "--src", str(raw), "--out", str(out),
                              *CLI_JOB, "-j", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / ".work" / "frag").is_dir() and time.time() < deadline and first.poll() is None:
        time.sleep(0.02)
    assert first.poll() is None, "the first job ended before the second could start"
    os.kill(first.pid, signal.SIGSTOP)  # keep it mid-job, however fast this machine is
    try:
        t0 = time.time()
        second = _cli("--src", str(raw), "--out", str(out), *CLI_JOB, "-j", "1")
        quick = time.time() - t0
    finally:
        os.kill(first.pid, signal.SIGCONT)
    assert second.returncode == 75 and f"pid {first.pid}" in second.stderr and "in use" in second.stderr
    assert len(second.stderr.strip().splitlines()) == 1 and quick < 30
    assert first.wait(timeout=300) == 0, first.stderr.read()
    # the first job was not disturbed: its output is that of a lone run (the CLI's job is JOB)
    alone = tmp_path / "alone"
    run_shard_job(raw, alone, JOB, progress=False)
    assert _tars(out) == _tars(alone)
    assert (out / "manifest.json").read_bytes() == (alone / "manifest.json").read_bytes()


def test_a_url_job_locks_its_staging_folder(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw", (0,))
    staging = tmp_path / "stage"
    with exclusive_lock(staging):  # this test process plays the running job
        r = _cli("--src", str(raw), "--out", (tmp_path / "bucket").as_uri(), "--staging", str(staging), *CLI_JOB)
    assert r.returncode == 75 and f"pid {os.getpid()}" in r.stderr and str(staging) in r.stderr
    assert not (tmp_path / "bucket").exists()  # nothing was published


# ------------------------------------------------------------------------- item 3: reruns notice --src changes


def test_added_videos_go_to_new_shards_and_finished_shards_stay_byte_identical(videos, reference, tmp_path):
    raw = _raw(videos, tmp_path / "raw")
    other = tmp_path / "other"
    shutil.copytree(reference, other)  # a finished output of another --src (with the same videos)
    with pytest.raises(ShardJobError, match=f"was made from --src {_manifest(reference)['src']}, not "):
        run_shard_job(raw, other, JOB, progress=False)
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False)
    before = _tars(out)
    _raw(videos, raw, (3,))  # a fourth video arrives
    report = run_shard_job(raw, out, JOB, workers=2, progress=False)
    assert report.added == 1 and not report.up_to_date and report.videos == 4 and report.ok == 4
    after = _tars(out)
    assert {n: after[n] for n in before} == before  # finished shards untouched, byte for byte
    new = sorted(set(after) - set(before))
    assert new == ["train-000003.tar"]  # numbered after the last finished shard of its split
    m = _manifest(out)
    assert [s["name"] for s in m["shards"]] == sorted(after)
    assert set(m["videos"]) == {synth.video_id(i) for i in range(4)}
    assert m["stats"]["samples"] == 8 and sum(1 for _ in iter_samples(out)) == 8
    assert {k.split("/")[0] for s in m["shards"] if s["name"] in new for k in s["samples"]} == {"synth_0003"}
    assert run_shard_job(raw, out, JOB, progress=False).up_to_date


def test_a_url_update_uploads_only_the_new_shards(videos, tmp_path, monkeypatch):
    from avsa_data import remote

    raw = _raw(videos, tmp_path / "raw", (0, 1))
    url = "memory://avsa-tests/reliability/update"
    run_shard_job(raw, url, JOB, progress=False, staging=tmp_path / "stage")
    store = remote.Store(url)
    before = {n: store.read_bytes(n) for n in store.shard_names()}
    _raw(videos, raw, (2,))
    uploads: list[str] = []
    put = remote.Store.put
    monkeypatch.setattr(remote.Store, "put", lambda self, local, name: (uploads.append(name), put(self, local, name)))
    report = run_shard_job(raw, url, JOB, progress=False, staging=tmp_path / "stage")
    assert report.added == 1 and report.ok == 3
    assert uploads == ["config.json", "train-000002.tar", "failures.jsonl", "manifest.json"]
    assert {n: store.read_bytes(n) for n in before} == before
    assert [s["name"] for s in store.read_json("manifest.json")["shards"]] == store.shard_names()
    assert not (tmp_path / "stage").exists()
    store.fs.rm(store.root, recursive=True)


def test_changed_or_removed_inputs_need_overwrite(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw")
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False)
    shards_before = _tars(out)
    victim = raw / "synth_0001.mp4"
    shutil.copy2(videos / "synth_0003.mp4", victim)  # other bytes under the same name
    with pytest.raises(ShardJobError, match=r"1 input\(s\) changed .*synth_0001\.mp4.*--overwrite"):
        run_shard_job(raw, out, JOB, progress=False)
    assert _tars(out) == shards_before  # refused: nothing changed
    # same bytes, new mtime (a copy or a touch): unchanged
    os.utime(raw / "synth_0002.mp4", ns=(1, 1))
    run_shard_job(raw, out, JOB, progress=False, overwrite=True)
    m = _manifest(out)
    ident = m["videos"]["synth_0001"]["input"]
    assert ident["size"] == victim.stat().st_size and ident["mtime_ns"] == victim.stat().st_mtime_ns
    assert len(ident["head_tail_sha256"]) == 64
    assert _tars(out) != shards_before
    os.utime(raw / "synth_0002.mp4", ns=(2, 2))
    assert run_shard_job(raw, out, JOB, progress=False).up_to_date
    victim.unlink()
    with pytest.raises(ShardJobError, match=r"1 removed .*--overwrite"):
        run_shard_job(raw, out, JOB, progress=False)


def test_a_changed_sidecar_counts_as_a_changed_input(tmp_path):
    cfg = synth.SynthConfig(videos=1, duration=2.0, size=(256, 128), seed=8, audio_layout="sidecar")
    raw = tmp_path / "raw"
    synth.write_scene(synth.make_scene(cfg, 0), cfg, raw)
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False)
    assert "audio" in _manifest(out)["videos"]["synth_0000"]["input"]
    wav = raw / "synth_0000.wav"
    data = bytearray(wav.read_bytes())
    data[-4:] = b"\x00\x00\x80\x3f"
    wav.write_bytes(bytes(data))
    with pytest.raises(ShardJobError, match="changed"):
        run_shard_job(raw, out, JOB, progress=False)


def test_an_interrupted_run_never_mixes_inputs(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw")
    out = tmp_path / "out"

    class Stop(Exception):
        pass

    def stop_after_two(r: VideoResult) -> None:
        if r.video_id == "synth_0001":
            raise Stop

    with pytest.raises(Stop):
        run_shard_job(raw, out, JOB, progress=False, on_video_done=stop_after_two)
    other = _raw(videos, tmp_path / "other")
    with pytest.raises(ShardJobError, match="was made from --src"):  # another --src on the unfinished output
        run_shard_job(other, out, JOB, progress=False)
    # under the same --src, an input replaced while the job was down is made again, not mixed in
    before = _tars(out)  # nothing yet
    shutil.copy2(videos / "synth_0003.mp4", raw / "synth_0000.mp4")
    run_shard_job(raw, out, JOB, progress=False)
    fresh = tmp_path / "fresh"
    run_shard_job(raw, fresh, JOB, progress=False)
    assert not before and _tars(out) == _tars(fresh)


def test_a_shard_of_an_older_plan_is_rewritten(videos, tmp_path):
    """Killed during assembly, then a video was added: shards under final names that another plan made are
    written again (the old code kept them, mixing plans)."""
    raw = _raw(videos, tmp_path / "raw", (0, 2))
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False, keep_work=True)
    (out / "manifest.json").unlink()  # as if killed before the manifest
    _raw(videos, raw, (1,))  # synth_0001 sorts between the two: every shard changes
    run_shard_job(raw, out, JOB, progress=False)
    fresh = tmp_path / "fresh"
    run_shard_job(raw, fresh, JOB, progress=False)
    assert _tars(out) == _tars(fresh)


# ------------------------------------------------------------------- item 4: environment errors are not bad input


@pytest.mark.parametrize("error, words", [
    (OSError(errno.ENOSPC, "No space left on device"), "disk full writing"),
    (OSError(errno.EFBIG, "File too large"), "file too large"),
    (OSError(errno.ENOMEM, "Cannot allocate memory"), "out of memory"),
    (MemoryError(), "out of memory"),
    (OSError(errno.EMFILE, "Too many open files"), "too many open files"),
])
def test_environment_errors_stop_the_job_and_are_retried(raw3, reference, tmp_path, monkeypatch, error, words):
    raw = raw3
    out = tmp_path / "out"
    real = shard_video.add_sample

    def failing(tar, sample):
        if sample.key.startswith("synth_0001"):
            raise error
        real(tar, sample)

    monkeypatch.setattr(shard_video, "add_sample", failing)  # forked pool workers inherit the patch
    with pytest.raises(JobStopped, match=words) as e:
        run_shard_job(raw, out, JOB, progress=False, workers=2 if isinstance(error, MemoryError) else 1)
    assert "\n" not in str(e.value) and "rerun" in str(e.value)
    assert not list((out / ".work" / "frag").glob("synth_0001*"))  # nothing recorded against the input
    assert not (out / "failures.jsonl").exists()
    monkeypatch.setattr(shard_video, "add_sample", real)
    report = run_shard_job(raw, out, JOB, progress=False)
    assert report.failed == 0 and _tars(out) == _tars(reference)


def test_a_file_size_limit_stops_the_cli_with_one_line_and_exit_75(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw", (0,))
    out = tmp_path / "out"

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, resource.RLIM_INFINITY))

    r = _cli("--src", str(raw), "--out", str(out), *CLI_JOB, preexec_fn=limit)
    assert r.returncode == 75, r.stderr
    assert "file too large writing" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (out / "failures.jsonl").exists() and not list((out / ".work" / "frag").glob("*.failed.json"))
    assert _cli("--src", str(raw), "--out", str(out), *CLI_JOB).returncode == 0
    assert _failures(out) == []


def test_a_killed_ffmpeg_is_not_a_bad_input(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw", (0,))
    out = tmp_path / "out"
    killer = tmp_path / "ffmpeg"
    killer.write_text("#!/bin/sh\nkill -9 $$\n")
    killer.chmod(0o755)
    r = _cli("--src", str(raw), "--out", str(out), *CLI_JOB, env={"IMAGEIO_FFMPEG_EXE": str(killer)})
    assert r.returncode == 75 and "ffmpeg was killed by SIGKILL" in r.stderr and "synth_0000.mp4" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (out / "failures.jsonl").exists()
    ok = _cli("--src", str(raw), "--out", str(out), *CLI_JOB)
    assert ok.returncode == 0 and "done: 2 samples" in ok.stdout and _failures(out) == []


# ------------------------------------------------------------------------------ item 6: huge inputs are refused


def test_inputs_above_max_resolution_fail_before_decoding(videos, tmp_path, monkeypatch):
    raw = _raw(videos, tmp_path / "raw", (0, 1))
    out = tmp_path / "out"

    def never(*a, **k):
        raise AssertionError("decoded a refused input")

    monkeypatch.setattr(media, "read_foa", never)
    monkeypatch.setattr(media, "iter_video_frames_at", never)
    big = JobConfig(sample=JOB.sample, shard_size=2, max_resolution=(255, 2000))
    report = run_shard_job(raw, out, big, progress=False)
    assert report.ok == 0 and report.failed == 2
    for f in _failures(out):
        assert f["stage"] == "probe" and "256x128 is above --max-resolution 255x2000" in f["reason"]
    r = _cli("--src", str(raw), "--out", str(tmp_path / "o2"), *CLI_JOB, "--max-resolution", "huge")
    assert r.returncode == 2 and "--max-resolution" in r.stderr


# ----------------------------------------------------------------------------- item 8: no orphaned pool workers


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited (no init reaps it in some containers)


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc (Linux)")
def test_pool_workers_exit_when_the_main_process_is_killed(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw", (0, 1, 2, 3))
    out = tmp_path / "out"
    main = subprocess.Popen([sys.executable, "-m", "avsa_data", "shard", "--src", str(raw), "--out", str(out),
                             *CLI_JOB, "-j", "2"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    workers: list[int] = []
    try:
        deadline = time.time() + 120
        while time.time() < deadline and main.poll() is None:
            workers = [p for p in _children(main.pid) if _running(p)]
            if len(workers) >= 2 and (out / ".work" / "frag").is_dir():
                break
            time.sleep(0.05)
        assert len(workers) >= 2 and main.poll() is None, "no pool workers seen"
        os.kill(main.pid, signal.SIGKILL)
        main.wait()
        deadline = time.time() + 5
        while time.time() < deadline and any(_running(p) for p in workers):
            time.sleep(0.1)
        assert not [p for p in workers if _running(p)], "pool workers outlived their parent"
    finally:
        for p in workers:
            if _running(p):
                os.kill(p, signal.SIGKILL)


# ------------------------------------------------------------------- item 9: the cleanup of a killed job is finished


def test_an_up_to_date_rerun_finishes_the_cleanup(videos, tmp_path):
    raw = _raw(videos, tmp_path / "raw", (0,))
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False, keep_work=True)
    (out / ".work" / "frag" / "synth_0000.json").unlink()  # a removal cut short by a kill
    assert (out / ".work").exists()
    assert run_shard_job(raw, out, JOB, progress=False).up_to_date
    assert not (out / ".work").exists()


# ------------------------------------------------------------------------------ item 10: input discovery


def test_discovery_reports_links_unreadable_folders_and_collisions(videos, tmp_path, monkeypatch):
    raw = _raw(videos, tmp_path / "raw", (0,))
    (tmp_path / "elsewhere").mkdir()
    shutil.copy2(videos / "synth_0001.mp4", tmp_path / "elsewhere" / "x.mp4")
    (raw / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    locked = raw / "locked"
    locked.mkdir()
    shutil.copy2(videos / "synth_0002.mp4", locked / "y.mp4")
    real_scandir = os.scandir

    def scandir(path="."):
        if isinstance(path, (str, os.PathLike)) and Path(path) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # chmod 000 does not stop root
    for name in ("a.b.mp4", "a_b.mp4"):
        shutil.copy2(videos / "synth_0003.mp4", raw / name)
    found = discover(raw)
    assert [t.video_id for t in found.tasks] == ["synth_0000"]
    assert {s["path"]: s["reason"].split(" ")[0] for s in found.skipped} == {str(raw / "linked"): "symbolic",
                                                                              str(locked): "unreadable"}
    assert sorted(f["path"] for f in found.failed) == [str(raw / "a.b.mp4"), str(raw / "a_b.mp4")]
    assert all(f["video_id"] == "a_b" and f["stage"] == "discover" for f in found.failed)
    out = tmp_path / "out"
    report = run_shard_job(raw, out, JOB, progress=False)  # the collision fails two videos, not the job
    assert report.ok == 1 and report.failed == 2
    assert sorted(f["path"] for f in _failures(out)) == [str(raw / "a.b.mp4"), str(raw / "a_b.mp4")]
    assert {s["path"] for s in _manifest(out)["skipped_inputs"]} == {str(raw / "linked"), str(locked)}
    assert run_shard_job(raw, out, JOB, progress=False).up_to_date
    (raw / "a.b.mp4").unlink()  # the collision resolved: the other one is added
    report = run_shard_job(raw, out, JOB, progress=False)
    assert report.added == 1 and report.ok == 2 and _failures(out) == []


def test_non_2to1_and_one_frame_videos_are_failures(tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (32, 192, 256, 3), dtype=np.uint8)
    media.write_video(raw / "square.mp4", frames, 16.0, (256, 192),
                      audio=rng.normal(0, 0.1, (4, 48000)).astype(np.float32), sr=24000, audio_codec="pcm")
    frame = rng.integers(0, 255, (128, 256, 3), dtype=np.uint8)
    media.write_video(raw / "one_frame.mp4", [frame], 16.0, (256, 128),
                      audio=rng.normal(0, 0.1, (4, 1500)).astype(np.float32), sr=24000, audio_codec="pcm")
    out = tmp_path / "out"
    r = _cli("--src", str(raw), "--out", str(out), *CLI_JOB)
    assert r.returncode == 1  # no video succeeded
    fails = {f["video_id"]: f for f in _failures(out)}
    assert set(fails) == {"square", "one_frame"}
    assert "256x192 is not a 2:1 equirectangular frame" in fails["square"]["reason"]
    assert fails["one_frame"]["stage"] == "duration" and "shorter than one" in fails["one_frame"]["reason"]
    for f in fails.values():
        assert sum(f["path"] in line and "FAILED" in line for line in r.stderr.splitlines()) == 1


def test_each_job_makes_its_own_label_backend_once(videos, tmp_path, monkeypatch):
    """The backend is made once per job (by the check before anything is written; phase 1 uses that one) and
    never carried over to the next job of the same process."""
    made: list[str] = []
    real = shard_video.make_backend
    monkeypatch.setattr(shard_video, "make_backend", lambda name, **kw: (made.append(name), real(name, **kw))[1])
    raw = _raw(videos, tmp_path / "raw", (0, 1))
    assert run_shard_job(raw, tmp_path / "out", JOB, workers=1, progress=False).ok == 2 and made == ["none"]
    assert run_shard_job(raw, tmp_path / "out", JOB, workers=1, progress=False).up_to_date
    assert made == ["none", "none"]


# -------------------------------------------------------------------------- item 11: damaged output files


@pytest.mark.parametrize("name", ["manifest.json", "config.json"])
def test_a_truncated_output_file_is_one_line_naming_it(videos, tmp_path, name):
    raw = _raw(videos, tmp_path / "raw", (0,))
    out = tmp_path / "out"
    run_shard_job(raw, out, JOB, progress=False)
    data = (out / name).read_bytes()
    (out / name).write_bytes(data[: len(data) // 2])
    r = _cli("--src", str(raw), "--out", str(out), *CLI_JOB)
    assert r.returncode == 1 and f"{out / name}: truncated JSON (it stops inside a value after line " in r.stderr
    assert f"; expected the {name} written by avsa-data shard; pass --overwrite to rebuild" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    assert _cli("--src", str(raw), "--out", str(out), *CLI_JOB, "--overwrite").returncode == 0
    assert _manifest(out)["complete"]
