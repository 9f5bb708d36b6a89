"""Spec parsing: every shape or value mistake is rejected with one line naming the key."""

from __future__ import annotations

import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import FloatParam, StudySpec, load_spec_file, parse_spec
from tests.conftest import REPO


def reject(spec: dict) -> str:
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "test.yaml")
    message = caught.value.message
    # A rejection is one line that says where it came from.
    assert "\n" not in message
    assert message.startswith("test.yaml: ")
    return message


def test_default_study_spec_is_valid():
    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    # The shipped default searches the learning rate on a log scale, for accuracy.
    assert spec.objective.eval_key == "eval_accuracy"
    assert spec.objective.direction == "maximize"
    assert isinstance(spec.search_space["learning_rate"], FloatParam)
    assert spec.search_space["learning_rate"].log


def test_stored_form_round_trips(tiny_spec):
    spec = parse_spec(tiny_spec, "t")
    # What is stored with the study parses back to the same spec.
    assert StudySpec.model_validate(spec.to_dict()) == spec
    assert spec.to_dict()["search_space"]["learning_rate"] == {
        "float": [1e-5, 3e-4],
        "log": True,
        "step": None,
    }


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s.update(modle="x"), "modle: unknown key"),
        (
            lambda s: s["dataset"].update(max_train_sample=10),
            "dataset.max_train_sample: unknown key (did you mean max_train_samples?)",
        ),
        (lambda s: s.pop("model"), "model: missing"),
        (lambda s: s.pop("budget"), "budget: missing"),
        (
            lambda s: s["budget"].update(n_trials=0),
            "budget.n_trials: Input should be greater than or equal to 1",
        ),
        (
            lambda s: s["budget"].update(n_trials="many"),
            "budget.n_trials: Input should be a valid integer",
        ),
        (lambda s: s["dataset"].update(max_length="long"), "dataset.max_length"),
        (
            lambda s: s["dataset"].update(eval_fraction=1.5),
            "dataset.eval_fraction: Input should be less than 1",
        ),
        (
            lambda s: s["dataset"].update(eval_split="validation", eval_fraction=0.2),
            "give one of eval_split, eval_source, eval_fraction",
        ),
        (
            lambda s: s["search_space"].update(learning_rate={"float": [1e-3, 1e-5]}),
            "search_space.learning_rate: range [0.001, 1e-05] is inverted",
        ),
        (
            lambda s: s["search_space"].update(learning_rate={"float": [1e-3, 1e-3]}),
            "search_space.learning_rate: range [0.001, 0.001] is empty",
        ),
        (
            lambda s: s["search_space"].update(weight_decay={"float": [0.0, 0.1], "log": True}),
            "search_space.weight_decay: log: true needs low > 0",
        ),
        (
            lambda s: s["search_space"].update(num_train_epochs={"int": [1, 3], "step": 0}),
            "search_space.num_train_epochs.step: Input should be greater than 0",
        ),
        (
            lambda s: s["search_space"].update(num_train_epochs={"int": [1.5, 3]}),
            "search_space.num_train_epochs",
        ),
        (
            lambda s: s["search_space"].update(per_device_train_batch_size={"choice": []}),
            "search_space.per_device_train_batch_size.choice: List should have at least 1 item",
        ),
        (
            lambda s: s["search_space"].update(per_device_train_batch_size={"choice": [8, 8]}),
            "choices must be distinct",
        ),
        (
            lambda s: s["search_space"].update(seed={"range": [1, 2]}),
            "search_space.seed: a parameter needs exactly one of float",
        ),
        (
            lambda s: s["search_space"].update(x={"float": [0, 1], "int": [0, 1]}),
            "search_space.x: a parameter needs exactly one of",
        ),
        (
            lambda s: s["search_space"].update(learning_rate={"float": [1e-5, 1e-3], "bins": 3}),
            "search_space.learning_rate.bins: unknown key",
        ),
        (
            lambda s: s.update(search_space={}),
            "search_space: Dictionary should have at least 1 item",
        ),
        (
            lambda s: s["training"].update(learning_rate=1e-4),
            "learning_rate is both searched and fixed",
        ),
        (
            lambda s: s["objective"].update(metric="bleu"),
            "objective.metric: unknown metric 'bleu'; the evaluation returns accuracy, f1_macro",
        ),
        (
            lambda s: s["objective"].update(metric="loss", direction="maximize"),
            "direction maximize for loss would search for the worst model; use direction: minimize",
        ),
        (
            lambda s: s["objective"].update(direction="up"),
            "objective.direction: Input should be 'maximize' or 'minimize'",
        ),
        (
            lambda s: s.update(sampler={"name": "grid"}),
            "sampler.name: Input should be 'tpe', 'random', 'gp', 'cmaes', 'qmc' or 'auto'",
        ),
        (
            lambda s: s.update(pruner={"name": "hyperband", "evals_per_epoch": 0}),
            "pruner.evals_per_epoch: Input should be greater than or equal to 1",
        ),
        (
            lambda s: s.update(heartbeat={"interval": 10, "grace_period": 5}),
            "heartbeat: grace_period (5s) must exceed interval (10s)",
        ),
        (
            lambda s: s.update(heartbeat={"max_retries": -1}),
            "heartbeat.max_retries: Input should be greater than or equal to 0",
        ),
        (
            lambda s: s.update(pruner={"name": "patient"}),
            "pruner.name: Input should be 'hyperband', 'successive_halving', 'median' or 'none'",
        ),
        # A setting its sampler or pruner would ignore is refused with the rule.
        (
            lambda s: s.update(sampler={"name": "random", "n_startup_trials": 5}),
            (
                "sampler: the random sampler takes no n_startup_trials (only tpe and gp and cmaes "
                "and auto do); remove it, or use name: tpe or gp or cmaes or auto"
            ),
        ),
        (
            lambda s: s.update(sampler={"name": "qmc", "n_startup_trials": 5}),
            "sampler: the qmc sampler takes no n_startup_trials",
        ),
        (
            lambda s: s.update(pruner={"name": "median", "min_resource": 2}),
            (
                "pruner: the median pruner takes no min_resource (only hyperband and "
                "successive_halving do); remove it, or use name: hyperband or successive_halving"
            ),
        ),
        (
            lambda s: s.update(pruner={"name": "median", "reduction_factor": 3}),
            "pruner: the median pruner takes no reduction_factor",
        ),
        (
            lambda s: s.update(pruner={"name": "hyperband", "n_warmup_steps": 2}),
            (
                "pruner: the hyperband pruner takes no n_warmup_steps (only median does); remove "
                "it, or use name: median"
            ),
        ),
        (
            lambda s: s.update(pruner={"name": "successive_halving", "n_startup_trials": 2}),
            "pruner: the successive_halving pruner takes no n_startup_trials",
        ),
        (
            lambda s: s.update(pruner={"name": "none", "min_resource": 1}),
            "pruner: the none pruner takes no min_resource",
        ),
    ],
)
def test_rejects_mistakes_naming_the_key(tiny_spec, mutate, expected):
    mutate(tiny_spec)
    assert expected in reject(tiny_spec)


