"""What a reader reads speaks of the subject, and a chapter's prose never contradicts its own outputs.

Reader text is the chapters (markdown, and the code that draws figure labels), the solutions, the READMEs,
the helpers' docstrings and the experiment record (results/EXPERIMENTS.md, how the recipes were chosen).
"""

import ast
import re

import nbformat
import pytest

from helpers.paths import REPO_ROOT
from helpers.runner import chapters

CHAPTERS = chapters()
# Words that only make sense to someone who saw the project being built.
PROCESS = re.compile(
    r"\bissues?\b|\bthe bar\b|\btargets?\b|previous version|earlier (?:full )?run|\bthe hour\b|one run each|"
    r"throw-?away|\bproxy\b|\badopted\b|\bnow uses\b|\btoday'?s\b|committed run|\(README\)|design card|"
    r"\bslow(?:er)? day\b", re.I)
TOOLING = re.compile(r"\bnbval\b|\bpapermill\b|\bCI\b")  # not in a chapter's prose
# Decimal numbers a chapter's markdown may hold: constants no run changes. Everything a run measures is
# printed by a cell instead, so quick mode reads as coherently as full mode.
STUDY = {"0.816", "0.86", "0.89", "0.92", "0.94", "0.96", "0.98", "0.99"}  # the study's Table 1
ALLOWED_DECIMALS = {
    "02": {"0.816", "0.2", "0.0"},  # the study's accuracy; dropout rates
    "03": {"0.1"},  # dropout rate
    "04": {"0.89", "0.5", "0.9", "0.99", "23.6", "8.0", "7.5"},  # study; 0.5% left after 50 steps; batch-norm
    # momentums; 23.6 million parameters; NVIDIA compute capabilities
    "05": STUDY | {"0.40", "0.55", "0.5", "0.9", "2.5", "97.5"},  # the study; illustrative scores; Keras' threshold;
    # the percentiles of a 95% interval
    "06": {"0.0", "0.2", "0.5", "1.0"},  # the margin, the class-weight powers
    "07": {"0.1", "0.2", "0.3", "0.5"},  # zoom ranges and brightness of the exercises
    "08": {"0.1"},  # precision@10 of one hit in ten, in the MAP@k explanation
}
DECIMAL = re.compile(r"(?<![\w.])\d*\.\d+")
# A commit hash: 7-40 lowercase hex characters with at least one digit and one letter a-f ("added", "decade" and
# "2021" are not).
COMMIT_HASH = re.compile(r"\b(?=[0-9a-f]*[0-9])(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b")
EXPERIMENT_RECORD = REPO_ROOT / "results" / "EXPERIMENTS.md"


def _markdown(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def _code(path) -> str:
    nb = nbformat.read(path, as_version=4)
    return "\n".join(c.source for c in nb.cells if c.cell_type == "code")


def _docstrings(path) -> str:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = [tree] + [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    return "\n".join(ast.get_docstring(n) or "" for n in nodes)


READER_FILES = [REPO_ROOT / "README.md", REPO_ROOT / "notebooks" / "README.md", REPO_ROOT / "data" / "README.md",
                *sorted((REPO_ROOT / "notebooks" / "solutions").glob("*.md"))]


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_text_speaks_of_the_subject(path):
    text = _markdown(path) + "\n" + _code(path)  # the code draws the figures' titles and legends
    assert not PROCESS.findall(text), f"{path.name}: {sorted(set(PROCESS.findall(text)))}"
    assert not TOOLING.findall(_markdown(path)), f"{path.name} names test tooling in its prose"


@pytest.mark.parametrize("path", READER_FILES, ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_readmes_and_solutions_speak_of_the_subject(path):
    text = path.read_text(encoding="utf-8")
    found = [m.group(0) for m in PROCESS.finditer(text)]
    assert not found, f"{path.name}: {sorted(set(found))}"
    assert not re.search(r"\b(commit|at) [0-9a-f]{7,40}\b", text), f"{path.name} names a commit"


def test_helpers_docstrings_speak_of_the_subject():
    hits = {}
    for path in sorted((REPO_ROOT / "helpers").glob("*.py")):
        found = PROCESS.findall(_docstrings(path))
        if found:
            hits[path.name] = found
    assert not hits


@pytest.mark.parametrize("path", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_markdown_holds_no_measured_decimals(path):
    found = set(DECIMAL.findall(_markdown(path)))
    assert found <= ALLOWED_DECIMALS.get(path.name[:2], set()), (
        f"{path.name}: {sorted(found - ALLOWED_DECIMALS.get(path.name[:2], set()))} in markdown; print a "
        "measured number from a cell instead")


def test_the_experiment_record_has_no_process_words_or_commit_hashes():
    text = EXPERIMENT_RECORD.read_text(encoding="utf-8")
    found = sorted({m.group(0) for m in PROCESS.finditer(text)})
    assert not found, f"{EXPERIMENT_RECORD.name}: {found}"
    hashes = sorted(set(COMMIT_HASH.findall(text)))
    assert not hashes, f"{EXPERIMENT_RECORD.name} names commits: {hashes}"


def test_the_word_lists_catch_what_they_are_for():
    assert PROCESS.search("The issue's bar is reached") and PROCESS.search("an earlier full run of this chapter")
    assert not PROCESS.search("a shirt listed among T-shirts is found by fewer customers")
    assert DECIMAL.findall("accuracy 0.8966 (study 0.816), 7,069 photos") == ["0.8966", "0.816"]
    assert COMMIT_HASH.findall("its last run (commit `86ed101`), 0123456789abcdef0123456789abcdef01234567") == [
        "86ed101", "0123456789abcdef0123456789abcdef01234567"]
    assert not COMMIT_HASH.findall("added a decade of deadbeef 2021 1234567 cafe0 efficientnet 0.9253")


def test_every_chapter_links_to_its_neighbours_and_the_contents():
    for i, path in enumerate(CHAPTERS):
        text = _markdown(path)
        assert "(README.md)" in text and "(README.md#references)" in text, path.name
        if i + 1 < len(CHAPTERS):
            assert f"({CHAPTERS[i + 1].name})" in text, f"{path.name} does not link to the next chapter"
        if i > 0:
            assert f"({CHAPTERS[i - 1].name})" in text, f"{path.name} does not link to the previous chapter"


def test_readme_is_a_readers_page_and_links_the_experiment_record():
    text = (REPO_ROOT / "README.md").read_text()
    assert len(text.split()) <= 2000, f"README.md has {len(text.split())} words; move detail to results/EXPERIMENTS.md"
    assert "(results/EXPERIMENTS.md)" in text and (REPO_ROOT / "results" / "EXPERIMENTS.md").is_file()


def test_the_teaching_guide_s_session_times_add_up():
    guide = (REPO_ROOT / "notebooks" / "README.md").read_text()
    class_time = {row[1].strip(): int(row[6].split()[0]) for row in
                  (ln.split("|") for ln in guide.splitlines() if re.match(r"\| \d\d \| \[", ln))}
    assert len(class_time) == len(CHAPTERS)
    paths = re.findall(r"\((\d+) minutes: ([\d, ]+) at their class times\)", guide)
    assert len(paths) >= 2
    for total, listed in paths:
        assert int(total) == sum(class_time[c.strip()] for c in listed.split(",")), (total, listed)
