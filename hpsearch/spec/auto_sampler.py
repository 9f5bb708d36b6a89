"""`sampler: {name: auto}`: the sampler Optuna's developers recommend for the spec's search space,
after OptunaHub's AutoSampler (MIT), chosen once from the spec rather than trial by trial.

AutoSampler itself is loaded from GitHub at run time (optunahub.load_module) and is not on PyPI;
hpsearch fetches nothing at run time, and its search space is known before the first trial, so
the same rule is applied here to Optuna's own samplers:
- a space with a choice (a model, a batch size ...) or a conditional parameter: multivariate TPE,
  grouped where parameters are conditional (each branch of the space modelled apart);
- a space of numeric ranges only: the Gaussian-process sampler, the strongest on the small
  numeric spaces and the tens to hundreds of trials of a fine-tuning search.
The chosen sampler is what the spec stores, so the study's note and a resumed run show it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hpsearch.spec.condition import Entry, is_conditional
from hpsearch.spec.param import ChoiceParam

if TYPE_CHECKING:
    from hpsearch.spec.algorithms import SamplerSpec


def choose_sampler(sampler: SamplerSpec, space: dict[str, Entry]) -> SamplerSpec:
    """`sampler` itself, or for name: auto the sampler it stands for with `space`."""
    if sampler.name != "auto":
        return sampler
    conditional = any(is_conditional(entry) for entry in space.values())
    if conditional or any(isinstance(e, ChoiceParam) for e in space.values()):
        return sampler.model_copy(
            update={"name": "tpe", "multivariate": True, "group": conditional}
        )
    return sampler.model_copy(update={"name": "gp"})
