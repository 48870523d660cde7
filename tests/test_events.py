"""Sound-event (SELD) labels: the STARSS23 / DCASE layout, CSV validation, per-view rotated directions.

End to end: ``avsa-data synth --layout starss23`` → ``avsa-data shard`` (layout detected) → reader / loader /
inspect. The physics checks compare the stored labels with the stored audio (energy vector of the rotated FOA)
and the stored pixels (the painted object at the predicted crop pixel).
"""

from __future__ import annotations

import csv
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli

from avsa_data import ambisonics, codecs, events, layouts
from avsa_data.crops import CropGrid
from avsa_data.geometry import angular_distance, equirect_to_direction
from avsa_data.reader import iter_samples
from avsa_data.shards import JobConfig
from avsa_data.synth import CLASSES, SynthConfig, make_scene
from avsa_data.viewpoints import Viewpoint

SYNTH = SynthConfig(videos=4, duration=4.0, size=(512, 256), seed=3, val_fraction=0.25, layout="starss23")
#: The shards of the STARSS23-shaped set: the default job, 8 samples per shard.
SHARD = JobConfig(shard_size=8)


# ------------------------------------------------------------------------------------------- unit tests


def _parse(lines: list[str], duration: float = 10.0, n_classes: int = 13) -> events.EventTrack:
    return events.parse_rows(list(csv.reader(lines)), "x.csv", n_classes, duration)


def test_parse_dcase_rows_both_versions():
    tr = _parse(["0,1,0,30,10", "0,4,1,-170.5,-20.25,250", "", "12,12,0,180,90"])
    assert tr.at(0.05) == (events.Event(0, 1, 0, 30.0, 10.0, None), events.Event(0, 4, 1, -170.5, -20.25, 2.5))
    assert tr.at(1.25)[0].class_id == 12 and tr.at(1.15) == ()
    assert tr.frame_at(0.3) == 3 and tr.frame_at(0.2999) == 2  # 0.3 / 0.1 is 2.999… in floating point


@pytest.mark.parametrize("row, message", [
    ("3,1,0,abc,10", "azimuth 'abc' is not a number"),
    ("3,1,0,30", "expected 5 or 6 fields"),
    ("3,1,0,30,10,5,7", "expected 5 or 6 fields"),
    ("3.5,1,0,30,10", "frame '3.5' is not an integer"),
    ("3,13,0,30,10", "class 13 is not in the class map"),
    ("-1,1,0,30,10", "must be ≥ 0"),
    ("100,1,0,30,10", "frame 100 starts at 10.00 s, past the end"),
    ("3,1,0,180.5,10", "azimuth 180.5 is outside"),
    ("3,1,0,30,-91", "elevation -91.0 is outside"),
    ("3,1,0,30,10,-1", "distance -1.0 cm is negative"),
    ("3,1,0,nan,10", "not finite"),
])
def test_bad_rows_fail_with_file_and_line(row, message):
    with pytest.raises(events.EventLabelError) as e:
        _parse(["0,1,0,0,0", row])
    assert str(e.value).startswith("x.csv line 2: ") and message in str(e.value), str(e.value)


def test_duplicate_event_rejected():
    with pytest.raises(events.EventLabelError, match="line 2: frame 0 lists class 1 source 0 twice"):
        _parse(["0,1,0,0,0", "0,1,0,5,5"])


def test_view_direction_is_the_foa_rotation(rng):
    """The label rotation is the FOA rotation: the energy direction of a plane wave rotated by rotate_to_view."""
    sig = rng.standard_normal(4000)
    for _ in range(20):
        az, el = rng.uniform(-180, 180), rng.uniform(-80, 80)
        view = Viewpoint(rng.uniform(-180, 180), rng.uniform(-30, 30), 60.0, 50.0)
        rotated = ambisonics.rotate_to_view(ambisonics.encode(sig, az, el), view.azimuth, view.elevation)
        vaz, vel = events.to_view(az, el, view)
        assert angular_distance(*ambisonics.energy_direction(rotated), vaz, vel) < 1e-4