def test_metric_accepts_eval_prefix_and_infers_direction(tiny_spec):
    tiny_spec["objective"] = {"metric": "eval_loss"}
    spec = parse_spec(tiny_spec, "t")
    # eval_loss and loss are the same metric; a loss is minimized unless told otherwise.
    assert spec.objective.metric == "loss"
    assert spec.objective.direction == "minimize"


def test_scientific_notation_without_dot_is_a_number(tiny_spec):
    # YAML 1.1 reads 1e-5 as a string; a user writes it anyway and means a number.
    tiny_spec["search_space"]["learning_rate"] = {"float": ["1e-5", "3e-4"], "log": True}
    assert parse_spec(tiny_spec, "t").search_space["learning_rate"].bounds == (1e-5, 3e-4)


@pytest.mark.parametrize("path", sorted((REPO / "studies").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_shipped_study_parses_and_round_trips(path):
    spec = load_spec_file(path)
    stored = spec.to_dict()
    # The task is stored at the top, and the dataset section holds only that task's keys.
    assert stored["task"] == spec.task and "task" not in stored["dataset"]
    assert set(stored["dataset"]) <= set(spec.task_spec.Dataset.model_fields)
    assert StudySpec.model_validate(stored) == spec


def test_a_spec_stored_before_tasks_existed_resumes_as_text_classification(tiny_spec):
    # Studies created before `task:` existed have no such key: they are classification studies,
    # and their stored spec compares equal to the same spec written today.
    old = parse_spec(tiny_spec, "old").to_dict()
    del old["task"]
    assert parse_spec(old, "stored").to_dict() == parse_spec(tiny_spec, "new").to_dict()


def test_each_task_has_its_default_objective(tiny_spec):
    defaults = {
        "text-classification": ("accuracy", "maximize"),
        "token-classification": ("f1", "maximize"),
        "seq2seq": ("rougeL", "maximize"),
        "causal-lm": ("loss", "minimize"),
    }
    for task, expected in defaults.items():
        spec = {**tiny_spec, "task": task, "dataset": {"source": "x.jsonl"}}
        spec.pop("objective")
        parsed = parse_spec(spec, "t")
        assert (parsed.objective.metric, parsed.objective.direction) == expected


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (
            lambda s: s.update(task="ner"),
            (
                "task: Input should be 'text-classification', 'token-classification', 'seq2seq', "
                "'causal-lm' or 'question-answering'"
            ),
        ),
        (
            lambda s: s["dataset"].update(tags="ner_tags"),
            (
                "dataset.tags: the text-classification task takes no tags (token-classification "
                "does); remove it, or set task: token-classification"
            ),
        ),
        (
            lambda s: s["dataset"].update(prompt="q"),
            "dataset.prompt: the text-classification task takes no prompt (causal-lm does)",
        ),
        (
            lambda s: s.update(dataset="data.csv"),
            "dataset: expected a mapping of keys (source:, ...)",
        ),
        (
            lambda s: s["dataset"].update(task="seq2seq"),
            "dataset.task: the task goes at the top of the spec (task: ...), not under dataset:",
        ),
        (
            lambda s: s["search_space"].update(num_beams={"choice": [1, 4]}),
            (
                "search_space.num_beams: a generation setting, but the text-classification task "
                "does not generate when it evaluates (seq2seq does); remove it"
            ),
        ),
        (
            lambda s: s.update(objective={"metric": "rougeL"}),
            (
                "objective.metric: unknown metric 'rougeL'; the evaluation returns accuracy, "
                "f1_macro, f1_weighted, precision_macro, recall_macro, loss (rougeL is a metric of "
                "task: seq2seq)"
            ),
        ),
    ],
)
def test_task_mistakes_name_the_key(tiny_spec, mutate, expected):
    mutate(tiny_spec)
    assert expected in reject(tiny_spec)


