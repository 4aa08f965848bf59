"""The catalogue from the Hugging Face mirror's format: a small local copy that the test writes with `datasets`
stands in for the download (these machines cannot reach the Hub); loading goes through the same call."""

import ast
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from helpers import catalogue, mirror
from helpers.fashion_mnist import DataError
from helpers.paths import REPO_ROOT

datasets = pytest.importorskip("datasets")


def jpeg(colour) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_mirror(folder, rows: list[dict], types: dict | None = None):
    """A dataset in the mirror's layout: data/train-00000-of-00001.parquet with the ten columns and `image`;
    ``types`` changes a column's type (``{"id": "float64"}``)."""
    types = {"id": "int64", "year": "int64", **(types or {})}
    features = datasets.Features({**{c: datasets.Value(types.get(c, "string")) for c in catalogue.COLUMNS},
                                  "image": datasets.Image()})
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


@pytest.mark.parametrize("column, values, kind, message", [
    ("id", [1.2, 1.7], "float64", r"row 0: id 1.2 is not a whole number"),  # not both truncated to id 1
    ("id", ["99999999999999999999", "2"], "string", r"row 0: id '99999999999999999999' does not fit"),
    ("year", ["twenty12", "2012"], "string", r"row 0: year 'twenty12' is not a number"),  # not a silent NA
    ("year", [2011.5, 2012.0], "float64", r"row 0: year 2011.5 is not a whole number"),  # not rounded
    ("id", [None, 2], "float64", r"row 0: id is empty"),
])
def test_a_mirror_id_or_year_that_is_not_a_whole_number_names_its_row(tmp_path, column, values, kind, message):
    rows = [row(k + 1, **{column: value}) for k, value in enumerate(values)]
    folder = write_mirror(tmp_path / "mirror", rows, {column: kind})
    with pytest.raises(DataError, match=message):
        mirror.load_mirror(str(folder))


def test_a_mirror_with_float_years_and_a_missing_one_loads_them_as_whole_years(tmp_path):
    rows = [row(1, year=2012.0), row(2, year=None), row(3, year=2013)]
    folder = write_mirror(tmp_path / "mirror", rows, {"year": "float64", "id": "float64"})
    styles, _, _ = mirror.load_mirror(str(folder))
    assert styles["id"].tolist() == [1, 2, 3] and styles["id"].dtype == "int64"
    assert styles["year"].dtype == "Int64" and styles["year"].tolist()[::2] == [2012, 2013]
    assert styles["year"].isna().tolist() == [False, True, False]


@pytest.mark.parametrize("value", ["mirorr", "Kaggle", " kaggle", "no/such/folder"])
def test_a_typo_in_fashion_catalogue_is_refused_at_once_listing_the_accepted_values(value, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # were it taken for a Hub name, it would fail fast here
    monkeypatch.setenv("FASHION_CATALOGUE", value)
    with pytest.raises(DataError, match=r"FASHION_CATALOGUE=.*kaggle.*mirror.*auto.*folder"):
        catalogue.open_catalogue()
    with pytest.raises(DataError, match=r"source .*kaggle.*mirror.*auto.*folder"):
        catalogue.open_catalogue(source=value)


def test_the_runner_stops_before_chapter_01_on_a_typo_and_counts_a_mirror_folder(local_mirror, monkeypatch):
    from helpers import runner

    monkeypatch.setenv("FASHION_CATALOGUE", "mirorr")
    with pytest.raises(DataError, match="FASHION_CATALOGUE='mirorr' is not"):
        runner.catalogue_available()  # run_series asks before running any chapter
    monkeypatch.chdir(local_mirror.parent.parent)
    monkeypatch.setenv("FASHION_CATALOGUE", f"{local_mirror.parent.name}/mirror")
    assert runner.catalogue_available()  # and the chapters, run from notebooks/, are given its absolute path
    assert os.environ["FASHION_CATALOGUE"] == str(local_mirror.resolve())


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return ({node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
            | {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names})


def test_the_mirror_and_the_catalogue_import_each_other_in_one_direction_only():
    assert "helpers.catalogue" not in imports_of(Path(mirror.__file__))  # anywhere, a function's body included
    for first, second in (("mirror", "catalogue"), ("catalogue", "mirror")):
        code = f"import helpers.{first}, helpers.{second}"
        subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True, capture_output=True)
