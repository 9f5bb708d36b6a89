"""The best model scored on the held-out test set (dataset.test_fraction / test_source /
test_split), once, after the search: an estimate of how it does on data the search never chose by.

The model is the one a user gets: the study's kept model as `export` unpacks it (a LoRA or IA3
adapter merged, a prompt or prefix tuning adapter loaded onto the pretrained model), or a final
training's directory. It is evaluated by the task's own Trainer and metrics,
as a trial's eval set is, with the prefix `test_`. The scores go to the study's record of test
scores (hpsearch.study.test_scores), which neither the sampler nor the pruner reads.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hpsearch.errors import HpsearchError
from hpsearch.spec import StudySpec
from hpsearch.study import claim_test_scoring, record_test_scores, stored_spec
from hpsearch.study.test_scores import TEST_PREFIX


def score_on_test_set(spec: StudySpec, model_dir: Path, cache_dir: Path) -> dict[str, float]:
    """Every metric of the task (and the loss) of the model in `model_dir` on `spec`'s test set,
    keyed test_<metric>."""
    from transformers import AutoTokenizer
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from hpsearch.spec import split_params
    from hpsearch.trial import build_training_args, prepare_data, transformers_class
    from hpsearch.trial.arguments import make_collator

    task = spec.task_spec
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    task.prepare_tokenizer(tokenizer)
    # Keyed by the study's model reference: the cache its workers built, test set included.
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir)
    if data.test is None:
        raise HpsearchError("the study's dataset holds no test set (dataset.test_*)")
    model = _load_model(spec, model_dir)
    arguments = split_params(dict(spec.training)).arguments
    with tempfile.TemporaryDirectory(prefix="hpsearch-test-") as scratch:
        trainer = transformers_class(task.trainer_class)(
            model=model,
            args=build_training_args(arguments, spec.seed, Path(scratch), task, spec=spec),
            eval_dataset=data.test,
            processing_class=tokenizer,
            data_collator=make_collator(task, tokenizer, model, arguments),
            compute_metrics=task.compute_metrics(
                spec.dataset, tokenizer, data.label_names, features=data.test
            ),
        )
        trainer.remove_callback(PrinterCallback)  # hpsearch shows the scores itself
        trainer.remove_callback(ProgressCallback)
        measured = trainer.evaluate(metric_key_prefix="test")
    as_eval = {f"eval_{k.removeprefix(TEST_PREFIX)}": v for k, v in measured.items()}
    derived = {
        f"{TEST_PREFIX}{k.removeprefix('eval_')}": v
        for k, v in task.derive_metrics(as_eval).items()
    }
    metrics = {f"{TEST_PREFIX}{m}": measured.get(f"{TEST_PREFIX}{m}") for m in task.metrics}
    return {k: float(v) for k, v in {**metrics, **derived}.items() if v is not None}


def _load_model(spec: StudySpec, model_dir: Path):
    """The model of `model_dir`: plain weights, or an adapter that could not be merged (prompt
    and prefix tuning's virtual tokens) loaded onto the study's pretrained model through PEFT."""
    from hpsearch.trial import transformers_class
    from hpsearch.views import ADAPTER_CONFIG

    auto_class = transformers_class(spec.task_spec.model_class)
    if not (model_dir / ADAPTER_CONFIG).is_file():
        return auto_class.from_pretrained(model_dir)
    from peft import PeftModel
    from transformers import AutoConfig

    from hpsearch.spec import resolve_model
    from hpsearch.trial.model import source_of

    config = AutoConfig.from_pretrained(model_dir)  # the label names the trial trained with
    base = auto_class.from_pretrained(source_of(resolve_model(spec.model)), config=config)
    return PeftModel.from_pretrained(base, model_dir)


def score_kept_models(
    storage, name: str, artifact_store, numbers: list[int], cache_dir: Path
) -> dict[int, dict[str, float]]:
    """Score on the test set the kept models of trials `numbers` (the best trial, or the members
    of a Pareto front), each once across processes: a trial scored or being scored elsewhere is
    skipped. Returns what this call scored. A trial whose model is not kept is skipped too."""
    import optuna

    from hpsearch.deploy.model_dir import export_best_model
    from hpsearch.storage import front_model_pointers, resolve_best_model

    spec = stored_spec(storage, name)
    if not spec.dataset.has_test_set:
        return {}
    study = optuna.load_study(study_name=name, storage=storage)
    if spec.is_multi_objective:  # each kept member of the Pareto front
        kept = {pointer["trial"] for pointer in front_model_pointers(study)}
    else:
        pointer = resolve_best_model(study).pointer
        kept = set() if pointer is None else {pointer["trial"]}
    wanted = [n for n in numbers if n in kept]
    scored = {}
    for number in claim_test_scoring(study, wanted):
        try:
            with tempfile.TemporaryDirectory(prefix="hpsearch-test-") as scratch:
                model_dir = Path(scratch) / "model"
                export_best_model(
                    storage, name, artifact_store, model_dir, _merge_adapter, trial=number
                )
                # The trial's own model and max_length, where the study searches them.
                trial_spec = spec.for_trial(study.trials[number].params)
                scores = score_on_test_set(trial_spec, model_dir, cache_dir)
        except BaseException:
            record_test_scores(study, number, None)  # a later run or `best` may score it
            raise
        record_test_scores(study, number, scores)
        scored[number] = scores
    return scored


def _merge_adapter(model_dir: Path, spec: StudySpec) -> None:
    from hpsearch.deploy.merge import make_deployable
    from hpsearch.views import ADAPTER_CONFIG, adapter_is_mergeable

    if (model_dir / ADAPTER_CONFIG).is_file():
        make_deployable(model_dir, spec, not adapter_is_mergeable(model_dir))