def test_peft_values_are_fixed_or_searched_and_round_trip(tiny_spec):
    tiny_spec["peft"] = {
        "r": {"int": [4, 32], "log": True},
        "alpha": 32,
        "target_modules": {"choice": ["query,value", "all-linear"]},
    }
    spec = parse_spec(tiny_spec, "test.yaml")
    # The searched values join the search space as peft.<key>; the fixed ones stay in the section.
    assert set(spec.searched_params) == {
        "learning_rate",
        "per_device_train_batch_size",
        "peft.r",
        "peft.target_modules",
    }
    assert spec.peft.resolve({"peft.r": 8, "peft.target_modules": "query,value"}) == {
        "method": "lora",
        "r": 8,
        "alpha": 32,
        "dropout": 0.1,
        "target_modules": ["query", "value"],
        "bias": "none",
        "use_dora": False,
    }
    assert StudySpec.model_validate(spec.to_dict()) == spec


def test_early_stopping_and_the_value_of_a_trial(tiny_spec):
    tiny_spec["early_stopping"] = {"patience": 2}
    tiny_spec["objective"]["value"] = "best"
    spec = parse_spec(tiny_spec, "test.yaml")
    assert (spec.early_stopping.patience, spec.early_stopping.min_delta, spec.objective.value) == (
        2,
        0.0,
        "best",
    )
    # The defaults: no early stopping, a trial's value is its last evaluation.
    plain = parse_spec(
        {k: v for k, v in tiny_spec.items() if k != "early_stopping"}
        | {"objective": {"metric": "accuracy"}},
        "t",
    )
    assert plain.early_stopping is None and plain.objective.value == "last"


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda s: s.update(peft={"r": 0}), "peft.r: 0 is not an integer of at least 1"),
        (
            lambda s: s.update(peft={"r": {"int": [0, 8]}}),
            "peft.r: 0 is not an integer of at least 1",
        ),
        (lambda s: s.update(peft={"alpha": -1}), "peft.alpha: -1 is not a number above 0"),
        (
            lambda s: s.update(peft={"dropout": {"float": [0.0, 1.0]}}),
            "peft.dropout: 1.0 is not a probability in [0, 1)",
        ),
        (
            lambda s: s.update(peft={"bias": "some"}),
            "peft.bias: 'some' is not one of none, all, lora_only",
        ),
        (
            lambda s: s.update(peft={"target_modules": []}),
            "peft.target_modules: [] is not module names",
        ),
        (lambda s: s.update(peft={"rank": 8}), "peft.rank: unknown key"),
        (
            lambda s: s.update(peft={"method": "adalora"}),
            "peft.method: 'adalora' is not one of lora, ia3, prompt_tuning, prefix_tuning",
        ),
        (
            lambda s: s.update(early_stopping={"patience": 0}),
            "early_stopping.patience: Input should be greater than or equal to 1",
        ),
        (lambda s: s.update(early_stopping={"min_delta": 0.1}), "early_stopping.patience: missing"),
        (
            lambda s: s["objective"].update(value="mean"),
            "objective.value: Input should be 'last' or 'best'",
        ),
        (
            lambda s: (s.update(peft={}), s["training"].update(freeze_embeddings=True)),
            "training.freeze_embeddings: with peft: every pretrained weight is frozen already",
        ),
    ],
)
def test_technique_mistakes_name_the_key(tiny_spec, mutate, expected):
    mutate(tiny_spec)
    assert reject(tiny_spec).startswith(f"test.yaml: {expected}")


