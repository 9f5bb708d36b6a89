"""Extractive question answering (SQuAD): a context, a question, and the answer as a span of it.

A context longer than max_length is cut into windows (features) `doc_stride` tokens of overlap
apart, as the transformers question-answering example does; a feature is trained to point at the
answer's first and last tokens, or at the CLS token where its window does not hold the answer
(and for an unanswerable question, SQuAD v2). Each feature keeps its example's id, its tokens'
character offsets in the context, the context and the gold answers for the evaluation alone
(Task.metadata_columns): evaluation turns the start and end logits of an example's features into
one answer (qa_postprocess) and scores the answers with the official SQuAD rules (squad_metrics),
so the metrics and their bootstrap interval are over examples, not features.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.tasks.base import DatasetBase, Direction, LengthChoice, Task
from hpsearch.tasks.qa_postprocess import postprocess_predictions
from hpsearch.tasks.squad_metrics import per_question_v1, per_question_v2, score_v1, score_v2

METADATA = ("example_id", "offset_mapping", "context", "gold_answers")
CLS = 0  # the token a feature without the answer points at (BERT-like models put CLS first)


class QuestionAnsweringData(DatasetBase):
    task: Literal["question-answering"] = Field(
        default="question-answering", exclude=True, repr=False
    )
    context: str = "context"
    question: str = "question"
    answers: str = "answers"
    """SQuAD's nested column: {text: [...], answer_start: [...]} per row (the gold answers)."""
    answer_text: str | None = None
    """Instead of `answers`: a column of one answer's text per row (with `answer_start`)."""
    answer_start: str | None = None
    """Instead of `answers`: a column of that answer's first character in the context."""
    max_length: int | LengthChoice = 384
    doc_stride: int = Field(default=128, ge=1)
    """Tokens two windows of a long context share."""
    max_answer_length: int = Field(default=30, ge=1)
    """Tokens of the longest answer evaluation predicts."""
    n_best: int = Field(default=20, ge=1)
    """Start and end tokens tried per feature when choosing the answer."""
    version_2_with_negative: bool = False
    """SQuAD v2: a question may have no answer (an empty `answers`)."""
    null_threshold: float = 0.0
    """v2: answer nothing where the null score beats the best span's by more than this."""

    @model_validator(mode="after")
    def _flat_pair_and_stride(self):
        if (self.answer_text is None) != (self.answer_start is None):
            raise ValueError("give both answer_text and answer_start (flat answers), or neither")
        lengths = (
            self.max_length.choices
            if isinstance(self.max_length, LengthChoice)
            else (self.max_length,)
        )
        if self.doc_stride >= min(lengths):
            raise ValueError(
                f"doc_stride {self.doc_stride} must be below max_length {min(lengths)} "
                "(windows of a long context overlap by doc_stride tokens)"
            )
        return self

    @property
    def flat(self) -> bool:
        return self.answer_text is not None


