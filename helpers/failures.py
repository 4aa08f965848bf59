"""What a failed chapter tells its user: the cell that raised, or, when the kernel itself died, the cell it
was running and the likely cause (memory), with what this machine has and what the chapter needed before."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat

from helpers.memory import container_limit_mib, recorded_peak_mib


def _cells(path: Path) -> list:
    """The cells of an executed chapter without the banners papermill adds: indices as in the chapter."""
    nb = nbformat.read(path, as_version=4)
    return [c for c in nb.cells if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]


def _first_line(cell) -> str:
    lines = [ln for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    return lines[0].strip() if lines else ""


def failing_cell(path: Path) -> str:
    """The cell of the executed chapter at ``path`` that raised: its index, first line and error."""
    for index, cell in enumerate(_cells(path)):
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                return (f"cell {index} (run as In [{cell.execution_count}], {_first_line(cell)!r}): "
                        f"{output['ename']}: {output['evalue']}")
    return "no cell recorded an error"


def _last_started_cell(path: Path) -> str:
    """The cell that was running when the kernel died: the last one papermill started."""
    started = [(index, cell) for index, cell in enumerate(_cells(path))
               if cell.cell_type == "code" and cell.metadata.get("papermill", {}).get("start_time")]
    if not started:
        return "before its first cell"
    index, cell = started[-1]
    return f"cell {index} ({_first_line(cell)!r})"


def kernel_died(source: Path, kept: Path, log: Path, results: Path, mode: str) -> str:
    """Which chapter died, in which cell, and the likely cause: memory, with what this machine has and
    what the chapter took the last time it finished in this mode (``results``/run_NN.json)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    memory = f"this machine has {total:.1f} GiB of memory"
    limit = container_limit_mib() / 1024
    if limit < total:
        memory += f" and a memory limit of {limit:.1f} GiB applies here"
    record = results / f"run_{source.name[:2]}.json"
    peak = recorded_peak_mib(record)
    if peak is not None:
        memory += f"; the chapter's last finished {mode} run peaked at {peak:,.0f} MiB ({record})"
    cell = _last_started_cell(kept) if kept.is_file() else "before its first cell"
    lighter = {"full": " or run a lighter mode (--mode lesson or quick)", "lesson": " or run --mode quick"}
    return (f"{source.name}: its kernel was killed while running {cell}, most likely for running out of "
            f"memory ({memory}). Partial run kept in {kept}; the kernel's log is {log}. Close other programs"
            f"{lighter.get(mode, '')}, then run it again with --only {source.name[:2]}.")
