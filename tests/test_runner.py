"""The runner's arguments, chapter selection, skipping and terminal output, with papermill replaced by a copy;
a chapter whose kernel dies, and a checkout that cannot be written, with the real papermill."""

import json
import os
from pathlib import Path

import nbformat
import pytest

from helpers import book, paths, runlock, runner


def _fake_book(monkeypatch, tmp_path) -> list[dict]:
    """Replace the book's builder (tests/test_book.py tests it) by one that records its arguments."""
    books = []

    def build(notebooks_dir, out_dir, names=None, skipped=None):
        books.append({"notebooks_dir": notebooks_dir, "out_dir": out_dir, "names": names, "skipped": dict(skipped)})
        return out_dir / "index.html"

    monkeypatch.setattr(book, "build_book", build)
    monkeypatch.setattr(runner, "book_dir", lambda mode: tmp_path / "book")
    return books


@pytest.fixture
def books(tmp_path, monkeypatch):
    return _fake_book(monkeypatch, tmp_path)


@pytest.fixture
def fake_series(tmp_path, monkeypatch, books):
    """The real chapters, executed by a stand-in that copies them and writes a line to the kernel's stderr;
    outputs under tmp_path; the book's builder records its calls in ``books``. Returns the list of
    (notebook, parameters, mode) calls."""
    calls = []

    def execute(source, target, parameters, **kwargs):
        os.write(2, b"I0000 00:00 port.cc:153] oneDNN custom operations are on.\n")
        calls.append((source.name, parameters, os.environ["SERIES_MODE"]))
        target.write_bytes(source.read_bytes())

    monkeypatch.setattr(runner.pm, "execute_notebook", execute)
    monkeypatch.setattr(runner, "output_root", lambda mode=None: tmp_path / "out")
    monkeypatch.setattr(runner, "logs_dir", lambda mode: tmp_path / "logs")
    monkeypatch.setattr(runner, "executed_dir", lambda mode: tmp_path / "out" / "notebooks")
    monkeypatch.setattr(runlock, "lock_path", lambda mode: tmp_path / f"{mode}.lock")
    return calls


def test_only_accepts_chapter_numbers_with_or_without_the_zero():
    assert [p.name[:2] for p in runner.select(["2", "03"])] == ["02", "03"]
    assert [p.name[:2] for p in runner.select(["6", "7"])] == ["06", "07"]
    assert len(runner.select(None)) == len(runner.chapters())


@pytest.mark.parametrize("argv", [["--only", "99"], ["--only", "0"], ["--only"], ["--only", "x"], ["--epochs", "0"],
                                  ["--epochs", "-1"], ["--seed", "-1"], ["--data-root", "no/such/folder"],
                                  ["--mode", "fast"]])
def test_bad_arguments_stop_before_anything_runs(argv, fake_series, capsys):
    with pytest.raises(SystemExit) as stop:
        runner.main(argv)
    assert stop.value.code == 2 and not fake_series
    assert "error:" in capsys.readouterr().err


def test_bad_series_mode_in_the_environment_is_an_error(monkeypatch, fake_series, capsys):
    monkeypatch.setenv("SERIES_MODE", "fast")
    with pytest.raises(SystemExit):
        runner.main(["--only", "5"])
    assert "Unknown mode 'fast'" in capsys.readouterr().err


def test_mode_comes_from_the_argument_then_the_environment_then_quick(monkeypatch, fake_series):
    monkeypatch.setenv("SERIES_MODE", "full")
    assert runner.main(["--only", "5"]) == 0
    assert runner.main(["--only", "5", "--mode", "quick"]) == 0
    monkeypatch.delenv("SERIES_MODE")
    assert runner.main(["--only", "5"]) == 0
    assert [mode for _, _, mode in fake_series] == ["full", "quick", "quick"]


def test_relative_data_root_is_resolved_from_where_it_was_typed(tmp_path, monkeypatch, fake_series):
    (tmp_path / "mydata").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FASHION_DATA_ROOT", raising=False)
    assert runner.main(["--only", "5", "--data-root", "mydata"]) == 0
    assert os.environ["FASHION_DATA_ROOT"] == str(tmp_path / "mydata")


