"""Where the series reads its data from and writes its results to.

Data lookup order (first hit wins): an explicit argument, the ``FASHION_DATA_ROOT``
environment variable (a folder holding ``fashion-mnist/`` and
``fashion-product-images-small/``, like ``../shared/data``), the repository's ``data/``.

Outputs depend on the mode: ``full`` writes the committed results (``figures/``,
``results/``); ``lesson`` (short training, whole test sets: a class can watch it) and ``quick``, the
default (tiny subsets: checks that everything runs), write under ``build/<mode>/`` so that they never
overwrite what is committed.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA_ROOT_ENV = "FASHION_DATA_ROOT"
MODE_ENV = "SERIES_MODE"
MODES = ("quick", "lesson", "full")


def data_roots(explicit: str | os.PathLike | None = None) -> list[Path]:
    """The folders searched for datasets, in order."""
    roots = []
    if explicit is not None:
        if not Path(explicit).is_dir():
            raise FileNotFoundError(f"data_root {explicit} is not a folder: pass the folder that holds "
                                    "fashion-mnist/ (and fashion-product-images-small/), or None for the default.")
        roots.append(Path(explicit))
    if os.environ.get(DATA_ROOT_ENV):
        roots.append(Path(os.environ[DATA_ROOT_ENV]))
    roots.append(REPO_ROOT / "data")
    return roots


def series_mode(mode: str | None = None) -> str:
    """The run mode: the argument, else ``$SERIES_MODE``, else ``quick``.

    Quick is the default so that a chapter opened in JupyterLab and run as it is never replaces the
    committed full-run results; lesson and full mode are asked for by name (``make series``, the runner's
    ``--mode full``, ``SERIES_MODE=full`` or ``mode = "full"`` in the parameters cell).
    """
    mode = mode or os.environ.get(MODE_ENV) or "quick"
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r} (from the argument or ${MODE_ENV}); use one of {MODES}.")
    return mode


def output_root(mode: str | None = None) -> Path:
    """Root for figures/ and results/: the repo in full mode, build/<mode> in the others."""
    mode = series_mode(mode)
    return REPO_ROOT if mode == "full" else REPO_ROOT / "build" / mode


def results_dir(mode: str | None = None) -> Path:
    path = output_root(mode) / "results"
    path.mkdir(parents=True, exist_ok=True)
    return path


def figures_dir(mode: str | None = None) -> Path:
    path = output_root(mode) / "figures"
    path.mkdir(parents=True, exist_ok=True)
    return path


def processed_dir(mode: str | None = None) -> Path:
    """Cleaned arrays made by chapter 01 (git-ignored): data/processed, or build/<mode>/processed."""
    path = REPO_ROOT / "data" / "processed" if series_mode(mode) == "full" else output_root(mode) / "processed"
    path.mkdir(parents=True, exist_ok=True)
    return path


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(payload)
    os.replace(tmp, path)


def save_csv(table, name: str, mode: str | None = None, index: bool = True) -> Path:
    """Write a pandas table to ``<results>/<name>.csv`` through a temporary file."""
    path = results_dir(mode) / f"{name}.csv"
    atomic_write_bytes(path, table.to_csv(index=index).encode())
    return path