def test_crop_pixel_and_in_view_match_the_crop_grid(rng):
    """The pixel of a view-relative direction is where CropGrid samples that direction of the equirect."""
    H, W = 96, 128
    checked = 0
    for _ in range(40):
        v = Viewpoint(rng.uniform(-180, 180), rng.uniform(-30, 30), rng.uniform(25, 90), rng.uniform(25, 90))
        fx, fy = CropGrid(v, (H, W)).fx, CropGrid(v, (H, W)).fy
        r, c = int(rng.integers(0, H)), int(rng.integers(0, W))
        # the world direction CropGrid samples at crop pixel (r, c), made view-relative
        waz, wel = equirect_to_direction(fx[r, c] * 3600 - 0.5, fy[r, c] * 1800 - 0.5, 1800, 3600)
        vaz, vel = events.to_view(float(waz), float(wel), v)
        assert events.in_view(vaz, vel, v.hfov, v.vfov)
        col, row = events.crop_pixel(vaz, vel, v.hfov, v.vfov, (H, W))
        assert abs(col - c) < 0.05 and abs(row - r) < 0.05, (col, row, c, r)
        checked += 1
    assert checked == 40
    # just outside each edge of the field of view
    assert not events.in_view(45.5, 0.0, 90.0, 60.0) and events.in_view(44.5, 0.0, 90.0, 60.0)
    assert not events.in_view(0.0, 30.5, 90.0, 60.0) and events.in_view(0.0, -29.5, 90.0, 60.0)
    assert not events.in_view(180.0, 0.0, 170.0, 170.0) and events.crop_pixel(180.0, 0.0, 90, 90, (8, 8)) is None


def test_mirror_is_the_audio_flip(rng):
    """Mirrored labels point where the horizontally flipped FOA's energy points."""
    sig = rng.standard_normal(4000)
    for _ in range(10):
        e = {"azimuth": float(rng.uniform(-180, 180)), "elevation": float(rng.uniform(-60, 60))}
        flipped = ambisonics.flip_horizontal(ambisonics.encode(sig, e["azimuth"], e["elevation"]))
        m = events.mirror([e])[0]
        assert angular_distance(*ambisonics.energy_direction(flipped), m["azimuth"], m["elevation"]) < 1e-4
    assert events.mirror([{"azimuth": -180.0, "world_azimuth": 30.0}]) == [{"azimuth": -180.0, "world_azimuth": -30.0}]


def test_starss23_class_map_is_shipped():
    c = events.EventClasses.load("starss23")
    assert len(c.names) == 13 and c.names[0] == "Female speech, woman speaking" and c.names[12] == "Knock"


def test_split_of_folder():
    assert [layouts.split_of_folder(n) for n in ("dev-train-sony", "dev-test-tau", "dev-val", "dev-trainx", "x")] \
        == ["train", "test", "val", None, None]


# --------------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def starss(test_data) -> Path:
    return test_data.raw(SYNTH)


@pytest.fixture(scope="module")
def starss_shards(test_data, starss) -> Path:
    return test_data.shards(starss, SHARD)


def _scene(video_id: str):
    index = int(video_id.rsplit("_", 1)[1])
    return make_scene(SynthConfig(videos=4, duration=4.0, seed=3, size=(512, 256)), index)


def test_synth_layout_is_starss23_shaped(starss):
    for d in ("video_dev", "foa_dev", "metadata_dev"):
        assert sorted(p.name for p in (starss / d).iterdir() if p.is_dir()) == ["dev-test-synth", "dev-train-synth"]
    assert (starss / "foa_dev/dev-train-synth/synth_0000.wav").is_file()
    assert not (starss / "videos.csv").exists()
    rows = list(csv.reader(open(starss / "metadata_dev/dev-train-synth/synth_0000.csv")))
    assert rows and all(len(r) == 5 for r in rows)
    classes = json.loads((starss / "metadata_dev/classes.json").read_text())["classes"]
    assert classes == [c.name for c in CLASSES]


def test_csv_labels_are_exact(starss):
    """Every CSV row is a sounding source on at the frame centre, at its true direction there, and vice versa."""
    for csv_path in sorted((starss / "metadata_dev").rglob("*.csv")):
        scene = _scene(csv_path.stem)
        track = events.read_csv(csv_path, len(CLASSES), 4.0)
        for f in range(40):
            t = (f + 0.5) * 0.1
            want = sorted((s.class_id - 1, *map(float, s.direction(t))) for s in scene.sources if s.is_on(t))
            got = [(e.class_id, e.azimuth, e.elevation) for e in track.by_frame.get(f, ())]
            assert len(got) == len(want)
            for g, w in zip(got, want):
                assert g[0] == w[0] and angular_distance(g[1], g[2], w[1], w[2]) < 1e-3


