import keras
import numpy as np
import pandas as pd
import pytest

from helpers import splits, tagging
from helpers.paths import REPO_ROOT


@pytest.fixture(scope="module")
def article_split(catalogue_audit):
    """Chapter 06's split of the real catalogue (rows with an image, as chapter 01 saves them)."""
    *_, table, _ = catalogue_audit
    table = table[table["has_image"]].reset_index(drop=True)
    table["label"] = splits.group_rare(table["articleType"], min_count=tagging.MIN_COUNT)
    return table, tagging.split_catalogue(table, seed=42)


def test_committed_split_is_the_one_chapter_06_makes(article_split):
    table, split = article_split
    saved = pd.read_csv(REPO_ROOT / "results" / "catalogue_split.csv")
    assert saved["id"].tolist() == table["id"].tolist()
    assert saved["split"].tolist() == split.tolist()


def test_no_test_image_is_byte_identical_to_a_training_image(article_split):
    table, split = article_split
    train_hashes = set(table.loc[split == "train", "sha256"])
    assert not train_hashes & set(table.loc[split == "test", "sha256"])
    assert not train_hashes & set(table.loc[split == "val", "sha256"])
    assert table.groupby("dup_group").apply(lambda g: split[g.index].nunique()).max() == 1


def test_split_is_stratified_and_sized(article_split):
    table, split = article_split
    labelled = table["label"].notna()
    shares = split[labelled].value_counts(normalize=True)
    assert shares["test"] == pytest.approx(0.15, abs=0.02) and shares["val"] == pytest.approx(0.15, abs=0.02)
    per_class = pd.crosstab(table.loc[labelled, "label"], split[labelled], normalize="index")
    assert per_class["test"].between(0.08, 0.25).all()  # every kept class appears in test in proportion


def test_rare_classes_are_excluded_or_merged():
    labels = pd.Series(["a"] * 5 + ["b"] * 2 + ["c"])
    assert splits.group_rare(labels, 3).isna().sum() == 3
    assert splits.group_rare(labels, 3, rare="other").value_counts().to_dict() == {"a": 5, "Other": 3}
    with pytest.raises(ValueError, match="'exclude' or 'other'"):
        splits.group_rare(labels, 3, rare="drop")


def test_class_weights_are_balanced_and_ignore_missing():
    y = np.array([0, 0, 0, 1, splits.MISSING])
    weights = splits.class_weights(y, num_classes=3)
    # n / (classes present * count): 4 / (2 * 3) and 4 / (2 * 1); absent class 2 gets 0
    assert weights == pytest.approx({0: 4 / 6, 1: 2.0, 2: 0.0})


def test_masked_loss_ignores_missing_labels():
    y_pred = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]], dtype="float32")
    with_missing = np.asarray(splits.masked_sparse_crossentropy(np.array([0, splits.MISSING, 1]), y_pred))
    expected = [-np.log(0.7), 0.0, -np.log(0.5)]
    np.testing.assert_allclose(with_missing, expected, rtol=1e-5)


def test_margin_loss_lowers_the_true_logit_and_still_ignores_missing_labels():
    y_pred = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]], dtype="float32")
    loss = splits.MarginCrossentropy(1.0)
    got = np.asarray(loss.call(np.array([0, splits.MISSING, 1]), y_pred))
    # logits log p with 1 taken off the true class: -log(0.7 e^-1 / (0.7 e^-1 + 0.3))
    expected = [-np.log(0.7 / np.e / (0.7 / np.e + 0.3)), 0.0, -np.log(0.5 / np.e / (0.5 / np.e + 0.5))]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    # as a Keras loss it averages over the batch, the masked row counting as a zero
    assert float(loss(np.array([0, splits.MISSING, 1]), y_pred)) == pytest.approx(sum(expected) / 3, rel=1e-5)
    no_margin = np.asarray(splits.MarginCrossentropy(0.0).call(np.array([0, 1, 1]), y_pred))
    np.testing.assert_allclose(no_margin, -np.log([0.7, 0.8, 0.5]), rtol=1e-5)


def test_a_model_compiled_with_the_margin_loss_loads_whole(tmp_path):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    model.compile("sgd", loss=splits.MarginCrossentropy(0.5))
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")  # compile=True: the loss is rebuilt
    x, y = np.eye(3, dtype="float32")[:2], np.array([1, splits.MISSING])
    assert loaded.loss.margin == 0.5
    assert loaded.evaluate(x, y, verbose=0) == pytest.approx(model.evaluate(x, y, verbose=0), rel=1e-6)


def test_saved_split_round_trips(tmp_path):
    split = pd.Series(["train", "test"])
    splits.save_split(tmp_path / "split.csv", [10, 11], split)
    assert pd.read_csv(tmp_path / "split.csv").to_dict("list") == {"id": [10, 11], "split": ["train", "test"]}


def test_encode_labels_marks_missing_and_rare_as_minus_one():
    table = pd.DataFrame({"usage": ["Casual"] * 3 + ["Party", pd.NA], "gender": ["Men", "Women"] * 2 + ["Men"]})
    codes, names = splits.encode_labels(table, ["usage", "gender"], min_count=2)
    assert names == {"usage": ["Casual"], "gender": ["Men", "Women"]}
    assert codes["usage"].tolist() == [0, 0, 0, splits.MISSING, splits.MISSING]
    assert codes["gender"].tolist() == [0, 1, 0, 1, 0]


def test_supervised_contrastive_loss_on_a_hand_checked_batch():
    # four unit vectors at 0, 90, 180 and 0 degrees; photos 0 and 3 share class 5, photo 2 has none
    y_pred = np.array([[1, 0], [0, 2], [-1, 0], [3, 0]], dtype="float32")
    labels = np.array([5, 7, splits.MISSING, 5])
    got = np.asarray(splits.SupervisedContrastive(temperature=1.0).call(labels, y_pred))
    # photo 0: cosines 0, -1, 1 to photos 1, 2, 3; its one positive is photo 3
    expected_0 = -np.log(np.e / (1 + np.exp(-1) + np.e))
    # photo 1 has no class-mate and photo 2 no class: both add 0; photo 3 mirrors photo 0
    np.testing.assert_allclose(got, [expected_0, 0.0, 0.0, expected_0], rtol=1e-5)
    sharper = np.asarray(splits.SupervisedContrastive(temperature=0.1).call(labels, y_pred))
    assert sharper[0] < got[0]  # a lower temperature rewards the already-close positive more
