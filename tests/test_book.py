"""The book: built from the notebooks' stored outputs without executing them, every link inside the site, and
read in a headless Chromium: pages, figures, links between the chapters and the guide, previous/next, search.

The browser test skips when Chromium's driver is not installed (Debian: ``apt-get install chromium
chromium-driver``), unless ``SERIES_REQUIRE_BROWSER=1`` (set by .ci/run), where that is a failure."""

import base64
import functools
import hashlib
import http.server
import os
import threading
import time
from pathlib import Path

import nbformat
import pytest

from helpers import book
from helpers.paths import REPO_ROOT

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# a 1x1 PNG, as a chapter's figure output stores it
PIXEL = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==")


def test_a_link_that_leaves_the_site_or_leads_nowhere_is_caught(tmp_path):
    site = tmp_path / "site"
    (site / "sub").mkdir(parents=True)
    (site / "ok.html").write_text('<h1 id="here">ok</h1><img src="sub/a.png">')
    (site / "sub" / "a.png").write_bytes(b"png")
    (site / "sub" / "page.html").write_text(
        '<a href="../ok.html#here">fine</a> <a href="../ok.html?v=1">fine</a> <a href="#">top</a> '
        '<a href="https://example.org/x">web</a> <img src="data:image/png;base64,AAAA"> <a href="//cdn.org/m.js">'
        '<a href="../../notebooks/README.md">outside</a> <a href="gone.html">missing</a> '
        '<a href="../ok.html#nowhere">no such heading</a> <img src="b.png">')
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "README.md").write_text("# a file beside the site, not in it")
    assert book.broken_links(site) == ["sub/page.html: ../../notebooks/README.md", "sub/page.html: gone.html",
                                       "sub/page.html: ../ok.html#nowhere", "sub/page.html: b.png"]


def _chapter(path: Path, links: str, marker: Path) -> None:
    """A chapter whose code would leave ``marker`` behind if it ran, with a stored text and figure output."""
    code = nbformat.v4.new_code_cell(f"open({str(marker)!r}, 'w').write('ran')", outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="stored output 4242\n"),
        nbformat.v4.new_output("display_data", data={"image/png": PIXEL, "text/plain": "<Figure>"})])
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(f"# 02 · A stand-in chapter\n\n{links}"),
                                         code])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


def test_a_run_s_book_shows_stored_outputs_names_skipped_chapters_and_survives_a_failed_build(tmp_path):
    executed, out, marker = tmp_path / "notebooks", tmp_path / "book", tmp_path / "executed"
    executed.mkdir()
    _chapter(executed / "02_benchmark.ipynb", "[Contents](README.md) · [references](README.md#references) · "
             "[next](03_lenet5.ipynb) · [solutions](solutions/02_solutions.md) · [record](../results/EXPERIMENTS.md)",
             marker)
    index = book.build_book(executed, out, ["02_benchmark.ipynb"], {"06_catalogue.ipynb": "needs the catalogue"})
    assert index == out / "index.html" and 'url=README.html' in index.read_text()
    assert not marker.exists()  # nothing was executed
    chapter = (out / "notebooks" / "02_benchmark.html").read_text()
    assert "stored output 4242" in chapter and "A stand-in chapter" in chapter
    assert base64.b64decode(PIXEL) in [p.read_bytes() for p in (out / "_images").glob("*.png")]
    assert "This chapter is not in this build of the book (needs the catalogue)" in (
        out / "notebooks" / "06_catalogue.html").read_text()
    assert "(not run for this build)" in (out / "notebooks" / "03_lenet5.html").read_text()
    front = (out / "README.html").read_text()
    assert "Chapters not run for this build of the book" in front and "needs the catalogue" in front
    assert book.broken_links(out) == []
    assert 'nb_execution_mode = "off"' in (tmp_path / "book-src" / "conf.py").read_text()

    _chapter(executed / "02_benchmark.ipynb", "[a chapter that does not exist](10_nothing.ipynb)", marker)
    with pytest.raises(book.BookError, match="10_nothing.ipynb"):
        book.build_book(executed, out, ["02_benchmark.ipynb"])
    assert (out / "notebooks" / "02_benchmark.html").read_text() == chapter  # the previous book is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["book", "book-src", "notebooks"]  # no half-built folder


