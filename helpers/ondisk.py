"""Vectors that do not fit in memory (chapter 09): the raw vectors in a file on disk, compressed codes in
memory, and a shortlist re-ranked with the exact vectors read back from the file.

The file is an ordinary ``.npy`` array (float16 by default: half the disk, and the catalogue's vectors are
the float16 ones, so exact search and re-ranking use the very same numbers). It is read in chunks into
ordinary memory, never memory-mapped whole, so the process's resident memory holds one chunk at a time;
a shortlist's rows are read one by one at their offsets (``os.pread``) and come from the operating
system's file cache when they are there.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import numpy as np
import pandas as pd

from helpers import vectors as flat
from helpers.paths import replacing
from helpers.vectors import index_bytes, load_faiss

CHUNK_ROWS = 250_000  # rows read from a vector file at a time: 256 MiB of float32 at width 256


def write_vectors(chunks, path, n: int, dim: int, dtype="float16") -> Path:
    """Write the ``n`` vectors of width ``dim`` that ``chunks`` yields to ``path`` as one ``.npy`` file, one
    chunk at a time (through a temporary file, so a cut-short run leaves no file); return the path."""
    dtype, path, rows = np.dtype(dtype), Path(path), 0
    with replacing(path) as tmp, open(tmp, "wb") as fh:
        np.lib.format.write_array_header_2_0(fh, {"descr": np.lib.format.dtype_to_descr(dtype),
                                                  "fortran_order": False, "shape": (n, dim)})
        for chunk in chunks:
            if chunk.ndim != 2 or chunk.shape[1] != dim:
                raise ValueError(f"a chunk of shape {chunk.shape} does not hold {dim}-wide vectors.")
            rows += len(chunk)
            if rows > n:
                break
            fh.write(np.ascontiguousarray(chunk, dtype=dtype).tobytes())
        if rows != n:
            raise ValueError(f"the chunks held {'more than ' * (rows > n)}{rows:,} vectors, not the {n:,} announced.")
    return path


class VectorFile:
    """A ``.npy`` file of vectors, read in chunks or by rows, always returned as float32; with ``delete``,
    the file is removed when it is closed (a working copy that can be written again)."""

    def __init__(self, path, delete: bool = False):
        self.path, self.delete, self._fd = Path(path), delete, -1
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path} is missing: write the vectors with write_vectors first.")
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, fortran, dtype = read(fh)
            except ValueError as err:
                raise ValueError(f"{self.path} is not a .npy file of vectors ({err}); write it again.") from err
            self.offset = fh.tell()
        if len(shape) != 2 or fortran or dtype.kind != "f":
            raise ValueError(f"{self.path} holds a {dtype} array of shape {shape}, not rows of vectors.")
        self.shape, self.dtype = shape, dtype
        self.row_bytes = shape[1] * dtype.itemsize
        expected = self.offset + shape[0] * self.row_bytes
        if self.path.stat().st_size != expected:
            raise ValueError(f"{self.path} has {self.path.stat().st_size:,} bytes, its header promises "
                             f"{expected:,}: it was cut short or changed; write it again.")
        self._fd = os.open(self.path, os.O_RDONLY)

    def __len__(self) -> int:
        return self.shape[0]

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
            if self.delete:
                self.path.unlink(missing_ok=True)

    def __del__(self) -> None:
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self, first: int, count: int) -> bytes:
        """``count`` rows from row ``first``, through the file opened at the start (the same file throughout)."""
        size = count * self.row_bytes
        data = os.pread(self._fd, size, self.offset + first * self.row_bytes)
        if len(data) != size:
            raise ValueError(f"{self.path} ends before row {first + count:,}: it was cut short; write it again.")
        return data

    def chunks(self, rows: int = CHUNK_ROWS):
        """Yield (first row, float32 chunk) over the whole file."""
        for first in range(0, len(self), rows):
            count = min(rows, len(self) - first)
            yield first, np.frombuffer(self._read(first, count), self.dtype).reshape(count, -1).astype(np.float32)

    def rows(self, ids) -> np.ndarray:
        """The vectors of rows ``ids`` (any order), float32."""
        ids = np.asarray(ids, np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= len(self)):
            raise IndexError(f"rows {ids.min()}..{ids.max()} asked of {self.path.name}, which has {len(self):,}.")
        blob = b"".join(self._read(int(i), 1) for i in ids)
        return np.frombuffer(blob, self.dtype).reshape(len(ids), self.shape[1]).astype(np.float32)


def exact_search(vectors: VectorFile, queries, k: int = 10, rows: int = CHUNK_ROWS):
    """The exact k nearest neighbours by inner product, computed chunk by chunk over the file: each chunk's
    own top k, merged with the best so far. Returns (similarities, ids), like FAISS."""
    faiss = load_faiss()
    queries = np.ascontiguousarray(queries, np.float32)
    best_d = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for first, chunk in vectors.chunks(rows):
        d, i = faiss.knn(queries, chunk, min(k, len(chunk)), metric=faiss.METRIC_INNER_PRODUCT)
        d, i = np.hstack([best_d, d]), np.hstack([best_i, i + first])
        top = np.argsort(-d, axis=1, kind="stable")[:, :k]
        best_d, best_i = np.take_along_axis(d, top, 1), np.take_along_axis(i, top, 1)
    return best_d, best_i


def rerank(vectors: VectorFile, queries, candidates, k: int = 10) -> np.ndarray:
    """Re-rank each query's candidate ids (-1 marks none) by their exact inner product, read from the file;
    the best k ids per query."""
    out = np.full((len(queries), k), -1, np.int64)
    for q, (query, ids) in enumerate(zip(queries, candidates)):
        ids = ids[ids >= 0]
        scores = vectors.rows(ids) @ query
        top = np.argsort(-scores, kind="stable")[:k]
        out[q, :len(top)] = ids[top]
    return out


def synthesise_to_file(synthetic_chunks, path, n: int, dim: int, dtype="float16") -> tuple[Path, np.ndarray]:
    """Write the (vectors, source rows) chunks of ``vectors.synthesise(..., with_sources=True)`` to a file;
    return its path and, per vector, the row of the real embedding it was drawn from."""
    sources = []

    def vectors_only():
        for chunk, rows in synthetic_chunks:
            sources.append(rows.astype(np.int32))
            yield chunk

    return write_vectors(vectors_only(), path, n, dim, dtype), np.concatenate(sources)


def measures(found, exact, groups, query_groups, k: int = 10) -> dict:
    """Three ways to score a search: recall@k (the share of the exact k nearest it returns), 1-recall@k
    (the share of queries whose single nearest product is among its k) and same-type precision@k (the
    share of the k it returns whose group, e.g. article type, is the query's: what a shopper sees)."""
    found, exact = np.asarray(found)[:, :k], np.asarray(exact)[:, :k]
    if found.shape != exact.shape:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must have the same shape.")
    groups, query_groups = np.asarray(groups), np.asarray(query_groups)
    same = np.where(found >= 0, groups[np.maximum(found, 0)] == query_groups[:, None], False)
    return {f"recall@{k}": flat.recall_at_k(found, exact),
            f"1-recall@{k}": float((found == exact[:, :1]).any(1).mean()), f"same-type P@{k}": float(same.mean())}


def cells_ceiling(quantizer, queries, exact, assignments, nprobe: int) -> float:
    """The best recall@k any IVF index over ``quantizer`` can reach when it visits ``nprobe`` cells: the
    share of the exact neighbours that lie in the cells visited (what the coarse step alone loses)."""
    _, visited = quantizer.search(np.ascontiguousarray(queries, np.float32), nprobe)
    cells = np.asarray(assignments)[np.asarray(exact)]
    return float(np.mean([np.isin(c, v).mean() for c, v in zip(cells, visited)]))


class Reranked:
    """An index whose best ``shortlist`` answers are re-ranked exactly from the vector file, searched like
    a FAISS index: ``search(queries, k)`` returns (None, ids); a shortlist of k or fewer is the index alone.
    Queries are checked first (``helpers.vectors.search``: their width and values)."""

    def __init__(self, index, vectors: VectorFile, shortlist: int):
        self.index, self.vectors, self.shortlist = index, vectors, shortlist

    def search(self, queries, k: int):
        queries = np.ascontiguousarray(queries, np.float32)
        _, found = flat.search(self.index, queries, max(k, self.shortlist))
        return None, rerank(self.vectors, queries, found, k) if self.shortlist > k else found[:, :k]


class Exact:
    """Exact search over the vector file, searched like a FAISS index (for ``helpers.vectors.time_queries``)."""

    def __init__(self, vectors: VectorFile):
        self.vectors = vectors

    def search(self, queries, k: int):
        return exact_search(self.vectors, queries, k)


COMPRESSED = ("IVF-PQ32", "OPQ32,IVF-PQ32", "IVF-PQ64", "IVF-SQ8")
# the product quantizer learns 256 codes per sub-vector from this many vectors (64 per code, where FAISS asks
# for at least 39) in 10 k-means rounds: more points or rounds took minutes and gave no better recall
PQ_TRAIN_POINTS, PQ_TRAIN_ROUNDS = 16_384, 10


def compressed_index(name: str, quantizer, sample):
    """An empty inverted-file index with compressed codes over ``quantizer``'s cells, trained on
    ``sample``: product-quantizer codes of M bytes (``IVF-PQ<M>``), the same after an OPQ rotation
    learnt to suit them (``OPQ<M>,IVF-PQ<M>``), or 8-bit scalars (``IVF-SQ8``). The OPQ rotation is
    orthogonal, so it keeps inner products, and each vector's cell is the one ``quantizer`` gives it."""
    faiss = load_faiss()
    sample = sample[:PQ_TRAIN_POINTS]
    dim, nlist, ip = quantizer.d, quantizer.ntotal, faiss.METRIC_INNER_PRODUCT
    parts = re.fullmatch(r"(?:OPQ(\d+),)?IVF-PQ(\d+)|IVF-SQ8", name)
    if not parts or parts[1] not in (None, parts[2]):
        raise ValueError(f"Unknown compressed index {name!r}; use one of {COMPRESSED} (PQ with any number of bytes "
                         "that divides the width, OPQ with the same number).")
    if name == "IVF-SQ8":
        index = faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip)
    elif parts[1] is None:
        index = faiss.IndexIVFPQ(quantizer, dim, nlist, int(parts[2]), 8, ip)
        index.pq.cp.niter = PQ_TRAIN_ROUNDS
    else:
        m = int(parts[2])
        rotation = faiss.OPQMatrix(dim, m)
        rotation.niter = PQ_TRAIN_ROUNDS
        rotation.train(sample)
        rotated = faiss.IndexFlatIP(dim)
        rotated.add(rotation.apply(quantizer.reconstruct_n(0, nlist)))
        inner = faiss.IndexIVFPQ(rotated, dim, nlist, m, 8, ip)
        inner.pq.cp.niter = PQ_TRAIN_ROUNDS
        inner.train(rotation.apply(sample))
        return faiss.IndexPreTransform(rotation, inner)
    index.train(sample)
    return index


