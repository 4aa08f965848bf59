"""Pure metric functions on ``y_true`` (n,) and ``y_score`` (n, num_classes).

Everything that scikit-learn or SciPy computes is computed by them; the reliability table, the
expected calibration error, temperature scaling, the bootstrap and McNemar's exact test are written here
(chapter 05 types each of them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import softmax
from scipy.stats import binomtest
from sklearn import metrics as skm
from sklearn.preprocessing import label_binarize


def check_scores(y_true, y_score) -> tuple[np.ndarray, np.ndarray]:
    """Validate the inputs every metric takes: labels (n,) of integers in [0, num_classes) and class
    probabilities (n, num_classes), each row in [0, 1] and summing to 1, with n >= 1."""
    y_true = np.asarray(y_true)
    y_score = np.asarray(y_score, dtype=np.float64)
    if y_true.ndim != 1:
        raise ValueError(f"y_true must have shape (n,), got {y_true.shape}; flatten it first.")
    if y_score.ndim != 2 or y_score.shape[0] != y_true.shape[0]:
        raise ValueError(f"y_score must have shape (n, num_classes) with n={y_true.shape[0]}, "
                         f"got {y_score.shape}.")
    if len(y_true) == 0:
        raise ValueError("y_true and y_score hold no examples.")
    if not np.issubdtype(y_true.dtype, np.integer):
        raise ValueError(f"y_true must hold integer class ids, got dtype {y_true.dtype}.")
    if y_true.min() < 0 or y_true.max() >= y_score.shape[1]:
        raise ValueError(f"y_true holds ids outside [0, {y_score.shape[1]}).")
    bad = ~np.isfinite(y_score).all(axis=1) | (y_score < 0).any(axis=1) | (y_score > 1).any(axis=1) \
        | (np.abs(y_score.sum(axis=1) - 1) > 1e-3)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"y_score must hold class probabilities (each row in [0, 1], summing to 1); row {row} "
                         f"is {np.array2string(y_score[row], precision=3, threshold=6)}. Apply a softmax to "
                         "logits, and check for NaN.")
    return y_true, y_score


def _check_names(class_names, num_classes: int) -> list:
    names = list(class_names)
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes.")
    return names


def predicted_labels(y_score) -> np.ndarray:
    return np.asarray(y_score).argmax(axis=1)


CALIBRATION_BINS = 15  # equal-width confidence bins of the ECE and the reliability diagram


def reliability_table(y_true, y_score, n_bins: int = CALIBRATION_BINS) -> pd.DataFrame:
    """Per equal-width bin of the top-class confidence (empty bins left out): how many images, their mean
    confidence and their accuracy; the reliability diagram plots accuracy against confidence."""
    y_true, y_score = check_scores(y_true, y_score)
    confidence, correct = y_score.max(axis=1), y_score.argmax(axis=1) == y_true
    bins = np.minimum((confidence * n_bins).astype(int), n_bins - 1)
    frame = pd.DataFrame({"bin": bins, "confidence": confidence, "correct": correct})
    return frame.groupby("bin").agg(count=("correct", "size"), confidence=("confidence", "mean"),
                                    accuracy=("correct", "mean"))


def expected_calibration_error(y_true, y_score, n_bins: int = CALIBRATION_BINS) -> float:
    """ECE: the mean of |accuracy - confidence| over the reliability table's bins, weighted by their images."""
    table = reliability_table(y_true, y_score, n_bins)
    return float(np.sum(table["count"] / table["count"].sum() * (table["accuracy"] - table["confidence"]).abs()))


def temperature_scale(y_score, temperature: float) -> np.ndarray:
    """Class probabilities softened (temperature > 1) or sharpened (< 1): softmax(log p / T). The logs of the
    probabilities are the logits up to a constant per image, which a softmax ignores; the top class stays."""
    logits = np.log(np.clip(np.asarray(y_score, dtype=np.float64), 1e-12, 1.0))
    return softmax(logits / temperature, axis=1)


def fit_temperature(y_true, y_score) -> float:
    """The temperature whose scaled probabilities have the lowest log loss on these (held-out) images."""
    y_true, y_score = check_scores(y_true, y_score)
    labels = np.arange(y_score.shape[1])
    result = minimize_scalar(lambda t: skm.log_loss(y_true, temperature_scale(y_score, t), labels=labels),
                             bounds=(0.05, 20.0), method="bounded")
    return float(result.x)


