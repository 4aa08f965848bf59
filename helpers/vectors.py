"""Similar products at catalogue scale (chapter 09): FAISS indexes, recall against exact search, query
latency, memory, synthetic catalogues that keep the real embeddings' structure, and index files.

Vectors are L2-normalised float32, so the inner product FAISS maximises is the cosine similarity
chapter 08 searched with.
"""

from __future__ import annotations

import ctypes
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

from helpers.indexfiles import check_index_file, load_index, save_index  # noqa: F401  (chapter 09 calls vectors.*)
from helpers.precision import cpu_flags


def load_faiss():
    """``import faiss``, first telling its bundled OpenBLAS which CPU kernels to use when the user has not
    (``$OPENBLAS_CORETYPE``): that OpenBLAS predates some recent CPUs and falls back to its slowest generic
    kernels on them (on the Xeon this series was measured on, exact search and IVF training ran five times
    slower). The variable is set only while the library loads, so other libraries keep their own choice."""
    if "faiss" in sys.modules:
        return sys.modules["faiss"]
    flags = cpu_flags()
    chosen = None
    if "OPENBLAS_CORETYPE" not in os.environ:
        chosen = "SKYLAKEX" if "avx512f" in flags else "HASWELL" if "avx2" in flags else None
    if chosen:
        os.environ["OPENBLAS_CORETYPE"] = chosen
    try:
        import faiss
    finally:
        if chosen:
            del os.environ["OPENBLAS_CORETYPE"]
    return faiss


def faiss_blas_kernels() -> str:
    """The CPU kernels FAISS's bundled OpenBLAS runs (e.g. "SkylakeX"); "" where it bundles none."""
    faiss = load_faiss()
    libs = sorted(Path(faiss.__file__).parent.parent.glob("faiss_cpu.libs/libopenblas*.so*"))
    if not libs:
        return ""
    blas = ctypes.CDLL(str(libs[0]))  # already loaded with faiss: the same library
    blas.openblas_get_corename.restype = ctypes.c_char_p
    return blas.openblas_get_corename().decode()


def normalise(vectors) -> np.ndarray:
    """Rows scaled to unit length (float32, a new array)."""
    vectors = np.asarray(vectors, dtype=np.float32)  # no copy of its own: the division makes the new array
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


def recall_at_k(found, exact) -> float:
    """Mean over queries of the share of the exact k nearest neighbours that the index also returned
    (FAISS marks a missing answer with -1, which never matches)."""
    found, exact = np.asarray(found), np.asarray(exact)
    if found.shape != exact.shape or found.ndim != 2:
        raise ValueError(f"found {found.shape} and exact {exact.shape} must be equal (n_queries, k) shapes.")
    hits = [np.intersect1d(f[f >= 0], e).size for f, e in zip(found, exact)]
    return float(np.mean(hits) / exact.shape[1])


@contextmanager
def timed():
    """Yield a dict that receives the seconds the block took, as ``build s``."""
    cost, start = {}, time.perf_counter()
    yield cost
    cost["build s"] = time.perf_counter() - start


def index_bytes(index) -> int:
    """The size of an index's arrays: the stored vectors or codes, each IVF list's ids, a quantizer's
    centroids, an HNSW graph's links (what the index holds in memory, without spare capacity)."""
    faiss = load_faiss()
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexFlat):
        return index.ntotal * index.code_size
    if isinstance(index, faiss.IndexPreTransform):  # a rotation in front: its matrix, then the index
        chain = [faiss.downcast_VectorTransform(index.chain.at(i)) for i in range(index.chain.size())]
        return index_bytes(index.index) + sum(4 * t.A.size() + 4 * t.b.size() for t in chain)
    if isinstance(index, faiss.IndexHNSW):
        graph = index.hnsw
        return (index_bytes(index.storage) + 4 * graph.neighbors.size() + 8 * graph.offsets.size()
                + 4 * graph.levels.size())
    if isinstance(index, faiss.IndexIVF):
        stored = sum(index.invlists.list_size(i) for i in range(index.nlist))
        return stored * (index.code_size + 8) + index_bytes(index.quantizer)
    raise TypeError(f"index_bytes does not know {type(index).__name__}.")


