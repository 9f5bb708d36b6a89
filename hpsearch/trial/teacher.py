"""The teacher of `distill:`: found, checked against the student, and its logits on the training
set computed once and cached beside the tokenized data.

A teacher is another study's kept model (best-of:STUDY, trial:STUDY/N, unpacked once from the
artifact store into the cache under its artifact id, which no other model ever gets) or a saved
model directory. Before any trial runs it must do the student's task (its head), predict the
student's labels in the same order, and share the student's vocabulary (the logits are computed on
the student's token ids); anything else is one SpecError line.

Its logits are a cache entry of their own, keyed by the tokenized data's cache key and the
teacher's content (the digest of its files): every trial, worker and later run on the same data
and teacher reads them back; a retrained teacher or changed data computes them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from hpsearch.errors import HpsearchError, SpecError, first_line
from hpsearch.spec import Location, StudySpec, resolve_model
from hpsearch.spec.distill import DistillSpec
from hpsearch.trial.classes import transformers_class
from hpsearch.trial.data import PreparedData, cache_key
from hpsearch.trial.distill import TEACHER_COLUMN
from hpsearch.trial.fingerprint import file_fingerprint
from hpsearch.trial.model import count_layers

TEACHER_CACHE_VERSION = 1
TEACHERS_DIR = "teachers"  # under the cache directory: kept models unpacked, by artifact id
ADAPTER_CONFIG = "adapter_config.json"
_BATCH = 32


def with_teacher_logits(
    spec: StudySpec, tokenizer, data: PreparedData, cache_dir: Path, url=None
) -> PreparedData:
    """`data` whose training set carries the teacher's logits (TEACHER_COLUMN), from the cache or
    computed now; the teacher checked first (SpecError)."""
    from datasets import concatenate_datasets, load_from_disk

    teacher = find_teacher(spec.distill, cache_dir, url)
    check_teacher(spec, teacher, tokenizer, data.label_names)
    identity = {
        "data": cache_key(spec.dataset, spec.model, tokenizer, cache_dir),
        "teacher": _teacher_fingerprint(teacher, cache_dir),
        "v": TEACHER_CACHE_VERSION,
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    target = cache_dir / f"teacher-{key}"
    if not (target / "dataset_info.json").is_file():
        _build_logits(spec, teacher, tokenizer, data, target)
    logits = load_from_disk(str(target))
    if len(logits) != len(data.train):  # pragma: no cover - the key covers the data
        raise HpsearchError(f"{target}: cached teacher logits do not match the data; remove it")
    train = concatenate_datasets([data.train, logits], axis=1)
    return PreparedData(train=train, eval=data.eval, label_names=data.label_names, test=data.test)


def find_teacher(distill: DistillSpec, cache_dir: Path, url=None) -> Location:
    """Where the teacher's files are: a directory (or package:/hub reference) as written, or the
    kept model of a study, unpacked into the cache."""
    if distill.teacher_kind == "directory":
        return resolve_model(distill.teacher, "distill.teacher")
    pointer = _kept_pointer(distill, url)
    directory = cache_dir / TEACHERS_DIR / pointer["artifact_id"]
    if not directory.is_dir():
        _unpack(pointer["artifact_id"], directory, url)
    if (directory / ADAPTER_CONFIG).is_file():
        study, _ = distill.teacher_study
        raise SpecError(
            f"distill.teacher: {distill.teacher} kept a LoRA adapter, not a whole model; export it "
            f"merged (hpsearch export --study {study} DIR) and name DIR as the teacher"
        )
    return Location(reference=distill.teacher, path=directory)


def _kept_pointer(distill: DistillSpec, url) -> dict:
    """The kept model's pointer ({"trial", "artifact_id", ...}) of best-of: or trial:STUDY/N."""
    import optuna

    from hpsearch.storage import (
        closing_storage,
        front_model_pointers,
        resolve_best_model,
        resolve_storage_url,
    )
    from hpsearch.study import stored_spec

    name, number = distill.teacher_study
    url = url if url is not None else resolve_storage_url(None)
    # Read once per trial: each trial's storage is closed, not left to the garbage collector.
    with closing_storage(url, must_exist=True) as storage:
        try:
            stored_spec(storage, name)
        except HpsearchError as e:
            raise SpecError(f"distill.teacher: {e.message}") from None
        study = optuna.load_study(study_name=name, storage=storage)
        if len(study.directions) > 1:
            kept = {p["trial"]: p for p in front_model_pointers(study)}
        else:
            best = resolve_best_model(study)
            if number is None and best.problem is not None:
                raise SpecError(f"distill.teacher: {best.problem}")
            kept = {best.pointer["trial"]: best.pointer} if best.pointer else {}
    if number is None:
        if not kept:  # a Pareto front has no one best
            raise SpecError(
                f"distill.teacher: study {name!r} has several objectives and no one best model; "
                f"name one of its kept trials as trial:{name}/N"
            )
        if len(kept) == 1:
            return next(iter(kept.values()))
        raise SpecError(
            f"distill.teacher: study {name!r} keeps several models (its Pareto front: trials "
            f"{', '.join(map(str, sorted(kept)))}); name one as trial:{name}/N"
        )
    if number not in kept:
        listed = ", ".join(map(str, sorted(kept))) or "none"
        raise SpecError(
            f"distill.teacher: trial {number}'s model was not kept by study {name!r} (kept: "
            f"trials {listed}); name a kept trial, or best-of:{name}"
        )
    return kept[number]