def _digests(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.ipynb"))}


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The book of the committed chapters, served over HTTP on localhost; yields its address."""
    committed = _digests(REPO_ROOT / "notebooks")
    out = tmp_path_factory.mktemp("site") / "book"
    start = time.perf_counter()
    book.build_book(out_dir=out)
    print(f"book built in {time.perf_counter() - start:.1f} s")
    assert _digests(REPO_ROOT / "notebooks") == committed
    assert book.broken_links(out) == []

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=out))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Headless Chromium through Debian's chromedriver, which is never downloaded."""
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        missing.append("the selenium package")
    if missing:
        why = f"the browser test needs {', '.join(missing)} (apt-get install chromium chromium-driver)"
        if os.environ.get("SERIES_REQUIRE_BROWSER") == "1":
            pytest.fail(why + "; SERIES_REQUIRE_BROWSER=1 requires it")
        pytest.skip(why)
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    options.page_load_strategy = "eager"  # a page's own files are awaited below, never the web's
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1000", f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def _wait(driver, condition, timeout=20):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(condition)


def _click(driver, xpath: str, lands_on: str) -> None:
    from selenium.webdriver.common.by import By

    link = driver.find_element(By.XPATH, xpath)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
    link.click()
    _wait(driver, lambda d: d.current_url.split("#")[0].endswith(lands_on)
          and d.execute_script("return document.readyState") != "loading")


def test_the_book_reads_in_a_browser(browser, site):  # no browser: skipped before the build
    from selenium.webdriver.common.by import By

    start = time.perf_counter()
    browser.get(f"{site}/index.html")  # sends the browser to the front page, the README
    _wait(browser, lambda d: d.current_url.endswith("/README.html")
          and d.find_elements(By.CSS_SELECTOR, "nav.bd-docs-nav a"))
    assert browser.title.endswith("Image classification for e-commerce")
    sidebar = [a.get_attribute("href").removeprefix(site + "/").split("#")[0]  # the page itself is "#"
               for a in browser.find_elements(By.CSS_SELECTOR, "nav.bd-docs-nav a")]
    chapters = [f"notebooks/{p.stem}.html" for p in sorted((REPO_ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))]
    assert [s for s in sidebar if s.endswith(".html")][:len(chapters) + 3] == [
        "README.html", "notebooks/README.html", *chapters, "notebooks/solutions/index.html"]
    assert "results/EXPERIMENTS.html" in sidebar

    _click(browser, "//nav[contains(@class, 'bd-docs-nav')]//a[contains(@href, '05_comparison.html')]",
           "notebooks/05_comparison.html")
    figures = browser.find_elements(By.CSS_SELECTOR, "div.cell_output img")
    assert figures
    _wait(browser, lambda d: all(d.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                                  img) for img in figures))

    _click(browser, "//article//a[@href='README.html'][normalize-space()='Contents']", "notebooks/README.html")
    assert browser.find_element(By.CSS_SELECTOR, "article h1").text.startswith("The chapters")
    _click(browser, "//article//table//a[@href='03_lenet5.html']", "notebooks/03_lenet5.html")
    _click(browser, "//a[contains(@class, 'right-next')]", "notebooks/04_resnet.html")
    _click(browser, "//article//a[@href='README.html#references']", "notebooks/README.html")
    assert browser.current_url.endswith("#references")

    browser.get(f"{site}/search.html?q=McNemar")
    _wait(browser, lambda d: "Search finished" in d.find_element(By.ID, "search-results").text)
    found = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#search-results li a")]
    assert f"{site}/notebooks/05_comparison.html" in [h.split("?")[0].split("#")[0] for h in found]
    print(f"browser checks in {time.perf_counter() - start:.1f} s")


def test_the_book_command_builds_the_book(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(book, "build_book", lambda notebooks_dir, out_dir: out_dir / "index.html")
    assert book.main(["--out", str(tmp_path / "b")]) == 0
    assert str(tmp_path / "b" / "index.html") in capsys.readouterr().out
    with pytest.raises(SystemExit):
        book.main(["--notebooks", str(tmp_path / "none")])
    assert "is not a folder" in capsys.readouterr().err
