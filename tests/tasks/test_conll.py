"""CoNLL column files: sentences, separators, the tag column, malformed lines named by number."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.tasks.conll import read_conll


def read(path, tag_column: int = -1):
    return read_conll(path, "utf-8", tag_column, "tokens", "tags", "dataset.source")


def test_sentences_are_split_on_blank_and_whitespace_only_lines(tmp_path):
    path = tmp_path / "ner.txt"
    # WNUT-16 separates sentences with a lone tab; CoNLL-2003 with an empty line and DOCSTART lines.
    path.write_text(
        "-DOCSTART- -X- -X- O\n\nNew\tB-LOC\nYork\tI-LOC\n\t\nhi\tO\n   \nBob  B-PER\nruns O\n\n\n"
    )
    frame = read(path)
    assert frame["tokens"].tolist() == [["New", "York"], ["hi"], ["Bob", "runs"]]
    assert frame["tags"].tolist() == [["B-LOC", "I-LOC"], ["O"], ["B-PER", "O"]]


def test_the_tag_column_is_chosen_by_index(tmp_path):
    path = tmp_path / "conll2003.conll"
    path.write_text("EU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\nPeter NNP B-NP B-PER\n")
    # The last column by default; any other by its index (here the POS tags).
    assert read(path)["tags"].tolist() == [["B-ORG", "O"], ["B-PER"]]
    assert read(path, tag_column=1)["tags"].tolist() == [["NNP", "VBZ"], ["NNP"]]


def test_a_token_inside_a_tab_separated_line_may_hold_spaces(tmp_path):
    path = tmp_path / "spaces.txt"
    path.write_text("New York\tB-LOC\nrocks\tO\n")
    assert read(path)["tokens"].tolist() == [["New York", "rocks"]]


def test_a_malformed_line_is_named_by_file_and_number(tmp_path):
    path = tmp_path / "broken.txt"
    path.write_text("New\tB-LOC\nYork\tI-LOC\n\nlonely\n")
    with pytest.raises(SpecError) as caught:
        read(path)
    # The key, the file and line 4, the line itself, and what to do.
    message = caught.value.message
    assert message.startswith(f"dataset.source: {path}:4: expected a token and a tag")
    assert "found 'lonely'" in message and "tag_column" in message
    with pytest.raises(SpecError, match=r":1: expected a token and a tag \(column 3\)"):
        read(tmp_path / "broken.txt", tag_column=3)


def test_an_empty_file_holds_no_sentence(tmp_path):
    path = tmp_path / "empty.txt"
    path.write_text("\n\t\n\n")
    with pytest.raises(SpecError, match="holds no sentence"):
        read(path)


def test_a_file_in_another_encoding_says_which_to_set(tmp_path):
    path = tmp_path / "latin.txt"
    path.write_bytes("Jos\xe9\tB-PER\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"dataset.encoding: .* is not utf-8; set encoding:"):
        read(path)
    assert read_conll(path, "latin-1", -1, "tokens", "tags", "k")["tokens"].tolist() == [["José"]]