def summary_metrics(y_true, y_score) -> dict[str, float]:
    """Every headline number of the series for one model. The macro one-vs-rest ROC-AUC and average
    precision average over the classes present in ``y_true`` (for an absent class they are undefined)."""
    y_true, y_score = check_scores(y_true, y_score)
    labels = np.arange(y_score.shape[1])
    y_pred = y_score.argmax(axis=1)
    y_bin = label_binarize(y_true, classes=labels)
    present = np.isin(labels, y_true)
    out = {
        "accuracy": skm.accuracy_score(y_true, y_pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y_true, y_pred),
    }
    for average in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(
            y_true, y_pred, labels=labels, average=average, zero_division=0)
        out.update({f"precision_{average}": p, f"recall_{average}": r, f"f1_{average}": f})
    out.update({
        "roc_auc_ovr_macro": _macro(skm.roc_auc_score, y_bin, y_score, present),
        "roc_auc_ovr_micro": skm.roc_auc_score(y_bin, y_score, average="micro"),
        "average_precision_macro": _macro(skm.average_precision_score, y_bin, y_score, present),
        "average_precision_micro": skm.average_precision_score(y_bin, y_score, average="micro"),
        "log_loss": skm.log_loss(y_true, y_score, labels=labels),
        "ece": expected_calibration_error(y_true, y_score),
    })
    return {key: float(value) for key, value in out.items()}


def _macro(score, y_bin, y_score, present) -> float:
    """The mean over the present classes of ``score`` one class against the rest."""
    if present.sum() < 2:
        raise ValueError("y_true holds a single class: one-vs-rest ROC-AUC needs two.")
    return float(np.mean([score(y_bin[:, k], y_score[:, k]) for k in np.flatnonzero(present)]))


def per_class_report(y_true, y_score, class_names) -> pd.DataFrame:
    """Precision, recall, F1, support and one-vs-rest ROC-AUC / AP for every class (NaN, with support
    0, for a class absent from ``y_true``)."""
    y_true, y_score = check_scores(y_true, y_score)
    class_names = _check_names(class_names, y_score.shape[1])
    labels = np.arange(y_score.shape[1])
    report = skm.classification_report(y_true, y_score.argmax(axis=1), labels=labels,
                                       target_names=list(class_names), output_dict=True,
                                       zero_division=0)
    table = pd.DataFrame({name: report[name] for name in class_names}).T
    y_bin = label_binarize(y_true, classes=labels)
    for column, score in (("roc_auc", skm.roc_auc_score), ("average_precision", skm.average_precision_score)):
        table[column] = [score(y_bin[:, k], y_score[:, k]) if y_bin[:, k].any() else np.nan for k in labels]
    table["support"] = table["support"].astype(int)
    return table


