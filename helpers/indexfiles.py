"""FAISS index files that are checked before they are trusted (chapter 09 saves and reloads its index).

``save_index`` writes the index through a temporary file beside it, then a small record beside the index
(``<name>.faiss.json``: its size, SHA-256, FAISS type code, dimension and number of vectors), written last,
so an index whose save did not finish has no matching record. ``load_index`` reads nothing into FAISS
until the file has passed two checks: its structure (every size FAISS would allocate from the file's
headers must fit in the bytes that follow, and the counts must agree with each other, so a small damaged
file cannot make FAISS reserve gigabytes), then its record (same size and SHA-256, so a file changed by a
single byte is refused instead of answering with other neighbours).
"""

from __future__ import annotations

import errno
import json
import struct
from pathlib import Path

import numpy as np

from helpers.fashion_mnist import sha256_of
from helpers.paths import atomic_write_bytes, replacing

MAX_NESTING = 4  # an index inside an index (an IVF's quantizer, HNSW's storage, a refine's two parts)
REBUILD = "delete it and build the index again with save_index"


def record_path(path) -> Path:
    """Where ``save_index`` writes the record of the index at ``path``: ``<path>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


class _Damaged(Exception):
    """The file's structure is not what FAISS wrote (raised with the reason)."""


class _UnknownType(_Damaged):
    """The file holds an index type that the structure check does not know."""


class _Cursor:
    """Reads a file's little-endian fields in order, never past its end: every count read from the file is
    checked against the bytes that remain before anything is skipped or read."""

    def __init__(self, handle, size: int):
        self.handle, self.left = handle, size

    def read(self, layout: str, what: str) -> tuple:
        nbytes = struct.calcsize("<" + layout)
        if nbytes > self.left:
            raise _Damaged(f"the file ends inside {what}")
        self.left -= nbytes
        return struct.unpack("<" + layout, self.handle.read(nbytes))

    def _claim(self, nbytes: int, what: str) -> None:
        if nbytes > self.left:
            raise _Damaged(f"it claims {nbytes:,} bytes for {what}, but only {self.left:,} bytes follow")
        self.left -= nbytes

    def skip(self, nbytes: int, what: str) -> None:
        self._claim(nbytes, what)
        self.handle.seek(nbytes, 1)

    def vector(self, item: int, what: str) -> int:
        """Skip one of FAISS's stored vectors (its length, then its items); return its length."""
        (count,) = self.read("Q", what)
        self.skip(count * item, what)
        return count

    def values(self, what: str, most: int) -> np.ndarray:
        """One of FAISS's stored vectors of 64-bit sizes (at most ``most`` of them), read."""
        (count,) = self.read("Q", what)
        if count > most:
            raise _Damaged(f"it claims {count:,} numbers for {what}, where at most {most:,} belong")
        self._claim(count * 8, what)
        return np.frombuffer(self.handle.read(count * 8), dtype="<u8")


def _header(cur: _Cursor, code: bytes) -> dict:
    """The fields every FAISS index starts with (``write_index_header``)."""
    d, ntotal, _, _, trained, metric = cur.read("iqqqBi", "the index header")
    if not 1 <= d <= 2**20 or ntotal < 0 or trained > 1:
        raise _Damaged(f"its header holds impossible values (d={d}, {ntotal} vectors)")
    if metric > 1:
        cur.read("f", "the index header")  # the metric's argument
    return {"format": code.decode(), "d": d, "ntotal": ntotal, "trained": bool(trained)}


def _flat(cur: _Cursor, info: dict, depth: int) -> None:
    floats = cur.vector(4, "the stored vectors")
    if floats != info["ntotal"] * info["d"]:
        raise _Damaged(f"its header says {info['ntotal']:,} vectors of d={info['d']}, but {floats:,} numbers "
                       "are stored")


def _ivf(cur: _Cursor, info: dict, depth: int) -> int:
    """The fields every inverted-file index starts with (after its header); its number of lists."""
    nlist, _ = cur.read("QQ", "the inverted-file header")
    quantizer = _index(cur, depth + 1)
    if quantizer["d"] != info["d"] or (info["trained"] and quantizer["ntotal"] != nlist):
        raise _Damaged(f"its quantizer (d={quantizer['d']}, {quantizer['ntotal']:,} centroids) does not fit "
                       f"an index of d={info['d']} with {nlist:,} lists")
    (kind,) = cur.read("B", "the direct map")
    cur.vector(8, "the direct map")
    if kind == 2:
        cur.vector(16, "the direct map")
    elif kind > 2:
        raise _Damaged(f"its direct map has the unknown type {kind}")
    return nlist


