"""avsa-data synth: physics of the written files (decoded back through avsa_data.media), ground truth,
determinism, corrupt variants and the CLI. Tiny configs keep the whole file to a few seconds."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from avsa_data import media, synth
from avsa_data.ambisonics import energy_direction, fuma_to_ambix
from avsa_data.geometry import angular_distance, direction_to_equirect, equirect_direction_grid

DOCS = Path(__file__).resolve().parents[1] / "docs"


def tiny(**kw) -> synth.SynthConfig:
    base = dict(
        videos=3,
        duration=2.0,
        seed=11,
        size=(512, 256),
        fps=8.0,
        sr=16000,
        label_fps=4.0,
        label_size=(256, 128),
    )
    return synth.SynthConfig(**{**base, **kw})


def pixel(az: float, el: float, h: int, w: int) -> tuple[int, int]:
    u, v = direction_to_equirect(az, el, h, w)
    return int(np.rint(v)), int(np.rint(u)) % w


def assert_painted(video: Path, truth: dict, tol: float = 45.0) -> int:
    """Every visible source shows its class colour in the decoded frame and its class id in the label map, at
    its true direction, at every label time. Returns the number of checks made."""
    frames = list(media.iter_video_frames(video, float(truth["label_fps"])))
    labels = truth["labels"]
    assert len(frames) == labels.shape[0]
    colours = truth["class_colours"].astype(float)
    checks = 0
    for k in np.flatnonzero(truth["source_visible"]):
        cid = int(truth["source_class"][k])
        for i, frame in enumerate(frames):
            az, el = float(truth["source_az"][k, i]), float(truth["source_el"][k, i])
            r, c = pixel(az, el, *frame.shape[:2])
            assert np.abs(frame[r, c].astype(float) - colours[cid]).max() <= tol, (cid, i, frame[r, c])
            r, c = pixel(az, el, *labels.shape[1:])
            assert labels[i, r, c] == cid
            checks += 1
    return checks


def window_direction(foa: np.ndarray, sr: int, t0: float, t1: float) -> tuple[float, float]:
    return energy_direction(foa[:, int(t0 * sr) : int(t1 * sr)])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> tuple[synth.SynthConfig, Path, list[dict]]:
    cfg = tiny()
    out = tmp_path_factory.mktemp("synth_a")
    return cfg, out, synth.generate(cfg, out, workers=1, progress=False)


# ------------------------------------------------------------------------------------------------ physics

PHYSICS_CASES = [
    ("ambix", "container", "aac"),
    ("ambix", "container", "pcm"),
    ("ambix", "sidecar", "pcm"),
    ("fuma", "container", "aac"),
    ("fuma", "sidecar", "pcm"),
]


@pytest.mark.parametrize("ambi_format, layout, codec", PHYSICS_CASES)
def test_single_source_direction_survives_encoding(tmp_path, ambi_format, layout, codec):
    """Encoded at its truth direction, decoded from the file: the intensity vector points at the source (≤ 5°),
    the painted object sits there and the class map says so — for a static and a moving source."""
    cfg = tiny(ambi_format=ambi_format, audio_layout=layout, audio_codec=codec, snr_db=20.0)
    scenes = [
        synth.Scene("static", 1, (synth.Source(class_id=4, az=63.0, el=21.0, radius=12.0),)),
        synth.Scene("moving", 2, (synth.Source(class_id=2, az=-120.0, el=-15.0, az_speed=25.0, radius=12.0),)),
    ]
    for scene in scenes:
        meta = synth.write_scene(scene, cfg, tmp_path)
        video = tmp_path / f"{scene.video_id}.mp4"
        src = media.find_audio_source(video)
        assert src.name == meta["audio"]["file"] == (video.name if layout == "container" else f"{scene.video_id}.wav")
        # FuMa: the raw decode is FuMa; converting it gives ambiX (read_foa does the same).
        raw = media.read_audio(src, cfg.sr)
        foa = fuma_to_ambix(raw) if ambi_format == "fuma" else raw
        np.testing.assert_allclose(media.read_foa(src, cfg.sr, ambi_format), foa, atol=1e-6)
        truth = dict(np.load(tmp_path / f"{scene.video_id}.truth.npz"))
        times, az_t, el_t = truth["ctrl_times"], truth["source_az_ctrl"][0], truth["source_el_ctrl"][0]
        for t in np.arange(0.25, cfg.duration - 0.2, 0.25):
            az, el = window_direction(foa, cfg.sr, t - 0.1, t + 0.1)
            j = int(np.argmin(np.abs(times - t)))
            assert angular_distance(az, el, az_t[j], el_t[j]) < 5.0, (scene.video_id, t, az, el, az_t[j], el_t[j])
        if scene.video_id == "static":
            az, el = energy_direction(foa)
            assert angular_distance(az, el, 63.0, 21.0) < 5.0
        assert assert_painted(video, truth) == cfg.n_label_frames


def test_on_off_silent_and_invisible_sources(tmp_path):
    """Sound follows the on/off truth: A (visible) sounds first, then D (invisible); C is visible and silent."""
    cfg = tiny(snr_db=25.0)
    a = synth.Source(class_id=1, az=30.0, el=10.0, on=((0.0, 1.0),))
    c = synth.Source(class_id=6, az=-90.0, el=0.0, sounding=False, on=())
    d = synth.Source(class_id=8, az=150.0, el=-30.0, visible=False, on=((1.0, 2.0),))
    synth.write_scene(synth.Scene("mix", 3, (a, c, d)), cfg, tmp_path)
    foa = media.read_foa(tmp_path / "mix.mp4", cfg.sr)
    truth = dict(np.load(tmp_path / "mix.truth.npz"))
    assert angular_distance(*window_direction(foa, cfg.sr, 0.1, 0.9), 30.0, 10.0) < 5.0
    assert angular_distance(*window_direction(foa, cfg.sr, 1.1, 1.9), 150.0, -30.0) < 5.0
    t = truth["ctrl_times"]
    np.testing.assert_array_equal(truth["source_on_ctrl"][0], t < 1.0)
    assert not truth["source_on_ctrl"][1].any()
    np.testing.assert_array_equal(truth["source_on_ctrl"][2], t >= 1.0)
    np.testing.assert_array_equal(truth["source_visible"], [True, True, False])
    np.testing.assert_array_equal(truth["source_sounding"], [True, False, True])
    present = set(np.unique(truth["labels"]).tolist())
    assert present == {0, 1, 6}  # the invisible source is not in the class map
    assert assert_painted(tmp_path / "mix.mp4", truth) == 2 * cfg.n_label_frames


def test_random_scenes_are_painted_where_truth_says(dataset):
    cfg, out, metas = dataset
    checks = 0
    for m in metas:
        truth = dict(np.load(out / m["truth"]["file"]))
        assert truth["labels"].shape == (cfg.n_label_frames, 128, 256)
        assert len(m["sources"]) == len(truth["source_class"])
        checks += assert_painted(out / m["video"]["file"], truth)
        foa = media.read_foa(media.find_audio_source(out / m["video"]["file"]), cfg.sr, cfg.ambi_format)
        assert foa.shape == (4, cfg.n_samples)
    assert checks > 0


def test_snr_of_diffuse_noise():
    """The diffuse field is added snr_db below the sources' power on W."""
    scene = synth.Scene("snr", 4, (synth.Source(class_id=1, az=0.0, el=0.0),))
    clean, g1 = synth.render_foa(scene, tiny(snr_db=float("inf")))
    noisy, g2 = synth.render_foa(scene, tiny(snr_db=10.0))
    s = clean.astype(np.float64) / g1
    n = noisy.astype(np.float64) / g2 - s
    assert 10 * np.log10(np.mean(s[0] ** 2) / np.mean(n[0] ** 2)) == pytest.approx(10.0, abs=0.05)
    assert np.abs(noisy).max() == pytest.approx(0.7, abs=1e-6)
    az, el = energy_direction(n)  # diffuse: weak intensity compared with its energy
    inten = np.abs((n[0][None] * n[[3, 1, 2]]).mean(axis=1))
    assert np.linalg.norm(inten) < 0.1 * np.mean(n[0] ** 2)


