"""Catalogue tagging (chapters 06-09): the cleaned arrays of chapter 01, a duplicate-grouped split,
a multi-output model with masked losses and class weights, and per-attribute results.

Every head is one catalogue column. Classes with fewer than ``MIN_COUNT`` images are
*excluded* (their rows count as missing for that head, so they add no loss and are not
scored); the published figures we compare against are on classes with at least 50 images.
"""

from __future__ import annotations

import io
import json
import platform
from dataclasses import asdict, dataclass

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn import metrics as skm

from helpers import catalogue, splits
from helpers.metrics import paired_comparison
from helpers.models import build_model
from helpers.paths import atomic_write_bytes, processed_dir, replacing, results_dir, series_mode
from helpers.plots import plot_misclassified
from helpers.splits import (
    MISSING,
    MarginCrossentropy,
    SupervisedContrastive,
    class_weights,
    encode_labels,
    group_rare,
    leak_free_split,
)
from helpers.training import fit_classifier, float_batches, make_dataset, predict_proba, set_seed

HEADS = ("gender", "masterCategory", "subCategory", "articleType", "baseColour", "season", "usage")
MIN_COUNT = 50
STRATIFY_BY = "articleType"  # the split is stratified by the head with the most classes

# Two reference models measured on a duplicate-grouped split like chapter 06's, full training budget (see
# results/EXPERIMENTS.md): a frozen ImageNet EfficientNet-Lite0 + logistic regression, and a plain
# from-scratch Keras multi-output CNN (8 conv layers of width 32, flips, 8 epochs).
REFERENCES = pd.DataFrame({
    "frozen EfficientNet-Lite0": [0.861, 0.984, 0.946, 0.856, 0.576, 0.689, 0.906],
    "plain CNN": [0.889, 0.987, 0.948, 0.839, 0.672, 0.734, 0.901],
}, index=list(HEADS))

# Test accuracies published for this catalogue, each in its own setting (checked at the source; neither is
# chapter 06's split or class lists). The earlier versions of the first README reported 0.921 / 0.992 / 0.973.
_KRA = ("CarolinaKra/FashionArticlesImageClassification, README of 18 March 2022: a Keras CNN on a third of "
        "the catalogue (14,808 photos), classes under 1% removed, one hold-out test set")
_GERTZ = ("Hugging Face model card g-gertz/MSP-ML-Backend-Models: ResNet-50 heads on the catalogue less about "
          "17,000 photos removed by hand, 33 article types, 46 colours, 8 usages; an 80/20 split whose validation "
          "mixes in the author's own photos; figures rounded (~)")
PUBLISHED = pd.DataFrame({
    "published accuracy": [0.894, 0.983, 0.947, 0.82, 0.63, 0.65, 0.87],
    "source": [_KRA, _KRA, _KRA, _GERTZ, _GERTZ, _GERTZ, _GERTZ],
    "url": ["https://github.com/CarolinaKra/FashionArticlesImageClassification"] * 3
    + ["https://huggingface.co/g-gertz/MSP-ML-Backend-Models"] * 4,
}, index=list(HEADS))


def load_processed(mode: str | None = None) -> tuple[pd.DataFrame, np.ndarray]:
    """Chapter 01's cleaned table and its images; image k is table row k.

    In quick mode chapter 01 saves the whole table but only the first rows' images.
    """
    folder = processed_dir(mode)
    table_path, images_path = folder / "catalogue.csv", folder / "catalogue_images.npy"
    for path in (table_path, images_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run notebooks/01_data.ipynb "
                                    f"(mode {series_mode(mode)}) first. It needs the Kaggle catalogue: "
                                    f"{catalogue.HOW_TO_GET}")
    catalogue.check_processed_source(folder)
    table = pd.read_csv(table_path, keep_default_na=False, na_values=[""])
    images = np.load(images_path)
    if len(images) > len(table):
        raise ValueError(f"{images_path} holds {len(images)} images for {len(table)} rows of {table_path}; "
                         "rerun notebooks/01_data.ipynb.")
    return table, images


def split_catalogue(table: pd.DataFrame, seed: int = 42, min_count: int = MIN_COUNT) -> pd.Series:
    """The duplicate-grouped train / val / test split (5:1:1, in folds of seven), stratified by articleType with rare
    types excluded, identical photos kept together; saved by chapter 06 for 07 and 08."""
    labelled = table.assign(**{STRATIFY_BY: group_rare(table[STRATIFY_BY], min_count)})
    return leak_free_split(labelled, STRATIFY_BY, seed=seed)


