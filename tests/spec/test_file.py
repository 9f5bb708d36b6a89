"""Spec files: found by name or path, read as UTF-8 YAML; a file that is not one: one error."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import find_spec_file, load_spec_file


def test_non_mapping_and_empty_and_bad_yaml(tmp_path):
    listed = tmp_path / "list.yaml"
    listed.write_text("- model\n- dataset\n")
    empty = tmp_path / "empty.yaml"
    empty.write_text("# nothing\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: [unclosed\n")
    # Each file is rejected with its name and what is wrong with it.
    with pytest.raises(SpecError, match=r"list.yaml: expected a mapping of keys"):
        load_spec_file(listed)
    with pytest.raises(SpecError, match=r"empty.yaml: the spec is empty"):
        load_spec_file(empty)
    with pytest.raises(SpecError, match=r"broken.yaml: line \d+: invalid YAML"):
        load_spec_file(broken)


def test_find_spec_by_name_or_path(tmp_path):
    studies = tmp_path / "studies"
    studies.mkdir()
    (studies / "sentiment.yaml").write_text("x: 1\n")
    # A name is looked up in studies/; a path is used as it is.
    assert find_spec_file("sentiment", studies) == studies / "sentiment.yaml"
    assert find_spec_file(str(studies / "sentiment.yaml"), studies) == studies / "sentiment.yaml"
    with pytest.raises(SpecError, match=r"no spec for study 'other'.*specs there: sentiment"):
        find_spec_file("other", studies)
    with pytest.raises(SpecError, match=r"spec file missing.yaml does not exist"):
        find_spec_file("missing.yaml", studies)


def test_a_spec_that_is_not_utf8_text_is_named_with_the_fix(tmp_path):
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes("model: café\n".encode("latin-1"))
    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe")
    nul = tmp_path / "nul.yaml"
    nul.write_bytes(b"model: x\x00\x00\n")
    # Each is a SpecError (one line, exit 2 at the CLI), not a UnicodeDecodeError.
    with pytest.raises(
        SpecError,
        match=r"latin1.yaml is not UTF-8 text \(byte 0xe9 at offset 10\); save it as UTF-8 YAML",
    ):
        load_spec_file(latin1)
    with pytest.raises(SpecError, match=r"binary.yaml is not UTF-8 text"):
        load_spec_file(binary)
    with pytest.raises(SpecError, match=r"nul.yaml is a binary file, not YAML text"):
        load_spec_file(nul)
    with pytest.raises(SpecError, match=r"is a directory; name a .yaml file"):
        load_spec_file(tmp_path)