def _lists(cur: _Cursor, info: dict, nlist: int, code_size: int) -> None:
    """The inverted lists: their sizes must add up to the header's count, and their codes must fit."""
    code, stored_nlist, stored_code_size, kind = cur.read("4sQQ4s", "the inverted lists")
    if code != b"ilar" or (stored_nlist, stored_code_size) != (nlist, code_size):
        raise _Damaged(f"its inverted lists ({code!r}, {stored_nlist:,} lists of {stored_code_size} bytes per "
                       f"vector) do not match the index ({nlist:,} lists of {code_size} bytes)")
    sizes = cur.values("the inverted lists' sizes", 2 * nlist)
    if kind == b"full" and len(sizes) == nlist:
        counts = sizes
    elif kind == b"sprs" and len(sizes) % 2 == 0 and (sizes[::2] < nlist).all():
        counts = sizes[1::2]
    else:
        raise _Damaged(f"its inverted lists' sizes ({kind!r}, {len(sizes):,} numbers) do not fit {nlist:,} lists")
    total = sum(int(count) for count in counts)
    if total != info["ntotal"]:
        raise _Damaged(f"its header says {info['ntotal']:,} vectors, but its lists hold {total:,}")
    cur.skip(total * (code_size + 8), "the inverted lists' codes and ids")


def _ivf_flat(cur: _Cursor, info: dict, depth: int) -> None:
    _lists(cur, info, _ivf(cur, info, depth), 4 * info["d"])


def _ivf_sq(cur: _Cursor, info: dict, depth: int) -> None:
    nlist = _ivf(cur, info, depth)
    _, _, _, d, code_size = cur.read("iifQQ", "the scalar quantizer")
    cur.vector(4, "the scalar quantizer's ranges")
    (stored_code_size, by_residual) = cur.read("QB", "the scalar quantizer")
    if d != info["d"] or stored_code_size != code_size or not 0 < code_size <= 8 * d or by_residual > 1:
        raise _Damaged(f"its scalar quantizer (d={d}, {code_size} bytes per vector) does not fit the index")
    _lists(cur, info, nlist, code_size)


def _ivf_pq(cur: _Cursor, info: dict, depth: int) -> None:
    nlist = _ivf(cur, info, depth)
    by_residual, code_size, d, parts, bits = cur.read("BQQQQ", "the product quantizer")
    if d != info["d"] or by_residual > 1 or not 0 < parts <= d or d % parts or not 1 <= bits <= 24 \
            or code_size != (parts * bits + 7) // 8:
        raise _Damaged(f"its product quantizer (d={d}, {parts} parts of {bits} bits, {code_size} bytes per "
                       "vector) does not fit the index")
    if cur.vector(4, "the product quantizer's centroids") != d * 2**bits:
        raise _Damaged("its product quantizer holds the wrong number of centroids")
    _lists(cur, info, nlist, code_size)


def _hnsw(cur: _Cursor, info: dict, depth: int) -> None:
    cur.vector(8, "the HNSW graph's level probabilities")
    cur.vector(4, "the HNSW graph's neighbour counts")
    levels = cur.vector(4, "the HNSW graph's levels")
    offsets = cur.vector(8, "the HNSW graph's offsets")
    cur.vector(4, "the HNSW graph's links")
    cur.read("5i", "the HNSW graph's settings")
    storage = _index(cur, depth + 1)
    if (levels, offsets, storage["ntotal"], storage["d"]) != (info["ntotal"], info["ntotal"] + 1, info["ntotal"],
                                                              info["d"]):
        raise _Damaged(f"its graph ({levels:,} levels) and stored vectors ({storage['ntotal']:,} of "
                       f"d={storage['d']}) do not match its header ({info['ntotal']:,} vectors of d={info['d']})")


def _refine(cur: _Cursor, info: dict, depth: int) -> None:
    parts = _index(cur, depth + 1), _index(cur, depth + 1)
    cur.read("f", "the refine factor")
    if any((part["ntotal"], part["d"]) != (info["ntotal"], info["d"]) for part in parts):
        raise _Damaged("its base and refine indexes do not hold the header's vectors")


# FAISS's type codes (index_write.cpp) for the index types the series builds
_PARSERS = {b"IxFI": _flat, b"IxF2": _flat, b"IxFl": _flat, b"IwFl": _ivf_flat, b"IwSq": _ivf_sq,
            b"IwPQ": _ivf_pq, b"IHNf": _hnsw, b"IxRF": _refine}
KNOWN_TYPES = "flat, IVF-Flat, IVF-SQ, IVF-PQ, HNSW-Flat and refine indexes"


def _index(cur: _Cursor, depth: int = 0) -> dict:
    (code,) = cur.read("4s", "the index type")
    if code not in _PARSERS:
        raise _UnknownType(f"its type code {code!r} is not one of the {KNOWN_TYPES} this series saves and checks")
    if depth > MAX_NESTING:
        raise _Damaged(f"it nests indexes more than {MAX_NESTING} deep")
    info = _header(cur, code)
    _PARSERS[code](cur, info, depth)
    return info


def read_structure(path) -> dict:
    """Walk an index file's structure without loading it (only its headers and sizes are read): its FAISS
    type code (``format``), dimension ``d`` and number of vectors ``ntotal``. Raises ValueError naming the
    file if any size it claims does not fit in the file, or its counts disagree."""
    path = Path(path)
    try:
        return _walk(path)
    except _Damaged as err:
        raise ValueError(f"{path} is not a readable FAISS index ({err}); {REBUILD}.") from err


