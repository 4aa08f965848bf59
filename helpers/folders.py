"""A shop's own photos, one folder per class: ``root/<class>/*.jpg``.

If ``root`` has ``train/``, ``validation/`` (or ``val/``) and ``test/`` subfolders, each is a
split with its own class folders and is kept as given; otherwise every image is in one split,
``all``, to be divided with ``helpers.splits``. Images become RGB uint8 arrays of one size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from helpers.catalogue import IMAGE_SIZE, decode_image
from helpers.fashion_mnist import DataError

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
