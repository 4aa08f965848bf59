"""The README's results and every chapter's run-time banner, written from the records so that they cannot drift.

    python -m helpers.report            # rewrite them from results/
    python -m helpers.report --check    # exit 1, naming what differs, when README.md or a chapter says otherwise

What each part reads:

- The "full mode, peak GiB" row of the lesson table: ``run_NN.json``.
- Fashion-MNIST rows: the metadata of the full run's test predictions (``results/<model>_predictions.npz``: the
  parameters and the training time), chapter 05's tables (``comparison.csv``: metrics with bootstrap intervals;
  ``study_table.csv``: the study's accuracy) and ``seeds.csv`` (other seeds of the same recipe; the median is over
  those and the chapters' seed 42).
- Catalogue rows: chapter 06's test predictions (``catalogue_tagger_tags.npz``) with the class weights divided out,
  each accuracy's percentile-bootstrap interval as the chapter computes it, the reference models and the published
  figures of ``tagging``.
- Similar products, feed, search and review rows, and the paragraph on ten million vectors: ``retrieval.csv``,
  ``feed_summary.csv``, ``search_at_scale.csv``, ``review_queue.csv`` and ``run_09.json``.
- The teaching guide's chapter table: the full-mode minutes and peak memory, from ``run_NN.json``.
- "about N h on 2 CPU cores" for the whole series (README and Makefile): the sum of ``run_NN.json``'s minutes.
- Banners: the first line starting "**Run time**" of each chapter's opening cell, from ``run_NN.json`` (full mode)
  and the README's lesson-mode row (which ``tests/test_reader_text.py`` ties to the teaching guide).

``tests/test_report.py`` fails when any of them differs.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

import nbformat
import numpy as np
import pandas as pd

from helpers.paths import REPO_ROOT, atomic_write_bytes

README = REPO_ROOT / "README.md"
GUIDE = REPO_ROOT / "notebooks" / "README.md"
MAKEFILE = REPO_ROOT / "Makefile"
SERIES_HOURS = re.compile(r"about [0-9.]+ h on 2 CPU cores")
RESULTS = REPO_ROOT / "results"
NOTEBOOKS = REPO_ROOT / "notebooks"
# model: (its README label, chapter)
FASHION_MODELS = {"benchmark": ("dense benchmark", "02"), "lenet5": ("LeNet-5", "03"),
                  "resnet_small": ("small-image ResNet-9", "04"), "resnet50": ("ResNet-50 from scratch", "04")}
SEARCH_START, SEARCH_END = "<!-- search at scale: helpers.report -->", "<!-- end of search at scale -->"


def _meta(path) -> dict:
    with np.load(path) as saved:  # its metadata: JSON, no pickles
        return json.loads(str(saved["meta"]))


def _run_record(chapter: str, results=RESULTS) -> dict:
    """The full run's record of a chapter (``results/run_NN.json``: minutes, peak memory, CPU)."""
    return json.loads((results / f"run_{chapter}.json").read_text())


def fashion_rows(results=RESULTS) -> dict[str, str]:
    """``{model: README table row}`` for the Fashion-MNIST models of chapters 02-04."""
    comparison = pd.read_csv(results / "comparison.csv", index_col=0)
    study_table = pd.read_csv(results / "study_table.csv", index_col=0)
    seeds = pd.read_csv(results / "seeds.csv")
    rows = {}
    for name, (label, chapter) in FASHION_MODELS.items():
        record = _meta(results / f"{name}_predictions.npz")
        metrics = comparison.loc[name]
        accuracies = [metrics["accuracy"], *seeds.loc[seeds["model"] == name, "accuracy"]]
        study = study_table.loc[name, "study accuracy"]
        study = "—" if pd.isna(study) else f"{study:.3g}"
        rows[name] = (f"| Fashion-MNIST | {label} ({chapter}) | {study} | **{metrics['accuracy']:.4f}** "
                      f"[{metrics['accuracy_ci_low']:.3f}, {metrics['accuracy_ci_high']:.3f}]; "
                      f"{len(accuracies)} seeds {np.median(accuracies):.4f} | {record['parameters']:,} | "
                      f"{record['history']['seconds'] / 60:.1f} min |")
    return rows


