import numpy as np
import pytest
from scipy.special import softmax
from scipy.stats import binomtest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from helpers import metrics

# Golden arrays: 6 examples, 3 classes; rows are probabilities.
Y_TRUE = np.array([0, 1, 2, 2, 1, 0])
Y_SCORE = np.array([
    [0.7, 0.2, 0.1],
    [0.1, 0.6, 0.3],
    [0.2, 0.5, 0.3],   # wrong: predicts 1
    [0.1, 0.1, 0.8],
    [0.3, 0.3, 0.4],   # wrong: predicts 2
    [0.5, 0.4, 0.1],
])


@pytest.fixture(scope="module")
def random_scores():
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 10, 2000)
    logits = rng.normal(size=(2000, 10)) + 2.5 * np.eye(10)[y_true]
    y_score = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y_true, y_score


@pytest.mark.parametrize("arrays", ["golden", "random"])
def test_summary_metrics_match_scikit_learn(arrays, random_scores):
    y_true, y_score = (Y_TRUE, Y_SCORE) if arrays == "golden" else random_scores
    y_pred = y_score.argmax(1)
    y_bin = label_binarize(y_true, classes=np.arange(y_score.shape[1]))
    got = metrics.summary_metrics(y_true, y_score)
    assert got["accuracy"] == pytest.approx(skm.accuracy_score(y_true, y_pred))
    assert got["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y_true, y_pred))
    assert got["f1_macro"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))
    assert got["precision_weighted"] == pytest.approx(skm.precision_score(y_true, y_pred, average="weighted"))
    assert got["roc_auc_ovr_macro"] == pytest.approx(skm.roc_auc_score(y_true, y_score, multi_class="ovr"))
    assert got["roc_auc_ovr_micro"] == pytest.approx(skm.roc_auc_score(y_bin.ravel(), y_score.ravel()))
    assert got["average_precision_micro"] == pytest.approx(
        skm.average_precision_score(y_bin, y_score, average="micro"))
    assert got["log_loss"] == pytest.approx(skm.log_loss(y_true, y_score))


def test_golden_accuracy_by_hand():
    assert metrics.summary_metrics(Y_TRUE, Y_SCORE)["accuracy"] == pytest.approx(4 / 6)


def test_column_vector_labels_are_refused_not_broadcast():
    with pytest.raises(ValueError, match=r"shape \(n,\)"):
        metrics.summary_metrics(Y_TRUE[:, None], Y_SCORE)
    with pytest.raises(ValueError, match="n=6"):
        metrics.summary_metrics(Y_TRUE, Y_SCORE[:5])
    with pytest.raises(ValueError, match="integer"):
        metrics.summary_metrics(Y_TRUE.astype(float), Y_SCORE)


def test_expected_calibration_error_by_hand():
    # two bins: confidences 0.9 (both right) and 0.6 (one of two right)
    y_true = np.array([0, 0, 1, 1])
    y_score = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    expected = 0.5 * abs(1.0 - 0.9) + 0.5 * abs(0.5 - 0.6)
    assert metrics.expected_calibration_error(y_true, y_score, n_bins=10) == pytest.approx(expected)


def test_temperature_scaling_keeps_the_top_class_and_finds_the_overconfidence():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (4000, 5))
    y_true = np.array([rng.choice(5, p=p) for p in softmax(logits, axis=1)])  # calibrated at temperature 1
    overconfident = softmax(2 * logits, axis=1)
    assert metrics.fit_temperature(y_true, overconfident) == pytest.approx(2, rel=0.1)
    scaled = metrics.temperature_scale(overconfident, 2.0)
    np.testing.assert_allclose(scaled, softmax(logits, axis=1), atol=1e-9)
    assert (scaled.argmax(1) == overconfident.argmax(1)).all()
    ece = metrics.expected_calibration_error
    assert ece(y_true, scaled) < ece(y_true, overconfident)


def test_reliability_table_counts_every_example(random_scores):
    table = metrics.reliability_table(*random_scores)
    assert table["count"].sum() == 2000
    assert ((table["accuracy"] >= 0) & (table["accuracy"] <= 1)).all()


def test_bootstrap_interval_contains_estimate_and_is_reproducible(random_scores):
    first = metrics.bootstrap_ci(*random_scores, metrics.accuracy_from_scores, n_boot=200, seed=1)
    again = metrics.bootstrap_ci(*random_scores, metrics.accuracy_from_scores, n_boot=200, seed=1)
    point, low, high = first
    assert first == again and low < point < high and high - low < 0.06


def test_mcnemar_counts_and_exact_p_value():
    y_true = np.zeros(30, dtype=int)
    a = np.r_[np.zeros(20), np.ones(10)].astype(int)   # right on the first 20
    b = np.r_[np.ones(8), np.zeros(22)].astype(int)    # wrong on the first 8
    res = metrics.mcnemar_test(y_true, a, b)
    # A-only right: 0..7 (8); B-only right: 20..29 (10)
    assert (res["a_only_right"], res["b_only_right"]) == (8, 10)
    assert res["p_value"] == pytest.approx(binomtest(8, 18, 0.5).pvalue)
    assert metrics.mcnemar_test(y_true, a, a)["p_value"] == 1.0


