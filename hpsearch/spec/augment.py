"""The `augment:` section: new training rows made from the training rows, each setting fixed or
searched like any parameter (a trial's are named augment.<key> among its parameters).

The EDA operations (Wei & Zou, 2019) change each word with their probability: replace it by a
synonym, insert a synonym of another word after it, swap it with another word, delete it.
`copies` augmented rows are made of each training row; `back_translation` sends each copy through
a translation model and back. Only the training split is augmented (hpsearch.trial.augment).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

from hpsearch.spec.param import Param, StrictModel, is_param, param_ends

# The prefix of a searched `augment:` value among a trial's parameters ("augment.random_swap").
AUGMENT_PREFIX = "augment."
EDA_OPERATIONS = ("synonym_replacement", "random_insertion", "random_swap", "random_deletion")
# Tasks whose targets a changed input would no longer match (a summary, a completion, an answer
# span): augmenting their rows would teach wrong pairs.
REFUSED_TASKS = ("seq2seq", "causal-lm", "question-answering")

Probability = Param | float
Count = Param | int


class BackTranslationSpec(StrictModel):
    """Each augmented copy translated by `model` into a pivot language and back by `pivot_model`
    (hub ids or local directories of seq2seq translation models, e.g. Marian en-de and de-en)."""

    model: str = Field(min_length=1)
    pivot_model: str = Field(min_length=1)
    probability: Probability = 1.0
    """The chance that a copy is back-translated (before the EDA operations change it)."""


class AugmentSpec(StrictModel):
    synonym_replacement: Probability = 0.0
    random_insertion: Probability = 0.0
    random_swap: Probability = 0.0
    random_deletion: Probability = 0.0
    copies: Count = 1
    """Augmented rows made of each training row, added to the original rows."""
    back_translation: BackTranslationSpec | None = None
    synonyms: int = Field(default=5, ge=1, le=50)
    """A word's synonyms: its nearest neighbours among the whole-word tokens of the model's own
    input embeddings, this many (hpsearch.trial.augment)."""

    @model_validator(mode="after")
    def _values_in_range(self) -> AugmentSpec:
        for name, value in self._searchable().items():
            for candidate in param_ends(value) if is_param(value) else [value]:
                if name == "copies":
                    valid = isinstance(candidate, int) and not isinstance(candidate, bool)
                    if not valid or not 1 <= candidate <= 16:
                        raise ValueError(f"augment.copies: {candidate!r} is not an integer 1-16")
                elif isinstance(candidate, bool) or not isinstance(candidate, (int, float)):
                    raise ValueError(f"augment.{name}: {candidate!r} is not a probability")
                elif not 0 <= candidate <= 1:
                    raise ValueError(
                        f"augment.{name}: {candidate!r} is not a probability in [0, 1]"
                    )
        if self.back_translation is None and all(
            not is_param(getattr(self, op)) and getattr(self, op) == 0 for op in EDA_OPERATIONS
        ):
            raise ValueError(
                "augment: every operation is off; give one a probability (random_swap: 0.1), "
                "search one ({float: [0, 0.2]}), add back_translation:, or remove augment:"
            )
        return self

    def _searchable(self) -> dict[str, Any]:
        values = {name: getattr(self, name) for name in (*EDA_OPERATIONS, "copies")}
        if self.back_translation is not None:
            values["back_translation.probability"] = self.back_translation.probability
        return values

    def searched(self) -> dict[str, Any]:
        """The searched values as search-space parameters, named augment.<key>."""
        return {f"{AUGMENT_PREFIX}{k}": v for k, v in self._searchable().items() if is_param(v)}

    def fixed(self) -> dict[str, Any]:
        """The fixed values, named augment.<key> as the searched are."""
        return {f"{AUGMENT_PREFIX}{k}": v for k, v in self._searchable().items() if not is_param(v)}

    def resolve(self, params: dict[str, Any]) -> dict[str, Any]:
        """A trial's augmentation settings: the fixed values, and `params`' augment.<key> for the
        searched (one a trial left out, its condition false, is off: 0, or 1 copy)."""
        values = {}
        for name, value in self._searchable().items():
            off = 1 if name == "copies" else 0.0
            values[name] = params.get(f"{AUGMENT_PREFIX}{name}", off) if is_param(value) else value
        if self.back_translation is not None:
            values["back_translation"] = {
                "model": self.back_translation.model,
                "pivot_model": self.back_translation.pivot_model,
            }
        values["synonyms"] = self.synonyms
        return values


def check_augment_task(augment: AugmentSpec | None, task: str) -> None:
    """Refuse augmentation where the task's targets would not follow the changed input."""
    if augment is None:
        return
    if task in REFUSED_TASKS:
        raise ValueError(
            f"augment: the {task} task's targets (a summary, a completion, an answer span) "
            "would not follow a changed input; remove augment: (text-classification and "
            "token-classification take it)"
        )
    if task == "token-classification" and augment.back_translation is not None:
        raise ValueError(
            "augment.back_translation: a translation's words have no tags; remove it for "
            "token-classification (the EDA operations change only words tagged O)"
        )
