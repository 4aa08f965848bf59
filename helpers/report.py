"""The README's Fashion-MNIST result rows, written from the records so that they cannot drift from them.

    python -m helpers.report            # rewrite those rows of README.md from results/
    python -m helpers.report --check    # exit 1, naming the rows, when README.md says something else

Each row reads the metadata of the full run's test predictions (``results/<model>_predictions.npz``: the
parameters and the training time), chapter 05's tables (``results/comparison.csv``: metrics with bootstrap
intervals; ``results/study_table.csv``: the study's accuracy) and the seed table (``results/seeds.csv``:
other seeds of the same recipe; the median is over those and the chapters' seed 42). ``tests/test_report.py``
fails when the README differs.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pandas as pd

from helpers.paths import REPO_ROOT, atomic_write_bytes

README = REPO_ROOT / "README.md"
RESULTS = REPO_ROOT / "results"
# model: (its README label, chapter)
FASHION_MODELS = {"benchmark": ("dense benchmark", "02"), "lenet5": ("LeNet-5", "03"),
                  "resnet_small": ("small-image ResNet-9", "04"), "resnet50": ("ResNet-50 from scratch", "04")}


def fashion_rows(results=RESULTS) -> dict[str, str]:
    """``{model: README table row}`` for the Fashion-MNIST models of chapters 02-04."""
    comparison = pd.read_csv(results / "comparison.csv", index_col=0)
    study_table = pd.read_csv(results / "study_table.csv", index_col=0)
    seeds = pd.read_csv(results / "seeds.csv")
    rows = {}
    for name, (label, chapter) in FASHION_MODELS.items():
        with np.load(results / f"{name}_predictions.npz") as saved:  # its metadata: no pickles
            record = json.loads(str(saved["meta"]))
        metrics = comparison.loc[name]
        accuracies = [metrics["accuracy"], *seeds.loc[seeds["model"] == name, "accuracy"]]
        study = study_table.loc[name, "study accuracy"]
        study = "—" if pd.isna(study) else f"{study:.3g}"
        rows[name] = (f"| Fashion-MNIST | {label} ({chapter}) | {study} | **{metrics['accuracy']:.4f}** "
                      f"[{metrics['accuracy_ci_low']:.3f}, {metrics['accuracy_ci_high']:.3f}]; "
                      f"{len(accuracies)} seeds {np.median(accuracies):.4f} | {record['parameters']:,} | "
                      f"{record['history']['seconds'] / 60:.1f} min |")
    return rows


def _row_key(line: str) -> str | None:
    """The model whose row ``line`` is, or None."""
    return next((name for name, (label, chapter) in FASHION_MODELS.items()
                 if line.startswith(f"| Fashion-MNIST | {label} ({chapter}) |")), None)


def rewritten(readme: str, rows: dict[str, str]) -> str:
    """``readme`` with each model's row replaced; a row that is missing is an error naming it."""
    lines = readme.split("\n")
    found = {_row_key(line): k for k, line in enumerate(lines) if _row_key(line)}
    missing = [FASHION_MODELS[name][0] for name in rows if name not in found]
    if missing:
        raise ValueError(f"README.md has no results row for {', '.join(missing)}; add a row starting "
                         "'| Fashion-MNIST | <model> (<chapter>) |' to its results table.")
    for name, row in rows.items():
        lines[found[name]] = row
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether README.md agrees with results/")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    updated = rewritten(readme, fashion_rows())
    if args.check:
        stale = [line for line in updated.split("\n") if line not in readme.split("\n")]
        print("\n".join(["README.md differs from results/ in:", *stale]) if stale else "README.md agrees with results/")
        return 1 if stale else 0
    if updated != readme:
        atomic_write_bytes(README, updated.encode("utf-8"))
    print(f"README.md: {len(FASHION_MODELS)} Fashion-MNIST rows written from results/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
