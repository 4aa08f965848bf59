"""The chapters' structure: what a reader, a teacher and papermill rely on."""

import re

import nbformat
import pytest

from helpers import colab
from helpers.runner import chapters

CHAPTERS = chapters()
WINDOW = 6  # lines of code that may not appear in two chapters


def _code_lines(nb):
    lines = []
    for cell in nb.cells:
        if cell.cell_type == "code" and not {"parameters", "colab"} & set(cell.metadata.get("tags", [])):
            lines += [ln.strip() for ln in cell.source.splitlines()
                      if ln.strip() and not ln.strip().startswith(("#", "import ", "from "))]
    return lines


def test_series_has_nine_numbered_chapters():
    assert [p.name[:2] for p in CHAPTERS] == ["01", "02", "03", "04", "05", "06", "07", "08", "09", "10"]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_structure(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    intro = nb.cells[0].source
    for heading in ("**Summary.**", "**Learning goals**", "**Run time**"):
        assert heading in intro, f"{path.name}: the first cell lacks {heading}"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "seed = 42" in tagged[0].source
    assert 'mode = os.environ.get("SERIES_MODE", "lesson")' in tagged[0].source  # a chapter opened as it is
    # Colab: the badge under the title, then the one setup cell of helpers/colab.py before the parameters
    assert intro.splitlines()[2] == colab.badge(path.name)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code[0].source == colab.setup_cell(path.name[:2]) and code[0].metadata.get("tags") == ["colab"]
    assert code[1] is tagged[0]
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## What we learned" in text and "**Exercises**" in text
    assert (path.parent / "solutions" / f"{path.name[:2]}_solutions.md").is_file()
    assert f'notebook.finish("{path.name[:2]}"' in nb.cells[-1].source
    long = [c.source.splitlines()[0] for c in nb.cells if c.cell_type == "code" and len(c.source.splitlines()) > 15]
    assert not long, f"{path.name}: cells over 15 lines belong in helpers/: {long}"


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_committed_chapter_holds_the_full_run_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    stderr = "".join(o.get("text", "") for o in outputs if o.get("name") == "stderr")
    assert not re.search(r"^[IWEF]\d{4} |absl::", stderr, re.M), f"{path.name}: TensorFlow's C++ log in outputs"
    assert "AutoGraph could not transform" not in stderr, f"{path.name}: tf.data function AutoGraph cannot parse"
    injected = [c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert not injected, f"{path.name}: papermill's injected parameters were committed"
    text = "".join(o.get("text", "") for o in outputs)
    assert re.search(rf"Chapter {path.name[:2]}: (precision=\S+ \([^)]*\), )?mode=full", text), path.name
    assert re.search(rf"Chapter {path.name[:2]} ran in [\d.]+ min, peak memory \d+ MiB", text)


def test_no_code_is_copied_from_one_chapter_into_another():
    seen = {}
    for path in CHAPTERS:
        lines = _code_lines(nbformat.read(path, as_version=4))
        for i in range(len(lines) - WINDOW + 1):
            window = tuple(lines[i:i + WINDOW])
            other = seen.setdefault(window, path.name)
            assert other == path.name, f"{path.name} repeats lines of {other}: {window}"
