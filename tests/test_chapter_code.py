"""One source of truth: the Keras code a chapter types is the code ``helpers`` runs.

Each chapter types its model and training recipe in cells tagged ``topic``; ``helpers`` keeps the same
code for later chapters, the seed-spread script and the tests. These tests run a chapter's topic cells
on a small random data set and the helpers' version on the same data with the same seed, then assert the
same layers, configurations, parameter counts and optimizer, and bit-identical trained weights and
history: any change on one side only (a layer width, a learning-rate schedule, a callback) fails here.
"""

import hashlib

import nbformat
import numpy as np
import pandas as pd
import pytest

from helpers import experiment, seeds
from helpers.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"


def topic_cells(notebook: str) -> list[str]:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    cells = [c.source for c in nb.cells if "topic" in c.metadata.get("tags", [])]
    assert cells, f"{notebook} has no cell tagged 'topic'"
    return cells


def run_topic_cells(notebook: str, namespace: dict, definitions_only: bool = False, skip: str | None = None) -> dict:
    """Execute the chapter's import cell and topic cells in ``namespace`` (the parameters a run sets);
    with ``definitions_only``, only the topic cells that start by defining a function or a class; ``skip``:
    leave out the topic cells that contain this text (a training the test does not need)."""
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    imports = next(c.source for c in nb.cells if "notebook.start(" in c.source)
    exec(imports.replace("mode = notebook.start(", "notebook.start("), namespace)  # noqa: S102 (our own cells)
    for source in topic_cells(notebook):
        if (not definitions_only or source.startswith(("def ", "class "))) and not (skip and skip in source):
            exec(source, namespace)  # noqa: S102
    return namespace


