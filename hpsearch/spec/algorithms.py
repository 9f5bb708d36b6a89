"""The sampler: and pruner: sections of a study spec: which Optuna algorithm searches and which
prunes, and the settings each takes (a setting the chosen algorithm ignores is refused, not
dropped). hpsearch.study.algorithms builds the Optuna objects from them."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, Field, model_validator

from hpsearch.spec.param import StrictModel


def _refuse_settings_not_taken(
    section: str, spec: BaseModel, takers: dict[str, tuple[str, ...]]
) -> None:
    """A setting the chosen algorithm ignores is a mistake: say which algorithms take it."""
    for setting, names in takers.items():
        if getattr(spec, setting) is not None and spec.name not in names:
            raise ValueError(
                f"the {spec.name} {section} takes no {setting} (only {' and '.join(names)} "
                f"{'does' if len(names) == 1 else 'do'}); remove it, or use name: "
                f"{' or '.join(names)}"
            )


class SamplerSpec(StrictModel):
    name: Literal["tpe", "random", "gp", "cmaes", "qmc", "auto"] = "tpe"
    """auto: the sampler recommended for the search space, chosen when the spec loads
    (hpsearch/spec/auto_sampler.py)."""
    seed: int | None = 0
    n_startup_trials: int | None = Field(default=None, ge=0)
    """tpe / gp / cmaes / auto: random trials before the model-based search starts."""
    multivariate: bool | None = None
    """tpe: model the parameters jointly rather than each alone (default false)."""
    group: bool | None = None
    """tpe, with multivariate: model apart each set of parameters sampled together, as a
    conditional space's branches are (default false)."""
    constant_liar: bool | None = None
    """tpe: running trials count as bad guesses, so parallel workers spread out (default true)."""
    n_ei_candidates: int | None = Field(default=None, ge=1)
    """tpe: candidates drawn to pick each suggestion from (default 24)."""

    @model_validator(mode="after")
    def _settings_taken(self) -> SamplerSpec:
        tpe = ("tpe",)
        _refuse_settings_not_taken(
            "sampler",
            self,
            {
                "n_startup_trials": ("tpe", "gp", "cmaes", "auto"),
                "multivariate": tpe,
                "group": tpe,
                "constant_liar": tpe,
                "n_ei_candidates": tpe,
            },
        )
        if self.group and not self.multivariate:
            raise ValueError("sampler.group: needs multivariate: true; add it or remove group")
        return self


# The pruning defaults, chosen from the anytime curves and the pruning replay (BENCHMARKS.md).
DEFAULT_FIRST_RUNG = 0.5  # epochs
DEFAULT_MIN_TRIALS = 4


class PrunerSpec(StrictModel):
    name: Literal["hyperband", "successive_halving", "median", "none"] = "hyperband"
    evals_per_epoch: int = Field(default=4, ge=1, le=100)
    """Evaluations per epoch: the rungs the pruner acts on."""
    first_rung: float | None = Field(default=None, gt=0, le=100)
    """Epochs a trial trains before it can first be pruned (default 0.5). Earlier, learning rates
    still warming up look alike and the eval set's noise decides (BENCHMARKS.md)."""
    min_trials: int | None = Field(default=None, ge=0)
    """Trials that complete before any trial is pruned (default 4). The pruner still records their
    evaluations, so the first pruned trial is measured against them, not against one other trial."""
    min_resource: int | None = Field(default=None, ge=1)
    """hyperband / successive_halving: evaluations before the first pruning decision (instead of
    first_rung)."""
    reduction_factor: int | None = Field(default=None, ge=2)
    n_startup_trials: int | None = Field(default=None, ge=0)
    """median: Optuna's name for min_trials (trials that complete before any pruning)."""
    n_warmup_steps: int | None = Field(default=None, ge=0)
    """median: evaluations of a trial before it can be pruned (instead of first_rung)."""

    @model_validator(mode="after")
    def _settings_taken(self) -> PrunerSpec:
        halving, median = ("hyperband", "successive_halving"), ("median",)
        _refuse_settings_not_taken(
            "pruner",
            self,
            {
                "min_resource": halving,
                "reduction_factor": halving,
                "n_startup_trials": median,
                "n_warmup_steps": median,
            },
        )
        # (None, not "left out": a stored spec comes back with every key, unset ones as None.)
        for exact in ("min_resource", "n_warmup_steps"):
            if self.first_rung is not None and getattr(self, exact) is not None:
                raise ValueError(
                    f"the pruner takes first_rung (in epochs) or {exact} (in evaluations), "
                    "not both; remove one"
                )
        if self.min_trials is not None and self.n_startup_trials is not None:
            raise ValueError(
                "min_trials and n_startup_trials say the same for the median pruner; remove one"
            )
        return self

    @property
    def first_rung_evals(self) -> int:
        """The evaluation at which a trial can first be pruned (1 = the first)."""
        if self.min_resource is not None:
            return self.min_resource
        if self.n_warmup_steps is not None:
            return self.n_warmup_steps + 1
        epochs = DEFAULT_FIRST_RUNG if self.first_rung is None else self.first_rung
        # A hair below the product, so that 0.5 epoch at 2 evaluations per epoch is evaluation 1.
        return max(1, math.ceil(epochs * self.evals_per_epoch - 1e-9))

    @property
    def trials_before_pruning(self) -> int:
        for said in (self.min_trials, self.n_startup_trials):
            if said is not None:
                return said
        return DEFAULT_MIN_TRIALS