def save_split(table: pd.DataFrame, split: pd.Series, mode: str | None = None):
    """Write ``results/catalogue_split.csv`` (id, split) for chapters 07 and 08; return its path."""
    path = results_dir(mode) / "catalogue_split.csv"
    splits.save_split(path, table["id"], split)
    return path


def load_split(table: pd.DataFrame, mode: str | None = None) -> pd.Series:
    """The split saved by chapter 06, aligned with ``table`` (same ids, same order)."""
    path = results_dir(mode) / "catalogue_split.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebooks/06_catalogue.ipynb "
                                f"(mode {series_mode(mode)}) first.")
    saved = pd.read_csv(path)
    if not np.array_equal(saved["id"].to_numpy(), table["id"].to_numpy()):
        raise ValueError(f"{path} does not match chapter 01's table; rerun 06 after 01.")
    return saved["split"].rename("split")


@dataclass
class CatalogueData:
    """Images and integer labels per split; ``names[head]`` lists each head's classes."""

    images: dict[str, np.ndarray]
    labels: dict[str, dict[str, np.ndarray]]
    ids: dict[str, np.ndarray]
    names: dict[str, list[str]]

    def sizes(self) -> pd.DataFrame:
        """Images per split, and labelled images per head and split."""
        rows = {split: {"images": len(x), **{h: int((self.labels[split][h] != MISSING).sum()) for h in self.names}}
                for split, x in self.images.items()}
        return pd.DataFrame(rows)


def prepare_catalogue(table, images, split: pd.Series, min_count: int = MIN_COUNT, heads=HEADS,
                      train_limit: int | None = None, rare: str = "exclude") -> CatalogueData:
    """Encode the heads and cut the rows that have images into splits. Classes under ``min_count``
    images are excluded (``rare="exclude"``) or merged into one class "Other" (``rare="other"``).

    Class lists come from the whole table, so they do not depend on how many images are loaded.
    """
    codes, names = encode_labels(table, heads, min_count, rare)
    available = np.zeros(len(table), dtype=bool)
    available[:len(images)] = True
    data = CatalogueData({}, {}, {}, names)
    for part in ("train", "val", "test"):
        rows = np.flatnonzero(available & (split.to_numpy() == part))
        if part == "train" and train_limit is not None:
            rows = rows[:train_limit]
        data.images[part] = images[rows]
        data.labels[part] = {h: codes[h][rows] for h in heads}
        data.ids[part] = table["id"].to_numpy()[rows]
    return data


def class_weight_table(labels: dict[str, np.ndarray], names: dict, power: float = 0.5) -> dict[str, np.ndarray]:
    """Per head, one weight per class: the "balanced" class weight raised to ``power``
    (1: fully balanced, 0: unweighted; 0.5 softens a 140:1 ratio to about 12:1)."""
    return {head: np.array(list(class_weights(y, len(names[head])).values())) ** power
            for head, y in labels.items()}


def example_weights(labels: dict[str, np.ndarray], names: dict, power: float = 0.5) -> dict[str, np.ndarray]:
    """Per-example loss weights per head: the weight of the example's class
    (``class_weight_table``), 0 where the label is missing."""
    return weights_of_examples(labels, class_weight_table(labels, names, power))


