"""The runner in quick mode: chapters under papermill become a book; committed files are never touched."""

import hashlib
import os
import time

import pytest

from helpers import runner
from helpers.paths import REPO_ROOT


def _digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*")) if p.is_file()}


@pytest.mark.slow
def test_a_quick_run_becomes_a_book_and_leaves_committed_outputs_alone(data_root):
    """Two chapters through the runner and papermill, the others named as not run in the book (`make test`
    runs every chapter in quick mode under nbval, so the series is not run twice)."""
    committed = {d: _digests(REPO_ROOT / d) for d in ("notebooks", "figures", "results")}
    started = time.time()
    timings = runner.run_series("quick", seed=42, data_root=str(data_root), only=["01", "02"])
    assert [t["notebook"] for t in timings] == [p.name for p in runner.chapters()[:2]]
    index = runner.render_book("quick", timings, {})  # the links are checked as it is built
    assert index == REPO_ROOT / "build" / "quick" / "book" / "index.html"
    for chapter in runner.chapters():
        page = (index.parent / "notebooks" / f"{chapter.stem}.html").read_text(encoding="utf-8")
        ran = chapter.name[:2] in ("01", "02")
        assert ("cell_output" in page) == ran and ("not in this build" in page) != ran
    benchmark = (index.parent / "notebooks" / "02_benchmark.html").read_text(encoding="utf-8")
    assert "mode=quick" in benchmark and "mode=full" not in benchmark  # this run's outputs, not the committed ones
    figures = REPO_ROOT / "build" / "quick" / "figures"
    written = {p.name[:2] for p in figures.glob("0[1-9]_*.png") if p.stat().st_mtime >= started}
    assert written == {"01", "02"}  # this run's figures (an nbval run of `make test` may have left others)
    assert committed == {d: _digests(REPO_ROOT / d) for d in ("notebooks", "figures", "results")}


def test_a_failing_chapter_is_named_with_its_cell(tmp_path, monkeypatch):
    import nbformat
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("raise KeyError('boom')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "01_broken.ipynb")
    monkeypatch.setattr(runner, "NOTEBOOKS_DIR", tmp_path)
    monkeypatch.setattr(runner, "output_root", lambda mode=None: tmp_path / "out")
    expected = r"01_broken.ipynb failed at cell 1 \(run as In \[\d\], \"raise KeyError.*KeyError: 'boom'"
    with pytest.raises(runner.SeriesError, match=expected):
        runner.run_series("quick")


def test_a_default_run_injects_no_parameters(tmp_path, monkeypatch):
    """Only settings that differ from the parameters cell are injected; the data folder and the mode
    travel in the environment, so a default run's notebooks show no injected cell or machine path."""
    calls = []
    monkeypatch.setattr(runner.pm, "execute_notebook", lambda src, out, parameters, **kw: calls.append(parameters)
                        or out.write_bytes(src.read_bytes()))
    monkeypatch.setattr(runner, "output_root", lambda mode=None: tmp_path / "out")
    monkeypatch.delenv("FASHION_DATA_ROOT", raising=False)
    runner.run_series("quick", seed=42, data_root=str(tmp_path), only=["02"])
    runner.run_series("quick", seed=7, epochs=3, only=["02"])
    assert calls == [{}, {"seed": 7, "epochs": 3}]
    assert os.environ["FASHION_DATA_ROOT"] == str(tmp_path.resolve())