def catalogue_rows(results=RESULTS, seed: int = 42) -> dict[str, str]:
    """``{head: README table row}``: chapter 06's accuracy (weights divided out) with its 95% interval, the frozen
    reference, and the published figure marked by its source (a or b, listed above the table)."""
    from helpers import metrics, tagging

    tags = tagging.read_tags(results / "catalogue_tagger_tags.npz")
    scores = tagging.undo_class_weights(tags["y_score"], tags["history"]["class_weights"])
    sources = {url: "ab"[k] for k, url in enumerate(dict.fromkeys(tagging.PUBLISHED["url"]))}
    rows = {}
    for k, head in enumerate(tagging.HEADS):
        known = tags["y_true"][head] != tagging.MISSING
        right = (scores[head][known].argmax(axis=1) == tags["y_true"][head][known]).astype(int)
        # the chapter's bootstrap (metrics.bootstrap_ci, same seed) on two-column scores whose top class says
        # "right": the same resampled rows, as they depend only on the number of photos and the seed, so the same
        # interval, with the share of right answers computed directly
        accuracy, low, high = metrics.bootstrap_ci(np.ones_like(right), np.eye(2)[right],
                                                   lambda y, s: float(np.mean(s.argmax(axis=1) == y)), 1000, seed)
        published = tagging.PUBLISHED.loc[head]
        label = f"{head} ({len(tags['names'][head])} classes)" if head in ("articleType", "baseColour") else head
        first, frozen = k == 0, tagging.REFERENCES.loc[head, "frozen EfficientNet-Lite0"]
        rows[head] = (f"| catalogue {label}{' (06)' if first else ''} | "
                      f"{'EfficientNet-Lite0, fine-tuned | ' if first else '| '}"
                      f"{published['published accuracy']:.3g} ({sources[published['url']]}) | **{accuracy:.3f}** "
                      f"[{low:.3f}, {high:.3f}]; frozen Lite0 {frozen:.3f} | "
                      + (f"{tags['parameters']:,} | {tags['history']['seconds'] / 60:.1f} min |" if first else "| |"))
    return rows


def build_seconds(seconds: float) -> str:
    """A build time for a table: one decimal under ten seconds ("0.2 s"), whole seconds above ("34 s")."""
    return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"


def shop_rows(results=RESULTS) -> dict[str, str]:
    """The rows of chapters 08 and 09: similar products, feed tagging, vector search and the review queue."""
    from helpers import vectors

    retrieval = pd.read_csv(results / "retrieval.csv", index_col=[0, 1])
    cnn, pixels = retrieval.loc[("CNN embedding", "articleType")], retrieval.loc[("raw pixels", "articleType")]
    feed = pd.read_csv(results / "feed_summary.csv").iloc[0].to_dict()
    files, tagged, seconds = int(feed["files"]), int(feed["tagged"]), float(feed["seconds"])
    search = pd.read_csv(results / "search_at_scale.csv")
    real = search[search["catalogue"] == "real"]
    best = vectors.best_settings(real).droplevel("vectors")
    fast = best.drop(index="Flat (exact)")["single ms (median)"].idxmin()
    queue = pd.read_csv(results / "review_queue.csv", index_col=0)
    right = queue["accepted tags right"].dropna()
    return {
        "similar": f"| similar products (08) | 06's embedding, same articleType | — | precision@10 "
                   f"**{cnn['precision@10']:.3f}**, MAP@10 {cnn['MAP@10']:.3f} (divided by min(k, R): "
                   f"{cnn['MAP@10, divided by min(k, R)']:.3f}); raw pixels {pixels['precision@10']:.3f} | | |",
        "feed": f"| feed tagging (09) | 06's tagger on {files:,} photo files | — | {files / seconds:.0f} images/s; "
                f"{tagged:,} tagged, {int(feed['undecodable'])} damaged or crafted files and {int(feed['left out'])} "
                f"unusable entries named | | {seconds:.0f} s |",
        "search": f"| vector search (09) | FAISS, {real['vectors'].iloc[0]:,} real embeddings | — | {fast} recall@10 "
                  f"**{best.loc[fast, 'recall@10']:.3f}** at {best.loc[fast, 'single ms (median)']:.2f} ms per query "
                  f"(exact {best.loc['Flat (exact)', 'single ms (median)']:.1f} ms) | | "
                  f"{build_seconds(best.loc[fast, 'build s'])} to build |",
        "queue": f"| review queue (09) | thresholds for 99% right, calibrated | — | "
                 f"mean {queue['tags accepted'].mean():.0%} of tags accepted, "
                 f"{right.min():.1%}–{right.max():.1%} right; "
                 f"ECE {queue['ECE before'].mean():.3f} → {queue['ECE after'].mean():.3f} | | |",
    }


