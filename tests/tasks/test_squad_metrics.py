"""SQuAD metrics against values worked by hand the way the official scripts compute them.

Each expected value is derived in a comment from the scripts' steps: normalise (lower, drop
punctuation, drop the articles a/an/the, collapse whitespace), exact match of the normal forms,
token F1 with tokens counted with multiplicity, the best over the gold answers, the mean x 100.
"""

from __future__ import annotations

import pytest

from hpsearch.tasks.squad_metrics import (
    bootstrap_interval,
    exact_match,
    find_best_threshold,
    normalize_answer,
    per_question_v2,
    score_v1,
    score_v2,
    token_f1,
)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        # "the  eiffel tower!" -> "the  eiffel tower" -> "  eiffel tower" -> "eiffel tower"
        ("The  Eiffel Tower!", "eiffel tower"),
        # the hyphen goes before the article rule runs: "an applepie" -> "applepie"
        ("An apple-pie", "applepie"),
        # "a" and "the" inside words are not articles
        ("Theatre of a tHe Anagram", "theatre of anagram"),
        # punctuation goes first, so "A.B." is the word "ab", not the article "a"
        ("A.B.", "ab"),
        ("", ""),
    ],
)
def test_normalize_answer_follows_the_official_steps(text, normal):
    assert normalize_answer(text) == normal


def test_token_f1_counts_tokens_with_multiplicity():
    # gold [new, york, new, york], prediction [new, york]: overlap 2, P = 2/2, R = 2/4, F1 = 2/3
    assert token_f1("New York, New York", "new york") == pytest.approx(2 / 3)
    # gold [new, york], prediction [new, new, new]: overlap 1, P = 1/3, R = 1/2,
    # F1 = 2 * (1/6) / (5/6) = 0.4
    assert token_f1("New York", "new new new") == pytest.approx(0.4)
    # no shared token: 0
    assert token_f1("Denver", "Carolina") == 0.0


def test_empty_answers_score_differently_in_v1_and_v2():
    # v2.0: both sides empty agree (F1 1); one side empty disagrees (0)
    assert token_f1("", "") == 1.0
    assert token_f1("Denver", "") == 0.0
    # v1.1: no shared token is 0, even when both are empty
    assert token_f1("", "", empty_agrees=False) == 0.0
    # exact match compares normal forms: "" == "", and "The" normalises to ""
    assert exact_match("", "") == 1
    assert exact_match("The", "") == 1


def test_v1_takes_the_best_gold_answer_and_averages_in_percent():
    golds = {
        "q1": ["Denver Broncos", "The Denver Broncos"],
        "q2": ["Santa Clara, California"],
        "q3": ["1,000"],
        "q4": ["Paris", "in Paris"],
    }
    predictions = {"q1": "the Broncos", "q2": "Santa Clara", "q3": "1000", "q4": "in paris."}
    # q1: "broncos" vs "denver broncos": EM 0; overlap 1, P 1, R 1/2, F1 2/3 (both golds)
    # q2: "santa clara" vs "santa clara california": EM 0; overlap 2, P 1, R 2/3, F1 0.8
    # q3: "1000" == "1000": EM 1, F1 1
    # q4: "in paris" equals the second gold: EM 1, F1 1 (the first gives only F1 2/3)
    # exact_match = 100 * 2/4 = 50; f1 = 100 * (2/3 + 0.8 + 1 + 1) / 4 = 86.666...
    scores = score_v1(golds, predictions)
    assert scores["exact_match"] == pytest.approx(50.0)
    assert scores["f1"] == pytest.approx(100 * (2 / 3 + 0.8 + 1 + 1) / 4)


def test_v1_refuses_questions_without_gold_and_missing_predictions():
    # a v1.1 question must have a gold answer: the message points to v2
    with pytest.raises(ValueError, match="score_v2"):
        score_v1({"q": []}, {"q": ""})
    # every question needs a prediction; the message names the first missing one
    with pytest.raises(ValueError, match="'q2'"):
        score_v1({"q1": ["a b"], "q2": ["c"]}, {"q1": "a b"})


GOLDS_V2 = {"a": ["Broncos"], "b": [], "c": [], "d": ["Denver"]}
PREDICTIONS_V2 = {"a": "Broncos", "b": "", "c": "Denver", "d": ""}
ODDS_V2 = {"a": 0.1, "b": 0.9, "c": 0.2, "d": 0.5}


