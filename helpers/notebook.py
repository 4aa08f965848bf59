"""What every chapter does first and last: settings, seeds, run time, memory, versions."""

from __future__ import annotations

import json
import platform
import resource
import time
from importlib import metadata
from pathlib import Path

import matplotlib.pyplot as plt
import seaborn as sns

from helpers import runlock
from helpers.paths import (
    REPO_ROOT,
    atomic_write_bytes,
    figures_dir,
    processed_dir,
    remove_stale_parts,
    results_dir,
    series_mode,
)

PACKAGES = ("tensorflow", "keras", "numpy", "pandas", "scikit-learn", "matplotlib", "seaborn")
GUIDE = REPO_ROOT / "notebooks" / "README.md"  # its chapter table: what a reader is told before a chapter trains
_started: dict[str, float] = {}


def start(chapter: str, mode: str | None = None, seed: int = 42, precision: str | None = None,
          cpu_bfloat16: bool = True) -> str:
    """Check the mode and take its output folder (``helpers.runlock``: another run in the same mode is
    refused with a message), remove what killed writers left there, choose the precision
    (``helpers.precision``; ``cpu_bfloat16=False`` for networks that train faster in float32 on any CPU),
    seed everything, set the figure style; return the mode. The first line printed says which precision
    this run computes in, and why."""
    mode = series_mode(mode)
    runlock.claim(f"chapter {chapter}", mode)
    remove_stale_parts(results_dir(mode), figures_dir(mode), processed_dir(mode))
    check_memory(chapter, mode)
    import tensorflow as tf

    from helpers import precision as precisions
    from helpers.training import set_seed

    policy, reason = precisions.apply(precision, cpu_bfloat16)
    _started[chapter] = time.perf_counter()
    set_seed(seed)
    devices = [d.device_type for d in tf.config.list_logical_devices()]  # initialise devices here
    tf.get_logger().setLevel("ERROR")  # no retracing notices when several models predict in a row
    sns.set_theme(style="whitegrid", context="notebook")
    plt.rcParams["figure.dpi"] = 80
    print(f"Chapter {chapter}: precision={policy} ({reason}), mode={mode}, seed={seed}, devices={devices}")
    print(run_plan(chapter, mode))
    return mode


def run_minutes(chapter: str, guide: Path = GUIDE) -> dict[str, str]:
    """``{"full": "19 min", "lesson": "2.3 min", "quick": "under 1 min"}``: the teaching guide's chapter table
    (``notebooks/README.md``), whose full-mode times ``helpers.report`` writes from the run records; empty
    where the guide is not beside the chapters."""
    if not guide.is_file():
        return {}
    for line in guide.read_text(encoding="utf-8").splitlines():
        if line.startswith(f"| {chapter} | ["):
            cells = [cell.strip() for cell in line.split("|")]
            return dict(zip(("full", "lesson", "quick"), cells[4].split(" / "), strict=True))
    return {}


def run_plan(chapter: str, mode: str) -> str:
    """One line: how long this chapter takes in this mode, where it writes, and how to get the other modes."""
    about = {m: t if t.startswith(("under", "a few")) else f"about {t}" for m, t in run_minutes(chapter).items()}
    full, lesson, quick = (about.get(m, "a while") for m in ("full", "lesson", "quick"))
    if mode == "full":
        return (f"Full mode: {full} on 2 CPU cores; results and figures replace the "
                "committed ones in results/ and figures/.")
    if mode == "lesson":
        return (f"Lesson mode: {lesson} on 2 CPU cores, short training, whole test sets, "
                f"written under build/lesson/ (full mode, {full}: set mode = \"full\" in "
                "the parameters cell).")
    return (f"Quick mode: {quick} on 2 CPU cores, tiny subsets that check the code runs "
            f"(the numbers mean little), written under build/quick/; mode = \"lesson\" ({lesson}) "
            f"or \"full\" ({full}) in the parameters cell gives results worth reading.")


def check_memory(chapter: str, mode: str) -> None:
    """Stop before anything is computed (``memory.require``) when the memory this chapter took the last time
    it ran in this mode, less what this process holds already, is more than the machine has available."""
    from helpers import memory

    peak = memory.recorded_peak_mib(results_dir(mode) / f"run_{chapter}.json")
    if peak is not None:
        lighter = {"full": 'mode = "lesson"', "lesson": 'mode = "quick"'}.get(mode, "")
        memory.require(f"Chapter {chapter} in {mode} mode", max(peak - memory.resident_mib(), 0), lighter)


def peak_memory_mib() -> float:
    """Peak resident memory of this process since it started its program (``VmHWM``; where /proc is
    missing, ``ru_maxrss``, which also counts the memory of the process that started this one)."""
    from helpers import memory

    return memory.peak_mib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def finish(chapter: str, mode: str | None = None, peak_mib: float | None = None) -> dict:
    """Print and save this run's time, peak memory, CPU and library versions; give the output folder back.
    ``peak_mib``: the peak memory to record where a chapter measured more than this process's own (a chapter
    whose worker processes count too)."""
    import keras

    from helpers.bench import machine

    record = {"chapter": chapter, "mode": series_mode(mode), "precision": keras.mixed_precision.global_policy().name,
              "cpu": machine(), "minutes": round((time.perf_counter() - _started[chapter]) / 60, 2),
              "peak_memory_mib": round(max(peak_memory_mib(), peak_mib or 0)), "versions": versions()}
    atomic_write_bytes(results_dir(mode) / f"run_{chapter}.json",
                       json.dumps(record, indent=2).encode())
    print(f"Chapter {chapter} ran in {record['minutes']} min, peak memory {record['peak_memory_mib']} MiB.")
    print("Library versions: " + ", ".join(f"{k} {v}" for k, v in record["versions"].items()))
    runlock.release()
    return record
