"""Run the series in order with papermill, then render HTML with an index page.

    python -m helpers.runner --mode quick           # minutes; writes under build/quick/
    python -m helpers.runner --mode full            # the committed results, in place

Stops at the first failing notebook, naming it and the failing cell.
"""

from __future__ import annotations

import argparse
import html
import os
import sys
import time
from pathlib import Path

import nbformat
import papermill as pm
from nbconvert import HTMLExporter

from helpers.paths import MODE_ENV, REPO_ROOT, output_root

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
CELL_TIMEOUT_S = 3600


class SeriesError(RuntimeError):
    """A notebook failed; the message names the notebook and the cell."""


def chapters(notebooks_dir: Path | None = None) -> list[Path]:
    """The numbered chapters (``01_*.ipynb`` ...) in ``notebooks/`` or ``notebooks_dir``, in order."""
    folder = notebooks_dir or NOTEBOOKS_DIR
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb") if ".part" not in p.name)


def _failing_cell(path: Path) -> str:
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                first_line = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return (f"the cell run as In [{cell.execution_count}] ({first_line!r}): "
                        f"{output['ename']}: {output['evalue']}")
    return "no cell recorded an error"


def executed_dir(mode: str) -> Path:
    """Where executed chapters go: in place in full mode, build/quick/notebooks in quick mode."""
    return NOTEBOOKS_DIR if mode == "full" else output_root(mode) / "notebooks"


def html_dir(mode: str) -> Path:
    return REPO_ROOT / "build" / "html" if mode == "full" else output_root(mode) / "html"


def run_series(mode: str, seed: int = 42, epochs: int | None = None, data_root: str | None = None,
               only: list[str] | None = None) -> list[dict]:
    """Execute each chapter in order; return the minutes each took (kernel start included)."""
    out_dir = executed_dir(mode)
    out_dir.mkdir(parents=True, exist_ok=True)
    # The mode reaches the chapters through the environment, not as an injected parameter: a committed
    # notebook must not carry `mode = "full"`, or nbval's quick rerun of it would train in full mode.
    os.environ[MODE_ENV] = mode
    params = {"seed": seed, **{k: v for k, v in (("epochs", epochs), ("data_root", data_root)) if v is not None}}
    timings = []
    for source in chapters():
        if only and not any(source.name.startswith(prefix) for prefix in only):
            continue
        target = out_dir / source.name
        tmp = target.with_name(target.stem + ".part.ipynb")
        print(f"== {source.name} ({mode})", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(source, tmp, parameters=params, kernel_name="python3",
                                cwd=str(NOTEBOOKS_DIR), execution_timeout=CELL_TIMEOUT_S,
                                progress_bar=False, log_output=False,
                                # C++ start-up logs go to the terminal, not into the notebook
                                extra_arguments=["--IPKernelApp.capture_fd_output=False"])
        except pm.PapermillExecutionError as err:
            raise SeriesError(f"{source.name} failed at {_failing_cell(tmp)} (partial run kept in "
                              f"{tmp})") from err
        tmp.replace(target)
        timings.append({"notebook": source.name, "minutes": round((time.perf_counter() - start) / 60, 2)})
        print(f"   done in {timings[-1]['minutes']} min", flush=True)
    return timings


def render_html(notebook_dir: Path, out_dir: Path) -> Path:
    """Render every executed chapter to HTML and write an index page linking them."""
    out_dir.mkdir(parents=True, exist_ok=True)
    exporter = HTMLExporter()
    items = []
    for path in chapters(notebook_dir):
        nb = nbformat.read(path, as_version=4)
        body, _ = exporter.from_notebook_node(nb)
        (out_dir / f"{path.stem}.html").write_text(body, encoding="utf-8")
        title = next((c.source.splitlines()[0].lstrip("# ") for c in nb.cells
                      if c.cell_type == "markdown" and c.source.strip()), path.stem)
        items.append(f'<li><a href="{path.stem}.html">{html.escape(title)}</a></li>')
    index = out_dir / "index.html"
    index.write_text("<!doctype html><meta charset='utf-8'><title>Image classification for "
                     "e-commerce</title><h1>Image classification for e-commerce</h1><ol>"
                     + "".join(items) + "</ol>", encoding="utf-8")
    return index


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["quick", "full"], default="quick")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--epochs", type=int, default=None, help="override every chapter's epochs")
    parser.add_argument("--data-root", default=None, help="folder holding fashion-mnist/ etc.")
    parser.add_argument("--only", nargs="*", help="chapter prefixes to run, e.g. 02 03")
    args = parser.parse_args(argv)
    try:
        timings = run_series(args.mode, args.seed, args.epochs, args.data_root, args.only)
    except SeriesError as err:
        print(f"Series stopped: {err}", file=sys.stderr)
        return 1
    index = render_html(executed_dir(args.mode), html_dir(args.mode))
    total = sum(t["minutes"] for t in timings)
    print(f"{len(timings)} chapters in {total:.1f} min; HTML index: {index}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
