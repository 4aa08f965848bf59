"""Run the series in order with papermill, then build the book of the chapters that ran (helpers.book).

    python -m helpers.runner --mode quick           # tiny subsets: does everything run? build/quick/
    python -m helpers.runner --mode lesson          # short training, whole test sets: build/lesson/
    python -m helpers.runner --mode full            # the committed results, in place
    python -m helpers.runner --only 2 3             # some chapters (numbers as 2 or 02)

The mode comes from --mode, else $SERIES_MODE, else quick (the same rule as the chapters). Without the
Kaggle catalogue, the chapters that need it (06-10) are skipped with the command that gets it.
Each chapter's library start-up logs go to build/<mode>/logs/NN.log, not to the terminal. A run holds its
mode's output folder (helpers.runlock): a second run in the same mode is refused with a message. A chapter
that fails leaves its partial run as NN_name.part.ipynb beside the executed chapters. After a run, also one
that stopped at a failing chapter, the book of the run (build/book/index.html in full mode, read from
notebooks/; build/<mode>/book/index.html otherwise) shows the chapters that ran and names the others with the
reason. Exit status: 0 when every chapter that could run ran (skipped ones are listed) and the book was built,
1 when a chapter failed or the book did not build (a link that leads nowhere: the message names it), 2 for
bad arguments, 130 when stopped with Ctrl-C.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import papermill as pm
from nbclient.exceptions import DeadKernelError

from helpers import runlock
from helpers.failures import failing_cell, kernel_died
from helpers.paths import (
    DATA_ROOT_ENV,
    MODE_ENV,
    MODES,
    REPO_ROOT,
    OutputNotWritableError,
    output_root,
    remove_stale_parts,
    replacing,
    series_mode,
    writable_dir,
)

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CELL_TIMEOUT_S = 3600
DEFAULT_SEED = 42  # the parameters cell's value: only other values are injected
CATALOGUE_CHAPTERS = ("06", "07", "08", "09", "10")  # they read chapter 01's cleaned catalogue arrays
# the chapters whose saved outputs a chapter reads (the teaching guide's diagram)
READS_FROM = {"05": ("02", "03", "04"), "06": ("01",), "07": ("06",), "08": ("06",), "09": ("06",),
              "10": ("06", "09")}
CHAPTER_NAME = re.compile(r"\d\d_[A-Za-z0-9_-]+\.ipynb")  # 02_benchmark.ipynb; not *.part or *.nbconvert


class SeriesError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell. ``timings`` lists the chapters that
    ran before it."""

    timings: list[dict] = []


def prerequisites(chapter: str) -> list[str]:
    """Every chapter that must have run before ``chapter`` (``"07"``), directly or through another, in order."""
    found, todo = set(), list(READS_FROM.get(chapter, ()))
    while todo:
        earlier = todo.pop()
        if earlier not in found:
            found.add(earlier)
            todo += READS_FROM.get(earlier, ())
    return sorted(found)


def chapters(notebooks_dir: Path | None = None) -> list[Path]:
    """The numbered chapters (``01_*.ipynb`` ...) in ``notebooks/`` or ``notebooks_dir``, in order;
    leftovers such as ``02_benchmark.part.ipynb`` or ``02_benchmark.nbconvert.ipynb`` are not chapters."""
    folder = notebooks_dir or NOTEBOOKS_DIR
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if CHAPTER_NAME.fullmatch(p.name))


def select(only: list[str] | None, available: list[Path] | None = None) -> list[Path]:
    """The chapters named by ``--only`` (``2``, ``02``, ...), all of them when ``only`` is None;
    a number that names no chapter is an error listing the valid ones."""
    available = chapters() if available is None else available
    if only is None:
        return available
    by_number = {p.name[:2]: p for p in available}
    wanted = []
    for item in only:
        number = f"{int(item):02d}" if item.isdigit() else item
        if number not in by_number:
            raise ValueError(f"--only {item}: there is no chapter {item}; the chapters are {', '.join(by_number)}.")
        wanted.append(number)
    return [p for p in available if p.name[:2] in wanted]


def executed_dir(mode: str) -> Path:
    """Where executed chapters go: in place in full mode, build/<mode>/notebooks otherwise."""
    return NOTEBOOKS_DIR if mode == "full" else output_root(mode) / "notebooks"


