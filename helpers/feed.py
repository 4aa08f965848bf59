"""A day's new products (chapter 09): photo files in, seven tags with their confidence out, and the
review queue that decides which tags a person checks.

A feed is a folder of photos, flat or one sub-folder per class; every file in it that is not hidden
counts. A file that cannot be decoded (a truncated download, a text file) is reported by name and
skipped: the rest of the feed is still tagged.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import precision_recall_curve

from helpers.catalogue import IMAGE_SIZE, decode_image
from helpers.fashion_mnist import DataError
from helpers.paths import atomic_write_bytes


def write_feed(images, ids, folder) -> Path:
    """Write each photo as ``<folder>/<id>.png`` (lossless, so the pixels are the arrays' own), each file
    through a temporary name; return the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for image, image_id in zip(np.asarray(images), ids, strict=True):
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="PNG")
        atomic_write_bytes(folder / f"{image_id}.png", buffer.getvalue())
    return folder


def list_feed(folder) -> list[Path]:
    """Every file under ``folder`` (sub-folders included), hidden files and folders left out, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder: pass the folder that holds the feed's photos.")
    return sorted(p for p in folder.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_photo(path) -> tuple[np.ndarray, bool]:
    """The photo at ``path`` as uint8 (80, 60, 3) and True; black and False when it cannot be decoded.

    ``path`` may be bytes (as ``tf.numpy_function`` passes strings)."""
    path = Path(path.decode() if isinstance(path, bytes) else path)
    try:
        return decode_image(path.read_bytes(), str(path)), True
    except (DataError, OSError):
        return np.zeros((*IMAGE_SIZE, 3), np.uint8), False


def problem(path) -> str:
    """Why ``read_photo`` could not use ``path`` (the decoder's message), or "" when it can."""
    try:
        decode_image(Path(path).read_bytes(), str(path))
    except (DataError, OSError) as err:
        return str(err)
    return ""


def tag_table(files, y_score: dict, names: dict) -> pd.DataFrame:
    """One row per tagged file: its name, then per head the most probable class and its probability."""
    table = pd.DataFrame({"file": [Path(f).name for f in files]})
    for head, scores in y_score.items():
        scores = np.asarray(scores)
        if len(scores) != len(table):
            raise ValueError(f"{len(scores)} {head} scores for {len(table)} files.")
        table[head] = np.asarray(names[head], dtype=object)[scores.argmax(axis=1)]
        table[f"{head} confidence"] = scores.max(axis=1).astype(np.float32)
    return table


def review_curve(confidence, correct) -> pd.DataFrame:
    """Accept a tag when its confidence reaches a threshold, send the rest to a person: for each threshold,
    the share of tags accepted (``coverage``) and the share of accepted tags that are right (``precision``),
    from scikit-learn's precision-recall curve (a right tag is a positive, its confidence the score)."""
    confidence, correct = np.asarray(confidence, float), np.asarray(correct, bool)
    if confidence.shape != correct.shape or confidence.ndim != 1:
        raise ValueError(f"confidence {confidence.shape} and correct {correct.shape} must be equal 1-d shapes.")
    precision, _, thresholds = precision_recall_curve(correct, confidence)
    ranked = np.sort(confidence)
    coverage = 1 - np.searchsorted(ranked, thresholds, side="left") / len(ranked)
    return pd.DataFrame({"threshold": thresholds, "coverage": coverage, "precision": precision[:-1]})


def review_threshold(confidence, correct, required: float = 0.99) -> float:
    """The lowest confidence threshold whose accepted tags (confidence at or above it) are at least
    ``required`` right, i.e. the most tags accepted at that precision; inf when no threshold reaches it
    (everything goes to a person)."""
    if not np.any(correct):
        return float("inf")
    curve = review_curve(confidence, correct)
    reaching = np.flatnonzero(curve["precision"].to_numpy() >= required)
    return float(curve["threshold"].iloc[reaching[0]]) if len(reaching) else float("inf")


def review_table(thresholds: dict, confidence: dict, correct: dict) -> pd.DataFrame:
    """Per head, on the feed: the threshold (chosen elsewhere), the share of tags accepted, how right they
    are, and how many tags per 1,000 products a person must check."""
    rows = {}
    for head, threshold in thresholds.items():
        accepted = np.asarray(confidence[head]) >= threshold
        right = np.asarray(correct[head], bool)
        rows[head] = {"threshold": threshold, "tags accepted": accepted.mean(),
                      "accepted tags right": right[accepted].mean() if accepted.any() else np.nan,
                      "all tags right": right.mean(),
                      "to check per 1,000": 1000 * (1 - accepted.mean())}
    return pd.DataFrame(rows).T
