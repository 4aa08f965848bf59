"""Chapter 10's infrastructure (the chapter types the workers, the fan-out and the merge): a Ray cluster on
this machine, started bounded, offline and on the loopback address, and stopped with nothing left running; the
memory of every process it starts; a worker killed on purpose, and the check that every photo was tagged
exactly once; an index split into shard files.

The same chapter runs on a real cluster: pass its address to ``ray_cluster``; the files it names (the saved
tagger, the feed, the shards) must then sit where every machine reads them.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
import warnings
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import psutil

from helpers import indexfiles, vectors

# Ray reports usage statistics to its authors unless told not to: not from here
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def import_ray():
    """``import ray``, quietly: Ray's own log lines from warnings up only, and none of the notices Ray and tqdm
    print in a notebook about widgets this series does not use. Returns the module."""
    os.environ.setdefault("RAY_LOGGER_LEVEL", "warning")  # read once, when Ray is imported
    logging.getLogger("ray.widgets.util").setLevel(logging.WARNING)  # "Missing packages: ['ipywidgets']"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import ray
        import ray.data  # noqa: F401  (imports tqdm)
    return ray


class MemoryWatch:
    """Samples, once a second, the memory of this process and every process it started (Ray's own and its
    workers): the sum of their proportional set sizes, in which memory two processes share counts once."""

    def __init__(self, every: float = 1.0):
        self.every, self.peak_mib, self._stop = every, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def sample(self) -> float:
        total = 0
        for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
            try:
                total += process.memory_full_info().pss
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue  # it ended between the listing and the reading
        self.peak_mib = max(self.peak_mib, total / 2**20)
        return total / 2**20

    def _run(self):
        while not self._stop.wait(self.every):
            self.sample()

    def __enter__(self):
        self.sample()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


@contextmanager
def ray_cluster(address: str | None = None, cpus: int | None = None, object_store_mib: int = 512):
    """Start Ray on this machine, or with ``address`` (e.g. ``"ray://head:10001"``) join a running cluster;
    yield a ``MemoryWatch`` of every process started; then shut Ray down and check that no process it started
    is left (one that is, is killed and named in an error).

    On this machine Ray listens on the loopback address only, reports no usage statistics, starts no dashboard,
    and its object store (where results wait for the driver) is held to ``object_store_mib``; ``cpus`` (default:
    the cores) is how many one-CPU workers it runs at once. On a cluster those are the cluster's own settings."""
    ray = import_ray()

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    if address:
        ray.init(address=address, logging_level="warning", log_to_driver=False)
    else:
        _loopback_only(ray)
        ray.init(address="local", num_cpus=cpus or os.cpu_count(), object_store_memory=object_store_mib * 2**20,
                 include_dashboard=False, logging_level="warning", log_to_driver=False)
    quiet_ray_data()
    try:
        with MemoryWatch() as watch:
            yield watch
    finally:
        ray.shutdown()
        left = _wait_for_exit(before)
        if left:
            raise RuntimeError(f"Ray left {len(left)} processes running after shutdown ({', '.join(left)}); they "
                               "were killed.")


def _loopback_only(ray) -> None:
    """On Linux Ray gives its processes the machine's network address and listens on every interface, ready
    for other machines to join. A cluster on one machine needs none of that: Ray's own switch for single-machine
    clusters (named for the systems where it is the default) keeps every port on the loopback address, for
    the processes it starts (the variable) and for this one (the setting Ray read when it was imported)."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    ray._private.ray_constants.ENABLE_RAY_CLUSTER = False


def listening_addresses() -> set[str]:
    """The addresses on which this process and the processes it started accept connections."""
    found = set()
    for process in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            found |= {c.laddr.ip for c in process.net_connections("inet") if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _wait_for_exit(before: set[int], seconds: float = 20.0) -> list[str]:
    """The processes started since ``before`` that are still running after ``seconds``, killed and named."""
    deadline = time.monotonic() + seconds
    while True:
        left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and _running(p)]
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    names = []
    for process in left:
        try:
            names.append(f"{process.pid} {process.name()}")
            process.kill()
        except psutil.NoSuchProcess:
            continue
    return names


def _running(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def quiet_ray_data() -> None:
    """No progress bars or per-stage log lines from Ray Data in a notebook's output (errors still show)."""
    from ray.data import DataContext

    logging.getLogger("ray.data").setLevel(logging.ERROR)
    context = DataContext.get_current()
    context.enable_progress_bars = False
    context.print_on_execution_start = False


