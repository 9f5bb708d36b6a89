"""Before supervised workers start, the data is tokenized once for each model and max_length."""

from __future__ import annotations

from hpsearch.spec import parse_spec
from hpsearch.workers import warm_cache
from tests.tasks.tiny_models import build_tiny_bert


def test_every_model_and_max_length_pair_is_tokenized_once(tiny_spec, tmp_path, monkeypatch):
    # A second model with another tokenizer (2,000 pieces against MiniLM's 30,522).
    other = str(build_tiny_bert(tmp_path / "bert"))
    tiny_spec["model"] = {"choice": [tiny_spec["model"], other]}
    tiny_spec["dataset"]["max_length"] = {"choice": [16, 32]}
    cache = tmp_path / "cache"
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache))
    spec = parse_spec(tiny_spec, "t")
    warm_cache(spec)
    # Two models by two lengths: four entries, none shared.
    assert len(list(cache.glob("data-*"))) == 4
    warm_cache(spec)
    # A second warm-up finds them all.
    assert len(list(cache.glob("data-*"))) == 4
