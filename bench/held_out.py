"""The head-to-head's winners scored on a test set that no trial saw (issue 25 part 6).

bench/head_to_head.py compares searches on the eval set they select by, so their best values are
biased upward by the selection. This scores each contender's pick once on held-out rows: for every
sampler seed of a head-to-head JSON, the configuration each contender had found best at HF's wall
time, and the no-search fine-tune of `defaults`.

The runs kept no models, so each configuration is trained again as its trial was: hpsearch's through
`hpsearch run` (a one-trial study whose seed is the trial's, the study's seed + k, and whose space
holds the trial's values alone), HF's and the no-search fine-tune through the head-to-head's own
Trainer set-up in a fresh process (HF's seed is the study's, in every trial). A CPU training with a
fixed seed repeats itself here, so the re-trained model's eval value must equal the recorded one: a
difference beyond --tolerance fails the run, so a test score is that of the model the search picked.
(The no-search fine-tune made its model before seeding until 2026-12-07: it is trained again seeded,
and its eval value is shown, not compared.)

The test set is the training pool's rows that the study's cap left out: the training rows are the
first max_train_samples of the pool shuffled by dataset.seed, so the rows after them were never
trained or evaluated on, and the searches' data stay as they were. A study that uses its whole pool
(the NER study: every tweet is in its train or eval set) has none, and is refused.

    python bench/held_out.py bench/results/h2h-equal-bf16-seeds1-4.json [--seeds 1,2] \
        [--only hf,hpsearch] [--test-size 4000] [--training-seeds 4] [--json out.json]

A pick's test score is one training seed's draw. `--training-seeds K` also trains each picked
configuration with K more seeds (1000 ... 1000+K-1, the same for every configuration, so the
comparison is paired; all through hpsearch, so the configurations differ in nothing else) and
reports its mean: whether a search picked a better *configuration*, not a luckier seed. A
configuration two contenders both picked is trained once.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

SCORED = ("hf", "hpsearch", "hpsearch-timed", "defaults")  # whose picks can be trained again
BY_HAND = ("hf", "defaults")  # trained by the head-to-head's Trainer set-up, not by hpsearch
# The no-search fine-tune made its model's new head before seeding until 2026-12-07, so its
# recorded runs cannot be repeated; it is trained again seeded, and not compared.
REPEATABLE = ("hf", "hpsearch", "hpsearch-timed")


def write_test_set(spec_path: Path, size: int, path: Path) -> int:
    """Write up to `size` rows of the training pool that the cap leaves out to `path` (parquet:
    texts with line breaks come back as they were); return how many. A row whose input repeats a
    training or eval row's (retweets, in the default study's tweets) is left out too."""
    from hpsearch.spec import load_spec_file
    from hpsearch.tasks import TASKS
    from hpsearch.trial.data import evaluation_rows, training_rows

    dataset = load_spec_file(spec_path).dataset
    cap = dataset.max_train_samples
    if cap is None:
        sys.exit(
            "held_out: the study trains on its whole pool (no max_train_samples cap): no row is "
            "left that no trial saw; hold out a test set in the spec and search again"
        )
    pool, _ = training_rows(dataset.model_copy(update={"max_train_samples": None}))
    trained, _ = training_rows(dataset)
    # The claim this rests on: the capped training rows are the head of the uncapped pool.
    if not pool.head(cap).equals(trained):
        sys.exit("held_out: the capped training rows are not the head of the pool; cannot tell")
    inputs = [c for k, c in TASKS[dataset.task].columns(dataset).items() if k != "dataset.label"]
    seen = pd.concat([trained, evaluation_rows(dataset)])[inputs].drop_duplicates()
    rest = pool.iloc[cap:].merge(seen, on=inputs, how="left", indicator=True)
    unseen = rest[rest["_merge"] == "left_only"].drop(columns="_merge").head(size)
    if unseen.empty:
        sys.exit(f"held_out: the pool has no rows beyond the {cap} trained on")
    unseen.to_parquet(path, index=False)
    return len(unseen)


def pick(run: dict, hf_seconds: float | None) -> tuple[int, dict, float] | None:
    """(trial, parameters, eval value) of the run's best trial at HF's wall time (at its end if
    `hf_seconds` is None); None if no trial had finished by then or the JSON does not say which
    trial it was."""
    from curves import best_at

    value = run["best_value"] if hf_seconds is None else best_at(run["curve"], hf_seconds)
    if value is None:
        return None
    if value == run["best_value"]:
        return run["best_trial"], run["best_params"], value
    match = [t for t in run.get("trials", []) if t["state"] == "COMPLETE" and t["value"] == value]
    return (match[0]["number"], match[0]["params"], value) if match else None


def run_checked(command: list[str], env: dict | None = None) -> None:
    completed = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        sys.exit(
            f"{' '.join(command[:4])} failed:\n"
            f"{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}"
        )


def retrain_with_hpsearch(raw: dict, params: dict, seed: int, scratch: Path) -> dict:
    """`params` trained again as a one-trial hpsearch study with training seed `seed` (trial k of
    a study trains with its seed + k), in a directory of its own under `scratch` so that no two
    re-trainings share a study: its eval value and the test scores hpsearch recorded for it at
    the end of the run."""
    import optuna
    from sqlalchemy.engine import make_url

    from hpsearch.storage.rdb import closing_storage
    from hpsearch.study.test_scores import recorded_test_scores

    own = Path(tempfile.mkdtemp(prefix=f"retrain-seed-{seed}-", dir=scratch))
    one = {
        **raw,
        "seed": seed,
        "search_space": {name: {"choice": [value]} for name, value in params.items()},
        "budget": {"n_trials": 1},
    }
    spec_path = own / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(one, sort_keys=False))
    url = f"sqlite:///{own / 'retrain.db'}"
    run_checked(
        [sys.executable, "-m", "hpsearch.cli", "run", "--study", str(spec_path)]
        + ["--storage", url, "--study-name", "retrain"],
        env={**os.environ, "HPSEARCH_ARTIFACTS": str(own / "artifacts")},
    )
    with closing_storage(make_url(url)) as storage:
        study = optuna.load_study(study_name="retrain", storage=storage)
        return {"eval": study.trials[0].value, **recorded_test_scores(study)[0]}


def retrain_by_hand(name: str, spec_path: Path, params: dict, result_path: Path) -> None:
    """In this (fresh) process, as the head-to-head's contender process did: HF's trial with
    `params`, or the no-search fine-tune; its eval value and test scores to `result_path`."""
    from head_to_head import HF_SEARCH_ARGS, Shared, search_epochs

    from hpsearch.spec import load_spec_file

    spec = load_spec_file(spec_path)
    shared = Shared(spec)
    with tempfile.TemporaryDirectory(prefix="held-out-") as output_dir:
        if name == "hf":
            trainer = shared.trainer(
                output_dir, {**HF_SEARCH_ARGS, **params}, model_init=shared.model
            )
            trainer.train()
        else:  # as run_defaults trains
            trainer = shared.trained(output_dir, {"num_train_epochs": search_epochs(spec)})
        evaluated = shared.metrics(trainer.evaluate())[spec.objective.eval_key]
        trainer.compute_metrics = spec.task_spec.compute_metrics(
            spec.dataset, shared.tokenizer, shared.data.label_names, features=shared.data.test
        )
        tested = trainer.evaluate(eval_dataset=shared.data.test, metric_key_prefix="test")
    scores = {k: v for k, v in tested.items() if k.removeprefix("test_") in spec.task_spec.metrics}
    result_path.write_text(json.dumps({"eval": evaluated, **scores}))


def retrain(name: str, raw: dict, spec_path: Path, trial: int, params: dict, scratch: Path) -> dict:
    """The contender's trial trained again (hpsearch's by hpsearch, the others as the head-to-head
    ran them): its eval value and test scores."""
    if name not in BY_HAND:
        return retrain_with_hpsearch(raw, params, raw.get("seed", 0) + trial, scratch)
    result_path = scratch / f"{name}.json"
    run_checked(
        [sys.executable, __file__, "--retrain", name, "--spec", str(spec_path)]
        + ["--params", json.dumps(params), "--result", str(result_path)]
    )
    return json.loads(result_path.read_text())


# Past the trials' own seeds (the study's seed + k; these searches run 8 to 20 trials)
TRAINING_SEEDS_FROM = 1000


def over_training_seeds(
    raw: dict, params: dict, k: int, metric: str, scratch: Path, done: dict
) -> list[float]:
    """The configuration's test `metric` trained with each of k training seeds (the same seeds
    for every configuration); `done` keeps what earlier calls trained, by configuration."""
    key = json.dumps(params, sort_keys=True)
    if key not in done:
        seeds = range(TRAINING_SEEDS_FROM, TRAINING_SEEDS_FROM + k)
        print(f"  ... and with training seeds {seeds[0]}-{seeds[-1]}", file=sys.stderr)
        done[key] = [
            retrain_with_hpsearch(raw, params, seed, scratch)[f"test_{metric}"] for seed in seeds
        ]
    return done[key]


def write_shared_test_set(args, scratch: Path) -> tuple[Path, int]:
    """The test set of every seed's picks, written once: it depends on the study's data section
    alone (the seeds differ in their sampler), so its tokenization is cached once too."""
    from head_to_head import load_bench_spec

    raw = load_bench_spec(args.study, None, args.max_train_samples, args.max_eval_samples)
    spec_path, test_path = scratch / "data-spec.yaml", scratch / "test.parquet"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return test_path, write_test_set(spec_path, args.test_size, test_path)


def score_seed(
    args,
    seed: str,
    runs: dict,
    precision: str,
    metric: str,
    test: tuple[Path, int],
    scratch: Path,
) -> list[dict]:
    """Every chosen contender's pick of one seed, trained again and scored on the test set."""
    from head_to_head import equal_precision, load_bench_spec, warm_cache

    raw = load_bench_spec(
        args.study, None, args.max_train_samples, args.max_eval_samples, int(seed)
    )
    equal_precision(raw, precision)
    test_path, n_test = test
    raw["dataset"]["test_source"] = str(test_path)
    scratch.mkdir(exist_ok=True)
    spec_path = scratch / "spec.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    warm_cache(spec_path)  # tokenized outside the re-trainings (as in the head-to-head)
    hf_seconds = runs["hf"]["seconds"] if args.pick == "at-hf-time" else None
    rows, trained_over_seeds = [], {}
    for name in [c for c in args.only if c in runs]:
        run = runs[name]
        picked = (0, {}, run["best_value"]) if name == "defaults" else pick(run, hf_seconds)
        if picked is None:
            print(f"seed {seed}: {name} names no trial at HF's wall time", file=sys.stderr)
            continue
        trial, params, recorded = picked
        print(f"seed {seed}: training {name}'s trial {trial} again", file=sys.stderr)
        scores = retrain(name, raw, spec_path, trial, params, scratch)
        if args.training_seeds and name != "defaults":
            scores["test_over_training_seeds"] = over_training_seeds(
                raw, params, args.training_seeds, metric, scratch, trained_over_seeds
            )
        rows.append(
            {
                "seed": seed,
                "contender": name,
                "trial": trial,
                "params": params,
                "recorded_eval": recorded,
                "n_test": n_test,
                **scores,
            }
        )
    return rows


