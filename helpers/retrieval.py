"""Similar-product retrieval: cosine nearest neighbours and precision / MAP at k.

A retrieved item is *relevant* when its label equals the query's label (for two labels,
e.g. articleType and baseColour, pass a combined key such as ``"Tshirts|Blue"``).
The query itself is never counted among its own neighbours.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.neighbors import NearestNeighbors

from helpers.paths import atomic_write_bytes


def nearest_neighbours(embeddings, k: int, query_rows=None) -> np.ndarray:
    """Indices (n_queries, k) of the k rows of ``embeddings`` most cosine-similar to each query.

    The queries are the rows ``query_rows`` of ``embeddings`` (all rows when None); each searches
    every row, itself excluded. So a shop's new products (``query_rows``) search the whole catalogue.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    if embeddings.ndim != 2:
        raise ValueError(f"embeddings must have shape (n, dim), got {embeddings.shape}.")
    if k + 1 > len(embeddings):
        raise ValueError(f"k={k} needs at least {k + 1} embeddings, got {len(embeddings)}.")
    rows = np.arange(len(embeddings)) if query_rows is None else np.asarray(query_rows)
    index = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(embeddings)
    # all rows: query with the fitted array itself; a copy rounds some cosine distances differently
    # here and reorders exact ties (duplicate photos), so the saved neighbour lists would change
    found = index.kneighbors(embeddings if query_rows is None else embeddings[rows], return_distance=False)
    keep = found != rows[:, None]  # drop the query itself wherever it appears (ties may move it)
    return np.stack([r[m][:k] for r, m in zip(found, keep)])


def relevance(labels, neighbours, query_labels=None) -> np.ndarray:
    """Boolean (n_queries, k): is each retrieved item's label the query's label?"""
    labels = np.asarray(labels)
    query_labels = labels if query_labels is None else np.asarray(query_labels)
    if len(query_labels) != len(neighbours):
        raise ValueError(f"{len(query_labels)} query labels for {len(neighbours)} neighbour lists.")
    return labels[neighbours] == query_labels[:, None]


def precision_at_k(relevant) -> float:
    """Mean over queries of the share of relevant items among the k retrieved."""
    return float(np.asarray(relevant, dtype=float).mean())


def average_precision_at_k(relevant, n_relevant=None) -> np.ndarray:
    """AP@k per query: the sum of precision@i over the ranks i that hold a relevant item, divided by the
    number of relevant items retrieved (``n_relevant`` None: the convention of retrieval write-ups that
    do not know every relevant item) or by min(k, R) with R = ``n_relevant``, each query's relevant items in
    the whole collection (as many as a perfect list of k could hold); 0 when the divisor is 0."""
    relevant = np.asarray(relevant, dtype=float)
    ranks = np.arange(1, relevant.shape[1] + 1)
    precision_at_rank = np.cumsum(relevant, axis=1) / ranks
    hits = relevant.sum(axis=1)
    divisor = hits if n_relevant is None else np.minimum(relevant.shape[1], np.asarray(n_relevant, dtype=float))
    return np.divide((precision_at_rank * relevant).sum(axis=1), divisor, out=np.zeros(len(relevant)),
                     where=divisor > 0)


def mean_average_precision_at_k(relevant, n_relevant=None) -> float:
    return float(average_precision_at_k(relevant, n_relevant).mean())


def precision_curve(relevant) -> np.ndarray:
    """Precision@i for i = 1..k (mean over queries): how precision falls as the list grows."""
    relevant = np.asarray(relevant, dtype=float)
    return (np.cumsum(relevant, axis=1) / np.arange(1, relevant.shape[1] + 1)).mean(axis=0)


def retrieval_table(neighbours: dict, labels: dict, query_rows=None) -> pd.DataFrame:
    """Precision@k and MAP@k (divided by the hits retrieved, and by min(k, R)) for every search method
    (``{name: neighbour indices}``) under every definition of relevance (``{name: one label per item}``); the
    queries are the items ``query_rows`` (all items when None), as in ``nearest_neighbours``."""
    rows = []
    for method, found in neighbours.items():
        for relevance_name, item_labels in labels.items():
            item_labels = np.asarray(item_labels)
            asking = item_labels if query_rows is None else item_labels[query_rows]
            relevant = relevance(item_labels, found, asking)
            in_collection = pd.Series(item_labels).value_counts()[asking].to_numpy() - 1  # the query excluded
            k = found.shape[1]
            rows.append({"method": method, "relevant when same": relevance_name,
                         f"precision@{k}": precision_at_k(relevant),
                         f"MAP@{k}": mean_average_precision_at_k(relevant),
                         f"MAP@{k}, divided by min(k, R)": mean_average_precision_at_k(relevant, in_collection)})
    return pd.DataFrame(rows).set_index(["method", "relevant when same"])


def confused_pairs(labels, neighbours, n: int = 5) -> pd.DataFrame:
    """The label pairs (query's, neighbour's; order ignored) behind most irrelevant neighbours,
    with their count and share of all irrelevant neighbours, most frequent first."""
    labels = np.asarray(labels)
    query = np.repeat(labels, neighbours.shape[1])
    found = labels[np.asarray(neighbours).ravel()]
    miss = query != found
    pairs = pd.Series([" / ".join(sorted(pair)) for pair in zip(query[miss], found[miss])], dtype=object)
    counts = pairs.value_counts()
    return pd.DataFrame({"misses": counts, "share of misses": counts / miss.sum()}).head(n)


def save_neighbours(path, ids, neighbours: dict) -> None:
    """The searched items' ids and each method's neighbour lists (positions into ``ids``), atomically,
    so that the retrieval scores can be recomputed without the model."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, ids=np.asarray(ids), **{f"neighbours__{m}": np.asarray(f, np.int32)
                                                        for m, f in neighbours.items()})
    atomic_write_bytes(Path(path), buffer.getvalue())


def load_neighbours(path) -> tuple[np.ndarray, dict]:
    with np.load(path) as data:
        return data["ids"], {k.removeprefix("neighbours__"): data[k] for k in data.files if k != "ids"}
