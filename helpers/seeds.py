"""Seed-to-seed spread: train chapters' models with several seeds, outside the notebooks.

    python -m helpers.seeds --models benchmark lenet5 --seeds 42 7 1234

Uses the same data, budgets and recipe as chapters 02-04 (full mode) and keeps
``results/seeds.csv`` (one row per model and seed): each finished run replaces the row of the same
model and seed and is saved at once, so rows already in the file stay and an interrupted run loses
only the model it was training. The median per model is printed at the end.
"""

from __future__ import annotations

import argparse

import pandas as pd

from helpers import experiment, metrics, precision
from helpers.paths import MODES, results_dir, save_csv

# the build options chapters 02-04 pass to train_model
RECIPE = {"benchmark": {"dropout": 0.2}, "lenet5": {"dropout": 0.1}, "resnet_small": {}, "resnet50": {}}


def run(models: list[str], seeds: list[int], mode: str = "full", precision_name: str | None = None) -> pd.DataFrame:
    policy, reason = precision.apply(precision_name)
    print(f"precision={policy} ({reason})", flush=True)
    path = results_dir(mode) / "seeds.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame(columns=["model", "seed"])
    for name in models:
        budget = experiment.budget_for(name, mode)
        for seed in seeds:
            data = experiment.prepare_fashion_mnist(experiment.INPUT_SIZE[name], mode, seed,
                                                    train_limit=budget.train_limit, test_limit=budget.test_limit)
            model, history = experiment.train_model(name, data, budget, seed, **RECIPE[name])
            y_score = experiment.predict_proba(model, data["x_test"], flip=budget.flip_tta)
            row = {"model": name, "seed": seed, "precision": policy, "train_minutes": history["seconds"] / 60,
                   **metrics.summary_metrics(data["y_test"], y_score)}
            print(name, seed, f"accuracy {row['accuracy']:.4f}", flush=True)
            others = table[(table["model"] != name) | (table["seed"] != seed)]
            table = pd.concat([others, pd.DataFrame([row])], ignore_index=True)
            save_csv(table, "seeds", mode, index=False)
    return table


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["benchmark", "lenet5"], choices=list(RECIPE))
    parser.add_argument("--seeds", nargs="+", type=int, default=[42, 7, 1234])
    parser.add_argument("--mode", choices=MODES, default="full")
    parser.add_argument("--precision", choices=["auto", *precision.PRECISIONS], default=None,
                        help="default: $SERIES_PRECISION, else auto (see helpers/precision.py)")
    args = parser.parse_args(argv)
    table = run(args.models, args.seeds, args.mode, args.precision)
    print(table.groupby("model")[["accuracy", "f1_macro", "train_minutes"]].median().round(4))


if __name__ == "__main__":
    main()