# ------------------------------------------------------------------------------------------ scenes, truth


def test_scene_statistics():
    cfg = tiny(duration=10.0)
    scenes = [synth.make_scene(cfg, i) for i in range(60)]
    assert scenes[5] == synth.make_scene(cfg, 5)
    seen_classes, silent, invisible, moving = set(), 0, 0, 0
    times = np.linspace(0, cfg.duration, 401)
    for sc in scenes:
        n_sv = sum(s.visible and s.sounding for s in sc.sources)
        assert 1 <= n_sv <= 4
        classes = [s.class_id for s in sc.sources]
        assert len(set(classes)) == len(classes)
        seen_classes |= set(classes)
        silent += any(s.visible and not s.sounding for s in sc.sources)
        invisible += any(s.sounding and not s.visible for s in sc.sources)
        moving += any(s.az_speed for s in sc.sources)
        for i, s in enumerate(sc.sources):
            assert (-25 <= s.el <= 35) if s.visible else (-45 <= s.el <= 60)
            if s.sounding:
                assert s.on and all(0 <= a < b <= cfg.duration for a, b in s.on)
            for o in sc.sources[i + 1 :]:
                d = angular_distance(*s.direction(times), *o.direction(times))
                assert d.min() >= s.radius + o.radius + 10.0 - 1.0  # placement is checked every 0.1 s
    assert len(synth.CLASSES) >= 6 and seen_classes == set(range(1, len(synth.CLASSES) + 1))
    assert silent >= 5 and invisible >= 5 and moving >= 10


