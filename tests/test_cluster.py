"""Chapter 10 past one machine: the code the chapter types (its tagging worker, its shard and its merge) run on
a real local Ray cluster started by ``helpers.cluster``, against the same code in one process; a worker killed
mid-run; shard files split from an index; and the cluster's own promises: loopback only, every process
stopped, memory counted over every process."""

import keras
import numpy as np
import psutil
import pytest

from helpers import cluster, feed, vectors
from tests.test_chapter_code import run_topic_cells

HEADS = ["gender", "articleType"]


@pytest.fixture(scope="module")
def chapter():
    return run_topic_cells("10_past_one_machine.ipynb", {"mode": "quick", "seed": 0, "precision": None,
                                                          "cluster_address": None}, definitions_only=True)


@pytest.fixture(scope="module")
def ray_here():
    """One local cluster for the module; afterwards, no process of it may be left."""
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with cluster.ray_cluster(cpus=2, object_store_mib=128) as watch:
        yield watch
    left = [p for p in psutil.Process().children(recursive=True) if p.pid not in before and p.is_running()
            and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, f"processes left after the cluster stopped: {left}"


def test_merge_keeps_the_best_k_and_orders_ties_by_id(chapter):
    merge = chapter["merge_top_k"]
    shard_a = (np.array([[0.9, 0.5, 0.5], [0.3, -np.inf, -np.inf]]), np.array([[4, 8, 2], [7, -1, -1]]))
    shard_b = (np.array([[0.7, 0.5, 0.1], [0.8, 0.3, 0.2]]), np.array([[1, 6, 3], [5, 0, 9]]))
    np.testing.assert_array_equal(merge([shard_a, shard_b], 4), [[4, 1, 2, 6], [5, 0, 7, 9]])  # worked by hand
    np.testing.assert_array_equal(merge([shard_b, shard_a], 4), merge([shard_a, shard_b], 4))  # shard order
    np.testing.assert_array_equal(merge([shard_a], 2), [[4, 2], [7, -1]])  # a shard with fewer than k answers


def test_exactly_once_check_names_lost_and_repeated_items():
    cluster.check_exactly_once([2, 0, 1], 3)
    with pytest.raises(AssertionError, match=r"1 photos never tagged \(first: \[1\]\), 1 tagged more than once"):
        cluster.check_exactly_once([0, 2, 2], 3)


def ivf_index(n=600, d=16, nlist=8, seed=0):
    faiss = vectors.load_faiss()
    data = vectors.normalise(np.random.default_rng(seed).normal(size=(n, d)).astype("float32"))
    data[100:110] = data[5]  # ten copies of one vector: ties that cross shards
    quantizer = faiss.IndexFlatIP(d)
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    index.train(data)
    index.add(data)
    index.nprobe = 4
    return index, data


def test_a_missing_or_damaged_shard_is_refused_by_name(chapter, tmp_path):
    index, _ = ivf_index()
    first, _ = cluster.write_shards(index, tmp_path, 2)
    assert chapter["IndexShard"](str(first), 4).index.ntotal == 300
    first.write_bytes(first.read_bytes()[:-50])
    with pytest.raises(ValueError, match="shard_1_of_2.faiss"):
        chapter["IndexShard"](str(first), 4)
    with pytest.raises(FileNotFoundError, match="shard_3_of_2.faiss"):
        chapter["IndexShard"](str(tmp_path / "shard_3_of_2.faiss"), 4)


def test_shards_answer_as_the_single_index(chapter, ray_here, tmp_path):
    index, data = ivf_index()
    queries = np.concatenate([data[[5, 17]], data[200:230] + 0.01])  # a tied vector among the queries
    single = chapter["merge_top_k"]([index.search(queries, 20)], 10)
    assert len(set(single[0])) == 10 and set(range(100, 110)) & set(single[0])
    for n in (1, 2, 3):
        shards = [chapter["Shard"].remote(str(p), 4) for p in cluster.write_shards(index, tmp_path / str(n), n)]
        np.testing.assert_array_equal(chapter["search_shards"](shards, queries), single)
    assert cluster.listening_addresses() <= {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
    assert ray_here.sample() > 0


def tiny_tagger(path):
    """A model with the saved tagger's interface: 80x60 photos in, one softmax per head and an embedding."""
    photos = keras.Input((80, 60, 3))
    x = keras.layers.Rescaling(1 / 255)(keras.layers.AveragePooling2D(4)(photos))
    embedding = keras.layers.Dense(8, name="embedding")(keras.layers.Flatten()(x))
    outputs = {h: keras.layers.Dense(n, activation="softmax", name=h)(embedding) for h, n in zip(HEADS, (3, 5))}
    keras.Model(photos, outputs).save(path)
    return str(path)


def test_workers_tag_as_one_process_and_a_killed_worker_loses_nothing(chapter, ray_here, tmp_path):
    rng = np.random.default_rng(0)
    photos = rng.integers(0, 256, (22, 80, 60, 3), dtype=np.uint8)
    folder = feed.write_feed(photos, np.arange(100, 122), tmp_path / "feed", extra={"cut.jpg": b"\xff\xd8\xff"})
    paths = list(feed.list_feed(folder).tensor_paths()) * 2  # each file twice: two items
    chapter.update(model_file=tiny_tagger(tmp_path / "tagger.keras"), heads=HEADS)
    here = chapter["PhotoTagger"](chapter["model_file"], HEADS)({"item": np.arange(len(paths)), "path": paths})
    assert (~here["ok"]).sum() == 2  # the cut-short file, twice
    progress = tmp_path / "progress"
    progress.mkdir()
    killer, killed = cluster.kill_one_worker_later(progress, during_batch=2, timeout=120)
    result = chapter["tag_on_workers"](paths, 2, progress=str(progress), batch_size=4)
    killer.join()
    assert killed, "no worker was killed"
    cluster.check_exactly_once(result["item"], len(paths))
    np.testing.assert_array_equal(result["ok"], here["ok"])
    for head in HEADS:
        np.testing.assert_allclose(result[head], here[head], atol=1e-6)
        np.testing.assert_array_equal(result[head].argmax(1), here[head].argmax(1))
    assert len(list(progress.iterdir())) == 3  # the two workers and the one started in the killed one's place