def cluster_rows(results=RESULTS) -> dict[str, str]:
    """The rows of chapter 10: the feed tagged on Ray workers, and the sharded search."""
    runs = pd.read_csv(results / "cluster_tagging.csv", index_col=0)
    rate = runs["images/s after start-up"]
    latency = pd.read_csv(results / "shard_latency.csv", index_col=0)
    shards, equal = latency["ms (median)"], latency["answers equal to the single index"]
    return {
        "workers": f"| feed on Ray workers (10) | 06's tagger on 09's feed, listed 3 times | — | "
                   f"{int(runs['items'].iloc[0]):,} items; after start-up **{rate['1']:.0f}** images/s on 1 worker, "
                   f"**{rate['2']:.0f}** on 2, {rate.iloc[0]:.0f} without Ray; a worker killed: every item once | | "
                   f"{runs.loc['2, one killed', 'seconds']:.0f} s with the kill |",
        "shards": f"| sharded search (10) | 09's IVF index in 1, 2, 4 shards | — | "
                  f"{'the single index' if (equal.dropna() == 1).all() else 'NOT the single index'}'s answers; "
                  f"{shards['1']:.1f}, {shards['2']:.1f}, {shards['4']:.1f} ms per query (one index in process: "
                  f"{shards.iloc[0]:.2f} ms) | | |",
    }


def search_paragraph(results=RESULTS) -> str:
    """Chapter 09 at its largest size: the re-ranked indexes, exact search from the file, HNSW at its largest."""
    from helpers import vectors

    search = pd.read_csv(results / "search_at_scale.csv")
    best = vectors.best_settings(search)
    largest = search["vectors"].max()
    at_largest = best.loc[largest]
    reranked = at_largest[at_largest.index.str.endswith("re-rank")].sort_values("memory MiB", ascending=False)
    parts = [f"{name} ({row['setting']}) **{row['recall@10']:.3f}** at {row['single ms (median)']:.1f} ms, "
             f"{row['memory MiB']:,.0f} MiB" for name, row in reranked.iterrows()]
    exact = search[(search["vectors"] == largest) & (search["index"] == "Flat (exact)")]["single ms (median)"].min()
    hnsw = best.xs("HNSW", level="index")
    hnsw_n = hnsw.index.max()
    minutes = _run_record("09", results)["minutes"]
    return (f"{SEARCH_START}\n{largest:,} synthetic vectors (09; float16 on disk, compressed codes in memory; one "
            "query on one core, median; each index at its fastest setting reaching 95% recall@10): "
            + "; ".join(parts) + f"; exact search from the file {exact / 1000:.0f} s. HNSW at {hnsw_n:,}: "
            f"{hnsw.loc[hnsw_n, 'recall@10']:.3f} at {hnsw.loc[hnsw_n, 'single ms (median)']:.2f} ms, "
            f"{hnsw.loc[hnsw_n, 'memory MiB']:,.0f} MiB. Chapter 09: {minutes:.0f} min.\n{SEARCH_END}")


def with_series_hours(text: str, results=RESULTS) -> str:
    """``text`` with its "about N h on 2 CPU cores" (the whole series in full mode) from the run records, to the
    nearest half hour."""
    minutes = sum(json.loads(path.read_text())["minutes"] for path in sorted(results.glob("run_*.json")))
    return SERIES_HOURS.sub(f"about {round(minutes / 30) / 2:g} h on 2 CPU cores", text)


def peak_row(results=RESULTS) -> str:
    """The README's "full mode, peak GiB" row of the lesson table, from ``run_NN.json``."""
    records = sorted(results.glob("run_*.json"))
    peaks = [json.loads(path.read_text())["peak_memory_mib"] / 1024 for path in records]
    return "| full mode, peak GiB | " + " | ".join(f"{peak:.1f}" for peak in peaks) + " |"


def _prefix(row: str) -> str:
    """A table row's first two cells, which name it (``| task | model |``), spaces trimmed."""
    return "| " + " | ".join(cell.strip() for cell in row.split("|")[1:3]) + " |"


def rewritten(readme: str, rows: dict[str, str], paragraph: str | None = None) -> str:
    """``readme`` with each row replaced (found by its first two cells) and the marked search paragraph; a row or
    marker that is missing is an error naming it."""
    lines = readme.split("\n")
    found = {_prefix(line): k for k, line in enumerate(lines) if line.startswith("| ")}
    missing = [_prefix(row) for row in rows.values() if _prefix(row) not in found]
    if missing:
        raise ValueError(f"README.md has no results row {', '.join(missing)}; add it to its results table.")
    for row in rows.values():
        lines[found[_prefix(row)]] = row
    lines = [peak_row() if line.startswith("| full mode, peak GiB |") else line for line in lines]
    text = with_series_hours("\n".join(lines))
    if paragraph is not None:
        pattern = re.compile(re.escape(SEARCH_START) + r".*?" + re.escape(SEARCH_END), re.S)
        if not pattern.search(text):
            raise ValueError(f"README.md lacks the markers {SEARCH_START} ... {SEARCH_END} around the search "
                             "paragraph.")
        text = pattern.sub(lambda _: paragraph, text)
    return text


