"""The spec's `warm_start:` section: earlier studies whose best configurations are tried first."""

from __future__ import annotations

from pydantic import Field, field_validator

from hpsearch.spec.param import StrictModel

DEFAULT_TOP = 5


class WarmStartSpec(StrictModel):
    """`warm_start: {from: [STUDY, ...], top: K}`: the K best complete trials of each study named
    (in the same storage) are queued before the sampler draws anything, mapped onto this study's
    search space (hpsearch.study.warm_start)."""

    studies: list[str] = Field(alias="from", min_length=1)
    top: int = Field(default=DEFAULT_TOP, ge=1)
    """Configurations taken from each study, best first."""

    @field_validator("studies", mode="before")
    @classmethod
    def _one_or_many(cls, value):
        """`from: other` is `from: [other]`."""
        return [value] if isinstance(value, str) else value

    @field_validator("studies")
    @classmethod
    def _distinct(cls, studies: list[str]) -> list[str]:
        if any(not name for name in studies):
            raise ValueError("a study name is empty; name the study to warm-start from")
        if len(set(studies)) != len(studies):
            raise ValueError(f"a study is named twice, got {studies}")
        return studies
