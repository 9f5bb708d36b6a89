"""The sampler and the pruner a spec names, built with their settings."""

from __future__ import annotations

import hashlib

import optuna

from hpsearch.spec import PrunerSpec, SamplerSpec


def make_sampler(spec: SamplerSpec, worker_key: str | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler. Each of several workers passes its own `worker_key`: with one seed they
    would all suggest the same parameters. A lone worker (no key) keeps the spec's seed exactly."""
    seed = spec.seed if worker_key is None or spec.seed is None else worker_seed(spec.seed, worker_key)
    startup = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
    if spec.name == "tpe":
        # constant_liar: running trials count as bad guesses, so parallel workers spread out.
        return optuna.samplers.TPESampler(seed=seed, constant_liar=True, **startup)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if spec.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **startup)
    if spec.name == "qmc":
        return optuna.samplers.QMCSampler(seed=seed)
    raise ValueError(f"unknown sampler {spec.name!r}")  # pragma: no cover - the spec admits no other


def worker_seed(seed: int, worker_key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{worker_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


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
