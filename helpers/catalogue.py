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
import json
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd
from PIL import Image

from helpers.catalogue_schema import COLUMNS, LABELS, whole_numbers
from helpers.fashion_mnist import DataError, sha256_of
from helpers.mirror import MIRROR, load_mirror
from helpers.paths import atomic_write_bytes, data_roots, replacing
from helpers.photos import decode_bytes

FOLDER = "fashion-product-images-small"
IMAGE_SIZE = (80, 60)  # height, width
SOURCE_ENV = "FASHION_CATALOGUE"  # one of SOURCES (kaggle by default) or a folder in the mirror's format
SOURCES = {"kaggle": "Kaggle's files, the default", "mirror": f"the Hugging Face mirror {MIRROR}",
           "auto": "Kaggle's files, else the mirror"}
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


def _read_text(path: Path) -> str:
    """The file as text: UTF-8, with or without a byte-order mark; a bad byte is named with its line."""
    data = path.read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data[:err.start].count(b"\n") + 1
        raise DataError(f"{path}, line {line}: byte {data[err.start:err.start + 1]!r} is not UTF-8. "
                        f"Restore the original file. {HOW_TO_GET}") from err


def _column_of_numbers(frame: pd.DataFrame, column: str, lines: list[int], path: Path) -> pd.Series:
    """The column as whole numbers (``Int64``; only year may be empty); any other value names its line."""
    return whole_numbers(frame[column], column, lambda row: f"{path}, line {lines[row]}",
                         f"Restore the original file. {HOW_TO_GET}", required=column == "id")


def repair_row(row: list[str], n_columns: int = len(COLUMNS)) -> list[str]:
    """A row with more fields than the header: an unquoted comma split the product name, the last column, so
    the extra fields are joined back into it (chapter 01 types this)."""
    return row[:n_columns - 1] + [",".join(row[n_columns - 1:])]


def duplicate_groups(ids, digests) -> np.ndarray:
    """Each photo's group: the smallest id among the photos whose bytes are identical (the same SHA-256)."""
    return pd.Series(np.asarray(ids)).groupby(np.asarray(digests)).transform("min").to_numpy()


def perceptual_hashes(images) -> np.ndarray:
    """The 64-bit perceptual hash (imagehash.phash: the low frequencies of a 32x32 grey thumbnail's DCT) of each
    RGB array, as hex strings: a photo saved again with other compression or size keeps its hash, mostly."""
    return np.array([str(imagehash.phash(Image.fromarray(image))) for image in images])


def near_duplicates(table: pd.DataFrame, hashes) -> pd.DataFrame:
    """The rows of ``table`` (with ``id`` and ``dup_group``) whose perceptual hash they share with a row of
    another duplicate group: copies that SHA-256 calls different (re-encoded, resized) or look-alike products."""
    frame = table[["id", "dup_group"]].assign(phash=hashes)
    groups = frame.groupby("phash")["dup_group"].transform("nunique")
    return frame[groups > 1].sort_values(["phash", "id"])


