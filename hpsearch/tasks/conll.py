"""CoNLL-style column files: one token per line with its columns, a blank line between sentences.

Columns are split on tabs when a line has one (tokens may then hold spaces), else on runs of
whitespace. A line holding only whitespace ends a sentence, as a blank one does (WNUT-16's
separators are a lone tab). `-DOCSTART-` lines (CoNLL-2003) are document breaks, not tokens.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from hpsearch.errors import SpecError

SUFFIXES = (".conll", ".txt", ".iob", ".bio")
DOCSTART = "-DOCSTART-"


def read_conll(
    path: Path, encoding: str, tag_column: int, tokens: str, tags: str, key: str
) -> pd.DataFrame:
    """Sentences as rows: a `tokens` column and a `tags` column, each a list of strings.

    `tag_column` is the index of the tag among a line's columns (negative counts from the end);
    the token is always the first column. A line without that column is an error naming the spec
    key (`key`), the file and the line number.
    """
    needed = tag_column + 1 if tag_column >= 0 else -tag_column
    needed = max(needed, 2)  # a token and a tag, at least
    sentences: list[tuple[list[str], list[str]]] = []
    words: list[str] = []
    labels: list[str] = []

    def end_sentence() -> None:
        if words:
            sentences.append((list(words), list(labels)))
            words.clear()
            labels.clear()

    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError:
        raise SpecError(
            f"dataset.encoding: {path} is not {encoding}; set encoding: to the file's encoding "
            "(latin-1, say)"
        ) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            end_sentence()
            continue
        columns = line.rstrip("\r\n").split("\t") if "\t" in line else line.split()
        columns = [c.strip() for c in columns]
        if columns[0] == DOCSTART:
            end_sentence()
            continue
        if len(columns) < needed or not columns[0] or not columns[tag_column]:
            raise SpecError(
                f"{key}: {path}:{number}: expected a token and a tag (column {tag_column}) "
                f"separated by a tab or spaces, found {line.strip()!r}; fix the line, or set "
                "dataset.tag_column to the tag's column"
            )
        words.append(columns[0])
        labels.append(columns[tag_column])
    end_sentence()
    if not sentences:
        raise SpecError(
            f"{key}: {path} holds no sentence (token and tag per line, blank lines between)"
        )
    return pd.DataFrame({tokens: [s[0] for s in sentences], tags: [s[1] for s in sentences]})
