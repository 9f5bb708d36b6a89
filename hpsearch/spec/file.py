"""A spec file: found by study name or path, read as UTF-8 YAML, validated into a StudySpec."""

from __future__ import annotations

from pathlib import Path

import yaml

from hpsearch.errors import SpecError, first_line
from hpsearch.spec.schema import StudySpec, parse_spec

SPEC_SUFFIXES = (".yaml", ".yml")


def load_spec_file(path: Path) -> StudySpec:
    try:
        text = path.read_text(encoding="utf-8")
    except IsADirectoryError:
        raise SpecError(f"spec {path} is a directory; name a .yaml file") from None
    except UnicodeDecodeError as e:
        raise SpecError(
            f"spec {path} is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
            "save it as UTF-8 YAML"
        ) from None
    except OSError as e:
        raise SpecError(f"cannot read spec {path}: {e.strerror}") from None
    if "\x00" in text:
        raise SpecError(f"spec {path} is a binary file, not YAML text; name a .yaml spec")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or first_line(e)
        raise SpecError(f"{path}:{where}: invalid YAML: {problem}") from None
    if data is None:
        raise SpecError(f"{path}: the spec is empty; see docs/spec.md for the keys a spec declares")
    return parse_spec(data, str(path))


def find_spec_file(study: str, studies_dir: Path) -> Path:
    """A spec is named by path (`my/spec.yaml`) or by name (`sentiment`: studies/sentiment.yaml)."""
    as_path = Path(study)
    if as_path.suffix in SPEC_SUFFIXES or as_path.is_file():
        if as_path.is_dir():
            raise SpecError(f"spec {study} is a directory; name a .yaml file")
        if not as_path.is_file():
            raise SpecError(f"spec file {study} does not exist")
        return as_path
    for suffix in SPEC_SUFFIXES:
        candidate = studies_dir / f"{study}{suffix}"
        if candidate.is_file():
            return candidate
    known = sorted(p.stem for p in studies_dir.glob("*.y*ml")) if studies_dir.is_dir() else []
    hint = f" (specs there: {', '.join(known)})" if known else ""
    raise SpecError(
        f"no spec for study {study!r}: {studies_dir / (study + '.yaml')} does not exist{hint}; "
        "create it, or pass the path of a spec file"
    )