def fill(index, vectors: VectorFile, assignments) -> None:
    """Add every vector of the file to an IVF index (``compressed_index``), chunk by chunk, into the cells
    ``assignments`` gives (computed once for all indexes), each list reserved at its final size."""
    from faiss.contrib.ivf_tools import add_preassigned

    faiss = load_faiss()
    ivf = faiss.extract_index_ivf(index)
    flat.reserve_lists(ivf, np.bincount(assignments, minlength=ivf.nlist))
    rotate = faiss.downcast_index(index).chain.at(0).apply if isinstance(index, faiss.IndexPreTransform) else None
    for first, chunk in vectors.chunks():
        add_preassigned(ivf, rotate(chunk) if rotate else chunk, assignments[first:first + len(chunk)])
    index.ntotal = ivf.ntotal


def evaluate_compressed(vectors: VectorFile, quantizer, assignments, sample, queries, exact, groups,
                        query_groups, names=COMPRESSED, nprobes=(8, 16, 32, 64), shortlists=(10, 50, 100, 200),
                        k: int = 10, singles: int = 200) -> pd.DataFrame:
    """Each compressed index built over the file (one at a time, deleted after its measurements), then, for
    each ``nprobe`` and shortlist, the three ``measures`` and the latency (``helpers.vectors.time_queries``). A
    shortlist of k is the codes alone; longer shortlists are re-ranked from the file. Rows named "cells
    visited" give the ceiling the coarse step leaves (``cells_ceiling``)."""
    faiss = load_faiss()
    rows = [{"index": "cells visited", "nprobe": p, "shortlist": np.nan,
             f"recall@{k}": cells_ceiling(quantizer, queries, exact, assignments, p)} for p in nprobes]
    for name in names:
        start = time.perf_counter()
        index = compressed_index(name, quantizer, sample)
        fill(index, vectors, assignments)
        build, memory = time.perf_counter() - start, index_bytes(index)
        for nprobe in nprobes:
            faiss.extract_index_ivf(index).nprobe = nprobe
            for shortlist in shortlists:
                found, latency = flat.time_queries(Reranked(index, vectors, shortlist), queries, k, singles)
                rows.append({"index": name, "nprobe": nprobe, "shortlist": shortlist,
                             **measures(found, exact, groups, query_groups, k), **latency,
                             "build s": build, "memory MiB": memory / 2**20, "bytes per vector": memory / len(vectors)})
        del index
    return pd.DataFrame(rows).assign(vectors=len(vectors))


