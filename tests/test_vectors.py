"""Vector search at scale (chapter 09): recall, index sizes, synthetic catalogues, saved indexes."""

import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import vectors
from helpers.paths import REPO_ROOT
from helpers.precision import cpu_flags

faiss = vectors.load_faiss()


def _clustered(n=2000, dim=64, groups=8, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, groups, n)
    centres = rng.normal(size=(groups, dim)) * 3
    return vectors.normalise(centres[labels] + rng.normal(size=(n, dim))), labels


def test_recall_at_k_by_hand():
    exact = np.array([[1, 2, 9], [7, 8, 9]])
    assert vectors.recall_at_k(np.array([[1, 2, 3], [4, 5, 6]]), exact) == pytest.approx(1 / 3)
    assert vectors.recall_at_k(np.array([[9, 1, 2], [9, 8, 7]]), exact) == 1.0  # order does not matter
    assert vectors.recall_at_k(np.array([[1, -1, -1], [-1, -1, -1]]), exact) == pytest.approx(1 / 6)
    with pytest.raises(ValueError, match="equal"):
        vectors.recall_at_k(np.array([[1, 2]]), exact)


def test_the_chapters_recall_and_ivf_indexes_are_the_helpers():
    from tests.test_chapter_code import run_topic_cells

    chapter = run_topic_cells("09_feed_and_search.ipynb", {"mode": "quick", "seed": 3, "precision": None},
                              definitions_only=True)
    rng = np.random.default_rng(0)
    found, exact = rng.integers(0, 30, (50, 10)), rng.integers(0, 30, (50, 10))
    assert chapter["recall_at_k"](found, exact) == pytest.approx(vectors.recall_at_k(found, exact))
    x, _ = _clustered()
    ours, theirs = chapter["train_quantizer"](x, 16), vectors.train_quantizer(x, 16, seed=3)
    np.testing.assert_array_equal(ours.reconstruct_n(0, 16), theirs.reconstruct_n(0, 16))  # the same centroids
    a, b = chapter["ivf_indexes"](ours, 16), vectors.ivf_indexes(theirs, 16)
    assert list(a) == list(b) == ["IVF-Flat", "IVF-SQ8", "IVF-PQ"]
    for name in a:
        assert type(a[name]) is type(b[name]) and a[name].code_size == b[name].code_size
        for index in (a[name], b[name]):
            index.train(x)
            index.add(x)
            index.nprobe = 4
        np.testing.assert_array_equal(a[name].search(x[:20], 5)[1], b[name].search(x[:20], 5)[1])
    threads = faiss.omp_get_max_threads()
    found, ms = chapter["time_queries"](a["IVF-Flat"], x[:30], 5, singles=12)
    same_found, same_ms = vectors.time_queries(a["IVF-Flat"], x[:30], 5, singles=12)
    np.testing.assert_array_equal(found, same_found)
    assert list(ms) == list(same_ms) and all(value > 0 for value in ms.values())
    assert ms["single ms (median)"] <= ms["single ms (p99)"]
    assert faiss.omp_get_max_threads() == threads  # the cores given back after the one-core queries


def test_index_bytes_counts_vectors_codes_ids_and_centroids():
    x, _ = _clustered(n=1000, dim=32)
    flat = faiss.IndexFlatIP(32)
    flat.add(x)
    assert vectors.index_bytes(flat) == 1000 * 32 * 4
    quantizer = vectors.train_quantizer(x, 8)
    indexes = vectors.ivf_indexes(quantizer, 8)
    code_sizes = {"IVF-Flat": 32 * 4, "IVF-SQ8": 32, "IVF-PQ": 32}
    for name, index in indexes.items():
        index.train(x)
        index.add(x)
        assert vectors.index_bytes(index) == 1000 * (code_sizes[name] + 8) + 8 * 32 * 4, name
    hnsw = faiss.index_factory(32, "HNSW8,Flat", faiss.METRIC_INNER_PRODUCT)
    hnsw.add(x)
    assert vectors.index_bytes(hnsw) > 1000 * (32 * 4 + 2 * 8 * 4)  # the vectors and level 0's 16 links each
    with pytest.raises(TypeError, match="does not know"):
        vectors.index_bytes(faiss.IndexLSH(32, 64))


