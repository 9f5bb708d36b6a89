"""What every task shares: the dataset keys common to all, and the interface a task implements.

A task describes one kind of fine-tuning: the dataset keys a spec may give it, the metrics its
evaluation returns, how rows become model inputs, which transformers classes train it and which
`pipeline()` serves the result. It names transformers classes rather than importing them, so the
spec layer and the read-only commands can read a task without importing torch or transformers;
hpsearch.trial resolves the names (`trial/classes.py`) when it trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# The sub-word positions that neither the loss nor the metrics look at (PyTorch's ignore_index).
IGNORED = -100
# The dataset key through which a spec's top-level `task:` reaches the dataset section's schema.
TASK_KEY = "task"


# Two texts of different lengths that an ONNX export of a text model is traced with.
EXAMPLE_TEXTS = ["a short example", "and a somewhat longer example of a text to classify"]

# The tokens of model input an example may keep: dataset.max_length, or each of its choices.
MAX_LENGTH_RANGE = (8, 32768)


class LengthChoice(BaseModel):
    """`max_length: {choice: [64, 128]}`: searched, as the trial parameter `max_length` (each trial
    trains on the data tokenized to its length; hpsearch.spec.choice)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    choices: tuple[int, ...] = Field(alias="choice")


def _check_length(value: Any) -> int:
    low, high = MAX_LENGTH_RANGE
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"expected a number of tokens from {low} to {high}, got {value!r}")
    return value


