"""Feed tagging and the review queue (chapter 09): files in, tags out, every file tagged or named and skipped."""

import json
import os
import time

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf
from PIL import Image

from helpers import feed
from helpers.fashion_mnist import DataError
from tests.test_photos import TOP_GREEN_BOTTOM_RED, encode, grey_png, phone_jpeg, png_with_damaged_chunk

NON_UTF8 = os.fsdecode(b"caf\xe9.png")  # a Latin-1 name from an old camera or a Windows share


def _photos(n=5, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n, 80, 60, 3), dtype=np.uint8)


def _truncated_jpeg(photo) -> bytes:
    return encode(Image.fromarray(photo), "JPEG")[:600]


@pytest.fixture
def feed_folder(tmp_path):
    """Four photos, a JPEG cut short, a text file and a hidden file, plus a sub-folder with one photo."""
    photos = _photos()
    folder = feed.write_feed(photos[:4], [11, 12, 13, 14], tmp_path / "feed",
                             extra={"60001.jpg": _truncated_jpeg(photos[0]), "notes.txt": b"not a photo",
                                    ".DS_Store": b"\0"})
    (folder / "Shirts").mkdir()
    Image.fromarray(photos[4]).save(folder / "Shirts" / "15.png")
    return folder, photos


@pytest.fixture
def odd_feed(tmp_path):
    """What a shop really sends: good photos in odd forms and files that are no photo at all."""
    photos = _photos(3)
    cutout = np.zeros((80, 60, 4), np.uint8)
    cutout[20:60, 15:45] = (255, 0, 0, 255)
    extra = {NON_UTF8: encode(Image.fromarray(photos[2])), "cutout.png": encode(Image.fromarray(cutout)),
             "phone.jpg": phone_jpeg(6), "bomb.png": grey_png(20000, 20000, whole=False),
             "damaged.png": png_with_damaged_chunk(), "notes.ppm": b"P6\n60 8[\n255\n" + b"\0" * 100,
             "60001.jpg": _truncated_jpeg(photos[0])}
    return feed.write_feed(photos[:2], [1, 2], tmp_path / "feed", extra=extra), photos


def test_list_feed_takes_every_visible_file_in_order_and_names_what_it_leaves_out(feed_folder):
    folder, _ = feed_folder
    listing = feed.list_feed(folder)
    assert [listing.name(p) for p in listing.files] == ["11.png", "12.png", "13.png", "14.png", "60001.jpg",
                                                        "Shirts/15.png", "notes.txt"]
    assert [(s.name, s.reason) for s in listing.skipped] == [(".DS_Store", "a hidden file")]
    with pytest.raises(FileNotFoundError, match="not a folder"):
        feed.list_feed(folder / "missing")


def test_broken_files_are_flagged_named_and_the_rest_decoded_exactly(feed_folder):
    folder, photos = feed_folder
    listing = feed.list_feed(folder)
    read = [feed.read_photo(p) for p in listing.tensor_paths()]  # bytes, as tf.numpy_function passes them
    ok = np.array([flag for _, flag in read])
    assert ok.tolist() == [True, True, True, True, False, True, False]
    np.testing.assert_array_equal(np.stack([img for img, flag in read if flag]), photos)  # PNG is lossless
    assert not read[4][0].any() and read[4][0].shape == (80, 60, 3)
    problems = {s.name: s.reason for s in listing.undecodable(ok)}
    assert list(problems) == ["60001.jpg", "notes.txt"]
    assert problems["60001.jpg"].startswith("60001.jpg cannot be decoded (Truncated File Read)")
    assert "BytesIO" not in problems["notes.txt"] and str(folder) not in problems["notes.txt"]
    assert feed.problem(listing.files[0]) == ""


def test_the_chapters_pipeline_tags_past_broken_files(feed_folder):
    from tests.test_chapter_code import run_topic_cells

    folder, photos = feed_folder
    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 0, "precision": None},
                              definitions_only=True)
    files = feed.list_feed(folder).tensor_paths()
    batches = list(tf.data.Dataset.from_tensor_slices(files).map(chapter["read"]).batch(3))
    images = np.concatenate([b.numpy() for b, _ in batches])
    ok = np.concatenate([flags.numpy() for _, flags in batches])
    assert ok.sum() == 5 and images.dtype == np.float32
    np.testing.assert_array_equal(images[ok], photos.astype(np.float32))