def tiny_data(size: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    data = {}
    for split, n in (("train", 96), ("val", 40), ("test", 20)):
        data[f"x_{split}"] = rng.integers(0, 256, (n, size, size, 1), dtype=np.uint8)
        data[f"y_{split}"] = rng.integers(0, 10, n)
    return data


def architecture(model) -> list[tuple]:
    """Each layer's class and configuration, without the names Keras numbers per session."""
    rows = []
    for layer in model.layers:
        if hasattr(layer, "layers"):  # a nested model (ResNet-50's backbone): its layers, one by one
            rows += [("nested", *row) for row in architecture(layer)]
            continue
        config = {k: v for k, v in layer.get_config().items() if k != "name"}
        rows.append((type(layer).__name__, repr(sorted(config.items()))))
    return rows


@pytest.mark.parametrize("notebook, name", [("02_benchmark.ipynb", "benchmark"), ("03_lenet5.ipynb", "lenet5")])
def test_chapter_model_and_recipe_are_the_helpers(notebook, name, capsys):
    seed, size = 3, experiment.INPUT_SIZE[name]
    data = tiny_data(size)
    data["y_test"][:4] = 6  # some shirts among the test labels, for the one-vs-rest curve 02 types
    budget = experiment.Budget(epochs=2, batch_size=32, learning_rate=2e-3)
    chapter = run_topic_cells(notebook, {"mode": "quick", "seed": seed, "data": data, "budget": budget,
                                         "epochs": None, "data_root": None, "precision": None})
    dropout = seeds.RECIPE[name]["dropout"]  # the seed-spread script trains the chapters' recipe
    reference, reference_history = experiment.train_model(name, data, budget, seed, dropout=dropout)
    ours = chapter["model"]
    assert architecture(ours) == architecture(reference)
    assert ours.count_params() == reference.count_params()
    assert ours.optimizer.get_config() | {"name": None} == reference.optimizer.get_config() | {"name": None}
    assert ours.loss == reference.loss
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    history = {k: v for k, v in chapter["history"].items() if k != "seconds"}
    assert history == {k: v for k, v in reference_history.items() if k != "seconds"}
    assert "epoch 2/2" in capsys.readouterr().out  # the chapter's fit shows its progress
    if name == "lenet5":  # the image-by-image comparison it types is the one chapter 05's McNemar test reads
        rng = np.random.default_rng(seed)
        y_true, scores = rng.integers(0, 10, 50), [rng.random((50, 10)) for _ in range(2)]
        pd.testing.assert_frame_equal(
            chapter["paired_outcomes"](y_true, *(s.argmax(1) for s in scores), "a", "b"),
            experiment.paired_outcomes(*({"y_true": y_true, "y_score": s} for s in scores), "a", "b"))
    if name == "benchmark":  # the one-vs-rest curve it types is the one the figures draw
        from helpers import metrics

        fpr, tpr = metrics.one_vs_rest_curves(data["y_test"], chapter["y_score"], "roc")[chapter["shirt"]]
        np.testing.assert_array_equal(chapter["fpr"], fpr)
        np.testing.assert_array_equal(chapter["tpr"], tpr)
        precision, recall = metrics.one_vs_rest_curves(data["y_test"], chapter["y_score"], "pr")[chapter["shirt"]]
        np.testing.assert_array_equal(chapter["shirt_precision"], precision)
        np.testing.assert_array_equal(chapter["shirt_recall"], recall)


def test_chapter_04_resnets_and_recipe_are_the_helpers(capsys):
    from helpers import training

    seed, data = 4, tiny_data(28)
    budget = experiment.Budget(epochs=2, batch_size=32, learning_rate=2e-3, augment=True, warmup_epochs=1)
    # ResNet-50's training cell is left out: it trains with the compile_and_fit checked here (tracing it: a minute)
    chapter = run_topic_cells("04_resnet.ipynb", {"mode": "quick", "seed": seed, "data": data, "budget": budget,
                                                   "epochs": None, "data_root": None, "precision": None},
                              skip="model50 = build_resnet50(")
    reference, reference_history = experiment.train_model("resnet_small", data, budget, seed)
    ours = chapter["model"]
    assert architecture(ours) == architecture(reference)
    assert ours.count_params() == reference.count_params()
    assert ours.optimizer.get_config() | {"name": None} == reference.optimizer.get_config() | {"name": None}
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    history = {k: v for k, v in chapter["history"].items() if k != "seconds"}
    assert history == {k: v for k, v in reference_history.items() if k != "seconds"}  # crop_and_flip included
    plain, with_mirror = chapter["predict_with_mirror"](ours, data["x_test"])
    np.testing.assert_allclose(plain, training.predict_proba(reference, data["x_test"]), rtol=1e-5)
    np.testing.assert_allclose(with_mirror, training.predict_proba(reference, data["x_test"], flip=True), rtol=1e-5)
    # ResNet-50: the typed set-up (batch-norm momentum included) is the registry's
    typed50 = chapter["build_resnet50"]((32, 32, 1), 10)
    assert architecture(typed50) == architecture(experiment.build_model("resnet50", (32, 32, 1), 10))
    assert "epoch 2/2" in capsys.readouterr().out


def test_chapter_04_precision_rule_and_timing_are_the_helpers(monkeypatch):
    import keras

    from helpers import precision

    monkeypatch.delenv(precision.ISA_CAP_ENV, raising=False)
    chapter = run_topic_cells("04_resnet.ipynb", {"mode": "quick", "seed": 4, "epochs": None, "data_root": None,
                                                   "precision": None}, definitions_only=True)
    for flags in (set(), {"avx2"}, {"avx2", "avx512f", "avx512_bf16"}, {"avx512_bf16", "amx_bf16", "amx_tile"}):
        for gpu in (None, (7, 5), (8, 0), (9, 0)):
            assert chapter["choose_precision"](flags, gpu) == precision.choose("auto", flags, gpu)[0], (flags, gpu)
    data = tiny_data(28)
    try:
        seconds = chapter["seconds_per_1000_images"]("mixed_bfloat16", data["x_train"][:16], data["y_train"][:16], 8)
        assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # the timed model computed in it
    finally:
        keras.mixed_precision.set_global_policy("float32")
    assert 0 < seconds < 60_000


def tiny_catalogue(seed: int = 0):
    """40 random 32x24 photos (24 train, 16 val = test); articleType has the most classes and some missing labels."""
    from helpers import splits, tagging

    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (40, 32, 24, 3), dtype=np.uint8)
    labels = {"gender": rng.integers(0, 3, 40), "articleType": np.where(rng.random(40) < 0.2, splits.MISSING,
                                                                         rng.integers(0, 4, 40))}
    names = {"gender": ["Men", "Women", "Boys"], "articleType": ["Tshirts", "Shirts", "Watches", "Heels"]}
    parts = {"train": slice(0, 24), "val": slice(24, 40), "test": slice(24, 40)}
    return tagging.CatalogueData({s: images[sl] for s, sl in parts.items()},
                                 {s: {h: y[sl] for h, y in labels.items()} for s, sl in parts.items()},
                                 {s: np.arange(sl.stop - sl.start) for s, sl in parts.items()}, names)