def weights_of_examples(labels: dict[str, np.ndarray], table: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per head, each example's class weight looked up in ``table`` (``class_weight_table``);
    0 where the label is missing."""
    out = {}
    for head, weights in table.items():
        weights = np.append(weights, 0.0).astype(np.float32)
        out[head] = weights[np.where(labels[head] == MISSING, len(weights) - 1, labels[head])]
    return out


def undo_class_weights(y_score: dict, weights: dict) -> dict:
    """Per head, the probabilities divided by the class weights and renormalised.

    A model trained with class weights learns probabilities proportional to weight x p(class | image);
    dividing the weights out recovers p(class | image), whose argmax maximises plain accuracy
    (post-hoc logit adjustment), while the weighted scores favour balanced accuracy. ``weights`` maps
    each head to its per-class weights (``class_weight_table``). Classes with weight 0 (absent from
    training) keep probability 0.
    """
    out = {}
    for head, scores in y_score.items():
        scores = np.asarray(scores, dtype=np.float64)
        weight = np.asarray(weights[head], dtype=np.float64)  # arrays, or lists as saved with the history
        adjusted = np.divide(scores, weight, out=np.zeros_like(scores), where=weight > 0)
        out[head] = adjusted / adjusted.sum(axis=1, keepdims=True)
    return out


class MaskedAccuracy(keras.metrics.SparseCategoricalAccuracy):
    """Accuracy over the examples whose label is known (label ``MISSING`` = -1 is skipped)."""

    def __init__(self, name="accuracy", **kwargs):
        super().__init__(name=name, **kwargs)

    def update_state(self, y_true, y_pred, sample_weight=None):
        known = keras.ops.cast(keras.ops.not_equal(keras.ops.reshape(y_true, (-1,)), MISSING), "float32")
        safe = keras.ops.maximum(keras.ops.reshape(y_true, (-1,)), 0)
        return super().update_state(safe, y_pred, sample_weight=known)


def attribute_table(y_true: dict, y_score: dict, names: dict) -> pd.DataFrame:
    """Per head, on the test rows whose label is known: accuracy, balanced accuracy, macro and
    weighted F1 (scikit-learn), the majority baseline (the accuracy of always answering the most
    frequent class), the number of classes and of scored images."""
    rows = {}
    for head, y in y_true.items():
        known = y != MISSING
        y, y_pred = y[known], np.asarray(y_score[head])[known].argmax(1)
        labels = np.arange(len(names[head]))
        present = np.unique(y)
        rows[head] = {
            "accuracy": skm.accuracy_score(y, y_pred),
            "balanced accuracy": skm.recall_score(y, y_pred, labels=present, average="macro", zero_division=0),
            "macro F1": skm.f1_score(y, y_pred, labels=present, average="macro", zero_division=0),
            "weighted F1": skm.f1_score(y, y_pred, labels=labels, average="weighted", zero_division=0),
            "majority baseline": skm.accuracy_score(y, np.full_like(y, np.bincount(y).argmax())),
            "classes": len(names[head]), "test images": int(known.sum())}
    return pd.DataFrame(rows).T.astype({"classes": int, "test images": int})


def top_classes_confusion(y_true, y_pred, names, n: int = 20) -> tuple[np.ndarray, list[str]]:
    """Confusion counts among the ``n`` most frequent true classes, everything else pooled as
    "(other)" - readable where a head has 70+ classes; no "(other)" where every class fits.
    Missing labels are skipped."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    known = y_true != MISSING
    y_true, y_pred = y_true[known], y_pred[known]
    top = np.argsort(-np.bincount(y_true, minlength=len(names)), kind="stable")[:n]
    position = np.full(len(names), len(top))
    position[top] = np.arange(len(top))
    labels = [names[k] for k in top] + (["(other)"] if len(top) < len(names) else [])
    return skm.confusion_matrix(position[y_true], position[y_pred], labels=range(len(labels))), labels


def save_tags(path, y_true: dict, y_score: dict, names: dict, ids, meta: dict) -> None:
    """Test labels and per-head probabilities (float32 keeps the file small), atomically."""
    arrays = {f"y_true__{h}": y for h, y in y_true.items()}
    arrays.update({f"y_score__{h}": np.asarray(s, np.float32) for h, s in y_score.items()})
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.asarray(ids), meta=json.dumps({**meta, "names": names}), **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def load_tags(mode: str | None = None, name: str = "catalogue_tagger") -> dict:
    """``{'y_true': {head: ...}, 'y_score': {head: ...}, 'ids', 'names', **meta}``."""
    path = results_dir(mode) / f"{name}_tags.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run the chapter that trains {name} first.")
    return read_tags(path)


def read_tags(path) -> dict:
    """The file ``save_tags`` wrote, as ``load_tags`` returns it (arrays and JSON only: nothing is unpickled)."""
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        heads = list(meta["names"])
        return {"y_true": {h: data[f"y_true__{h}"] for h in heads},
                "y_score": {h: data[f"y_score__{h}"].astype(np.float64) for h in heads},
                "ids": data["ids"], **meta}


