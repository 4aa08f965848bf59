import os

import numpy as np
import pytest
from PIL import Image

from helpers import experiment
from helpers.fashion_mnist import DataError
from helpers.folders import folder_catalogue, load_image_folder
from tests.test_photos import grey_png


def _tree(root, layout):
    for rel, colour in layout.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (40, 50), colour).save(path)


def test_split_subfolders_are_honoured_and_classes_shared(tmp_path):
    _tree(tmp_path, {"train/shirt/a.jpg": "red", "train/shoe/b.png": "blue", "validation/shoe/c.jpg": "blue",
                     "test/shirt/d.jpeg": "red", "test/shoe/e.jpg": "blue"})
    splits, classes = load_image_folder(tmp_path)
    assert classes == ["shirt", "shoe"] and set(splits) == {"train", "val", "test"}
    images, labels, paths = splits["test"]
    assert images.shape == (2, 80, 60, 3) and images.dtype == np.uint8
    assert labels.tolist() == [0, 1] and [p.name for p in paths] == ["d.jpeg", "e.jpg"]
    assert splits["val"][1].tolist() == [1]
    assert images[0, 40, 30, 0] > 200 and images[1, 40, 30, 2] > 200  # colours kept: red, blue


def test_flat_class_folders_become_one_split(tmp_path):
    _tree(tmp_path, {"bag/x.jpg": "green", "bag/y.jpg": "green", "belt/z.jpg": "black"})
    splits, classes = load_image_folder(tmp_path, size=(32, 32))
    assert classes == ["bag", "belt"] and list(splits) == ["all"]
    assert splits["all"][0].shape == (3, 32, 32, 3) and splits["all"][1].tolist() == [0, 0, 1]


def test_empty_or_broken_folders_are_explained(tmp_path):
    with pytest.raises(DataError, match="no images found. Expected root/<class>"):
        load_image_folder(tmp_path)
    _tree(tmp_path, {"belt/a.png": "red"})
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg cannot be decoded"):
        load_image_folder(tmp_path)


def test_folder_catalogue_keeps_given_splits_or_makes_a_leak_free_one(tmp_path):
    _tree(tmp_path / "given", {"train/shirt/a.jpg": "red", "train/shoe/b.jpg": "blue", "val/shoe/c.jpg": "blue",
                               "test/shirt/d.jpg": "red"})
    with pytest.warns(UserWarning, match="the val split has no photo of shirt; the test split has no photo of shoe"):
        data, table, split = folder_catalogue(tmp_path / "given", head="type")
    assert data.names == {"type": ["shirt", "shoe"]}
    assert {k: v["type"].tolist() for k, v in data.labels.items()} == {"train": [0, 1], "val": [1], "test": [0]}
    layout = {f"{c}/{i}.png": (i * 20, 10, 10) if c == "bag" else (10, i * 20, 10)
              for c in ("bag", "belt") for i in range(10)}
    _tree(tmp_path / "flat", layout)
    (tmp_path / "flat" / "bag" / "copy.png").write_bytes((tmp_path / "flat" / "bag" / "0.png").read_bytes())
    data, table, split = folder_catalogue(tmp_path / "flat")
    assert sum(len(v) for v in data.images.values()) == 21
    assert table.groupby("dup_group")["id"].apply(lambda ids: split[ids].nunique()).max() == 1
    with pytest.raises(DataError, match="has only"):
        _tree(tmp_path / "half", {"train/a/x.jpg": "red", "test/b/y.jpg": "red"})
        folder_catalogue(tmp_path / "half")


@pytest.mark.parametrize("size", [(80, 60), (160, 120)])
def test_readme_own_photos_recipe_runs(tmp_path, monkeypatch, size):
    """The README's "Your own photos" code, as written (and at 160x120), on a small folder tree."""
    import re

    from helpers.paths import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    code = re.search(r"## Your own photos.*?```python\n(.*?)```", readme, re.S).group(1)
    assert "size = (80, 60)" in code
    code = code.replace("size = (80, 60)", f"size = {size}")
    _tree(tmp_path / "my_photos", {f"{c}/{i}.png": (i * 6, 200 if c == "bag" else 20, 90)
                                   for c in ("bag", "belt") for i in range(40)})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(experiment.BUDGETS, ("catalogue_lite0", "full"), experiment.Budget(epochs=1, batch_size=16))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert namespace["data"].images["test"].shape[1:] == (*size, 3)
    test_photos = len(namespace["data"].images["test"])
    assert namespace["found"].shape == (test_photos, min(10, test_photos - 1))  # chapter 08's neighbours per photo


def _classes(n_bag=8, n_belt=8, **more):
    layout = {f"bag/{i}.png": (i * 20, 200, 90) for i in range(n_bag)}
    layout.update({f"belt/{i}.png": (i * 20, 20, 90) for i in range(n_belt)})
    return {**layout, **more}


def test_a_class_too_small_for_the_split_is_refused_with_its_name_and_count(tmp_path):
    _tree(tmp_path, _classes(**{"shoe/a.png": "red"}))
    with pytest.raises(DataError, match=r"too few photos in shoe \(1 photo\) for the 5:1:1 split.*min_count=7"):
        folder_catalogue(tmp_path)
    data, _, _ = folder_catalogue(tmp_path, min_count=7)  # as the message says: the class is left out
    assert data.names == {"category": ["bag", "belt"]}


