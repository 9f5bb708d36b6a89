"""README.md is a short tour and docs/ holds the reference: the links between them must hold.

Every relative link in README.md and docs/*.md names a file that exists, and a link to a heading
(`page.md#heading`) names a heading that page has, by GitHub's rule for heading anchors. The pages
other branches add (PENDING_PAGES) may be linked before they land.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

# Linked from README's reference list and written on their own branches; drop a name once its
# page is in docs/.
PENDING_PAGES: set[str] = set()

LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
INLINE_CODE = re.compile(r"`[^`\n]*`")


def prose(text: str) -> str:
    """The text outside code blocks and inline code, where a `[x](y)` is not a link."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens."""
    text = heading.replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a page (GitHub numbers repeated ones: name, name-1, ...)."""
    seen: dict[str, int] = {}
    found = set()
    for line in FENCE.sub("", page.read_text()).splitlines():
        match = re.match(r"#{1,6} +(.*)", line)
        if not match:
            continue
        name = anchor(match.group(1))
        count = seen.get(name, 0)
        seen[name] = count + 1
        found.add(name if count == 0 else f"{name}-{count}")
    return found


def relative_links(page: Path) -> list[str]:
    targets = LINK.findall(prose(page.read_text()))
    return [t for t in targets if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


def test_every_page_has_links_to_check():
    # README's reference list alone links every page of docs/; an empty list means the pattern
    # broke, and the test below would pass on nothing.
    readme_targets = {t.split("#")[0] for t in relative_links(REPO / "README.md")}
    for page in PAGES[1:]:
        assert f"docs/{page.name}" in readme_targets, f"README.md does not link docs/{page.name}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_point_at_files_and_headings_that_exist(page):
    broken = []
    for target in relative_links(page):
        path, _, fragment = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        name = file.relative_to(REPO).as_posix() if file.is_relative_to(REPO) else str(file)
        if not file.exists():
            if name not in PENDING_PAGES:
                broken.append(f"{target}: no file {name}")
            continue
        if fragment and file.suffix == ".md" and fragment not in anchors(file):
            broken.append(f"{target}: {name} has no heading with anchor #{fragment}")
    # Each broken link is named with what is missing.
    assert not broken, "\n".join(broken)


def test_anchor_follows_github():
    # The rule the anchors above are checked by, on headings of these pages.
    assert anchor("Checkpoints: a lost trial loses at most one evaluation") == (
        "checkpoints-a-lost-trial-loses-at-most-one-evaluation"
    )
    assert anchor("Searching the base model and max_length") == (
        "searching-the-base-model-and-max_length"
    )
    assert anchor("`create` and `worker`") == "create-and-worker"
