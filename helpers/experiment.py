"""The Fashion-MNIST workflow that chapters 02-04 share: data, training, evaluation, figures.

Per-mode budgets live in ``BUDGETS`` so that every chapter states its settings in one place:
full mode trains to the committed results; lesson mode trains every model briefly on all the training
images and tests on the whole test set, so that a class can watch each chapter in a few minutes;
quick mode trains on a stratified subset for one or two epochs and tests on a subset (a check that
everything runs, not a result).
"""

from __future__ import annotations

import platform
import time
from dataclasses import asdict, dataclass, replace

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import tensorflow as tf
from sklearn.metrics import confusion_matrix

from helpers import metrics, plots
from helpers.fashion_mnist import CLASS_NAMES, load_fashion_mnist
from helpers.models import build_model
from helpers.paths import results_dir, series_mode
from helpers.training import (
    fit_classifier,
    load_predictions,
    make_dataset,
    pad_to,
    predict_proba,
    random_crop_flip,
    save_predictions,
    set_seed,
    split_validation,
    subsample,
)


@dataclass(frozen=True)
class Budget:
    epochs: int
    batch_size: int = 128
    learning_rate: float = 1e-3
    train_limit: int | None = None  # training images used (None: all that remain after validation)
    test_limit: int | None = None  # test images evaluated (None: all 10,000); equal across models
    augment: bool = False  # random 2-pixel crops and left-right flips of every training image
    warmup_epochs: int = 0  # linear learning-rate warm-up before the cosine decay
    flip_tta: bool = False  # test-time augmentation: average each test image's and its mirror's prediction


VAL_SIZE = {"quick": 500, "lesson": 5000, "full": 5000}
BUDGETS = {
    ("benchmark", "lesson"): Budget(epochs=10, learning_rate=1e-3),
    ("lenet5", "lesson"): Budget(epochs=8, learning_rate=2e-3),
    ("resnet_small", "lesson"): Budget(epochs=3, batch_size=256, learning_rate=4e-3, augment=True, warmup_epochs=1,
                                       flip_tta=True),
    ("resnet50", "lesson"): Budget(epochs=1, batch_size=64, learning_rate=1e-3, train_limit=3000),
    # lesson mode: chapter 01 keeps the first 10,000 catalogue photos
    ("catalogue_cnn", "lesson"): Budget(epochs=2, batch_size=64, learning_rate=2e-3),
    ("catalogue_lite0", "lesson"): Budget(epochs=1, batch_size=64, learning_rate=1e-3),
    ("plain_network", "lesson"): Budget(epochs=2, batch_size=32, learning_rate=1e-2),
    ("catalogue_augment", "lesson"): Budget(epochs=1, batch_size=64, learning_rate=2e-3),
    ("lenet5_recipes", "lesson"): Budget(epochs=3, learning_rate=2e-3, train_limit=15000),  # chapter 07: nine runs
    ("benchmark", "full"): Budget(epochs=30, learning_rate=1e-3),
    ("benchmark", "quick"): Budget(epochs=2, train_limit=3000, test_limit=500),
    ("lenet5", "full"): Budget(epochs=20, learning_rate=2e-3),
    ("lenet5", "quick"): Budget(epochs=2, train_limit=3000, test_limit=500),
    ("resnet_small", "full"): Budget(epochs=25, batch_size=256, learning_rate=4e-3, augment=True, warmup_epochs=2,
                                     flip_tta=True),
    ("resnet_small", "quick"): Budget(epochs=1, batch_size=256, train_limit=1000, test_limit=500, augment=True,
                                      flip_tta=True),
    ("resnet50", "full"): Budget(epochs=4, batch_size=64, learning_rate=1e-3, warmup_epochs=1),
    ("resnet50", "quick"): Budget(epochs=1, train_limit=256, test_limit=500),
    # catalogue chapters (06-09): 80x60 RGB; quick mode has the first 2,000 images of chapter 01
    ("catalogue_cnn", "full"): Budget(epochs=8, batch_size=64, learning_rate=2e-3),
    ("catalogue_cnn", "quick"): Budget(epochs=1, batch_size=64),
    ("catalogue_lite0", "full"): Budget(epochs=5, batch_size=64, learning_rate=1e-3),  # chapter 06: fine-tuning
    ("catalogue_lite0", "quick"): Budget(epochs=1, batch_size=64, learning_rate=1e-3),
    ("plain_network", "full"): Budget(epochs=2, batch_size=32, learning_rate=1e-2),
    ("plain_network", "quick"): Budget(epochs=1, batch_size=32, learning_rate=1e-2),
    ("catalogue_augment", "full"): Budget(epochs=2, batch_size=64, learning_rate=2e-3),  # chapter 07, per arm
    ("catalogue_augment", "quick"): Budget(epochs=1, batch_size=64),
    # chapter 07's nine LeNet-5 runs (three recipes, three seeds): in full mode, LeNet-5's lesson budget
    ("lenet5_recipes", "full"): Budget(epochs=8, learning_rate=2e-3),
    ("lenet5_recipes", "quick"): Budget(epochs=2, train_limit=3000, test_limit=500),
}
INPUT_SIZE = {"benchmark": 32, "lenet5": 32, "resnet_small": 28, "resnet50": 32}


