import numpy as np
import pytest
from PIL import Image

from helpers.fashion_mnist import DataError
from helpers.folders import load_image_folder


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
    (tmp_path / "bag").mkdir()
    (tmp_path / "bag" / "bad.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(DataError, match="bad.jpg cannot be decoded"):
        load_image_folder(tmp_path)
