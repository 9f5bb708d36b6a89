"""The fine-tuning techniques on the default study: what each costs and what it gains.

The default study (studies/sentiment.yaml, unless --study names another) is run once per variant,
back to back on this machine, each with `hpsearch run` on a fresh SQLite storage in its own
process, the same sampler seed, trial budget and tokenized data (cached before any timing):

- full: the study as it is (full fine-tuning, the embeddings frozen as the default study does).
- lora: LoRA adapters through PEFT instead: `peft: {r: {int: [4, 32], log: true}, alpha: 16}` with
  the learning-rate range moved up tenfold (adapters want larger rates; PEFT's examples use 1e-4 to
  1e-3), no embedding freezing (LoRA freezes every pretrained weight).
- layer-decay: `layer_lr_decay: {float: [0.6, 1.0]}` searched with the rest.
- unfreezing: `gradual_unfreezing: 1` (one more layer trains after every evaluation).
- early-stop: `early_stopping: {patience: 1}` with `objective.value: best`.

For each: wall time, seconds per trial (mean over trials trained to their end), optimizer steps,
peak resident memory of the run (its largest process, from getrusage), the best model's artifact
size, best eval metric, trials by state and what early stopping saved.

    python bench/techniques.py [--study studies/sentiment.yaml] [--n-trials N]
        [--only full,lora,layer-decay,unfreezing,early-stop] [--json out.json]
        [--max-train-samples N --max-eval-samples N]   # smaller caps: a smoke run
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
VARIANTS = ("full", "lora", "layer-decay", "unfreezing", "early-stop")
# Run in a fresh interpreter per variant: RUSAGE_CHILDREN is then that variant's peak alone.
WRAPPER = (
    "import json, resource, subprocess, sys, time\n"
    "start = time.monotonic()\n"
    "code = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL).returncode\n"
    "seconds = time.monotonic() - start\n"
    "peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024\n"
    "print(json.dumps({'rc': code, 'seconds': seconds, 'peak_rss_mb': peak_rss_mb}))\n"
)


def variant_spec(base: dict, variant: str) -> dict:
    spec = copy.deepcopy(base)
    space, training = spec["search_space"], spec.setdefault("training", {})
    if variant == "lora":
        low, high = space["learning_rate"]["float"]
        space["learning_rate"] = {"float": [low * 10, high * 10], "log": True}
        spec["peft"] = {"r": {"int": [4, 32], "log": True}, "alpha": 16}
        for knob in ("freeze_embeddings", "freeze_layers"):  # LoRA freezes every pretrained weight
            training.pop(knob, None)
    elif variant == "layer-decay":
        space["layer_lr_decay"] = {"float": [0.6, 1.0]}
    elif variant == "unfreezing":
        training["gradual_unfreezing"] = 1
    elif variant == "early-stop":
        spec["early_stopping"] = {"patience": 1}
        spec.setdefault("objective", {})["value"] = "best"
    return spec


def run_variant(spec: dict, variant: str, workdir: Path, cache: Path) -> dict:
    path = workdir / f"{variant}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    db = workdir / f"{variant}.db"
    env = {
        **os.environ,
        "HPSEARCH_CACHE": str(cache),
        "HPSEARCH_ARTIFACTS": str(workdir / f"{variant}-artifacts"),
    }
    command = [
        sys.executable,
        "-m",
        "hpsearch.cli",
        "run",
        "--study",
        str(path),
        "--storage",
        f"sqlite:///{db}",
    ]
    measured = json.loads(
        subprocess.run(
            [sys.executable, "-c", WRAPPER, *command],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    )
    if measured["rc"] != 0:
        raise SystemExit(f"{variant}: hpsearch run exited {measured['rc']}")
    return summarize_variant(variant, db, workdir / f"{variant}-artifacts", measured)


def summarize_variant(variant: str, db: Path, artifacts: Path, measured: dict) -> dict:
    """The figures of one variant's study (`measured`: the run's wall seconds and peak memory)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=variant, storage=f"sqlite:///{db}")
    trials = study.trials
    complete = [t for t in trials if t.state.name == "COMPLETE"]
    ended = [
        t for t in complete if t.user_attrs.get("n_steps") == t.user_attrs.get("n_steps_planned")
    ]
    pointer = study.user_attrs.get("hpsearch_best_model")
    states: dict[str, int] = {}
    for t in trials:
        states[t.state.name.lower()] = states.get(t.state.name.lower(), 0) + 1
    return {
        "variant": variant,
        "wall_seconds": round(measured["seconds"], 1),
        "peak_rss_mb": round(measured["peak_rss_mb"]),
        "seconds_per_full_trial": round(
            sum(t.user_attrs["train_seconds"] for t in ended) / len(ended), 1
        )
        if ended
        else None,
        "n_steps": sum(t.user_attrs.get("n_steps", 0) for t in trials),
        "best": round(study.best_value, 4) if complete else None,
        "best_params": study.best_params if complete else {},
        # Adapters record trainable_parameters; every trial records its cost, trainable_params.
        "best_trial_trainable_parameters": (
            study.best_trial.user_attrs.get("trainable_parameters")
            or study.best_trial.user_attrs.get("trainable_params")
        )
        if complete
        else None,
        "model_artifact_mb": round((artifacts / pointer["artifact_id"]).stat().st_size / 1e6, 1)
        if pointer
        else None,
        "states": states,
        "stopped_early": sum(1 for t in complete if t.user_attrs.get("stopped_early")),
        "early_stopping_steps_saved": sum(
            t.user_attrs.get("early_stopping_steps_saved", 0) for t in complete
        ),
    }