def _unpack(artifact_id: str, directory: Path, url) -> None:
    """The kept archive, unpacked into `directory` whole or not at all (a rename)."""
    from optuna.artifacts import download_artifact

    from hpsearch.storage import artifact_dir, open_artifact_store, resolve_storage_url

    url = url if url is not None else resolve_storage_url(None)
    store = open_artifact_store(artifact_dir(url), create=False)
    directory.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".teacher-", dir=directory.parent) as scratch:
        archive = Path(scratch) / "model.zip"
        try:
            download_artifact(artifact_store=store, artifact_id=artifact_id, file_path=str(archive))
        except Exception as e:  # noqa: BLE001 - each artifact store raises its own not-found type
            raise SpecError(
                f"distill.teacher: the kept model's file (artifact {artifact_id}) is not in the "
                f"artifact store: {first_line(e)}; point HPSEARCH_ARTIFACTS at the store its "
                "workers wrote to"
            ) from None
        staging = Path(scratch) / "model"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        try:
            os.rename(staging, directory)
        except OSError:
            if not directory.is_dir():
                raise


def check_teacher(spec: StudySpec, teacher: Location, tokenizer, label_names) -> None:
    """The teacher does the student's task, predicts its labels in its order and shares its
    vocabulary; a SpecError says which does not hold."""
    from transformers import AutoConfig, AutoTokenizer

    reference = spec.distill.teacher
    source = str(teacher.path) if teacher.path is not None else teacher.hub_id
    try:
        config = AutoConfig.from_pretrained(source)
        teacher_tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError) as e:
        raise SpecError(f"distill.teacher: cannot load {reference}: {first_line(e)}") from None
    head = spec.task_spec.model_class.removeprefix("AutoModel")  # ForSequenceClassification
    architectures = getattr(config, "architectures", None) or []
    if not any(name.endswith(head) for name in architectures):
        found = ", ".join(architectures) or "no task head"
        raise SpecError(
            f"distill.teacher: {reference} is {found}, not a model of the {spec.task} task "
            f"(a ...{head}); fine-tune it for the task first, or name another teacher"
        )
    labels = [config.id2label[i] for i in range(config.num_labels)]
    if labels != list(label_names):
        raise SpecError(
            f"distill.teacher: {reference} predicts the labels {labels}, the data has "
            f"{list(label_names)}; a teacher must be trained on the same labels in the same order"
        )
    if teacher_tokenizer.get_vocab() != tokenizer.get_vocab():
        raise SpecError(
            f"distill.teacher: {reference} has another tokenizer than {spec.model} (their "
            "vocabularies differ) and reads the student's token ids; name a teacher fine-tuned "
            "from the same tokenizer"
        )
    layers = spec.distill.student_layers
    if layers is not None:
        from hpsearch.spec import param_ends
        from hpsearch.spec.param import is_param
        from hpsearch.trial.model import load_config

        most = max(param_ends(layers)) if is_param(layers) else layers
        total = count_layers(load_config(resolve_model(spec.model)))
        if total is None or most > total:
            raise SpecError(
                f"distill.student_layers: {most} layers, but {spec.model} has {total}; keep at "
                f"most {total}"
            )


def _teacher_fingerprint(teacher: Location, cache_dir: Path) -> str:
    if teacher.path is not None:
        return file_fingerprint(teacher.path, cache_dir)
    return teacher.reference  # a hub model: its id


def _build_logits(
    spec: StudySpec, teacher: Location, tokenizer, data: PreparedData, target: Path
) -> None:
    """Run the teacher once over the training set and save its logits (a token task's cut to each
    row's length) at `target`, atomically."""
    import torch
    from datasets import Dataset

    task = spec.task_spec
    device = "cuda" if torch.cuda.is_available() else "cpu"
    source = str(teacher.path) if teacher.path is not None else teacher.hub_id
    model = transformers_class(task.model_class).from_pretrained(source).to(device).eval()
    collator = transformers_class(task.collator_class)(tokenizer, **task.collator_kwargs(model))
    inputs = [c for c in data.train.column_names if c != "labels"]
    rows: list = []
    with torch.inference_mode():
        for start in range(0, len(data.train), _BATCH):
            features = data.train.select(range(start, min(start + _BATCH, len(data.train))))
            batch = collator([{c: f[c] for c in inputs} for f in features])
            logits = model(**{k: v.to(device) for k, v in batch.items()}).logits.float().cpu()
            for i, feature in enumerate(features):
                if logits.dim() == 3:  # (tokens, classes): the row's own tokens
                    n = len(feature["input_ids"])
                    kept = logits[i, :n] if tokenizer.padding_side == "right" else logits[i, -n:]
                    rows.append(kept.tolist())
                else:
                    rows.append(logits[i].tolist())
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=target.parent))
    try:
        Dataset.from_dict({TEACHER_COLUMN: rows}).save_to_disk(str(staging))
        os.rename(staging, target)  # another worker building it at once: all or nothing
    except OSError:
        if not (target / "dataset_info.json").is_file():
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
