"""The sampler and the pruner a spec names, built with their settings."""

from __future__ import annotations

import hashlib

import optuna

from hpsearch.spec import PrunerSpec, SamplerSpec


def make_sampler(spec: SamplerSpec, worker_key: str | None = None) -> optuna.samplers.BaseSampler:
    """The spec's sampler. Each of several workers passes its own `worker_key`: with one seed they
    would all suggest the same parameters. A lone worker (no key) keeps the spec's seed exactly."""
    seed = (
        spec.seed if worker_key is None or spec.seed is None else worker_seed(spec.seed, worker_key)
    )
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
    raise ValueError(
        f"unknown sampler {spec.name!r}"
    )  # pragma: no cover - the spec admits no other


def worker_seed(seed: int, worker_key: str) -> int:
    digest = hashlib.sha256(f"{seed}:{worker_key}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def make_pruner(spec: PrunerSpec) -> optuna.pruners.BasePruner:
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    first, after = spec.first_rung_evals, {"min_trials": spec.trials_before_pruning}
    if spec.name in ("hyperband", "successive_halving"):
        if spec.reduction_factor is not None:
            after["reduction_factor"] = spec.reduction_factor
        cls = HyperbandPruner if spec.name == "hyperband" else SuccessiveHalvingPruner
        return cls(min_resource=first, **after)
    if spec.name == "median":
        # Its own start-up count is min_trials under Optuna's name (trials_before_pruning reads
        # either): one count, ours.
        return MedianPruner(n_startup_trials=0, n_warmup_steps=first - 1, **after)
    raise ValueError(f"unknown pruner {spec.name!r}")  # pragma: no cover - the spec admits no other


class _AfterMinTrials:
    """Prunes nothing until `min_trials` trials of the study completed, then as the pruner does.

    The pruner is asked at every evaluation all the same: successive halving records each trial's
    value at each rung as it is asked, so the trials of the warm-up become the competitors of the
    first trials it prunes. Without them a trial is compared with the one or two trials of its
    bracket that reached the rung before it, and must beat them all (Optuna's rule for the first
    `reduction_factor - 1` trials of a rung): a coin toss on a noisy early evaluation.
    A subclass, not a wrapper: Optuna's samplers look for a HyperbandPruner by type, to sample
    from the trials of a trial's own bracket.
    """

    def __init__(self, *args, min_trials: int, **kwargs):
        super().__init__(*args, **kwargs)
        self.min_trials = min_trials
        self._warmed_up = min_trials == 0

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        if not super().prune(study, trial):
            return False
        if not self._warmed_up:
            complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
            self._warmed_up = len(complete) >= self.min_trials
        return self._warmed_up


class HyperbandPruner(_AfterMinTrials, optuna.pruners.HyperbandPruner):
    pass


class SuccessiveHalvingPruner(_AfterMinTrials, optuna.pruners.SuccessiveHalvingPruner):
    pass


class MedianPruner(_AfterMinTrials, optuna.pruners.MedianPruner):
    pass
