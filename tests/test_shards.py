"""`avsa-data shard` / `verify` / `inspect` end to end on synthetic data: physics, determinism, resume,
bad input, damage detection, and readability with plain tools."""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARD_ARGS, run_cli

from avsa_data import ambisonics, synth
from avsa_data.crops import CropGrid
from avsa_data.geometry import (
    angular_distance,
    direction_to_equirect,
    direction_to_vector,
    vector_to_direction,
    view_rotation,
)
from avsa_data.reader import iter_samples
from avsa_data.samples import SampleConfig
from avsa_data.shards import JobConfig, run_shard_job
from avsa_data.viewpoints import Viewpoint


def _tars(d: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(d.glob("*.tar"))}


# ----------------------------------------------------------------------------------------------- physics


@pytest.fixture(scope="module")
def single_source(tmp_path_factory):
    """One static, always-on, visible red disc (radius 20°) at (az 50°, el 0°), no diffuse noise."""
    raw = tmp_path_factory.mktemp("single") / "raw"
    cfg = synth.SynthConfig(videos=1, duration=3.0, seed=11, size=(512, 256), snr_db=math.inf)
    src = synth.Source(class_id=synth.class_id("red_disc"), az=50.0, el=0.0, radius=20.0)
    synth.write_scene(synth.Scene("one", 11, (src,)), cfg, raw)
    out = tmp_path_factory.mktemp("single") / "shards"
    sample = SampleConfig(sampler="grid", viewpoints_per_moment=12, renders=("foa", "mono"))
    run_shard_job(raw, out, JobConfig(sample=sample, labels="synthetic"), workers=1, progress=False)
    return out, src


def test_rotated_foa_points_where_the_source_is_in_every_view(single_source):
    out, src = single_source
    s_vec = direction_to_vector(src.az, src.el)
    n = 0
    for s in iter_samples(out):
        for k, v in enumerate(s.meta["viewpoints"]):
            rel_az, rel_el = vector_to_direction(view_rotation(v["azimuth"], v["elevation"]) @ s_vec)
            az, el = ambisonics.energy_direction(s.audio(k, 0, "foa"))
            assert angular_distance(az, el, rel_az, rel_el) < 5.0, (s.key, k, v)
            n += 1
    assert n == 3 * 12  # 3 s of video, 1 s stride: moments at 0.5, 1.5 and 2.5 s


def test_view_centred_on_sounding_object_hears_it_in_front_and_mask_says_so(single_source):
    out, src = single_source
    cid = synth.class_id("red_disc")
    hits = 0
    for s in iter_samples(out):
        for k, v in enumerate(s.meta["viewpoints"]):
            seg, conf = s.masks(k)
            centre = seg[55:57, 55:57]
            on_object = angular_distance(v["azimuth"], v["elevation"], src.az, src.el) < src.radius - 3
            if on_object:
                hits += 1
                assert np.all(centre == cid), (s.key, k, centre)
                az, el = ambisonics.energy_direction(s.audio(k, 0, "foa"))
                assert angular_distance(az, el, 0, 0) < src.radius  # the object fills the crop centre
                mono = s.audio(k, 0, "mono")[0]
                w = s.audio(k, 0, "foa")[0]
                # cardioid: a source within 20° of the look direction keeps > 90 % of its amplitude
                assert np.sqrt(np.mean(mono**2) / np.mean(w**2)) > 0.9
            elif angular_distance(v["azimuth"], v["elevation"], src.az, src.el) > src.radius + 45:
                assert not np.any(seg == cid)
    assert hits >= 2  # a 12-view grid (30° apart) always has views on a 20°-radius object