def test_leftover_notebooks_are_not_chapters(tmp_path):
    for name in ("01_data.ipynb", "01_data.part.ipynb", "05_comparison.nbconvert.ipynb", "notes.ipynb",
                 ".01_data.ipynb.4242-abcd1234.part.ipynb"):
        (tmp_path / name).write_text("{}")
    assert [p.name for p in runner.chapters(tmp_path)] == ["01_data.ipynb"]


def test_without_the_catalogue_the_catalogue_chapters_are_skipped_with_the_fix(monkeypatch, fake_series, capsys,
                                                                              tmp_path, books):
    monkeypatch.setattr(runner, "catalogue_available", lambda: False)
    assert runner.main(["--only", "5", "6", "7", "8"]) == 0
    assert [name for name, _, _ in fake_series] == ["05_comparison.ipynb"]
    out = capsys.readouterr().out
    assert "06_catalogue.ipynb: skipped" in out and "kaggle datasets download" in out
    assert f"The book: {tmp_path / 'book' / 'index.html'}" in out
    assert books == [{"notebooks_dir": tmp_path / "out" / "notebooks", "out_dir": tmp_path / "book",
                      "names": ["05_comparison.ipynb"],
                      "skipped": {f"0{k}_{name}.ipynb": "needs the Kaggle catalogue"
                                  for k, name in ((6, "catalogue"), (7, "augmentation"), (8, "similar_products"))}}]


def test_a_book_that_does_not_build_is_named_and_fails_the_run(monkeypatch, fake_series, capsys):
    def broken(*args, **kwargs):
        raise book.BookError("The book built from build/book-src has links that lead nowhere:\nx.html: y.html")

    monkeypatch.setattr(book, "build_book", broken)
    assert runner.main(["--only", "5"]) == 1
    assert "The book was not built: The book built from build/book-src has links" in capsys.readouterr().err


def test_full_mode_s_book_reads_every_committed_chapter(monkeypatch, fake_series, books):
    assert runner.main(["--only", "5", "--mode", "full"]) == 0
    assert books[0]["names"] is None and books[0]["skipped"] == {}


def test_library_logs_go_to_the_chapter_log_not_the_terminal(fake_series, capfd, tmp_path):
    assert runner.main(["--only", "5"]) == 0
    captured = capfd.readouterr()
    assert "oneDNN" not in captured.out + captured.err
    assert "== 05_comparison.ipynb (quick)" in captured.out
    assert "oneDNN custom operations" in (tmp_path / "logs" / "05_comparison.log").read_text()


def test_ctrl_c_names_the_chapter_and_keeps_its_partial_file(monkeypatch, fake_series, capsys, tmp_path):
    def interrupted(source, target, parameters, **kwargs):
        target.write_bytes(source.read_bytes())  # papermill writes the notebook before its first cell
        raise KeyboardInterrupt

    monkeypatch.setattr(runner.pm, "execute_notebook", interrupted)
    assert runner.main(["--only", "2"]) == 130
    err = capsys.readouterr().err
    kept = tmp_path / "out" / "notebooks" / "02_benchmark.part.ipynb"
    assert f"Stopped by Ctrl-C during 02_benchmark.ipynb (partial run kept in {kept})" in err
    assert "Traceback" not in err and kept.is_file()
    assert os.listdir(kept.parent) == [kept.name]  # no temporary file left, no chapter replaced


def test_a_finished_chapter_replaces_the_old_one_and_its_partial_run(fake_series, tmp_path):
    out = tmp_path / "out" / "notebooks"
    out.mkdir(parents=True)
    (out / "02_benchmark.part.ipynb").write_text("{}")
    assert runner.main(["--only", "2"]) == 0
    assert os.listdir(out) == ["02_benchmark.ipynb"]


def test_pytest_does_not_collect_leftover_notebooks(tmp_path):
    import subprocess
    import sys

    import nbformat

    from helpers.paths import REPO_ROOT

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    for name in ("01_ok.ipynb", "01_ok.part.ipynb", "01_ok.nbconvert.ipynb"):
        nbformat.write(nb, tmp_path / name)
    out = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--nbval-lax", "-c",
                          str(REPO_ROOT / "pyproject.toml"), "--rootdir", str(tmp_path), str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path)  # as `make test` runs it, from the top
    assert "01_ok.ipynb" in out.stdout and ".part" not in out.stdout and ".nbconvert" not in out.stdout


