"""The Kaggle "Fashion Product Images (Small)" catalogue: find, parse, audit, decode.

``styles.csv`` has 22 rows whose product name holds an unquoted comma; they are repaired
(fields 10 and beyond joined back into the name), not dropped. "NA" and empty cells are
missing labels. Images come from ``images.zip`` (entries ``images/<id>.jpg``) or an
``images/`` folder.
"""

from __future__ import annotations

import csv
import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from helpers.fashion_mnist import DataError
from helpers.paths import data_roots

FOLDER = "fashion-product-images-small"
COLUMNS = ["id", "gender", "masterCategory", "subCategory", "articleType", "baseColour",
           "season", "year", "usage", "productDisplayName"]
LABELS = COLUMNS[1:7] + ["usage"]
IMAGE_SIZE = (80, 60)  # height, width
HOW_TO_GET = (
    "Get it with the Kaggle command line: `kaggle datasets download -d "
    "paramaggarwal/fashion-product-images-small`, then unzip it so that styles.csv and images/ "
    "(or images.zip) lie in data/fashion-product-images-small/, or set $FASHION_DATA_ROOT to a "
    "folder holding fashion-product-images-small/.")


def find_catalogue(data_root=None) -> Path | None:
    """The first ``fashion-product-images-small/`` holding styles.csv and images, or None."""
    for root in data_roots(data_root):
        folder = root / FOLDER
        if (folder / "styles.csv").is_file() and ((folder / "images.zip").is_file()
                                                  or (folder / "images").is_dir()):
            return folder
    return None


def require_catalogue(data_root=None) -> Path:
    folder = find_catalogue(data_root)
    if folder is None:
        searched = ", ".join(str(r / FOLDER) for r in data_roots(data_root))
        raise DataError(f"The catalogue is not in {searched}. {HOW_TO_GET}")
    return folder


def read_styles(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """All rows of styles.csv and the file line numbers of the rows that were repaired."""
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    if not rows or rows[0] != COLUMNS:
        raise DataError(f"{path}: header {rows[0] if rows else '(empty file)'} is not {COLUMNS}. "
                        "Is this the catalogue's styles.csv?")
    repaired, records = [], []
    for line, row in enumerate(rows[1:], start=2):
        if len(row) < len(COLUMNS):
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(COLUMNS)}. "
                            f"Restore the original file. {HOW_TO_GET}")
        if len(row) > len(COLUMNS):
            row = row[:9] + [",".join(row[9:])]
            repaired.append(line)
        records.append(row)
    frame = pd.DataFrame(records, columns=COLUMNS).replace({"": pd.NA, "NA": pd.NA})
    frame["id"] = frame["id"].astype(int)
    frame["year"] = pd.to_numeric(frame["year"]).astype("Int64")
    return frame, repaired


def decode_image(payload: bytes, where: str, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Decode image bytes to RGB uint8 (height, width, 3), converting and resizing as needed."""
    try:
        with Image.open(io.BytesIO(payload)) as img:
            img = img.convert("RGB")
            if img.size != size[::-1]:
                img = img.resize(size[::-1], Image.Resampling.BILINEAR)
            return np.asarray(img, dtype=np.uint8)
    except OSError as err:
        raise DataError(f"{where} cannot be decoded ({err}); replace or remove the file.") from err


class ImageSource:
    """Read catalogue JPEG bytes by id from images.zip or an images/ folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.zip_path = self.folder / "images.zip"
        self._zip = zipfile.ZipFile(self.zip_path) if self.zip_path.is_file() else None
        if self._zip is not None:
            names = [n for n in self._zip.namelist() if n.lower().endswith(".jpg")]
            self.paths = {int(Path(n).stem): n for n in names}
        else:
            self.paths = {int(p.stem): p for p in (self.folder / "images").glob("*.jpg")}

    def ids(self) -> np.ndarray:
        return np.array(sorted(self.paths))

    def read(self, image_id: int) -> bytes:
        where = self.paths[image_id]
        return self._zip.read(where) if self._zip is not None else Path(where).read_bytes()

    def decode(self, image_id: int) -> np.ndarray:
        """RGB uint8 (80, 60, 3): grayscale converted, odd sizes resized."""
        return decode_image(self.read(image_id), f"{self.folder}: image {image_id}")


    def formats(self) -> pd.DataFrame:
        """Width, height and colour mode of every image, read from the JPEG headers only."""
        rows = []
        for image_id in self.ids():
            with Image.open(io.BytesIO(self.read(int(image_id)))) as img:
                rows.append((int(image_id), *img.size, img.mode))
        return pd.DataFrame(rows, columns=["id", "width", "height", "mode"])


@dataclass
class Audit:
    rows: int
    repaired_lines: list[int]
    ids_without_image: list[int]
    images_without_row: list[int]
    duplicate_groups: int
    images_in_duplicate_groups: int
    missing_labels: pd.Series


def audit_catalogue(styles: pd.DataFrame, repaired: list[int], source: ImageSource) -> tuple[pd.DataFrame, Audit]:
    """Join rows with images; mark byte-identical duplicates with a shared ``dup_group``."""
    image_ids = set(source.ids().tolist())
    frame = styles.copy()
    frame["has_image"] = frame["id"].isin(image_ids)
    digests = {i: hashlib.sha256(source.read(i)).hexdigest() for i in sorted(image_ids)}
    frame["sha256"] = frame["id"].map(digests)
    with_image = frame[frame["has_image"]]
    group_size = with_image.groupby("sha256")["id"].transform("size")
    first_id = with_image.groupby("sha256")["id"].transform("min")
    frame["dup_group"] = first_id.reindex(frame.index).astype("Int64")
    dup_sizes = group_size[group_size > 1]
    audit = Audit(
        rows=len(frame), repaired_lines=repaired,
        ids_without_image=sorted(frame.loc[~frame["has_image"], "id"].tolist()),
        images_without_row=sorted(image_ids - set(frame["id"])),
        duplicate_groups=int(with_image.loc[dup_sizes.index, "sha256"].nunique()),
        images_in_duplicate_groups=int(len(dup_sizes)),
        missing_labels=frame[LABELS].isna().sum())
    return frame, audit


def decode_images(source: ImageSource, ids) -> np.ndarray:
    """Decode ``ids`` into one uint8 array (n, 80, 60, 3)."""
    out = np.empty((len(ids), *IMAGE_SIZE, 3), dtype=np.uint8)
    for k, image_id in enumerate(ids):
        out[k] = source.decode(int(image_id))
    return out


def save_processed(folder: Path, frame: pd.DataFrame, images: np.ndarray) -> dict[str, Path]:
    """Write catalogue.csv and images.npy (image k is row k of the table), via temporary files.

    ``images`` may cover only the first rows (quick mode keeps the whole table, fewer images).
    """
    if len(images) > len(frame):
        raise ValueError(f"{len(images)} images but only {len(frame)} rows.")
    folder.mkdir(parents=True, exist_ok=True)
    paths = {"table": folder / "catalogue.csv", "images": folder / "catalogue_images.npy"}
    tmp_table, tmp_images = (p.with_name(p.name + ".part") for p in paths.values())
    frame.to_csv(tmp_table, index=False)
    with open(tmp_images, "wb") as fh:
        np.save(fh, images)
    tmp_table.replace(paths["table"])
    tmp_images.replace(paths["images"])
    return paths
