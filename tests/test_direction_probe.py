"""The direction probe (`avsa-train probe`, avsa_train/tasks/direction_probe.py): sectors follow the azimuth
convention, labels are the shards' events relative to each view, the probe reaches high accuracy on features
that carry the direction and chance on a constant, and two runs pair on the same items."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import copy_of, run_train

torch = pytest.importorskip("torch")

from avsa_data import ambisonics, events  # noqa: E402
from avsa_data.reader import iter_samples  # noqa: E402
from avsa_data.samples import SampleConfig  # noqa: E402
from avsa_data.shards import JobConfig, run_shard_job  # noqa: E402
from avsa_data.synth import SynthConfig  # noqa: E402
from avsa_data.viewpoints import Viewpoint  # noqa: E402
from avsa_train.data import items, sources  # noqa: E402
from avsa_train.data.batches import epoch_stream  # noqa: E402
from avsa_train.tasks import direction_probe as dp  # noqa: E402
from avsa_train.tasks.common import write_jsonl  # noqa: E402

#: A tiny STARSS23-layout synthetic set: 8 videos × 4 s (4 train, 4 held out as dev-test → split "test").
SYNTH = SynthConfig(videos=8, duration=4.0, size=(512, 256), seed=3, val_fraction=0.5, layout="starss23")
#: 8 views per sample, a sample every 0.5 s (7 per video); tiny crops and clips: the probe reads only audio.
SHARD = JobConfig(sample=SampleConfig(viewpoints_per_moment=8, stride=0.5, crop_size=32, clip_seconds=0.125, seed=0))
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def starss_raw(test_data) -> Path:
    return test_data.raw(SYNTH)


@pytest.fixture(scope="module")
def probe_shards(test_data, starss_raw) -> Path:
    return test_data.shards(starss_raw, SHARD)


def constant(audio: torch.Tensor) -> torch.Tensor:
    return torch.ones(len(audio), 3)


# ------------------------------------------------------------------------------------------ conventions


def test_sectors_follow_the_azimuth_convention():
    """Sector 0 is centred on the view's front; sectors count towards positive azimuth, i.e. to the LEFT."""
    az = [0.0, 50.0, -50.0, 22.4, 22.6, -22.6, 90.0, -90.0, 180.0, -180.0, 135.0, 359.0]
    assert dp.sector_of(az, 8).tolist() == [0, 1, 7, 0, 1, 7, 2, 6, 4, 4, 3, 0]
    assert dp.sector_of([90.0, -90.0, 44.0, 46.0], 4).tolist() == [1, 3, 0, 1]  # 4 sectors: left is 1, right 3
    assert dp.sector_centres(8) == [0.0, 45.0, 90.0, 135.0, 180.0, -135.0, -90.0, -45.0]
    # a source at +50° (left of front) and one at +60°: one occupied sector, the one left of front
    assert dp.sector_targets([{"azimuth": 50.0}, {"azimuth": 60.0}], 8).tolist() == [0, 1, 0, 0, 0, 0, 0, 0]
    assert dp.sector_targets([], 8).tolist() == [0] * 8


# --------------------------------------------------------------------------------- probe on known features


def _synthetic_items(n_videos: int, per_video: int, seed: int, informative: bool) -> dp.CachedItems:
    """Items with 0–3 sources at random azimuths; features: von Mises bumps of the source directions on 16
    directions plus noise (``informative``), or a constant."""
    rng = np.random.default_rng(seed)
    grid = np.linspace(-np.pi, np.pi, 16, endpoint=False)
    feats, targets, videos = [], [], []
    for v in range(n_videos):
        for _ in range(per_video):
            az = rng.uniform(-180, 180, size=rng.integers(0, 4))
            bump = np.exp(3.0 * (np.cos(grid[None] - np.deg2rad(az)[:, None]) - 1)).sum(0)
            feats.append(bump + 0.1 * rng.standard_normal(16) if informative else np.ones(16))
            targets.append(dp.sector_targets([{"azimuth": a} for a in az], 8))
            videos.append(f"v{seed}_{v}")
    n = len(videos)
    cols = {"key": [f"{vid}/{i:06d}" for i, vid in enumerate(videos)], "moment": [0] * n, "view": [0] * n,
            "video_id": videos, "n_events": [int(t.sum()) for t in targets]}
    return dp.CachedItems(torch.tensor(np.array(feats), dtype=torch.float32),
                          torch.tensor(np.array(targets)), cols, [])