def test_classes_are_visually_distinct():
    g = np.linspace(-1.4, 1.4, 141)
    s, t = np.meshgrid(g, g)
    masks = {c.name: synth.shape_masks(c.shape, s, t) for c in synth.CLASSES}
    names = list(masks)
    for i, a in enumerate(names):
        inside, primary = masks[a]
        assert primary[70, 70]  # every shape shows its primary colour at its centre
        for b in names[i + 1 :]:
            ca = np.array(synth.CLASSES[i].colour, float)
            cb = np.array(synth.CLASSES[names.index(b)].colour, float)
            iou = (inside & masks[b][0]).sum() / (inside | masks[b][0]).sum()
            assert np.abs(ca - cb).max() >= 80 or iou < 0.7, (a, b)
        assert len({c.colour for c in synth.CLASSES}) == len(synth.CLASSES)


#: Probe points (s left, t up; in units of the object's radius) of each shape: inside, outside, and inside in
#: the secondary colour (two-colour shapes only).
SHAPE_PROBES = {
    "disc": ([(0.0, 0.95), (0.67, 0.67)], [(0.75, 0.75), (0.0, 1.05)], []),
    "square": ([(0.8, 0.8), (-0.8, 0.0)], [(0.0, 0.9), (0.9, 0.0)], []),
    "triangle": ([(0.0, 0.9), (0.6, -0.6)], [(0.0, -0.8), (0.6, 0.6)], []),
    "ring": ([(0.0, 0.0), (0.8, 0.0)], [(0.45, 0.0), (0.55, 0.0), (0.0, 1.05)], []),
    "stripes": ([(0.0, 0.0), (0.9, 0.0)], [(0.75, 0.75)], [(0.5, 0.0), (-0.5, 0.3)]),
    "checker": ([(0.0, 0.0), (0.6, 0.6)], [(0.0, 0.9)], [(0.6, 0.0), (0.0, -0.6)]),
    "cross": ([(0.0, 0.95), (0.95, 0.0)], [(0.6, 0.6), (0.0, 1.05)], []),
    "diamond": ([(0.0, 0.95), (0.45, 0.45)], [(0.6, 0.6), (0.67, 0.67)], []),
}


def test_shape_table_draws_each_named_shape():
    """Each name in the shape table draws that shape (a swapped or copied entry fails), every class's shape is in
    the table, single-colour shapes are all primary, and an unknown name is one clear error."""
    assert set(synth.SHAPES) == set(SHAPE_PROBES) and {c.shape for c in synth.CLASSES} <= set(synth.SHAPES)
    g = np.linspace(-1.2, 1.2, 49)
    for name, (ins, outs, second) in SHAPE_PROBES.items():
        pts = np.array(ins + outs + second, float)
        inside, primary = synth.shape_masks(name, pts[:, 0], pts[:, 1])
        n_in, n_out = len(ins), len(outs)
        assert inside[:n_in].all() and primary[:n_in].all(), name
        assert not inside[n_in : n_in + n_out].any(), name
        assert inside[n_in + n_out :].all() and not primary[n_in + n_out :].any(), name
        inside, primary = synth.shape_masks(name, *np.meshgrid(g, g))
        assert (primary == inside).all() == (not second), name
    with pytest.raises(ValueError, match="unknown shape 'blob'; choose from"):
        synth.shape_masks("blob", np.zeros(1), np.zeros(1))


