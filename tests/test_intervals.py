import numpy as np
import pytest

from edge_bus import intervals
from edge_bus.metrics import classification_report, weighted_f1


def test_weighted_f1_is_the_reports_figure():
    rng = np.random.default_rng(3)
    t, p = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    assert weighted_f1(t, p, 3) == pytest.approx(classification_report(t, p, ["a", "b", "c"])["weighted_f1"])
    assert weighted_f1([], [], 3) == 0.0


def test_interval_holds_the_figure_and_narrows_with_more_images():
    rng = np.random.default_rng(0)
    small, large = rng.uniform(0, 1, 40), rng.uniform(0, 1, 400)
    lo_s, hi_s = intervals.interval(intervals.mean_of(small), 40)
    lo_l, hi_l = intervals.interval(intervals.mean_of(large), 400)
    assert lo_s < small.mean() < hi_s and lo_l < large.mean() < hi_l
    assert (hi_l - lo_l) < 0.5 * (hi_s - lo_s)  # about 1/sqrt(10) as wide


def test_interval_of_a_constant_is_a_point_and_is_seeded():
    assert intervals.interval(intervals.mean_of([0.7] * 30), 30) == (pytest.approx(0.7), pytest.approx(0.7))
    values = np.random.default_rng(1).uniform(size=60)
    first = intervals.interval(intervals.mean_of(values), 60, seed=5)
    assert intervals.interval(intervals.mean_of(values), 60, seed=5) == first
    assert intervals.interval(intervals.mean_of(values), 60, seed=6) != first


def test_accuracy_intervals_cover_the_true_rate_about_95_percent_of_the_time():
    rng = np.random.default_rng(11)
    covered = 0
    for _ in range(150):
        truth = np.zeros(100, dtype=int)
        pred = np.where(rng.uniform(size=100) < 0.7, 0, 1)  # 70 % right
        lo, hi = intervals.interval(intervals.accuracy_of(truth, pred), 100, resamples=400, seed=int(rng.integers(1 << 30)))
        covered += lo <= 0.7 <= hi
    assert 0.88 <= covered / 150 <= 0.99


def test_paired_difference_of_a_model_with_itself_is_zero():
    values = np.random.default_rng(2).uniform(size=50)
    r = intervals.paired(intervals.mean_of(values), intervals.mean_of(values), 50)
    assert r["difference"] == 0 and r["interval"] == [0.0, 0.0] and r["a_ahead"] == 0.5


def test_paired_sees_a_small_consistent_gain_that_separate_intervals_hide():
    # B = A minus 0.02 on every image, images spread widely: separate intervals overlap, the paired one excludes 0
    a = np.random.default_rng(4).uniform(0.2, 1.0, 100)
    b = a - 0.02
    r = intervals.paired(intervals.mean_of(a), intervals.mean_of(b), 100)
    assert r["difference"] == pytest.approx(0.02) and r["interval"][0] > 0 and r["a_ahead"] == 1.0
    lo_a, _ = intervals.interval(intervals.mean_of(a), 100)
    _, hi_b = intervals.interval(intervals.mean_of(b), 100)
    assert lo_a < hi_b


def test_segmentation_intervals_resample_lesion_images_among_themselves():
    ious = np.array([1.0] * 10 + [0.5] * 10)
    lesion = np.array([False] * 10 + [True] * 10)
    ci = intervals.segmentation_intervals(ious, ious, lesion)
    assert ci["lesion_only"]["iou"] == [pytest.approx(0.5), pytest.approx(0.5)]
    lo, hi = ci["all_images"]["iou"]
    assert lo < 0.75 < hi
    assert intervals.segmentation_intervals(ious, ious, np.zeros(20, bool))["lesion_only"] == {"iou": None, "dice": None}
    assert ci["level"] == 0.95 and ci["resamples"] == intervals.RESAMPLES


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="at least one image"):
        intervals.interval(intervals.mean_of([]), 0)
    with pytest.raises(ValueError, match="level"):
        intervals.interval(intervals.mean_of([1.0]), 1, level=1.5)
