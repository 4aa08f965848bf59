import os
import subprocess
import sys

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from helpers import envfile, metrics, paths, plots

Y_TRUE = np.repeat(np.arange(3), 4)
Y_SCORE = np.random.default_rng(0).dirichlet(np.ones(3), size=12)
NAMES = ["a", "b", "c"]


def test_every_plot_returns_a_figure_and_save_fig_writes_png():
    figs = [
        plots.plot_sample_grid(np.zeros((12, 4, 4)), Y_TRUE, NAMES, per_class=2),
        plots.plot_class_balance(pd.Series([3, 2], index=["x", "y"])),
        plots.plot_training_curves({"loss": [1, 0.5], "val_loss": [1, 0.6], "accuracy": [.5, .7],
                                    "val_accuracy": [.5, .6]}),
        plots.plot_confusion_matrix(np.eye(3), NAMES, normalize=True),
        plots.plot_curves(metrics.one_vs_rest_curves(Y_TRUE, Y_SCORE, "roc"), NAMES, "roc"),
        plots.plot_curves(metrics.one_vs_rest_curves(Y_TRUE, Y_SCORE, "pr"), NAMES, "pr"),
        plots.plot_model_curves({"m": metrics.one_vs_rest_curves(Y_TRUE, Y_SCORE, "roc")}),
        plots.plot_correctness_curves({"m": metrics.correctness_curves(Y_TRUE, Y_SCORE)}),
        plots.plot_reliability({"m": metrics.reliability_table(Y_TRUE, Y_SCORE)}),
        plots.plot_misclassified(np.zeros((12, 4, 4)), Y_TRUE, Y_SCORE, NAMES, n=3),
    ]
    assert all(isinstance(f, plt.Figure) for f in figs)
    grid = plots.plot_sample_grid(np.ones((2, 3, 3)), [0, 1], ["x", "y"], per_class=1)  # labels as a list
    assert sum(len(ax.images) for ax in grid.axes) == 2
    path = plots.save_fig(figs[0], "99", "test")
    assert path == paths.REPO_ROOT / "build" / "quick" / "figures" / "99_test.png"
    assert path.read_bytes()[:4] == b"\x89PNG"
    path.unlink()
    plt.close("all")


def test_mode_decides_where_outputs_go(monkeypatch):
    assert paths.output_root("full") == paths.REPO_ROOT
    assert paths.output_root("quick") == paths.REPO_ROOT / "build" / "quick"
    with pytest.raises(ValueError, match="Unknown mode 'fast'"):
        paths.series_mode("fast")


def test_environment_yml_is_the_one_dependency_list():
    reqs = envfile.requirements((paths.REPO_ROOT / "environment.yml").read_text())
    names = {r.split(">")[0].split("=")[0].split("<")[0] for r in reqs}
    assert {"tensorflow", "papermill", "nbval", "scikit-learn", "seaborn", "jupyterlab"} <= names
    assert "python" not in names and "-e ." in reqs
    assert envfile.requirements("dependencies:\n  - numpy=1.26\n") == ["numpy==1.26"]


@pytest.mark.parametrize("preset, expected", [(None, "1"), ("0", "0")])
def test_importing_helpers_turns_on_onednn_unless_the_user_chose(preset, expected):
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if preset is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = preset
    code = "import os, helpers; print(os.environ['TF_ENABLE_ONEDNN_OPTS'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


@pytest.mark.parametrize("contrast, label", [(False, "loss, summed over heads"),
                                             (True, "loss, heads + contrastive term")])
def test_head_curves_say_what_the_loss_sums(contrast, label):
    history = {"loss": [2.0, 1.0], "val_loss": [2.5, 1.5], "val_gender_accuracy": [0.7, 0.8],
               **({"contrast_loss": [0.5, 0.4]} if contrast else {})}
    fig = plots.plot_head_curves(history, ["gender"])
    assert fig.axes[0].get_ylabel() == label
    assert [line.get_label() for line in fig.axes[1].lines] == ["gender"]
    plt.close(fig)


def test_the_default_mode_is_quick_so_run_all_never_replaces_committed_results(monkeypatch):
    from helpers import notebook

    monkeypatch.delenv("SERIES_MODE", raising=False)
    assert paths.series_mode() == "quick" and paths.output_root() != paths.REPO_ROOT
    monkeypatch.setenv("SERIES_MODE", "full")
    assert paths.series_mode() == "full" and paths.series_mode("quick") == "quick"
    full, quick = notebook.run_plan("06", "full"), notebook.run_plan("06", "quick")
    assert "about 50 min" in full and "replace the committed" in full
    assert "build/quick" in quick and 'mode = "lesson"' in quick and '"full" (about 50 min)' in quick
    lesson = notebook.run_plan("04", "lesson")
    assert "about 6 min" in lesson and "build/lesson" in lesson and "whole test sets" in lesson
    assert paths.output_root("lesson") == paths.REPO_ROOT / "build" / "lesson"
