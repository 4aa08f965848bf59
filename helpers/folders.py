"""A shop's own photos, one folder per class: ``root/<class>/*.jpg``.

If ``root`` has ``train/``, ``validation/`` (or ``val/``) and ``test/`` subfolders (any case: ``Train/`` is
``train/``), each is a split with its own class folders and is kept as given; otherwise every image is in
one split, ``all``, to be divided with ``helpers.splits``. Images become RGB uint8 arrays of one size,
decoded as a person sees them (``helpers.photos``: upright, transparency on white).

Hidden files and folders (``.thumb.jpg``, macOS's ``._0.jpg`` and ``__MACOSX/``) are skipped, as the
catalogue reader skips them, and so are files whose extension is not a photo's. Every other layout is an
error that names what the loader would not use: a folder inside a class folder (``bag/2020/``, or a folder
named ``x.jpg``), class folders beside split folders, photos outside any class folder, a symlink that leads
nowhere, a single class (nothing to learn), a class too small for the 5:1:1 split.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.catalogue import IMAGE_SIZE
from helpers.fashion_mnist import DataError
from helpers.photos import checked_size, decode_file, shown_path
from helpers.splits import group_rare, leak_free_split
from helpers.tagging import prepare_catalogue

SPLIT_NAMES = {"train": "train", "validation": "val", "val": "val", "test": "test"}  # folder name, lower case
EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
LAYOUT = "root/<class>/<image>.jpg, or root/train|validation|val|test/<class>/<image>.jpg"
MIN_PER_CLASS = 7  # the 5:1:1 split holds out 1 in 7 for test: a class needs 7 photos to reach every split
MAX_ARRAY_BYTES = 4 * 2**30  # the decoded photos of one load; more does not fit a laptop beside training


def _visible(path: Path) -> bool:
    return not path.name.startswith(".") and path.name != "__MACOSX"


def _split_folders(root: Path) -> dict[str, Path]:
    """The split folders of ``root`` by split, any case; an error when a class folder lies beside them."""
    folders = [d for d in sorted(root.iterdir()) if d.is_dir() and _visible(d)]
    splits = {}
    for folder in folders:
        split = SPLIT_NAMES.get(folder.name.lower())
        if split in splits:
            raise DataError(f"{shown_path(root)} has both {splits[split].name}/ and {folder.name}/ for the {split} "
                            "split; keep one.")
        if split:
            splits[split] = folder
    beside = [d.name for d in folders if d.name.lower() not in SPLIT_NAMES]
    if splits and beside:
        raise DataError(f"{shown_path(root)} has split folders ({', '.join(d.name for d in splits.values())}) and "
                        f"also {', '.join(f'{name}/' for name in beside)} beside them, whose photos would not be "
                        "used: move each class folder into the splits (train/<class>/...), or remove it.")
    return splits


def _images_by_class(folder: Path) -> dict[str, list[Path]]:
    """Per class folder of ``folder``, its photos; an error naming anything in a layout the loader does not use."""
    classes = {}
    for entry in sorted(p for p in folder.iterdir() if _visible(p)):
        if entry.is_dir():
            classes[entry.name] = _photos_in_class(entry)
        elif entry.suffix.lower() in EXTENSIONS:
            raise DataError(f"{shown_path(entry)} is not in a class folder, so it has no class: move it into "
                            f"{shown_path(folder)}/<class>/. Expected {LAYOUT}.")
    return classes


def _photos_in_class(folder: Path) -> list[Path]:
    photos = []
    for path in sorted(p for p in folder.iterdir() if _visible(p)):
        if path.is_symlink() and not path.exists():
            raise DataError(f"{shown_path(path)} is a symlink that leads nowhere (a loop, or a missing file); "
                            "remove it, or put the photo itself there.")
        if path.is_dir():
            raise DataError(f"{shown_path(path)}/ is a folder inside the class folder {folder.name}/, and photos "
                            f"must lie directly in their class folder: move its photos into {folder.name}/, or "
                            f"make it a class folder of its own beside {folder.name}/.")
        if path.suffix.lower() in EXTENSIONS:
            photos.append(path)
    return photos


def _check_memory(count: int, size: tuple[int, int]) -> None:
    needed = count * size[0] * size[1] * 3
    if needed > MAX_ARRAY_BYTES:
        raise DataError(f"{count:,} photos at size={size} need {needed / 2**30:.1f} GiB as arrays, more than the "
                        f"{MAX_ARRAY_BYTES / 2**30:.0f} GiB this loader allows: choose a smaller size (the series "
                        f"uses (80, 60): {count * 80 * 60 * 3 / 2**30:.2f} GiB).")


def load_image_folder(root, size: tuple[int, int] = IMAGE_SIZE) -> tuple[dict, list[str]]:
    """``({split: (images, labels, paths)}, class_names)``; labels index ``class_names``.

    ``size`` is (height, width), two positive integers; the photos must fit in 4 GiB at that size."""
    size = checked_size(size)
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{shown_path(root)} is not a folder. Expected {LAYOUT}.")
    split_dirs = _split_folders(root)
    by_split = {name: _images_by_class(d) for name, d in split_dirs.items()} or {"all": _images_by_class(root)}
    class_names = sorted({c for classes in by_split.values() for c, files in classes.items() if files})
    if not class_names:
        raise DataError(f"{shown_path(root)}: no images found. Expected {LAYOUT}.")
    if len(class_names) == 1:
        raise DataError(f"{shown_path(root)} has one class only ({class_names[0]}): there is nothing to tell apart. "
                        f"Add a folder for each other class. Expected {LAYOUT}.")
    _check_memory(sum(len(files) for classes in by_split.values() for files in classes.values()), size)
    out = {}
    for split, classes in by_split.items():
        paths = [(p, class_names.index(c)) for c, files in classes.items() for p in files]
        images = np.empty((len(paths), *size, 3), dtype=np.uint8)
        for k, (path, _) in enumerate(paths):
            images[k] = decode_file(path, size)
        out[split] = (images, np.array([lab for _, lab in paths], dtype=np.int64), [p for p, _ in paths])
    return out, class_names


def _check_class_sizes(root, by_split: dict, class_names: list[str], min_count: int) -> None:
    """Flat folders: refuse a class the 5:1:1 split cannot spread (``min_count`` leaves it out instead).
    Given splits: warn about a class missing from a split, which then says nothing about it."""
    if set(by_split) == {"all"}:
        counts = np.bincount(by_split["all"][1], minlength=len(class_names))
        small = [f"{name} ({n} photo{'s' * (n != 1)})" for name, n in zip(class_names, counts.tolist(), strict=True)
                 if min_count <= n < MIN_PER_CLASS]
        if small:
            raise DataError(f"{shown_path(root)}: too few photos in {', '.join(small)} for the 5:1:1 split, which "
                            f"needs {MIN_PER_CLASS} per class to put one in each of train, validation and test: add "
                            f"photos, remove the folder, or pass min_count={MIN_PER_CLASS} to leave such classes out.")
        return
    present = {split: {class_names[k] for k in labels.tolist()} for split, (_, labels, _) in by_split.items()}
    gaps = [f"the {split} split has no photo of {', '.join(sorted(set(class_names) - present[split]))}"
            for split in ("train", "val", "test") if len(present[split]) < len(class_names)]
    if gaps:
        warnings.warn(f"{shown_path(root)}: {'; '.join(gaps)}. Results on a split say nothing about a class it lacks: "
                      "add photos of it there.", stacklevel=3)


def folder_catalogue(root, head: str = "category", size: tuple[int, int] = IMAGE_SIZE, min_count: int = 1,
                     seed: int = 42):
    """A shop's folder tree as chapter 06-08 data (``tagging.CatalogueData`` with one head).

    The folder's own train / val / test split is kept when it has one (all three needed);
    otherwise the images are split 5:1:1 (about 71 / 14 / 14 per cent), stratified by class, with byte-identical files
    kept in one split (``splits.leak_free_split``); each class then needs 7 photos (or fewer than
    ``min_count``, to be left out).
    """
    by_split, class_names = load_image_folder(root, size)
    if set(by_split) not in ({"all"}, {"train", "val", "test"}):
        raise DataError(f"{root} has only {sorted(by_split)}; give train/, validation/ (or val/) and test/, "
                        "or no split folders at all.")
    _check_class_sizes(root, by_split, class_names, min_count)
    parts = list(by_split.items())
    images = np.concatenate([images for _, (images, _, _) in parts])
    paths = [p for _, (_, _, ps) in parts for p in ps]
    table = pd.DataFrame({"id": np.arange(len(paths)), "path": [str(p) for p in paths],
                          head: [class_names[k] for _, (_, labels, _) in parts for k in labels],
                          "sha256": [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths]})
    table["dup_group"] = table.groupby("sha256")["id"].transform("first")  # as chapter 01 marks duplicates
    if "all" in by_split:
        strata = table.assign(**{head: group_rare(table[head], min_count)})  # classes left out do not stratify
        split = leak_free_split(strata, head, seed=seed)
    else:
        split = pd.Series(np.repeat([name for name, _ in parts], [len(labels) for _, (_, labels, _) in parts]))
    return prepare_catalogue(table, images, split, min_count, heads=(head,)), table, split
