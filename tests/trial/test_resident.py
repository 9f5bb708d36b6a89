"""A worker's loaded (model, max_length) pairs: each loaded once while kept, at most the bound."""

from __future__ import annotations

from hpsearch.spec import parse_spec
from hpsearch.trial import ResidentModels, load_for_training


def test_pairs_are_loaded_once_while_resident_and_the_least_recent_goes(tiny_spec, workdir):
    tiny_spec["dataset"]["max_length"] = {"choice": [16, 24, 32]}
    spec = parse_spec(tiny_spec, "t")
    loads = []

    def load(trial_spec):
        loads.append(trial_spec.dataset.max_length)
        return load_for_training(trial_spec)

    models = ResidentModels(2, load)
    at = {n: spec.for_trial({"max_length": n}) for n in (16, 24, 32)}
    first = models.get(at[16])
    # Each pair's data is tokenized to its own length.
    assert max(len(ids) for ids in first.data.train["input_ids"]) <= 16
    assert models.get(at[16]) is first
    models.get(at[24])
    models.get(at[16])  # 16 is now the most recently used: 24 goes when 32 comes
    models.get(at[32])
    assert len(models) == 2
    models.get(at[16])
    models.get(at[24])
    # 16 and 24 once each while kept, 32 once, 24 again after it was dropped.
    assert loads == [16, 24, 32, 24]
    assert max(len(ids) for ids in models.latest.data.train["input_ids"]) <= 24
