"""Figures from computed results: each draws on ``ax`` (or a new figure) and returns the figure.

Saving is the caller's choice: ``save_fig(fig, "02", "confusion")`` writes
``figures/02_confusion.png`` (``build/quick/figures/`` in quick mode).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import seaborn as sns
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from helpers import metrics
from helpers.paths import figures_dir, replacing

# Okabe & Ito's colour-blind-safe palette (https://jfly.uni-koeln.de/color/), black first
OKABE_ITO = ("#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7")
LINE_COLOURS = ("#E69F00", "#0072B2", "#009E73", "#D55E00", "#56B4E9", "#CC79A7")  # no yellow on white


def _axes(ax, figsize=(6, 4.5)):
    if ax is None:
        fig, ax = plt.subplots(figsize=figsize, layout="constrained")
    return ax.figure, ax


def save_fig(fig, notebook: str, name: str, mode: str | None = None, dpi: int = 110) -> Path:
    """Write ``<figures>/<notebook>_<name>.png`` through a temporary file; return the path."""
    path = figures_dir(mode) / f"{notebook}_{name}.png"
    with replacing(path, suffix=".png") as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    return path


def _show_image(ax, image) -> None:
    """A photo as it is; a grey-scale image on a fixed 0-255 scale, bright pixels bright."""
    image = np.squeeze(image)
    if image.ndim == 2:
        ax.imshow(image, cmap="gray", vmin=0, vmax=255)
    else:
        ax.imshow(image)
    ax.axis("off")


def plot_image_pairs(images, ids, title: str = "Photos of different duplicate groups with the same perceptual hash"):
    """Consecutive images as pairs, one pair a column, each titled with its id."""
    pairs = len(images) // 2
    fig, axes = plt.subplots(2, max(pairs, 1), figsize=(max(pairs, 1) * 1.2, 3.0), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for k in range(2 * pairs):
        ax = axes[k % 2, k // 2]
        _show_image(ax, images[k])
        ax.set_title(str(ids[k]), fontsize=8)
    fig.suptitle(title, fontsize=9)
    return fig


def plot_sample_grid(images, labels, class_names, per_class: int = 8, seed: int = 0):
    """``per_class`` random images of each class, one row a class (one row in all when per_class=1)."""
    rng = np.random.default_rng(seed)
    labels = np.asarray(labels)
    classes = np.unique(labels)
    if per_class == 1:  # one image per class: a single row, titled above each image
        fig, axes = plt.subplots(1, len(classes), figsize=(len(classes) * 1.1, 1.5), squeeze=False,
                                 layout="constrained")
        for ax, k in zip(axes[0], classes):
            _show_image(ax, images[np.flatnonzero(labels == k)[0]])
            ax.set_title(str(class_names[k]), fontsize=8)
        return fig
    fig, axes = plt.subplots(len(classes), per_class, figsize=(per_class * 0.9, len(classes) * 1.0),
                             squeeze=False, layout="constrained")
    for row, k in zip(axes, classes):
        idx = np.flatnonzero(labels == k)
        chosen = rng.choice(idx, size=min(per_class, len(idx)), replace=False)
        for ax in row:
            ax.axis("off")
        for ax, i in zip(row, chosen):
            _show_image(ax, images[i])
        row[0].set_title(str(class_names[k]), fontsize=8, loc="left")
    return fig


def plot_class_balance(counts, title: str = "", ax=None, log: bool = False):
    """Horizontal bars of a ``pd.Series`` of counts indexed by class name."""
    fig, ax = _axes(ax, figsize=(6, max(2.5, 0.28 * len(counts))))
    sns.barplot(x=counts.values, y=[str(i) for i in counts.index], ax=ax, color="tab:blue")
    ax.bar_label(ax.containers[0], fmt="{:,.0f}" if log else "{:,.3g}", fontsize=7, padding=2)
    ax.set(xlabel="images (log scale)" if log else "", title=title, xscale="log" if log else "linear")
    if log:
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    return fig


def plot_training_curves(history: dict, title: str = ""):
    """Loss and accuracy per epoch for training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    for ax, key in zip(axes, ("loss", "accuracy")):
        ax.plot(epochs, history[key], marker="o", label="training")
        ax.plot(epochs, history[f"val_{key}"], marker="o", label="validation")
        ax.set(xlabel="epoch", ylabel=key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
    fig.suptitle(title)
    return fig


def plot_confusion_matrix(cm, class_names, normalize: bool = False, ax=None, title: str = "",
                          annotate: bool = True):
    """A confusion matrix ``cm`` (rows true, columns predicted), counts or row-normalised. The colours run up to
    the largest mistake (off the diagonal), so the mistakes show; the diagonal saturates, its numbers printed."""
    cm = np.asarray(cm, dtype=float)
    if normalize:
        cm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
    mistakes = cm[~np.eye(len(cm), dtype=bool)]
    vmax = mistakes.max() if mistakes.size and mistakes.max() > 0 else None
    size = max(5, 0.5 * len(class_names))
    fig, ax = _axes(ax, figsize=(size + 1, size))
    sns.heatmap(cm, annot=annotate, fmt=".2f" if normalize else ".0f", cmap="Blues", ax=ax, vmin=0, vmax=vmax,
                xticklabels=class_names, yticklabels=class_names, cbar=False,
                annot_kws={"fontsize": 7})
    ax.set(xlabel="predicted", ylabel="true", title=title)
    plt.setp(ax.get_xticklabels(), rotation=60, ha="right", rotation_mode="anchor")  # each label ends under its column
    ax.tick_params(axis="y", labelrotation=0)  # class names read across, however few rows
    return fig


def _plot_curve(ax, xy, kind, **style):
    x, y = xy  # (fpr, tpr) for ROC; (precision, recall) from precision_recall_curve for PR
    ax.plot(*((x, y) if kind == "roc" else (y, x)), **style)


def _label_curve_axes(ax, kind):
    if kind == "roc":
        ax.set(xlabel="false positive rate (log)", ylabel="true positive rate", xscale="log",
               xlim=(1e-4, 1))
    else:
        ax.set(xlabel="recall", ylabel="precision", ylim=(0, 1.02))


def plot_curves(curves: dict, class_names, kind: str = "roc", ax=None, title: str = ""):
    """Per-class and micro-average curves from ``metrics.one_vs_rest_curves``: colour-blind-safe colours with a
    line style per group of six classes, so no two classes share both."""
    fig, ax = _axes(ax)
    for k, name in enumerate(class_names):
        style = ("-", "--", ":")[k // len(LINE_COLOURS) % 3]
        _plot_curve(ax, curves[k], kind, color=LINE_COLOURS[k % len(LINE_COLOURS)], lw=1.2, ls=style, label=name)
    _plot_curve(ax, curves["micro"], kind, color="black", lw=2.2, label="micro-average")
    _label_curve_axes(ax, kind)
    ax.set_title(title)
    ax.legend(fontsize=7, loc="lower right" if kind == "roc" else "lower left")
    return fig


def plot_correctness_curves(results: dict, ax_roc=None, ax_pr=None):
    """The study's "total" curves for several models: ``{name: metrics.correctness_curves(...)}``."""
    if ax_roc is None or ax_pr is None:
        fig, (ax_roc, ax_pr) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    fig = ax_roc.figure
    for name, res in results.items():
        ax_roc.plot(res["fpr"], res["tpr"], label=f"{name} (AUC {res['roc_auc']:.3f})")
        ax_pr.plot(res["recall"], res["precision"], label=f"{name} (AP {res['average_precision']:.3f})")
    ax_roc.plot([0, 1], [0, 1], color="grey", ls=":")
    ax_roc.set(xlabel="false positive rate", ylabel="true positive rate",
               title="Is the top score higher for correct predictions?")
    ax_pr.set(xlabel="recall", ylabel="precision (share correct)", title="Correct vs incorrect, PR")
    for ax in (ax_roc, ax_pr):
        ax.legend(fontsize=8)
    return fig


def plot_reliability(tables: dict, title: str = "Reliability diagram", min_count: int = 20):
    """Reliability diagram from ``{name: metrics.reliability_table(...)}``: accuracy against mean confidence
    per bin above (bins of fewer than ``min_count`` images left out: they say little), and below, on the same
    bins, how many images each bin holds. Colour-blind-safe colours, with a line style per model as well."""
    n_bins = metrics.CALIBRATION_BINS
    fig, (ax, below) = plt.subplots(2, 1, figsize=(5.5, 6.5), sharex=True, height_ratios=(3, 1.2),
                                    layout="constrained")
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls=":", label="perfect calibration")
    width = 1 / n_bins / (len(tables) + 1)
    for i, (name, table) in enumerate(tables.items()):
        colour, style = LINE_COLOURS[i % len(LINE_COLOURS)], ("-", "--", "-.", ":")[i % 4]
        shown = table[table["count"] >= min_count]
        ax.plot(shown["confidence"], shown["accuracy"], marker="o", ms=4, color=colour, ls=style, label=name)
        below.bar(table.index.to_numpy() / n_bins + (i + 0.5) * width, table["count"], width=width,
                  color=colour, align="edge")
    ax.set(ylabel="accuracy", xlim=(0, 1), ylim=(0, 1), title=title)
    ax.legend(fontsize=8, loc="upper left")
    most = max(int(table["count"].max()) for table in tables.values())
    below.set(yscale="log", ylim=(0.7, most * 1.5), xlabel="confidence of the top class", ylabel="images per bin")
    below.set_xticks(np.linspace(0, 1, 6))
    return fig


def plot_filters(kernels, title: str = ""):
    """Convolution filters (n, h, w) side by side on one colour scale centred on zero (red positive,
    blue negative), with its colour bar: a filter responds most to an input patch that looks like it."""
    kernels = np.asarray(kernels)
    limit = float(np.abs(kernels).max())
    fig, axes = plt.subplots(1, len(kernels), figsize=(len(kernels) * 1.1 + 0.8, 1.7), layout="constrained")
    for k, (ax, kernel) in enumerate(zip(np.atleast_1d(axes), kernels)):
        image = ax.imshow(kernel, cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_title(f"filter {k}", fontsize=8)
        ax.set_xticks([]), ax.set_yticks([])
    fig.colorbar(image, ax=axes, shrink=0.8, label="weight")
    if title:
        fig.suptitle(title, fontsize=9)
    return fig


def plot_misclassified(images, y_true, y_score, class_names, n: int = 12, seed: int = 0):
    """A random sample of wrong predictions, each titled "true -> predicted (confidence)"."""
    y_pred = np.asarray(y_score).argmax(axis=1)
    wrong = np.flatnonzero(y_pred != y_true)
    chosen = np.random.default_rng(seed).choice(wrong, size=min(n, len(wrong)), replace=False)
    cols = 6
    rows = max(1, int(np.ceil(len(chosen) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.6, rows * 1.9), squeeze=False,
                             layout="constrained")
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), chosen):
        _show_image(ax, images[i])
        ax.set_title(f"{class_names[y_true[i]]}\n→ {class_names[y_pred[i]]} "
                     f"({y_score[i, y_pred[i]]:.2f})", fontsize=8)
    fig.suptitle("true class → predicted class (predicted probability)", fontsize=9)
    return fig


def plot_metric_intervals(table, metric: str = "accuracy", ax=None):
    """Point estimates with their 95% intervals (columns ``metric``, ``metric_ci_low/high``)."""
    fig, ax = _axes(ax, figsize=(6, 0.6 * len(table) + 1.2))
    y = np.arange(len(table))
    low = table[metric] - table[f"{metric}_ci_low"]
    high = table[f"{metric}_ci_high"] - table[metric]
    ax.errorbar(table[metric], y, xerr=[low, high], fmt="o", capsize=4)
    ax.set_yticks(y, table.index)
    ax.set(xlabel=f"{metric} (95% bootstrap interval)", title=f"Test {metric} by model")
    return fig


def plot_model_curves(curves: dict, kind: str = "roc", ax=None, title: str = ""):
    """Micro-average curves of several models: ``{name: metrics.one_vs_rest_curves(...)}``."""
    fig, ax = _axes(ax)
    for name, per_model in curves.items():
        _plot_curve(ax, per_model["micro"], kind, label=name)
    _label_curve_axes(ax, kind)
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def plot_head_curves(history: dict, heads, title: str = ""):
    """Multi-output training: total loss (with the contrastive term, when the history has one) and
    validation accuracy of every head, per epoch."""
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    epochs = np.arange(1, len(history["loss"]) + 1)
    ax_loss.plot(epochs, history["loss"], marker="o", label="training (class-weighted)")
    ax_loss.plot(epochs, history["val_loss"], marker="o", label="validation")
    summed = "heads + contrastive term" if "contrast_loss" in history else "summed over heads"
    ax_loss.set(xlabel="epoch", ylabel=f"loss, {summed}")
    ax_loss.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_loss.legend(fontsize=8)
    for head in heads:
        ax_acc.plot(epochs, history[f"val_{head}_accuracy"], marker="o", label=head)
    ax_acc.set(xlabel="epoch", ylabel="validation accuracy")
    ax_acc.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax_acc.legend(fontsize=7, ncols=2)
    fig.suptitle(title)
    return fig


def plot_attribute_comparison(table, columns, ax=None, title: str = "", interval=None):
    """Grouped horizontal bars: one group per attribute (the index), one bar per column, colour-blind-safe
    colours; ``interval`` (a frame of low and high per attribute) draws an error bar on the first column."""
    columns = list(columns)
    long = table[columns].rename_axis("attribute").reset_index().melt(
        id_vars="attribute", var_name="model", value_name="value")
    fig, ax = _axes(ax, figsize=(7, 0.22 * len(table) * len(columns) + 1.2))
    palette = list(LINE_COLOURS[1:] + LINE_COLOURS[:1])[:len(columns)]  # the first column in blue
    sns.barplot(long, x="value", y="attribute", hue="model", ax=ax, palette=palette)
    for bars in ax.containers:
        ax.bar_label(bars, fmt="%.3f", fontsize=6, padding=2 if interval is None else 12)
    if interval is not None:
        low, high = (np.asarray(interval.loc[table.index, side], float) for side in ("low", "high"))
        value = table[columns[0]].to_numpy(float)
        centres = [bar.get_y() + bar.get_height() / 2 for bar in ax.containers[0]]
        ax.errorbar(value, centres, xerr=[value - low, high - value], fmt="none", ecolor="black", elinewidth=1,
                    capsize=2, label="95% interval")
    ax.set(xlim=(0.5, 1.06), title=title, xlabel="accuracy (the axis starts at 0.5)", ylabel="")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1), frameon=False)
    return fig


