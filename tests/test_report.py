"""The README's results and the chapters' run-time banners are what the records say (helpers.report)."""

import shutil

import nbformat
import pytest

from helpers import report


def test_the_readme_and_every_banner_are_the_records(capsys):
    assert report.main(["--check"]) == 0, capsys.readouterr().out + "\nrun `python -m helpers.report`"


def test_a_drifted_row_is_rewritten_and_a_missing_one_named(tmp_path, monkeypatch):
    rows = report.fashion_rows()
    drifted = report.README.read_text(encoding="utf-8").replace(rows["lenet5"], rows["lenet5"].replace(
        "| Fashion-MNIST | LeNet-5 (03) | 0.86 | **", "| Fashion-MNIST | LeNet-5 (03) | 0.86 | **0.5"))
    assert drifted != report.README.read_text(encoding="utf-8")
    for name, copy in (("GUIDE", "guide.md"), ("MAKEFILE", "Makefile")):  # the rewrite must touch only copies
        shutil.copy(getattr(report, name), tmp_path / copy)
        monkeypatch.setattr(report, name, tmp_path / copy)
    monkeypatch.setattr(report, "NOTEBOOKS", tmp_path / "notebooks")
    shutil.copytree(report.REPO_ROOT / "notebooks", report.NOTEBOOKS, ignore=shutil.ignore_patterns("solutions"))
    monkeypatch.setattr(report, "README", tmp_path / "README.md")
    report.README.write_text(drifted, encoding="utf-8")
    assert report.main(["--check"]) == 1
    assert report.main([]) == 0 and report.main(["--check"]) == 0
    with pytest.raises(ValueError, match=r"no results row \| Fashion-MNIST \| LeNet-5 \(03\) \|"):
        report.rewritten(drifted.replace("| Fashion-MNIST | LeNet-5 (03) |", "| LeNet |"), rows)
    with pytest.raises(ValueError, match="lacks the markers"):
        report.rewritten(drifted.replace(report.SEARCH_END, ""), {}, report.search_paragraph())


def test_a_drifted_banner_is_named_and_rewritten_from_the_run_record(tmp_path, monkeypatch, capsys):
    shutil.copytree(report.NOTEBOOKS, tmp_path, dirs_exist_ok=True, ignore=shutil.ignore_patterns("solutions"))
    monkeypatch.setattr(report, "NOTEBOOKS", tmp_path)
    path = next(tmp_path.glob("06_*.ipynb"))
    nb = nbformat.read(path, as_version=4)
    right = next(line for line in nb.cells[0].source.split("\n") if line.startswith("**Run time**"))
    nb.cells[0].source = nb.cells[0].source.replace(right, "**Run time** (2 CPU cores, measured): full mode 5 min.")
    nbformat.write(nb, path)
    assert report.main(["--check"]) == 1 and "06_catalogue.ipynb" in capsys.readouterr().out
    monkeypatch.setattr(report, "README", tmp_path / "README.md")  # the rewrite must not touch the real README
    shutil.copy(report.REPO_ROOT / "README.md", report.README)
    for name in ("GUIDE", "MAKEFILE"):  # nor the real guide and Makefile
        shutil.copy(getattr(report, name), tmp_path / f"{name}.copy")
        monkeypatch.setattr(report, name, tmp_path / f"{name}.copy")
    assert report.main([]) == 0 and report.main(["--check"]) == 0
    assert right in nbformat.read(path, as_version=4).cells[0].source
    assert "full mode 5 min" not in path.read_text(encoding="utf-8")