class DatasetBase(BaseModel):
    """The dataset keys of every task: where the data is, how it is split and capped."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    task: str = Field(exclude=True, repr=False)
    """Copied from the spec's top-level `task:` (it picks this schema); not written back."""
    source: str = Field(min_length=1)
    """A hub dataset name, a local data file, a folder of split files, or package:PKG/path/in/it."""
    subset: str | None = None
    """The hub dataset's configuration name (e.g. `sst2` of `glue`)."""
    split: str = "train"
    """The hub split to train on."""
    eval_split: str | None = None
    """A named hub split to evaluate on, instead of eval_fraction."""
    eval_source: str | None = None
    """A separate local or package file to evaluate on, instead of eval_fraction."""
    eval_fraction: float | None = Field(default=None, gt=0, lt=1)
    test_fraction: float | None = Field(default=None, gt=0, lt=1)
    """Rows of the source held out as a test set no trial sees (taken before the eval set), on
    which the best model is scored once (hpsearch.trial.test_score)."""
    test_source: str | None = None
    """A separate local or package file to hold out as the test set, instead of test_fraction."""
    test_split: str | None = None
    """A named hub split to hold out as the test set, instead of test_fraction."""
    encoding: str = "utf-8"
    max_train_samples: int | None = Field(default=None, ge=1)
    max_eval_samples: int | None = Field(default=None, ge=1)
    max_length: int | LengthChoice = 128
    """Tokens of model input kept per example (the rest is cut off); `{choice: [...]}` searches
    it."""
    seed: int = 0
    """Seeds the train/eval split and the caps."""

    @field_validator("max_length", mode="before")
    @classmethod
    def _length_or_choice(cls, value: Any) -> Any:
        if isinstance(value, LengthChoice):
            return value
        if not isinstance(value, dict):
            return _check_length(value)
        if set(value) != {"choice"} or not isinstance(value["choice"], list) or not value["choice"]:
            raise ValueError(f"expected a number of tokens or {{choice: [64, 128]}}, got {value!r}")
        choices = [_check_length(v) for v in value["choice"]]
        if len(set(choices)) != len(choices):
            raise ValueError(f"choices must be distinct, got {choices}")
        return LengthChoice(choice=tuple(choices))

    @model_validator(mode="after")
    def _one_eval_set(self):
        given = [k for k in ("eval_split", "eval_source", "eval_fraction") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of eval_split, eval_source, eval_fraction, not {given}")
        given = [k for k in ("test_split", "test_source", "test_fraction") if getattr(self, k)]
        if len(given) > 1:
            raise ValueError(f"give one of test_split, test_source, test_fraction, not {given}")
        if self.test_fraction and (self.resolved_eval_fraction or 0) + self.test_fraction >= 1:
            raise ValueError(
                f"test_fraction {self.test_fraction} and eval_fraction "
                f"{self.resolved_eval_fraction} leave no row to train on; lower one of them"
            )
        return self

    @property
    def has_test_set(self) -> bool:
        return bool(self.test_split or self.test_source or self.test_fraction)

    @property
    def resolved_eval_fraction(self) -> float | None:
        if self.eval_split or self.eval_source:
            return None
        return self.eval_fraction or 0.1


@dataclass(frozen=True)
class Labels:
    """The label (or tag) names a model predicts, and each raw value of the data's id."""

    names: list[str]
    ids: dict[Any, int]


Direction = Literal["maximize", "minimize"]


class Task:
    """One kind of fine-tuning. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    Dataset: ClassVar[type[DatasetBase]]
    metrics: ClassVar[dict[str, Direction]]
    """What `objective.metric` may name (Trainer's names without "eval_"), each with the direction
    that means better."""
    trainer_metrics: ClassVar[frozenset[str]] = frozenset({"loss"})
    """The metrics Trainer computes (the eval loss) or `derive_metrics` derives from them; every
    other one of `metrics` is returned by `compute_metrics`, and has a bootstrap interval."""
    default_metric: ClassVar[str]
    model_class: ClassVar[str]
    """The transformers Auto class that fine-tunes it."""
    collator_class: ClassVar[str]
    trainer_class: ClassVar[str] = "Trainer"
    arguments_class: ClassVar[str] = "TrainingArguments"
    arguments: ClassVar[dict[str, Any]] = {}
    """Training arguments hpsearch sets for this task (a spec may not)."""
    pipeline_task: ClassVar[str | None]
    """What `transformers.pipeline()` serves the exported model as (None: no pipeline serves it)."""
    generates: ClassVar[bool] = False
    """Evaluation generates text, so the spec's generation settings apply."""
    interval_rounds: ClassVar[int] = 200
    """Bootstrap resamples of the eval set for the objective's confidence interval (0: none, where
    scoring a resample is too slow to repeat)."""
    file_readers: ClassVar[dict[str, Callable[..., pd.DataFrame]]] = {}
    """Data file formats of this task alone, by suffix, besides csv/tsv/json/jsonl/parquet."""
    metadata_columns: ClassVar[tuple[str, ...]] = ()
    """Columns `encode` writes for the evaluation alone (a feature's example id and character
    offsets): kept with the encoded eval set, handed to `compute_metrics` as `features`, and
    dropped before a batch reaches the model (`model_inputs`)."""
    peft_task_type: ClassVar[str]
    """PEFT's task type of `model_class` (how PEFT wraps the model and saves its head)."""
    output_names: ClassVar[tuple[str, ...]] = ("logits",)
    """The model outputs the task scores, in order: what an exported form is measured on and what
    its ONNX graph returns."""
    label_columns: ClassVar[tuple[str, ...]] = ("labels",)
    """The encoded columns that hold the targets of `output_names`, one each."""
    deployable: ClassVar[bool] = False
    """`export --quantize/--onnx` can measure its forms: the model maps tokens to the outputs its
    metrics score (a generating model would need its decoding loop exported and measured too)."""

    # --- the data --------------------------------------------------------------------------------

    def columns(self, dataset: DatasetBase) -> dict[str, str]:
        """The columns it reads, keyed by the spec key that names each ("dataset.text": "text")."""
        raise NotImplementedError

    def check_frame(self, frame: pd.DataFrame, dataset: DatasetBase, origin: str) -> None:
        """The columns hold what this task trains on; raises SpecError naming `origin`'s column."""

    def known_labels(self, features: Any, dataset: DatasetBase) -> list[str] | None:
        """Label names a hub dataset's features carry (a ClassLabel), if this task has labels."""
        return None

    def labels(
        self,
        train: pd.DataFrame,
        evaluation: pd.DataFrame,
        dataset: DatasetBase,
        known: list[str] | None,
    ) -> Labels | None:
        """The label set from the training rows (None for a task without labels); raises
        HpsearchError if the eval rows have labels training lacks."""
        return None

    def encode(
        self, batch: dict[str, list], dataset: DatasetBase, tokenizer, labels: Labels | None
    ) -> dict[str, list]:
        """A batch of rows (column -> values) as model inputs: input_ids, attention_mask, labels."""
        raise NotImplementedError

    # --- the model and its evaluation ------------------------------------------------------------

    def prepare_tokenizer(self, tokenizer) -> None:
        """Fit the tokenizer to the task before anything is tokenized (a pad token, say)."""

    def collator_kwargs(self, model) -> dict[str, Any]:
        """Arguments of `collator_class` besides the tokenizer."""
        return {}

    def check_metric(self, metric: str, labels: list[str] | None) -> None:
        """The objective's metric means something for this data; raises HpsearchError if not."""

    def compute_metrics(
        self, dataset: DatasetBase, tokenizer, labels: list[str] | None, features=None
    ) -> Callable | None:
        """Trainer's `compute_metrics` (None: Trainer's eval loss is all; no logits are kept).
        `features` is the encoded set the predictions are of, row for row, with its
        `metadata_columns` (a task that scores examples rather than features reads them)."""
        return None

    def model_inputs(self, rows: list[dict]) -> list[dict]:
        """Encoded rows without the metadata columns, as the collator and the model take them."""
        if not self.metadata_columns:
            return rows
        dropped = set(self.metadata_columns)
        return [{k: v for k, v in row.items() if k not in dropped} for row in rows]

    def example_scores(self, compute: Callable, prediction, metric: str) -> list[float] | None:
        """Per-example scores whose mean is `metric`, for a bootstrap interval over examples where
        one example is several features (None: the features are the examples, resampled as
        rows through `compute`)."""
        return None

    def count_examples(self, features) -> int:
        """The examples an encoded set holds (its rows, unless one example is several)."""
        return len(features)

    def example_batch(self, tokenizer) -> dict:
        """Two inputs of different lengths, padded into one PyTorch batch: what an ONNX export is
        traced with, so no shape is special."""
        return dict(tokenizer(EXAMPLE_TEXTS, padding=True, return_tensors="pt"))

    def derive_metrics(self, metrics: dict[str, float]) -> dict[str, float]:
        """Metrics computed from Trainer's own (perplexity from the loss), keyed like them."""
        return {}

    # --- what people read ------------------------------------------------------------------------

    def describe_data(self, dataset: DatasetBase) -> str:
        """The columns trained on, for the model card."""
        return ", ".join(
            f"{key.removeprefix('dataset.')} column `{column}`"
            for key, column in self.columns(dataset).items()
        )

    def onnx_usage(self) -> list[str]:
        """The card's ONNX Runtime code once `session`, `tokenizer` and `config` are loaded."""
        return [
            'inputs = tokenizer(["an example text"], return_tensors="np")',
            (
                'logits = session.run(["logits"], '
                "{i.name: inputs[i.name] for i in session.get_inputs()})[0]"
            ),
            "labels = [config.id2label[int(i)] for i in logits.argmax(-1)]",
        ]

    def usage(self, model_dir: Path | str) -> str:
        """Python that loads the exported model and uses it."""
        return (
            f"from transformers import pipeline\n"
            f'model = pipeline("{self.pipeline_task}", model="{model_dir}")'
        )