def test_sound_table_makes_each_class_sound():
    """Each sound type of the synthesiser table makes its documented sound (a swapped entry fails): tones peak at
    the class pitch, noise stays in the class band, bursts are silent between bursts; every sound has unit RMS."""
    sr, n = 16000, 32000
    f = np.fft.rfftfreq(n, 1.0 / sr)
    for cid, c in enumerate(synth.CLASSES, start=1):
        x = synth.class_sound(cid, n, sr, np.random.default_rng(cid))
        assert np.sqrt(np.mean(x**2)) == pytest.approx(1.0), c.name
        power = np.abs(np.fft.rfft(x)) ** 2
        if c.pitch:  # a tone (harmonic, or the carrier of bursts)
            assert abs(f[np.argmax(power)] - c.pitch) < 0.03 * c.pitch, c.name
        else:  # noise in the class band
            in_band = (f >= c.band[0] - 50) & (f <= c.band[1] + 50)
            assert power[in_band].sum() > 0.95 * power.sum(), c.name
        silent = np.mean(np.abs(x) < 1e-9)
        if c.sound == "bursts":  # on for rate·burst of the time
            assert silent == pytest.approx(1.0 - c.rate * c.burst, abs=0.03), c.name
        else:
            assert silent < 0.01, c.name
    assert set(synth.SOUNDS) == {c.sound for c in synth.CLASSES}


def test_shapes_use_spherical_geometry():
    """A disc is a spherical cap: pixels within radius-1px of the centre are in, beyond radius+1px out —
    even at 60° elevation where the equirect stretches it."""
    h, w, radius = 256, 512, 15.0
    rows, cols, inside, _ = synth.object_masks("disc", 100.0, 60.0, radius, h, w)
    az, el = equirect_direction_grid(h, w)
    d = angular_distance(az, el, 100.0, 60.0)
    full = np.zeros((h, w), bool)
    full[np.ix_(rows, cols)] = inside
    px = 180.0 / h
    assert full[d < radius - px].all()
    assert not full[d > radius + px].any()
    assert full.sum() > 0


def test_confidence_is_deliberately_imperfect(dataset):
    cfg, out, metas = dataset
    truth = np.load(out / metas[0]["truth"]["file"])
    labels, conf = truth["labels"], truth["confidence"].astype(np.float32)
    assert conf.dtype == np.float32 and truth["confidence"].dtype == np.float16
    assert (conf >= 0).all() and (conf <= 1).all()
    edges = labels != np.roll(labels, 1, axis=2)
    assert edges.any() and (conf[edges] < 0.75).all()
    assert (conf == 1.0).mean() > 0.8
    scene = synth.Scene("blob", 0, (), (synth.Blob(az=0.0, el=0.0, radius=10.0, confidence=0.3, t0=0.0, t1=1.0),))
    lab, c = synth.label_frame(scene, 0.5, 128, 256)
    assert not lab.any()
    az, el = equirect_direction_grid(128, 256)
    d = angular_distance(az, el, 0.0, 0.0)
    assert (c[d < 9.0] == np.float16(0.3)).all() and (c[d > 11.0] == 1.0).all()
    assert (synth.label_frame(scene, 1.5, 128, 256)[1] == 1.0).all()  # the blob has ended


# -------------------------------------------------------------------------------------------- files, determinism


def test_output_files_and_split(dataset):
    cfg, out, metas = dataset
    names = sorted(p.name for p in out.iterdir())
    stems = [synth.video_id(i) for i in range(3)]
    assert names == sorted(
        ["videos.csv", "synth.json"] + [f"{s}{e}" for s in stems for e in (".mp4", ".truth.npz", ".json")]
    )
    rows = list(csv.DictReader((out / "videos.csv").open()))
    assert [(r["video_id"], r["split"]) for r in rows] == [(stems[0], "train"), (stems[1], "train"), (stems[2], "val")]
    meta = json.loads((out / f"{stems[0]}.json").read_text())
    assert meta["classes"] == list(synth.CLASS_NAMES) and meta["audio"]["channels"] == 4
    pr = media.probe(out / f"{stems[0]}.mp4")
    assert (pr.width, pr.height, pr.fps, pr.sample_rate, pr.channels) == (512, 256, 8.0, 16000, 4)
    assert pr.video_duration == pytest.approx(2.0) and pr.audio_duration == pytest.approx(2.0, abs=0.01)
    assert [synth.split_of(i, 8, 0.25) for i in range(8)] == ["train"] * 6 + ["val"] * 2
    assert [synth.split_of(i, 1, 0.25) for i in range(1)] == ["train"]


