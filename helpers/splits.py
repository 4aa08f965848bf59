"""Duplicate-grouped catalogue splits, class weights and a loss that skips missing labels.

Byte-identical photos (the same ``dup_group``) always land in the same split, so no test
image was seen in training; classes are stratified; rare classes are excluded or merged.
"""

from __future__ import annotations

import io
from pathlib import Path

import keras
import numpy as np
import pandas as pd
from keras import ops
from sklearn.model_selection import StratifiedGroupKFold
from sklearn.utils.class_weight import compute_class_weight

from helpers.paths import atomic_write_bytes

MISSING = -1  # the integer label of a missing value in every head


def group_rare(labels: pd.Series, min_count: int, rare: str = "exclude") -> pd.Series:
    """Labels with classes under ``min_count`` set to missing (``exclude``) or to ``"Other"``."""
    if rare not in ("exclude", "other"):
        raise ValueError(f"rare must be 'exclude' or 'other', got {rare!r}.")
    counts = labels.value_counts()
    small = labels.isin(counts.index[counts < min_count])
    return labels.mask(small, pd.NA if rare == "exclude" else "Other")


def _first_fold(frame: pd.DataFrame, label: str, share: float, seed: int) -> np.ndarray:
    """Boolean mask of one stratified, grouped fold holding about ``share`` of the rows."""
    folds = StratifiedGroupKFold(n_splits=max(2, round(1 / share)), shuffle=True, random_state=seed)
    _, held_out = next(folds.split(frame, frame[label], groups=frame["dup_group"]))
    mask = np.zeros(len(frame), dtype=bool)
    mask[held_out] = True
    return mask


def leak_free_split(table: pd.DataFrame, label: str, test_share: float = 0.15, val_share: float = 0.15,
                    seed: int = 42) -> pd.Series:
    """``train`` / ``val`` / ``test`` per row, stratified by ``label``, grouped by ``dup_group``.

    Rows whose ``label`` is missing go to ``train`` only when their group has no labelled row
    elsewhere; they never decide the stratification.
    """
    for column in (label, "dup_group"):
        if column not in table:
            raise ValueError(f"table has no column {column!r}; use the cleaned table of chapter 01.")
    split = pd.Series("train", index=table.index, name="split")
    labelled = table[table[label].notna()]
    test = _first_fold(labelled, label, test_share, seed)
    rest = labelled[~test]
    val = _first_fold(rest, label, val_share / (1 - test_share), seed)
    split[labelled.index[test]] = "test"
    split[rest.index[val]] = "val"
    # unlabelled rows follow their duplicates, so a group never spans two splits
    group_split = split[labelled.index].groupby(labelled["dup_group"]).first()
    unlabelled = table.index[table[label].isna()]
    split[unlabelled] = table.loc[unlabelled, "dup_group"].map(group_split).fillna("train")
    return split


def save_split(path: Path, ids, split: pd.Series) -> None:
    """Write ``id,split`` (for reuse by later chapters) through a temporary file."""
    buffer = io.StringIO()
    pd.DataFrame({"id": np.asarray(ids), "split": split.to_numpy()}).to_csv(buffer, index=False)
    atomic_write_bytes(Path(path), buffer.getvalue().encode())


def encode_labels(table: pd.DataFrame, heads, min_count: int = 50, rare: str = "exclude"):
    """Integer labels per head (``MISSING`` where unknown or rare) and each head's class names."""
    codes, names = {}, {}
    for head in heads:
        labels = group_rare(table[head], min_count, rare)
        names[head] = sorted(labels.dropna().unique())
        lookup = {name: k for k, name in enumerate(names[head])}
        codes[head] = labels.map(lookup).fillna(MISSING).astype(np.int64).to_numpy()
    return codes, names


def class_weights(y, num_classes: int) -> dict[int, float]:
    """scikit-learn's "balanced" weights, n / (num_classes_present * count), missing labels ignored."""
    y = np.asarray(y)
    y = y[y != MISSING]
    present = np.unique(y)
    weights = compute_class_weight("balanced", classes=present, y=y)
    return {k: float(weights[list(present).index(k)]) if k in present else 0.0 for k in range(num_classes)}


def masked_sparse_crossentropy(y_true, y_pred, margin: float = 0.0):
    """Per-example cross-entropy, zero where the label is ``MISSING`` (-1).

    Missing labels then add neither loss nor gradient to their head; Keras averages the
    per-example values over the batch as usual. ``margin`` > 0 subtracts that much from the true
    class's logit before the softmax is taken again (the additive margin of CosFace, Wang et al.
    2018): for a head ``softmax(scale * cosine)`` pass ``scale * m`` to ask for a cosine lead of ``m``.
    """
    y_true = ops.reshape(ops.cast(y_true, "int32"), (-1,))
    present = ops.not_equal(y_true, MISSING)
    safe = ops.where(present, y_true, ops.zeros_like(y_true))
    if margin:
        logits = ops.log(ops.clip(y_pred, 1e-12, 1.0)) - margin * ops.one_hot(safe, ops.shape(y_pred)[-1])
        loss = keras.losses.sparse_categorical_crossentropy(safe, logits, from_logits=True)
    else:
        loss = keras.losses.sparse_categorical_crossentropy(safe, y_pred)
    return loss * ops.cast(present, loss.dtype)


@keras.saving.register_keras_serializable(package="helpers")
class MarginCrossentropy(keras.losses.Loss):
    """``masked_sparse_crossentropy`` with a fixed logit ``margin``, as a Keras loss.

    A registered class, not a closure, so a model compiled with it saves and loads whole
    (``keras.models.load_model`` with ``compile=True``). ``call`` gives the per-example values.
    """

    def __init__(self, margin: float = 0.0, name: str | None = None, **kwargs):
        super().__init__(name=name or f"masked_sparse_crossentropy_margin_{margin:g}", **kwargs)
        self.margin = float(margin)

    def call(self, y_true, y_pred):
        return masked_sparse_crossentropy(y_true, y_pred, self.margin)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="helpers")
class SupervisedContrastive(keras.losses.Loss):
    """The supervised contrastive loss (Khosla et al. 2020) within each batch, per example.

    ``y_pred`` holds one vector per photo, ``y_true`` its class (``MISSING`` for none). With
    ``z`` the unit-length vectors, photo i's loss is minus the mean, over the other photos p of
    its class in the batch, of log softmax_j(z_i . z_j / temperature) at j = p (j running over
    every photo but i). A photo with no class-mate in the batch, or no class, adds 0, but still
    serves as a negative for the others.
    """

    def __init__(self, temperature: float = 0.1, name: str = "supervised_contrastive", **kwargs):
        super().__init__(name=name, **kwargs)
        self.temperature = float(temperature)

    def call(self, y_true, y_pred):
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        z = ops.normalize(ops.cast(y_pred, "float32"), axis=-1)
        self_pair = ops.eye(ops.shape(z)[0], dtype="bool")
        similarity = ops.where(self_pair, -1e9, ops.matmul(z, ops.transpose(z)) / self.temperature)
        log_prob = similarity - ops.logsumexp(similarity, axis=1, keepdims=True)
        known = ops.not_equal(labels, MISSING)
        positive = ops.cast(ops.equal(labels[:, None], labels[None, :]) & known[:, None] & known[None, :]
                            & ops.logical_not(self_pair), "float32")
        return -ops.sum(positive * log_prob, axis=1) / ops.maximum(ops.sum(positive, axis=1), 1.0)

    def get_config(self):
        return {**super().get_config(), "temperature": self.temperature}
