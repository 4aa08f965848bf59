"""The catalogue from the Hugging Face mirror's format: a small local copy that the test writes with `datasets`
stands in for the download (these machines cannot reach the Hub); loading goes through the same call."""

import io

import pytest
from PIL import Image

from helpers import catalogue, mirror
from helpers.fashion_mnist import DataError

datasets = pytest.importorskip("datasets")


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_mirror(folder, rows: list[dict]):
    """A dataset in the mirror's layout: data/train-00000-of-00001.parquet with the ten columns and `image`."""
    features = datasets.Features({**{c: datasets.Value("int64" if c in ("id", "year") else "string")
                                     for c in catalogue.COLUMNS}, "image": datasets.Image()})
    table = datasets.Dataset.from_list(rows, features=features)
    (folder / "data").mkdir(parents=True)
    table.to_parquet(str(folder / "data" / "train-00000-of-00001.parquet"))
    return folder


def row(image_id, gender="Men", colour=(200, 30, 30), **changes):
    base = {"id": image_id, "gender": gender, "masterCategory": "Apparel", "subCategory": "Topwear",
            "articleType": "Tshirts", "baseColour": "Red", "season": "Summer", "year": 2012, "usage": "Casual",
            "productDisplayName": f"Shirt {image_id}", "image": {"bytes": jpeg(colour), "path": None}}
    return {**base, **changes}


@pytest.fixture
def local_mirror(tmp_path):
    rows = [row(i, colour=(10 * i, 30, 30)) for i in range(1, 9)]
    rows.append(row(3, gender="Women"))  # a repeated id: the first row is kept, the report counts it
    rows.append(row(9, usage=None, colour=(10, 30, 30)))  # a missing label; the photo of id 1 again
    return write_mirror(tmp_path / "mirror", rows)


def test_the_mirror_loads_and_chapter_01_checks_run_on_it(local_mirror, tmp_path):
    opened = catalogue.open_catalogue(source=str(local_mirror))
    assert opened.origin.startswith("the mirror") and opened.repaired == []
    assert opened.styles["id"].tolist() == list(range(1, 10))
    assert opened.styles.loc[opened.styles["id"] == 3, "gender"].item() == "Men"
    assert opened.report["rows"] == 10 and opened.report["rows repeating an id (dropped)"] == 1
    assert opened.report["missing labels"] == 1 and opened.report["rows without a photo"] == 0
    table, audit = catalogue.audit_catalogue(opened.styles, opened.repaired, opened.images)
    assert audit.ids_without_image == [] and (audit.duplicate_groups, audit.images_in_duplicate_groups) == (1, 2)
    assert opened.images.formats()["width"].tolist() == [60] * 9
    arrays = catalogue.decode_images(opened.images, table["id"])
    assert arrays.shape == (9, 80, 60, 3) and abs(int(arrays[1, 40, 30, 0]) - 20) <= 3
    saved = catalogue.save_processed(tmp_path / "processed", table.drop(columns=["has_image"]), arrays)
    assert saved["source"].is_file()


def test_a_mirror_without_the_catalogue_columns_is_named(tmp_path):
    folder = tmp_path / "other"
    (folder / "data").mkdir(parents=True)
    datasets.Dataset.from_dict({"id": [1], "label": ["x"]}).to_parquet(str(folder / "data" / "train.parquet"))
    with pytest.raises(DataError, match="lacks the columns"):
        mirror.load_mirror(str(folder))


def test_an_unreachable_mirror_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError, match="could not be loaded"):
        mirror.load_mirror(str(tmp_path / "no-such-folder"))


def test_kaggle_files_come_first_and_absent_ones_give_none(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogue, "data_roots", lambda root=None: [tmp_path])
    monkeypatch.delenv("FASHION_CATALOGUE", raising=False)
    assert catalogue.open_catalogue() is None and catalogue.open_catalogue(source="kaggle") is None