def test_chapter_06_tagger_and_recipe_are_the_helpers(capsys):
    import keras

    from helpers import pretrained, splits, tagging

    seed, data = 5, tiny_catalogue()
    chapter = run_topic_cells("06_catalogue.ipynb", {"mode": "quick", "seed": seed, "data": data, "epochs": None,
                                                      "data_root": None, "precision": None})
    reference, reference_history = tagging.train_tagger(
        data, chapter["budget"], seed, augment=[keras.layers.RandomFlip("horizontal", seed=seed)], contrast=1.0,
        projection=False, architecture="catalogue_lite0")
    ours = chapter["model"]
    assert architecture(ours) == architecture(reference)
    assert ours.count_params() == reference.count_params()
    assert [w.trainable for w in ours.weights] == [w.trainable for w in reference.weights]
    for a, b in zip(ours.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    history = {k: v for k, v in chapter["history"].items() if k != "seconds"}
    assert history == {k: v for k, v in reference_history.items() if k != "seconds"}
    # the masked loss the chapter types is the one helpers trains with
    rng = np.random.default_rng(0)
    y_true, y_pred = np.array([0, -1, 2, 1, -1, 3]), rng.dirichlet(np.ones(4), 6).astype("float32")
    for margin in (0.0, 3.2):
        typed = keras.ops.convert_to_numpy(chapter["masked_crossentropy"](y_true, y_pred, margin))
        kept = keras.ops.convert_to_numpy(splits.masked_sparse_crossentropy(y_true, y_pred, margin))
        np.testing.assert_allclose(typed, kept, rtol=1e-6)
    assert "epoch 1/1" in capsys.readouterr().out
    # the class weights it types are the ones helpers trains with (absent classes and missing labels included)
    labels = {"gender": np.array([0, 0, 0, 1, -1, 0, 1, 0]), "articleType": np.array([3, 3, -1, 0, 3, 0, 3, 3])}
    names = {"gender": ["Men", "Women", "Boys"], "articleType": ["Tshirts", "Shirts", "Watches", "Heels"]}
    for power in (0.0, 0.5, 1.0):
        typed = chapter["class_weight_table"](labels, names, power)
        kept = tagging.class_weight_table(labels, names, power)
        for head in names:
            np.testing.assert_array_equal(typed[head], kept[head])
    table = tagging.class_weight_table(data.labels["train"], data.names)
    kept = tagging.weights_of_examples(data.labels["train"], table)
    for head, weights in kept.items():
        np.testing.assert_array_equal(chapter["sample_weight"][head], weights)
    # the enlargement it types is the trunk's first step after the pixels are mapped to [-1, 1]
    photos = np.random.default_rng(1).uniform(-1, 1, (3, 32, 24, 3)).astype("float32")
    trunk = pretrained.lite0_backbone((32, 24, 3), upsample=2)
    resizing = next(layer for layer in trunk.layers if isinstance(layer, keras.layers.Resizing))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(chapter["enlarge"](photos)),
                                  keras.ops.convert_to_numpy(resizing(photos)))
    # the split the chapter types is the one helpers saves for chapters 07-09
    table = catalogue_table()
    for split_seed in (0, 3):
        pd.testing.assert_series_equal(chapter["grouped_split"](table, split_seed),
                                       tagging.split_catalogue(table, split_seed))
    # the study's collapse and its fix
    dense_budget = experiment.Budget(epochs=1, batch_size=8, learning_rate=1e-2)
    for fixed in (False, True):
        typed = chapter["train_dense"](data, dense_budget, "articleType", seed, fixed=fixed)
        kept = tagging.train_plain_network(data, dense_budget, "articleType", seed, fixed=fixed)
        for a, b in zip(typed, kept, strict=True):
            np.testing.assert_array_equal(a, b)


