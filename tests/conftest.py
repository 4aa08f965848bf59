"""Shared fixtures: the real data (via $FASHION_DATA_ROOT or ../shared/data) and small fakes."""

import gzip
import os
from pathlib import Path

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

REPO = Path(__file__).resolve().parent.parent


def _real_root() -> Path | None:
    for candidate in (os.environ.get("FASHION_DATA_ROOT"), REPO.parent / "shared" / "data"):
        if candidate and (Path(candidate) / "fashion-mnist").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _real_root()
    if root is None:
        pytest.skip("real data not found: set FASHION_DATA_ROOT to a folder holding fashion-mnist/")
    return root


@pytest.fixture(autouse=True)
def quick_outputs(monkeypatch):
    """Tests never write into the committed figures/ or results/."""
    monkeypatch.setenv("SERIES_MODE", "quick")


@pytest.fixture(autouse=True)
def float32_policy():
    """A chapter's ``notebook.start`` may switch Keras to mixed_bfloat16 (helpers.precision); every test
    starts from float32 whatever ran before it."""
    yield
    import sys

    if "keras" in sys.modules:
        sys.modules["keras"].mixed_precision.set_global_policy("float32")


def write_idx(path: Path, array: np.ndarray, magic: int) -> Path:
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())
    return path


@pytest.fixture(scope="session")
def catalogue_audit(data_root):
    """(folder, styles, repaired lines, image source, audited table, audit) of the real catalogue."""
    from helpers import catalogue

    folder = catalogue.find_catalogue(data_root)
    if folder is None:
        pytest.skip("catalogue not in the data root")
    styles, repaired = catalogue.read_styles(folder / "styles.csv")
    source = catalogue.ImageSource(folder)
    table, audit = catalogue.audit_catalogue(styles, repaired, source)
    return folder, styles, repaired, source, table, audit
