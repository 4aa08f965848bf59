"""Set-up: the lock file matches environment.yml, and the README's commands are the Makefile's."""

import os
import re
import shutil
import subprocess

import pytest
from packaging.requirements import Requirement

from helpers import envfile
from helpers.paths import REPO_ROOT

LOCK = REPO_ROOT / "requirements-lock.txt"


def locked() -> dict[str, str]:
    pins = {}
    for line in LOCK.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements-lock.txt: {line!r} is not pinned with =="
            pins[envfile.package_name(name)] = version
    return pins


def test_lock_pins_every_package_of_environment_yml_within_its_range():
    specs = [s for s in envfile.requirements((REPO_ROOT / "environment.yml").read_text()) if not s.startswith("-e ")]
    pins = locked()
    for spec in specs:
        requirement = Requirement(spec)
        name = envfile.package_name(requirement.name)
        assert name in pins, f"{name} is in environment.yml but not in requirements-lock.txt: run `make lock`"
        assert requirement.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {spec}"
    assert "tensorflow" in pins and "keras" in pins  # the lock holds the dependencies' dependencies too


def _make(target: str, **env: str) -> list[str]:
    """The commands ``make`` would run for ``target`` (always, as on a fresh machine), without -q, in an
    environment without MODE and SERIES_MODE unless ``env`` sets them."""
    env = {**{k: v for k, v in os.environ.items() if k not in ("MODE", "SERIES_MODE")}, **env}
    out = subprocess.run(["make", "--no-print-directory", "-n", "-B", target], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True, env=env)
    return [re.sub(r" -q\b", "", line).strip() for line in out.stdout.splitlines()]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
def test_readme_commands_without_make_are_the_makefile_s():
    readme = (REPO_ROOT / "README.md").read_text()
    block = readme.split("**Without `make`**", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    documented = [line.strip() for line in block.strip().splitlines()]
    setup = [line for line in _make("setup") if not line.startswith(("touch", "mkdir"))]
    assert documented[:len(setup)] == setup
    series = [line for line in _make("series") if "helpers.runner" in line]
    assert documented[len(setup)] == series[-1]
    tests = [line for line in _make("test") if "pytest" in line]
    assert documented[len(setup) + 1] == tests[-1]


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.parametrize("env, mode", [({}, "full"), ({"SERIES_MODE": "lesson"}, "lesson"),
                                       ({"SERIES_MODE": "quick"}, "quick"),
                                       ({"SERIES_MODE": "lesson", "MODE": "quick"}, "quick")])
def test_make_series_runs_the_mode_series_mode_asks_for(env, mode):
    runner_line = [line for line in _make("series", **env) if "helpers.runner" in line][-1]
    assert runner_line.endswith(f"--mode {mode}")