def test_centre_mask_equals_truth_class(synth_shards, synth_raw):
    checked = 0
    for s in iter_samples(synth_shards):
        meta = s.meta
        truth = np.load(synth_raw / f"{meta['video_id']}.truth.npz")
        for m, t in enumerate(meta["label_times"]):
            fi = int(np.argmin(np.abs(truth["label_times"] - t)))
            lab, conf = truth["labels"][fi], truth["confidence"][fi].astype(np.float32)
            h, w = lab.shape
            for k, v in enumerate(meta["viewpoints"]):
                u, r = direction_to_equirect(v["azimuth"], v["elevation"], h, w)
                ui, ri = int(round(float(u))) % w, int(np.clip(round(float(r)), 1, h - 2))
                patch = lab[ri - 1 : ri + 2, [(ui - 1) % w, ui, (ui + 1) % w]]
                if not np.all(patch == patch[0, 0]) or conf[ri, ui] < 0.75:
                    continue  # an edge or a low-confidence pixel: the centre class is ambiguous
                seg, _ = s.masks(k, m)
                assert np.all(seg[55:57, 55:57] == patch[0, 0]), (s.key, m, k)
                checked += 1
            if s.key.endswith("/000000"):  # every pixel: the truth maps, nearest-sampled on the view's grids
                for k, v in enumerate(meta["viewpoints"]):
                    for size, low in ((112, False), (56, True)):
                        grid = CropGrid(Viewpoint.from_dict(v), (size, size))
                        seg, got = s.masks(k, m, lowres=low)
                        np.testing.assert_array_equal(seg, grid.sample(lab, mode="nearest"))
                        want = np.rint(grid.sample(conf, mode="nearest") * 255) / np.float32(255)
                        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)
    assert checked > 50


# ------------------------------------------------------------------------------------------ determinism


def test_one_and_two_workers_give_identical_bytes(synth_raw, synth_shards, tmp_path):
    out = tmp_path / "j1"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "-j", "1", "-q")
    assert _tars(out) == _tars(synth_shards)
    assert (out / "manifest.json").read_bytes() == (synth_shards / "manifest.json").read_bytes()
    m = json.loads((out / "manifest.json").read_text())
    assert {s["split"] for s in m["shards"]} == {"train", "val"}
    assert m["stats"]["videos_ok"] == 6 and m["stats"]["samples"] == 6 * 3


def test_kill_9_and_resume_is_byte_identical(synth_raw, synth_shards, tmp_path):
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS,
           "-j", "1", "-q"]
    for wait_for in ("fragment", "shard"):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            frags = list((out / ".work" / "frag").glob("*.tar")) if (out / ".work").exists() else []
            shards = list(out.glob("train-*.tar"))
            if (wait_for == "fragment" and len(frags) >= 2) or (wait_for == "shard" and shards):
                break
            time.sleep(0.02)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        assert not (out / "manifest.json").exists() or wait_for == "shard"
    # nothing partial under a final name: every *.tar present is complete and readable
    for p in out.glob("*.tar"):
        list(tarfile.open(p))
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "-j", "2", "-q")
    assert _tars(out) == _tars(synth_shards)
    assert not (out / ".work").exists()
    again = run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), *SHARD_ARGS, "-q")
    assert "up to date" in again.stdout


def test_changed_config_needs_overwrite(synth_raw, tmp_path):
    out = tmp_path / "cfg"
    shutil.copytree(synth_raw, tmp_path / "raw")
    for p in (tmp_path / "raw").glob("synth_000[1-5]*"):
        p.unlink()
    (tmp_path / "raw" / "videos.csv").unlink()
    base = ["avsa_data", "shard", "--src", str(tmp_path / "raw"), "--out", str(out), "-q", "-k", "4"]
    run_cli(*base)
    r = run_cli(*base, "--seed", "5", check=False)
    assert r.returncode != 0 and "--overwrite" in r.stderr
    run_cli(*base, "--seed", "5", "--overwrite")
    assert json.loads((out / "manifest.json").read_text())["config"]["sample"]["seed"] == 5


# -------------------------------------------------------------------------------------------- bad input