def test_layout_detected_splits_and_ids(starss_shards):
    m = json.loads((starss_shards / "manifest.json").read_text())
    assert m["stats"]["videos_ok"] == 4 and sorted(m["stats"]["splits"]) == ["test", "train"]
    assert {v: r["split"] for v, r in m["videos"].items()} == {
        "dev-train-synth__synth_0000": "train", "dev-train-synth__synth_0001": "train",
        "dev-train-synth__synth_0002": "train", "dev-test-synth__synth_0003": "test"}
    assert m["format_version"] == 3 and m["config"]["events"]["classes"].endswith("metadata_dev/classes.json")


def _single_source_moments(s):
    """(moment, event) pairs where exactly one source sounds during the whole audio window."""
    scene = _scene(s.meta["video_id"])
    out = []
    for m, t in enumerate(s.meta["times"]):
        window = np.linspace(t - 0.5, t + 0.5, 201)
        sounding = [src for src in scene.sources if src.is_on(window).any()]
        evs = s.events(None, m)
        if len(sounding) == 1 and len(evs) == 1 and sounding[0].is_on(window).all():
            out.append((m, evs[0]))
    return out


def test_label_direction_matches_rotated_foa_energy(starss_shards):
    """Physics: while one source is active, every view's label direction is the energy-vector direction of the
    stored rotated FOA of that view (and the world label that of the stored unrotated FOA)."""
    errors = []
    for s in iter_samples(starss_shards):
        for m, e in _single_source_moments(s):
            errors.append(angular_distance(*ambisonics.energy_direction(s.foa(m)), e["azimuth"], e["elevation"]))
            for k in range(s.num_views):
                v = s.events(k, m)[0]
                errors.append(angular_distance(*ambisonics.energy_direction(s.audio(k, m, "foa")),
                                               v["azimuth"], v["elevation"]))
    assert len(errors) >= 4 * 9, len(errors)  # at least four single-source moments × (world + 8 views)
    assert max(errors) < 5.0, max(errors)


