import errno
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
    minutes = notebook.run_minutes("06")  # the teaching guide's table, which helpers.report keeps to the records
    assert minutes["full"].endswith(" min") and f"about {minutes['full']}" in full and "replace the committed" in full
    assert "build/quick" in quick and 'mode = "lesson"' in quick and f'"full" (about {minutes["full"]})' in quick
    lesson = notebook.run_plan("04", "lesson")
    assert f"about {notebook.run_minutes('04')['lesson']}" in lesson and "build/lesson" in lesson
    assert "whole test sets" in lesson
    assert paths.output_root("lesson") == paths.REPO_ROOT / "build" / "lesson"


def test_the_plan_line_says_a_while_where_the_guide_is_missing(monkeypatch, tmp_path):
    from helpers import notebook

    assert notebook.run_minutes("04", tmp_path / "README.md") == {}  # a chapter copied away from the series
    monkeypatch.setattr(notebook, "run_minutes", lambda chapter: {})
    assert notebook.run_plan("04", "full").startswith("Full mode: a while on 2 CPU cores")


def test_save_fig_leaves_only_the_png_behind(monkeypatch, tmp_path):
    monkeypatch.setattr(plots, "figures_dir", lambda mode=None: tmp_path)
    fig = plots.plot_class_balance(pd.Series([3, 2], index=["x", "y"]))
    path = plots.save_fig(fig, "99", "balance")
    plt.close(fig)
    assert path.read_bytes()[:4] == b"\x89PNG" and os.listdir(tmp_path) == ["99_balance.png"]


def test_two_writers_of_one_file_get_hidden_temporary_names_of_their_own(tmp_path):
    target = tmp_path / "model.keras"
    with paths.replacing(target, suffix=".keras") as first, paths.replacing(target, suffix=".keras") as second:
        assert first != second and first.parent == second.parent == tmp_path
        for tmp in (first, second):  # hidden, marked as unfinished, and ending as the format needs
            assert tmp.name.startswith(".model.keras.") and tmp.name.endswith(".part.keras")
            assert paths.TEMPORARY_NAME.match(tmp.name)["pid"] == str(os.getpid())
        first.write_bytes(b"first")
        second.write_bytes(b"second")
    assert target.read_bytes() == b"first" and os.listdir(tmp_path) == ["model.keras"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    with pytest.raises(OSError, match="No space left"), paths.replacing(target) as tmp:
        tmp.write_text("half")
        raise OSError(28, "No space left on device")
    assert target.read_text() == "old" and os.listdir(tmp_path) == ["table.csv"]


def test_a_killed_writer_leaves_a_hidden_leftover_that_is_cleaned_and_never_read(tmp_path):
    target = tmp_path / "table.csv"
    target.write_text("old")
    code = ("import os, sys\nfrom pathlib import Path\nfrom helpers.paths import replacing\n"
            "with replacing(Path(sys.argv[1])) as tmp:\n    tmp.write_text('half')\n    os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code, str(target)], cwd=paths.REPO_ROOT)
    leftover = [p for p in tmp_path.iterdir() if p != target]
    assert len(leftover) == 1 and leftover[0].name.startswith(".") and target.read_text() == "old"
    with paths.replacing(tmp_path / "other.csv") as live:  # a writer still at work keeps its file
        assert paths.remove_stale_parts(tmp_path) == leftover
        assert live.exists()
    assert sorted(os.listdir(tmp_path)) == ["other.csv", "table.csv"]


class ReadOnlyPath(type(paths.REPO_ROOT)):
    """A folder on a read-only file system (as a read-only mount behaves, even for root)."""

    def mkdir(self, *args, **kwargs):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))


def test_outputs_in_a_read_only_checkout_stop_with_one_message_naming_the_folder_and_the_fix(monkeypatch, tmp_path):
    monkeypatch.setattr(paths, "REPO_ROOT", ReadOnlyPath(tmp_path))
    for make in (paths.results_dir, paths.figures_dir, paths.processed_dir):
        with pytest.raises(paths.OutputNotWritableError, match="the file system is read-only") as stop:
            make("lesson")
        assert str(tmp_path / "build" / "lesson") in str(stop.value) and "cp -r" in str(stop.value)
