import zipfile

import numpy as np
import pandas as pd
import pytest

from helpers import catalogue
from helpers.fashion_mnist import DataError


def test_all_rows_load_and_the_22_malformed_rows_are_repaired(catalogue_audit):
    _, styles, repaired, *_ = catalogue_audit
    assert len(styles) == 44446 and styles["id"].is_unique
    assert len(repaired) == 22 and repaired[0] == 6044 and repaired[-1] == 38404
    name = styles.loc[styles["id"] == 44065, "productDisplayName"].item()
    assert name == "Boss Men Perfume, After Shave Balm and Shower Gel Set"


def test_na_and_empty_cells_are_missing_labels(catalogue_audit):
    *_, audit = catalogue_audit
    assert audit.missing_labels.to_dict() == {
        "gender": 0, "masterCategory": 0, "subCategory": 0, "articleType": 0,
        "baseColour": 15, "season": 21, "usage": 317}


def test_missing_and_duplicate_images_are_reported(catalogue_audit):
    *_, table, audit = catalogue_audit
    assert audit.ids_without_image == [12347, 39401, 39403, 39410, 39425]
    assert audit.images_without_row == []
    assert (audit.duplicate_groups, audit.images_in_duplicate_groups) == (653, 1433)
    group = table.dropna(subset=["dup_group"]).groupby("dup_group")["sha256"].nunique()
    assert (group == 1).all()  # one group, one set of bytes


def test_decoding_gives_80x60_rgb_for_grayscale_and_odd_sizes(catalogue_audit):
    _, _, _, source, _, _ = catalogue_audit
    formats = source.formats()
    odd = formats[(formats["mode"] == "L") | (formats["width"] != 60)]["id"].head(5)
    images = catalogue.decode_images(source, odd)
    assert images.shape == (5, 80, 60, 3) and images.dtype.name == "uint8"


def test_an_images_folder_works_like_the_zip(catalogue_audit, tmp_path):
    folder, styles, *_ = catalogue_audit
    (tmp_path / "images").mkdir()
    with zipfile.ZipFile(folder / "images.zip") as zf:
        for name in zf.namelist()[:5]:
            (tmp_path / "images" / name.split("/")[-1]).write_bytes(zf.read(name))
    (tmp_path / "styles.csv").write_text((folder / "styles.csv").read_text())
    source = catalogue.ImageSource(tmp_path)
    assert len(source.ids()) == 5
    assert catalogue.decode_images(source, source.ids()).shape == (5, 80, 60, 3)


def test_wrong_header_names_the_file(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(DataError, match="styles.csv: header"):
        catalogue.read_styles(path)


def test_short_row_names_the_line(tmp_path):
    path = tmp_path / "styles.csv"
    path.write_text(",".join(catalogue.COLUMNS) + "\n1,Men,Apparel\n")
    with pytest.raises(DataError, match="line 2: 3 fields"):
        catalogue.read_styles(path)


def test_absent_catalogue_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(catalogue, "data_roots", lambda root=None: [tmp_path])
    assert catalogue.find_catalogue() is None
    with pytest.raises(DataError, match="kaggle datasets download -d paramaggarwal"):
        catalogue.require_catalogue()


def test_save_processed_writes_both_files_atomically(tmp_path):
    frame = pd.DataFrame({"id": [1, 2]})
    images = np.zeros((2, 80, 60, 3), dtype="uint8")
    paths = catalogue.save_processed(tmp_path, frame, images)
    assert paths["table"].is_file() and paths["images"].is_file()
    assert not list(tmp_path.glob("*.part"))
    catalogue.save_processed(tmp_path, frame, images[:1])  # quick mode: whole table, fewer images
    with pytest.raises(ValueError, match="3 images but only 2 rows"):
        catalogue.save_processed(tmp_path, frame, np.zeros((3, 80, 60, 3), dtype="uint8"))
