"""Derive pip requirements from environment.yml (standard library only, runs before installs).

    python3 helpers/envfile.py environment.yml > build/requirements.txt
    python3 helpers/envfile.py --third-party environment.yml > build/requirements.in   # for the lock

Conda packages become pip requirements with conda's single ``=`` turned into ``==``;
``python`` and ``pip`` are skipped; the ``pip:`` section is copied as it is (``--third-party`` leaves
out the ``-e .`` line that installs this repository's helpers, which the lock file does not pin).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

SKIP = {"python", "pip"}


def requirements(text: str) -> list[str]:
    out, in_deps = [], False
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip()
        if not line.strip():
            continue
        if not raw.startswith(" "):
            in_deps = line.startswith("dependencies:")
            continue
        item = line.strip()
        if not in_deps or not item.startswith("- ") or item.endswith(":"):
            continue
        spec = item[2:].strip()
        name = re.split(r"[<>=!~ ]", spec, maxsplit=1)[0]
        if name in SKIP:
            continue
        spec = re.sub(r"(?<![<>=!~])=(?!=)", "==", spec)
        out.append(spec)
    return out


def package_name(spec: str) -> str:
    """The normalised distribution name of a requirement line (``scikit-learn>=1.4`` -> ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", re.split(r"[<>=!~ \[;]", spec.strip(), maxsplit=1)[0]).lower()


if __name__ == "__main__":
    args = sys.argv[1:]
    third_party = "--third-party" in args
    args = [a for a in args if a != "--third-party"]
    path = Path(args[0] if args else "environment.yml")
    if not path.is_file():
        sys.exit(f"{path} not found: run from the repository root or pass the path.")
    specs = requirements(path.read_text())
    print("\n".join(s for s in specs if not (third_party and s.startswith("-e "))))