def plot_augmented(images, augment, versions: int = 5, titles=None):
    """Each image (a row) as it is, then ``versions`` random passes through the ``augment`` layers."""
    images = np.asarray(images, dtype="float32")
    fig, axes = plt.subplots(len(images), versions + 1, figsize=(1.2 * (versions + 1), 1.5 * len(images)),
                             squeeze=False, layout="constrained")
    passes = [images]
    for _ in range(versions):
        batch = images
        for layer in augment:
            batch = layer(batch, training=True)
        passes.append(np.asarray(batch))
    for col, batch in enumerate(passes):
        for row, image in enumerate(batch):
            _show_image(axes[row, col], np.clip(image, 0, 255).astype("uint8"))
        axes[0, col].set_title("original" if col == 0 else f"random {col}", fontsize=8)
    for row, title in enumerate(titles or []):
        axes[row, 0].text(-0.1, 0.5, title, transform=axes[row, 0].transAxes, ha="right", va="center",
                          fontsize=8)
    return fig


def plot_seed_spread(runs, intervals, title: str = ""):
    """Each training run's test accuracy as a dot, one row per recipe (``runs``: a frame of recipe and
    accuracy), and per recipe the 95% test-set interval of its median run (``intervals``: low, median, high)."""
    recipes = list(dict.fromkeys(runs["recipe"]))
    fig, ax = _axes(None, figsize=(6.5, 0.7 * len(recipes) + 1.3))
    for row, recipe in enumerate(recipes):
        colour = LINE_COLOURS[row % len(LINE_COLOURS)]
        low, median, high = intervals.loc[recipe, ["low", "median", "high"]]
        ax.errorbar([median], [row + 0.18], xerr=[[median - low], [high - median]], fmt="|", color=colour, capsize=4,
                    label="test-set 95% interval of the median run" if row == 0 else None)
        ax.plot(runs.loc[runs["recipe"] == recipe, "accuracy"], [row] * (runs["recipe"] == recipe).sum(), "o",
                color=colour, ms=6, alpha=0.8, label="one seed" if row == 0 else None)
    ax.set(yticks=range(len(recipes)), yticklabels=recipes, ylim=(len(recipes) - 0.5, -0.6), xlabel="test accuracy",
           title=title)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=2, frameon=False)
    return fig