def train_tagger(data: CatalogueData, budget, seed: int = 42, augment=None, weight_power: float = 0.5,
                 margin: float = 0.2, contrast: float = 0.0, temperature: float = 0.1,
                 projection: bool = True, architecture: str = "catalogue_cnn", **build_kwargs):
    """Seed, build the multi-output ``architecture`` (``catalogue_cnn`` from scratch, or the
    pretrained ``catalogue_lite0``) and fit it: masked cross-entropy per head,
    class weights (``class_weight_table``, computed once) as per-example weights, the best val-loss epoch kept.
    With cosine heads (the default), every head's loss asks the true class to lead by ``margin`` in
    cosine (CosFace): photos of one class gather closer together, which chapter 08's search uses.

    ``contrast`` > 0 adds, with that weight, a supervised contrastive loss (``SupervisedContrastive``)
    on the head with the most classes (articleType for the catalogue), pulling the batch's photos of one
    class together: with ``projection``, through a small training-only projection of the embedding
    (``_with_contrast_output``), else on the embedding itself. The returned model is the plain tagger.
    The history also holds the class-weight table, so ``undo_class_weights`` can be applied later."""
    set_seed(seed)
    heads = list(data.names)
    model = build_model(architecture, data.images["train"].shape[1:],
                        {h: len(data.names[h]) for h in heads}, **build_kwargs)
    scale = getattr(model.get_layer(heads[0]), "scale", 0.0)  # 0 for plain softmax heads
    table = class_weight_table(data.labels["train"], data.names, weight_power)
    labels = {part: dict(data.labels[part]) for part in ("train", "val")}
    weights = weights_of_examples(data.labels["train"], table)
    losses = {h: MarginCrossentropy(scale * margin) for h in heads}
    trained = model
    if contrast:
        most = max(heads, key=lambda h: len(data.names[h]))
        for part in labels:
            labels[part]["contrast"] = labels[part][most]
        weights["contrast"] = np.full(len(data.images["train"]), contrast, dtype=np.float32)
        losses["contrast"] = SupervisedContrastive(temperature)
        trained = _with_contrast_output(model, heads, projection)
    train = make_dataset(data.images["train"], labels["train"], budget.batch_size, True, seed, augment,
                         sample_weight=weights)
    val = make_dataset(data.images["val"], labels["val"], 64, False, seed)  # batch 64: less memory at 160x120
    steps = int(np.ceil(len(data.images["train"]) / budget.batch_size))
    history = fit_classifier(trained, train, val, budget.epochs, budget.learning_rate, steps, loss=losses,
                             metrics={h: [MaskedAccuracy()] for h in heads}, monitor="val_loss")
    history["class_weights"] = {h: w.tolist() for h, w in table.items()}
    return model, history


def _with_contrast_output(model: keras.Model, heads, projection: bool = True) -> keras.Model:
    """``model`` with one more output, ``"contrast"``, for the contrastive loss during training: a
    projection (Dense 256, ReLU, Dense 128) of its embedding, or the embedding itself when not
    ``projection``; the layers up to the heads are shared."""
    contrast = model.get_layer("embedding").output
    if projection:
        hidden = keras.layers.Dense(256, activation="relu", name="projection_hidden")(contrast)
        contrast = keras.layers.Dense(128, name="contrast")(hidden)
    else:
        contrast = keras.layers.Identity(name="contrast")(contrast)
    return keras.Model(model.inputs, {**{h: model.get_layer(h).output for h in heads}, "contrast": contrast})


def train_plain_network(data: CatalogueData, budget, head: str = "articleType", seed: int = 42,
                        fixed: bool = False):
    """The study's catalogue attempt: the benchmark MLP on raw 0-255 pixels, plain SGD, no class weights; with
    ``fixed``, the same network with its inputs scaled to [0, 1] and Adam. Returns (y_true, y_score) on the test
    rows where ``head`` is known."""
    set_seed(seed)
    y = data.labels["train"][head]
    model = build_model("benchmark", data.images["train"].shape[1:], len(data.names[head]), rescale=fixed)
    optimizer = keras.optimizers.Adam(1e-3) if fixed else keras.optimizers.SGD(budget.learning_rate)
    model.compile(optimizer, "sparse_categorical_crossentropy")
    labelled = np.flatnonzero(y != MISSING)  # row numbers: the photos are not copied
    model.fit(make_dataset(data.images["train"], y, budget.batch_size, True, seed, rows=labelled),
              epochs=budget.epochs, verbose=0, shuffle=False)
    known = data.labels["test"][head] != MISSING
    return data.labels["test"][head][known], predict_proba(model, data.images["test"][known])


