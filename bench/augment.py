"""Searched data augmentation against none, on a small-data variant of the default study.

The default study (studies/sentiment.yaml) with its training set cut to --max-train-samples tweets
(500 by default; the eval set as the study has it), run twice per seed with the same trial budget,
sampler and seeds: once as it is, once with `augment:` searched beside the other parameters
(SEARCHED below). Each run is `hpsearch run` on a fresh SQLite storage in its own process; the
tokenized data is shared. Prints the best eval accuracy of each run and the mean over seeds.

Augmented copies are more rows per epoch, so an augmented trial trains up to 1 + copies times the
steps of a plain one with the same epochs. `--longer` adds a third run per seed that separates the
two: the plain study with its epoch range stretched by that factor (`num_train_epochs` up to
(1 + the most copies) x its own maximum), the same steps without the new rows.

    python bench/augment.py [--seeds 0,1,2] [--n-trials 8] [--max-train-samples 500]
        [--max-eval-samples N] [--longer] [--only plain,augmented,longer] [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
SEARCHED = {
    "synonym_replacement": {"float": [0.0, 0.2]},
    "random_insertion": {"float": [0.0, 0.2]},
    "random_swap": {"float": [0.0, 0.2]},
    "random_deletion": {"float": [0.0, 0.2]},
    "copies": {"int": [1, 4]},
}


VARIANTS = ("plain", "augmented", "longer")


def variant_spec(base: dict, variant: str, seed: int) -> dict:
    spec = copy.deepcopy(base)
    spec["seed"] = seed
    spec.setdefault("sampler", {})["seed"] = seed
    if variant == "augmented":
        spec["augment"] = copy.deepcopy(SEARCHED)
    elif variant == "longer":
        low, high = spec["search_space"]["num_train_epochs"]["int"]
        stretch = 1 + SEARCHED["copies"]["int"][1]
        spec["search_space"]["num_train_epochs"] = {"int": [low, high * stretch]}
    return spec


def run(spec: dict, name: str, workdir: Path, cache: Path) -> dict:
    import optuna

    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    db = f"sqlite:///{workdir / name}.db"
    env = {
        **os.environ,
        "HPSEARCH_CACHE": str(cache),
        "HPSEARCH_ARTIFACTS": str(workdir / f"{name}-artifacts"),
    }
    started = time.monotonic()
    command = [sys.executable, "-m", "hpsearch.cli", "run", "--study", str(path), "--storage", db]
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.monotonic() - started
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=name, storage=db)
    return {
        "run": name,
        "best": round(study.best_value, 4),
        "best_params": study.best_params,
        "wall_seconds": round(seconds),
        "n_steps": sum(t.user_attrs.get("n_steps", 0) for t in study.trials),
        "states": [t.state.name for t in study.trials],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-train-samples", type=int, default=500)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--only", default="plain,augmented")
    parser.add_argument("--longer", action="store_true", help="also run the 'longer' variant")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = [v for v in VARIANTS if v in args.only.split(",") or (v == "longer" and args.longer)]
    from head_to_head import load_bench_spec  # the trial budget, no time limit

    base = load_bench_spec(args.study, None, None, None)
    base["dataset"]["max_train_samples"] = args.max_train_samples
    if args.max_eval_samples:
        base["dataset"]["max_eval_samples"] = args.max_eval_samples
    if args.n_trials:
        base["budget"]["n_trials"] = args.n_trials
    rows = []
    with tempfile.TemporaryDirectory(prefix="hpsearch-augment-") as scratch:
        workdir, cache = Path(scratch), Path(scratch) / "cache"
        for seed in [int(s) for s in args.seeds.split(",")]:
            for variant in variants:
                name = f"{variant}-{seed}"
                rows.append(run(variant_spec(base, variant, seed), name, workdir, cache))
                print(json.dumps(rows[-1]), flush=True)
    for kind in variants:
        bests = [r["best"] for r in rows if r["run"].startswith(f"{kind}-")]
        print(f"{kind}: best eval accuracy per seed {bests}, mean {statistics.mean(bests):.4f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
