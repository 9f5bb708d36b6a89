"""A finished trial frees what it used: five real trials in one process, memory measured after each.

Each trial builds a model (MiniLM-L6, 22.7M parameters: 91 MB of fp32 weights), AdamW's two
moments (twice that), Trainer's data loaders, its accelerate state and the evaluation's records.
Kept by anything past its trial (a callback, the runner, the background writer of the best model,
accelerate), each trial would add at least one model's size to the process: RSS after the fifth
trial may exceed RSS after the first by less than ONE model's weights (`bound`), so a leak of even
a single model's parameters over four trials fails. Measured on the development machine: 884, 878,
878, 878, 878 MiB after trials 1-5, against a bound of 86 MiB. What the first trial allocates once
(the allocator's arenas, torch's and the tokenizer's caches) is in the baseline. Beside RSS, each
trial's model must be gone (a weak reference to it is dead) and no model object is added to what
the process held before the first trial.
"""

from __future__ import annotations

import gc
import os
import warnings
import weakref

import optuna
import pytest
import torch
from transformers import PreTrainedModel, Trainer

from hpsearch.errors import TrialFailed
from hpsearch.spec import parse_spec
from hpsearch.storage import open_storage, resolve_storage_url
from hpsearch.workers import build_runner

pytestmark = pytest.mark.slow

N_TRIALS = 5


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def live(kind: type) -> int:
    with warnings.catch_warnings():  # isinstance on torch's deprecated module attributes warns
        warnings.simplefilter("ignore")
        return sum(1 for o in gc.get_objects() if isinstance(o, kind))


def test_five_trials_in_one_process_leave_no_model_behind(
    tiny_spec, tmp_path, cache_dir, monkeypatch
):
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache_dir))
    # Every trial of one shape (batch 16, one step, one evaluation): what the first allocates for
    # its activations, the others reuse; only the learning rate differs.
    tiny_spec["dataset"].update(max_train_samples=16, max_eval_samples=16)
    tiny_spec["search_space"] = {"learning_rate": {"float": [1e-4, 3e-4], "log": True}}
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 16}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    spec = parse_spec(tiny_spec, "t")
    url = resolve_storage_url(f"sqlite:///{tmp_path / 'hp.db'}")
    runner = build_runner(spec, url, "memory")
    study = optuna.create_study(
        storage=open_storage(url),
        study_name="memory",
        direction="maximize",
        sampler=optuna.samplers.RandomSampler(seed=0),
        pruner=optuna.pruners.NopPruner(),
    )
    models: list[weakref.ref] = []
    weights: list[int] = []  # each built model's bytes of parameters
    build = runner.factory.build

    def build_and_watch(*args, **kwargs):
        model = build(*args, **kwargs)
        models.append(weakref.ref(model))
        weights.append(sum(p.numel() * p.element_size() for p in model.parameters()))
        return model

    monkeypatch.setattr(runner.factory, "build", build_and_watch)
    # Models and Trainers other tests of this process still hold (a module's fixture) are not ours.
    gc.collect()
    models_before, trainers_before = live(PreTrainedModel), live(Trainer)
    rss, cuda = [], []
    for _ in range(N_TRIALS):
        study.optimize(runner, n_trials=1, catch=(TrialFailed,))
        gc.collect()
        rss.append(rss_bytes())
        if torch.cuda.is_available():
            cuda.append(torch.cuda.memory_allocated())
        # The trial's model is gone once its trial is: nothing (callbacks, the runner, the
        # writer of the best model, accelerate) keeps it, nor any other model or Trainer.
        assert models[-1]() is None
        assert live(PreTrainedModel) == models_before and live(Trainer) == trainers_before
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * N_TRIALS
    assert len(models) == N_TRIALS
    # Less than one model's weights of growth from the first trial's end to the fifth's.
    bound = weights[0]
    assert rss[-1] - rss[0] < bound, [f"{r / 2**20:.0f} MiB" for r in rss]
    if cuda:
        assert cuda[-1] - cuda[0] < bound, cuda
    runner.best_model.close()
