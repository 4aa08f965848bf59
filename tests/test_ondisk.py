"""Vectors on disk (chapter 09): the file format, exact search over chunks, re-ranking, the three measures."""

import numpy as np
import pytest

from helpers import ondisk, vectors


@pytest.fixture
def clustered(tmp_path):
    """3,000 unit vectors in 20 article types written to a float16 file, the file, and the types."""
    rng = np.random.default_rng(0)
    centres = vectors.normalise(rng.normal(size=(20, 32)))
    types = rng.integers(0, 20, 3000)
    data = vectors.normalise(centres[types] + 0.3 * rng.normal(size=(3000, 32)))
    path = ondisk.write_vectors((data[i:i + 700] for i in range(0, 3000, 700)), tmp_path / "v.npy", 3000, 32)
    with ondisk.VectorFile(path) as file:
        yield data.astype(np.float16).astype(np.float32), file, types


def test_the_file_holds_the_vectors_as_float16_and_reads_back_by_chunk_and_by_row(clustered):
    data, file, _ = clustered
    assert np.array_equal(np.load(file.path), data.astype(np.float16))  # an ordinary .npy file
    assert np.array_equal(np.vstack([chunk for _, chunk in file.chunks(1000)]), data)
    assert [first for first, _ in file.chunks(1000)] == [0, 1000, 2000]
    assert np.array_equal(file.rows([2999, 0, 17, 17]), data[[2999, 0, 17, 17]])
    with pytest.raises(IndexError, match="3,000"):
        file.rows([3000])


def test_a_cut_short_or_missing_file_is_refused_by_name(tmp_path, clustered):
    _, file, _ = clustered
    short = tmp_path / "short.npy"
    short.write_bytes(file.path.read_bytes()[:-64])
    with pytest.raises(ValueError, match="short.npy .*cut short"):
        ondisk.VectorFile(short)
    with pytest.raises(FileNotFoundError, match="missing"):
        ondisk.VectorFile(tmp_path / "none.npy")
    (tmp_path / "text.npy").write_text("not numbers")
    with pytest.raises(ValueError, match="text.npy is not a .npy file"):
        ondisk.VectorFile(tmp_path / "text.npy")


def test_a_writer_that_yields_fewer_vectors_than_announced_leaves_no_file(tmp_path):
    with pytest.raises(ValueError, match="not the 10 announced"):
        ondisk.write_vectors(iter([np.zeros((4, 8), np.float32)]), tmp_path / "v.npy", 10, 8)
    assert list(tmp_path.iterdir()) == []


def test_exact_search_over_chunks_equals_one_search_over_everything(clustered):
    data, file, _ = clustered
    queries = data[:50] + 0.01
    _, found = ondisk.exact_search(file, queries, 10, rows=700)
    brute = np.argsort(-(queries @ data.T), axis=1, kind="stable")[:, :10]
    assert np.array_equal(found, brute)


def test_rerank_orders_a_shortlist_by_exact_inner_product_and_skips_missing_ids(clustered):
    data, file, _ = clustered
    query = data[5]
    shortlist = np.array([[7, -1, 5, 1200, 9]])
    expected = sorted([7, 5, 1200, 9], key=lambda i: -(data[i] @ query))[:3]
    assert ondisk.rerank(file, query[None], shortlist, 3).tolist() == [expected]
    assert ondisk.rerank(file, query[None], np.array([[5, -1, -1]]), 3).tolist() == [[5, -1, -1]]


def test_the_chapters_rerank_is_the_helpers(clustered):
    from tests.test_chapter_code import run_topic_cells

    data, file, _ = clustered
    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 3, "precision": None},
                              definitions_only=True)
    rng = np.random.default_rng(2)
    shortlist = rng.integers(-1, 3000, (40, 30))
    queries = data[:40]
    assert np.array_equal(chapter["rerank"](data, queries, shortlist), ondisk.rerank(file, queries, shortlist))


def test_the_three_measures_on_a_hand_checked_case():
    exact = np.array([[1, 2, 3], [4, 5, 6]])
    found = np.array([[3, 9, -1], [4, 5, 7]])
    groups = np.array(["a"] * 5 + ["b"] * 5)  # ids 0-4 are "a", 5-9 are "b"
    scores = ondisk.measures(found, exact, groups, np.array(["a", "b"]), k=3)
    assert scores["recall@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)
    assert scores["1-recall@3"] == pytest.approx(0.5)  # query 0 misses its nearest (1), query 1 finds 4
    assert scores["same-type P@3"] == pytest.approx((1 / 3 + 2 / 3) / 2)  # 3 is "a"; 5 and 7 are "b"


def test_re_ranking_recovers_what_the_codes_lose_up_to_the_cells_ceiling(clustered):
    data, file, types = clustered
    queries = data[:100]
    _, exact = ondisk.exact_search(file, queries, 10)
    quantizer = vectors.train_quantizer(data, 16)
    assignments = quantizer.assign(data, 1).ravel()
    table = ondisk.evaluate_compressed(file, quantizer, assignments, data, queries, exact, types, types[:100],
                                       names=("IVF-PQ8", "OPQ8,IVF-PQ8", "IVF-SQ8"), nprobes=(2, 16),
                                       shortlists=(10, 200), singles=5)
    ceiling = table[table["index"] == "cells visited"].set_index("nprobe")["recall@10"]
    assert ceiling[16] == pytest.approx(1.0)  # every cell visited
    for name in ("IVF-PQ8", "OPQ8,IVF-PQ8"):
        rows = table[(table["index"] == name)].set_index(["nprobe", "shortlist"])["recall@10"]
        assert rows[(16, 10)] < 0.9 < rows[(16, 200)]  # 8-byte codes lose neighbours that re-ranking recovers
        assert rows[(2, 200)] <= ceiling[2] + 1e-9  # nothing beats the cells visited
    assert table.loc[table["index"] == "OPQ8,IVF-PQ8", "memory MiB"].iloc[0] > 0


def test_unknown_compressed_index_names_the_valid_ones(clustered):
    data, _, _ = clustered
    with pytest.raises(ValueError, match="IVF-PQ32"):
        ondisk.compressed_index("IVF-ZIP", vectors.train_quantizer(data, 8), data)
