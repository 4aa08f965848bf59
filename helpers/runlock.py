"""One run at a time per output folder.

A chapter (``notebook.start``) and the runner take an exclusive lock on ``build/<mode>.lock`` before they
write anything. A second run in the same mode (a second terminal, ``make test`` while JupyterLab runs a
chapter) is refused with a message naming the run that holds the lock, instead of both writing the same
results. The lock is the operating system's (``fcntl.flock``): it goes when its process ends, however it
ends, so a killed run never leaves a stale lock.

There is one lock per mode (per output folder), not one per chapter: the chapters of a mode read each
other's outputs (06 writes what 07, 08 and 09 read), so two chapters of one mode at once could read a
half-made result. A chapter's kernel started by a process that holds the lock (the runner, or a test run)
works under that lock; a kernel that runs ``notebook.start`` again keeps the lock it has.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path

from helpers import paths

_held: dict = {}  # the lock this process holds: {"path": Path, "fd": int}


class OutputInUseError(RuntimeError):
    """Another run is writing to the same output folder."""


def lock_path(mode: str) -> Path:
    """``build/<mode>.lock`` (git-ignored, like the rest of build/)."""
    return paths.REPO_ROOT / "build" / f"{mode}.lock"


def claim(who: str, mode: str | None = None) -> None:
    """Take the output folder of ``mode`` for this process (``who`` says what runs, e.g. "chapter 06"),
    or stop with ``OutputInUseError`` naming the run that has it and what to do."""
    mode = paths.series_mode(mode)
    path = lock_path(mode)
    if _held.get("path") == path:
        _describe(_held["fd"], who, mode)
        return
    release()  # this process changed mode: the other folder is free again
    paths.writable_dir(path.parent)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        if holder.get("pid") in _ancestors():
            return  # the runner (or test run) that started this kernel holds it for this chapter
        raise OutputInUseError(_busy_message(holder, mode, path)) from None
    _held.update(path=path, fd=fd)
    _describe(fd, who, mode)


def release() -> None:
    """Give the output folder back (``notebook.finish`` does; so does the end of the process)."""
    if _held:
        os.ftruncate(_held["fd"], 0)  # the next holder writes its own record; nobody reads this one as current
        fcntl.flock(_held["fd"], fcntl.LOCK_UN)
        os.close(_held["fd"])
        _held.clear()


def _describe(fd: int, who: str, mode: str) -> None:
    """Write who holds the lock into the lock file, for the message another run gets."""
    record = {"who": who, "mode": mode, "pid": os.getpid(), "since": time.strftime("%Y-%m-%d %H:%M")}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(record).encode(), 0)


def _read(fd: int) -> dict:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:  # being written at this very moment
        return {}
    return record if isinstance(record, dict) else {}


def _ancestors() -> set[int]:
    """The process IDs of this process's parent, its parent's parent, ... (Linux; the parent elsewhere)."""
    found, pid = set(), os.getppid()
    while pid > 1 and pid not in found and len(found) < 64:
        found.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def _busy_message(holder: dict, mode: str, path: Path) -> str:
    folder = paths.output_root(mode)
    where = "the committed results/ and figures/" if mode == "full" else f"{folder}/"
    pid = holder.get("pid")
    if pid is None:
        who = f"another process (`fuser {path}` lists it)"
    elif not paths.is_running(pid):
        who = (f"a process started by process {pid}, which has ended ({holder.get('who', 'a run')}); "
               f"`fuser {path}` lists it")
    else:
        who = f"{holder.get('who', 'a run')} in process {pid}, since {holder.get('since', '?')}"
    return (f"Another run of the series in {mode} mode is writing to {where}: {who}. Two runs on one output "
            "folder would overwrite each other's results. Wait for it to finish, or stop it (in JupyterLab, "
            f"shut down that chapter's kernel; in a terminal, Ctrl-C or `kill {pid or '<PID>'}`), then run this "
            "again; or run this one in another mode.")