def bootstrap_ci(y_true, y_score, metric, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> tuple[float, float, float]:
    """(point estimate, low, high) of ``metric(y_true, y_score)`` by the percentile bootstrap."""
    y_true, y_score = check_scores(y_true, y_score)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        stats.append(metric(y_true[idx], y_score[idx]))
    low, high = np.quantile(stats, [(1 - level) / 2, (1 + level) / 2])
    return float(metric(y_true, y_score)), float(low), float(high)


def accuracy_from_scores(y_true, y_score) -> float:
    y_true, y_score = check_scores(y_true, y_score)
    return skm.accuracy_score(y_true, y_score.argmax(axis=1))


def f1_macro_from_scores(y_true, y_score) -> float:
    y_true, y_score = check_scores(y_true, y_score)
    return skm.f1_score(y_true, y_score.argmax(axis=1), average="macro")


def mcnemar_test(y_true, y_pred_a, y_pred_b) -> dict[str, float]:
    """McNemar's exact test: do models A and B err on the same test examples equally often?

    ``b`` counts examples A gets right and B wrong, ``c`` the reverse; the p-value is the
    two-sided binomial test of b against (b + c) / 2.
    """
    y_true, a, b_pred = (np.asarray(v) for v in (y_true, y_pred_a, y_pred_b))
    if not (y_true.shape == a.shape == b_pred.shape) or y_true.ndim != 1:
        raise ValueError(f"McNemar needs three (n,) label arrays, got {y_true.shape}, {a.shape}, "
                         f"{b_pred.shape}.")
    if not all(np.issubdtype(v.dtype, np.integer) for v in (y_true, a, b_pred)):
        raise ValueError(f"McNemar needs integer class ids, got dtypes {y_true.dtype}, {a.dtype}, {b_pred.dtype}.")
    a_right, b_right = a == y_true, b_pred == y_true
    b = int(np.sum(a_right & ~b_right))
    c = int(np.sum(~a_right & b_right))
    p_value = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
    return {"a_only_right": b, "b_only_right": c, "p_value": float(p_value)}


def one_vs_rest_curves(y_true, y_score, kind: str = "roc") -> dict:
    """Per-class and micro-average ROC (fpr, tpr) or PR (precision, recall) curves, as scikit-learn returns them."""
    if kind not in ("roc", "pr"):
        raise ValueError(f"kind must be 'roc' or 'pr', got {kind!r}.")
    y_true, y_score = check_scores(y_true, y_score)
    y_bin = label_binarize(y_true, classes=np.arange(y_score.shape[1]))
    curve = skm.roc_curve if kind == "roc" else skm.precision_recall_curve
    curves = {k: curve(y_bin[:, k], y_score[:, k])[:2] for k in range(y_score.shape[1])}
    curves["micro"] = curve(y_bin.ravel(), y_score.ravel())[:2]
    return curves


def correctness_curves(y_true, y_score) -> dict:
    """The study's "total" curves: does the top score separate correct from wrong predictions?

    Each prediction is binarised into correct / incorrect and scored by its confidence
    (the top probability); returns ROC and PR curves with their areas.
    """
    y_true, y_score = check_scores(y_true, y_score)
    correct = (y_score.argmax(axis=1) == y_true).astype(int)
    confidence = y_score.max(axis=1)
    fpr, tpr, _ = skm.roc_curve(correct, confidence)
    precision, recall, _ = skm.precision_recall_curve(correct, confidence)
    return {"fpr": fpr, "tpr": tpr, "roc_auc": skm.roc_auc_score(correct, confidence),
            "precision": precision, "recall": recall,
            "average_precision": skm.average_precision_score(correct, confidence)}


def auc_against_each_class(y_true, y_score, class_id: int, class_names) -> pd.Series:
    """ROC-AUC of ``class_id``'s score for that class against each other class alone.

    One-vs-rest AUC averages over all negatives; this splits it by which class the
    negatives come from, showing that easy negatives (bags against shirts) inflate it.
    """
    y_true, y_score = check_scores(y_true, y_score)
    class_names = _check_names(class_names, y_score.shape[1])
    if not (y_true == class_id).any():
        raise ValueError(f"y_true holds no example of class {class_names[class_id]!r}.")
    aucs = {}
    for other, name in enumerate(class_names):
        if other == class_id:
            continue
        keep = (y_true == class_id) | (y_true == other)
        if not (y_true == other).any():
            continue  # no negatives of that class to rank against
        aucs[name] = skm.roc_auc_score(y_true[keep] == class_id, y_score[keep, class_id])
    return pd.Series(aucs, name=f"AUC of {class_names[class_id]} against").sort_values()


def thresholded_precision(y_true, y_score, threshold: float = 0.5) -> float:
    """Keras' ``Precision()`` metric on one-hot labels: micro precision of scores above ``threshold``.

    Only confident predictions count as positives, so it exceeds accuracy; this is the
    "precision" most Keras write-ups (the study's included) report.
    """
    y_true, y_score = check_scores(y_true, y_score)
    y_bin = label_binarize(y_true, classes=np.arange(y_score.shape[1]))
    return float(skm.precision_score(y_bin.ravel(), (y_score > threshold).ravel().astype(int),
                                     zero_division=0))


def top_confusions(y_true, y_score, class_names, k: int = 8) -> pd.DataFrame:
    """The ``k`` most frequent (true, predicted) mistakes with their share of the true class."""
    y_true, y_score = check_scores(y_true, y_score)
    class_names = _check_names(class_names, y_score.shape[1])
    cm = skm.confusion_matrix(y_true, y_score.argmax(axis=1), labels=np.arange(y_score.shape[1]))
    np.fill_diagonal(cm, 0)
    order = np.argsort(cm, axis=None)[::-1][:k]
    rows = [(class_names[i], class_names[j], int(cm[i, j]),
             cm[i, j] / max(1, np.sum(y_true == i))) for i, j in zip(*np.unravel_index(order, cm.shape))
            if cm[i, j] > 0]
    return pd.DataFrame(rows, columns=["true", "predicted", "count", "share_of_true_class"])


def paired_comparison(y_true, y_score_a, y_score_b, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Models A and B on the same examples: each accuracy with its 95% bootstrap interval, the
    difference B - A with an interval from the *same* resamples (paired), and McNemar's test."""
    y_true, y_score_a = check_scores(y_true, y_score_a)
    _, y_score_b = check_scores(y_true, y_score_b)
    pred_a, pred_b = y_score_a.argmax(1), y_score_b.argmax(1)
    right = np.stack([pred_a == y_true, pred_b == y_true]).astype(float)
    idx = np.random.default_rng(seed).integers(0, len(y_true), (n_boot, len(y_true)))
    boot = right[:, idx].mean(axis=2)  # (2, n_boot)
    low, high = np.quantile(boot, [0.025, 0.975], axis=1)
    diff_low, diff_high = np.quantile(boot[1] - boot[0], [0.025, 0.975])
    acc_a, acc_b = right.mean(axis=1)
    return {"accuracy A": acc_a, "A low": low[0], "A high": high[0],
            "accuracy B": acc_b, "B low": low[1], "B high": high[1],
            "B - A": acc_b - acc_a, "B - A low": diff_low, "B - A high": diff_high,
            **mcnemar_test(y_true, pred_a, pred_b)}