def mean_and_spread(values: list[float]) -> str:
    spread = f" +- {statistics.stdev(values):.4f}" if len(values) > 1 else ""
    return f"{statistics.mean(values):.4f}{spread} (n={len(values)})"


def render(rows: list[dict], metric: str) -> str:
    over_seeds = any("test_over_training_seeds" in r for r in rows)
    extra = f" test {metric}, mean +- sd over training seeds |" if over_seeds else ""
    lines = [
        f"| seed | contender | trial | eval {metric} recorded | again | test {metric} |{extra}",
        "| --- | --- | --- | --- | --- | --- |" + (" --- |" if over_seeds else ""),
    ]
    for r in rows:
        values = r.get("test_over_training_seeds")
        lines.append(
            f"| {r['seed']} | {r['contender']} | {r['trial']} | {r['recorded_eval']:.4f} | "
            f"{r['eval']:.4f} | {r[f'test_{metric}']:.4f} |"
            + ((f" {mean_and_spread(values)} |" if values else " - |") if over_seeds else "")
        )
    lines.append(summary(rows, f"test_{metric}", f"test {metric}"))
    if over_seeds:
        lines.append(
            summary(
                [
                    {**r, "mean": statistics.mean(r["test_over_training_seeds"])}
                    for r in rows
                    if "test_over_training_seeds" in r
                ],
                "mean",
                f"configuration's mean test {metric} over training seeds",
            )
        )
    return "\n".join(line for line in lines if line)