def table(rows: list[dict], metric: str) -> str:
    header = (
        f"| variant | wall | s per full trial | steps | peak RSS | best-model file | best {metric} "
        "| trials |"
    )
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(r["states"].items()))
        if r["stopped_early"]:
            saved = r["early_stopping_steps_saved"]
            states += f"; {r['stopped_early']} stopped early ({saved} steps saved)"
        lines.append(
            f"| {r['variant']} | {r['wall_seconds']:.0f} s | {r['seconds_per_full_trial']} "
            f"| {r['n_steps']} | {r['peak_rss_mb']} MB | {r['model_artifact_mb']} MB | {r['best']} "
            f"| {states} |"
        )
    return "\n".join(lines)


def run_variants(base: dict, variants: list[str], spec_of, study_file: Path, prefix: str) -> list:
    """Each variant's row (run_variant), back to back in one scratch directory, `spec_of(base,
    variant)` its spec; the data tokenized once first, untimed, so every variant reads one cache."""
    rows = []
    with tempfile.TemporaryDirectory(prefix=prefix) as scratch:
        workdir, cache = Path(scratch), Path(scratch) / "cache"
        subprocess.run(
            [
                sys.executable,
                "-c",
                (
                    "from hpsearch.spec import parse_spec; from hpsearch.workers import "
                    "warm_cache; import sys, yaml; "
                    "warm_cache(parse_spec(yaml.safe_load(open(sys.argv[1])), 'b'))"
                ),
                str(study_file),
            ],
            env={**os.environ, "HPSEARCH_CACHE": str(cache)},
            check=True,
        )
        for variant in variants:
            started = time.strftime("%H:%M:%S")
            row = run_variant(spec_of(base, variant), variant, workdir, cache)
            print(f"{started} {variant}: {json.dumps(row)}", file=sys.stderr, flush=True)
            rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-train-samples", type=int, help="Smaller caps, for a smoke run.")
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from head_to_head import load_bench_spec  # the trial budget, no time limit

    base = load_bench_spec(args.study, None, None, None)
    if args.n_trials:
        base["budget"]["n_trials"] = args.n_trials
    for cap in ("max_train_samples", "max_eval_samples"):
        if getattr(args, cap):
            base["dataset"][cap] = getattr(args, cap)
    study_file = Path(tempfile.mkstemp(suffix=".yaml")[1])
    study_file.write_text(yaml.safe_dump(base, sort_keys=False))
    variants = [v for v in args.only.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(
            f"--only: unknown variant(s) {', '.join(sorted(unknown))}; "
            f"pick from {', '.join(VARIANTS)}"
        )
    rows = run_variants(base, variants, variant_spec, study_file, "hpsearch-techniques-")
    metric = base.get("objective", {}).get("metric", "accuracy")
    print(table(rows, metric))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
