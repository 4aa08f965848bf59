import numpy as np
import pytest

from helpers import retrieval

RELEVANT = np.array([[1, 0, 1], [0, 0, 0], [0, 1, 1]], dtype=bool)


def test_precision_at_k_by_hand():
    assert retrieval.precision_at_k(RELEVANT) == pytest.approx(4 / 9)


def test_average_precision_at_k_by_hand():
    # [1,0,1]: (1/1 + 2/3) / 2; [0,0,0]: 0; [0,1,1]: (1/2 + 2/3) / 2
    expected = [(1 + 2 / 3) / 2, 0.0, (1 / 2 + 2 / 3) / 2]
    np.testing.assert_allclose(retrieval.average_precision_at_k(RELEVANT), expected)
    assert retrieval.mean_average_precision_at_k(RELEVANT) == pytest.approx(np.mean(expected))
    # divided by min(k, R): R = 5, 0 and 2 relevant items in the collection (k = 3)
    np.testing.assert_allclose(retrieval.average_precision_at_k(RELEVANT, [5, 0, 2]),
                               [(1 + 2 / 3) / 3, 0.0, (1 / 2 + 2 / 3) / 2])


def test_nearest_neighbours_use_cosine_and_exclude_the_query():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [10, 0.5]])
    found = retrieval.nearest_neighbours(emb, k=2)
    assert found.shape == (5, 2)
    assert found[0].tolist() == [4, 1]  # [10, 0.5] points almost exactly like [1, 0]: cosine ignores length
    assert all(i not in row for i, row in enumerate(found))


def test_some_rows_can_search_every_row_without_finding_themselves():
    emb = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [10, 0.5]])
    found = retrieval.nearest_neighbours(emb, k=2, query_rows=[0, 2])
    assert found.tolist() == [[4, 1], [3, 1]]
    labels = np.array(["shirt", "shirt", "shoe", "shoe", "shirt"])
    table = retrieval.retrieval_table({"search": found}, {"type": labels}, query_rows=[0, 2])
    assert table.loc[("search", "type"), "precision@2"] == pytest.approx(3 / 4)  # shirt: 2 of 2, shoe: 1 of 2


def test_relevance_compares_labels_of_neighbours_with_the_query():
    labels = np.array(["shirt", "shirt", "shoe", "shoe"])
    neighbours = np.array([[1, 2], [0, 3], [3, 0], [2, 1]])
    assert retrieval.relevance(labels, neighbours).tolist() == [[True, False], [True, False],
                                                               [True, False], [True, False]]


def test_too_few_items_is_a_clear_error():
    with pytest.raises(ValueError, match="k=3 needs at least 4 embeddings"):
        retrieval.nearest_neighbours(np.eye(3), k=3)


def test_precision_curve_by_hand():
    # rank 1: (1 + 0 + 0) / 3; rank 2: (1/2 + 0 + 1/2) / 3; rank 3: (2/3 + 0 + 2/3) / 3
    np.testing.assert_allclose(retrieval.precision_curve(RELEVANT), [1 / 3, 1 / 3, 4 / 9])


def test_retrieval_table_scores_every_method_and_definition():
    labels = np.array(["shirt", "shirt", "shoe", "shoe"])
    colours = np.array(["red", "blue", "red", "red"])
    perfect = np.array([[1], [0], [3], [2]])
    definitions = {"type": labels, "type+colour": np.char.add(labels, colours)}
    table = retrieval.retrieval_table({"perfect": perfect}, definitions)
    assert table.loc[("perfect", "type"), "precision@1"] == 1.0
    assert table.loc[("perfect", "type+colour"), "precision@1"] == pytest.approx(0.5)
    assert table.loc[("perfect", "type+colour"), "MAP@1"] == pytest.approx(0.5)
    # R: every item has exactly one other of its type; of its type and colour, only the two red shoes
    assert table.loc[("perfect", "type"), "MAP@1, divided by min(k, R)"] == 1.0
    assert table.loc[("perfect", "type+colour"), "MAP@1, divided by min(k, R)"] == pytest.approx(0.5)


def test_confused_pairs_count_misses_by_unordered_pair():
    labels = np.array(["Tops", "Tshirts", "Tshirts", "Heels"])
    neighbours = np.array([[1, 2], [0, 2], [0, 3], [1, 2]])
    # misses: Tops-Tshirts (query 0: 2, query 1: 1, query 2: 1), Tshirts-Heels (query 2: 1, query 3: 2)
    table = retrieval.confused_pairs(labels, neighbours)
    assert table["misses"].to_dict() == {"Tops / Tshirts": 4, "Heels / Tshirts": 3}
    assert table["share of misses"].tolist() == pytest.approx([4 / 7, 3 / 7])