def time_queries(index, queries, k: int = 10, singles: int = 200) -> tuple[np.ndarray, dict]:
    """The batch's k nearest neighbours, and milliseconds per query: the whole batch at once on every core
    (``batch ms``), and one query at a time on one core for the first ``singles`` queries (median and 99th
    percentile), as a shop's server answers pages: one query per core, each core busy with its own."""
    faiss = load_faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    start = time.perf_counter()
    _, found = index.search(queries, k)
    batch = (time.perf_counter() - start) / len(queries) * 1000
    single, threads = [], faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        for row in queries[:singles]:
            start = time.perf_counter()
            index.search(row[None], k)
            single.append((time.perf_counter() - start) * 1000)
    finally:
        faiss.omp_set_num_threads(threads)
    return found, {"batch ms": batch, "single ms (median)": float(np.median(single)),
                   "single ms (p99)": float(np.percentile(single, 99))}


def sweep(index, queries, exact, parameter: str, values, k: int = 10, singles: int = 200,
          score=None) -> pd.DataFrame:
    """Recall@k against ``exact`` and latency for each value of a search-time parameter (``nprobe`` for IVF,
    ``efSearch`` for HNSW); ``score(found, exact)``, when given, returns the measures instead of recall@k."""
    faiss = load_faiss()
    rows = []
    for value in values:
        faiss.ParameterSpace().set_index_parameter(index, parameter, value)
        found, latency = time_queries(index, queries, k, singles)  # the timed batch search gives the recall too
        scores = score(found, exact) if score else {f"recall@{k}": recall_at_k(found, exact)}
        rows.append({"setting": f"{parameter}={value}", **scores, **latency})
    return pd.DataFrame(rows)


def train_quantizer(sample, nlist: int, seed: int = 0):
    """The coarse quantizer of an IVF index: ``nlist`` spherical k-means centroids of ``sample``, searched
    exactly by inner product (chapter 09 types the same function)."""
    faiss = load_faiss()
    kmeans = faiss.Kmeans(sample.shape[1], nlist, niter=10, seed=seed, spherical=True)
    kmeans.train(sample)
    quantizer = faiss.IndexFlatIP(sample.shape[1])
    quantizer.add(kmeans.centroids)
    return quantizer


PQ_PARTS = (32, 16, 8, 4)  # sub-quantizers tried for IVF-PQ, most first: 32 one-byte codes for 256-d vectors


def pq_parts(dim: int) -> int:
    """The number of product-quantizer sub-quantizers for ``dim``-dimensional vectors: the largest of
    ``PQ_PARTS`` that divides ``dim`` (each codes an equal slice of the vector in one byte)."""
    for parts in PQ_PARTS:
        if dim % parts == 0:
            return parts
    raise ValueError(f"IVF-PQ splits each vector into {' or '.join(map(str, PQ_PARTS))} equal slices, and none "
                     f"divides d={dim}: give the embeddings a width divisible by {PQ_PARTS[-1]} (or compare the "
                     "other indexes without IVF-PQ).")


def ivf_indexes(quantizer, nlist: int) -> dict:
    """Three inverted-file indexes over one quantizer: the lists hold the vectors whole, as 8-bit scalars
    (a quarter of the memory), or as product-quantizer codes of one byte per slice (``pq_parts``: 32 bytes
    for 256-d vectors; chapter 09 types the same function for its 256-d embeddings)."""
    faiss = load_faiss()
    dim, ip = quantizer.d, faiss.METRIC_INNER_PRODUCT
    parts = pq_parts(dim)
    return {"IVF-Flat": faiss.IndexIVFFlat(quantizer, dim, nlist, ip),
            "IVF-SQ8": faiss.IndexIVFScalarQuantizer(quantizer, dim, nlist, faiss.ScalarQuantizer.QT_8bit, ip),
            "IVF-PQ": faiss.IndexIVFPQ(quantizer, dim, nlist, parts, 8, ip)}