def plot_differences(table, title: str = "", ax=None, xlabel: str = "accuracy difference, B - A"):
    """Paired differences ``B - A`` with their 95% intervals (``metrics.paired_comparison`` rows)."""
    fig, ax = _axes(ax, figsize=(6, 0.45 * len(table) + 1.4))
    y = np.arange(len(table))
    err = [table["B - A"] - table["B - A low"], table["B - A high"] - table["B - A"]]
    ax.errorbar(table["B - A"], y, xerr=err, fmt="o", capsize=4)
    ax.axvline(0, color="grey", lw=1, ls="--")
    ax.set_yticks(y, table.index)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, title=title)
    return fig


def plot_gallery(images, queries, neighbours, captions, relevant=None, title: str = ""):
    """One row per query: the query photo, then its neighbours in order. ``captions`` holds one
    string per item; ``relevant`` (queries, k) marks neighbour captions "✓" in green (same) or "✗" in
    red, so the cue does not rely on colour alone."""
    k = neighbours.shape[1]
    fig, axes = plt.subplots(len(queries), k + 1, figsize=(1.2 * (k + 1), 1.9 * len(queries)),
                             squeeze=False, layout="constrained")
    for row, (query, found) in enumerate(zip(queries, neighbours)):
        for col, item in enumerate([query, *found]):
            ax = axes[row, col]
            ax.imshow(images[item])
            ax.set_xticks([])
            ax.set_yticks([])
            name, _, detail = str(captions[item]).partition(", ")  # e.g. article type, colour: one line each
            caption = "\n".join(textwrap.wrap(name, 15, break_long_words=False) + ([detail] if detail else []))
            colour = "black"
            if col > 0 and relevant is not None:
                same = bool(relevant[row, col - 1])
                colour, caption = ("green", "✓ " + caption) if same else ("red", "✗ " + caption)
            ax.set_title(caption, fontsize=6.5, color=colour)
            if col == 0:
                ax.set_ylabel("query", fontsize=8)
                for spine in ax.spines.values():
                    spine.set(edgecolor="black", linewidth=2)
            else:
                ax.axis("off")
    fig.suptitle(title)
    return fig


