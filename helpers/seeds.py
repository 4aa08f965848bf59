"""Seed-to-seed spread: train chapters' models with several seeds, outside the notebooks.

    python -m helpers.seeds --models benchmark lenet5 --seeds 42 7 1234

Uses the same data, budgets and recipe as chapters 02-04 (full mode) and writes
``results/seeds.csv`` (one row per model and seed) with the median per model printed.
"""

from __future__ import annotations

import argparse
import io

import pandas as pd

from helpers import experiment, metrics
from helpers.paths import atomic_write_bytes, results_dir

# the build options chapters 02-04 pass to train_model
RECIPE = {"benchmark": {"dropout": 0.2}, "lenet5": {"dropout": 0.1}, "resnet_small": {}, "resnet50": {}}


def run(models: list[str], seeds: list[int], mode: str = "full") -> pd.DataFrame:
    rows = []
    for name in models:
        budget = experiment.budget_for(name, mode)
        for seed in seeds:
            data = experiment.prepare_fashion_mnist(experiment.INPUT_SIZE[name], mode, seed,
                                                    train_limit=budget.train_limit, test_limit=budget.test_limit)
            model, history = experiment.train_model(name, data, budget, seed, **RECIPE[name])
            y_score = experiment.predict_proba(model, data["x_test"])
            rows.append({"model": name, "seed": seed, "train_minutes": history["seconds"] / 60,
                         **metrics.summary_metrics(data["y_test"], y_score)})
            print(rows[-1]["model"], seed, f"accuracy {rows[-1]['accuracy']:.4f}", flush=True)
    return pd.DataFrame(rows)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["benchmark", "lenet5"], choices=list(RECIPE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1234])
    parser.add_argument("--mode", choices=["quick", "full"], default="full")
    args = parser.parse_args(argv)
    table = run(args.models, args.seeds, args.mode)
    buffer = io.StringIO()
    table.to_csv(buffer, index=False)
    atomic_write_bytes(results_dir(args.mode) / "seeds.csv", buffer.getvalue().encode())
    print(table.groupby("model")[["accuracy", "f1_macro", "train_minutes"]].median().round(4))


if __name__ == "__main__":
    main()
