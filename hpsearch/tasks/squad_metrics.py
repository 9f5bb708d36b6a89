"""SQuAD's exact match and F1, computed as the official evaluation scripts compute them.

`evaluate` would download its `squad`/`squad_v2` metric scripts at run time, so the logic of the
official scripts (SQuAD v1.1 `evaluate-v1.1.py`, SQuAD v2.0 `evaluate-v2.0.py`) is written out
here, function for function, and tested on cases whose official values are worked by hand.

The two scripts differ in small ways that are kept: v1.1 scores an empty prediction against an
empty gold as F1 0 (v2.0: 1), and v2.0 drops gold answers that normalise to nothing and treats a
question without answers as having the one gold answer "". Scores are percentages (0-100) as the
scripts print them. Both scripts differ on a question without a prediction (v1.1 counts it as 0,
v2.0 leaves it out of the total); here every question needs a prediction, so a missing one is an
error in the caller.

Gold answers are given per question id as the list of answer texts (SQuAD's `answers["text"]`),
predictions per question id as one text ("" for "no answer").
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b", re.UNICODE)
_PUNCTUATION = set(string.punctuation)


def normalize_answer(text: str) -> str:
    """Lower case, punctuation removed, articles (a, an, the) removed, whitespace collapsed: in
    the official order (lower, punctuation, articles, whitespace)."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def answer_tokens(text: str) -> list[str]:
    return normalize_answer(text).split() if text else []


def exact_match(gold: str, prediction: str) -> int:
    return int(normalize_answer(gold) == normalize_answer(prediction))