def search(index, queries, k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``index.search(queries, k)`` (similarities or distances, and ids; -1 where fewer than k are found),
    after checking what FAISS does not: the queries are a 2-D array of finite numbers with the index's
    dimension, and k is a positive whole number."""
    array = np.asarray(queries)
    if array.dtype.kind not in "fiu":
        raise ValueError(f"queries are of type {array.dtype}; pass vectors of numbers (float32 embeddings).")
    if array.ndim != 2:
        raise ValueError(f"queries have shape {array.shape}; pass a 2-D array (n_queries, {index.d}), "
                         "such as vector[None] for one vector.")
    if array.shape[1] != index.d:
        raise ValueError(f"queries have d={array.shape[1]} columns; the index holds d={index.d}: embed the "
                         "queries with the model that made the index's vectors.")
    if not np.isfinite(array).all():
        rows = np.flatnonzero(~np.isfinite(array).all(axis=1))
        raise ValueError(f"queries {rows[:5].tolist()} hold NaN or infinite values; drop or re-embed them.")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k={k!r} must be a whole number of neighbours, 1 or more.")
    return index.search(np.ascontiguousarray(array, dtype=np.float32), int(k))


NPROBES = (1, 2, 4, 8, 16, 32, 64, 128)
EF_SEARCH = (16, 32, 64, 128, 256, 512)
# candidates kept while linking each new vector into the HNSW graph (FAISS's default is 40): catalogues with
# many close variants of each product need more, or searches stall short of the true nearest neighbours
HNSW_BUILD_CANDIDATES = 100


def evaluate_indexes(make_chunks, queries, nlist: int, hnsw: bool = True, k: int = 10, seed: int = 0,
                     singles: int = 200, score=None,
                     ivf=("IVF-Flat", "IVF-SQ8", "IVF-PQ")) -> tuple[pd.DataFrame, np.ndarray]:
    """Every index type on the vectors ``make_chunks()`` yields (a fresh pass each call): build seconds
    (FAISS's work only, not making the vectors), memory (``index_bytes``), and recall@k against exact
    search with latency for each search setting; also the exact answers. The exact index goes first and
    is deleted before the three IVF indexes, which share one quantizer and one pass over the vectors, are
    filled; HNSW (if asked) comes last, alone. Exact search over n vectors costs n multiply-adds per
    dimension per query, so it answers as many single queries as take about as long as ``singles``
    queries over a million vectors. ``score`` as in ``sweep``; ``ivf`` names the IVF indexes to build."""
    from faiss.contrib.ivf_tools import add_preassigned

    faiss = load_faiss()
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    sample = next(make_chunks())[:40 * nlist]
    seconds = {"Flat (exact)": 0.0, "quantizer": 0.0}
    with timed() as cost:
        quantizer = train_quantizer(sample, nlist, seed)
    seconds["quantizer"], exact_index, lists = cost["build s"], faiss.IndexFlatIP(queries.shape[1]), []
    for chunk in make_chunks():
        with timed() as cost:
            exact_index.add(chunk)
        seconds["Flat (exact)"] += cost["build s"]
        with timed() as cost:
            lists.append(quantizer.assign(chunk, 1).ravel())
        seconds["quantizer"] += cost["build s"]
    n, memory = exact_index.ntotal, {"Flat (exact)": index_bytes(exact_index)}
    exact, latency = time_queries(exact_index, queries, k, max(10, min(singles, int(singles * 1e6 / n))))
    scores = score(exact, exact) if score else {f"recall@{k}": 1.0}
    tables = [pd.DataFrame([{"setting": "exact", **scores, **latency, "index": "Flat (exact)"}])]
    del exact_index
    indexes = {name: index for name, index in ivf_indexes(quantizer, nlist).items() if name in ivf}
    counts = np.bincount(np.concatenate(lists), minlength=nlist)
    for name, index in indexes.items():
        with timed() as cost:
            index.train(sample)
            reserve_lists(index, counts)
        seconds[name] = seconds["quantizer"] + cost["build s"]
    for chunk, assigned in zip(make_chunks(), lists, strict=True):
        for name, index in indexes.items():
            with timed() as cost:
                add_preassigned(index, chunk, assigned)
            seconds[name] += cost["build s"]
    for name in list(indexes):
        index = indexes.pop(name)
        memory[name] = index_bytes(index)
        tables.append(sweep(index, queries, exact, "nprobe", [p for p in NPROBES if p <= nlist], k, singles, score)
                      .assign(index=name))
        del index
    if hnsw:
        index = faiss.index_factory(queries.shape[1], "HNSW32,Flat", faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = HNSW_BUILD_CANDIDATES
        for chunk in make_chunks():
            with timed() as cost:
                index.add(chunk)
            seconds["HNSW"] = seconds.get("HNSW", 0.0) + cost["build s"]
        memory["HNSW"] = index_bytes(index)
        tables.append(sweep(index, queries, exact, "efSearch", EF_SEARCH, k, singles, score).assign(index="HNSW"))
    table = pd.concat(tables, ignore_index=True).assign(vectors=n)
    table["build s"] = table["index"].map(seconds)
    table["memory MiB"] = table["index"].map(memory) / 2**20
    table["bytes per vector"] = table["index"].map(memory) / n
    return table, exact


def reserve_lists(index, counts) -> None:
    """Give each inverted list of an empty IVF index room for its final number of vectors (``counts``),
    so that adding in chunks does not leave lists over-allocated (a growing list doubles its capacity,
    which costs up to twice the memory the vectors need)."""
    faiss = load_faiss()
    lists = faiss.downcast_InvertedLists(index.invlists)
    for number, count in enumerate(np.asarray(counts)):
        lists.resize(number, int(count))  # allocates exactly count entries ...
        lists.resize(number, 0)  # ... and keeps them allocated while emptying the list


def best_settings(table: pd.DataFrame, recall: float = 0.95, k: int = 10) -> pd.DataFrame:
    """Per number of vectors and index type, the search setting with the lowest median single-query
    latency among those reaching ``recall`` (recall@k); indexes that never reach it are left out."""
    good = table[table[f"recall@{k}"] >= recall]
    rows = good.loc[good.groupby(["vectors", "index"])["single ms (median)"].idxmin()]
    return rows.set_index(["vectors", "index"]).sort_index()


def spread(embeddings, groups) -> tuple[np.ndarray, float]:
    """For each (normalised) embedding, the standard deviation per dimension of noise that keeps its
    group's shape: the group's own spread per dimension (the overall one for a group of one), scaled so
    that the noise is as long as the median distance from a real embedding to its nearest real neighbour;
    and that scale."""
    faiss = load_faiss()
    vectors, groups = normalise(embeddings), np.asarray(groups)
    overall = vectors.std(axis=0)
    names, inverse = np.unique(groups, return_inverse=True)
    sigma = np.stack([vectors[inverse == g].std(axis=0) if (inverse == g).sum() > 1 else overall
                      for g in range(len(names))])
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(vectors)
    similarity, _ = index.search(vectors, 2)  # the first neighbour is the vector itself
    nearest = np.sqrt(np.maximum(2 - 2 * similarity[:, 1], 0))
    scale = float(np.median(nearest) / np.linalg.norm(sigma, axis=1).mean())
    return (scale * sigma[inverse]).astype(np.float32), scale


def synthesise(embeddings, noise, n: int, seed: int = 0, chunk: int = 500_000, with_sources: bool = False):
    """Yield ``n`` synthetic catalogue vectors in chunks (each chunk its own random stream, so a pass
    regenerates exactly the same vectors): a real embedding drawn at random, plus Gaussian noise of its
    shape (``spread``), normalised. The catalogue's group sizes, its clusters and the distances between
    neighbours stay those of the real embeddings. ``with_sources``: yield (vectors, the row of the real
    embedding each one was drawn from), so a synthetic product keeps its original's labels."""
    vectors, noise = normalise(embeddings), np.asarray(noise, np.float32)
    if noise.shape != vectors.shape:
        raise ValueError(f"noise {noise.shape} must have the embeddings' shape {vectors.shape} (see spread).")
    for first in range(0, n, chunk):
        rng = np.random.default_rng([seed, first // chunk])
        rows = rng.integers(0, len(vectors), min(chunk, n - first))
        out = rng.standard_normal((len(rows), vectors.shape[1]), dtype=np.float32)
        out *= noise[rows]
        out += vectors[rows]
        yield (normalise(out), rows) if with_sources else normalise(out)
