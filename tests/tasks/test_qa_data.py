"""The offline QA data in studies/data/qa*/ is what tools/make_qa_data.py writes, and is sound."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO

DATA = REPO / "studies" / "data"
FILES = [
    f"{variant}/{split}.jsonl" for variant in ("qa", "qa_v2") for split in ("train", "validation")
]


def read(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def rows() -> dict[str, list[dict]]:
    return {name: read(DATA / name) for name in FILES}


def test_rerunning_the_tool_writes_the_same_bytes(tmp_path):
    completed = subprocess.run(
        [sys.executable, "tools/make_qa_data.py", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=False,
    )
    assert completed.returncode == 0, completed.stderr
    for name in FILES:
        # byte for byte the committed file: the tool is deterministic and the data up to date
        assert (tmp_path / name).read_bytes() == (DATA / name).read_bytes(), name


def test_every_answer_start_points_at_its_text(rows):
    n_answers = 0
    for name, file_rows in rows.items():
        for row in file_rows:
            answers = row["answers"]
            assert len(answers["text"]) == len(answers["answer_start"]), row["id"]
            for text, start in zip(answers["text"], answers["answer_start"], strict=True):
                assert text and row["context"][start : start + len(text)] == text, (name, row["id"])
                n_answers += 1
    assert n_answers > 1000


def test_ids_are_unique_and_no_tweet_is_in_both_splits(rows):
    for variant in ("qa", "qa_v2"):
        train, validation = rows[f"{variant}/train.jsonl"], rows[f"{variant}/validation.jsonl"]
        ids = [r["id"] for r in train + validation]
        assert len(ids) == len(set(ids))
        # a fifth of the tweets held out, by tweet: the same context is never in both splits
        assert not {r["title"] for r in train} & {r["title"] for r in validation}
        assert 0.1 < len(validation) / len(ids) < 0.3


def test_v1_is_all_answerable_and_v2_adds_unanswerable_questions(rows):
    for split in ("train", "validation"):
        v1, v2 = rows[f"qa/{split}.jsonl"], rows[f"qa_v2/{split}.jsonl"]
        assert all(r["answers"]["text"] for r in v1)
        unanswerable = [r for r in v2 if not r["answers"]["text"]]
        # every v1 question is in v2, plus unanswerable ones (about a third or more)
        assert [r for r in v2 if r["answers"]["text"]] == v1
        assert 0.3 < len(unanswerable) / len(v2) < 0.5
        # an unanswerable question is about a tweet that has answerable ones, on another type
        by_title = {}
        for r in v1:
            by_title.setdefault(r["title"], set()).add(r["question"])
        for r in unanswerable:
            assert r["question"] not in by_title[r["title"]]


def test_the_first_tweet_gives_the_hand_checked_answers(rows):
    # tweet 0: "@paulwalk It 's the view from where I 'm living for two weeks . Empire State
    # Building = ESB . ..."; its two facility entities start at characters 64 and 88
    every = [r for name in FILES if name.startswith("qa/") for r in rows[name]]
    facility = next(r for r in every if r["id"] == "wnut16-0000-facility")
    assert facility["question"] == "Which building or venue is mentioned?"
    assert facility["answers"] == {
        "text": ["Empire State Building", "ESB"],
        "answer_start": [64, 88],
    }
