"""How much memory a step may use, checked before the step starts.

Every chapter of the series stays within ``BUDGET_MIB`` in every mode (its peak is recorded in
``results/run_NN.json``). A step that needs gigabytes first compares what it needs with what this machine
can still give it: the smallest of the memory the kernel reports available, a container's memory limit
(cgroup v1 or v2), and an address-space limit (``ulimit -v``, ``prlimit --as``). It then either scales the
step down (``largest_fitting``) and says so, or stops with a message naming the step and a mode that fits
(``require``): a clear error a minute in, instead of the operating system killing the kernel an hour in.
"""

from __future__ import annotations

import json
import resource
from pathlib import Path

MIB = 2**20
BUDGET_MIB = 8192  # what every chapter's full mode stays within: a laptop with 16 GB and a browser open
# what the kernel may still need on top of a step's own estimate (TensorFlow's and FAISS's working memory)
HEADROOM_MIB = 512


class MemoryBudgetError(MemoryError):
    """A step would need more memory than this machine can give it."""


def _meminfo_available() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("inf")


def _cgroup_files() -> tuple[Path, Path, Path, str] | None:
    """The limit, usage and stat files of this container's memory cgroup (v2, else v1) and the stat key
    of its reclaimable page cache; None outside a memory cgroup."""
    if Path("/sys/fs/cgroup/memory.max").is_file():
        root = Path("/sys/fs/cgroup")
        return root / "memory.max", root / "memory.current", root / "memory.stat", "inactive_file"
    root = Path("/sys/fs/cgroup/memory")
    if (root / "memory.limit_in_bytes").is_file():
        return (root / "memory.limit_in_bytes", root / "memory.usage_in_bytes", root / "memory.stat",
                "total_inactive_file")
    return None


def container_limit_mib() -> float:
    """A container's memory limit (cgroup v2 or v1) in MiB; inf without one."""
    files = _cgroup_files()
    text = files[0].read_text().strip() if files else "max"
    return int(text) / MIB if text.isdigit() and int(text) < 2**60 else float("inf")  # "max", or v1's huge number


def _cgroup_available() -> float:
    """What a container's memory limit leaves (inf without a limit). File pages the kernel can drop
    (inactive page cache) count as free, as they do for the limit."""
    limit = container_limit_mib()
    if limit == float("inf"):
        return limit
    _, usage, stat, key = _cgroup_files()
    reclaimable = 0
    if stat.is_file():
        for line in stat.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                reclaimable = int(value)
    return limit - (int(usage.read_text()) - reclaimable) / MIB


def recorded_peak_mib(record: Path) -> float | None:
    """The peak memory in a chapter's run record (``results/run_NN.json``), or None without one."""
    try:
        return float(json.loads(Path(record).read_text())["peak_memory_mib"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _address_space_available() -> float:
    """What ``ulimit -v`` leaves this process (inf without one)."""
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft == resource.RLIM_INFINITY:
        return float("inf")
    return soft / MIB - _status_mib("VmSize")


def _status_mib(key: str) -> float:
    """A memory figure of this process from /proc/self/status, in MiB (0 where there is none)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.is_file() else []:
        if line.startswith(f"{key}:"):
            return int(line.split()[1]) / 1024
    return 0.0


def resident_mib() -> float:
    """The memory this process holds now (its resident set), in MiB."""
    return _status_mib("VmRSS")


def peak_mib() -> float:
    """The most memory this process has held since it started its program (its resident high-water mark),
    in MiB. Unlike ``ru_maxrss``, it does not count the process that started it (a test runner, say)."""
    return _status_mib("VmHWM")


def available_mib() -> float:
    """The memory this process can still take, in MiB: the tightest of the three limits above."""
    return min(_meminfo_available(), _cgroup_available(), _address_space_available())


def require(step: str, need_mib: float, smaller: str = "") -> float:
    """Stop with a ``MemoryBudgetError`` naming ``step`` unless ``need_mib`` (plus headroom) is available;
    ``smaller`` says what fits (e.g. 'mode = "lesson"'). Returns what was available, in MiB."""
    have = available_mib()
    if need_mib + HEADROOM_MIB > have:
        _refuse(step, need_mib, have, smaller)
    return have


def _refuse(step: str, need_mib: float, have: float, smaller: str = ""):
    hint = f" Run it with {smaller}, or free memory and run it again." if smaller else " Free memory first."
    raise MemoryBudgetError(f"{step} needs about {need_mib + HEADROOM_MIB:,.0f} MiB (with {HEADROOM_MIB} MiB of "
                            f"headroom) and this machine has {have:,.0f} MiB available (a memory limit or other "
                            f"programs take the rest).{hint}")


def largest_fitting(sizes, mib_for, step: str, smaller: str = "") -> list:
    """The ``sizes`` (ascending) whose memory estimate ``mib_for(size)`` fits what is available; prints
    which sizes are dropped and why. Stops with ``MemoryBudgetError`` when not even the smallest fits."""
    have = available_mib()
    kept = [size for size in sizes if mib_for(size) + HEADROOM_MIB <= have]
    if not kept:
        _refuse(step, mib_for(sizes[0]), have, smaller)
    dropped = [size for size in sizes if size not in kept]
    if dropped:
        print(f"{step}: {', '.join(f'{s:,}' for s in dropped)} left out, needing "
              f"{', '.join(f'{mib_for(s):,.0f}' for s in dropped)} MiB with {have:,.0f} MiB available.")
    return kept