def test_a_feed_of_odd_files_is_tagged_through_tf_data_with_every_bad_file_named(odd_feed):
    """A name that is not UTF-8, a decompression bomb, a damaged PNG chunk, a text file starting "P6", a JPEG
    cut short, a transparent cut-out and a sideways phone photo: the good ones are tagged as a person sees
    them, the bad ones flagged and named, and the feed goes on."""
    from tests.test_chapter_code import run_topic_cells

    folder, photos = odd_feed
    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 0, "precision": None},
                              definitions_only=True)
    listing = feed.list_feed(folder)
    with pytest.raises(ValueError, match="converting unicode string"):  # why tensor_paths gives bytes
        tf.data.Dataset.from_tensor_slices([str(f) for f in listing.files])
    dataset = tf.data.Dataset.from_tensor_slices(listing.tensor_paths()).map(chapter["read"],
                                                                             num_parallel_calls=tf.data.AUTOTUNE)
    images, ok = (np.stack(part) for part in zip(*[(i.numpy(), k.numpy()) for i, k in dataset], strict=True))
    tagged = dict(zip([listing.name(f) for f in listing.files], ok.tolist(), strict=True))
    assert tagged == {"1.png": True, "2.png": True, "60001.jpg": False, "bomb.png": False, "caf\\xe9.png": True,
                      "cutout.png": True, "damaged.png": False, "notes.ppm": False, "phone.jpg": True}
    shown = {listing.name(f): image for f, image in zip(listing.files, images, strict=True)}
    np.testing.assert_array_equal(shown["caf\\xe9.png"], photos[2])
    np.testing.assert_array_equal(shown["cutout.png"][5, 5], (255, 255, 255))  # transparent: white
    np.testing.assert_allclose(shown["phone.jpg"][[5, 75], 30], TOP_GREEN_BOTTOM_RED[[5, 75], 30], atol=12)
    reasons = {s.name: s.reason for s in listing.undecodable(ok)}
    assert "400,000,000 pixels" in reasons["bomb.png"] and "broken PNG file" in reasons["damaged.png"]
    assert "notes.ppm cannot be decoded" in reasons["notes.ppm"] and "truncated" in reasons["60001.jpg"].lower()


def test_symlinks_that_lead_nowhere_or_to_folders_are_named_and_linked_files_tagged(tmp_path):
    folder = feed.write_feed(_photos(1), [1], tmp_path / "feed")
    outside = tmp_path / "outside"
    outside.mkdir()
    Image.fromarray(_photos(1)[0]).save(outside / "from_outside.png")
    os.symlink(folder / "loop_b.jpg", folder / "loop_a.jpg")
    os.symlink(folder / "loop_a.jpg", folder / "loop_b.jpg")
    os.symlink(folder / "nowhere.jpg", folder / "dangling.jpg")
    os.symlink(outside, folder / "linked_dir")
    os.symlink(outside / "from_outside.png", folder / "linked.png")
    os.mkfifo(folder / "pipe.jpg")
    listing = feed.list_feed(folder)
    assert [listing.name(p) for p in listing.files] == ["1.png", "linked.png"]
    reasons = {s.name: s.reason for s in listing.skipped}
    assert sorted(reasons) == ["dangling.jpg", "linked_dir", "loop_a.jpg", "loop_b.jpg", "pipe.jpg"]
    assert reasons["loop_a.jpg"].startswith("a symlink loop") and "does not exist" not in reasons["loop_a.jpg"]
    assert "nowhere.jpg, which cannot be reached" in reasons["dangling.jpg"]
    assert "folders are not followed" in reasons["linked_dir"] and "not a regular file" in reasons["pipe.jpg"]