def test_same_seed_same_bytes_other_seed_other_content(dataset, tmp_path):
    cfg, out, _ = dataset
    again = tmp_path / "again"
    synth.generate(cfg, again, workers=2, progress=False)  # parallel: must not change a byte
    files = sorted(p.name for p in out.iterdir())
    assert files == sorted(p.name for p in again.iterdir())
    for name in files:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    other = tmp_path / "other"
    synth.generate(tiny(seed=12), other, workers=1, progress=False)
    for i in range(cfg.videos):
        stem = synth.video_id(i)
        for ext in (".mp4", ".truth.npz"):
            assert (out / f"{stem}{ext}").read_bytes() != (other / f"{stem}{ext}").read_bytes()
        assert synth.make_scene(cfg, i) != synth.make_scene(tiny(seed=12), i)


def test_corrupt_variants_raise_media_errors(tmp_path):
    paths = synth.write_corrupt_variants(tmp_path, seed=3)
    assert set(paths) == set(synth.CORRUPT_VARIANTS)
    assert all(p.is_file() for p in paths.values())

    def raised(fn) -> media.MediaError:
        with pytest.raises(media.MediaError) as e:
            fn()
        assert "\n" not in str(e.value) and str(e.value)
        return e.value

    assert raised(lambda: media.probe(paths["truncated"])).kind == "truncated"
    assert raised(lambda: media.read_foa(paths["truncated"], 16000)).kind == "truncated"
    assert raised(lambda: media.find_audio_source(paths["no_audio"])).kind == "no_audio"
    assert raised(lambda: media.read_foa(paths["stereo"], 16000)).kind == "channels"
    pr = media.probe(paths["short_audio"])
    foa = media.read_foa(paths["short_audio"], 16000)
    assert raised(lambda: media.check_durations(pr.duration, foa.shape[1] / 16000, 0.5)).kind == "duration"
    for fn in (
        media.probe,
        media.find_audio_source,
        lambda p: media.read_foa(p, 16000),
        lambda p: media.iter_video_frames(p, 8.0),
    ):
        assert raised(lambda fn=fn: fn(paths["unreadable"])).kind == "unreadable"
    again = synth.write_corrupt_variants(tmp_path / "again", seed=3)
    assert all(paths[k].read_bytes() == again[k].read_bytes() for k in paths)


def test_cli_synth(tmp_path):
    from avsa_data.cli.main import main

    out = tmp_path / "raw"
    res = CliRunner().invoke(
        main,
        [
            "synth",
            "--out",
            str(out),
            "--videos",
            "2",
            "--duration",
            "1",
            "--size",
            "256x128",
            "--fps",
            "8",
            "--sr",
            "16000",
            "--format",
            "fuma",
            "--audio-layout",
            "sidecar",
            "--seed",
            "4",
            "--workers",
            "1",
            "--corrupt",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "wrote 2 videos (1 train, 1 val)" in res.output
    assert (out / "synth_0000.wav").is_file() and (out / "synth_0001.truth.npz").is_file()
    assert not media.probe(out / "synth_0000.mp4").has_audio
    rows = list(csv.DictReader((out / "videos.csv").open()))
    assert len(rows) == 2 + len(synth.CORRUPT_VARIANTS)
    bad = CliRunner().invoke(main, ["synth", "--out", str(out), "--size", "300x100"])
    assert bad.exit_code != 0 and "2:1" in bad.output


def test_format_doc_lists_every_truth_key(dataset):
    cfg, out, metas = dataset
    doc = (DOCS / "FORMAT.md").read_text()
    assert doc.startswith("# avsa data formats") and "## Raw input (format_version 1)" in doc
    documented = set(re.findall(r"`([a-z_]+)`", doc))
    keys = set(np.load(out / metas[0]["truth"]["file"]).files)
    assert keys <= documented, keys - documented
    assert set(json.loads((out / f"{metas[0]['video_id']}.json").read_text())) <= documented
