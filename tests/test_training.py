import numpy as np
import pytest

from helpers import experiment, paths, training


def test_pad_to_keeps_pixels_and_adds_a_channel():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    padded = training.pad_to(images, 32)
    assert padded.shape == (2, 32, 32, 1) and padded.dtype == np.uint8
    np.testing.assert_array_equal(padded[:, 2:30, 2:30, 0], images)


def test_validation_split_is_stratified():
    y = np.repeat(np.arange(10), 100)
    _, _, y_train, y_val = training.split_validation(np.zeros((1000, 2)), y, 100, seed=0)
    assert np.bincount(y_val).tolist() == [10] * 10 and len(y_train) == 900


def test_dataset_batches_float_images():
    ds = training.make_dataset(np.zeros((10, 8, 8, 1), np.uint8), np.arange(10), 4, True, 0,
                               training.rescale_crop_layers(0))
    shapes = [tuple(x.shape) for x, _ in ds]
    assert shapes == [(4, 8, 8, 1), (4, 8, 8, 1), (2, 8, 8, 1)]
    assert next(iter(ds))[0].dtype.name == "float32"


def test_the_study_s_augmentation_layers_draw_independently():
    """With one seed for all three layers, zoom, shift and flip would draw the same numbers: every image zoomed
    far would also be flipped. A left-right asymmetric image shows which were flipped; the zoomed ones are those
    whose centre grew."""
    image = np.zeros((1, 32, 32, 1), np.float32)
    image[0, 12:20, 4:10] = 255.0  # a bar left of centre: flipped, it moves to the right
    batch = np.repeat(image, 256, axis=0)
    out = batch
    for layer in training.rescale_crop_layers(3):
        out = np.asarray(layer(out, training=True))
    flipped = out[:, 12:20, 22:28].mean(axis=(1, 2, 3)) > out[:, 12:20, 4:10].mean(axis=(1, 2, 3))
    zoom = (out[:, 8:24, :] > 128).sum(axis=(1, 2, 3))  # a larger bar when zoomed in
    far = zoom > np.median(zoom)
    assert 0.3 < flipped.mean() < 0.7
    assert 0.2 < flipped[far].mean() < 0.8  # about half the strongly zoomed images are flipped, not all or none
    assert len({layer.get_config()["seed"] for layer in training.rescale_crop_layers(3)}) == 3


def test_shuffled_rows_come_in_the_order_shuffling_the_arrays_gives():
    """The pipeline shuffles row numbers, not images (one copy of the photos in memory): the batches must
    be those that shuffling the arrays themselves gives, epoch after epoch, labels and weights aligned."""
    import tensorflow as tf

    x = np.arange(37 * 4, dtype=np.uint8).reshape(37, 2, 2, 1)
    y, w = {"a": np.arange(37), "b": -np.arange(37)}, {"a": np.linspace(0, 1, 37), "b": np.ones(37)}
    ours = training.make_dataset(x, y, 8, True, 3, sample_weight=w)
    arrays = tf.data.Dataset.from_tensor_slices((x, y, w)).shuffle(37, seed=3, reshuffle_each_iteration=True)
    for _ in range(2):
        for (xb, yb, wb), (xr, yr, wr) in zip(ours, arrays.batch(8), strict=True):
            assert xb.dtype.name == "float32"
            np.testing.assert_array_equal(xb.numpy(), xr.numpy())
            for head in y:
                np.testing.assert_array_equal(yb[head].numpy(), yr[head].numpy())
                np.testing.assert_array_equal(wb[head].numpy(), wr[head].numpy())
    rows = np.flatnonzero(np.arange(37) % 3)  # some rows only: the same batches as the copied subset
    ours = training.make_dataset(x, y["a"], 5, True, 4, rows=rows)
    subset = tf.data.Dataset.from_tensor_slices((x[rows], y["a"][rows])).shuffle(len(rows), seed=4).batch(5)
    for (xb, yb), (xr, yr) in zip(ours, subset, strict=True):
        np.testing.assert_array_equal(xb.numpy(), xr.numpy())
        np.testing.assert_array_equal(yb.numpy(), yr.numpy())


def test_predictions_are_converted_per_batch_and_match_float_input():
    import keras

    model = keras.Sequential([keras.Input((4, 3, 1)), keras.layers.Flatten(), keras.layers.Dense(3, "softmax")])
    x = np.random.default_rng(1).integers(0, 256, (70, 4, 3, 1)).astype(np.uint8)
    expected = model.predict(x.astype("float32"), verbose=0)
    # other batch sizes may take other CPU kernels: probabilities near 0 differ in their last digits
    close = {"rtol": 1e-5, "atol": 1e-9}
    np.testing.assert_allclose(training.predict_proba(model, x, batch_size=16), expected, **close)
    mirrored = model.predict(x[:, :, ::-1].astype("float32"), verbose=0)
    np.testing.assert_allclose(training.predict_proba(model, x, 16, flip=True), (expected + mirrored) / 2, **close)


