"""Two runs in one checkout: writes to one file never tear or fail, and a second run of a mode is refused."""

import os
import signal
import subprocess
import sys

import pytest

from helpers import paths, runlock

WRITER = """
import sys
from pathlib import Path
from helpers.paths import atomic_write_bytes
letter, size = sys.argv[2], int(sys.argv[3])
failures = 0
for _ in range(500):
    try:
        atomic_write_bytes(Path(sys.argv[1]), (letter * size).encode())
    except OSError:
        failures += 1
print(failures)
"""

CHAPTER = """
import sys
from pathlib import Path
from helpers import notebook, paths, runlock
paths.REPO_ROOT = Path(sys.argv[1])  # the checkout this run writes into
try:
    notebook.start("05", "quick")
    notebook.start("05", "quick")  # a student runs the first cell again
except runlock.OutputInUseError as err:
    print("refused:", err, flush=True)
    sys.exit(3)
print("started", flush=True)
sys.stdin.read()
"""


def _python(code: str, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=paths.REPO_ROOT, text=True,
                            stdout=subprocess.PIPE, **kwargs)


def _printed(process: subprocess.Popen, line: str) -> bool:
    """Whether ``process`` prints ``line`` (it waits for it, or for the process to end)."""
    return any(printed == line + "\n" for printed in iter(process.stdout.readline, ""))


def test_two_writers_of_one_file_never_fail_and_readers_never_see_a_torn_file(tmp_path):
    target = tmp_path / "table.csv"
    payloads = {b"A" * 300_000, b"B" * 200_000}  # of different lengths: a torn file shows
    target.write_bytes(b"A" * 300_000)
    writers = [_python(WRITER, target, "A", 300_000), _python(WRITER, target, "B", 200_000)]
    reads = torn = 0
    while any(w.poll() is None for w in writers):
        reads += 1
        torn += target.read_bytes() not in payloads
    failures = [int(w.communicate()[0]) for w in writers]
    assert failures == [0, 0] and torn == 0 and reads > 0
    assert target.read_bytes() in payloads and os.listdir(tmp_path) == ["table.csv"]


def test_a_second_run_of_a_mode_is_refused_until_the_first_has_ended(tmp_path):
    results = tmp_path / "build" / "quick" / "results"
    results.mkdir(parents=True)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    (results / f".scores.csv.{dead}-abcd1234.part").write_text("half")  # what a killed chapter left
    first = _python(CHAPTER, tmp_path, stdin=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert _printed(first, "started")
        assert os.listdir(results) == []  # the leftover is gone, the lock is held
        second = subprocess.run([sys.executable, "-c", CHAPTER, str(tmp_path)], cwd=paths.REPO_ROOT, text=True,
                                capture_output=True, input="")
        assert second.returncode == 3, second.stderr
        message = second.stdout
        assert f"Another run of the series in quick mode is writing to {tmp_path / 'build' / 'quick'}/" in message
        assert f"chapter 05 in process {first.pid}" in message and f"kill {first.pid}" in message
        assert "Wait for it to finish" in message
    finally:
        first.send_signal(signal.SIGKILL)  # killed as the memory killer would: the lock goes with it
        first.communicate()
    third = subprocess.run([sys.executable, "-c", CHAPTER, str(tmp_path)], cwd=paths.REPO_ROOT, text=True,
                           capture_output=True, input="")
    assert "started" in third.stdout.splitlines(), third.stdout + third.stderr


@pytest.fixture
def lock_file(tmp_path, monkeypatch):
    monkeypatch.setattr(runlock, "lock_path", lambda mode: tmp_path / f"{mode}.lock")
    yield tmp_path / "quick.lock"
    runlock.release()


CLAIM = """
import sys
from pathlib import Path
from helpers import runlock
runlock.lock_path = lambda mode: Path(sys.argv[1])
try:
    runlock.claim("chapter 07", "quick")
except runlock.OutputInUseError:
    sys.exit(3)
"""


def _claim_elsewhere(lock, nested: bool = False) -> int:
    """Claim ``lock`` in a child process (``nested``: in a grandchild, as the runner's kernels do)."""
    command = [sys.executable, "-c", CLAIM, str(lock)]
    if nested:
        command = [sys.executable, "-c", "import subprocess, sys; sys.exit(subprocess.run(sys.argv[1:]).returncode)",
                   *command]
    return subprocess.run(command, cwd=paths.REPO_ROOT).returncode


def test_the_kernels_a_run_starts_work_under_its_lock_and_others_wait_for_finish(lock_file):
    runlock.claim("the series runner", "quick")
    runlock.claim("the series runner, at 06_catalogue.ipynb", "quick")  # the same run, one chapter later
    assert _claim_elsewhere(lock_file) == 0 and _claim_elsewhere(lock_file, nested=True) == 0
    runlock.release()
    holder = _python(CLAIM.replace('sys.exit(3)\n', 'sys.exit(3)\nprint("held", flush=True)\nsys.stdin.read()\n'),
                     lock_file, stdin=subprocess.PIPE)
    try:
        assert _printed(holder, "held")
        with pytest.raises(runlock.OutputInUseError, match=f"chapter 07 in process {holder.pid}"):
            runlock.claim("chapter 08", "quick")
    finally:
        holder.communicate("")
    runlock.claim("chapter 08", "quick")  # free again once that run has ended


def test_a_chapter_in_a_read_only_checkout_stops_with_one_message(monkeypatch, tmp_path):
    from test_plots_and_paths import ReadOnlyPath

    monkeypatch.setattr(runlock, "lock_path", lambda mode: ReadOnlyPath(tmp_path) / "build" / f"{mode}.lock")
    with pytest.raises(paths.OutputNotWritableError, match="copy the checkout to a folder you can write to"):
        runlock.claim("chapter 05", "quick")
