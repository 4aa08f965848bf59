"""Every number in chapter 05's committed tables, recomputed from the saved predictions."""

import numpy as np
import pandas as pd
import pytest
from scipy.stats import binomtest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize

from helpers.paths import REPO_ROOT
from helpers.training import load_predictions

RESULTS = REPO_ROOT / "results"
MODELS = ["benchmark", "lenet5", "resnet_small", "resnet50"]


@pytest.fixture(scope="module")
def predictions():
    return {name: load_predictions(RESULTS / f"{name}_predictions.npz") for name in MODELS}


def test_full_run_predictions_cover_the_whole_test_set(predictions):
    for rec in predictions.values():
        assert rec["mode"] == "full" and rec["y_score"].shape == (10000, 10)
        assert np.bincount(rec["y_true"]).tolist() == [1000] * 10


def test_comparison_table_matches_scikit_learn(predictions):
    table = pd.read_csv(RESULTS / "comparison.csv", index_col=0)
    assert list(table.index) == MODELS
    for name, rec in predictions.items():
        y_true, y_score = rec["y_true"], rec["y_score"]
        y_pred = y_score.argmax(1)
        y_bin = label_binarize(y_true, classes=range(10))
        expected = {
            "accuracy": skm.accuracy_score(y_true, y_pred),
            "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
            "precision_macro": skm.precision_score(y_true, y_pred, average="macro"),
            "recall_weighted": skm.recall_score(y_true, y_pred, average="weighted"),
            "f1_macro": skm.f1_score(y_true, y_pred, average="macro"),
            "f1_weighted": skm.f1_score(y_true, y_pred, average="weighted"),
            "roc_auc_ovr_macro": skm.roc_auc_score(y_true, y_score, multi_class="ovr"),
            "roc_auc_ovr_micro": skm.roc_auc_score(y_bin.ravel(), y_score.ravel()),
            "average_precision_macro": skm.average_precision_score(y_bin, y_score),
            "log_loss": skm.log_loss(y_true, y_score),
        }
        for key, value in expected.items():
            assert table.loc[name, key] == pytest.approx(value, abs=1e-9), (name, key)
        assert table.loc[name, "accuracy_ci_low"] < table.loc[name, "accuracy"] < table.loc[name, "accuracy_ci_high"]


def test_study_table_matches_scikit_learn(predictions):
    table = pd.read_csv(RESULTS / "study_table.csv", index_col=0)
    for name, rec in predictions.items():
        y_bin = label_binarize(rec["y_true"], classes=range(10))
        keras_precision = skm.precision_score(y_bin.ravel(), (rec["y_score"] > 0.5).ravel())
        assert table.loc[name, "precision (Keras, >0.5)"] == pytest.approx(keras_precision, abs=1e-9)
        assert table.loc[name, "accuracy"] == pytest.approx(
            skm.accuracy_score(rec["y_true"], rec["y_score"].argmax(1)), abs=1e-9)


def test_mcnemar_table_matches_scipy(predictions):
    pairs = pd.read_csv(RESULTS / "mcnemar.csv")
    for row in pairs.itertuples():
        a, b = predictions[row._1], predictions[row._2]
        right_a = a["y_score"].argmax(1) == a["y_true"]
        right_b = b["y_score"].argmax(1) == b["y_true"]
        only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
        assert (row.a_only_right, row.b_only_right) == (only_a, only_b)
        assert row.p_value == pytest.approx(binomtest(only_a, only_a + only_b).pvalue, rel=1e-6, abs=1e-300)
