"""Set the series up on Google Colab, where a chapter opened from the repository arrives alone.

Each chapter's first code cell (``setup_cell``, tagged ``colab``) does nothing outside Colab. On Colab it
clones the repository and calls ``setup()`` from the clone, which installs only what the runtime lacks:
every package of ``requirements-lock.txt`` that is not installed, and every package ``environment.yml``
names whose installed version is outside its range, each at its locked version and without its
dependencies (the lock lists them), so that Colab's own TensorFlow, NumPy and pandas stay as they are
wherever the series accepts them. Then it installs this clone's helpers in place, chooses lesson mode and
the catalogue's Hugging Face mirror unless they are chosen already, and runs the earlier chapters whose
outputs the chapter reads (each Colab notebook has a runtime of its own).

Standard library and ``packaging`` only: it runs before anything else is installed.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement

from helpers.envfile import package_name, requirements

REPO_ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/ecommerce-image-classification/notebook-series"
BADGE = "https://colab.research.google.com/assets/colab-badge.svg"

SETUP_CELL = '''\
# Runs on Google Colab only (elsewhere it does nothing): gets the series and the packages Colab lacks,
# runs the chapters this one reads from, and chooses lesson mode and the catalogue's Hugging Face copy
import os
import subprocess
import sys

if "google.colab" in sys.modules or os.environ.get("SERIES_COLAB_SETUP") == "1":
    source = os.environ.get("SERIES_REPOSITORY", "{repository}")
    folder = os.path.abspath(os.path.basename(source.rstrip("/")).removesuffix(".git"))
    if not os.path.isdir(folder):
        subprocess.run(["git", "clone", "--quiet", "--depth", "1", source, folder], check=True)
    sys.path.insert(0, folder)
    from helpers import colab
    colab.setup("{chapter}")'''


def setup_cell(chapter: str) -> str:
    """The first code cell of a chapter (``"06"``)."""
    return SETUP_CELL.format(repository=REPOSITORY, chapter=chapter)


def colab_url(notebook: str, branch: str = "main") -> str:
    """Colab's address of a chapter of the repository (``notebook``: e.g. ``01_data.ipynb``)."""
    return f"{REPOSITORY.replace('https://github.com/', 'https://colab.research.google.com/github/')}" \
           f"/blob/{branch}/notebooks/{notebook}"


def badge(notebook: str) -> str:
    """The "Open in Colab" badge of a chapter, as Markdown."""
    return f"[![Open in Colab]({BADGE})]({colab_url(notebook)})"


def installed_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def locked(lock_text: str) -> dict[str, str]:
    """``{normalised name: version}`` of a pip lock file of ``name==version`` lines."""
    pins = {}
    for line in lock_text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            if not version:
                raise ValueError(f"requirements-lock.txt: {line!r} is not pinned with ==; run `make lock`.")
            pins[package_name(name)] = version.split(";", 1)[0].strip()
    return pins


def to_install(lock_text: str, environment_text: str,
               version_of: Callable[[str], str | None] = installed_version) -> list[str]:
    """The ``name==version`` pins this runtime lacks: each locked package not installed, and each package
    of environment.yml installed at a version outside its range."""
    pins = locked(lock_text)
    wanted = {}
    for spec in requirements(environment_text):
        if not spec.startswith("-e "):
            requirement = Requirement(spec)
            wanted[package_name(requirement.name)] = requirement.specifier
    missing = []
    for name, version in pins.items():
        have = version_of(name)
        if have is None or (name in wanted and not wanted[name].contains(have, prereleases=True)):
            missing.append(f"{name}=={version}")
    return missing


def setup(chapter: str) -> None:
    """Install what this runtime lacks and the helpers of this clone; choose lesson mode and the catalogue's
    Hugging Face mirror unless they are chosen already; run, in that mode, the chapters ``chapter`` reads from
    that have not run yet; work in the clone's ``notebooks/`` folder."""
    pins = to_install((REPO_ROOT / "requirements-lock.txt").read_text(), (REPO_ROOT / "environment.yml").read_text())
    pip = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile"]  # compiled on import
    if pins:
        print(f"Installing {len(pins)} packages at the versions of requirements-lock.txt", flush=True)
        _stream(pip + pins)
    _stream(pip + ["--editable", str(REPO_ROOT)])
    importlib.invalidate_caches()  # what was just installed can be imported without a restart
    mode = os.environ.setdefault("SERIES_MODE", "lesson")
    os.environ.setdefault("FASHION_CATALOGUE", "mirror")
    from helpers.paths import results_dir
    from helpers.runner import prerequisites

    earlier = [c for c in prerequisites(chapter) if not (results_dir(mode) / f"run_{c}.json").is_file()]
    if earlier:
        print(f"Chapter {chapter} reads what chapters {', '.join(earlier)} save: running them first.", flush=True)
        _stream([sys.executable, "-m", "helpers.runner", "--mode", mode, "--only", *earlier])
    os.chdir(REPO_ROOT / "notebooks")
    print(f"Ready: {mode} mode, the catalogue from {os.environ['FASHION_CATALOGUE']} (the next cell's `mode` "
          "chooses another mode).")


def _stream(command: list[str]) -> None:
    """Run ``command`` in the clone, showing its output in the notebook as it comes (a notebook shows only
    what the kernel prints, not what a child process writes)."""
    with subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            print(line, end="", flush=True)
    if process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