def head_summary(table: pd.DataFrame, min_count: int = MIN_COUNT, heads=HEADS) -> pd.DataFrame:
    """Per head: classes kept (>= ``min_count`` images), classes excluded and the images they hold,
    and images with no label at all."""
    rows = {}
    for head in heads:
        counts = table[head].value_counts()
        rare = counts[counts < min_count]
        rows[head] = {"classes kept": int((counts >= min_count).sum()), "classes excluded": len(rare),
                      "images in excluded classes": int(rare.sum()),
                      "images without label": int(table[head].isna().sum())}
    return pd.DataFrame(rows).T


def compare_with_references(ours: pd.DataFrame, intervals: pd.DataFrame) -> pd.DataFrame:
    """Per head: our accuracy with its 95% interval (``intervals``: columns low, high), the majority baseline, the
    two reference models measured on a duplicate-grouped split, and the published accuracy (another setting)."""
    table = ours[["accuracy"]].join(intervals[["low", "high"]].add_prefix("95% interval "))
    table = table.join(ours["majority baseline"]).join(REFERENCES)
    return table.join(PUBLISHED["published accuracy"].rename("published (other setting)"))


def model_path(mode: str | None = None, name: str = "catalogue_tagger"):
    """Where chapter 06 keeps its trained tagger for chapters 08 and 09 (git-ignored, like the arrays); the saved
    predictions record its architecture (``catalogue_lite0``)."""
    return processed_dir(mode) / f"{name}.keras"


def evaluate_tagger(model, data: CatalogueData, history: dict, budget, notebook: str, seed: int,
                    mode: str | None = None, name: str = "catalogue_tagger") -> dict:
    """Predict the test split, save the predictions (results/) and the model (for chapter 08)."""
    y_score = predict_proba(model, data.images["test"], batch_size=64)
    meta = {"model": name, "architecture": model.name, "notebook": notebook, "seed": seed, "mode": series_mode(mode),
            "parameters": int(model.count_params()), "budget": asdict(budget), "history": history,
            "train_images": int(len(data.images["train"])),
            "versions": {"tensorflow": tf.__version__, "python": platform.python_version()}}
    save_tags(results_dir(mode) / f"{name}_tags.npz", data.labels["test"], y_score, data.names,
              data.ids["test"], meta)
    path = model_path(mode, name)
    with replacing(path, suffix=".keras") as tmp:  # Keras chooses the format by the name's ending
        model.save(tmp)
    return {"y_true": data.labels["test"], "y_score": y_score, "ids": data.ids["test"], "names": data.names, **meta}


def plot_head_errors(record: dict, data: CatalogueData, head: str, n: int = 12, seed: int = 0):
    """Photos of test mistakes of one head, titled "true -> predicted (confidence)"."""
    known = record["y_true"][head] != MISSING
    return plot_misclassified(data.images["test"][known], record["y_true"][head][known],
                              record["y_score"][head][known], data.names[head], n, seed)


def compare_heads(y_true: dict, score_a: dict, score_b: dict, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """``metrics.paired_comparison`` of two models per head, on the rows whose label is known."""
    rows = {}
    for head, y in y_true.items():
        known = y != MISSING
        rows[head] = paired_comparison(y[known], score_a[head][known], score_b[head][known], n_boot, seed)
    return pd.DataFrame(rows).T


def load_tagger(mode: str | None = None, name: str = "catalogue_tagger") -> keras.Model:
    """The model chapter 06 trained, for inference (not compiled: no optimizer state is needed)."""
    path = model_path(mode, name)
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: run notebooks/06_catalogue.ipynb "
                                f"(mode {series_mode(mode)}) first.")
    return keras.models.load_model(path, compile=False)


def embed(model: keras.Model, images, layer: str = "embedding", batch_size: int = 256) -> np.ndarray:
    """The activations of ``layer`` (the penultimate, 256-wide layer) for each image, in float32 whatever
    precision the model computes in (under mixed_bfloat16 they come out in bfloat16, which scikit-learn
    cannot read)."""
    extractor = keras.Model(model.inputs, model.get_layer(layer).output)
    return extractor.predict(float_batches(np.asarray(images), batch_size), verbose=0).astype("float32")