def read_styles(path: Path) -> tuple[pd.DataFrame, list[int]]:
    """All rows of styles.csv and the file line numbers of the rows that were repaired.

    Rows whose product name holds an unquoted comma are repaired (the extra fields belong to the name,
    the last column); blank lines and a byte-order mark are ignored. A file cut short, a field that
    should be a number and is not, and an id listed twice are errors naming the line.
    """
    path = Path(path)
    text = _read_text(path)
    rows = list(csv.reader(io.StringIO(text, newline="")))
    if not rows or rows[0] != COLUMNS:
        raise DataError(f"{path}: header {rows[0] if rows else '(empty file)'} is not {COLUMNS}. "
                        "Is this the catalogue's styles.csv?")
    repaired, records, lines = [], [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:  # a blank line
            continue
        if len(row) < len(COLUMNS):
            raise DataError(f"{path}, line {line}: {len(row)} fields, expected {len(COLUMNS)}. "
                            f"Restore the original file. {HOW_TO_GET}")
        if len(row) > len(COLUMNS):
            row = repair_row(row)
            repaired.append(line)
        records.append(row)
        lines.append(line)
    if not records:
        raise DataError(f"{path} has a header but no rows. Restore the original file. {HOW_TO_GET}")
    if not text.endswith("\n"):
        raise DataError(f"{path} ends in the middle of line {lines[-1]} (no line break at the end): the file "
                        f"looks cut short. Restore the original file. {HOW_TO_GET}")
    frame = pd.DataFrame(records, columns=COLUMNS).replace({"": pd.NA, "NA": pd.NA})
    frame["id"] = _column_of_numbers(frame, "id", lines, path).astype("int64")
    frame["year"] = _column_of_numbers(frame, "year", lines, path)
    repeated = frame["id"].duplicated(keep=False).to_numpy()
    if repeated.any():
        first = frame["id"].to_numpy()[repeated][0]
        where = [lines[i] for i in np.flatnonzero(frame["id"].to_numpy() == first)]
        raise DataError(f"{path}: id {first} is listed on lines {', '.join(map(str, where))} "
                        f"({int(repeated.sum())} rows share an id). Each product must appear once; "
                        f"restore the original file. {HOW_TO_GET}")
    return frame, repaired


def decode_image(payload: bytes, where: str, size: tuple[int, int] = IMAGE_SIZE) -> np.ndarray:
    """Decode image bytes to RGB uint8 (height, width, 3) as a person sees the photo (``helpers.photos``, the
    one decoder of the catalogue, the feed and your own photos): upright, transparency on white, any bit depth,
    resized bilinearly. A damaged or oversized file is a ``DataError`` naming ``where``."""
    return decode_bytes(payload, where, size)


def _image_id(name: str, where: str) -> int:
    stem = Path(name).stem
    if not stem.isdigit():
        raise DataError(f"{where}: {name!r} is not named <id>.jpg; remove it or rename it to its product id.")
    return int(stem)


def _is_image_name(name: str) -> bool:
    """A .jpg of any case, not a macOS resource fork (``__MACOSX/``, ``._15970.jpg``)."""
    return name.lower().endswith(".jpg") and "__MACOSX/" not in name and not Path(name).name.startswith("._")


class ImageSource:
    """Read catalogue JPEG bytes by id from images.zip or an images/ folder."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.zip_path = self.folder / "images.zip"
        self._zip = None
        if self.zip_path.is_file():
            try:
                self._zip = zipfile.ZipFile(self.zip_path)
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{self.zip_path} is not a readable zip file ({err}): it may be cut short. "
                                f"Download it again. {HOW_TO_GET}") from err
            names = [n for n in self._zip.namelist() if _is_image_name(n)]
            self.paths = {_image_id(n, str(self.zip_path)): n for n in names}
        else:
            folder = self.folder / "images"
            files = [p for p in folder.iterdir() if p.is_file() and _is_image_name(p.name)] if folder.is_dir() else []
            self.paths = {_image_id(p.name, str(folder)): p for p in files}

    def ids(self) -> np.ndarray:
        return np.array(sorted(self.paths))

    def read(self, image_id: int) -> bytes:
        where = self.paths[image_id]
        try:
            return self._zip.read(where) if self._zip is not None else Path(where).read_bytes()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise DataError(f"{self.zip_path if self._zip is not None else where}: image {image_id} cannot be "
                            f"read ({err}); download the catalogue again. {HOW_TO_GET}") from err

    def decode(self, image_id: int) -> np.ndarray:
        """RGB uint8 (80, 60, 3): grayscale converted, odd sizes resized."""
        return decode_image(self.read(image_id), f"{self.folder}: image {image_id}")

    def formats(self) -> pd.DataFrame:
        """Width, height and colour mode of every image, read from the JPEG headers only."""
        rows = []
        for image_id in self.ids():
            try:
                with Image.open(io.BytesIO(self.read(int(image_id)))) as img:
                    rows.append((int(image_id), *img.size, img.mode))
            except OSError as err:  # PIL.UnidentifiedImageError: empty or not an image
                raise DataError(f"{self.folder}: image {image_id} is not a readable image ({err}); replace or "
                                "remove the file.") from err
        return pd.DataFrame(rows, columns=["id", "width", "height", "mode"])


class ImagesInMemory(ImageSource):
    """Photos held in memory by id (the mirror's), with the interface of ``ImageSource``."""

    def __init__(self, photos: dict[int, bytes], where: str):
        self.folder, self.zip_path, self._zip = Path(where), None, None
        self._photos = photos
        self.paths = {image_id: image_id for image_id in photos}

    def read(self, image_id: int) -> bytes:
        return self._photos[image_id]


@dataclass
class Opened:
    """A catalogue ready for chapter 01: its rows, the repaired lines, its photos and where it came from."""

    styles: pd.DataFrame
    repaired: list[int]
    images: ImageSource
    origin: str
    styles_path: Path | None = None  # Kaggle's styles.csv (its SHA-256 is recorded with the arrays)
    report: dict | None = None  # for a mirror: how its rows differ from Kaggle's file


def catalogue_source(source: str | None = None) -> str:
    """Where the catalogue comes from: ``source``, else ``$FASHION_CATALOGUE``, else ``kaggle``. It must be
    one of ``SOURCES`` (exactly: ``Kaggle`` or `` kaggle`` is not ``kaggle``) or an existing folder in the
    mirror's format; anything else is an error listing them, at once, before any download is tried."""
    value = source or os.environ.get(SOURCE_ENV) or "kaggle"
    if value in SOURCES:
        return value
    if Path(value).expanduser().is_dir():
        return str(Path(value).expanduser().resolve())
    given = f"source {value!r}" if source else f"{SOURCE_ENV}={value!r}"
    accepted = "; ".join(f"{name} ({what})" for name, what in SOURCES.items())
    raise DataError(f"{given} is not a catalogue source. Use one of: {accepted}; or the path of an existing "
                    "folder holding a copy in the mirror's format (a data/ folder of parquet files).")


def open_catalogue(data_root=None, source: str | None = None) -> Opened | None:
    """The catalogue from ``catalogue_source(source)``: ``kaggle``, Kaggle's files in the data folders (None
    when absent); ``mirror``, the Hugging Face mirror (a download); ``auto``, Kaggle's files, else the
    mirror; a folder, a local copy in the mirror's format. Any other value is an error naming the valid ones."""
    source = catalogue_source(source)
    folder = find_catalogue(data_root) if source in ("kaggle", "auto") else None
    if folder is not None:
        styles, repaired = read_styles(folder / "styles.csv")
        return Opened(styles, repaired, ImageSource(folder), f"Kaggle's files in {folder}", folder / "styles.csv")
    if source == "kaggle":
        return None
    name = MIRROR if source in ("mirror", "auto") else source
    styles, photos, report = load_mirror(name)
    return Opened(styles, [], ImagesInMemory(photos, name), f"the mirror {name}", None, report)


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
    first_id = pd.Series(duplicate_groups(with_image["id"], with_image["sha256"]), index=with_image.index)
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


def save_processed(folder, frame: pd.DataFrame, images: np.ndarray, styles: Path | None = None) -> dict[str, Path]:
    """Write catalogue.csv and images.npy (image k is row k of the table), via temporary files, then
    catalogue_source.json, which records what they were made from: the SHA-256 of ``styles`` (the
    catalogue's styles.csv; None for photos of your own). ``load_processed`` checks it.

    ``images`` may cover only the first rows (quick mode keeps the whole table, fewer images).
    """
    if len(images) > len(frame):
        raise ValueError(f"{len(images)} images but only {len(frame)} rows.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = processed_paths(folder)
    paths["source"].unlink(missing_ok=True)  # arrays without their record are never taken as current

    with replacing(paths["table"]) as tmp_table, replacing(paths["images"]) as tmp_images:
        frame.to_csv(tmp_table, index=False)
        with open(tmp_images, "wb") as fh:
            np.save(fh, images)
    record = {"styles": str(styles) if styles else None, "styles_sha256": sha256_of(styles) if styles else None,
              "rows": len(frame), "images": len(images)}
    atomic_write_bytes(paths["source"], json.dumps(record, indent=2).encode())
    return paths


def processed_paths(folder: Path) -> dict[str, Path]:
    return {"table": folder / "catalogue.csv", "images": folder / "catalogue_images.npy",
            "source": folder / "catalogue_source.json"}


def clear_processed(folder: Path) -> list[Path]:
    """Delete the processed arrays (chapter 01 does, when the catalogue is gone); returns what it removed."""
    removed = [p for p in processed_paths(folder).values() if p.is_file()]
    for path in removed:
        path.unlink()
    return removed


def check_processed_source(folder: Path, data_root=None) -> None:
    """Raise unless the processed arrays in ``folder`` were made from the catalogue found now."""
    source = processed_paths(folder)["source"]
    if not source.is_file():
        raise FileNotFoundError(f"{source} is missing, so the arrays beside it may be stale or half-written: "
                                "run notebooks/01_data.ipynb again.")
    record = json.loads(source.read_text())
    if record.get("styles_sha256") is None:  # photos of your own, saved without a catalogue
        return
    current = find_catalogue(data_root)
    if current is None:
        raise DataError(f"The arrays in {folder} were made from {record['styles']}, but no catalogue is found "
                        f"now. {HOW_TO_GET} Then run notebooks/01_data.ipynb again.")
    if sha256_of(current / "styles.csv") != record["styles_sha256"]:
        raise DataError(f"The arrays in {folder} were made from another styles.csv than {current / 'styles.csv'} "
                        "(its SHA-256 differs): run notebooks/01_data.ipynb again.")