def book_dir(mode: str) -> Path:
    """Where the book of a run goes: build/book in full mode, build/<mode>/book otherwise."""
    return REPO_ROOT / "build" / "book" if mode == "full" else output_root(mode) / "book"


def logs_dir(mode: str) -> Path:
    """Where each chapter's kernel log goes (the library start-up lines the terminal is spared)."""
    return (REPO_ROOT / "build" if mode == "full" else output_root(mode)) / "logs"


@contextmanager
def _stderr_to(path: Path):
    """Send this process's file descriptor 2, which the kernel inherits, to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "wb") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def catalogue_available() -> bool:
    """Kaggle's files are found in the data folders, or ``$FASHION_CATALOGUE`` asks for the mirror or names a
    folder in its format (chapter 01 loads it). A value that is neither (a typo such as ``mirorr``) raises
    ``DataError`` listing the accepted ones: ``run_series`` asks before running any chapter, so the series
    stops before 01 instead of failing there and losing 02-05. A folder is put back into the environment as
    an absolute path, since the chapters run from notebooks/. ``run_series`` puts an explicit ``data_root``
    into ``$FASHION_DATA_ROOT`` first."""
    from helpers.catalogue import SOURCE_ENV, SOURCES, catalogue_source, find_catalogue

    source = catalogue_source()
    if source not in SOURCES:
        os.environ[SOURCE_ENV] = source
    return source != "kaggle" or find_catalogue() is not None


def run_series(mode: str, seed: int = DEFAULT_SEED, epochs: int | None = None, data_root: str | None = None,
               only: list[str] | None = None, skipped: dict | None = None) -> list[dict]:
    """Execute each selected chapter in order; return the minutes each took (kernel start included).

    The run first takes its mode's output folder (``helpers.runlock``), so a second run in the same mode is
    refused. Chapters that need the catalogue are skipped when it is absent; their reasons go into
    ``skipped``. When a chapter fails, the ``SeriesError`` holds the timings of the chapters before it.
    """
    runlock.claim("the series runner", mode)
    try:
        return _run_chapters(mode, seed, epochs, data_root, only, {} if skipped is None else skipped)
    finally:
        runlock.release()


def _run_chapters(mode: str, seed: int, epochs: int | None, data_root: str | None, only: list[str] | None,
                  skipped: dict) -> list[dict]:
    out_dir = writable_dir(executed_dir(mode))
    remove_stale_parts(out_dir)  # what a killed run left
    # The mode and the data folder reach the chapters through the environment, and only parameters that
    # differ from the parameters cell are injected: a default run's notebooks carry no injected cell, and
    # a committed notebook never carries `mode = "full"`, which nbval's quick rerun would obey.
    os.environ[MODE_ENV] = mode
    if data_root is not None:
        os.environ[DATA_ROOT_ENV] = str(Path(data_root).resolve())
    params = {k: v for k, v in (("seed", seed), ("epochs", epochs))
              if v is not None and not (k == "seed" and v == DEFAULT_SEED)}
    has_catalogue = catalogue_available()
    timings = []
    for source in select(only):
        if source.name[:2] in CATALOGUE_CHAPTERS and not has_catalogue:
            skipped[source.name] = "needs the Kaggle catalogue"
            print(f"-- {source.name}: skipped, it needs the Kaggle catalogue", flush=True)
            continue
        runlock.claim(f"the series runner, at {source.name}", mode)
        print(f"== {source.name} ({mode})", flush=True)
        start = time.perf_counter()
        try:
            _run_chapter(source, out_dir / source.name, params, mode)
        except SeriesError as err:
            err.timings = timings
            raise
        timings.append({"notebook": source.name, "minutes": round((time.perf_counter() - start) / 60, 2)})
        print(f"   done in {timings[-1]['minutes']} min", flush=True)
    return timings


def _run_chapter(source: Path, executed: Path, params: dict, mode: str) -> None:
    """Execute ``source`` into ``executed`` through a temporary file of its own. A run that fails leaves its
    partial notebook as ``NN_name.part.ipynb`` beside it (the message names it)."""
    kept = executed.with_name(executed.stem + ".part.ipynb")
    log = logs_dir(mode) / f"{source.stem}.log"
    with replacing(executed, suffix=".ipynb") as tmp:
        try:
            with _stderr_to(log):
                pm.execute_notebook(source, tmp, parameters=params, kernel_name="python3",
                                    cwd=str(NOTEBOOKS_DIR), execution_timeout=CELL_TIMEOUT_S,
                                    progress_bar=False, log_output=False,
                                    # C++ start-up logs go to the log file, not into the notebook
                                    extra_arguments=["--IPKernelApp.capture_fd_output=False"])
        except pm.PapermillExecutionError as err:
            _keep(tmp, kept)
            raise SeriesError(f"{source.name} failed at {failing_cell(kept)} (partial run kept in "
                              f"{kept}; the kernel's log is {log})") from err
        except DeadKernelError as err:
            _keep(tmp, kept)
            raise SeriesError(kernel_died(source, kept, log, output_root(mode) / "results", mode)) from err
        except KeyboardInterrupt:
            where = f"partial run kept in {kept}" if _keep(tmp, kept) else "it had not started"
            raise KeyboardInterrupt(f"{source.name} ({where})") from None
    kept.unlink(missing_ok=True)  # the partial run of an earlier failure is out of date


def _keep(tmp: Path, kept: Path) -> bool:
    """Keep a failed run's notebook as ``kept``; False when papermill had written nothing yet."""
    if tmp.stat().st_size == 0:
        kept.unlink(missing_ok=True)
        return False
    os.replace(tmp, kept)
    return True


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"must be between 0 and 2**32 - 1, got {value}")
    return value