def test_a_single_class_is_refused_nothing_to_learn(tmp_path):
    _tree(tmp_path, {f"bag/{i}.png": (i * 9, 9, 9) for i in range(20)})
    with pytest.raises(DataError, match="has one class only .bag.: there is nothing to tell apart"):
        load_image_folder(tmp_path)


@pytest.mark.parametrize("size", [(0, 0), (-5, 10), (80.5, 60), ("80", "60"), (80,)])
def test_a_wrong_size_is_named_before_any_photo_is_read(tmp_path, size):
    _tree(tmp_path, {"bag/a.png": "red", "belt/b.png": "blue"})
    with pytest.raises(ValueError, match=r"size .* must be two positive whole numbers \(height, width\)"):
        load_image_folder(tmp_path, size=size)


def test_a_size_that_would_not_fit_in_memory_is_refused_with_the_estimate(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "belt/b.png": "blue"})
    with pytest.raises(DataError, match=r"2 photos at size=\(40000, 30000\) need 6.7 GiB as arrays.*smaller size"):
        load_image_folder(tmp_path, size=(40000, 30000))
    assert load_image_folder(tmp_path, size=(400, 300))[0]["all"][0].shape == (2, 400, 300, 3)


def test_a_folder_inside_a_class_is_named_not_silently_dropped(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "bag/2020/b.png": "red", "belt/d.png": "blue"})
    with pytest.raises(DataError, match=r"bag/2020/ is a folder inside the class folder bag/.*move its photos"):
        load_image_folder(tmp_path)


def test_capitalised_split_folders_are_used(tmp_path):
    _tree(tmp_path, {"Train/bag/a.png": "red", "Train/belt/b.png": "blue", "Test/bag/c.png": "red",
                     "Val/belt/d.png": "blue", ".cache/bag/e.png": "red"})  # a hidden folder is no split
    splits, classes = load_image_folder(tmp_path)
    assert classes == ["bag", "belt"] and {k: len(v[1]) for k, v in splits.items()} == {"train": 2, "test": 1, "val": 1}
    (tmp_path / "train").mkdir()
    if not (tmp_path / "Train").samefile(tmp_path / "train"):  # a file system that tells the cases apart
        with pytest.raises(DataError, match="has both Train/ and train/ for the train split"):
            load_image_folder(tmp_path)


def test_class_folders_beside_split_folders_are_named(tmp_path):
    _tree(tmp_path, {"train/bag/a.png": "red", "val/bag/b.png": "red", "test/bag/c.png": "red",
                     "train/belt/a.png": "blue", "bag/d.png": "red", "shoes/e.png": "red"})
    with pytest.raises(DataError, match=r"has split folders \(test, train, val\) and also bag/, shoes/ beside them"):
        load_image_folder(tmp_path)


def test_photos_outside_a_class_folder_are_named(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "belt/b.png": "blue", "loose.jpg": "red"})
    with pytest.raises(DataError, match="loose.jpg is not in a class folder"):
        load_image_folder(tmp_path)


def test_macos_forks_and_hidden_files_are_skipped_like_the_catalogue_reader(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "bag/.thumb.jpg": "black", "belt/b.png": "blue",
                     "__MACOSX/bag/c.png": "red"})
    (tmp_path / "bag" / "._a.png").write_bytes(b"\x00\x05\x16\x07" + b"\0" * 60)  # AppleDouble, not a photo
    splits, classes = load_image_folder(tmp_path)
    assert classes == ["bag", "belt"] and [p.name for p in splits["all"][2]] == ["a.png", "b.png"]


def test_a_folder_named_like_a_photo_and_a_symlink_loop_are_named(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "belt/b.png": "blue"})
    (tmp_path / "bag" / "x.jpg").mkdir()
    with pytest.raises(DataError, match=r"bag/x.jpg/ is a folder inside the class folder bag/"):
        load_image_folder(tmp_path)
    (tmp_path / "bag" / "x.jpg").rmdir()
    os.symlink(tmp_path / "belt" / "l2.jpg", tmp_path / "belt" / "l1.jpg")
    os.symlink(tmp_path / "belt" / "l1.jpg", tmp_path / "belt" / "l2.jpg")
    with pytest.raises(DataError, match=r"belt/l1.jpg is a symlink that leads nowhere"):
        load_image_folder(tmp_path)


def test_a_decompression_bomb_names_the_file(tmp_path):
    _tree(tmp_path, {"bag/a.png": "red", "belt/b.png": "blue"})
    (tmp_path / "bag" / "b.png").write_bytes(grey_png(20000, 20000, whole=False))
    with pytest.raises(DataError, match=r"bag/b.png claims 20,000 x 20,000 = 400,000,000 pixels|"
                                        r"bag/b.png claims 400,000,000 pixels"):
        load_image_folder(tmp_path)


def test_a_transparent_or_sideways_own_photo_is_decoded_as_seen(tmp_path):
    from tests.test_photos import phone_jpeg

    _tree(tmp_path, {"bag/a.png": "red"})
    (tmp_path / "belt").mkdir()
    (tmp_path / "belt" / "phone.jpg").write_bytes(phone_jpeg(6))
    Image.new("RGBA", (60, 80), (0, 0, 0, 0)).save(tmp_path / "bag" / "cutout.png")
    images, _, paths = load_image_folder(tmp_path)[0]["all"]
    shown = dict(zip([p.name for p in paths], images, strict=True))
    np.testing.assert_array_equal(shown["cutout.png"][5, 5], (255, 255, 255))
    assert shown["phone.jpg"][5, 30, 1] > 150 and shown["phone.jpg"][75, 30, 0] > 150  # green top, red bottom
