"""Reproducible training: seeds, tf.data pipelines, a fit recipe, saved predictions."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf
from sklearn.model_selection import train_test_split

from helpers.paths import atomic_write_bytes


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and TensorFlow and ask TensorFlow for deterministic ops."""
    os.environ["PYTHONHASHSEED"] = str(seed)
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()


def split_validation(x, y, val_size: int, seed: int):
    """Carve a stratified validation set out of the training set."""
    return train_test_split(x, y, test_size=val_size, stratify=y, random_state=seed)


def subsample(x, y, n: int | None, seed: int):
    """A stratified subset of ``n`` examples (all of them when ``n`` is None or too large)."""
    if n is None or n >= len(y):
        return x, y
    x_sub, _, y_sub, _ = train_test_split(x, y, train_size=n, stratify=y, random_state=seed)
    return x_sub, y_sub


def pad_to(images: np.ndarray, size: int) -> np.ndarray:
    """Zero-pad (n, h, w) images symmetrically to (n, size, size, 1), keeping uint8."""
    h, w = images.shape[1:3]
    top, left = (size - h) // 2, (size - w) // 2
    padded = np.pad(images, ((0, 0), (top, size - h - top), (left, size - w - left)))
    return padded[..., None]


def random_crop_flip(pad: int = 2):
    """Per-image augmentation for ``make_dataset(per_image=...)``: zero-pad by ``pad`` pixels, crop back
    to size at a random position (shifts of up to ``pad`` whole pixels) and flip half the images
    left-right. Stateless random ops, so a seed gives the same crops on every run."""
    def augment(image, seed):
        padded = tf.pad(image, [[pad, pad], [pad, pad], [0, 0]])
        crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
        image = tf.image.stateless_random_crop(padded, tf.shape(image), crop_seed)
        return tf.image.stateless_random_flip_left_right(image, flip_seed)
    return augment


def rescale_crop_layers(seed: int, max_zoom: float = 0.2):
    """The study's augmentation: random rescaling up by as much as ``1 + max_zoom``, a crop back to
    size at a random position, and a horizontal flip. Geometry only: pixel colours are
    interpolated, never shifted (baseColour is a label)."""
    layers = keras.layers
    shift = max_zoom / 4  # within the margin the zoom adds, mostly; beyond it, reflected content
    # a seed per layer: with one seed the three layers would draw the same numbers (zoom, shift and flip in step)
    return [layers.RandomZoom(height_factor=(-max_zoom, 0.0), fill_mode="reflect", seed=seed),
            layers.RandomTranslation(shift, shift, fill_mode="reflect", seed=seed + 1),
            layers.RandomFlip("horizontal", seed=seed + 2)]


def make_dataset(x, y, batch_size: int, shuffle: bool, seed: int, augment=None, sample_weight=None,
                 per_image=None, rows=None):
    """A tf.data pipeline over in-memory arrays that yields float32 image batches.

    ``y`` is an array of labels, or a dict of arrays (one per output head) for multi-output models;
    ``sample_weight`` (same structure as ``y``) weights each example's loss, e.g. by its class.
    ``augment`` is a list of Keras preprocessing layers applied to each batch; ``per_image`` a function
    ``(image, seed) -> image`` applied to each image before batching (e.g. ``random_crop_flip()``), with
    a fresh stateless seed per image and epoch. ``rows`` (row numbers) restricts the pipeline to those
    rows, in that order before shuffling, as ``x[rows]`` would without copying the images.

    The arrays are not copied into TensorFlow (``from_tensor_slices`` would hold two copies of them at
    its peak): each batch of rows is taken from them by NumPy, and uint8 photos are converted to float32
    batch by batch. The shuffle buffer holds row numbers, not images; it draws the same order as
    shuffling the rows themselves would. TensorFlow keeps the arrays referenced for the rest of the
    session, so pass ``rows=`` rather than a copied subset.
    """
    parts = (x, y) if sample_weight is None else (x, y, sample_weight)
    arrays = [np.asarray(a) for a in tf.nest.flatten(parts)]

    def take(index):  # a batch of row numbers -> the same structure as ``parts``, one batch of rows
        taken = tf.numpy_function(lambda i: [a[i] for a in arrays], [index], [a.dtype for a in arrays],
                                  stateful=False)
        for tensor, array in zip(taken, arrays, strict=True):
            tensor.set_shape((None, *array.shape[1:]))
        return tf.nest.pack_sequence_as(parts, taken)

    ds = tf.data.Dataset.range(len(x)) if rows is None else tf.data.Dataset.from_tensor_slices(np.asarray(rows))
    if shuffle:
        ds = ds.shuffle(ds.cardinality(), seed=seed, reshuffle_each_iteration=True)
    ds = ds.batch(batch_size).map(take)
    if per_image is not None:
        def augmented_row(example, image_seed):
            return (per_image(example[0], image_seed), *example[1:])

        image_seeds = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True).batch(2)
        batches = ds.cardinality()
        ds = tf.data.Dataset.zip(ds.unbatch(), image_seeds).map(augmented_row, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(batch_size).apply(tf.data.experimental.assert_cardinality(batches))
    layers = list(augment or [])

    def to_float_and_augment(images, *rest):
        images = tf.cast(images, tf.float32)
        for layer in layers:
            images = layer(images, training=True)
        return (images, *rest)

    return ds.map(to_float_and_augment).prefetch(tf.data.AUTOTUNE)


class EpochLog(keras.callbacks.Callback):
    """One short line per epoch (lean notebook outputs, progress during long training)."""

    def __init__(self, total_epochs: int):
        super().__init__()
        self.total_epochs = total_epochs

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        train = f"acc {logs['accuracy']:.4f}  " if "accuracy" in logs else ""
        val = "  ".join(f"{key[4:].removesuffix('accuracy').rstrip('_') or 'acc'} {value:.4f}"
                        for key, value in logs.items() if key.startswith("val_") and key.endswith("accuracy"))
        print(f"epoch {epoch + 1}/{self.total_epochs}  loss {logs['loss']:.4f}  {train}"
              f"val_loss {logs['val_loss']:.4f}  val: {val}  ({time.perf_counter() - self.start:.0f} s)",
              flush=True)


def compile_classifier(model, epochs: int, learning_rate: float, steps_per_epoch: int,
                       weight_decay: float = 1e-4, loss="sparse_categorical_crossentropy",
                       metrics=("accuracy",), warmup_epochs: int = 0) -> None:
    """Compile with AdamW on a learning rate that decays along a cosine to 1% over the run, after
    ``warmup_epochs`` (at most ``epochs - 1``) of a linear rise from zero to ``learning_rate``.

    ``loss`` and ``metrics`` may be dicts keyed by output head (multi-output models).
    Chapters 02, 03 and 04 type this recipe in their own cells.
    """
    warmup_steps = max(0, min(warmup_epochs, epochs - 1)) * steps_per_epoch  # at least one epoch of decay
    decay_steps = max(1, epochs * steps_per_epoch - warmup_steps)
    if warmup_steps:
        schedule = keras.optimizers.schedules.CosineDecay(
            0.0, decay_steps, alpha=0.01, warmup_target=learning_rate, warmup_steps=warmup_steps)
    else:
        schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps, alpha=0.01)
    model.compile(optimizer=keras.optimizers.AdamW(schedule, weight_decay=weight_decay),
                  loss=loss, metrics=metrics if isinstance(metrics, dict) else list(metrics))


