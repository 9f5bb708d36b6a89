"""The best model unpacked into a directory `transformers.pipeline` loads, with a model card.

Weights, card and message all describe one trial: the one the kept archive names in its
TRIAL_FILE, which must be the one the study's best-model pointer names, a COMPLETE trial with
study.best_trial's value (storage.resolve_best_model); otherwise nothing is written. A directory
is only ever written new: a model is never written over another.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import optuna
from optuna.artifacts import download_artifact

from hpsearch.errors import HpsearchError, StudyError
from hpsearch.storage import TRIAL_FILE, resolve_best_model
from hpsearch.study import stored_spec
from hpsearch.views import (
    ADAPTER_CONFIG,
    choose_kept_model,
    describe_trial_record,
    model_card,
    read_adapter_settings,
)


def export_best_model(
    storage,
    name: str,
    artifact_store,
    out_dir: Path,
    finish: Callable[[Path, Any], None] | None = None,
    *,
    trial: int | None = None,
    max_latency_ms: float | None = None,
) -> dict:
    """Unpack the study's best model into `out_dir` (which must be new or empty) and add a card;
    returns the record of the trial whose model it is. `finish(model_dir, spec)` makes the
    unpacked model deployable (merges a LoRA adapter) before the card is written; a failure
    leaves nothing in `out_dir`. `trial` exports that trial's kept model instead, and
    `max_latency_ms` the kept Pareto front member best on the first objective within it."""
    spec = stored_spec(storage, name)  # an unknown study is one clear line, before anything else
    study = optuna.load_study(study_name=name, storage=storage)
    if trial is None and max_latency_ms is None:
        kept = resolve_best_model(study)
        if kept.problem is not None:
            raise StudyError(kept.problem)
        pointer = kept.pointer
    else:
        pointer = choose_kept_model(study, spec, trial, max_latency_ms)
    check_new_directory(out_dir)
    with tempfile.TemporaryDirectory(prefix="hpsearch-export-") as scratch:
        archive = Path(scratch) / "model.zip"
        try:
            download_artifact(
                artifact_store=artifact_store,
                artifact_id=pointer["artifact_id"],
                file_path=str(archive),
            )
        except Exception as e:  # noqa: BLE001 - each artifact store raises its own not-found type
            raise HpsearchError(
                f"the best model's file (artifact {pointer['artifact_id']}) is not in the artifact "
                f"store: {e}; point HPSEARCH_ARTIFACTS at the store the workers wrote to"
            ) from None
        staging = Path(scratch) / "model"
        with zipfile.ZipFile(archive) as zf:
            zf.extractall(staging)
        held = _trial_held(staging, pointer)
        record = describe_trial_record(study, spec, study.trials[held])
        spec = spec.for_trial(study.trials[held].params)  # the model it was fine-tuned from
        adapter = read_adapter_settings(staging)
        if finish is not None:
            finish(staging, spec)
        form = (
            "adapter" if (staging / ADAPTER_CONFIG).is_file() else "merged" if adapter else "full"
        )
        (staging / "README.md").write_text(
            model_card(name, spec, record, adapter=adapter, form=form)
        )
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        if out_dir.exists():
            out_dir.rmdir()
        shutil.move(str(staging), out_dir)
    return record


def check_new_directory(out_dir: Path) -> None:
    """`out_dir` does not exist, or is an empty directory: a model is never written over another."""
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise HpsearchError(f"{out_dir} exists and is not an empty directory; name a new one")


@contextmanager
def staged_directory(out_dir: Path) -> Iterator[Path]:
    """A staging directory beside `out_dir` (new or empty) that becomes it, by a rename, when the
    block ends; a block that raises leaves nothing, neither `out_dir` nor the staging directory."""
    check_new_directory(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.staging-", dir=out_dir.parent))
    try:
        yield staging
        check_new_directory(out_dir)  # something may have been written there in the meantime
        if out_dir.exists():
            out_dir.rmdir()
        os.rename(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _trial_held(model_dir: Path, pointer: dict) -> int:
    """The trial whose weights the archive holds; it must be the one the pointer names."""
    marker = model_dir / TRIAL_FILE
    held = json.loads(marker.read_text())["trial"] if marker.is_file() else pointer["trial"]
    if held != pointer["trial"]:
        raise HpsearchError(
            f"the best model's archive holds trial {held} but the study points at trial "
            f"{pointer['trial']}; the storage and the artifact store disagree (was "
            "HPSEARCH_ARTIFACTS changed?)"
        )
    return held
