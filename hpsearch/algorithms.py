"""The sampler and the pruner a spec names, built with their settings."""

from __future__ import annotations

import optuna

from hpsearch.spec import PrunerSpec, SamplerSpec


def make_sampler(spec: SamplerSpec) -> optuna.samplers.BaseSampler:
    startup = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
    if spec.name == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed, **startup)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=spec.seed)
    if spec.name == "gp":
        return optuna.samplers.GPSampler(seed=spec.seed, **startup)
    if spec.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=spec.seed, **startup)
    if spec.name == "qmc":
        return optuna.samplers.QMCSampler(seed=spec.seed)
    raise ValueError(f"unknown sampler {spec.name!r}")  # pragma: no cover - the spec admits no other


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    halving = {k: v for k, v in (("min_resource", spec.min_resource),
                                 ("reduction_factor", spec.reduction_factor)) if v is not None}
    if spec.name == "hyperband":
        return optuna.pruners.HyperbandPruner(**halving)
    if spec.name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(**halving)
    if spec.name == "median":
        median = {k: v for k, v in (("n_startup_trials", spec.n_startup_trials),
                                    ("n_warmup_steps", spec.n_warmup_steps)) if v is not None}
        return optuna.pruners.MedianPruner(**median)
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    raise ValueError(f"unknown pruner {spec.name!r}")  # pragma: no cover - the spec admits no other
