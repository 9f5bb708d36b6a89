"""Causal language modelling: texts to continue (domain adaptation), or prompts and completions
(instruction tuning, the loss on the completion's tokens only).

Texts are tokenized as the text-generation pipeline tokenizes a prompt (no special tokens added)
and end with the tokenizer's end-of-sequence token, so the model learns where to stop. With
`packing`, the examples are concatenated and cut into blocks of max_length tokens, so no step
is spent on padding. Evaluation is the loss on held-out text, and its perplexity.
"""

from __future__ import annotations

import math
from typing import ClassVar, Literal

from pydantic import Field, model_validator

from hpsearch.errors import HpsearchError
from hpsearch.tasks.base import IGNORED, DatasetBase, Direction, Task


class CausalLMData(DatasetBase):
    task: Literal["causal-lm"] = Field(default="causal-lm", exclude=True, repr=False)
    text: str | None = None
    """The column of texts to model (by default `text`, when no prompt and completion are given)."""
    prompt: str | None = None
    """With completion: the column of prompts, which the loss does not score."""
    completion: str | None = None
    """With prompt: the column of what the model should answer."""
    packing: bool = False
    """Concatenate examples into blocks of max_length tokens instead of padding each one."""

    @model_validator(mode="after")
    def _text_or_prompt_and_completion(self):
        pair = (self.prompt, self.completion)
        if self.text is not None and any(pair):
            raise ValueError(
                "give text (language modelling) or prompt and completion (instruction tuning), "
                "not both"
            )
        if any(pair) and not all(pair):
            missing = "completion" if self.prompt else "prompt"
            raise ValueError(
                f"prompt and completion go together; add {missing}: (the column's name)"
            )
        if self.text is None and not any(pair):
            object.__setattr__(self, "text", "text")
        return self


class CausalLM(Task):
    name = "causal-lm"
    Dataset = CausalLMData
    metrics: ClassVar[dict[str, Direction]] = {"loss": "minimize", "perplexity": "minimize"}
    trainer_metrics: ClassVar[frozenset[str]] = frozenset({"loss", "perplexity"})
    default_metric = "loss"
    model_class = "AutoModelForCausalLM"
    peft_task_type = "CAUSAL_LM"
    # Pads input_ids with the pad token and labels with IGNORED: what a batch of examples of
    # different lengths needs, for causal models as for seq2seq ones.
    collator_class = "DataCollatorForSeq2Seq"
    pipeline_task = "text-generation"

    def columns(self, dataset: CausalLMData) -> dict[str, str]:
        if dataset.text is not None:
            return {"dataset.text": dataset.text}
        return {"dataset.prompt": dataset.prompt, "dataset.completion": dataset.completion}

    def prepare_tokenizer(self, tokenizer) -> None:
        if tokenizer.pad_token is None:
            if tokenizer.eos_token is None:
                raise HpsearchError(
                    "model: its tokenizer has neither a pad nor an end-of-sequence token"
                )
            tokenizer.pad_token = tokenizer.eos_token  # padding is masked out of the loss anyway

    def encode(self, batch, dataset: CausalLMData, tokenizer, labels) -> dict:
        end = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []

        def ids(texts) -> list[list[int]]:
            return tokenizer([str(t) for t in texts], add_special_tokens=False)["input_ids"]

        if dataset.text is not None:
            inputs = [i + end for i in ids(batch[dataset.text])]
            targets = [list(i) for i in inputs]
        else:
            prompts, completions = ids(batch[dataset.prompt]), ids(batch[dataset.completion])
            inputs = [p + c + end for p, c in zip(prompts, completions, strict=True)]
            targets = [
                [IGNORED] * len(p) + c + end for p, c in zip(prompts, completions, strict=True)
            ]
        if dataset.packing:
            inputs, targets = pack(inputs, dataset.max_length), pack(targets, dataset.max_length)
        else:
            inputs = [i[: dataset.max_length] for i in inputs]
            targets = [t[: dataset.max_length] for t in targets]
        # An example whose completion was cut off entirely teaches nothing (and a batch of only
        # such examples would have no loss at all).
        kept = [k for k, t in enumerate(targets) if any(label != IGNORED for label in t)]
        return {
            "input_ids": [inputs[k] for k in kept],
            "attention_mask": [[1] * len(inputs[k]) for k in kept],
            "labels": [targets[k] for k in kept],
        }

    def derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        loss = metrics.get("eval_loss")
        if loss is None:
            return {}
        return {"eval_perplexity": math.exp(loss) if loss < 700 else math.inf}

    def describe_data(self, dataset: CausalLMData) -> str:
        if dataset.text is not None:
            return f"text column `{dataset.text}`{', packed' if dataset.packing else ''}"
        return (
            f"prompt column `{dataset.prompt}`, completion column `{dataset.completion}` "
            f"(loss on completions){', packed' if dataset.packing else ''}"
        )

    def usage(self, model_dir) -> str:
        return (
            f"from transformers import pipeline\n"
            f'generate = pipeline("text-generation", model="{model_dir}")\n'
            f'print(generate("your prompt", max_new_tokens=50)[0]["generated_text"])'
        )


def pack(sequences: list[list[int]], block: int) -> list[list[int]]:
    """The sequences end to end, cut into blocks of `block` tokens (the last one may be shorter)."""
    flat = [token for sequence in sequences for token in sequence]
    return [flat[start : start + block] for start in range(0, len(flat), block)]