def test_unfinished_part_files_are_never_read_as_photos(tmp_path):
    folder = feed.write_feed(_photos(2), [59263, 7990], tmp_path / "feed")
    (folder / "59263.png.part").write_bytes((folder / "59263.png").read_bytes()[:100])  # an earlier writer's
    (folder / ".59263.png.k2j4.part").write_bytes(b"")  # helpers.paths.replacing's, interrupted
    listing = feed.list_feed(folder)
    assert [listing.name(p) for p in listing.files] == ["59263.png", "7990.png"]
    assert {s.name: s.reason.split(" (")[0] for s in listing.skipped} == {
        ".59263.png.k2j4.part": "a hidden unfinished file", "59263.png.part": "an unfinished download or copy"}


def test_an_empty_feed_says_so(tmp_path):
    (tmp_path / "feed").mkdir()
    (tmp_path / "feed" / ".DS_Store").write_bytes(b"\0")
    with pytest.raises(DataError, match=r"feed holds no file to tag; .DS_Store: a hidden file. Put the day's photos"):
        feed.list_feed(tmp_path / "feed")


def test_reading_a_huge_file_that_is_no_photo_costs_only_its_header(tmp_path):
    path = tmp_path / "product_video.jpg"
    with open(path, "wb") as handle:
        handle.truncate(1500 * 2**20)  # sparse: 1.5 GB to read, nothing on disk
    start = time.perf_counter()
    assert feed.read_photo(os.fsencode(path))[1] is False
    assert "not an image format Pillow reads" in feed.problem(path)
    assert time.perf_counter() - start < 1.0  # reading it whole took 5 s and 1.7 GB


def test_read_photo_takes_names_that_are_not_utf8_as_bytes_or_text(tmp_path):
    folder = feed.write_feed(_photos(1), [1], tmp_path / "feed", extra={NON_UTF8: encode(Image.new("RGB", (6, 8)))})
    raw = os.fsencode(folder) + b"/caf\xe9.png"
    assert feed.read_photo(raw)[1] and feed.read_photo(os.fsdecode(raw))[1] and feed.problem(raw) == ""
    assert feed.read_photo(os.fsencode(folder) + b"/gone\xff.png")[1] is False
    assert "gone\\xff.png cannot be read" in feed.problem(os.fsencode(folder) + b"/gone\xff.png")
    assert feed.read_photo(b"nul\0.png")[1] is False and "embedded null byte" in feed.problem(b"nul\0.png")


def test_tag_table_keeps_the_path_inside_the_feed_so_sub_folders_differ():
    names = {"gender": ["Men", "Women"], "usage": ["Casual", "Formal", "Sports"]}
    scores = {"gender": np.array([[0.9, 0.1], [0.3, 0.7]]), "usage": np.array([[0.2, 0.5, 0.3], [0.1, 0.1, 0.8]])}
    table = feed.tag_table(["feed/Shirts/1.png", "feed/Shoes/1.png"], scores, names)
    assert list(table.columns) == ["file", "gender", "gender confidence", "usage", "usage confidence"]
    assert table["file"].tolist() == ["Shirts/1.png", "Shoes/1.png"]
    assert feed.tag_table(["feed/Shirts/1.png", "feed/Shoes/1.png"], scores, names, folder="feed")["file"].tolist() \
        == ["Shirts/1.png", "Shoes/1.png"]
    assert table["gender"].tolist() == ["Men", "Women"] and table["usage"].tolist() == ["Formal", "Sports"]
    assert table["usage confidence"].dtype == np.float32
    np.testing.assert_allclose(table["gender confidence"], [0.9, 0.7])
    assert feed.tag_table([os.fsencode("feed/caf\udce9.png")], {}, names)["file"].tolist() == ["caf\\xe9.png"]
    with pytest.raises(ValueError, match="3 gender scores for 2 files"):
        feed.tag_table(["1.png", "2.png"], {"gender": np.ones((3, 2))}, names)
    with pytest.raises(ValueError, match="pass the feed folder"):
        feed.tag_table(["other/1.png"], {}, names, folder="feed")