def test_corrupt_inputs_are_logged_and_the_rest_succeeds(synth_raw, tmp_path):
    raw = tmp_path / "raw"
    raw.mkdir()
    for p in synth_raw.glob("synth_0000.*"):
        shutil.copy(p, raw / p.name)
    variants = synth.write_corrupt_variants(raw, seed=1)
    out = tmp_path / "out"
    r = run_cli("avsa_data", "shard", "--src", str(raw), "--out", str(out), "-q", "-k", "4", "-j", "2", check=False)
    assert r.returncode == 0, r.stderr
    fails = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    failed_ids = {f["video_id"] for f in fails}
    assert failed_ids == {Path(p).stem for p in variants.values()}
    for f in fails:
        assert f["reason"] and "\n" not in f["reason"] and f["stage"] in {"probe", "audio", "decode", "labels"}
        # one clear console line per failure
        assert sum(f["path"] in line and "FAILED" in line for line in r.stderr.splitlines()) == 1
    reasons = " ".join(f["reason"] for f in fails).lower()
    for word in ("truncated", "no audio", "channel", "duration", "unreadable"):
        assert word in reasons, (word, reasons)
    m = json.loads((out / "manifest.json").read_text())
    assert m["stats"]["videos_ok"] == 1 and m["stats"]["samples"] == 4  # 4 s at a 1 s stride
    assert not list(out.rglob("*.tmp"))
    strict = run_cli("avsa_data", "shard", "--src", str(raw), "--out", str(out), "-q", "-k", "4", "--strict",
                     check=False)
    assert strict.returncode == 1
    (raw / "synth_0000.mp4").unlink()
    none_ok = run_cli("avsa_data", "shard", "--src", str(raw), "--out", str(tmp_path / "o2"), "-q", "-k", "4",
                      check=False)
    assert none_ok.returncode == 1


def test_bad_flags_give_one_clear_error(synth_raw, tmp_path):
    r = run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(tmp_path / "x"), "--renders",
                "foa,surround", check=False)
    assert r.returncode != 0 and "--renders" in r.stderr and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    r = run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(tmp_path / "x"), "--shard-size", "lots",
                check=False)
    assert r.returncode != 0 and "shard-size" in r.stderr and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------------------------- verify


def _rewrite_without(src: Path, dst: Path, drop_suffix: str) -> None:
    with tarfile.open(src) as tin, tarfile.open(dst, "w", format=tarfile.USTAR_FORMAT) as tout:
        dropped = False
        for ti in tin:
            if not dropped and ti.name.endswith(drop_suffix):
                dropped = True
                continue
            tout.addfile(ti, tin.extractfile(ti))