def _data_root(text: str) -> str:
    path = Path(text).expanduser().resolve()  # relative to where the command was typed
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} is not a folder")
    return str(path)


def render_book(mode: str, timings: list[dict], skipped: dict) -> Path | None:
    """Build the book of the chapters that ran and say where it is; return its index page, or None (with the
    reason printed) when the book could not be built: the run's own results stand either way."""
    from helpers.book import BookError, build_book

    # full mode: every chapter of notebooks/ (the committed results); other modes: the chapters of this run
    ran = None if mode == "full" else [t["notebook"] for t in timings]
    total = sum(t["minutes"] for t in timings)
    print(f"{len(timings)} chapters in {total:.1f} min; building the book", flush=True)
    try:
        index = build_book(executed_dir(mode), book_dir(mode), ran, skipped)
    except BookError as err:
        print(f"The book was not built: {err}", file=sys.stderr)
        return None
    print(f"The book: {index}")
    return index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=MODES, default=None,
                        help="default: $SERIES_MODE, else quick")
    parser.add_argument("--seed", type=_seed, default=DEFAULT_SEED)
    parser.add_argument("--epochs", type=_positive, default=None, help="override every chapter's epochs (>= 1)")
    parser.add_argument("--data-root", type=_data_root, default=None, help="folder holding fashion-mnist/ etc.")
    parser.add_argument("--only", nargs="+", metavar="N", help="chapter numbers to run, e.g. 2 3 or 02 03")
    args = parser.parse_args(argv)
    try:
        mode = series_mode(args.mode or os.environ.get(MODE_ENV) or "quick")
        select(args.only)
        catalogue_available()  # a FASHION_CATALOGUE that names no source stops here, before any chapter
    except ValueError as err:
        parser.error(str(err))
    skipped: dict[str, str] = {}
    try:
        timings = run_series(mode, args.seed, args.epochs, args.data_root, args.only, skipped)
    except SeriesError as err:
        print(f"Series stopped: {err}", file=sys.stderr)
        if err.timings:
            render_book(mode, err.timings, skipped)
        return 1
    except (runlock.OutputInUseError, OutputNotWritableError) as err:
        print(f"Series stopped: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        print(f"\nStopped by Ctrl-C during {err}. Nothing committed was replaced.", file=sys.stderr)
        return 130
    status = 0 if render_book(mode, timings, skipped) else 1
    if skipped:
        from helpers.catalogue import HOW_TO_GET

        print(f"Skipped {', '.join(skipped)}: they need the Kaggle catalogue. {HOW_TO_GET} Without a Kaggle "
              "account, FASHION_CATALOGUE=mirror loads it from its Hugging Face mirror.")
    return status


if __name__ == "__main__":
    sys.exit(main())
