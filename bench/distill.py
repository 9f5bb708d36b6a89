"""Distillation on the default study: a 3-layer student distilled from the default study's best
model, against the same 3-layer student fine-tuned without the teacher, with the same budget.

Three `hpsearch run`s on one fresh SQLite storage, in order, with the same data (the default
study's, plus a held-out test fraction so that every model is scored on rows no study saw) and the
same sampler seed:

- teacher: studies/sentiment.yaml as it is (6-layer MiniLM), --teacher-trials trials;
- distilled: the bottom 3 layers (`distill.student_layers: 3`) taught by `best-of:teacher`, its
  temperature and alpha searched with the study's own parameters;
- plain: the same 3-layer student with `alpha: 1` (the task loss alone: the teacher's term has
  weight 0), its search space the study's own; as many trials as the distilled one.

Both students train their 3 layers (the default study's `freeze_layers: 2` would leave one of the
three to train; `freeze_embeddings` stays). For each: the best trial's eval accuracy, its test
accuracy (scored by the run's end), its latency at batch 1 and weight size (the trial's recorded
costs), and the run's wall time.

    python bench/distill.py [--teacher-trials N] [--student-trials N]
        [--max-train-samples N --max-eval-samples N] [--json out.json]

A trial's own `latency_ms` is a median of 20 calls taken at its end, while the previous best
model's save may still be writing in the background: good enough to rank trials, noisy between
runs. `--latency-only` times the teacher's and the student's architecture alone instead (the
spec's model, all its layers and the bottom 3; weights do not change the time), REPEATS rounds of
the same 20 tweets (spread evenly over the source file) at batch 1, alternating the two models,
and prints each median.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent


def variants(base: dict, args) -> dict[str, dict]:
    base = copy.deepcopy(base)
    base["dataset"]["test_fraction"] = 0.1
    for cap in ("max_train_samples", "max_eval_samples"):
        if getattr(args, cap) is not None:
            base["dataset"][cap] = getattr(args, cap)
    teacher = {**copy.deepcopy(base), "budget": {"n_trials": args.teacher_trials}}
    student = copy.deepcopy(base)
    student["training"].pop("freeze_layers", None)
    student["budget"] = {"n_trials": args.student_trials}
    distilled = {
        **copy.deepcopy(student),
        "distill": {
            "teacher": "best-of:teacher",
            "temperature": {"float": [1.0, 8.0], "log": True},
            "alpha": {"float": [0.1, 0.9]},
            "student_layers": 3,
        },
    }
    plain = {
        **copy.deepcopy(student),
        "distill": {"teacher": "best-of:teacher", "alpha": 1.0, "student_layers": 3},
    }
    return {"teacher": teacher, "distilled": distilled, "plain": plain}


def best_of(storage: str, name: str) -> dict:
    import optuna

    from hpsearch.study import recorded_test_scores

    study = optuna.load_study(study_name=name, storage=storage)
    best = study.best_trial
    attrs = best.user_attrs
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    return {
        "best_trial": best.number,
        "eval_accuracy": best.value,
        "test_scores": recorded_test_scores(study).get(best.number),
        "latency_ms": attrs.get("latency_ms"),
        "model_size_mb": attrs.get("model_size_mb"),
        "params": attrs.get("params"),
        "params_of_best": best.params,
        "n_complete": len(done),
        "n_trials": len(study.trials),
        "train_seconds": sum(t.user_attrs.get("train_seconds", 0) for t in study.trials),
    }


REPEATS = 15


def architecture_latency(spec: dict, layers: tuple[int, ...] = (6, 3)) -> dict[int, float]:
    """Median milliseconds of one forward pass at batch 1, per number of layers kept."""
    import statistics

    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from hpsearch.spec.location import package_dir, resolve_model

    path = resolve_model(spec["model"]).path
    tokenizer = AutoTokenizer.from_pretrained(path)
    name, _, inner = spec["dataset"]["source"].removeprefix("package:").partition("/")
    frame = pd.read_csv(
        package_dir(name, "source") / inner, encoding=spec["dataset"].get("encoding", "utf-8")
    )
    texts = (
        frame[spec["dataset"].get("text", "text")].astype(str).tolist()[:: len(frame) // 20][:20]
    )
    inputs = [
        tokenizer(
            text, truncation=True, max_length=spec["dataset"]["max_length"], return_tensors="pt"
        )
        for text in texts
    ]
    models = {
        n: AutoModelForSequenceClassification.from_pretrained(
            path, num_labels=3, num_hidden_layers=n
        ).eval()
        for n in layers
    }
    seconds: dict[int, list[float]] = {n: [] for n in layers}
    with torch.inference_mode():
        for model in models.values():  # warm-up
            for batch in inputs[:5]:
                model(**batch)
        for _ in range(REPEATS):
            for n, model in models.items():
                for batch in inputs:
                    start = time.perf_counter()
                    model(**batch)
                    seconds[n].append(time.perf_counter() - start)
    return {n: round(1000 * statistics.median(s), 2) for n, s in seconds.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--teacher-trials", type=int, default=8)
    parser.add_argument("--student-trials", type=int, default=8)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--latency-only", action="store_true")
    args = parser.parse_args()
    from head_to_head import load_bench_spec  # the trial budget, no time limit

    base = load_bench_spec(args.study, None, None, None)
    if args.latency_only:
        for n, ms in architecture_latency(base).items():
            print(f"{n} layers: {ms} ms at batch 1 (median of {REPEATS} x 20 calls)")
        return
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench-distill-") as root:
        root = Path(root)
        (root / "studies").mkdir()
        storage = f"sqlite:///{root / 'hpsearch.db'}"
        env = {
            **os.environ,
            "HPSEARCH_STORAGE": storage,
            "HPSEARCH_CACHE": os.environ.get("HPSEARCH_CACHE", str(root / "cache")),
            "PYTHONPATH": str(REPO),
        }
        for name, spec in variants(base, args).items():
            (root / "studies" / f"{name}.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
            start = time.monotonic()
            run = subprocess.run(
                [sys.executable, "-m", "hpsearch.cli", "run", "--study", name],
                check=False,
                cwd=root,
                env=env,
                capture_output=True,
                text=True,
            )
            seconds = time.monotonic() - start
            if run.returncode != 0:
                sys.exit(f"{name}: hpsearch run failed ({run.returncode}): {run.stderr[-2000:]}")
            results[name] = {**best_of(storage, name), "wall_seconds": round(seconds, 1)}
            print(name, json.dumps(results[name]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
