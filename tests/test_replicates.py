"""The replicates runner's scale overrides and its pooled paired gap (no training: pure functions)."""

import pytest

from avsa_train.demo import SCALES
from avsa_train.replicates import pooled_gap, scale_with


def test_scale_with_types_values_like_the_field():
    sc = scale_with(SCALES["full"], ["avsa_steps=100", "lr=0.002", "head_augment=false", "spec=mel128"])
    assert (sc.avsa_steps, sc.lr, sc.head_augment, sc.spec) == (100, 0.002, False, "mel128")
    assert isinstance(sc.avsa_steps, int) and isinstance(sc.lr, float)
    assert sc.avc_steps == SCALES["full"].avc_steps  # untouched fields keep their value
    assert scale_with(SCALES["full"], ["sounding_objects=3,5"]).sounding_objects == (3, 5)


@pytest.mark.parametrize("bad, says", [("avsa_step=1", "FIELD one of"), ("avsa_steps=1.5", "must be int"),
                                       ("head_augment=yes", "true or false"), ("avsa_steps", "FIELD=VALUE"),
                                       ("sounding_objects=3", "must be tuple of 2 int")])
def test_scale_with_refuses_bad_overrides(bad, says):
    with pytest.raises(ValueError, match=says):
        scale_with(SCALES["full"], [bad])


def test_pooled_gap_pairs_items_and_averages_runs():
    # 4 videos × 2 items; A is right on every item, B on the first item of each video: gap 50 points
    a = {(f"v{v}", i, 0): (1.0, f"v{v}") for v in range(4) for i in range(2)}
    b = {(f"v{v}", i, 0): (float(i == 0), f"v{v}") for v in range(4) for i in range(2)}
    g = pooled_gap([(a, b)])
    assert (g["gap"], g["n"], g["n_videos"], g["runs"]) == (50.0, 8, 4, 1)
    # a second run where B is right everywhere halves the per-item gap; an item only one run has is dropped
    b2 = dict.fromkeys(b, None) | {k: (1.0, k[0]) for k in b}
    a2 = a | {("v9", 0, 0): (1.0, "v9")}
    g2 = pooled_gap([(a, b), (a2, b2)])
    assert (g2["gap"], g2["n"], g2["runs"]) == (25.0, 8, 2)
