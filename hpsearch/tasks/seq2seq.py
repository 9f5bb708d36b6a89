"""Sequence-to-sequence (summarization, translation, any text-to-text): a source text and target.

Evaluation generates with the trial's generation settings (num_beams, max_new_tokens, ...; set on
the model's generation config, so the exported model generates the same way) and scores the
output against the targets: ROUGE-1/2/L F-measures (rouge-score, stemmed) in [0, 1] and sacreBLEU
on its usual 0-100 scale, besides the eval loss.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
from pydantic import Field

from hpsearch.tasks.base import IGNORED, DatasetBase, Direction, Task

ROUGE = ("rouge1", "rouge2", "rougeL")


class Seq2SeqData(DatasetBase):
    task: Literal["seq2seq"] = Field(default="seq2seq", exclude=True, repr=False)
    text: str = "text"
    """The column holding the source text."""
    target: str = "target"
    """The column holding the text to generate from it."""
    prefix: str = ""
    """Put before each source: T5's task prefix ("summarize: ", "translate English to German: ")."""
    max_target_length: int = Field(default=128, ge=1, le=32768)
    """Tokens of target kept per example (the rest is cut off)."""


class Seq2Seq(Task):
    name = "seq2seq"
    Dataset = Seq2SeqData
    metrics: ClassVar[dict[str, Direction]] = {
        "rougeL": "maximize",
        "rouge1": "maximize",
        "rouge2": "maximize",
        "bleu": "maximize",
        "loss": "minimize",
    }
    default_metric = "rougeL"
    model_class = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    collator_class = "DataCollatorForSeq2Seq"
    trainer_class = "Seq2SeqTrainer"
    arguments_class = "Seq2SeqTrainingArguments"
    arguments: ClassVar[dict] = {"predict_with_generate": True}
    # Scoring is ROUGE/BLEU over the whole eval set, and a bootstrap interval scores each of its
    # 200 resamples again: every evaluation of a trial would take 200 scorings instead of one.
    interval_rounds = 0
    # transformers 5 removed the text2text-generation, summarization and translation pipelines.
    pipeline_task = None
    generates = True

    def columns(self, dataset: Seq2SeqData) -> dict[str, str]:
        return {"dataset.text": dataset.text, "dataset.target": dataset.target}

    def encode(self, batch, dataset: Seq2SeqData, tokenizer, labels) -> dict:
        sources = [dataset.prefix + str(t) for t in batch[dataset.text]]
        encoded = tokenizer(sources, truncation=True, max_length=dataset.max_length)
        targets = tokenizer(
            text_target=[str(t) for t in batch[dataset.target]],
            truncation=True,
            max_length=dataset.max_target_length,
        )
        # Not token_type_ids (a BERT tokenizer's): generate() refuses inputs its model doesn't take.
        return {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"],
            "labels": targets["input_ids"],
        }

    def collator_kwargs(self, model) -> dict:
        return {"model": model}  # it builds decoder_input_ids from the labels, as the model does

    def compute_metrics(self, dataset, tokenizer, labels, features=None):
        def compute(prediction) -> dict[str, float]:
            generated = prediction.predictions
            generated = generated[0] if isinstance(generated, tuple) else generated
            return text_scores(
                decode(tokenizer, generated),
                decode(tokenizer, prediction.label_ids),
                generated_lengths(generated, tokenizer.pad_token_id),
            )

        return compute

    def describe_data(self, dataset: Seq2SeqData) -> str:
        prefix = f", prefix {dataset.prefix!r}" if dataset.prefix else ""
        return f"source column `{dataset.text}`, target column `{dataset.target}`{prefix}"

    def usage(self, model_dir) -> str:
        # No pipeline serves a seq2seq model in transformers 5; generate() uses the tuned settings
        # saved in generation_config.json.
        return (
            f"from transformers import AutoModelForSeq2SeqLM, AutoTokenizer\n"
            f'tokenizer = AutoTokenizer.from_pretrained("{model_dir}")\n'
            f'model = AutoModelForSeq2SeqLM.from_pretrained("{model_dir}")\n'
            f'inputs = tokenizer(["your text"], return_tensors="pt")\n'
            f"print(tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True))"
        )


def decode(tokenizer, ids: np.ndarray) -> list[str]:
    """Token ids as text; IGNORED padding (of labels, and of predictions gathered across batches)
    read as the pad token, which decoding skips."""
    ids = np.where(np.asarray(ids) == IGNORED, tokenizer.pad_token_id or 0, ids)
    return [text.strip() for text in tokenizer.batch_decode(ids, skip_special_tokens=True)]


def generated_lengths(ids: np.ndarray, pad_id: int | None) -> list[int]:
    ids = np.asarray(ids)
    return list(
        ((ids != IGNORED) & (ids != (pad_id if pad_id is not None else IGNORED))).sum(axis=1)
    )


def text_scores(
    predictions: list[str], references: list[str], lengths: list[int] | None = None
) -> dict[str, float]:
    """ROUGE-1/2/L F-measures averaged over examples, corpus sacreBLEU, mean generated length."""
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(list(ROUGE), use_stemmer=True)
    totals = dict.fromkeys(ROUGE, 0.0)
    for predicted, reference in zip(predictions, references, strict=True):
        for name, score in scorer.score(reference, predicted).items():
            totals[name] += score.fmeasure
    n = max(len(predictions), 1)
    scores = {name: total / n for name, total in totals.items()}
    scores["bleu"] = float(sacrebleu.corpus_bleu(predictions, [references]).score)
    if lengths is not None:
        scores["gen_len"] = float(np.mean(lengths)) if len(lengths) else 0.0
    return scores
