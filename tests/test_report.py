"""The README's Fashion-MNIST result rows are what the records say (helpers.report)."""

import pytest

from helpers import report


def test_the_readme_s_fashion_mnist_rows_are_the_records():
    readme = report.README.read_text(encoding="utf-8")
    rows = report.fashion_rows()
    stale = [row for row in rows.values() if row not in readme.split("\n")]
    assert not stale, f"README.md differs from results/: run `python -m helpers.report`. Expected: {stale}"


def test_a_drifted_row_is_rewritten_and_a_missing_one_named(tmp_path, monkeypatch):
    rows = report.fashion_rows()
    drifted = report.README.read_text(encoding="utf-8").replace(rows["lenet5"], rows["lenet5"].replace(
        "| Fashion-MNIST | LeNet-5 (03) | 0.86 | **", "| Fashion-MNIST | LeNet-5 (03) | 0.86 | **0.5"))
    assert drifted != report.README.read_text(encoding="utf-8")
    monkeypatch.setattr(report, "README", tmp_path / "README.md")
    report.README.write_text(drifted, encoding="utf-8")
    assert report.main(["--check"]) == 1
    assert report.main([]) == 0 and report.main(["--check"]) == 0
    with pytest.raises(ValueError, match="no results row for LeNet-5"):
        report.rewritten(drifted.replace("| Fashion-MNIST | LeNet-5 (03) |", "| LeNet |"), rows)