class QuestionAnswering(Task):
    name = "question-answering"
    Dataset = QuestionAnsweringData
    metrics: ClassVar[dict[str, Direction]] = {
        "f1": "maximize",
        "exact_match": "maximize",
        "loss": "minimize",
    }
    default_metric = "f1"
    model_class = "AutoModelForQuestionAnswering"
    peft_task_type = "QUESTION_ANS"
    collator_class = "DataCollatorWithPadding"
    # transformers 5 removed the question-answering pipeline: the card shows the model alone.
    pipeline_task = None
    deployable = True
    output_names = ("start_logits", "end_logits")
    label_columns = ("start_positions", "end_positions")
    metadata_columns = METADATA

    def columns(self, dataset: QuestionAnsweringData) -> dict[str, str]:
        named = {"dataset.context": dataset.context, "dataset.question": dataset.question}
        if dataset.flat:
            named["dataset.answer_text"] = dataset.answer_text
            named["dataset.answer_start"] = dataset.answer_start
        else:
            named["dataset.answers"] = dataset.answers
        return named

    def check_frame(self, frame: pd.DataFrame, dataset: QuestionAnsweringData, origin: str) -> None:
        for number, row in enumerate(frame.to_dict("records"), start=1):
            for key in ("context", "question"):
                value = row[getattr(dataset, key)]
                if not isinstance(value, str) or not value.strip():
                    raise SpecError(
                        f"dataset.{key}: row {number} of {origin} has an empty {key} "
                        f"({_short(value)}); give each row a non-empty text, or drop the row"
                    )
            texts, starts = row_answers(row, dataset, f"row {number} of {origin}")
            if not texts and not dataset.version_2_with_negative:
                raise SpecError(
                    f"dataset.{_answer_key(dataset)}: row {number} of {origin} has no answer; "
                    "give it one, or set dataset.version_2_with_negative: true (SQuAD v2)"
                )
            context = row[dataset.context]
            for text, start in zip(texts, starts, strict=True):
                if context[start : start + len(text)] != text:
                    key = "answer_start" if dataset.flat else dataset.answers
                    raise SpecError(
                        f"dataset.{key}: row {number} of {origin}: answer_start {start} does not "
                        f"point at its text {_short(text)} in the context (it reads "
                        f"{_short(context[start : start + len(text)])}); fix the offset, counted "
                        "in characters from 0"
                    )

    def encode(self, batch, dataset: QuestionAnsweringData, tokenizer, labels) -> dict:
        if not getattr(tokenizer, "is_fast", False):
            raise HpsearchError(
                "model: question-answering needs a fast tokenizer (one with offset mappings)"
            )
        questions = [str(q).lstrip() for q in batch[dataset.question]]
        contexts = [str(c) for c in batch[dataset.context]]
        keys = list(batch.keys())
        columns_of = [batch[k] for k in keys]
        rows = [dict(zip(keys, values, strict=True)) for values in zip(*columns_of, strict=True)]
        answers = [row_answers(row, dataset, "a row") for row in rows]
        _check_question_lengths(questions, dataset, tokenizer)
        encoded = tokenizer(
            questions,
            contexts,
            truncation="only_second",
            max_length=dataset.max_length,
            stride=dataset.doc_stride,
            return_overflowing_tokens=True,
            return_offsets_mapping=True,
        )
        examples = encoded.pop("overflow_to_sample_mapping")
        offsets = encoded.pop("offset_mapping")
        # Ids unique within the set: the batch's content and the row's place in it.
        digest = hashlib.sha1("\x00".join(questions + contexts).encode()).hexdigest()[:12]
        columns: dict[str, list] = {name: [] for name in (*self.label_columns, *METADATA)}
        for feature, example in enumerate(examples):
            in_context = [s == 1 for s in encoded.sequence_ids(feature)]
            start, end = answer_tokens(offsets[feature], in_context, *answers[example])
            columns["start_positions"].append(start)
            columns["end_positions"].append(end)
            columns["example_id"].append(f"{digest}-{example}")
            columns["offset_mapping"].append(
                [
                    list(o) if inside else None
                    for o, inside in zip(offsets[feature], in_context, strict=True)
                ]
            )
            columns["context"].append(contexts[example])
            columns["gold_answers"].append(list(answers[example][0]))
        return {**encoded, **columns}

    def compute_metrics(self, dataset: QuestionAnsweringData, tokenizer, labels, features=None):
        if features is None:
            raise ValueError("question-answering scores examples: pass the encoded eval features")
        return QaMetrics(dataset, features)

    def example_scores(self, compute: QaMetrics, prediction, metric: str) -> list[float] | None:
        return compute.example_scores(prediction, metric)

    def count_examples(self, features) -> int:
        return len(set(features["example_id"]))

    def example_batch(self, tokenizer) -> dict:
        return dict(
            tokenizer(
                ["Who?", "What is the longer question here?"],
                ["Ann wrote it.", "A somewhat longer context of a question to answer, by Bob."],
                padding=True,
                return_tensors="pt",
            )
        )

    def onnx_usage(self) -> list[str]:
        return [
            (
                'inputs = tokenizer(["Who wrote it?"], ["It was written by Ann."], '
                'return_tensors="np")'
            ),
            (
                'start, end = session.run(["start_logits", "end_logits"], '
                "{i.name: inputs[i.name] for i in session.get_inputs()})"
            ),
            "first, last = int(start[0].argmax()), int(end[0].argmax())",
            'answer = tokenizer.decode(inputs["input_ids"][0][first : last + 1])',
        ]

    def usage(self, model_dir) -> str:
        return "\n".join(
            [
                "import torch",
                "from transformers import AutoModelForQuestionAnswering, AutoTokenizer",
                f'tokenizer = AutoTokenizer.from_pretrained("{model_dir}")',
                f'model = AutoModelForQuestionAnswering.from_pretrained("{model_dir}").eval()',
                'question, context = "Who wrote it?", "It was written by Ann."',
                (
                    'inputs = tokenizer(question, context, return_tensors="pt", '
                    "return_offsets_mapping=True)"
                ),
                'offsets = inputs.pop("offset_mapping")[0]',
                "with torch.inference_mode():",
                "    output = model(**inputs)",
                "in_context = torch.tensor([s == 1 for s in inputs.sequence_ids(0)])",
                "first = int(output.start_logits[0].masked_fill(~in_context, -1e9).argmax())",
                "last = int(output.end_logits[0].masked_fill(~in_context, -1e9).argmax())",
                "print(context[int(offsets[first][0]) : int(offsets[max(first, last)][1])])",
            ]
        )