def test_the_mirror_counts_as_a_catalogue_when_asked_for(monkeypatch, tmp_path):
    from helpers import catalogue

    monkeypatch.setattr(catalogue, "data_roots", lambda root=None: [tmp_path])
    monkeypatch.delenv("FASHION_CATALOGUE", raising=False)
    assert not runner.catalogue_available()
    monkeypatch.setenv("FASHION_CATALOGUE", "mirror")
    assert runner.catalogue_available()


def test_a_read_only_checkout_gives_one_message_naming_the_folder_and_the_fix(monkeypatch, fake_series, capsys,
                                                                             tmp_path):
    from test_plots_and_paths import ReadOnlyPath

    monkeypatch.setattr(runner, "executed_dir", lambda mode: ReadOnlyPath(tmp_path) / "build" / "notebooks")
    assert runner.main(["--only", "2"]) == 1
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err and not fake_series
    assert f"Cannot write to {tmp_path / 'build' / 'notebooks'} (the file system is read-only)" in err
    assert "copy the checkout to a folder you can write to" in err


def _fake_chapters(folder: Path, **sources: str) -> None:
    folder.mkdir()
    for name, source in sources.items():
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# {name}"),
                                             nbformat.v4.new_code_cell(source)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, folder / f"{name}.ipynb")


@pytest.fixture
def real_papermill(tmp_path, monkeypatch):
    """The runner with the real papermill on chapters in tmp_path/notebooks; outputs under tmp_path/out.
    Returns tmp_path and the calls of the book's builder."""
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    monkeypatch.setattr(runner, "output_root", lambda mode=None: tmp_path / "out")
    monkeypatch.setattr(runner, "logs_dir", lambda mode: tmp_path / "logs")
    monkeypatch.setattr(runner, "executed_dir", lambda mode: tmp_path / "out" / "notebooks")
    monkeypatch.setattr(runner, "catalogue_available", lambda: True)
    monkeypatch.setattr(runlock, "lock_path", lambda mode: tmp_path / f"{mode}.lock")
    return tmp_path, _fake_book(monkeypatch, tmp_path)


def test_a_chapter_whose_kernel_dies_is_named_with_memory_and_the_chapters_before_it_are_in_the_book(real_papermill,
                                                                                                     capsys):
    tmp_path, books = real_papermill
    _fake_chapters(tmp_path / "notebooks", **{"01_ok": "print('fine')",
                                              "02_die": "import os\nos.kill(os.getpid(), 9)"})
    (tmp_path / "out" / "results").mkdir(parents=True)
    (tmp_path / "out" / "results" / "run_02.json").write_text(json.dumps({"peak_memory_mib": 21500}))
    assert runner.main(["--mode", "quick"]) == 1
    out, err = capsys.readouterr()
    kept = tmp_path / "out" / "notebooks" / "02_die.part.ipynb"
    assert "02_die.ipynb: its kernel was killed while running cell 1 ('import os')" in err
    assert "running out of memory (this machine has" in err and "GiB of memory" in err
    assert "peaked at 21,500 MiB" in err and f"Partial run kept in {kept}" in err and kept.is_file()
    assert "Traceback" not in err and "DeadKernelError" not in err
    assert "The book:" in out and [b["names"] for b in books] == [["01_ok.ipynb"]]


def test_a_second_run_in_the_same_mode_is_refused_before_any_chapter_runs(fake_series, capsys, tmp_path):
    import subprocess
    import sys

    holder = subprocess.Popen(  # a chapter of another run, holding the lock file this run uses
        [sys.executable, "-c", "import sys\nfrom pathlib import Path\nfrom helpers import runlock\n"
         "runlock.lock_path = lambda mode: Path(sys.argv[1])\nrunlock.claim('chapter 06', 'quick')\n"
         "print('held', flush=True)\nsys.stdin.read()", str(tmp_path / "quick.lock")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=paths.REPO_ROOT)
    try:
        assert holder.stdout.readline() == "held\n"
        assert runner.main(["--only", "2"]) == 1
    finally:
        holder.communicate("")
    err = capsys.readouterr().err
    assert not fake_series and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert f"chapter 06 in process {holder.pid}" in err and "Wait for it to finish" in err
    assert runner.main(["--only", "2"]) == 0  # once that run has ended
