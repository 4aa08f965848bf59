"""Fashion-MNIST from its canonical IDX ``.gz`` files: find, verify, download, parse.

Lookup order: explicit ``data_root``, ``$FASHION_DATA_ROOT``, the repo's ``data/``
(each searched for a ``fashion-mnist/`` folder), then Debian's
``dataset-fashion-mnist`` location. If none holds the files, they are downloaded
from the official mirror into ``data/fashion-mnist/`` and checked against SHA-256.
"""

from __future__ import annotations

import gzip
import hashlib
import urllib.request
import zlib
from pathlib import Path

import numpy as np

from helpers.paths import REPO_ROOT, atomic_write_bytes, data_roots

CLASS_NAMES = (
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
)
OFFICIAL_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
SHA256 = {
    "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
    "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
    "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
    "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
}
IMAGE_MAGIC, LABEL_MAGIC = 2051, 2049
FIX = ("Delete it and rerun to download a fresh copy, or point $FASHION_DATA_ROOT at a folder "
       "whose fashion-mnist/ holds the four canonical files.")


class DataError(ValueError):
    """A data file is missing or damaged; the message names the file and the fix."""


def find_fashion_mnist(data_root=None) -> Path | None:
    """The first folder in the lookup order that holds all four files, or None.

    A folder met first that holds only some of them is an error naming the missing ones: falling back
    to another copy, or to a download, would hide the broken one."""
    candidates = [root / "fashion-mnist" for root in data_roots(data_root)] + [DEBIAN_DIR]
    for folder in candidates:
        if all((folder / name).is_file() for name in SHA256):
            return folder
        problem = _incomplete(folder)
        if problem:
            raise DataError(f"{problem}. Put the missing files there, or delete the folder to use the next "
                            "copy in the lookup order or a fresh download.")
    return None


def _incomplete(folder: Path) -> str | None:
    """What is wrong with a ``fashion-mnist/`` folder holding some of the four files but not all."""
    present = [name for name in SHA256 if (folder / name).is_file()]
    raw = [name[:-3] for name in SHA256 if (folder / name[:-3]).is_file()]
    if not (present or raw):
        return None
    missing = [name for name in SHA256 if name not in present]
    note = f"; {', '.join(raw)} lie there uncompressed: gzip them (gzip -k FILE)" if raw else ""
    return f"{folder} holds {len(present)} of the 4 files, {', '.join(missing)} missing{note}"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def download_fashion_mnist(dest: Path | None = None, base_url: str = OFFICIAL_MIRROR,
                           timeout: float = 60) -> Path:
    """Download the four files into ``dest``; each is kept only if its SHA-256 matches."""
    dest = Path(dest) if dest is not None else REPO_ROOT / "data" / "fashion-mnist"
    for name, expected in SHA256.items():
        target = dest / name
        if target.is_file() and sha256_of(target) == expected:
            continue
        url = base_url.rstrip("/") + "/" + name
        print(f"Downloading {url}")
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:
                payload = response.read()
        except OSError as err:  # URLError, timeouts, refused connections
            raise DataError(f"{url}: download failed ({err}). Fashion-MNIST was not found locally "
                            f"either; put the four files in {dest} or set $FASHION_DATA_ROOT to a "
                            "folder holding fashion-mnist/.") from err
        actual = hashlib.sha256(payload).hexdigest()
        if actual != expected:
            raise DataError(f"{url}: SHA-256 {actual} does not match the expected {expected}; "
                            "the download was discarded. Try again later or fetch the files by hand "
                            f"into {dest}.")
        atomic_write_bytes(target, payload)
    return dest


def read_idx(path: Path, expected_magic: int) -> np.ndarray:
    """Parse one gzipped IDX file into a uint8 array, validating magic and size."""
    path = Path(path)
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{path}: not a complete gzip file ({err}). {FIX}") from err
    if len(raw) < 8:
        raise DataError(f"{path}: too short to be an IDX file ({len(raw)} bytes). {FIX}")
    magic = int.from_bytes(raw[:4], "big")
    if magic != expected_magic:
        raise DataError(f"{path}: magic number {magic}, expected {expected_magic} "
                        f"({'images' if expected_magic == IMAGE_MAGIC else 'labels'}). {FIX}")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = int(np.prod(dims))
    if len(raw) - offset != expected:
        raise DataError(f"{path}: header promises {expected} bytes of data, file holds "
                        f"{len(raw) - offset}. {FIX}")
    return np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(dims)


def load_split(folder: Path, prefix: str, verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, 28, 28) and labels (n,) of ``train`` or ``t10k``."""
    image_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    label_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    if verify:
        for path in (image_path, label_path):
            if sha256_of(path) != SHA256[path.name]:
                raise DataError(f"{path}: SHA-256 differs from the canonical file. {FIX}")
    images = read_idx(image_path, IMAGE_MAGIC)
    labels = read_idx(label_path, LABEL_MAGIC)
    if len(images) != len(labels):
        raise DataError(f"{image_path} holds {len(images)} images but {label_path} holds "
                        f"{len(labels)} labels. {FIX}")
    if images.ndim != 3 or images.shape[1:] != (28, 28):
        raise DataError(f"{image_path}: images of shape {images.shape[1:]}, expected 28x28. {FIX}")
    if labels.size and labels.max() >= len(CLASS_NAMES):
        raise DataError(f"{label_path}: label {labels.max()} is not one of the 10 classes. {FIX}")
    return images, labels


def load_fashion_mnist(data_root=None, download: bool = True, verify: bool = True,
                       base_url: str = OFFICIAL_MIRROR):
    """``(x_train, y_train), (x_test, y_test)`` as uint8 arrays, shapes (n, 28, 28) and (n,)."""
    folder = find_fashion_mnist(data_root)
    if folder is None:
        if not download:
            searched = ", ".join(str(r / "fashion-mnist") for r in data_roots(data_root))
            raise DataError(f"Fashion-MNIST not found in {searched} or {DEBIAN_DIR}. Set "
                            "$FASHION_DATA_ROOT to a folder holding fashion-mnist/, or allow the download.")
        folder = download_fashion_mnist(base_url=base_url)
    return load_split(folder, "train", verify), load_split(folder, "t10k", verify)