def test_verify_catches_truncation_flipped_byte_and_missing_member(synth_shards, tmp_path):
    ok = run_cli("avsa_data", "verify", str(synth_shards))
    assert "OK" in ok.stdout
    cases = {}
    for case in ("truncated", "flipped", "missing"):
        d = tmp_path / case
        shutil.copytree(synth_shards, d)
        tar = d / "train-000000.tar"
        data = bytearray(tar.read_bytes())
        if case == "truncated":
            tar.write_bytes(bytes(data[: len(data) // 2]))
        elif case == "flipped":
            # flip a byte inside the first JPEG member's payload
            with tarfile.open(fileobj=io.BytesIO(bytes(data))) as t:
                ti = next(x for x in t if x.name.endswith(".jpg"))
            data[ti.offset_data + 200] ^= 0xFF
            tar.write_bytes(bytes(data))
        else:
            _rewrite_without(synth_shards / "train-000000.tar", tar, ".m01.v03.jpg")
        r = run_cli("avsa_data", "verify", str(d), check=False)
        assert r.returncode == 1, (case, r.stdout, r.stderr)
        cases[case] = r.stderr
    assert "truncated" in cases["truncated"] or "size" in cases["truncated"]
    assert "sha256" in cases["flipped"]
    assert "missing member m01.v03.jpg" in cases["missing"]


# ------------------------------------------------------------------------------------------ readability


def test_plain_webdataset_tar_and_numpy_reader(synth_shards):
    import webdataset as wds

    url = str(synth_shards / "train-000000.tar")
    s = next(iter(wds.WebDataset(url, shardshuffle=False).decode("rgb8")))
    meta = s["meta.json"]
    assert meta["format_version"] == 3 and s["__key__"] == meta["key"] and "." not in s["__key__"]
    # self-describing audio (format_version 2)
    assert meta["audio"]["channel_order"] == {"foa": ["W", "Y", "Z", "X"], "mono": ["M"], "stereo": ["left", "right"]}
    assert meta["audio"]["normalisation"] == "SN3D" and meta["audio"]["angle_units"] == "degrees"
    assert "(W + X) / 2" in meta["audio"]["mono"]
    assert meta["binaural"]["mode"] == "virtual-mic" and meta["binaural"]["decoder"] == "virtual-mic"
    assert s["m00.v00.jpg"].shape == (8 * 112, 112, 3)
    import soundfile as sf

    # format 3, default --renders auto: the unrotated FOA only; a view's audio is a rotation of it (FORMAT.md)
    assert meta["renders"] == [] and not any(k.endswith(".v00.foa.flac") for k in s)
    foa, sr = sf.read(io.BytesIO(s["m00.foa.flac"]), always_2d=True)
    assert foa.shape == (24000, 4) and sr == 24000
    names = subprocess.run(["tar", "tf", url], capture_output=True, text=True, check=True).stdout.split()
    assert f"{meta['key']}.m01.v07.jpg" in names and f"{meta['key']}.m01.foa.flac" in names
    # docs/FORMAT.md "Reading", plain WebDataset: a view's FOA, mono and stereo from the unrotated FOA in numpy
    foa = foa.T * meta["audio_scale"]
    r = next(iter_samples(url))
    for k in (0, 3):
        v = meta["viewpoints"][k]
        a, e = np.radians(v["azimuth"]), np.radians(v["elevation"])
        yaw = np.array([[np.cos(a), np.sin(a), 0], [-np.sin(a), np.cos(a), 0], [0, 0, 1]])  # by -azimuth
        pitch = np.array([[np.cos(e), 0, np.sin(e)], [0, 1, 0], [-np.sin(e), 0, np.cos(e)]])  # by +elevation
        x, y, z = pitch @ yaw @ foa[[3, 1, 2]]
        view_foa, mono, stereo = np.stack([foa[0], y, z, x]), (foa[0] + x) / 2, np.stack([foa[0] + y, foa[0] - y]) / 2
        for render, mine in (("foa", view_foa), ("mono", mono[None]), ("stereo", stereo)):
            np.testing.assert_allclose(mine, r.audio(k, 0, render), atol=1e-6)
    assert r.clip(0).shape == (8, 112, 112, 3) and r.clip(0).dtype == np.uint8
    assert r.audio(0, 1, "stereo").shape == (2, 24000)
    seg, conf = r.masks(0, 0, lowres=True)
    assert seg.shape == (56, 56) and conf.dtype == np.float32 and 0 <= conf.min() <= conf.max() <= 1


def test_audio_members_are_tagged_for_ffmpeg(stored_render_shards, tmp_path):
    """The FLAC members of a real shard describe themselves to ffmpeg: ambiX (not quad), mono, stereo."""
    import imageio_ffmpeg

    s = next(iter_samples(stored_render_shards))
    for member, expect in (("m00.foa.flac", "4 channels (TFL+TFC+TFR+TBL)"), ("m00.v00.foa.flac", "AMBISONIC"),
                           ("m00.v00.mono.flac", "24000 Hz, mono,"), ("m00.v00.stereo.flac", "24000 Hz, stereo,")):
        path = tmp_path / member
        path.write_bytes(s.members[member])
        report = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                                capture_output=True, text=True).stderr
        assert expect in report and ", quad," not in report, (member, report)


def test_hrir_shards_record_the_set_and_rerender_identically(synth_raw, tmp_path):
    """--binaural hrir: meta.binaural names the set by hash, config.json hashes it, and a reader rendering the
    stereo from the stored FOA gets the stored stereo."""
    from avsa_data import binaural, hrir_sets

    out = tmp_path / "hrir"
    run_cli("avsa_data", "shard", "--src", str(synth_raw), "--out", str(out), "--binaural", "hrir", "--sofa", "default",
            "--hrir-decoder", "magls", "-k", "2", "--moments-per-video", "1", "-j", "1", "-q")
    sha = hrir_sets.KNOWN_HRIR_SETS["ku100"].sha256
    assert json.loads((out / "config.json").read_text())["config"]["sample"]["sofa_sha256"] == sha
    s = next(iter_samples(out))
    rec = s.meta["binaural"]
    assert rec["sofa"] == "default" and rec["sofa_sha256"] == sha and rec["sofa_file"] == "default_hrtf.sofa"
    assert rec["decoder"] == "magls" and rec["decoder_params"]["cutoff_hz"] == binaural.MAGLS_CUTOFF_HZ
    from avsa_data.renders import render_at

    for k in (0, 1):
        np.testing.assert_allclose(render_at(s.foa(0), s.meta, s.viewpoint(k), "stereo"), s.audio(k, 0, "stereo"),
                                   atol=3e-4)


def test_renders_readers_make_equal_the_stored_renders(synth_shards, stored_render_shards, tmp_path):
    """Default shards (``--renders auto``) store no per-view render: a reader's rotated FOA, mono and virtual-mic
    stereo, made from the unrotated FOA, equal the builder's stored renders (``--renders foa,mono,stereo``) to
    the 16-bit quantisation; the two jobs draw the same viewpoints; ``--renders foa`` stores just that."""
    stored = {s.key: s for s in iter_samples(stored_render_shards)}
    n = 0
    for s in iter_samples(synth_shards):
        f = stored[s.key]
        assert s.meta["viewpoints"] == f.meta["viewpoints"] and s.meta["renders"] == []
        assert f.meta["renders"] == ["foa", "mono", "stereo"] and "m01.v05.stereo.flac" in f.members
        assert not any(k.count(".") == 3 and k.endswith(".flac") for k in s.members)
        np.testing.assert_array_equal(s.foa(1), f.foa(1))
        for k in (0, 5):
            for r in ("foa", "mono", "stereo"):
                made, kept = s.audio(k, 1, r), f.audio(k, 1, r)
                assert f"m01.v{k:02d}.{r}.flac" not in s.members and f"m01.v{k:02d}.{r}.flac" in f.members
                np.testing.assert_allclose(made, kept, rtol=0, atol=2 * 2.0**-15 * f.meta["audio_scale"])
            n += 1
    assert n > 0
    size_stored = sum(p.stat().st_size for p in stored_render_shards.glob("*.tar"))
    size_auto = sum(p.stat().st_size for p in synth_shards.glob("*.tar"))
    assert size_auto < 0.3 * size_stored, (size_auto, size_stored)


def test_renders_flag_stores_what_readers_cannot_make():
    """``--renders auto`` stores nothing with virtual-mic stereo (a matrix of the FOA) and the stereo with an
    HRIR (a convolution); ``none`` and named subsets are taken as given, in canonical order; typos are refused."""
    from avsa_data.renders import stored_renders

    assert stored_renders(("auto",), "virtual-mic") == () and stored_renders(("auto",), "hrir") == ("stereo",)
    assert stored_renders(("none",), "hrir") == () and stored_renders((), "virtual-mic") == ()
    assert stored_renders(("stereo", "foa"), "virtual-mic") == ("foa", "stereo")
    for bad in (("foa", "foa"), ("stero",), ("auto", "foa")):
        with pytest.raises(ValueError, match="--renders"):
            stored_renders(bad, "virtual-mic")
    assert SampleConfig().stored_renders == ()
    assert SampleConfig(binaural="hrir", sofa="default").stored_renders == ("stereo",)
    # auto stays auto: a config derived from the default one with an HRIR stores the stereo too
    assert replace(SampleConfig(), binaural="hrir", sofa="default").stored_renders == ("stereo",)
    assert SampleConfig(renders=("mono",)).as_dict()["renders"] == ["mono"]


def test_inspect_writes_contact_sheet_and_wavs(synth_shards, tmp_path):
    shard = synth_shards / "train-000000.tar"
    r = run_cli("avsa_data", "inspect", str(shard), "--png", str(tmp_path / "sheet.png"), "--listen",
                str(tmp_path / "wav"))
    assert "v7:" in r.stdout
    png = (tmp_path / "sheet.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    wavs = sorted((tmp_path / "wav").glob("*.wav"))
    assert len(wavs) == 1 + 8 * 3
    missing = run_cli("avsa_data", "inspect", str(shard), "--key", "nope/000000", check=False)
    assert missing.returncode == 1 and "no sample" in missing.stderr


def test_viewpoint_bank_is_deterministic_per_video_and_moment(synth_shards):
    from avsa_data.samples import SampleConfig, sample_viewpoints

    cfg = SampleConfig(seed=0)
    for s in iter_samples(synth_shards / "val-000000.tar"):
        views = [Viewpoint.from_dict(v) for v in s.meta["viewpoints"]]
        assert views == sample_viewpoints(cfg, s.meta["video_id"], s.meta["moment"])
