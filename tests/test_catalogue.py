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


HEADER = ",".join(catalogue.COLUMNS)
ROW = "15970,Men,Apparel,Topwear,Shirts,Navy Blue,Fall,2011,Casual,Turtle Check Men Navy Blue Shirt"
ROW2 = "39386,Men,Apparel,Bottomwear,Jeans,Blue,Summer,2012,Casual,Peter England Men Party Blue Jeans"


def styles_file(tmp_path, body: bytes):
    path = tmp_path / "styles.csv"
    path.write_bytes(body)
    return path


@pytest.mark.parametrize("body, message", [
    (f"{HEADER}\n{ROW}\n".replace("Navy", "N\udce9vy").encode("utf-8", "surrogateescape"),
     r"styles.csv, line 2: byte b'\\xe9' is not UTF-8"),
    (f"{HEADER}\n{ROW2}\n{ROW.replace('2011', '20x2')}\n".encode(), r"styles.csv, line 3: year '20x2' is not a number"),
    (f"{HEADER}\n{ROW.replace('15970', 'abc')}\n".encode(), r"styles.csv, line 2: id 'abc' is not a number"),
    (f"{HEADER}\n".encode(), "styles.csv has a header but no rows"),
    (f"{HEADER}\n{ROW}\n{ROW2[:60]}".encode(), "ends in the middle of line 3"),
    (f"{HEADER}\n{ROW}\n{ROW2}\n{ROW.replace('Men,', 'Women,', 1)}\n".encode(), "id 15970 is listed on lines 2, 4"),
])
def test_broken_styles_csv_is_named_with_its_line(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        catalogue.read_styles(styles_file(tmp_path, body))


@pytest.mark.parametrize("body, message", [
    (f"{HEADER}\n{ROW2}\n{ROW.replace('2011', '2011.5')}\n",
     r"styles.csv, line 3: year '2011.5' is not a whole number"),
    (f"{HEADER}\n{ROW.replace('15970', '1.7')}\n{ROW2.replace('39386', '1.2')}\n",
     r"styles.csv, line 2: id '1.7' is not a whole number"),  # not "id 1 is listed on lines 2, 3"
    (f"{HEADER}\n{ROW.replace('15970', '99999999999999999999')}\n",
     r"styles.csv, line 2: id '99999999999999999999' does not fit in 64 bits"),  # not a negative id
    (f"{HEADER}\n{ROW2}\n{ROW.replace('2011', '-1e30')}\n", r"styles.csv, line 3: year '-1e30' does not fit"),
    (f"{HEADER}\n{ROW2}\n{ROW.replace('15970', '')}\n", r"styles.csv, line 3: id is empty"),
    (f"{HEADER}\n{ROW.replace('2011', 'nan')}\n", r"styles.csv, line 2: year 'nan' is not a number"),
])
def test_an_id_or_year_that_is_not_a_whole_64_bit_number_is_named_with_its_line(tmp_path, body, message):
    with pytest.raises(DataError, match=message):
        catalogue.read_styles(styles_file(tmp_path, body.encode()))


def test_whole_numbers_written_with_a_decimal_point_or_left_empty_are_read(tmp_path):
    body = f"{HEADER}\n{ROW.replace('2011', '2011.0')}\n{ROW2.replace('2012', '')}\n"
    frame, _ = catalogue.read_styles(styles_file(tmp_path, body.encode()))
    assert frame["id"].dtype == "int64" and frame["year"].dtype == "Int64"
    assert frame["year"].iloc[0] == 2011 and frame["year"].isna().tolist() == [False, True]


def test_a_byte_order_mark_crlf_and_a_trailing_blank_line_are_accepted(tmp_path):
    body = f"\ufeff{HEADER}\r\n{ROW}\r\n{ROW2}\r\n\r\n".encode()
    frame, repaired = catalogue.read_styles(styles_file(tmp_path, body))
    assert frame["id"].tolist() == [15970, 39386] and repaired == []


def jpeg() -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (60, 80), (10, 20, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


def test_a_truncated_zip_is_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        for i in range(20):
            zf.writestr(f"images/{i}.jpg", jpeg())
    data = (tmp_path / "images.zip").read_bytes()
    (tmp_path / "images.zip").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match="images.zip is not a readable zip file"):
        catalogue.ImageSource(tmp_path)


def test_zip_entries_macos_forks_ignored_bad_names_and_non_images_named(tmp_path):
    with zipfile.ZipFile(tmp_path / "images.zip", "w") as zf:
        zf.writestr("images/1.jpg", jpeg())
        zf.writestr("__MACOSX/images/._1.jpg", b"resource fork")
        zf.writestr("images/2.jpg", b"")  # an empty file
    source = catalogue.ImageSource(tmp_path)
    assert source.ids().tolist() == [1, 2]
    with pytest.raises(DataError, match="image 2 is not a readable image"):
        source.formats()
    with zipfile.ZipFile(tmp_path / "images.zip", "a") as zf:
        zf.writestr("images/thumbnail.jpg", jpeg())
    with pytest.raises(DataError, match="'images/thumbnail.jpg' is not named <id>.jpg"):
        catalogue.ImageSource(tmp_path)


def test_an_images_folder_accepts_any_case_of_jpg(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "1.jpg").write_bytes(jpeg())
    (tmp_path / "images" / "2.JPG").write_bytes(jpeg())
    assert catalogue.ImageSource(tmp_path).ids().tolist() == [1, 2]


def test_processed_arrays_record_their_source_and_stale_ones_are_refused(tmp_path, monkeypatch):
    from helpers import tagging

    raw = tmp_path / "raw" / "fashion-product-images-small"
    raw.mkdir(parents=True)
    styles = styles_file(raw, f"{HEADER}\n{ROW}\n{ROW2}\n".encode())
    (raw / "images").mkdir()
    monkeypatch.setenv("FASHION_DATA_ROOT", str(tmp_path / "raw"))
    processed = tmp_path / "processed"
    monkeypatch.setattr(tagging, "processed_dir", lambda mode=None: processed)
    frame = pd.DataFrame({"id": [15970, 39386]})
    catalogue.save_processed(processed, frame, np.zeros((2, 80, 60, 3), "uint8"), styles)
    assert len(tagging.load_processed("quick")[0]) == 2
    styles.write_bytes(styles.read_bytes().replace(b"Navy Blue", b"Blue"))  # the catalogue changed since
    with pytest.raises(DataError, match="made from another styles.csv.*run notebooks/01_data.ipynb again"):
        tagging.load_processed("quick")
    monkeypatch.setenv("FASHION_DATA_ROOT", str(tmp_path / "elsewhere"))  # the catalogue is gone
    with pytest.raises(DataError, match="no catalogue is found now"):
        tagging.load_processed("quick")
    assert {p.name for p in catalogue.clear_processed(processed)} == {"catalogue.csv", "catalogue_images.npy",
                                                                       "catalogue_source.json"}
    with pytest.raises(FileNotFoundError, match="run notebooks/01_data.ipynb .*kaggle datasets download"):
        tagging.load_processed("quick")


def test_arrays_without_their_source_record_are_refused(tmp_path, monkeypatch):
    from helpers import tagging

    monkeypatch.setattr(tagging, "processed_dir", lambda mode=None: tmp_path)
    catalogue.save_processed(tmp_path, pd.DataFrame({"id": [1]}), np.zeros((1, 80, 60, 3), "uint8"))  # own photos
    assert len(tagging.load_processed("quick")[1]) == 1
    (tmp_path / "catalogue_source.json").unlink()  # as an interrupted or older chapter 01 leaves them
    with pytest.raises(FileNotFoundError, match="catalogue_source.json is missing"):
        tagging.load_processed("quick")
