import numpy as np
import pytest
from PIL import Image

from helpers import experiment
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


def test_folder_catalogue_keeps_given_splits_or_makes_a_leak_free_one(tmp_path):
    from helpers.folders import folder_catalogue

    _tree(tmp_path / "given", {"train/shirt/a.jpg": "red", "train/shoe/b.jpg": "blue", "val/shoe/c.jpg": "blue",
                               "test/shirt/d.jpg": "red"})
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
        _tree(tmp_path / "half", {"train/a/x.jpg": "red", "test/a/y.jpg": "red"})
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
    assert namespace["embeddings"].shape[1] == 256