@pytest.mark.parametrize("head", ["linear", "mlp"])
def test_probe_is_accurate_on_direction_features_and_at_chance_on_a_constant(head):
    cfg = dp.DirectionProbeConfig(head=head)
    out = {}
    for informative in (True, False):
        train, held = (_synthetic_items(10, 40, s, informative) for s in (0, 1))
        probe, prior, history = dp.fit_probe(train, cfg, CPU)
        metrics, scores = dp.summarise(dp.predict(probe, held), held.target.numpy(), prior.numpy(),
                                       held.columns["video_id"])
        out[informative] = metrics
    good, const = out[True], out[False]
    assert good["balanced_accuracy"]["mean"] > 80 and good["macro_auc"] > 0.95, good["balanced_accuracy"]
    assert good["gain_over_prior"]["balanced_accuracy"]["gap_ci95_videos"][0] > 25
    assert good["hamming_accuracy"]["mean"] > good["prior_baseline"]["hamming_accuracy"]["mean"] + 5
    # a constant feature: the same prediction for every item, exactly chance for balanced accuracy and AUC
    assert const["balanced_accuracy"]["mean"] == pytest.approx(50.0)
    assert const["macro_auc"] == pytest.approx(0.5)
    assert const["hamming_accuracy"]["mean"] == pytest.approx(const["prior_baseline"]["hamming_accuracy"]["mean"])
    assert const["prior_baseline"]["balanced_accuracy"]["mean"] == pytest.approx(50.0)


def test_item_scores_average_to_macro_balanced_accuracy():
    """The per-item balanced score averages to the mean over sectors of (TPR + TNR) / 2, a sector with one class
    only left out; Hamming counts sectors right at p > 0.5."""
    target = np.array([[1, 0, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]], bool)
    prob = np.array([[0.9, 0.1, 0.2], [0.6, 0.2, 0.1], [0.1, 0.3, 0.3], [0.3, 0.4, 0.2]])
    prior = np.array([0.5, 0.25, 0.25])
    s = dp.item_scores(prob, target, prior)
    # sector 0: pred [1, 1, 0, 0] vs [1, 0, 0, 0]: TPR 1, TNR 2/3; sector 1: pred [0, 0, 1, 1] vs [0, 0, 1, 0]: the
    # same; sector 2 has no occupied item (left out). Unweighted, the items would average 0.75.
    assert s["defined"].tolist() == [True, True, False]
    assert s["balanced"].mean() == pytest.approx((1 + 2 / 3) / 2)
    assert s["hamming"].tolist() == pytest.approx([1.0, 2 / 3, 2 / 3, 1.0])


def test_paired_gap_is_clustered_on_the_differences():
    a = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
    videos = ["a", "a", "b", "b", "c", "c"]
    gap = dp.paired_score_gap(a, a - 0.1, videos)
    assert gap["gap"] == pytest.approx(10.0) and gap["gap_ci95_videos"] == pytest.approx([10.0, 10.0])
    assert gap["n"] == 6 and gap["n_videos"] == 3


# ------------------------------------------------------------------------------------- items from shards


def test_items_are_every_view_with_labels_relative_to_the_view(probe_shards):
    """Every (moment, view) of every test sample is an item; its audio is the unaugmented render of the view;
    its target is the sectors of the events' WORLD directions rotated into that view (computed here from the
    world directions and the viewpoint, not from the stored per-view fields); the audio agrees (physics)."""
    urls = sources.shard_urls(probe_shards, "test")
    samples = {s.key: s for s in iter_samples(urls)}
    rows = agree = single = 0
    stream = epoch_stream(urls, dp.ProbeRows("ambi", 8), epoch=0, seed=0, shuffle=False, buffer=16, batch_size=3)
    for item in stream.iter_items():
        s = samples[item["key"][0]]
        k_views = len(s.meta["viewpoints"])
        assert item["key"] == [s.key] * k_views and item["video_id"] == [s.meta["video_id"]] * k_views
        assert not item["unlabelled"] and item["view"] == list(range(k_views)) and item["moment"] == [0] * k_views
        np.testing.assert_array_equal(item["audio"], items.view_audio(s, list(range(k_views)), 0, "ambi"))
        for j, k in enumerate(item["view"]):
            vp = Viewpoint.from_dict(s.meta["viewpoints"][k])
            rel = [events.to_view(e["azimuth"], e["elevation"], vp)[0] for e in s.events(None, 0)]
            want = np.zeros(8)
            want[dp.sector_of(rel, 8)] = 1
            assert item["target"][j].tolist() == want.tolist(), (item["key"], k)
            rows += 1
            if item["n_events"][j] == 1:  # one active event: the view's FOA energy points into its sector
                single += 1
                az, _ = ambisonics.energy_direction(item["audio"][j])
                agree += bool(want[dp.sector_of(az, 8)])
    assert rows == 28 * 8 and single >= 20
    assert agree / single > 0.7, (agree, single)
    # a batch is its samples' rows end to end, in shard order (3 samples of 8 views: 24 rows)
    batch = next(iter(stream))
    first = [it for _, it in zip(range(3), stream.iter_items())]
    assert batch["audio"].shape[0] == batch["target"].shape[0] == 24 and len(batch["key"]) == 24
    assert batch["key"] == [k for it in first for k in it["key"]] and batch["unlabelled"] == []
    np.testing.assert_array_equal(batch["audio"].numpy(), np.concatenate([it["audio"] for it in first]))