def lesson_minutes(readme: str) -> dict[str, str]:
    """The README's "lesson mode, minutes" row: ``{"01": "< 1", "04": "5.6", ...}``."""
    header = next(line for line in readme.split("\n") if line.startswith("| chapter | 01 |"))
    values = next(line for line in readme.split("\n") if line.startswith("| lesson mode, minutes |"))
    cells = [c.strip() for c in header.strip("|").split("|")][1:]
    return dict(zip(cells, [c.strip() for c in values.strip("|").split("|")][1:], strict=True))


def banner(chapter: str, lesson: str, results=RESULTS) -> str:
    record = _run_record(chapter, results)
    full = "under a minute" if record["minutes"] < 1 else f"{record['minutes']:.0f} min"
    cpu = f" ({record['cpu']})" if record.get("cpu") else ""
    lesson = "under a minute" if lesson == "< 1" else f"about {float(lesson):.0f} min"
    return f"**Run time** (2 CPU cores, measured): full mode {full}{cpu}, lesson mode {lesson}."


def banners(readme: str, results=RESULTS) -> dict[str, tuple[str, str]]:
    """``{notebook file: (its opening cell now, the cell with the banner from the records)}``."""
    out = {}
    for chapter, lesson in lesson_minutes(readme).items():
        path = next(NOTEBOOKS.glob(f"{chapter}_*.ipynb"))
        first = nbformat.read(path, as_version=4).cells[0].source
        lines = first.split("\n")
        at = [k for k, line in enumerate(lines) if line.startswith("**Run time**")]
        if len(at) != 1:
            raise ValueError(f"{path.name}: its opening cell needs one line starting '**Run time**'.")
        lines[at[0]] = banner(chapter, lesson, results)
        out[path.name] = (first, "\n".join(lines))
    return out


def _full_minutes(minutes: float) -> str:
    return "under 1 min" if minutes < 1 else f"{minutes:.0f} min"


def guide_with_records(guide: str, results=RESULTS) -> str:
    """The guide with each chapter row's full-mode run time and peak memory (the first of the three values in
    its "full / lesson / quick" columns) taken from ``run_NN.json``."""
    lines = guide.split("\n")
    for k, line in enumerate(lines):
        match = re.match(r"\| (\d\d) \| \[", line)
        if not match:
            continue
        record = _run_record(match.group(1), results)
        cells = line.split("|")
        for column, full in ((4, _full_minutes(record["minutes"])), (5, f"{record['peak_memory_mib'] / 1024:.1f}")):
            cells[column] = " " + " / ".join([full, *cells[column].strip().split(" / ")[1:]]) + " "
        lines[k] = "|".join(cells)
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether README.md and the banners agree")
    args = parser.parse_args(argv)
    readme = README.read_text(encoding="utf-8")
    rows = {**fashion_rows(), **catalogue_rows(), **shop_rows(), **cluster_rows()}
    updated = rewritten(readme, rows, search_paragraph())
    stale_banners = {name: new for name, (old, new) in banners(readme).items() if old != new}
    guide = GUIDE.read_text(encoding="utf-8")
    guide_updated = guide_with_records(guide)
    makefile = MAKEFILE.read_text(encoding="utf-8")
    makefile_updated = with_series_hours(makefile)
    if args.check:
        stale = [line for line in updated.split("\n") if line not in readme.split("\n")]
        stale += [f"teaching guide: {line}" for line in guide_updated.split("\n") if line not in guide.split("\n")]
        stale += [f"Makefile: {line}" for line in makefile_updated.split("\n") if line not in makefile.split("\n")]
        stale += [f"{name}: {new.split('**Run time**')[1].split(chr(10))[0]}" for name, new in stale_banners.items()]
        print("\n".join(["Differs from results/:", *stale]) if stale else "README.md and banners agree with results/")
        return 1 if stale else 0
    if updated != readme:
        atomic_write_bytes(README, updated.encode("utf-8"))
    if guide_updated != guide:
        atomic_write_bytes(GUIDE, guide_updated.encode("utf-8"))
    if makefile_updated != makefile:
        atomic_write_bytes(MAKEFILE, makefile_updated.encode("utf-8"))
    for name, new in stale_banners.items():
        path = NOTEBOOKS / name
        nb = nbformat.read(path, as_version=4)
        nb.cells[0].source = new
        atomic_write_bytes(path, nbformat.writes(nb).encode("utf-8"))
    print(f"README.md: {len(rows)} result rows and the search paragraph written from results/; the teaching "
          f"guide's full-mode times and memory; {len(stale_banners)} chapter banners updated")
    return 0


if __name__ == "__main__":
    sys.exit(main())
