"""Derive pip requirements from environment.yml (standard library only, runs before installs).

    python3 helpers/envfile.py environment.yml > build/requirements.txt

Conda packages become pip requirements with conda's single ``=`` turned into ``==``;
``python`` and ``pip`` are skipped; the ``pip:`` section is copied as it is.
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


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "environment.yml")
    if not path.is_file():
        sys.exit(f"{path} not found: run from the repository root or pass the path.")
    print("\n".join(requirements(path.read_text())))
