"""Where the series reads its data from and writes its results to.

Data lookup order (first hit wins): an explicit argument, the ``FASHION_DATA_ROOT``
environment variable (a folder holding ``fashion-mnist/`` and
``fashion-product-images-small/``, like ``../shared/data``), the repository's ``data/``.

Outputs depend on the mode: ``full`` writes the committed results (``figures/``,
``results/``); ``lesson`` (short training, whole test sets: a class can watch it; a chapter's default) and
``quick`` (tiny subsets: checks that everything runs; the default here and in the runner), write under
``build/<mode>/`` so that they never overwrite what is committed.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
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

    Neither default replaces the committed full-run results: full mode is asked for by name (``make series``,
    the runner's ``--mode full``, ``SERIES_MODE=full`` or ``mode = "full"`` in a chapter's parameters cell,
    whose own default is lesson).
    """
    mode = mode or os.environ.get(MODE_ENV) or "quick"
    if mode not in MODES:
        raise ValueError(f"Unknown mode {mode!r} (from the argument or ${MODE_ENV}); use one of {MODES}.")
    return mode


def output_root(mode: str | None = None) -> Path:
    """Root for figures/ and results/: the repo in full mode, build/<mode> in the others."""
    mode = series_mode(mode)
    return REPO_ROOT if mode == "full" else REPO_ROOT / "build" / mode


class OutputNotWritableError(OSError):
    """The series cannot write where its outputs go (a read-only checkout, a folder of another user)."""


def writable_dir(path) -> Path:
    """Make the folder ``path`` (and its parents) and check that this process can write in it; otherwise
    stop with one message that names the folder and the fix."""
    path = path if isinstance(path, Path) else Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        if not os.access(path, os.W_OK):  # an existing folder of a read-only mount, or of another user
            code = errno.EROFS if os.statvfs(path).f_flag & os.ST_RDONLY else errno.EACCES
            raise OSError(code, os.strerror(code), str(path))
    except OSError as err:
        if err.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):
            raise
        why = "the file system is read-only" if err.errno == errno.EROFS else "permission denied"
        raise OutputNotWritableError(
            f"Cannot write to {path} ({why}). The series writes its results, figures and executed chapters "
            f"inside its checkout, {REPO_ROOT}: copy the checkout to a folder you can write to (for example "
            f"`cp -r {REPO_ROOT} ~/fashion-series`) and run it from there.") from None
    return path


def results_dir(mode: str | None = None) -> Path:
    return writable_dir(output_root(mode) / "results")


def figures_dir(mode: str | None = None) -> Path:
    return writable_dir(output_root(mode) / "figures")


def processed_dir(mode: str | None = None) -> Path:
    """Cleaned arrays made by chapter 01 (git-ignored): data/processed, or build/<mode>/processed."""
    root = REPO_ROOT / "data" / "processed" if series_mode(mode) == "full" else output_root(mode) / "processed"
    return writable_dir(root)


# the temporary names ``replacing`` makes: .<name>.<writer's PID>-<8 random characters>.part[<suffix>]
TEMPORARY_NAME = re.compile(r"^\..+\.(?P<pid>\d+)-[a-z0-9_]{8}\.part(\.[^.]+)*$")


@contextmanager
def replacing(path, suffix: str = "") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; when the block ends, rename it onto ``path``.

    The name is hidden, unique to this writer, holds this process's ID (so a leftover of a killed writer
    can be told from a live one: ``remove_stale_parts``) and ends in ``.part`` + ``suffix``, for
    libraries that choose the format by extension (``suffix=".keras"``). If the block fails, the temporary
    file is removed and ``path`` is left as it was. Two writers of the same file never share a temporary
    name, so neither can rename the other's half-written file into place; the last complete one wins."""
    path = Path(path)
    writable_dir(path.parent)
    handle, name = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}-", suffix=f".part{suffix}", dir=path.parent)
    os.close(handle)
    tmp = Path(name)
    tmp.chmod(0o644)  # mkstemp makes it private; the finished file is an ordinary one
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def is_running(pid: int) -> bool:
    """Whether a process with this ID is running (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no process could have such an ID
        return False
    except PermissionError:  # a process of another user
        pass
    return True


def remove_stale_parts(*folders) -> list[Path]:
    """Delete the temporary files (and folders being built, such as a feed's) that a killed writer left in
    ``folders``: those named like ``replacing``'s whose writer (the process ID in the name) is no longer
    running. Returns what it removed."""
    removed = []
    for folder in folders:
        for path in Path(folder).glob(".*.part*"):
            match = TEMPORARY_NAME.match(path.name)
            if not match or is_running(int(match["pid"])) or path.is_symlink():
                continue
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def atomic_write_bytes(path: Path, payload: bytes) -> None:
    """Write ``payload`` to a temporary file beside ``path``, then rename it into place."""
    with replacing(path) as tmp:
        tmp.write_bytes(payload)


def save_csv(table, name: str, mode: str | None = None, index: bool = True) -> Path:
    """Write a pandas table to ``<results>/<name>.csv`` through a temporary file."""
    path = results_dir(mode) / f"{name}.csv"
    atomic_write_bytes(path, table.to_csv(index=index).encode())
    return path
