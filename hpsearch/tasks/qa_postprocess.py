"""From a QA model's start and end logits to one answer text per example, over the whole eval set.

A long context is cut into several features (windows `doc_stride` tokens apart), so an example's
answer is the best span found in any of its features. The logic is that of the transformers
question-answering example (`postprocess_qa_predictions` in examples/pytorch/question-answering/
utils_qa.py): in each feature the `n_best` highest start logits are paired with the `n_best`
highest end logits; a pair is kept when both tokens lie in the context (their offset is not None),
the end is not before the start, and the span is at most `max_answer_length` tokens; its score is
start logit + end logit, and its text the context between the two tokens' character offsets.

With `with_null` (SQuAD v2: questions may have no answer) the null score of a feature is its CLS
token's start + end logit (token 0), the smallest over the example's features is the example's, and
the answer is "" when the null score exceeds the best span's score by more than `null_threshold`.
That difference is the example's null odds (squad_metrics.score_v2's `null_odds`, whose best
threshold can then be used as `null_threshold`).

One departure: where no span is valid the answer is "" (the transformers example answers the
text "empty"), and the null odds are +inf.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

Offset = Sequence[int] | None
NULL_TOKEN = 0  # the CLS token, where a SQuAD v2 model points for "no answer"


@dataclass(frozen=True)
class Candidate:
    """A span of the context: its text, where it starts, and start logit + end logit."""

    text: str
    start: int
    score: float


@dataclass
class QaPredictions:
    """Per example id: the answer ("" for none), the best candidates, and with `with_null` the
    null odds (null score minus the best span's score; +inf when no span is valid)."""

    answers: dict[str, str] = field(default_factory=dict)
    n_best: dict[str, list[Candidate]] = field(default_factory=dict)
    null_odds: dict[str, float] = field(default_factory=dict)


def postprocess_predictions(
    contexts: Mapping[str, str],
    feature_example_ids: Sequence[str],
    offset_mappings: Sequence[Sequence[Offset]],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    *,
    n_best: int = 20,
    max_answer_length: int = 30,
    with_null: bool = False,
    null_threshold: float = 0.0,
) -> QaPredictions:
    """Answers for every example of `contexts` (id -> context text), in its order.

    Feature i belongs to example `feature_example_ids[i]`; `offset_mappings[i]` gives each of its
    tokens' (start, end) characters in that context, None for tokens outside the context (question,
    special tokens, padding), as the transformers example's prepare_validation_features sets them.
    `start_logits` and `end_logits` are (features, tokens); logits past a feature's offsets (padding
    added when batches of different lengths were joined) are ignored.
    """
    if len(feature_example_ids) != len(offset_mappings) or len(offset_mappings) != len(
        start_logits
    ):
        raise ValueError(
            f"{len(feature_example_ids)} example ids, {len(offset_mappings)} offset mappings and "
            f"{len(start_logits)} rows of logits: there must be one of each per feature"
        )
    features_of: dict[str, list[int]] = {example_id: [] for example_id in contexts}
    for index, example_id in enumerate(feature_example_ids):
        if example_id not in features_of:
            raise ValueError(f"feature {index} belongs to example {example_id!r}, not in contexts")
        features_of[example_id].append(index)

    result = QaPredictions()
    for example_id, context in contexts.items():
        candidates: list[Candidate] = []
        null_score = None
        for index in features_of[example_id]:
            starts, ends = np.asarray(start_logits[index]), np.asarray(end_logits[index])
            feature_null = float(starts[NULL_TOKEN] + ends[NULL_TOKEN])
            if null_score is None or feature_null < null_score:
                null_score = feature_null
            candidates += feature_candidates(
                context, offset_mappings[index], starts, ends, n_best, max_answer_length
            )
        candidates.sort(key=lambda c: c.score, reverse=True)
        best = candidates[:n_best]
        result.n_best[example_id] = best
        answer = best[0].text if best else ""
        if with_null:
            odds = null_score - best[0].score if best and null_score is not None else np.inf
            result.null_odds[example_id] = float(odds)
            if odds > null_threshold:
                answer = ""
        result.answers[example_id] = answer
    return result


def feature_candidates(
    context: str,
    offsets: Sequence[Offset],
    start_logits: np.ndarray,
    end_logits: np.ndarray,
    n_best: int,
    max_answer_length: int,
) -> list[Candidate]:
    """The valid spans among one feature's `n_best` best starts x `n_best` best ends."""
    best_starts = np.argsort(start_logits)[::-1][:n_best]
    best_ends = np.argsort(end_logits)[::-1][:n_best]
    candidates = []
    for start in best_starts:
        for end in best_ends:
            if start >= len(offsets) or end >= len(offsets):
                continue
            if offsets[start] is None or offsets[end] is None:
                continue
            if end < start or end - start + 1 > max_answer_length:
                continue
            first, last = int(offsets[start][0]), int(offsets[end][1])
            text = context[first:last]
            if text:
                score = float(start_logits[start] + end_logits[end])
                candidates.append(Candidate(text=text, start=first, score=score))
    return candidates