def catalogue_table(seed: int = 0) -> pd.DataFrame:
    """420 rows like chapter 01's table: five common article types, one too rare to keep, some rows without a
    type, and groups of identical photos (``dup_group`` is the group's first id)."""
    rng = np.random.default_rng(seed)
    types = np.array(["Tshirts", "Shirts", "Watches", "Heels", "Jeans"] * 70 + ["Ties"] * 20 + [None] * 50, object)
    ids = np.arange(1000, 1420)
    groups = ids.copy()
    copies = rng.choice(420, 80, replace=False)
    groups[copies[40:]] = groups[copies[:40]]  # 40 photos each with a byte-identical copy
    return pd.DataFrame({"id": ids, "articleType": rng.permutation(types), "dup_group": groups})


def test_chapter_07_augmentation_and_pipeline_are_the_helpers():
    import keras

    from helpers import training

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (48, 32, 32, 1), dtype=np.uint8)  # noise: any blur lowers its sharpness
    chapter = run_topic_cells("07_augmentation.ipynb", {"mode": "quick", "seed": 11, "epochs": None,
                                                         "data_root": None, "precision": None,
                                                         "augment": training.rescale_crop_layers(11),
                                                         "data": {"x_train": images}})
    # the colour check it types: uniform photos come out of the augmentation unchanged
    assert np.abs(np.asarray(chapter["out"]) - chapter["uniform"]).max() < 1e-3
    # the sharpness it types, and what it shows: whole-pixel crops keep the pixels, interpolation blurs them
    assert chapter["sharpness"](images) == pytest.approx(np.abs(np.diff(images.astype(float), axis=2)).mean())
    assert chapter["sharpness"](chapter["rescaled"]) < 0.9 * chapter["sharpness"](images)
    ours, reference = chapter["rescale_crop_layers"](11), training.rescale_crop_layers(11)
    assert architecture(keras.Sequential(ours)) == architecture(keras.Sequential(reference))
    x = np.random.default_rng(0).integers(0, 256, (20, 16, 12, 3), dtype=np.uint8)
    y = np.arange(20)
    batches = chapter["augmented_dataset"](x, y, 8, 11, chapter["rescale_crop_layers"](11))
    expected = training.make_dataset(x, y, 8, True, 11, training.rescale_crop_layers(11))
    for (xa, ya), (xb, yb) in zip(batches, expected, strict=True):
        np.testing.assert_array_equal(ya.numpy(), yb.numpy())
        np.testing.assert_array_equal(xa.numpy(), xb.numpy())


def test_chapter_08_search_and_metric_are_the_helpers():
    from helpers import retrieval

    chapter = run_topic_cells("08_similar_products.ipynb", {"mode": "quick", "seed": 0, "precision": None},
                              definitions_only=True)
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(60, 8)).astype("float32")
    vectors[10] = vectors[3]  # an exact duplicate: ties must not keep the query itself
    np.testing.assert_array_equal(chapter["nearest_neighbours"](vectors, 5), retrieval.nearest_neighbours(vectors, 5))
    relevant = rng.random((40, 10)) < 0.4
    relevant[0] = False
    np.testing.assert_allclose(chapter["average_precision_at_k"](relevant), retrieval.average_precision_at_k(relevant))
    in_collection = rng.integers(0, 15, 40)  # R per query, 0 included
    np.testing.assert_allclose(chapter["average_precision_at_k"](relevant, in_collection),
                               retrieval.average_precision_at_k(relevant, in_collection))