def test_synthesise_is_reproducible_normalised_and_keeps_the_groups_spread():
    x, groups = _clustered(n=600, dim=16)
    noise, scale = vectors.spread(x, groups)
    assert noise.shape == x.shape and scale > 0
    first = list(vectors.synthesise(x, noise, 2500, seed=5, chunk=1000))
    again = list(vectors.synthesise(x, noise, 2500, seed=5, chunk=1000))
    assert [len(c) for c in first] == [1000, 1000, 500]
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    synthetic = np.concatenate(first)
    np.testing.assert_allclose(np.linalg.norm(synthetic, axis=1), 1, rtol=1e-5)
    # a synthetic vector lies about as far from the nearest real one as real vectors lie from each other
    real_gap = np.sqrt(2 - 2 * np.sort(x @ x.T, axis=1)[:, -2])
    synthetic_gap = np.sqrt(np.maximum(2 - 2 * (synthetic @ x.T).max(axis=1), 0))
    assert 0.5 < np.median(synthetic_gap) / np.median(real_gap) < 1.5
    with pytest.raises(ValueError, match="shape"):
        next(vectors.synthesise(x, noise[:10], 10))


def test_evaluate_indexes_measures_every_index_against_exact_search():
    x, groups = _clustered(n=3000, dim=32)
    noise, _ = vectors.spread(x, groups)
    queries = x[:50]
    table, exact = vectors.evaluate_indexes(lambda: vectors.synthesise(x, noise, 6000, chunk=2500), queries,
                                            nlist=16, singles=20)
    assert set(table["index"]) == {"Flat (exact)", "IVF-Flat", "IVF-SQ8", "IVF-PQ", "HNSW"}
    assert (table["vectors"] == 6000).all() and exact.shape == (50, 10)
    assert table.loc[table["index"] == "Flat (exact)", "recall@10"].item() == 1.0
    everything = table[(table["index"] == "IVF-Flat") & (table["setting"] == "nprobe=16")]
    assert everything["recall@10"].item() == 1.0  # visiting every cell is exact search
    assert (table[["build s", "batch ms", "single ms (median)", "memory MiB"]] > 0).all().all()
    best = vectors.best_settings(table, recall=0.9)
    for (_, name), row in best.iterrows():
        rows = table[(table["index"] == name) & (table["recall@10"] >= 0.9)]
        assert row["single ms (median)"] == rows["single ms (median)"].min()


def test_an_index_is_saved_and_reloaded_with_identical_answers(tmp_path):
    x, _ = _clustered()
    index = vectors.ivf_indexes(vectors.train_quantizer(x, 16), 16)["IVF-SQ8"]
    index.train(x)
    index.add(x)
    index.nprobe = 4
    path = vectors.save_index(index, tmp_path / "index.faiss")
    assert not list(tmp_path.glob("*.part"))
    reloaded = vectors.load_index(path)
    reloaded.nprobe = 4
    np.testing.assert_array_equal(reloaded.search(x[:30], 10)[1], index.search(x[:30], 10)[1])
    with pytest.raises(FileNotFoundError, match="missing.faiss is missing"):
        vectors.load_index(tmp_path / "missing.faiss")
    broken = tmp_path / "broken.faiss"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="broken.faiss is not a readable FAISS index"):
        vectors.load_index(broken)


def test_faiss_runs_the_cpus_blas_kernels_unless_the_user_chose():
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_CORETYPE"}
    script = ("import os; from helpers import vectors; print(vectors.faiss_blas_kernels(), "
              "os.environ.get('OPENBLAS_CORETYPE'))")
    run = subprocess.run([sys.executable, "-c", script], env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                         check=True)
    flags = cpu_flags()
    expected = "SkylakeX" if "avx512f" in flags else "Haswell" if "avx2" in flags else run.stdout.split()[0]
    assert run.stdout.split() == [expected, "None"]  # the variable does not outlive the import
    chosen = subprocess.run([sys.executable, "-c", script], env={**env, "OPENBLAS_CORETYPE": "Sandybridge"},
                            cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    assert chosen.stdout.split() == ["Sandybridge", "Sandybridge"]