def test_checkpoint_is_on_every_evaluation_by_default_and_false_turns_it_off(tiny_spec):
    # Default: a checkpoint after every evaluation; `true` is the same, `false` (or null) none.
    assert parse_spec(tiny_spec, "t").checkpoint.every == 1
    assert parse_spec({**tiny_spec, "checkpoint": True}, "t").checkpoint.every == 1
    assert parse_spec({**tiny_spec, "checkpoint": {"every": 3}}, "t").checkpoint.every == 3
    assert parse_spec({**tiny_spec, "checkpoint": False}, "t").checkpoint is None
    # Either way, the stored form parses back to the same spec.
    for value in (False, {"every": 2}):
        spec = parse_spec({**tiny_spec, "checkpoint": value}, "t")
        assert StudySpec.model_validate(spec.to_dict()) == spec


@pytest.mark.parametrize(
    "value, expected",
    [
        ({"every": 0}, "checkpoint.every: Input should be greater than or equal to 1, got 0"),
        ({"every": "often"}, "checkpoint.every: Input should be a valid integer"),
        ({"evry": 2}, "checkpoint.evry: unknown key (did you mean every?)"),
        (3, "checkpoint: expected {every: N} (evaluations) or false, got 3"),
        ("off", "checkpoint: expected {every: N} (evaluations) or false, got 'off'"),
    ],
)
def test_checkpoint_mistakes_name_the_key(tiny_spec, value, expected):
    assert expected in reject({**tiny_spec, "checkpoint": value})