def test_chapter_05_interval_test_and_calibration_are_the_helpers():
    from scipy.special import softmax
    from sklearn.metrics import roc_auc_score

    from helpers import metrics

    chapter = run_topic_cells("05_comparison.ipynb", {"mode": "quick", "seed": 0, "n_boot": None},
                              definitions_only=True)
    rng = np.random.default_rng(5)
    y_score = softmax(rng.normal(0, 3, (700, 10)), axis=1)
    y_true = np.where(rng.random(700) < 0.7, y_score.argmax(1), rng.integers(0, 10, 700))
    y_other = np.where(rng.random(700) < 0.7, y_true, rng.integers(0, 10, 700))  # as good: an even split
    assert chapter["percentile_bootstrap"](y_true, y_score.argmax(1), 300, 9) == pytest.approx(
        metrics.bootstrap_ci(y_true, y_score, metrics.accuracy_from_scores, 300, 9), abs=1e-12)
    reference = metrics.mcnemar_test(y_true, y_score.argmax(1), y_other)
    assert chapter["mcnemar_exact"](y_true, y_score.argmax(1), y_other) == tuple(reference.values())
    assert 0.01 < reference["p_value"] < 0.99
    table, ece = chapter["reliability_bins"](y_true, y_score)
    pd.testing.assert_frame_equal(table, metrics.reliability_table(y_true, y_score))
    assert ece == pytest.approx(metrics.expected_calibration_error(y_true, y_score), abs=1e-12)
    np.testing.assert_allclose(chapter["temperature_scale"](y_score, 1.7), metrics.temperature_scale(y_score, 1.7))
    assert chapter["fit_temperature"](y_true, y_score) == pytest.approx(metrics.fit_temperature(y_true, y_score),
                                                                        rel=1e-9)
    shirt = 6
    assert chapter["auc_by_ranking"](y_true, y_score, shirt) == pytest.approx(
        metrics.per_class_report(y_true, y_score, [str(k) for k in range(10)]).loc["6", "roc_auc"], abs=1e-12)
    others = [k for k in range(10) if k != shirt]
    np.testing.assert_allclose([chapter["auc_by_ranking"](y_true, y_score, shirt, [k]) for k in others],
                               metrics.auc_against_each_class(y_true, y_score, shirt, [str(k) for k in range(10)])
                               .reindex([str(k) for k in others]))
    tied = np.round(y_score, 1)  # many ties: each counts half, as in roc_auc_score
    expected = roc_auc_score(y_true == shirt, tied[:, shirt])
    assert chapter["auc_by_ranking"](y_true, tied, shirt) == pytest.approx(expected)
    assert chapter["keras_precision"](y_true, y_score) == pytest.approx(metrics.thresholded_precision(y_true, y_score),
                                                                        abs=1e-12)


def test_chapter_01_repair_and_duplicate_checks_are_the_helpers():
    from helpers import catalogue

    chapter = run_topic_cells("01_data.ipynb", {"mode": "quick", "seed": 0, "data_root": None}, definitions_only=True)
    rows = (["1", "Men"] + ["x"] * 7 + ["Tie", " Cufflink"], ["2"] + ["y"] * 9, ["3"] + ["z"] * 8 + ["a", "b", "c"])
    for row in rows:
        assert chapter["repair_row"](row) == catalogue.repair_row(row)
    ids, digests = np.array([7, 3, 9, 4, 12]), np.array(["b", "a", "b", "c", "a"])
    np.testing.assert_array_equal(chapter["duplicate_groups"](ids, digests), [7, 3, 7, 4, 3])
    np.testing.assert_array_equal(chapter["duplicate_groups"](ids, digests), catalogue.duplicate_groups(ids, digests))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 80, 60, 3), dtype=np.uint8)
    images[3] = images[0] // 2 * 2  # the same photo with its lowest bit lost: other bytes, same look
    hashes = chapter["perceptual_hashes"](images)
    np.testing.assert_array_equal(hashes, catalogue.perceptual_hashes(images))
    table = pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "dup_group": [1, 2, 3, 4, 5, 6]})
    near = chapter["near_duplicates"](table, hashes)
    pd.testing.assert_frame_equal(near, catalogue.near_duplicates(table, hashes))
    assert set(near["id"]) == {1, 4}


def test_chapter_01_checksum_is_the_loaders(tmp_path):
    from helpers import fashion_mnist

    chapter = run_topic_cells("01_data.ipynb", {"mode": "quick", "seed": 0, "data_root": None}, definitions_only=True)
    path = tmp_path / "blocks.bin"
    path.write_bytes(np.random.default_rng(0).bytes(3 * 2**20 + 7))  # more than one block, and a partial one
    assert chapter["sha256_of"](path) == fashion_mnist.sha256_of(path)
    assert chapter["sha256_of"](path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_chapter_02_split_is_the_helpers():
    from helpers import training

    chapter = run_topic_cells("02_benchmark.ipynb", {"mode": "quick", "seed": 0, "epochs": None, "data_root": None,
                                                     "precision": None}, definitions_only=True)
    rng = np.random.default_rng(2)
    x, y = rng.integers(0, 256, (300, 4, 4), dtype=np.uint8), rng.integers(0, 10, 300)
    ours = chapter["stratified_validation_split"](x, y, 50, 3)
    for part, reference in zip(ours, training.split_validation(x, y, 50, 3), strict=True):
        np.testing.assert_array_equal(part, reference)
    held_out = ours[3]
    assert np.abs(np.bincount(held_out, minlength=10) - np.bincount(y, minlength=10) / 6).max() <= 1  # stratified