def test_probe_on_shards(probe_shards):
    """End to end on the shards: a feature made from the view's FOA direction scores far above the prior
    baseline; a constant scores exactly chance."""
    cfg = dp.DirectionProbeConfig()
    good, _, items = dp.run_probe(str(probe_shards), dp.doa_histogram, "ambi", cfg, CPU)
    const, _, _ = dp.run_probe(str(probe_shards), constant, "ambi", cfg, CPU)
    assert good["split"] == "test" and good["n"] == 28 * 8 and good["n_videos"] == 4
    assert good["data"]["train"]["items"] == 28 * 8 and good["data"]["eval"]["samples"] == 28
    assert good["balanced_accuracy"]["mean"] > 85 and good["macro_auc"] > 0.9, good["balanced_accuracy"]
    assert good["gain_over_prior"]["balanced_accuracy"]["gap"] > 25
    assert const["balanced_accuracy"]["mean"] == pytest.approx(50.0) and const["macro_auc"] == pytest.approx(0.5)
    assert np.mean(items["score"]) == pytest.approx(good["balanced_accuracy"]["mean"] / 100, abs=1e-6)


def test_samples_without_labels_are_skipped_not_read_as_silence(starss_raw, probe_shards, tmp_path):
    """A sample whose event CSV is missing ("no labels") gives no item (it is counted as skipped); shards with
    no labelled sample stop the command with one line."""
    raw = copy_of(starss_raw, tmp_path / "raw")
    for csv in (raw / "metadata_dev" / "dev-test-synth").glob("*.csv"):
        csv.unlink()
    shards = tmp_path / "shards"
    run_shard_job(raw, shards, SHARD, workers=2, progress=False)
    urls = sources.shard_urls(probe_shards, "train") + sources.shard_urls(shards, "test")
    items = dp.encode_split(urls, constant, "ambi", dp.DirectionProbeConfig(), CPU)
    assert items.describe()["unlabelled_samples_skipped"] == 28 and len(items) == 28 * 8
    assert not any(v.startswith("dev-test") for v in items.columns["video_id"])
    res = run_train("probe", "--shards", str(shards), "--ckpt", "none", "--width", "0.125", out=tmp_path / "o",
                    check=False)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert res.stderr.strip().splitlines()[-1].startswith("Error: probe encode test: 28 sample(s), none with")


# ---------------------------------------------------------------------------------- command and compare


def test_probe_command_and_paired_compare(probe_shards, tmp_path, capsys):
    a = tmp_path / "a"
    run_train("probe", "--shards", str(probe_shards), "--ckpt", "none", "--width", "0.125", "--epochs", "20",
              out=a)
    doc = json.loads((a / "probe.json").read_text())
    assert doc["schema"] == "avsa.eval.probe" and doc["config"]["eval_split"] == "test"
    m = doc["metrics"]
    assert m["n"] == 28 * 8 and len(m["per_sector"]) == 8 and m["prior_baseline"]["macro_auc"] == 0.5
    rows = [json.loads(ln) for ln in (a / "probe_items.jsonl").read_text().splitlines()]
    assert len(rows) == 28 * 8 and len({(r["key"], r["moment"], r["view"]) for r in rows}) == len(rows)
    assert np.mean([r["score"] for r in rows]) * 100 == pytest.approx(m["balanced_accuracy"]["mean"], abs=1e-3)

    # B: a constant feature on the same items (library run, written like the command writes its items)
    _, _, items_b = dp.run_probe(str(probe_shards), constant, "ambi", dp.DirectionProbeConfig(), CPU)
    b = tmp_path / "b"
    write_jsonl(b, "probe_items", [dict(zip(items_b, v)) for v in zip(*items_b.values())])
    printed = dp.main(["compare", str(a / "probe_items.jsonl"), str(b / "probe_items.jsonl"), "--out",
                       str(tmp_path / "gap.json")])
    gap = json.loads((tmp_path / "gap.json").read_text())
    assert json.loads(capsys.readouterr().out) == gap == printed
    ba = gap["balanced_accuracy"]
    assert ba["b"] == pytest.approx(50.0) and ba["gap"] == pytest.approx(ba["a"] - 50.0, abs=1e-3)
    assert ba["n"] == 28 * 8 and ba["n_videos"] == 4 and ba["gap_ci95_videos"][0] < ba["gap"]
    same = dp.paired_items_gap(rows, rows)["balanced_accuracy"]
    assert same["gap"] == 0 and same["gap_ci95_videos"] == [0.0, 0.0]
    # other items (or other targets) are not a paired comparison
    with pytest.raises(ValueError, match="different items"):
        dp.paired_items_gap(rows, rows[1:])
    bad = [{**r, "target": r["target"][::-1]} if i == 0 else r for i, r in enumerate(rows)]
    with pytest.raises(ValueError, match="different targets"):
        dp.paired_items_gap(rows, bad)
    with pytest.raises(SystemExit) as stop:  # not an items file: one line, exit status 1
        dp.main(["compare", str(a / "probe_items.jsonl"), str(a / "probe.json")])
    assert stop.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and len(err.strip().splitlines()) == 1, err
