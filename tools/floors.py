"""Print a pip constraints file that pins every direct dependency of pyproject.toml to its floor.

`name>=X` becomes `name==X` (extras dropped: constraints name packages); torch is left out, since
`make` installs its CPU build first. With uv's lowest-direct resolution alone, a package another
one pulls in at a newer version (filelock with torch, click with huggingface-hub) would not be
tested at its floor; with these pins, a floor that cannot be installed fails the install instead.

    python tools/floors.py pyproject.toml > floors.txt
"""

from __future__ import annotations

import re
import sys

import tomllib

FLOOR = re.compile(r"^(?P<name>[A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*(?P<version>[^,;\s]+)$")


def floors(pyproject: dict) -> list[str]:
    project = pyproject["project"]
    requirements = [
        *project["dependencies"],
        *(r for extra in project.get("optional-dependencies", {}).values() for r in extra),
    ]
    pins = set()
    for requirement in requirements:
        match = FLOOR.match(requirement.strip())
        if match is None:
            raise SystemExit(f"tools/floors.py: {requirement!r} is not of the form name>=version")
        if match["name"].lower() != "torch":
            pins.add(f"{match['name']}=={match['version']}")
    return sorted(pins, key=str.lower)


if __name__ == "__main__":
    with open(sys.argv[1], "rb") as file:
        print("\n".join(floors(tomllib.load(file))))