def _crops_and_flips(image: np.ndarray, pad: int) -> list[np.ndarray]:
    padded = np.pad(image, ((pad, pad), (pad, pad), (0, 0)))
    h, w = image.shape[:2]
    crops = [padded[i:i + h, j:j + w] for i in range(2 * pad + 1) for j in range(2 * pad + 1)]
    return crops + [c[:, ::-1] for c in crops]


def test_random_crop_flip_shifts_whole_pixels_repeatably_and_anew_each_epoch():
    image = np.arange(1, 65, dtype=np.uint8).reshape(8, 8, 1)
    x, y = np.repeat(image[None], 24, axis=0), np.arange(24)
    candidates = _crops_and_flips(image, 2)

    def epochs(seed):
        ds = training.make_dataset(x, y, 8, True, seed, per_image=training.random_crop_flip(2))
        return [np.concatenate([b.numpy() for b, _ in ds]) for _ in range(2)]

    first, second = epochs(5)
    for out in first:  # every output is one exact crop of the padded image, or its mirror
        assert any(np.array_equal(out, c) for c in candidates)
    assert len({out.tobytes() for out in first}) > 5  # each image gets its own crop
    assert not np.array_equal(first, second)  # new crops every epoch
    np.testing.assert_array_equal(epochs(5)[0], first)  # the same seed gives the same crops


def _tiny_run(seed):
    rng = np.random.default_rng(0)
    data = {"x_train": rng.integers(0, 255, (256, 32, 32, 1)).astype(np.uint8),
            "y_train": np.tile(np.arange(10), 26)[:256],
            "x_val": rng.integers(0, 255, (50, 32, 32, 1)).astype(np.uint8),
            "y_val": np.tile(np.arange(10), 5)}
    budget = experiment.Budget(epochs=2, batch_size=64, augment=True)
    model, history = experiment.train_model("lenet5", data, budget, seed=seed)
    return model.predict(data["x_val"].astype("float32"), verbose=0), history


def test_same_seed_same_model():
    first, history = _tiny_run(3)
    again, _ = _tiny_run(3)
    np.testing.assert_array_equal(first, again)
    assert len(history["loss"]) == 2 and history["seconds"] > 0


def test_predictions_round_trip(tmp_path):
    y_score = np.full((3, 2), 0.5)
    path = tmp_path / "p.npz"
    training.save_predictions(path, [0, 1, 1], y_score, {"loss": [1.0]}, {"model": "m"})
    loaded = training.load_predictions(path)
    np.testing.assert_array_equal(loaded["y_true"], [0, 1, 1])
    np.testing.assert_array_equal(loaded["y_score"], y_score)
    assert loaded["model"] == "m" and loaded["history"] == {"loss": [1.0]}
    with pytest.raises(ValueError, match="do not match"):
        training.save_predictions(path, [0, 1], y_score, {}, {})


def test_missing_predictions_name_the_chapter(tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "results_dir", lambda mode=None: tmp_path)
    with pytest.raises(FileNotFoundError, match="run notebooks/02_benchmark.ipynb"):
        experiment.load_records()


def test_budgets_exist_for_every_fashion_mnist_model_and_mode():
    assert set(experiment.INPUT_SIZE) == set(experiment.CHAPTER_OF)
    for name in experiment.CHAPTER_OF:
        for mode in paths.MODES:
            assert experiment.budget_for(name, mode).epochs >= 1
    assert experiment.budget_for("lenet5", "full", epochs=3).epochs == 3


def test_lesson_mode_trains_briefly_and_tests_on_the_whole_test_set():
    for name in experiment.CHAPTER_OF:
        lesson, full = experiment.budget_for(name, "lesson"), experiment.budget_for(name, "full")
        assert lesson.test_limit is None and lesson.epochs < full.epochs
    assert experiment.VAL_SIZE["lesson"] == experiment.VAL_SIZE["full"]  # the same validation split


def test_rescale_crop_keeps_shape_and_colour():
    colour = np.array([200, 30, 60], dtype=np.float32)
    images = np.broadcast_to(colour, (4, 80, 60, 3)).copy()
    ds = training.make_dataset(images, {"gender": np.zeros(4)}, 4, False, 0, training.rescale_crop_layers(0))
    out, labels = next(iter(ds))
    assert out.shape == (4, 80, 60, 3) and set(labels) == {"gender"}
    np.testing.assert_allclose(out.numpy(), images, atol=1e-3)  # a uniform colour stays that colour


def test_rescale_crop_changes_geometry():
    images = np.zeros((8, 80, 60, 3), dtype=np.float32)
    images[:, :, :30] = 255  # left half white
    ds = training.make_dataset(images, np.zeros(8), 8, False, 1, training.rescale_crop_layers(1))
    out = next(iter(ds))[0].numpy()
    assert not np.allclose(out, images)


def test_budget_for_names_the_valid_models_and_refuses_zero_epochs():
    from helpers import experiment

    with pytest.raises(ValueError, match="No budget for model 'resnet18'; models with budgets: benchmark"):
        experiment.budget_for("resnet18", "quick")
    for bad in (0, -1, 2.5):
        with pytest.raises(ValueError, match="epochs must be a whole number of at least 1"):
            experiment.budget_for("lenet5", "quick", bad)
    assert experiment.budget_for("lenet5", "quick", 3).epochs == 3