def token_f1(gold: str, prediction: str, *, empty_agrees: bool = True) -> float:
    """Harmonic mean of token precision and recall, tokens counted with multiplicity.

    When either side has no tokens, v2.0 gives 1 if both are empty and 0 otherwise
    (`empty_agrees=True`); v1.1 gives 0 (`empty_agrees=False`)."""
    gold_tokens = answer_tokens(gold)
    predicted_tokens = answer_tokens(prediction)
    if empty_agrees and (not gold_tokens or not predicted_tokens):
        return float(gold_tokens == predicted_tokens)
    n_same = sum((Counter(gold_tokens) & Counter(predicted_tokens)).values())
    if n_same == 0:
        return 0.0
    precision = n_same / len(predicted_tokens)
    recall = n_same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def score_v1(
    golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> dict[str, float]:
    """SQuAD v1.1: `exact_match` and `f1`, each the best over a question's gold answers, averaged
    over the questions (0-100). Every question needs at least one gold answer."""
    _check_predictions(golds, predictions)
    unanswerable = [qid for qid, answers in golds.items() if not answers]
    if unanswerable:
        raise ValueError(
            f"SQuAD v1.1 needs a gold answer for every question; {len(unanswerable)} have none "
            f"(first: {unanswerable[0]!r}); score them with score_v2"
        )
    exact, f1 = per_question_v1(golds, predictions)
    return {
        "exact_match": 100.0 * sum(exact.values()) / len(golds),
        "f1": 100.0 * sum(f1.values()) / len(golds),
    }


def per_question_v1(
    golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each question's exact match and F1 (0 or 1, and 0-1) under v1.1's rules."""
    exact = {
        qid: float(max(exact_match(g, predictions[qid]) for g in answers))
        for qid, answers in golds.items()
    }
    f1 = {
        qid: max(token_f1(g, predictions[qid], empty_agrees=False) for g in answers)
        for qid, answers in golds.items()
    }
    return exact, f1


def per_question_v2(
    golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    """Each question's exact match and F1 under v2.0's rules (`get_raw_scores`): gold answers that
    normalise to nothing are dropped, and a question left without any has the gold answer ""."""
    exact, f1 = {}, {}
    for qid, answers in golds.items():
        kept = [a for a in answers if normalize_answer(a)] or [""]
        exact[qid] = float(max(exact_match(a, predictions[qid]) for a in kept))
        f1[qid] = max(token_f1(a, predictions[qid]) for a in kept)
    return exact, f1


def score_v2(
    golds: Mapping[str, Sequence[str]],
    predictions: Mapping[str, str],
    *,
    null_odds: Mapping[str, float] | None = None,
    no_answer_threshold: float | None = None,
) -> dict[str, float]:
    """SQuAD v2.0: `exact`, `f1` and `total` over all questions, the same prefixed `HasAns_` and
    `NoAns_` over the answerable and unanswerable ones (when there are any), and with `null_odds`
    (per question, higher = more likely unanswerable: a probability, or the null score minus the
    best span's score) `best_exact`, `best_f1` and the thresholds on the odds that reach them.

    The predictions are scored as given. `no_answer_threshold` applies the script's
    `--na-prob-thresh` first (a question whose odds exceed it counts as answered "no answer");
    the script's default of 1.0 is meant for probabilities, so it is not applied unless asked.
    """
    _check_predictions(golds, predictions)
    exact_raw, f1_raw = per_question_v2(golds, predictions)
    has_answer = {qid: bool(answers) for qid, answers in golds.items()}
    exact, f1 = exact_raw, f1_raw
    if no_answer_threshold is not None:
        odds = _odds_for(golds, null_odds)
        exact = _apply_no_answer_threshold(exact_raw, odds, has_answer, no_answer_threshold)
        f1 = _apply_no_answer_threshold(f1_raw, odds, has_answer, no_answer_threshold)
    result = _summary(exact, f1, list(golds))
    for prefix, wanted in (("HasAns", True), ("NoAns", False)):
        qids = [qid for qid, has in has_answer.items() if has is wanted]
        if qids:
            result.update({f"{prefix}_{k}": v for k, v in _summary(exact, f1, qids).items()})
    if null_odds is not None:
        odds = _odds_for(golds, null_odds)
        for name, raw in (("exact", exact_raw), ("f1", f1_raw)):
            best, threshold = find_best_threshold(predictions, raw, odds, has_answer)
            result[f"best_{name}"] = best
            result[f"best_{name}_thresh"] = threshold
    return result


def find_best_threshold(
    predictions: Mapping[str, str],
    scores: Mapping[str, float],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
) -> tuple[float, float]:
    """The best score (0-100) reachable by answering "no answer" to every question whose odds
    exceed a threshold, and that threshold: the official `find_best_thresh`.

    It starts from "no answer" everywhere (every unanswerable question right) and lowers the
    threshold past one question at a time, in increasing order of odds: an answerable question
    then gains its score, an unanswerable one loses 1 if it was answered. Ties in the odds are
    passed one question at a time, in the order of `null_odds`, as the script's stable sort does.
    """
    current = sum(1 for has in has_answer.values() if not has)
    best, best_threshold = current, 0.0
    for qid in sorted(null_odds, key=lambda q: null_odds[q]):
        if qid not in scores:
            continue
        if has_answer[qid]:
            current += scores[qid]
        elif predictions[qid]:
            current -= 1
        if current > best:
            best, best_threshold = current, null_odds[qid]
    return 100.0 * best / len(scores), best_threshold


def bootstrap_interval(
    per_question: Mapping[str, float] | Sequence[float],
    *,
    rounds: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The `level` percentile bootstrap interval of the mean of per-question scores (as
    `per_question_v2` gives them), in percent: questions resampled with replacement, seeded, as
    hpsearch/trial/interval.py resamples eval examples."""
    values = np.asarray(
        list(per_question.values()) if isinstance(per_question, Mapping) else per_question,
        dtype=float,
    )
    if values.size == 0:
        raise ValueError("bootstrap_interval needs at least one question's score")
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, values.size, size=(rounds, values.size))].mean(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(100.0 * means, [tail, 100 - tail])
    return float(low), float(high)


def _summary(
    exact: Mapping[str, float], f1: Mapping[str, float], qids: Sequence[str]
) -> dict[str, float]:
    return {
        "exact": 100.0 * sum(exact[q] for q in qids) / len(qids),
        "f1": 100.0 * sum(f1[q] for q in qids) / len(qids),
        "total": len(qids),
    }


def _apply_no_answer_threshold(
    scores: Mapping[str, float],
    null_odds: Mapping[str, float],
    has_answer: Mapping[str, bool],
    threshold: float,
) -> dict[str, float]:
    return {
        qid: float(not has_answer[qid]) if null_odds[qid] > threshold else score
        for qid, score in scores.items()
    }


def _odds_for(
    golds: Mapping[str, Sequence[str]], null_odds: Mapping[str, float] | None
) -> dict[str, float]:
    """The odds of every question: the script's default is 0.0 when no odds are given."""
    if null_odds is None:
        return dict.fromkeys(golds, 0.0)
    missing = [qid for qid in golds if qid not in null_odds]
    if missing:
        raise ValueError(f"null_odds lacks {len(missing)} question(s) (first: {missing[0]!r})")
    return {qid: float(null_odds[qid]) for qid in golds}


def _check_predictions(golds: Mapping[str, Sequence[str]], predictions: Mapping[str, str]) -> None:
    if not golds:
        raise ValueError("no questions to score")
    missing = [qid for qid in golds if qid not in predictions]
    if missing:
        raise ValueError(
            f"no prediction for {len(missing)} question(s) (first: {missing[0]!r}); "
            'predict "" for "no answer"'
        )
