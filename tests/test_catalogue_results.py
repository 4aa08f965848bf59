"""Chapters 06-08's committed numbers, recomputed from their saved predictions and neighbours."""

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm
from sklearn.utils.class_weight import compute_class_weight

from helpers import retrieval, tagging
from helpers.paths import REPO_ROOT
from helpers.splits import MISSING, encode_labels

RESULTS = REPO_ROOT / "results"


@pytest.fixture(scope="module")
def tags():
    return tagging.load_tags("full")


@pytest.fixture(scope="module")
def split():
    return pd.read_csv(RESULTS / "catalogue_split.csv")


def test_06_predictions_are_for_the_test_split_and_every_head(tags, split):
    assert tags["mode"] == "full" and list(tags["names"]) == list(tagging.HEADS)
    assert tags["ids"].tolist() == split.loc[split["split"] == "test", "id"].tolist()
    for head, names in tags["names"].items():
        assert tags["y_score"][head].shape == (len(tags["ids"]), len(names))
        np.testing.assert_allclose(tags["y_score"][head].sum(axis=1), 1.0, atol=1e-5)


def test_06_attribute_table_is_scikit_learn_on_known_labels(tags):
    table = tagging.attribute_table(tags["y_true"], tags["y_score"], tags["names"])
    for head, y in tags["y_true"].items():
        known = y != MISSING
        pred = tags["y_score"][head][known].argmax(1)
        assert table.loc[head, "accuracy"] == pytest.approx(skm.accuracy_score(y[known], pred))
        assert table.loc[head, "weighted F1"] == pytest.approx(skm.f1_score(y[known], pred, average="weighted"))


def test_06_class_weights_are_the_documented_square_root_of_balanced_on_the_training_split(tags, split,
                                                                                           catalogue_audit):
    *_, table, _ = catalogue_audit
    table = table.set_index("id").loc[split["id"]].reset_index()  # the rows with an image, in split order
    codes, names = encode_labels(table, tagging.HEADS, tagging.MIN_COUNT)
    train = split["split"].to_numpy() == "train"
    saved = tags["history"]["class_weights"]
    for head in tagging.HEADS:
        y = codes[head][train]
        y = y[y != MISSING]
        present = np.unique(y)
        expected = np.zeros(len(names[head]))  # classes absent from training weigh 0
        expected[present] = compute_class_weight("balanced", classes=present, y=y) ** 0.5
        np.testing.assert_allclose(saved[head], expected, rtol=1e-9)
    # dividing them out changes the scores the comparison with published figures uses, and only argmax-wise
    undone = tagging.undo_class_weights(tags["y_score"], saved)
    np.testing.assert_allclose(undone["gender"].sum(axis=1), 1.0)
    assert (undone["gender"].argmax(1) != tags["y_score"]["gender"].argmax(1)).any()


def test_07_augmentation_table_is_recomputed_from_saved_predictions():
    table = pd.read_csv(RESULTS / "augmentation.csv", index_col=0)
    arms = [tagging.load_tags("full", name) for name in ("catalogue_no_augment", "catalogue_augment")]
    expected = tagging.compare_heads(arms[0]["y_true"], arms[0]["y_score"], arms[1]["y_score"])
    pd.testing.assert_frame_equal(table, expected, check_dtype=False, atol=1e-6)
    recipes = pd.read_csv(RESULTS / "augmentation_recipes.csv")
    assert recipes.groupby("recipe").size().min() >= 3  # a recipe is compared by three seeds at least
    assert recipes["accuracy"].between(0.8, 1.0).all()


def test_08_retrieval_table_is_recomputed_from_saved_neighbours(catalogue_audit, split):
    *_, table, _ = catalogue_audit
    ids, neighbours = retrieval.load_neighbours(RESULTS / "retrieval_neighbours.npz")
    assert ids.tolist() == split.loc[split["split"] == "test", "id"].tolist()
    items = table.set_index("id").loc[ids]
    colour = items["baseColour"].fillna("?")
    relevance = {"articleType": items["articleType"].to_numpy(),
                 "articleType + baseColour": (items["articleType"] + " | " + colour).to_numpy()}
    expected = retrieval.retrieval_table(neighbours, relevance)
    saved = pd.read_csv(RESULTS / "retrieval.csv", index_col=[0, 1])
    pd.testing.assert_frame_equal(saved, expected, check_dtype=False, atol=1e-9)
    precision = saved["precision@10"]
    assert precision[("CNN embedding", "articleType")] > precision[("raw pixels", "articleType")]