def test_in_view_event_is_painted_at_its_crop_pixel(starss_shards):
    """Physics: a visible source marked in_view shows its colour at the predicted pixel of the crop's centre
    frame (inspect draws its marker there: avsa_data.inspection.event_pixels); not in_view → not in the crop."""
    from avsa_data.inspection import event_pixels

    hits = misses = 0
    for s in iter_samples(starss_shards):
        scene = _scene(s.meta["video_id"])
        visible = {src.class_id - 1 for src in scene.sources if src.visible}
        for k in range(s.num_views):
            clip = s.clip(k)
            frame = clip[len(clip) // 2].astype(float)
            pixels = event_pixels(s, k, 0, frame.shape[:2])
            assert len(pixels) == sum(e["in_view"] for e in s.events(k))
            for e, col, row in pixels:
                if e["class_id"] not in visible:
                    continue
                colour = np.array(CLASSES[e["class_id"]].colour, float)
                r, c = int(round(row)), int(round(col))
                patch = frame[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].reshape(-1, 3)
                dist = np.linalg.norm(patch - colour, axis=1).min()
                hits += dist < 60
                misses += dist >= 60
    assert hits >= 15 and misses == 0, (hits, misses)


def test_reader_and_loader_flip_mirror_labels(starss_shards):
    """The loader's flip negates label azimuths, and they stay where the flipped FOA's energy points."""
    pytest.importorskip("torch")
    from avsa_train.data.items import decode_item
    from avsa_train.data.stream_config import StreamConfig

    checked = 0
    for s in iter_samples(starss_shards):
        for m, _ in _single_source_moments(s):
            if m != 0:
                continue
            for flip_p in (0.0, 1.0):
                cfg = StreamConfig(views=4, moments=1, audio_format="ambi", train=True, flip_p=flip_p,
                                   with_events=True, color_jitter=False)
                item = decode_item(s, cfg, epoch=0)
                assert item["flip"] == (flip_p == 1.0)
                for j, k in enumerate(item["views"]):
                    (e,) = item["events"][0][j]
                    plain = s.events(int(k), 0)[0]
                    assert e["azimuth"] == pytest.approx(-plain["azimuth"] if item["flip"] else plain["azimuth"])
                    assert e["elevation"] == plain["elevation"] and e["in_view"] == plain["in_view"]
                    err = angular_distance(*ambisonics.energy_direction(item["audio"][0, j]), e["azimuth"],
                                           e["elevation"])
                    assert err < 5.0, err
                    checked += 1
    assert checked >= 8


def test_inspect_lists_and_draws_events(starss_shards, tmp_path):
    pytest.importorskip("matplotlib")
    shard = starss_shards / "train-000000.tar"
    out = run_cli("avsa_data", "inspect", str(shard), "--png", str(tmp_path / "sheet.png"))
    s = next(iter_samples(shard))
    assert "sound events: labelled" in out.stdout
    for e in s.events(None, 0):
        assert f"{e['class_name']} #{e['track']}: az {e['azimuth']:7.2f}°" in out.stdout
    assert (tmp_path / "sheet.png").stat().st_size > 10_000


# ------------------------------------------------------------------------------------------ bad inputs


def test_validation_failures_and_missing_files(starss, tmp_path):
    """Bad CSVs fail their recording (stage events, file + line + problem in failures.jsonl); a missing CSV is
    stored as "no labels"; a missing FOA file fails the recording (stage audio)."""
    src = tmp_path / "S"
    video = starss / "video_dev/dev-train-synth/synth_0000.mp4"
    wav = starss / "foa_dev/dev-train-synth/synth_0000.wav"
    good = (starss / "metadata_dev/dev-train-synth/synth_0000.csv").read_text()
    cases = {
        "good": good,
        "bad_field": good + "3,1,0,left,0\n",
        "unknown_class": good + "3,42,0,10,0\n",
        "past_end": good + "40,1,0,10,0\n",
        "azimuth_range": good + "3,1,0,181,0\n",
        "elevation_range": good + "3,1,0,10,95\n",
        "no_csv": None,
        "no_foa": good,
    }
    for d in ("video_dev", "foa_dev", "metadata_dev"):
        (src / d / "dev-test-x").mkdir(parents=True)
    shutil.copy(starss / "metadata_dev/classes.json", src / "metadata_dev/classes.json")
    for name, text in cases.items():
        shutil.copy(video, src / "video_dev/dev-test-x" / f"{name}.mp4")
        if name != "no_foa":
            shutil.copy(wav, src / "foa_dev/dev-test-x" / f"{name}.wav")
        if text is not None:
            (src / "metadata_dev/dev-test-x" / f"{name}.csv").write_text(text)
    out = tmp_path / "out"
    res = run_cli("avsa_data", "shard", "--src", str(src), "--out", str(out), "--moments-per-video", "1", "-k", "2",
                  "--renders", "foa", "-j", "2", "-q")
    assert "from 2/8 videos" in res.stdout and "6 failed" in res.stdout, res.stdout
    fails = {json.loads(x)["video_id"].split("__")[1]: json.loads(x) for x in open(out / "failures.jsonl")}
    n_good = len(good.splitlines())
    expect = {
        "bad_field": "azimuth 'left' is not a number",
        "unknown_class": "class 42 is not in the class map (ids 0..7)",
        "past_end": "frame 40 starts at 4.00 s, past the end of the 4.00 s recording",
        "azimuth_range": "azimuth 181.0 is outside [-180, 180] degrees",
        "elevation_range": "elevation 95.0 is outside [-90, 90] degrees",
    }
    assert sorted(fails) == sorted([*expect, "no_foa"])
    for name, problem in expect.items():
        f = fails[name]
        assert f["stage"] == "events" and f"{name}.csv line {n_good + 1}: {problem}" in f["reason"], f
    assert fails["no_foa"]["stage"] == "audio" and fails["no_foa"]["reason"].endswith(
        f"no such file: {src / 'foa_dev/dev-test-x/no_foa.wav'}"), fails["no_foa"]
    metas = {s.meta["video_id"].split("__")[1]: s.meta for s in iter_samples(out)}
    assert metas["no_csv"]["events"] == {"status": "no labels",
                                         "file": str(src / "metadata_dev/dev-test-x/no_csv.csv")}
    assert metas["good"]["events"]["status"] == "labelled" and metas["good"]["split"] == "test"


def test_general_form_and_list(starss, starss_shards, tmp_path):
    """--audio-dir/--events-dir read the same recordings as the STARSS23 layout; --list overrides splits."""
    lst = tmp_path / "list.csv"
    lst.write_text("video_id,split\ndev-train-synth__synth_0001,val\ndev-test-synth__synth_0003,test\n")
    out = tmp_path / "out"
    run_cli("avsa_data", "shard", "--src", str(starss / "video_dev"), "--audio-dir", str(starss / "foa_dev"),
            "--events-dir", str(starss / "metadata_dev"), "--list", str(lst), "--out", str(out), "-j", "2", "-q")
    m = json.loads((out / "manifest.json").read_text())
    assert {v: r["split"] for v, r in m["videos"].items()} == {"dev-train-synth__synth_0001": "val",
                                                              "dev-test-synth__synth_0003": "test"}
    ref = {s.key: s.meta["events"]["moments"] for s in iter_samples(starss_shards)}
    got = {s.key: s.meta["events"]["moments"] for s in iter_samples(out)}
    assert got and all(got[k] == ref[k] for k in got)


def test_verify_checks_event_labels(starss_shards):
    """verify passes the shards, and catches a per-view label that is not the rotated world label."""
    from avsa_data.verify import check_sample

    run_cli("avsa_data", "verify", str(starss_shards))
    s = next(s for s in iter_samples(starss_shards) if s.events(None))
    assert check_sample(s) == []
    bad = json.loads(json.dumps(s.meta))

    def damaged(meta: dict):
        """The sample with ``meta`` written in (re-hashed: the checksum alone would not tell what is wrong)."""
        meta = {**meta, "meta_sha256": codecs.meta_digest(meta)}
        return replace(s, members={**s.members, "meta.json": codecs.encode_json(meta)})

    bad["events"]["moments"][0][0]["views"][3]["azimuth"] += 2.0
    assert any("view 3 direction is not the world direction rotated" in p for p in check_sample(damaged(bad))), (
        check_sample(damaged(bad)), bad["events"]["moments"][0][0])
    del bad["events"]["moments"][0][0]["views"][1:]
    assert any("8 views expected" in p for p in check_sample(damaged(bad)))


def test_layout_discovery_and_list(tmp_path):
    """Detection, pairing, ids and splits of the STARSS23 layout from empty placeholder files; --list by id or
    path; a STARSS23 folder without foa_dev/ is refused."""
    src = tmp_path / "STARSS23"
    for rel in ("video_dev/dev-train-sony/fold3_room21_mix001.mp4", "video_dev/dev-test-tau/fold4_room2_mix002.mp4",
                "foa_dev/dev-train-sony/fold3_room21_mix001.wav", "metadata_dev/dev-train-sony/fold3_room21_mix001.csv",
                "mic_dev/dev-train-sony/fold3_room21_mix001.wav"):
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).touch()
    spec = layouts.resolve(src, layouts.LayoutSpec())
    assert spec.name == "starss23"
    recs = layouts.discover(src, spec)
    assert recs == [
        layouts.Recording("dev-test-tau__fold4_room2_mix002", "test",
                          str(src / "video_dev/dev-test-tau/fold4_room2_mix002.mp4"),
                          str(src / "foa_dev/dev-test-tau/fold4_room2_mix002.wav"),
                          str(src / "metadata_dev/dev-test-tau/fold4_room2_mix002.csv")),
        layouts.Recording("dev-train-sony__fold3_room21_mix001", "train",
                          str(src / "video_dev/dev-train-sony/fold3_room21_mix001.mp4"),
                          str(src / "foa_dev/dev-train-sony/fold3_room21_mix001.wav"),
                          str(src / "metadata_dev/dev-train-sony/fold3_room21_mix001.csv"))]
    listed = layouts.apply_list(recs, {"video_dev/dev-train-sony/fold3_room21_mix001.mp4": "val"}, src)
    assert [(r.video_id, r.split) for r in listed] == [("dev-train-sony__fold3_room21_mix001", "val")]
    with pytest.raises(layouts.LayoutError, match="names 'nope'"):
        layouts.apply_list(recs, {"nope": "train"}, src)
    assert layouts.own_event_classes(src, spec) is None
    (src / "metadata_dev/classes.json").write_text('{"classes": ["a"]}')
    assert layouts.own_event_classes(src, spec) == str((src / "metadata_dev/classes.json").resolve())
    assert events.EventClasses.load(events.AUTO_CLASSES).name == "starss23"
    shutil.rmtree(src / "foa_dev")
    with pytest.raises(layouts.LayoutError, match="without foa_dev/"):
        layouts.discover(src, layouts.resolve(src, layouts.LayoutSpec()))
    shutil.rmtree(src / "metadata_dev")
    assert layouts.resolve(src, layouts.LayoutSpec()).name == "flat"
