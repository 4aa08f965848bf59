"""The catalogue without a Kaggle account: the Hugging Face mirror ``ashraq/fashion-product-images-small``.

The mirror holds the catalogue's ten columns (id, gender, ..., productDisplayName) and each row's photo,
and loads anonymously with the ``datasets`` library. Kaggle's ``styles.csv`` and ``images.zip`` stay the
reference the committed results come from; ``mirror_report`` says how a mirror's rows differ from them.

``load_mirror`` takes the mirror's name or a local folder in its format (a ``data/`` folder of parquet
files, as the Hub stores it), through the same ``datasets.load_dataset`` call, and gives the rows and each
row's photo bytes; ``catalogue.open_catalogue`` serves those photos like Kaggle's. This module reads only
the catalogue's schema (``catalogue_schema``), never ``catalogue`` itself, which calls it.
"""

from __future__ import annotations

import pandas as pd

from helpers.catalogue_schema import COLUMNS, LABELS, whole_numbers
from helpers.fashion_mnist import DataError

MIRROR = "ashraq/fashion-product-images-small"
KAGGLE_ROWS = 44446  # rows of Kaggle's styles.csv (5 of them without a photo)
KAGGLE_REPAIRED = 22  # rows of Kaggle's styles.csv whose unquoted comma chapter 01 repairs


def load_mirror(source: str = MIRROR) -> tuple[pd.DataFrame, dict[int, bytes], dict]:
    """``(styles, photos, report)`` from the mirror (downloaded and cached by ``datasets``) or a local
    copy in its format. ``styles`` has styles.csv's columns and types; a repeated id keeps its first row;
    ``photos`` maps an id to its stored JPEG bytes (a row without a photo has none)."""
    try:
        import datasets
    except ImportError as err:
        raise DataError("The mirror needs the `datasets` library: run `make setup` or `pip install datasets`.") from err
    try:
        table = datasets.load_dataset(str(source), split="train")
    except (OSError, ValueError) as err:  # no network, an unknown name, a folder that is not a dataset
        raise DataError(f"The catalogue mirror {source} could not be loaded ({type(err).__name__}: {err}). "
                        "Check the connection or the folder, or use Kaggle's files instead.") from err
    missing = [c for c in [*COLUMNS, "image"] if c not in table.column_names]
    if missing:
        raise DataError(f"{source} lacks the columns {missing}; a catalogue mirror needs {[*COLUMNS, 'image']}.")
    table = table.cast_column("image", datasets.Image(decode=False))  # the stored JPEG bytes, not decoded
    frame = table.remove_columns([c for c in table.column_names if c not in COLUMNS]).to_pandas()[COLUMNS]
    styles = _as_styles(frame, source)
    repeated = styles["id"].duplicated()
    photos = {}
    for image_id, image, again in zip(styles["id"], table["image"], repeated):
        if not again and image and image.get("bytes"):
            photos[int(image_id)] = image["bytes"]
    kept = styles[~repeated].reset_index(drop=True)
    return kept, photos, mirror_report(kept, int(repeated.sum()), len(photos))


def _as_styles(frame: pd.DataFrame, source) -> pd.DataFrame:
    """The mirror's columns with read_styles' conventions: text with "" and "NA" missing, id and year whole
    numbers (year may be missing); a value that is not one names its row, counted from 0 as ``datasets`` does."""
    styles = frame.copy()
    for column in COLUMNS:
        if column not in ("id", "year"):
            styles[column] = styles[column].astype("string").replace({"": pd.NA, "NA": pd.NA})
    fix = "Correct that row of the copy, or use Kaggle's files instead (FASHION_CATALOGUE=kaggle)."
    for column in ("id", "year"):
        styles[column] = whole_numbers(frame[column], column, lambda row: f"{source}, row {row}", fix,
                                       required=column == "id")
    styles["id"] = styles["id"].astype("int64")
    return styles


def mirror_report(styles: pd.DataFrame, repeated: int, photos: int) -> dict:
    """How the mirror's rows differ from Kaggle's styles.csv, in counts a reader can compare."""
    return {"rows": len(styles) + repeated, "rows of Kaggle's styles.csv": KAGGLE_ROWS,
            "rows repeating an id (dropped)": repeated, "rows without a photo": len(styles) - photos,
            "rows repaired": f"none needed (Kaggle's CSV needs {KAGGLE_REPAIRED})",
            "missing labels": int(styles[LABELS].isna().sum().sum())}
