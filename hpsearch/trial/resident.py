"""What a worker keeps loaded between trials when the spec searches its model or max_length.

A trial of a searched model or max_length trains with its own tokenizer, tokenized data and model
factory (hpsearch.trial.load): the pair it drew is loaded on first use (the data from the disk
cache, keyed by tokenizer and max_length) and kept for the worker's next trials, up to
`resources.resident_models` pairs, the least recently used dropped first. A factory holds no
weights (they are mapped per trial), so what stays resident is a tokenizer, a config and the
memory-mapped data of each pair.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from hpsearch.spec import StudySpec
from hpsearch.trial.load import Loaded, load_for_training


class ResidentModels:
    """The loaded (model, max_length) pairs of one worker, the `limit` most recently used."""

    def __init__(self, limit: int, load: Callable[[StudySpec], Loaded] = load_for_training):
        self.limit = limit
        self.load = load
        self._loaded: OrderedDict[tuple[str, int], Loaded] = OrderedDict()

    def get(self, spec: StudySpec) -> Loaded:
        """What `spec` (a trial's, StudySpec.for_trial) trains with; loaded now if not kept."""
        key = (spec.model, spec.dataset.max_length)
        if key in self._loaded:
            self._loaded.move_to_end(key)
            return self._loaded[key]
        loaded = self.load(spec)
        self._loaded[key] = loaded
        while len(self._loaded) > self.limit:
            self._loaded.popitem(last=False)
        return loaded

    @property
    def latest(self) -> Loaded:
        """The pair loaded or used last (a fixed spec's only one)."""
        return next(reversed(self._loaded.values()))

    def __len__(self) -> int:
        return len(self._loaded)
