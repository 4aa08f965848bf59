"""A shop's own photos, one folder per class: ``root/<class>/*.jpg``.

If ``root`` has ``train/``, ``validation/`` (or ``val/``) and ``test/`` subfolders, each is a
split with its own class folders and is kept as given; otherwise every image is in one split,
``all``, to be divided with ``helpers.splits``. Images become RGB uint8 arrays of one size.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.catalogue import IMAGE_SIZE, decode_image
from helpers.fashion_mnist import DataError
from helpers.splits import leak_free_split
from helpers.tagging import prepare_catalogue

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "test": "test"}
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
LAYOUT = "root/<class>/<image>.jpg, or root/train|validation|val|test/<class>/<image>.jpg"


def _images_by_class(folder: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(p for p in d.iterdir() if p.suffix.lower() in EXTENSIONS)
            for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")}


def load_image_folder(root, size: tuple[int, int] = IMAGE_SIZE) -> tuple[dict, list[str]]:
    """``({split: (images, labels, paths)}, class_names)``; labels index ``class_names``."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root} is not a folder. Expected {LAYOUT}.")
    found = [d for d in root.iterdir() if d.is_dir() and d.name in SPLIT_NAMES]
    if {"validation", "val"} <= {d.name for d in found}:
        raise DataError(f"{root} has both validation/ and val/; keep one.")
    split_dirs = {SPLIT_NAMES[d.name]: d for d in found}
    by_split = {name: _images_by_class(d) for name, d in split_dirs.items()} or {"all": _images_by_class(root)}
    class_names = sorted({c for classes in by_split.values() for c, files in classes.items() if files})
    if not class_names:
        raise DataError(f"{root}: no images found. Expected {LAYOUT}.")
    out = {}
    for split, classes in by_split.items():
        paths = [(p, class_names.index(c)) for c, files in classes.items() for p in files]
        images = np.empty((len(paths), *size, 3), dtype=np.uint8)
        for k, (path, _) in enumerate(paths):
            images[k] = decode_image(path.read_bytes(), str(path), size)
        out[split] = (images, np.array([lab for _, lab in paths], dtype=np.int64), [p for p, _ in paths])
    return out, class_names


def folder_catalogue(root, head: str = "category", size: tuple[int, int] = IMAGE_SIZE, min_count: int = 1,
                     seed: int = 42):
    """A shop's folder tree as chapter 06-08 data (``tagging.CatalogueData`` with one head).

    The folder's own train / val / test split is kept when it has one (all three needed);
    otherwise the images are split 70 / 15 / 15, stratified by class, with byte-identical files
    kept in one split (``splits.leak_free_split``).
    """
    by_split, class_names = load_image_folder(root, size)
    if set(by_split) not in ({"all"}, {"train", "val", "test"}):
        raise DataError(f"{root} has only {sorted(by_split)}; give train/, validation/ (or val/) and test/, "
                        "or no split folders at all.")
    parts = list(by_split.items())
    images = np.concatenate([images for _, (images, _, _) in parts])
    paths = [p for _, (_, _, ps) in parts for p in ps]
    table = pd.DataFrame({"id": np.arange(len(paths)), "path": [str(p) for p in paths],
                          head: [class_names[k] for _, (_, labels, _) in parts for k in labels],
                          "sha256": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]})
    table["dup_group"] = table.groupby("sha256")["id"].transform("first")  # as chapter 01 marks duplicates
    if "all" in by_split:
        split = leak_free_split(table, head, seed=seed)
    else:
        split = pd.Series(np.repeat([name for name, _ in parts], [len(labels) for _, (_, labels, _) in parts]))
    return prepare_catalogue(table, images, split, min_count, heads=(head,)), table, split