def history_record(history: keras.callbacks.History, seconds: float) -> dict:
    """A fit's history as a dict of lists of floats, plus ``seconds`` (wall time of the fit)."""
    result = {key: [float(v) for v in values] for key, values in history.history.items()}
    result["seconds"] = seconds
    return result


def fit_classifier(model, train, val, epochs: int, learning_rate: float, steps_per_epoch: int,
                   weight_decay: float = 1e-4, loss="sparse_categorical_crossentropy",
                   metrics=("accuracy",), monitor: str = "val_accuracy", warmup_epochs: int = 0) -> dict:
    """``compile_classifier``, then fit and keep the weights of the best ``monitor`` epoch.

    Returns ``history_record`` of the fit.
    """
    compile_classifier(model, epochs, learning_rate, steps_per_epoch, weight_decay, loss, metrics, warmup_epochs)
    keep_best = keras.callbacks.EarlyStopping(monitor=monitor, patience=epochs, restore_best_weights=True)
    start = time.perf_counter()
    history = model.fit(train, validation_data=val, epochs=epochs, verbose=0, shuffle=False,
                        callbacks=[EpochLog(epochs), keep_best])
    return history_record(history, time.perf_counter() - start)


def _renormalise(scores) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    return scores / scores.sum(axis=1, keepdims=True)


def float_batches(images, batch_size: int = 256):
    """``images`` as a tf.data pipeline of float32 batches, for ``model.predict``: converted batch by
    batch, so a uint8 array is never copied whole as float32."""
    batches = tf.data.Dataset.from_tensor_slices(images).batch(batch_size)
    return batches.map(lambda batch: tf.cast(batch, tf.float32))


def predict_proba(model, x, batch_size: int = 256, flip: bool = False):
    """Class probabilities (n, num_classes) in float64, rows renormalised to sum to one;
    a dict of them, one per head, for a multi-output model.

    ``flip``: test-time augmentation, the mean of the probabilities for each image and its mirror image.
    """
    x = np.asarray(x)
    scores = model.predict(float_batches(x, batch_size), verbose=0)
    if flip:
        mirrored = model.predict(float_batches(x[:, :, ::-1], batch_size), verbose=0)
        scores = ({head: (s + mirrored[head]) / 2 for head, s in scores.items()} if isinstance(scores, dict)
                  else (scores + mirrored) / 2)
    if isinstance(scores, dict):
        return {head: _renormalise(s) for head, s in scores.items()}
    return _renormalise(scores)


def save_predictions(path: Path, y_true, y_score, history: dict, meta: dict) -> None:
    """Save test labels, class probabilities, training history and metadata (atomic)."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_score.ndim != 2 or len(y_true) != len(y_score):
        raise ValueError(f"y_true {y_true.shape} and y_score {y_score.shape} do not match.")
    buffer = io.BytesIO()
    np.savez_compressed(buffer, y_true=y_true.astype(np.int64), y_score=y_score,
                        meta=json.dumps({**meta, "history": history}))
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_predictions(path: Path) -> dict:
    """``{'y_true', 'y_score', 'history', **meta}`` from a file written by save_predictions."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the chapter that trains this model first "
                                "(see its 'meta' notebook name in the README's chapter list).")
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        return {"y_true": data["y_true"], "y_score": data["y_score"], **meta}