def plot_precision_curves(curves: dict, ax=None, title: str = ""):
    """Precision@i against i for several methods (``{name: retrieval.precision_curve(...)}``)."""
    fig, ax = _axes(ax, figsize=(6, 4))
    for name, curve in curves.items():
        ax.plot(np.arange(1, len(curve) + 1), curve, marker="o", label=name)
    ax.set(xlabel="k (items shown)", ylabel="precision@k", ylim=(0, 1), title=title)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=2)  # below: no curve hidden
    return fig


def plot_review_curves(curves: dict, chosen: dict, required: float, ax=None, title: str = ""):
    """Share of tags right among those accepted against the share accepted, one line per attribute
    (``{head: feed.review_curve(...)}``), with each attribute's chosen threshold marked
    (``{head: (coverage, precision)}``) and the required precision dotted. Colour-blind-safe colours, with a
    line style per group of six attributes, so no two share both."""
    fig, ax = _axes(ax, figsize=(7, 4.5))
    for k, (head, curve) in enumerate(curves.items()):
        colour, style = LINE_COLOURS[k % len(LINE_COLOURS)], ("-", "--", "-.")[k // len(LINE_COLOURS) % 3]
        ax.plot(curve["coverage"], curve["precision"], color=colour, ls=style, lw=1.4, label=head)
        if head in chosen:
            ax.plot(*chosen[head], marker="o", color=colour)
    ax.axhline(required, ls=":", color="grey", lw=1)
    ax.set(xlabel="share of tags accepted without a person", ylabel="share of accepted tags that are right",
           xlim=(0, 1), ylim=(min(0.8, ax.get_ylim()[0]), 1.002), title=title)
    ax.legend(fontsize=8, loc="lower left")
    return fig


def plot_recall_latency(table, k: int = 10, title: str = ""):
    """Recall@k against median single-query latency (log scale), one panel per number of vectors and one
    line per index type through its best settings (each point: a higher recall than any faster setting).
    Colours from a colour-blind-safe palette, one per index family; re-ranked indexes dashed."""
    sizes = sorted(table["vectors"].unique())
    fig, axes = plt.subplots(1, len(sizes), figsize=(4.2 * len(sizes), 4.2), sharey=True, squeeze=False)
    families = list(dict.fromkeys(name.removesuffix(" + re-rank") for name in table["index"]))
    colour, marker = dict(zip(families, OKABE_ITO * 2)), dict(zip(families, "osD^vPX*" * 2))
    lines = {}
    for ax, size in zip(axes[0], sizes):
        for name, rows in table[table["vectors"] == size].groupby("index", sort=False):
            rows = rows.sort_values("single ms (median)")
            recall = rows[f"recall@{k}"]
            best = rows[recall > recall.cummax().shift(fill_value=-1.0)]  # better than every faster setting
            family = name.removesuffix(" + re-rank")
            (lines[name],) = ax.plot(best["single ms (median)"], best[f"recall@{k}"], marker=marker[family], ms=4,
                                     color=colour[family], ls="--" if name != family else "-", label=name)
        ax.axhline(0.95, ls=":", color="grey", lw=1)
        ax.set(xscale="log", xlabel="single query, median ms", title=f"{size:,} vectors")
        ax.xaxis.set_minor_formatter(NullFormatter())
    axes[0][0].set(ylabel=f"recall@{k} against exact search")
    fig.suptitle(title)
    fig.legend(lines.values(), lines.keys(), loc="lower center", ncol=min(len(lines), 4), fontsize=8,
               bbox_to_anchor=(0.5, -0.02), frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.035 * ((len(lines) - 1) // 4), 1, 1))
    return fig
