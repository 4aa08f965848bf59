import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from helpers import experiment, tagging
from helpers.models import build_model
from helpers.splits import MISSING

NAMES = {"gender": ["Men", "Women", "Boys"], "usage": ["Casual", "Formal"]}


def test_example_weights_are_balanced_weights_to_a_power_and_zero_when_missing():
    y = np.array([0, 0, 0, 1, MISSING])
    full = tagging.example_weights({"usage": y}, {"usage": NAMES["usage"]}, power=1.0)["usage"]
    # balanced: n / (classes * count) = 4 / (2 * 3) and 4 / (2 * 1)
    np.testing.assert_allclose(full, [4 / 6, 4 / 6, 4 / 6, 2.0, 0.0], rtol=1e-6)
    root = tagging.example_weights({"usage": y}, {"usage": NAMES["usage"]})["usage"]
    np.testing.assert_allclose(root, np.sqrt(full), rtol=1e-6)
    flat = tagging.example_weights({"usage": y}, {"usage": NAMES["usage"]}, power=0.0)["usage"]
    np.testing.assert_allclose(flat, [1, 1, 1, 1, 0])


def test_undo_class_weights_recovers_the_unweighted_probabilities():
    p = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4]])
    weights = {"gender": np.array([0.5, 2.0, 0.0])}  # the third class never appeared in training
    learned = p[:, :2] * weights["gender"][:2]
    learned = np.c_[learned / learned.sum(axis=1, keepdims=True), [0.0, 0.0]]
    undone = tagging.undo_class_weights({"gender": learned}, weights)["gender"]
    as_saved = tagging.undo_class_weights({"gender": learned}, {"gender": weights["gender"].tolist()})["gender"]
    np.testing.assert_array_equal(as_saved, undone)  # the table as saved in a JSON history works too
    np.testing.assert_allclose(undone[:, :2], p[:, :2] / p[:, :2].sum(axis=1, keepdims=True))
    np.testing.assert_array_equal(undone[:, 2], 0.0)
    # the weighted scores pick the up-weighted class in the first row; undoing the weights does not
    assert learned[0].argmax() == 1 and undone[0].argmax() == 0


def test_masked_accuracy_skips_missing_labels():
    metric = tagging.MaskedAccuracy()
    y_pred = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.6, 0.4]], dtype="float32")
    metric.update_state(np.array([0, 0, MISSING, 1]), y_pred)
    assert float(metric.result()) == pytest.approx(1 / 3)


def test_attribute_table_matches_scikit_learn_on_known_rows():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 200)
    y[::10] = MISSING
    score = rng.dirichlet(np.ones(3), 200)
    table = tagging.attribute_table({"gender": y}, {"gender": score}, NAMES)
    known = y != MISSING
    pred = score[known].argmax(1)
    assert table.loc["gender", "accuracy"] == pytest.approx(skm.accuracy_score(y[known], pred))
    assert table.loc["gender", "balanced accuracy"] == pytest.approx(skm.balanced_accuracy_score(y[known], pred))
    assert table.loc["gender", "macro F1"] == pytest.approx(skm.f1_score(y[known], pred, average="macro"))
    assert table.loc["gender", "weighted F1"] == pytest.approx(skm.f1_score(y[known], pred, average="weighted"))
    assert table.loc["gender", "test images"] == known.sum()
    assert table.loc["gender", "majority baseline"] == pytest.approx(np.bincount(y[known]).max() / known.sum())


def test_top_classes_confusion_pools_the_rest_as_other():
    y_true = np.array([0, 0, 0, 1, 1, 2, MISSING])
    y_pred = np.array([0, 1, 2, 1, 2, 2, 0])
    cm, labels = tagging.top_classes_confusion(y_true, y_pred, NAMES["gender"], n=2)
    assert labels == ["Men", "Women", "(other)"]
    assert cm.tolist() == [[1, 1, 1], [0, 1, 1], [0, 0, 1]]
    assert cm.sum() == 6  # the missing label is not scored


def test_top_classes_confusion_has_no_other_when_every_class_fits():
    cm, labels = tagging.top_classes_confusion(np.array([2, 2, 0]), np.array([2, 0, 0]), NAMES["gender"], n=20)
    assert labels == [NAMES["gender"][k] for k in (2, 0, 1)]  # by frequency, ties in class order
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 0]]


def test_prepare_catalogue_uses_whole_table_for_classes_and_only_rows_with_images():
    table = pd.DataFrame({"id": range(8), "gender": ["Men", "Women"] * 4, "usage": ["Casual"] * 7 + [None]})
    split = pd.Series(["train", "train", "val", "test"] * 2)
    images = np.zeros((5, 8, 6, 3), dtype=np.uint8)  # quick mode: fewer images than rows
    data = tagging.prepare_catalogue(table, images, split, min_count=2, heads=("gender", "usage"))
    assert data.names == {"gender": ["Men", "Women"], "usage": ["Casual"]}
    assert {k: len(v) for k, v in data.images.items()} == {"train": 3, "val": 1, "test": 1}
    assert data.ids["train"].tolist() == [0, 1, 4]
    assert data.sizes().loc["images"].tolist() == [3, 1, 1]