def _walk(path: Path) -> dict:
    with open(path, "rb") as handle:
        cur = _Cursor(handle, path.stat().st_size)
        info = _index(cur)
        if cur.left:
            raise _Damaged(f"{cur.left:,} bytes follow the end of the index")
    return {key: info[key] for key in ("format", "d", "ntotal")}


def _load_faiss():
    from helpers.vectors import load_faiss  # vectors imports this module: import at call time

    return load_faiss()


def _write(faiss, index, tmp: Path, path: Path) -> None:
    """``faiss.write_index`` to ``tmp``, its errors named with ``path`` and the fix."""
    try:
        faiss.write_index(index, str(tmp))
    except RuntimeError as err:
        detail = str(err).splitlines()[0]
        if "No space left" in detail or "quota" in detail.lower():
            raise OSError(errno.ENOSPC, f"no space left on device to save the index {path} ({detail}); free "
                          f"space on the disk holding {path.parent} and save again. Nothing was replaced.") from err
        if "write error" in detail or "could not open" in detail:
            raise OSError(f"could not write the index {path} ({detail}); nothing was replaced.") from err
        raise ValueError(f"FAISS cannot save this {type(index).__name__} to {path} ({detail}).") from err


def _describe(faiss, index, tmp: Path, path: Path) -> dict:
    """The record of a freshly written index file: its structure is checked first, so a file that FAISS
    could not finish (its buffer is flushed when the file closes, and a failure then is only printed)
    is refused here rather than found short at the next load."""
    try:
        found = _walk(tmp)
    except _UnknownType as err:
        raise ValueError(f"save_index saves {KNOWN_TYPES} (whose files load_index can check); this "
                         f"{type(faiss.downcast_index(index)).__name__}: {err}.") from err
    except _Damaged as err:
        raise OSError(errno.EIO, f"the index written to {path} is incomplete ({err}): the disk may be full. "
                      f"Free space on the disk holding {path.parent} and save again; nothing was replaced.") from err
    return {"file": path.name, **found, "index": type(faiss.downcast_index(index)).__name__,
            "bytes": tmp.stat().st_size, "sha256": sha256_of(tmp)}


def save_index(index, path) -> Path:
    """Write a FAISS index to ``path`` and its record to ``<path>.json`` (size, SHA-256, FAISS type code,
    dimension, number of vectors), each through a hidden temporary file beside it that is renamed into place
    only when complete and removed if the write fails (a full disk leaves the old files as they were and
    nothing half-written). The record is written last: an index whose save was interrupted between the two
    does not match its record, and ``load_index`` refuses it."""
    faiss = _load_faiss()
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder: pass the path of the index file to write, such as "
                                f"{path / 'index.faiss'}.")
    with replacing(path) as tmp:
        _write(faiss, index, tmp, path)
        record = _describe(faiss, index, tmp, path)
    atomic_write_bytes(record_path(path), (json.dumps(record, indent=2) + "\n").encode())
    return path


def _read_record(path: Path) -> dict:
    record = record_path(path)
    if not record.is_file():
        raise ValueError(f"{path} has no record {record.name} beside it, so it cannot be checked (it was not "
                         f"saved by save_index, or its save did not finish); {REBUILD}.")
    try:
        fields = json.loads(record.read_text())
        return {key: fields[key] for key in ("format", "d", "ntotal", "bytes", "sha256")}
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(f"{record} is not a record written by save_index ({err!r}); delete it and {path}, "
                         "and build the index again with save_index.") from err


def check_index_file(path) -> dict:
    """Check an index file without loading it and return its record: a folder, a missing file or record,
    sizes in its headers that do not fit in the file, or a size or SHA-256 that differs from its record
    (the file changed after ``save_index`` wrote it) each raise an error naming the file and the fix."""
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not an index file: pass the path of the file that "
                                "save_index wrote inside it (such as catalogue_ivf.faiss).")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: build the index and save it with save_index first.")
    found = read_structure(path)
    record = _read_record(path)
    checks = [(key, found[key], record[key]) for key in ("format", "d", "ntotal")]
    checks.append(("bytes", path.stat().st_size, record["bytes"]))
    checks.append(("sha256", sha256_of(path), record["sha256"]))  # last: it reads the whole file
    for key, actual, recorded in checks:
        if actual != recorded:
            raise ValueError(f"{path} changed after save_index wrote it: its {key} is {actual}, its record "
                             f"{record_path(path).name} says {recorded}; delete both files and build the index "
                             "again with save_index.")
    return record


def load_index(path):
    """Read an index written by ``save_index`` (FAISS's own binary format: nothing in it is executed), after
    ``check_index_file`` has passed it, so FAISS never allocates memory a damaged file claims. Reading it
    hashes the whole file once (about a second per gigabyte)."""
    faiss = _load_faiss()
    path = Path(path)
    check_index_file(path)
    try:
        return faiss.read_index(str(path))
    except (RuntimeError, MemoryError) as err:
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{path} is not a readable FAISS index ({detail}); {REBUILD}.") from err
