"""The seed-spread script keeps earlier rows and saves each run as soon as it ends."""

import numpy as np
import pandas as pd
import pytest

from helpers import experiment, paths, seeds


@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    """Replace data and training by a stand-in whose accuracy is the seed's parity; count the runs."""
    y = np.array([0, 1, 2, 0])
    runs = []

    def train(name, data, budget, seed, **recipe):
        runs.append((name, seed))
        if seed == 666:
            raise RuntimeError("interrupted")
        return seed, {"seconds": 60.0}

    def scores(seed, x, flip=False):
        right = np.eye(3)[y] * 0.7 + 0.1  # probabilities: each row sums to 1
        return right if seed % 2 else np.eye(3)[(y + 1) % 3] * 0.7 + 0.1

    monkeypatch.setattr(paths, "output_root", lambda mode=None: tmp_path)
    monkeypatch.setattr(experiment, "prepare_fashion_mnist",
                        lambda *a, **k: {"x_test": np.zeros((4, 1)), "y_test": y})
    monkeypatch.setattr(experiment, "train_model", train)
    monkeypatch.setattr(experiment, "predict_proba", scores)
    return tmp_path / "results" / "seeds.csv", runs


def test_a_rerun_replaces_its_own_row_and_keeps_the_others(fake_training):
    path, runs = fake_training
    seeds.run(["benchmark", "lenet5"], [1, 2], "quick")
    seeds.run(["lenet5"], [2, 3], "quick")
    table = pd.read_csv(path).sort_values(["model", "seed"])
    assert list(zip(table["model"], table["seed"])) == [
        ("benchmark", 1), ("benchmark", 2), ("lenet5", 1), ("lenet5", 2), ("lenet5", 3)]
    assert table.set_index(["model", "seed"])["accuracy"].to_dict() == {
        ("benchmark", 1): 1.0, ("benchmark", 2): 0.0, ("lenet5", 1): 1.0, ("lenet5", 2): 0.0, ("lenet5", 3): 1.0}
    assert table["train_minutes"].eq(1.0).all()
    assert len(runs) == 6


def test_an_interrupted_run_keeps_the_runs_that_finished(fake_training):
    path, _ = fake_training
    with pytest.raises(RuntimeError, match="interrupted"):
        seeds.run(["resnet_small"], [7, 666], "quick")
    assert pd.read_csv(path)[["model", "seed"]].values.tolist() == [["resnet_small", 7]]