def report_progress(folder, batches: int) -> None:
    """Record in ``folder/<pid>`` how many batches this worker process has begun (``kill_one_worker`` reads it
    to stop a worker in the middle of a batch). Nothing happens when ``folder`` is None."""
    if folder:
        (Path(folder) / str(os.getpid())).write_text(str(batches))


def kill_one_worker(progress, during_batch: int = 3, timeout: float = 600.0) -> dict:
    """Wait until a worker in the ``progress`` folder (``report_progress``) has begun its ``during_batch``-th
    batch, then kill it as a crash would (SIGKILL: no clean-up), in the middle of that batch. Returns the
    worker's pid, the batches it had begun and the time, or an empty dict when none got that far within
    ``timeout`` seconds. Run it beside the run it interrupts (``kill_one_worker_later``). A worker is killed
    only once it is working: Ray does not replace one that dies while loading its model."""
    deadline, folder = time.monotonic() + timeout, Path(progress)
    while time.monotonic() < deadline:
        for file in folder.iterdir():
            try:
                begun = int(file.read_text() or 0)
            except (OSError, ValueError):
                continue
            if begun >= during_batch:
                pid = int(file.name)
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    continue
                return {"pid": pid, "batches begun": begun, "killed at": time.perf_counter()}
        time.sleep(0.02)
    return {}


def kill_one_worker_later(progress, during_batch: int = 3, timeout: float = 600.0):
    """``kill_one_worker`` in a thread started now, beside the run it interrupts; returns the thread (join it
    after the run) and the dict it fills with what it killed."""
    killed = {}
    thread = threading.Thread(target=lambda: killed.update(kill_one_worker(progress, during_batch, timeout)),
                              daemon=True)  # never keeps a finished program waiting
    thread.start()
    return thread, killed


def share_cores(threads: int | None) -> None:
    """Give TensorFlow in this worker process ``threads`` threads, its share of the machine's cores (None:
    TensorFlow's own choice, every core). Call it before the process runs anything in TensorFlow."""
    if threads:
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(threads)


def check_exactly_once(items, n: int) -> None:
    """Raise unless ``items`` holds each of 0 … n-1 exactly once (a photo lost or tagged twice is an error)."""
    counts = np.bincount(np.asarray(items), minlength=n)
    if len(counts) > n or (counts != 1).any():
        lost, twice = np.flatnonzero(counts[:n] == 0), np.flatnonzero(counts > 1)
        raise AssertionError(f"{len(lost)} photos never tagged (first: {lost[:5].tolist()}), {len(twice)} tagged "
                             f"more than once (first: {twice[:5].tolist()}).")


def write_shards(index, folder, n_shards: int) -> list[Path]:
    """Split an IVF index that stores whole vectors (IVF-Flat) into ``n_shards`` shard files in ``folder``:
    each the same trained coarse quantizer, with every ``n_shards``-th vector (vector i in shard i mod
    n_shards) under its id in the whole index. Each file is written with ``indexfiles.save_index``, so a
    shard that is missing, cut short or changed is refused by name when loaded."""
    faiss = vectors.load_faiss()
    index.make_direct_map()  # id -> place in its list, to read the vectors back
    whole = index.reconstruct_n(0, index.ntotal)
    index.make_direct_map(False)  # dropped again: the index and its clones stay as they were
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_shards):
        shard = faiss.clone_index(index)
        shard.reset()  # the trained quantizer, no vectors
        ids = np.arange(s, index.ntotal, n_shards)
        shard.add_with_ids(whole[ids], ids)
        paths.append(indexfiles.save_index(shard, folder / f"shard_{s + 1}_of_{n_shards}.faiss"))
    return paths
