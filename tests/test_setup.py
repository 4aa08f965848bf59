"""Set-up: the lock file matches environment.yml, and the README's commands are the Makefile's."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from packaging.requirements import Requirement

from helpers import colab, envfile
from helpers.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements-lock.txt"


def test_lock_pins_every_package_of_environment_yml_within_its_range():
    specs = [s for s in envfile.requirements((REPO_ROOT / "environment.yml").read_text()) if not s.startswith("-e ")]
    pins = colab.locked(LOCK.read_text())
    for spec in specs:
        requirement = Requirement(spec)
        name = envfile.package_name(requirement.name)
        assert name in pins, f"{name} is in environment.yml but not in requirements-lock.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {spec}"
    assert "tensorflow" in pins and "keras" in pins  # the lock holds the dependencies' dependencies too


LINUX_X86_64 = {"UNAME_S": "Linux", "UNAME_M": "x86_64", "PYTHON_MINOR": "3.11"}  # where the lock was made


def _make(target: str, **env: str) -> list[str]:
    """The commands ``make`` would run for ``target`` (always, as on a fresh machine), without -q, in an
    environment without MODE, SERIES_MODE and LOCK, on the platform of the lock unless ``env`` says otherwise."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("MODE", "SERIES_MODE", "LOCK")}, **LINUX_X86_64, **env}
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, env=env)
    return [re.sub(r" -q\b", "", line).strip() for line in out.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_readme_commands_without_make_are_the_makefile_s():
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("**Without `make`**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    documented = [line.strip() for line in block.strip().splitlines()]
    setup = [line for line in _make("setup") if not line.startswith(("touch", "mkdir", "echo"))
             and "sys.version_info" not in line]
    assert documented[:len(setup)] == setup
    lab = [line for line in _make("lab") if "jupyter lab" in line]  # the chapters' own default is lesson mode
    assert lab[-1] == f"SERIES_MODE=lesson {documented[len(setup)]}"
    series = [line for line in _make("series") if "helpers.runner" in line]
    assert documented[len(setup) + 1] == series[-1]
    tests = [line for line in _make("test") if "pytest" in line]
    assert documented[len(setup) + 2] == tests[-1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("env, mode", [({}, "full"), ({"SERIES_MODE": "lesson"}, "lesson"),
                                       ({"SERIES_MODE": "quick"}, "quick"),
                                       ({"SERIES_MODE": "lesson", "MODE": "quick"}, "quick")])
def test_make_series_runs_the_mode_series_mode_asks_for(env, mode):
    runner_line = [line for line in _make("series", **env) if "helpers.runner" in line][-1]
    assert runner_line.endswith(f"--mode {mode}")


def _installs(lines: list[str]) -> str:
    """Which requirements ``make setup`` installs: the lock or the ranges of environment.yml."""
    if any("-r requirements-lock.txt" in line for line in lines):
        return "lock"
    assert any("helpers/envfile.py environment.yml" in line for line in lines), lines
    return "ranges"


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("platform, expected", [
    ({}, "lock"),
    ({"UNAME_S": "Darwin", "UNAME_M": "arm64"}, "ranges"),
    ({"UNAME_S": "Darwin", "UNAME_M": "x86_64"}, "ranges"),
    ({"UNAME_S": "MINGW64_NT-10.0-19045"}, "ranges"),  # Git Bash on Windows
    ({"UNAME_M": "aarch64"}, "ranges"),
    ({"PYTHON_MINOR": "3.12"}, "ranges"),
    ({"UNAME_S": "Darwin", "UNAME_M": "arm64", "LOCK": "1"}, "lock"),  # asked for by name
    ({"LOCK": "0"}, "ranges"),
])
def test_make_setup_takes_the_lock_only_where_it_was_made(platform, expected):
    lines = _make("setup", **platform)
    assert _installs(lines) == expected
    said = next(line for line in lines if line.startswith("echo"))
    assert ("locked versions" in said) == (expected == "lock")  # it says which


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_on_this_machine_says_what_it_detected():
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", "setup"], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, env={k: v for k, v in os.environ.items() if k != "LOCK"}).stdout
    uname = subprocess.run(["uname", "-s", "-m"], capture_output=True, text=True, check=True).stdout.split()
    assert f"on {uname[0]} {uname[1]}, Python 3." in out


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("env, mode", [({}, "lesson"), ({"SERIES_MODE": "full"}, "full")])
def test_make_lab_opens_the_chapters_in_lesson_mode(env, mode):
    lab = [line for line in _make("lab", **env) if "jupyter lab" in line][-1]
    assert lab.startswith(f"SERIES_MODE={mode} ") and lab.endswith("notebooks/")


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_make_setup_refuses_a_python_the_series_does_not_support(tmp_path):
    fake = tmp_path / "python3.9"  # a Python that says it is 3.9 and can do nothing but -c
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = -c ] || exit 3\nexec {sys.executable} -c \"import sys; "
                    f"sys.version_info = (3, 9, 18); sys.version = '3.9.18'\n$2\"\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("LOCK", "PYTHON")}
    out = subprocess.run(["make", "--no-print-directory", "-B", "setup", f"PYTHON={fake}", f"VENV={tmp_path}/venv"],
                         cwd=REPO_ROOT, capture_output=True, text=True, env=env)
    assert out.returncode != 0 and "needs Python 3.10 to 3.12" in out.stderr
    assert not (tmp_path / "venv").exists()