def budget_for(model_name: str, mode: str | None = None, epochs: int | None = None) -> Budget:
    """The training budget of ``model_name`` in ``mode``; ``epochs`` (at least 1) overrides the default."""
    mode = series_mode(mode)
    if (model_name, mode) not in BUDGETS:
        names = sorted({name for name, _ in BUDGETS})
        raise ValueError(f"No budget for model {model_name!r}; models with budgets: {', '.join(names)}.")
    if epochs is not None and (not isinstance(epochs, int) or epochs < 1):
        raise ValueError(f"epochs must be a whole number of at least 1, got {epochs!r}.")
    budget = BUDGETS[(model_name, mode)]
    return budget if epochs is None else replace(budget, epochs=epochs)


def prepare_fashion_mnist(size: int, mode: str | None = None, seed: int = 42, data_root=None,
                          train_limit: int | None = None, test_limit: int | None = None) -> dict:
    """Train / validation / test arrays (uint8, (n, size, size, 1)); validation is stratified."""
    (x_train, y_train), (x_test, y_test) = load_fashion_mnist(data_root)
    x_train, x_val, y_train, y_val = split_validation(x_train, y_train, VAL_SIZE[series_mode(mode)], seed)
    x_train, y_train = subsample(x_train, y_train, train_limit, seed)
    x_test, y_test = subsample(x_test, y_test, test_limit, seed)
    return {"x_train": pad_to(x_train, size), "y_train": y_train,
            "x_val": pad_to(x_val, size), "y_val": y_val,
            "x_test": pad_to(x_test, size), "y_test": y_test}


def describe_splits(data: dict) -> pd.DataFrame:
    """Images and per-class counts of each split, as a table."""
    rows = {split: np.bincount(data[f"y_{split}"], minlength=len(CLASS_NAMES))
            for split in ("train", "val", "test")}
    table = pd.DataFrame(rows, index=CLASS_NAMES).T
    table.insert(0, "images", table.sum(axis=1))
    return table


def train_model(name: str, data: dict, budget: Budget, seed: int = 42, augment=None, **build_kwargs):
    """Seed, build ``name`` from the registry, fit it with the budget; return (model, history).

    ``augment``: a list of Keras preprocessing layers applied per batch (chapter 07); independently,
    ``budget.augment`` crops and flips every training image (``random_crop_flip``).
    """
    set_seed(seed)
    model = build_model(name, data["x_train"].shape[1:], len(CLASS_NAMES), **build_kwargs)
    per_image = random_crop_flip() if budget.augment else None
    train = make_dataset(data["x_train"], data["y_train"], budget.batch_size, True, seed, augment,
                         per_image=per_image)
    val = make_dataset(data["x_val"], data["y_val"], 512, False, seed)
    steps = int(np.ceil(len(data["y_train"]) / budget.batch_size))
    history = fit_classifier(model, train, val, budget.epochs, budget.learning_rate, steps,
                             warmup_epochs=budget.warmup_epochs)
    return model, history


def evaluate_and_save(model, name: str, data: dict, history: dict, budget: Budget, notebook: str,
                      seed: int, mode: str | None = None, title: str | None = None) -> dict:
    """Predict the test set, save (y_true, y_score, history, settings) and the standard figures.

    Returns the saved record with ``figures`` (see ``evaluation_figures``) added.
    """
    start = time.perf_counter()
    y_score = predict_proba(model, data["x_test"], flip=budget.flip_tta)
    meta = {"model": name, "notebook": notebook, "seed": seed, "mode": series_mode(mode),
            "parameters": int(model.count_params()), "budget": asdict(budget),
            "train_images": int(len(data["y_train"])), "predict_seconds": time.perf_counter() - start,
            "versions": {"tensorflow": tf.__version__, "python": platform.python_version()}}
    save_predictions(results_dir(mode) / f"{name}_predictions.npz", data["y_test"], y_score, history, meta)
    record = {"y_true": data["y_test"], "y_score": y_score, "history": history, **meta}
    record["figures"] = evaluation_figures(record, notebook, title or name, mode)
    return record