def test_v2_splits_answerable_and_unanswerable_questions():
    # a: EM 1, F1 1. b: no answer, gold [""], prediction "": EM 1, F1 1 (both empty).
    # c: no answer, predicted "Denver": EM 0, F1 0. d: gold "Denver", predicted "": EM 0, F1 0.
    # all: 100 * 2/4 = 50; HasAns (a, d): 50; NoAns (b, c): 50
    scores = score_v2(GOLDS_V2, PREDICTIONS_V2)
    assert scores == {
        "exact": 50.0,
        "f1": 50.0,
        "total": 4,
        "HasAns_exact": 50.0,
        "HasAns_f1": 50.0,
        "HasAns_total": 2,
        "NoAns_exact": 50.0,
        "NoAns_f1": 50.0,
        "NoAns_total": 2,
    }


def test_v2_best_threshold_on_the_null_odds():
    # find_best_thresh: start with "no answer" everywhere: 2 right (b, c); best 2 at 0.0.
    # odds ascending: a 0.1 (answerable, +1 -> 3, best, threshold 0.1), c 0.2 (unanswerable and
    # answered: -1 -> 2), d 0.5 (answerable, score 0 -> 2), b 0.9 (predicted "": +0 -> 2).
    # best_exact = best_f1 = 100 * 3/4 = 75 at threshold 0.1
    scores = score_v2(GOLDS_V2, PREDICTIONS_V2, null_odds=ODDS_V2)
    assert scores["best_exact"] == 75.0
    assert scores["best_exact_thresh"] == 0.1
    assert scores["best_f1"] == 75.0
    assert scores["best_f1_thresh"] == 0.1
    # the main scores are the predictions as given
    assert scores["exact"] == 50.0


def test_v2_best_f1_threshold_can_differ_from_best_exact():
    golds = {"n": [], "p1": ["Broncos"], "p2": ["Santa Clara California"]}
    predictions = {"n": "x", "p1": "Broncos", "p2": "Santa Clara"}
    odds = {"n": 0.1, "p1": 0.2, "p2": 0.3}
    # start: 1 (n right by "no answer"). n 0.1: answered but unanswerable, -1 -> 0.
    # p1 0.2: +1 -> 1 (not above the best 1). p2 0.3: exact +0 -> 1; F1 +0.8 -> 1.8, best.
    # best_exact = 100 * 1/3 at 0.0; best_f1 = 100 * 1.8/3 = 60 at 0.3
    scores = score_v2(golds, predictions, null_odds=odds)
    assert scores["best_exact"] == pytest.approx(100 / 3)
    assert scores["best_exact_thresh"] == 0.0
    assert scores["best_f1"] == pytest.approx(60.0)
    assert scores["best_f1_thresh"] == 0.3


def test_v2_no_answer_threshold_applies_the_scripts_na_prob_thresh():
    # odds above 0.15: b, c, d count as "no answer": b right (1), c right (1), d wrong (0); a 1.
    # exact = f1 = 100 * 3/4 = 75, the best found above at 0.1
    scores = score_v2(GOLDS_V2, PREDICTIONS_V2, null_odds=ODDS_V2, no_answer_threshold=0.15)
    assert scores["exact"] == 75.0
    assert scores["f1"] == 75.0
    assert scores["NoAns_exact"] == 100.0


def test_v2_gold_answers_that_normalise_to_nothing_become_no_answer():
    # both golds normalise to "": the gold is [""], so "" is right; the question still counts as
    # answerable (it has answers), as in the script's qid_to_has_ans
    exact, f1 = per_question_v2({"q": ["The", "a"]}, {"q": ""})
    assert exact == {"q": 1.0}
    assert f1 == {"q": 1.0}
    assert score_v2({"q": ["The"]}, {"q": ""})["HasAns_total"] == 1


def test_find_best_threshold_keeps_zero_when_nothing_beats_no_answer():
    # two unanswerable questions, both answered: "no answer" everywhere (2/2) is best, at 0.0
    best, threshold = find_best_threshold(
        {"x": "a", "y": "b"}, {"x": 0.0, "y": 0.0}, {"x": 1.0, "y": 2.0}, {"x": False, "y": False}
    )
    assert (best, threshold) == (100.0, 0.0)


def test_bootstrap_interval_is_seeded_and_brackets_the_mean():
    scores = [1.0] * 30 + [0.0] * 70
    low, high = bootstrap_interval(scores, seed=3)
    # the mean 30% lies inside, and the same seed gives the same interval
    assert low < 30.0 < high
    assert (low, high) == bootstrap_interval(scores, seed=3)
    # identical scores leave nothing to vary
    assert bootstrap_interval({"a": 1.0, "b": 1.0}) == (100.0, 100.0)