def test_write_feed_makes_the_folder_afresh_so_no_earlier_photo_survives(tmp_path):
    """A rerun with another seed writes other test photos: the feed holds exactly the new ones."""
    photos = _photos(4)
    folder = feed.write_feed(photos[:3], [1, 2, 3], tmp_path / "feed", extra={"x.txt": b"text"})
    assert feed.write_feed(photos[3:], [4], folder) == folder
    assert sorted(p.name for p in folder.iterdir()) == ["4.png", feed.MANIFEST]
    assert [p.name for p in feed.list_feed(folder).files] == ["4.png"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed"]  # nothing left beside it
    record = json.loads((folder / feed.MANIFEST).read_text())
    assert list(record["files"]) == ["4.png"] and record["files"]["4.png"]["id"] == 4


def test_an_interrupted_write_feed_leaves_the_earlier_feed_whole(tmp_path, monkeypatch):
    photos = _photos(3)
    folder = feed.write_feed(photos[:2], [1, 2], tmp_path / "feed")
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    calls, save = [], Image.Image.save

    def fail_on_second(image, *args, **kwargs):  # the run is stopped while the second photo is written
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return save(image, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        feed.write_feed(photos, [7, 8, 9], folder)
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["feed"]


def test_write_feed_never_replaces_a_folder_of_yours(tmp_path):
    mine = tmp_path / "my_photos"
    mine.mkdir()
    (mine / "IMG_0001.jpg").write_bytes(b"my photo")
    with pytest.raises(DataError, match="my_photos holds files but no feed_manifest.json.*pass another folder"):
        feed.write_feed(_photos(1), [1], mine)
    assert [p.name for p in mine.iterdir()] == ["IMG_0001.jpg"]
    (tmp_path / "empty").mkdir()
    assert (feed.write_feed(_photos(1), [1], tmp_path / "empty") / "1.png").is_file()


@pytest.mark.parametrize("bad", ["../../escaped", "a/b", "..", ".hidden", "", "a\\b", True, 1.5, None])
def test_write_feed_refuses_ids_that_are_no_plain_file_name(tmp_path, bad):
    with pytest.raises(ValueError, match="cannot name a file"):
        feed.write_feed(_photos(1), [bad], tmp_path / "feed" / "inner")
    assert list(tmp_path.rglob("*escaped*")) == [] and not (tmp_path / "feed" / "inner").exists()


def test_write_feed_checks_what_it_is_given(tmp_path):
    with pytest.raises(ValueError, match="ids repeat"):
        feed.write_feed(_photos(2), [5, 5], tmp_path / "feed")
    with pytest.raises(ValueError, match="one per id"):
        feed.write_feed(_photos(2), [5], tmp_path / "feed")
    with pytest.raises(ValueError, match="extra file name '../x'"):
        feed.write_feed(_photos(1), [5], tmp_path / "feed", extra={"../x": b""})
    with pytest.raises(ValueError, match="extra file name '5.png'"):
        feed.write_feed(_photos(1), [5], tmp_path / "feed", extra={"5.png": b""})


def test_feed_ids_come_from_the_manifest_and_a_file_without_one_is_an_error(tmp_path):
    photos = _photos(3)
    folder = feed.write_feed(photos[:2], [10, "SKU-7"], tmp_path / "feed",
                             extra={"phone.jpg": (phone_jpeg(6), 99), "notes.txt": b"text"})
    files = feed.list_feed(folder).files
    assert feed.feed_ids(folder, [folder / "10.png", folder / "phone.jpg"]).tolist() == [10, 99]
    assert feed.feed_ids(folder, [os.fsencode(folder / "SKU-7.png")]).tolist() == ["SKU-7"]
    assert len(files) == 4
    Image.fromarray(photos[2]).save(folder / "IMG_0001.jpg", format="JPEG")  # a photo of your own
    with pytest.raises(DataError, match="IMG_0001.jpg is not in .*feed_manifest.json, so it has no catalogue id"):
        feed.feed_ids(folder, [folder / "10.png", folder / "IMG_0001.jpg"])
    with pytest.raises(DataError, match="notes.txt was added to the feed without a catalogue id"):
        feed.feed_ids(folder, [folder / "notes.txt"])
    Image.fromarray(photos[2]).save(folder / "10.png")
    with pytest.raises(DataError, match="10.png changed after write_feed wrote it"):
        feed.feed_ids(folder, [folder / "10.png"])
    (folder / feed.MANIFEST).unlink()
    with pytest.raises(DataError, match="feed has no feed_manifest.json, so its photos have no catalogue ids"):
        feed.feed_ids(folder, [folder / "10.png"])


FUZZ_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM", "ICO", "TGA", "PCX", "SGI", "DDS", "QOI")


@pytest.mark.filterwarnings("ignore::UserWarning")  # Pillow's notes on damaged metadata it skips
def test_fuzz_3900_mutated_images_never_escape_read_photo(tmp_path):
    """FUZZ (seeded, about 5 s on one core): 300 mutations of each of 13 formats (bytes flipped in the header
    and anywhere, files cut short, size fields and chunk types overwritten). Every file is either a photo,
    uint8 (80, 60, 3) and True, or black and False with a reason; no exception escapes."""
    rng = np.random.default_rng(2024)
    photo = Image.fromarray(rng.integers(0, 256, (80, 60, 3), dtype=np.uint8))
    outcomes = {True: 0, False: 0}
    for fmt in FUZZ_FORMATS:
        data = encode(photo, fmt)
        for trial in range(300):
            path = tmp_path / f"{fmt}_{trial}.img"
            path.write_bytes(_mutated(data, trial, rng))
            image, ok = feed.read_photo(str(path))
            assert image.dtype == np.uint8 and image.shape == (80, 60, 3), path.name
            assert ok or not image.any(), path.name
            if trial % 10 == 0:
                assert (feed.problem(path) == "") == ok, path.name
            outcomes[bool(ok)] += 1
    assert sum(outcomes.values()) == 3900 and min(outcomes.values()) > 300, outcomes


def _mutated(data: bytes, trial: int, rng) -> bytes:
    buffer = bytearray(data)
    kind = trial % 5
    if kind == 0:  # bytes flipped in the header, where the sizes and chunk types are
        for _ in range(rng.integers(1, 6)):
            buffer[int(rng.integers(0, min(len(buffer), 64)))] = int(rng.integers(0, 256))
    elif kind == 1:  # bytes flipped anywhere
        for _ in range(rng.integers(1, 10)):
            buffer[int(rng.integers(0, len(buffer)))] = int(rng.integers(0, 256))
    elif kind == 2:  # cut short
        buffer = buffer[:int(rng.integers(1, len(buffer)))]
    elif kind == 3:  # a size field (or whatever lies there) set to an extreme
        at = int(rng.integers(0, min(len(buffer) - 4, 40)))
        buffer[at:at + 4] = int(rng.choice([0, 1, 0xFFFF, 0x7FFFFFFF, 0xFFFFFFFF])).to_bytes(4, "big")
    else:  # a chunk's four-byte type or length overwritten somewhere in the body
        at = int(rng.integers(8, len(buffer) - 4))
        buffer[at:at + 4] = rng.integers(0, 256, 4, dtype=np.uint8).tobytes()
    return bytes(buffer)


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


def test_the_chapters_review_rule_is_the_helpers():
    """Chapter 09 types the review-threshold rule; ``feed.review_threshold`` is the same rule for the tests and
    solutions: equal on ties, on a required share no threshold reaches, and on a head with no right tag."""
    from tests.test_chapter_code import run_topic_cells

    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 0, "precision": None},
                              definitions_only=True)
    rng = np.random.default_rng(0)
    for n, right_share in ((400, 0.95), (200, 0.7), (60, 1.0), (30, 0.0)):
        confidence = np.round(rng.random(n), 2)  # rounded: many tags share a confidence
        correct = rng.random(n) < right_share * np.where(confidence > 0.6, 1.0, 0.8)
        for required in (0.8, 0.95, 0.99, 1.0):
            typed = chapter["review_threshold"](confidence, correct, required)
            assert typed == feed.review_threshold(confidence, correct, required), (n, right_share, required)
    assert chapter["review_threshold"](np.array([0.9, 0.8]), np.array([False, False])) == np.inf
