"""The memory check (every chapter's large steps): with memory made scarce, a step scales down or stops
with a message naming it, instead of being killed by the operating system."""

import re
import resource
import subprocess
import sys
import textwrap

import pytest

from helpers import memory
from helpers.paths import REPO_ROOT

LIMIT = 1_200 * 2**20  # an address-space limit (what `prlimit --as` sets): small, but Python and NumPy fit


def run_limited(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh Python whose address space is capped at ``LIMIT``."""
    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))

    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO_ROOT, capture_output=True,
                          text=True, preexec_fn=cap, timeout=120)


def test_available_memory_sees_an_address_space_limit():
    done = run_limited("from helpers import memory; print(memory.available_mib())")
    assert done.returncode == 0, done.stderr
    assert 0 < float(done.stdout) < LIMIT / 2**20


def test_a_step_that_cannot_fit_stops_with_its_name_and_the_mode_that_fits():
    done = run_limited("""
        from helpers import memory
        memory.require("Searching ten million vectors", 9_000, smaller='mode = "lesson"')
        """)
    assert done.returncode == 1 and done.returncode != -9  # an error, not a kill
    assert ("MemoryBudgetError: Searching ten million vectors needs about 9,512 MiB (with 512 MiB of headroom)"
            in done.stderr)
    assert 'mode = "lesson"' in done.stderr


def test_sizes_that_do_not_fit_are_left_out_with_a_message_and_the_rest_really_runs():
    done = run_limited("""
        import numpy as np
        from helpers import memory
        sizes = memory.largest_fitting([1_000_000, 10_000_000, 100_000_000], lambda n: n * 200 / 2**20,
                                       "Searching")
        print("kept", sizes)
        block = np.ones(sizes[-1] * 200 // 8)  # the memory the kept size was estimated to need, really taken
        print("allocated", block.nbytes)
        """)
    assert done.returncode == 0, done.stderr
    assert "kept [1000000]" in done.stdout and "allocated 200000000" in done.stdout
    assert "Searching: 10,000,000, 100,000,000 left out" in done.stdout


def test_when_not_even_the_smallest_size_fits_the_step_stops_by_name():
    done = run_limited("""
        from helpers import memory
        memory.largest_fitting([10**9], lambda n: n / 2**20, "Searching synthetic catalogues")
        """)
    assert done.returncode == 1
    assert "Searching synthetic catalogues needs about 1,466 MiB" in done.stderr


def test_without_a_limit_the_machines_own_memory_is_what_is_available():
    # the machine's MemAvailable moves as other programs run: compare with a margin for what moved in between
    assert memory.available_mib() <= memory._meminfo_available() + 512
    with pytest.raises(memory.MemoryBudgetError, match="a step needs about .* headroom"):
        memory.require("a step", 10**9)


def test_a_chapter_whose_recorded_peak_does_not_fit_stops_at_its_first_cell(tmp_path):
    """notebook.start compares the chapter's last recorded peak in its mode with what the machine has."""
    done = run_limited(f"""
        import json, helpers.paths as paths
        from pathlib import Path
        paths.output_root = lambda mode=None: Path({str(tmp_path)!r})
        from helpers import notebook
        (Path({str(tmp_path)!r}) / "results").mkdir()
        (Path({str(tmp_path)!r}) / "results" / "run_09.json").write_text(json.dumps({{"peak_memory_mib": 21469}}))
        notebook.check_memory("09", "full")
        """)
    assert done.returncode == 1, done.stderr
    assert "MemoryBudgetError: Chapter 09 in full mode needs about" in done.stderr
    assert 'mode = "lesson"' in done.stderr


def full_run_peaks() -> dict[str, float]:
    """Each chapter's peak memory in its committed full run (results/run_NN.json), in MiB."""
    records = sorted((REPO_ROOT / "results").glob("run_*.json"))
    return {path.stem.removeprefix("run_"): memory.recorded_peak_mib(path) for path in records}


def test_every_committed_full_run_stayed_within_the_memory_budget():
    peaks = full_run_peaks()
    assert len(peaks) == 10, sorted(peaks)
    over = {chapter: peak for chapter, peak in peaks.items() if not peak <= memory.BUDGET_MIB}
    assert not over, f"chapters over {memory.BUDGET_MIB} MiB in full mode: {over}"


def readme_row(label: str) -> list[str]:
    """The cells of a row of the README's table of chapters in lesson and full mode."""
    readme = (REPO_ROOT / "README.md").read_text()
    row = next(ln for ln in readme.splitlines() if ln.startswith(f"| {label} |"))
    return [cell.strip() for cell in row.strip("|").split("|")][1:]


def test_the_readme_states_each_chapters_peak_from_its_record():
    stated = readme_row("full mode, peak GiB")
    assert stated == [f"{peak / 1024:.1f}" for chapter, peak in sorted(full_run_peaks().items())]


def test_the_readme_s_lesson_mode_row_is_the_teaching_guide_s():
    guide = (REPO_ROOT / "notebooks" / "README.md").read_text()
    rows = [ln.split("|") for ln in guide.splitlines() if re.match(r"\| \d\d \| \[", ln)]
    minutes = [row[4].split("/")[1].strip() for row in rows]  # full / lesson / quick
    peaks = [row[5].split("/")[1].strip() for row in rows]
    assert readme_row("lesson mode, minutes") == [m.replace("under 1 min", "< 1").removesuffix(" min") for m in minutes]
    assert readme_row("lesson mode, peak GiB") == peaks