def evaluation_figures(record: dict, notebook: str, title: str, mode: str | None = None) -> dict:
    """Training curves, confusion matrices (counts, row-normalised), ROC and PR; all saved."""
    y_true, y_score = record["y_true"], record["y_score"]
    cm = confusion_matrix(y_true, y_score.argmax(axis=1), labels=range(len(CLASS_NAMES)))
    figures = {
        "training": plots.plot_training_curves(record["history"], title=f"{title}: training"),
        "confusion": plots.plot_confusion_matrix(cm, CLASS_NAMES, title=f"{title}: test counts"),
        "confusion_normalised": plots.plot_confusion_matrix(
            cm, CLASS_NAMES, normalize=True, title=f"{title}: share of each true class"),
        "roc": plots.plot_curves(metrics.one_vs_rest_curves(y_true, y_score, "roc"), CLASS_NAMES,
                                 "roc", title=f"{title}: one-vs-rest ROC"),
        "pr": plots.plot_curves(metrics.one_vs_rest_curves(y_true, y_score, "pr"), CLASS_NAMES,
                                "pr", title=f"{title}: one-vs-rest precision-recall"),
    }
    stem = record["model"]
    for what, fig in figures.items():
        plots.save_fig(fig, notebook, f"{stem}_{what}", mode)
        plt.close(fig)  # shown where the chapter displays it, not all at once
    return figures


def headline(record: dict) -> pd.Series:
    """The chapter's key numbers for one model, rounded for reading."""
    values = metrics.summary_metrics(record["y_true"], record["y_score"])
    values["train_minutes"] = record["history"]["seconds"] / 60
    values["parameters"] = record["parameters"]
    return pd.Series(values, name=record["model"]).round(4)


STUDY = pd.DataFrame(  # the study's Table 1 (Fashion-MNIST test set)
    {"accuracy": [0.816, 0.86, 0.89], "precision": [0.92, 0.94, 0.96], "roc_auc": [0.98, 0.99, 0.99]},
    index=["benchmark", "lenet5", "resnet50"])
CHAPTER_OF = {"benchmark": "02_benchmark", "lenet5": "03_lenet5", "resnet_small": "04_resnet",
              "resnet50": "04_resnet"}


def load_records(mode: str | None = None, names=None) -> dict[str, dict]:
    """Saved test predictions (all models, or ``names``); a missing file names the chapter to run."""
    records = {}
    for name in names or CHAPTER_OF:
        chapter = CHAPTER_OF[name]
        path = results_dir(mode) / f"{name}_predictions.npz"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: run notebooks/{chapter}.ipynb "
                                    f"(mode {series_mode(mode)}) first.")
        records[name] = load_predictions(path)
    return records


def study_table(records: dict) -> pd.DataFrame:
    """The study's Table 1 beside our numbers, with the metric definitions that explain them."""
    rows = []
    for name, rec in records.items():
        y_true, y_score = rec["y_true"], rec["y_score"]
        ours = metrics.summary_metrics(y_true, y_score)
        study = STUDY.loc[name] if name in STUDY.index else pd.Series(dtype=float)
        rows.append({"model": name, "study accuracy": study.get("accuracy"), "accuracy": ours["accuracy"],
                     "study precision": study.get("precision"),
                     "precision (Keras, >0.5)": metrics.thresholded_precision(y_true, y_score),
                     "precision (macro)": ours["precision_macro"],
                     "study ROC-AUC": study.get("roc_auc"), "ROC-AUC (micro)": ours["roc_auc_ovr_micro"],
                     "ROC-AUC (macro)": ours["roc_auc_ovr_macro"]})
    return pd.DataFrame(rows).set_index("model")


def metrics_with_ci(records: dict, n_boot: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Every summary metric per model, plus 95% bootstrap intervals for accuracy and macro F1."""
    rows = {}
    for name, rec in records.items():
        row = metrics.summary_metrics(rec["y_true"], rec["y_score"])
        for key, fn in (("accuracy", metrics.accuracy_from_scores), ("f1_macro", metrics.f1_macro_from_scores)):
            _, low, high = metrics.bootstrap_ci(rec["y_true"], rec["y_score"], fn, n_boot, seed)
            row[f"{key}_ci_low"], row[f"{key}_ci_high"] = low, high
        rows[name] = row
    return pd.DataFrame(rows).T


def paired_outcomes(record_a: dict, record_b: dict, name_a: str, name_b: str) -> pd.DataFrame:
    """2x2 counts of test images each model gets right or wrong (the table behind McNemar's test)."""
    if not np.array_equal(record_a["y_true"], record_b["y_true"]):
        raise ValueError(f"{name_a} and {name_b} were tested on different images; rerun both in one mode.")
    right_a = record_a["y_score"].argmax(1) == record_a["y_true"]
    right_b = record_b["y_score"].argmax(1) == record_b["y_true"]
    return pd.crosstab(pd.Series(right_a, name=f"{name_a} right"), pd.Series(right_b, name=f"{name_b} right"))


def mcnemar_table(records: dict) -> pd.DataFrame:
    """McNemar's exact test for every pair of models on the shared test set."""
    names = list(records)
    rows = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            paired_outcomes(records[a], records[b], a, b)  # checks the test images agree
            res = metrics.mcnemar_test(records[a]["y_true"], records[a]["y_score"].argmax(1),
                                       records[b]["y_score"].argmax(1))
            rows.append({"model A": a, "model B": b, **res})
    return pd.DataFrame(rows)
