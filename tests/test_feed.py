"""Feed tagging and the review queue (chapter 09): files in, tags out, broken files named and skipped."""

import io

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from helpers import feed


def _photos(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 80, 60, 3), dtype=np.uint8)


@pytest.fixture
def feed_folder(tmp_path):
    """Five photos (one in a sub-folder), a JPEG cut short, a text file and a hidden file."""
    photos = _photos()
    folder = feed.write_feed(photos[:4], [11, 12, 13, 14], tmp_path / "feed")
    feed.write_feed(photos[4:], [15], folder / "Shirts")
    jpeg = io.BytesIO()
    Image.fromarray(photos[0]).save(jpeg, format="JPEG")
    (folder / "60001.jpg").write_bytes(jpeg.getvalue()[:600])
    (folder / "notes.txt").write_text("not a photo")
    (folder / ".DS_Store").write_bytes(b"\0")
    return folder, photos


def test_list_feed_takes_every_visible_file_in_order(feed_folder):
    folder, _ = feed_folder
    names = [p.relative_to(folder).as_posix() for p in feed.list_feed(folder)]
    assert names == ["11.png", "12.png", "13.png", "14.png", "60001.jpg", "Shirts/15.png", "notes.txt"]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        feed.list_feed(folder / "missing")


def test_broken_files_are_flagged_named_and_the_rest_decoded_exactly(feed_folder):
    folder, photos = feed_folder
    files = feed.list_feed(folder)
    read = [feed.read_photo(str(p).encode()) for p in files]  # bytes, as tf.numpy_function passes them
    ok = np.array([flag for _, flag in read])
    assert ok.tolist() == [True, True, True, True, False, True, False]
    np.testing.assert_array_equal(np.stack([img for img, flag in read if flag]), photos)  # PNG is lossless
    assert not read[4][0].any() and read[4][0].shape == (80, 60, 3)
    assert "60001.jpg cannot be decoded" in feed.problem(files[4]) and "truncated" in feed.problem(files[4]).lower()
    assert "notes.txt cannot be decoded" in feed.problem(files[6]) and "BytesIO" not in feed.problem(files[6])
    assert feed.problem(files[0]) == ""


def test_the_chapters_pipeline_tags_past_broken_files(feed_folder):
    from tests.test_chapter_code import run_topic_cells

    folder, photos = feed_folder
    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 0, "precision": None},
                              definitions_only=True)
    files = [str(p) for p in feed.list_feed(folder)]
    batches = list(tf.data.Dataset.from_tensor_slices(files).map(chapter["read"]).batch(3))
    images = np.concatenate([b.numpy() for b, _ in batches])
    ok = np.concatenate([flags.numpy() for _, flags in batches])
    assert ok.sum() == 5 and images.dtype == np.float32
    np.testing.assert_array_equal(images[ok], photos.astype(np.float32))


def test_tag_table_columns_and_types():
    names = {"gender": ["Men", "Women"], "usage": ["Casual", "Formal", "Sports"]}
    scores = {"gender": np.array([[0.9, 0.1], [0.3, 0.7]]), "usage": np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])}
    table = feed.tag_table(["a/1.png", "b/2.png"], scores, names)
    assert list(table.columns) == ["file", "gender", "gender confidence", "usage", "usage confidence"]
    assert table["file"].tolist() == ["1.png", "2.png"]
    assert table["gender"].tolist() == ["Men", "Women"] and table["usage"].tolist() == ["Formal", "Sports"]
    assert table["usage confidence"].dtype == np.float32
    np.testing.assert_allclose(table["gender confidence"], [0.9, 0.7])
    with pytest.raises(ValueError, match="3 gender scores for 2 files"):
        feed.tag_table(["1.png", "2.png"], {"gender": np.ones((3, 2))}, names)


def test_review_threshold_and_curve_by_hand():
    confidence = np.array([0.9, 0.8, 0.7, 0.6])
    correct = np.array([True, True, False, True])
    curve = feed.review_curve(confidence, correct)
    np.testing.assert_allclose(curve["threshold"], [0.6, 0.7, 0.8, 0.9])
    np.testing.assert_allclose(curve["coverage"], [1.0, 0.75, 0.5, 0.25])
    np.testing.assert_allclose(curve["precision"], [0.75, 2 / 3, 1.0, 1.0])
    assert feed.review_threshold(confidence, correct, 0.99) == 0.8
    assert feed.review_threshold(confidence, correct, 0.7) == 0.6  # all four tags, 3 right, although 0.7 dips
    assert feed.review_threshold(confidence, correct, 0.8) == 0.8
    assert feed.review_threshold(np.array([0.9, 0.8]), np.array([False, True]), 0.99) == float("inf")
    assert feed.review_threshold(confidence, np.zeros(4, bool), 0.99) == float("inf")
    with pytest.raises(ValueError, match="equal 1-d shapes"):
        feed.review_curve(confidence, correct[:3])


def test_review_table_counts_what_a_person_checks():
    table = feed.review_table({"gender": 0.8, "usage": float("inf")},
                              {"gender": np.array([0.9, 0.8, 0.7, 0.6]), "usage": np.array([0.5, 0.4])},
                              {"gender": np.array([True, True, False, True]), "usage": np.array([True, False])})
    assert isinstance(table, pd.DataFrame)
    assert table.loc["gender", "tags accepted"] == 0.5 and table.loc["gender", "accepted tags right"] == 1.0
    assert table.loc["gender", "all tags right"] == 0.75 and table.loc["gender", "to check per 1,000"] == 500
    assert table.loc["usage", "tags accepted"] == 0 and np.isnan(table.loc["usage", "accepted tags right"])