def row_answers(
    row: dict[str, Any], dataset: QuestionAnsweringData, where: str
) -> tuple[list[str], list[int]]:
    """A row's gold answers: their texts and first characters (empty for no answer)."""
    if dataset.flat:
        text, start = row[dataset.answer_text], row[dataset.answer_start]
        if text is None or (isinstance(text, float) and np.isnan(text)) or text == "":
            return [], []
        if not _is_int(start):
            raise SpecError(
                f"dataset.answer_start: {where} holds {_short(start)}, not a character offset"
            )
        return [str(text)], [int(start)]
    value = row[dataset.answers]
    if isinstance(value, dict) and {"text", "answer_start"} <= set(value):
        texts, starts = list(value["text"]), list(value["answer_start"])
        if len(texts) == len(starts) and all(_is_int(s) for s in starts):
            return [str(t) for t in texts], [int(s) for s in starts]
    raise SpecError(
        f"dataset.answers: {where} holds {_short(value)}, not {{text: [...], answer_start: "
        "[...]}} with one start per text; for one answer per row in two columns, give "
        "dataset.answer_text and dataset.answer_start"
    )


def answer_tokens(
    offsets: list, in_context: list[bool], texts: list[str], starts: list[int]
) -> tuple[int, int]:
    """The first and last tokens of the first gold answer in this feature, or CLS twice where the
    feature's window does not hold all of it (or there is no answer)."""
    if not texts:
        return CLS, CLS
    first_char, end_char = starts[0], starts[0] + len(texts[0])
    inside = [i for i, flag in enumerate(in_context) if flag]
    if not inside:
        return CLS, CLS
    low, high = inside[0], inside[-1]
    if offsets[low][0] > first_char or offsets[high][1] < end_char:
        return CLS, CLS
    start = low  # the last token starting at or before the answer's first character
    while start < high and offsets[start + 1][0] <= first_char:
        start += 1
    end = high  # the first token ending at or after its last
    while end > low and offsets[end - 1][1] >= end_char:
        end -= 1
    return start, end


class QaMetrics:
    """Trainer's compute_metrics for QA: the features' logits made answers per example, scored
    with the official SQuAD v1.1 (or v2.0) rules, 0-100."""

    def __init__(self, dataset: QuestionAnsweringData, features):
        self.dataset = dataset
        self.example_ids = list(features["example_id"])
        self.offsets = list(features["offset_mapping"])
        self.contexts: dict[str, str] = {}
        self.golds: dict[str, list[str]] = {}
        for example_id, context, gold in zip(
            self.example_ids, features["context"], features["gold_answers"], strict=True
        ):
            self.contexts.setdefault(example_id, context)
            self.golds.setdefault(example_id, list(gold))

    def answers(self, prediction):
        start_logits, end_logits = prediction.predictions[:2]
        dataset = self.dataset
        return postprocess_predictions(
            self.contexts,
            self.example_ids,
            self.offsets,
            np.asarray(start_logits),
            np.asarray(end_logits),
            n_best=dataset.n_best,
            max_answer_length=dataset.max_answer_length,
            with_null=dataset.version_2_with_negative,
            null_threshold=dataset.null_threshold,
        )

    def __call__(self, prediction) -> dict[str, float]:
        predicted = self.answers(prediction)
        if not self.dataset.version_2_with_negative:
            return score_v1(self.golds, predicted.answers)
        scores = score_v2(self.golds, predicted.answers, null_odds=predicted.null_odds)
        named = {("exact_match" if k == "exact" else k): v for k, v in scores.items()}
        return {k: float(v) for k, v in named.items() if "total" not in k and np.isfinite(float(v))}

    def example_scores(self, prediction, metric: str) -> list[float] | None:
        """Each example's exact match or F1 (0-100), whose mean is the metric."""
        if metric not in ("exact_match", "f1"):
            return None
        answers = self.answers(prediction).answers
        per_question = per_question_v2 if self.dataset.version_2_with_negative else per_question_v1
        exact, f1 = per_question(self.golds, answers)
        chosen = exact if metric == "exact_match" else f1
        return [100.0 * chosen[qid] for qid in self.golds]


def _check_question_lengths(questions: list[str], dataset: QuestionAnsweringData, tokenizer):
    """Every question leaves a window of context longer than doc_stride (the tokenizer refuses to
    stride otherwise, with a message that names neither the question nor the fix)."""
    specials = tokenizer.num_special_tokens_to_add(pair=True)
    lengths = tokenizer(questions, add_special_tokens=False)["input_ids"]
    for question, ids in zip(questions, lengths, strict=True):
        room = dataset.max_length - len(ids) - specials
        if room <= dataset.doc_stride:
            raise SpecError(
                f"dataset.question: the question {_short(question)} is {len(ids)} tokens, which "
                f"leaves {max(room, 0)} tokens of context per window at max_length "
                f"{dataset.max_length}, not more than doc_stride {dataset.doc_stride}; raise "
                "max_length, lower doc_stride, or shorten the question"
            )


def _answer_key(dataset: QuestionAnsweringData) -> str:
    return "answer_text" if dataset.flat else "answers"


def _is_int(value) -> bool:
    """A character offset: an integer, or a float that is one (a CSV column with gaps)."""
    if isinstance(value, (float, np.floating)):
        return float(value).is_integer()
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."