def summary(rows: list[dict], key: str, what: str) -> str:
    """hpsearch's `key` minus HF's, seed by seed: median, each, and how often it is >= 0."""
    by_seed: dict[str, dict] = {}
    for r in rows:
        by_seed.setdefault(r["seed"], {})[r["contender"]] = r[key]
    searched = [
        s for s in by_seed.values() if "hf" in s and ("hpsearch" in s or "hpsearch-timed" in s)
    ]
    if not searched:
        return ""
    margins = [s.get("hpsearch", s.get("hpsearch-timed")) - s["hf"] for s in searched]
    wins = sum(m >= 0 for m in margins)
    return (
        f"\nhpsearch's {what} minus HF's: median {statistics.median(margins):+.4f} "
        f"({', '.join(f'{m:+.4f}' for m in margins)}); >= HF's in {wins} of {len(margins)} seeds"
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("results", type=Path, nargs="*", help="head-to-head JSONs (--seeds form)")
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--max-train-samples", type=int, help="as the head-to-head was given")
    parser.add_argument("--max-eval-samples", type=int, help="as the head-to-head was given")
    parser.add_argument("--seeds", help="only these sampler seeds, e.g. 1,2")
    parser.add_argument("--only", default=",".join(SCORED), help="only these contenders")
    parser.add_argument(
        "--pick",
        choices=("at-hf-time", "final"),
        default="at-hf-time",
        help="each search's best at HF's wall time (the head-to-head's figure) or at its end",
    )
    parser.add_argument("--test-size", type=int, default=4000)
    parser.add_argument(
        "--tolerance",
        type=float,
        default=0.0,
        help="largest eval difference accepted on re-training",
    )
    parser.add_argument(
        "--training-seeds",
        type=int,
        default=0,
        help="also train each picked configuration with this many more seeds (its mean)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    # Internal: train HF's pick or the no-search fine-tune again in this process.
    parser.add_argument("--retrain", choices=BY_HAND, help=argparse.SUPPRESS)
    parser.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--params", type=json.loads, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.retrain:
        retrain_by_hand(args.retrain, args.spec, args.params, args.result)
        return 0
    args.only = [c.strip() for c in args.only.split(",")]
    if set(args.only) - set(SCORED):
        parser.error(f"--only: pick from {', '.join(SCORED)}")
    if args.training_seeds < 0:
        parser.error("--training-seeds: a count of seeds, 0 or more")
    wanted = None if args.seeds is None else set(args.seeds.split(","))
    saved = {path: json.loads(path.read_text()) for path in args.results}
    for path, results in saved.items():
        if not isinstance(results, dict) or "runs" not in results:
            parser.error(f"{path}: not a head-to-head JSON written with --seeds; run it so")
    rows, metric = [], None
    with tempfile.TemporaryDirectory(prefix="hpsearch-held-out-") as scratch_dir:
        scratch = Path(scratch_dir)
        test = write_shared_test_set(args, scratch)
        for results in saved.values():
            metric = results["metric"].removeprefix("eval_")
            for seed, runs in results["runs"].items():
                if wanted is None or seed in wanted:
                    rows += score_seed(
                        args,
                        seed,
                        runs,
                        results["precision"],
                        metric,
                        test,
                        scratch / f"seed-{seed}",
                    )
    if not rows:
        parser.error("nothing to score: give a head-to-head JSON written with --seeds")
    print(render(rows, metric))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    differ = [
        r
        for r in rows
        if r["contender"] in REPEATABLE and abs(r["eval"] - r["recorded_eval"]) > args.tolerance
    ]
    if differ:
        sys.exit(
            "held_out: re-trained models differ from the recorded ones on the eval set: "
            + ", ".join(f"seed {r['seed']} {r['contender']}" for r in differ)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