def test_thresholded_precision_counts_only_confident_scores():
    # scores above 0.5: row0 class0 (right), row1 class1 (right), row3 class2 (right) -> 3/3
    assert metrics.thresholded_precision(Y_TRUE, Y_SCORE) == pytest.approx(1.0)
    y_score = Y_SCORE.copy()
    y_score[2] = [0.0, 0.9, 0.1]  # a confident mistake
    assert metrics.thresholded_precision(Y_TRUE, y_score) == pytest.approx(3 / 4)


def test_per_class_report_and_top_confusions():
    names = ["a", "b", "c"]
    report = metrics.per_class_report(Y_TRUE, Y_SCORE, names)
    assert report.loc["a", "recall"] == 1.0 and report.loc["c", "recall"] == 0.5
    assert report["support"].tolist() == [2, 2, 2]
    top = metrics.top_confusions(Y_TRUE, Y_SCORE, names, k=2)
    assert set(zip(top["true"], top["predicted"], strict=True)) == {("c", "b"), ("b", "c")}


def test_auc_against_each_class_separates_easy_from_hard_negatives():
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_score = np.array([[.6, .4, 0], [.5, .5, 0], [.55, .45, 0], [.3, .7, 0], [0, 0, 1], [.1, 0, .9]])
    against = metrics.auc_against_each_class(y_true, y_score, 0, ["zero", "one", "two"])
    assert against["two"] == 1.0 and against["one"] == pytest.approx(0.75)


def test_correctness_curves_area(random_scores):
    y_true, y_score = random_scores
    res = metrics.correctness_curves(y_true, y_score)
    correct = y_score.argmax(1) == y_true
    assert res["roc_auc"] == pytest.approx(skm.roc_auc_score(correct, y_score.max(1)))


def test_one_vs_rest_curves_rejects_unknown_kind():
    with pytest.raises(ValueError, match="'roc' or 'pr'"):
        metrics.one_vs_rest_curves(Y_TRUE, Y_SCORE, "det")


def test_paired_comparison_by_hand():
    y_true = np.array([0, 1, 1, 0, 1])
    a = np.eye(2)[[0, 1, 0, 1, 1]]  # right on 0, 1, 4
    b = np.eye(2)[[0, 1, 1, 0, 0]]  # right on 0, 1, 2, 3
    row = metrics.paired_comparison(y_true, a, b, n_boot=200, seed=0)
    assert row["accuracy A"] == pytest.approx(0.6) and row["accuracy B"] == pytest.approx(0.8)
    assert row["B - A"] == pytest.approx(0.2)
    assert row["B - A low"] <= 0.2 <= row["B - A high"]
    assert row["A low"] <= 0.6 <= row["A high"]
    assert (row["a_only_right"], row["b_only_right"]) == (1, 2)
    with pytest.raises(ValueError, match="shape"):
        metrics.paired_comparison(y_true, a, b[:4])


def _scores(n=200, k=10, seed=0):
    rng = np.random.default_rng(seed)
    return rng.integers(0, k, n), rng.dirichlet(np.ones(k), n)


@pytest.mark.parametrize("spoil, message", [
    (lambda s: np.where(np.arange(s.shape[1]) == 3, np.nan, s), "row 0 is"),
    (lambda s: s * 2, "summing to 1"),
    (lambda s: np.log(s), r"each row in \[0, 1\]"),
    (lambda s: np.where(np.arange(s.shape[1]) == 0, np.inf, s), "check for NaN"),
])
def test_scores_that_are_not_probabilities_are_refused_by_every_metric(spoil, message):
    y, s = _scores()
    bad = spoil(s)
    for fn in (metrics.summary_metrics, metrics.expected_calibration_error, metrics.reliability_table,
               metrics.thresholded_precision, metrics.accuracy_from_scores):
        with pytest.raises(ValueError, match=message):
            fn(y, bad)
    with pytest.raises(ValueError, match=message):
        metrics.bootstrap_ci(y, bad, metrics.accuracy_from_scores, n_boot=5)
    with pytest.raises(ValueError, match=message):
        metrics.paired_comparison(y, s, bad)


def test_empty_and_mismatched_inputs_are_named():
    with pytest.raises(ValueError, match="no examples"):
        metrics.summary_metrics(np.array([], dtype=int), np.zeros((0, 10)))
    y, s = _scores()
    with pytest.raises(ValueError, match="y_score must have shape"):
        metrics.accuracy_from_scores(y, s[:, :3][:-1])
    with pytest.raises(ValueError, match="class_names has 2 names for 10 classes"):
        metrics.top_confusions(y, s, ["a", "b"])
    with pytest.raises(ValueError, match="integer class ids"):
        metrics.mcnemar_test(y.astype(str), s.argmax(1), s.argmax(1))


def test_a_class_absent_from_y_true_leaves_macro_auc_defined_over_the_others():
    y, s = _scores(500)
    y[y == 3] = 4
    values = metrics.summary_metrics(y, s)
    assert np.isfinite(values["roc_auc_ovr_macro"]) and np.isfinite(values["average_precision_macro"])
    present = [k for k in range(10) if k != 3]
    expected = np.mean([skm.roc_auc_score(y == k, s[:, k]) for k in present])
    assert values["roc_auc_ovr_macro"] == pytest.approx(expected)
    report = metrics.per_class_report(y, s, [str(k) for k in range(10)])
    assert np.isnan(report.loc["3", "roc_auc"]) and report.loc["3", "support"] == 0
    with pytest.raises(ValueError, match="no example of class '3'"):
        metrics.auc_against_each_class(y, s, 3, [str(k) for k in range(10)])