def test_tags_round_trip(tmp_path, monkeypatch):
    y_true = {"gender": np.array([0, 2, MISSING])}
    y_score = {"gender": np.eye(3)[[0, 2, 1]]}
    path = tmp_path / "x_tags.npz"
    tagging.save_tags(path, y_true, y_score, {"gender": NAMES["gender"]}, [7, 8, 9], {"model": "x"})
    monkeypatch.setattr(tagging, "results_dir", lambda mode=None: tmp_path)
    back = tagging.load_tags(name="x")
    assert back["y_true"]["gender"].tolist() == [0, 2, MISSING] and back["model"] == "x"
    np.testing.assert_allclose(back["y_score"]["gender"], y_score["gender"])
    with pytest.raises(FileNotFoundError, match="run the chapter"):
        tagging.load_tags(name="missing")


def tiny_catalogue() -> tagging.CatalogueData:
    """48 random 32x24 photos (32 train, 16 val = test), gender for all, usage missing for about 30%."""
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (48, 32, 24, 3), dtype=np.uint8)
    labels = {"gender": rng.integers(0, 3, 48), "usage": np.where(rng.random(48) < 0.3, MISSING, 1)}
    parts = {"train": slice(0, 32), "val": slice(32, 48), "test": slice(32, 48)}
    return tagging.CatalogueData({s: images[sl] for s, sl in parts.items()},
                                 {s: {h: y[sl] for h, y in labels.items()} for s, sl in parts.items()},
                                 {s: np.arange(sl.stop - sl.start) for s, sl in parts.items()}, NAMES)


def test_train_tagger_learns_every_head_with_masked_labels():
    data = tiny_catalogue()
    images = data.images["train"]
    model, history = tagging.train_tagger(data, experiment.Budget(epochs=1, batch_size=16), seed=0,
                                          stem=8, widths=(8, 8, 8))
    assert {"val_gender_accuracy", "val_usage_accuracy", "seconds"} <= set(history)
    assert np.isfinite(history["loss"]).all()
    assert model.get_layer("embedding").output.shape[-1] == 256
    assert tagging.embed(model, images[:5]).shape == (5, 256)
    # with the contrastive term: trained on gender (the head with most classes), projection dropped after
    model, history = tagging.train_tagger(data, experiment.Budget(epochs=1, batch_size=16), seed=0,
                                          contrast=1.0, stem=8, widths=(8, 8, 8))
    assert history["contrast_loss"][0] > 0 and np.isfinite(history["val_contrast_loss"]).all()
    assert set(model.output_names) == {"gender", "usage"}
    # without the projection the term reads the embedding itself, and the projection layers are not built
    on_embedding = tagging._with_contrast_output(model, ["gender", "usage"], projection=False)
    with_projection = tagging._with_contrast_output(model, ["gender"])
    assert len(on_embedding.weights) == len(model.weights) < len(with_projection.weights)
    np.testing.assert_allclose(on_embedding.predict(images[:5], verbose=0)["contrast"],
                               tagging.embed(model, images[:5]), rtol=1e-5, atol=1e-5)


def test_train_tagger_fine_tunes_lite0_but_not_its_frozen_stages():
    data = tiny_catalogue()
    images = data.images["train"]
    imagenet = build_model("catalogue_lite0", (32, 24, 3), {"gender": 3})
    model, history = tagging.train_tagger(data, experiment.Budget(epochs=1, batch_size=16), seed=0,
                                          contrast=1.0, projection=False, architecture="catalogue_lite0")
    assert model.name == "catalogue_lite0" and np.isfinite(history["loss"]).all()
    for layer, changed in (("stem_conv", False), ("block4_project_bn", False), ("block12_dw", True)):
        before, after = imagenet.get_layer(layer).get_weights(), model.get_layer(layer).get_weights()
        assert any(not np.array_equal(a, b) for a, b in zip(before, after)) == changed, layer
    assert tagging.embed(model, images[:5]).shape == (5, 256)


def test_the_comparison_lines_up_every_head_with_its_interval_and_names_each_source():
    ours = pd.DataFrame({"accuracy": 0.9, "majority baseline": 0.4}, index=list(tagging.HEADS))
    intervals = pd.DataFrame({"low": 0.88, "high": 0.92}, index=list(reversed(tagging.HEADS)))
    table = tagging.compare_with_references(ours, intervals)
    assert list(table.index) == list(tagging.HEADS) and table.notna().all().all()
    assert table.loc["gender", "published (other setting)"] == 0.894  # the README's latest version
    assert table.loc["gender", "95% interval low"] == 0.88 and table.loc["usage", "plain CNN"] == 0.901
    assert "bool" not in set(table.dtypes.astype(str))  # no "beats" column: the interval carries the comparison
    assert tagging.PUBLISHED["url"].str.startswith("https://").all()
    assert tagging.PUBLISHED["source"].str.len().min() > 80  # the setting, not only a name


def test_prepare_catalogue_can_merge_rare_classes_into_other():
    table = pd.DataFrame({"id": range(6), "gender": ["Men"] * 4 + ["Boys", "Girls"], "usage": ["Casual"] * 6})
    split = pd.Series(["train"] * 4 + ["test"] * 2)
    images = np.zeros((6, 8, 6, 3), np.uint8)
    kept = tagging.prepare_catalogue(table, images, split, min_count=2, heads=("gender", "usage"))
    merged = tagging.prepare_catalogue(table, images, split, min_count=2, heads=("gender", "usage"), rare="other")
    assert kept.names["gender"] == ["Men"] and merged.names["gender"] == ["Men", "Other"]
    assert (kept.labels["test"]["gender"] == MISSING).all() and (merged.labels["test"]["gender"] == 1).all()