def exact_row(vectors: VectorFile, queries, k: int = 10, singles: int = 3) -> tuple[np.ndarray, dict]:
    """Exact search over the file: the answers for every query (timed as a batch) and ``singles`` queries
    timed one at a time on one core, as a row of the results table."""
    exact, latency = flat.time_queries(Exact(vectors), queries, k, singles)
    return exact, {"setting": "exact, from the file", "index": "Flat (exact)", **latency, "memory MiB": 0.0,
                   "bytes per vector": 0.0}


def evaluate_at_scale(vectors: VectorFile, queries, groups, query_groups, names=COMPRESSED, in_memory: bool = True,
                      hnsw: bool = True, seed: int = 0, k: int = 10, singles: int = 200, nprobes=(8, 16, 32, 64),
                      shortlists=(10, 50, 100, 200)):
    """Every index on the vectors of one file, with ~√n cells. Exact answers first (in memory when
    ``in_memory``, else chunk by chunk from the file); then, when ``in_memory``, the float32 indexes of
    ``helpers.vectors.evaluate_indexes`` (HNSW if ``hnsw``); then the compressed indexes ``names``, with and
    without re-ranking (``evaluate_compressed`` over ``nprobes`` and ``shortlists``). Returns the results
    table (one row per index and setting, with the three ``measures``) and the compressed indexes' own
    table (for the ablation)."""
    from functools import partial

    n, score = len(vectors), partial(measures, groups=groups, query_groups=query_groups, k=k)
    nlist = 2 ** round(np.log2(np.sqrt(n)))
    if in_memory:
        table, exact = flat.evaluate_indexes(lambda: (chunk for _, chunk in vectors.chunks()), queries, nlist,
                                             hnsw, k, seed, singles, score, ivf=("IVF-Flat",))
    else:
        exact, row = exact_row(vectors, queries, k)
        table = pd.DataFrame([{**row, **score(exact, exact)}])
    sample = next(vectors.chunks(40 * nlist))[1]
    start = time.perf_counter()
    quantizer = flat.train_quantizer(sample, nlist, seed)
    assignments = np.concatenate([quantizer.assign(chunk, 1).ravel() for _, chunk in vectors.chunks()])
    coarse = time.perf_counter() - start
    compressed = evaluate_compressed(vectors, quantizer, assignments, sample, queries, exact, groups, query_groups,
                                     names, nprobes, shortlists, k, singles)
    compressed["build s"] += coarse
    rows = compressed[compressed["index"] != "cells visited"]
    reranked = rows["shortlist"] > k
    named = rows.assign(index=np.where(reranked, rows["index"] + " + re-rank", rows["index"]),
                        setting=[f"nprobe={p}" + (f", shortlist={s:.0f}" if s > k else "")
                                 for p, s in zip(rows["nprobe"], rows["shortlist"])])
    table = pd.concat([table, named.drop(columns=["nprobe", "shortlist", "vectors"])], ignore_index=True)
    return table.assign(vectors=n), compressed
