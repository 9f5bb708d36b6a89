"""The sampler and the pruner a spec names, built with their settings.

Samplers: each process that samples takes a start number from the storage (0, 1, 2 ... in the
order processes start, never one twice) and seeds its sampler from the spec's seed and that number.
Start 0 keeps the spec's seed exactly, so a lone `hpsearch run` draws what it always drew; every
later start (another worker, on any host; a worker restarted after a crash; a study resumed) draws
its own suggestions instead of repeating the first start's.

Pruners: every one first acts at the evaluation `pruner.first_rung_evals` (evaluations are reported
as steps 1, 2 ...), and none prunes until `min_trials` trials have completed (see _AfterMinTrials).
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass

import optuna

from hpsearch.spec import PrunerSpec, SamplerSpec, StudySpec, is_conditional, param_ends
from hpsearch.storage import take_start_number

START_ATTR = (
    "sampler_start"  # trial user attribute: the start number of the process that sampled it
)
SAMPLER_SEED_ATTR = "sampler_seed"  # trial user attribute: that process's sampler seed
TRAINER_DEFAULT_EPOCHS = 3  # TrainingArguments.num_train_epochs when the spec sets none


@dataclass(frozen=True)
class SamplerStart:
    """This process's start number among the study's sampling processes, and its sampler seed."""

    number: int
    seed: int | None

    def attrs(self) -> dict[str, int | None]:
        """What each trial this process samples records of it."""
        return {START_ATTR: self.number, SAMPLER_SEED_ATTR: self.seed}


def seed_sampler(study: optuna.Study, spec: SamplerSpec) -> SamplerStart:
    """Take this process's start number from the storage and give `study` the spec's sampler seeded
    for it. Called once by every process that samples, before its first trial."""
    number = take_start_number(study)
    study.sampler = make_sampler(spec, number)
    return SamplerStart(number, start_seed(spec.seed, number))


def make_sampler(spec: SamplerSpec, start: int = 0) -> optuna.samplers.BaseSampler:
    """The spec's sampler for the process of start number `start` (see seed_sampler): processes
    with one seed would all suggest the same parameters. Start 0 keeps the spec's seed exactly."""
    seed = start_seed(spec.seed, start)
    if spec.name == "auto":
        # A StudySpec has chosen for its space already (hpsearch/spec/auto_sampler.py); without
        # the space, auto's choice for any space.
        spec = spec.model_copy(update={"name": "tpe", "multivariate": True, "group": True})
    startup = {} if spec.n_startup_trials is None else {"n_startup_trials": spec.n_startup_trials}
    if spec.name == "tpe":
        # constant_liar (on unless the spec says otherwise): running trials count as bad guesses,
        # so parallel workers spread out.
        tpe = {
            "multivariate": bool(spec.multivariate),
            "group": bool(spec.group),
            "constant_liar": spec.constant_liar is not False,
        }
        if spec.n_ei_candidates is not None:
            tpe["n_ei_candidates"] = spec.n_ei_candidates
        with warnings.catch_warnings():
            # group is "experimental" in Optuna 5; the spec chose it, and a warning at every
            # worker start tells the user nothing new.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, **tpe, **startup)
    if spec.name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if spec.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, **startup)
    if spec.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, **startup)
    if spec.name == "qmc":
        # The sequence is the study's, shared through the storage (with scrambling its seed would
        # have to be the same everywhere); the draws before the first complete trial are each
        # process's own.
        return optuna.samplers.QMCSampler(
            seed=spec.seed, independent_sampler=optuna.samplers.RandomSampler(seed=seed)
        )
    raise ValueError(
        f"unknown sampler {spec.name!r}"
    )  # pragma: no cover - the spec admits no other


def start_seed(seed: int | None, start: int) -> int | None:
    """The sampler seed of start number `start`: the spec's seed for start 0, one derived from
    both for any other (None, an unseeded sampler, stays None)."""
    if seed is None or start == 0:
        return seed
    digest = hashlib.sha256(f"{seed}:start:{start}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def max_evaluations(spec: StudySpec) -> int | None:
    """The most evaluations a trial of `spec` reports: its most epochs x `evals_per_epoch`. None
    where `max_steps` sets the length (the count then depends on the data's size)."""
    if "max_steps" in spec.training or "max_steps" in spec.searched_params:
        return None
    epochs = spec.searched_params.get("num_train_epochs")
    fixed = spec.training.get("num_train_epochs", TRAINER_DEFAULT_EPOCHS)
    if epochs is None:
        most = fixed
    else:
        # A trial that leaves a conditional num_train_epochs out trains Trainer's default.
        most = max([*param_ends(epochs), *([fixed] if is_conditional(epochs) else [])])
    return max(1, math.ceil(float(most) * spec.pruner.evals_per_epoch - 1e-9))


def make_pruner(spec: PrunerSpec, max_evals: int | None = None) -> optuna.pruners.BasePruner:
    """The spec's pruner. `max_evals` (max_evaluations) fixes Hyperband's brackets from the start:
    without it Optuna waits for a complete trial to estimate them ('auto'), and until then records
    no rung of any trial, and processes that estimate at different times may disagree."""
    if spec.name == "none":
        return optuna.pruners.NopPruner()
    first, after = spec.first_rung_evals, {"min_trials": spec.trials_before_pruning}
    if spec.name in ("hyperband", "successive_halving"):
        if spec.reduction_factor is not None:
            after["reduction_factor"] = spec.reduction_factor
        if spec.name == "successive_halving":
            return SuccessiveHalvingPruner(min_resource=first, **after)
        # Optuna's 'auto' takes the last step of a complete trial + 1 (it counts steps from 0):
        # the same from the spec keeps the brackets a study always had.
        most = "auto" if max_evals is None else max(max_evals, first) + 1
        return HyperbandPruner(min_resource=first, max_resource=most, **after)
    if spec.name == "median":
        # Its own start-up count is min_trials under Optuna's name (trials_before_pruning reads
        # either): one count, ours. Optuna prunes from step == n_warmup_steps on, and evaluation k
        # is step k: the first rung's evaluation is the first step it may prune at.
        return MedianPruner(n_startup_trials=0, n_warmup_steps=first, **after)
    raise ValueError(f"unknown pruner {spec.name!r}")  # pragma: no cover - the spec admits no other


class _AfterMinTrials:
    """Prunes nothing until `min_trials` trials of the study have completed, then as the pruner
    does.

    The pruner is asked at every evaluation all the same: successive halving records each trial's
    value at each rung as it is asked (in the storage, for every process), so the trials of the
    warm-up become the competitors of the first trials it prunes, in a process that joins late as
    in the first. Without them a trial is compared with the one or two trials of its bracket that
    reached the rung before it, and must beat them all (Optuna's rule for the first
    `reduction_factor - 1` trials of a rung): a coin toss on a noisy early evaluation. Hyperband
    records from the study's first evaluation on only when it is given its max_resource (see
    make_pruner). The count of complete trials is the study's, read from the storage, so every
    process ends its warm-up at the same point.
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
