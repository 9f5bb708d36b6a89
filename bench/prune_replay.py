"""Which pruning settings stop trials that would have ended near the top? Replayed, not re-trained.

One search runs with no pruning and many evaluations per epoch (6: every trial's whole learning
curve, at 1/6, 2/6, ... of each epoch). Each pruner setting is then replayed on those curves: the
trials in the order they ran, each reporting the evaluations the setting would have made (at 2 per
epoch, evaluations 3, 6, 9, ...), asking the pruner hpsearch builds from the setting after each
(study.make_pruner, given no trial length: Hyperband estimates its brackets from the first complete
trial, Optuna's 'auto', where `hpsearch run` fixes them from the spec's epochs), and stopping where
it says. Without training anything again, every setting gets:

- pruned: how many trials it stops; steps saved: the optimizer steps those would not have trained;
- top-3 pruned: how many of the three trials with the best final values it stops;
- kept best: the best final value among the trials it lets finish (the search's result under it).

    python bench/prune_replay.py [--study studies/sentiment.yaml] [--n-trials 12] [--json out.json]
    python bench/prune_replay.py --replay out.json     # replay a saved run again
    python bench/prune_replay.py --replay-storage sqlite:///unpruned.db   # a run cut short
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

FINE_EVALS_PER_EPOCH = 6
# (pruner, evaluations per epoch, first rung in epochs, complete trials before pruning): the
# settings of hpsearch before issue 11 (hyperband, 3 per epoch, from the first evaluation, no
# warm-up), its defaults after, and the settings in between.
SETTINGS = [
    ("hyperband", 3, 1 / 3, 0),
    ("hyperband", 3, 2 / 3, 0),
    ("hyperband", 2, 0.5, 0),
    ("hyperband", 3, 1 / 3, 4),
    ("hyperband", 2, 0.5, 4),
    ("hyperband", 2, 1.0, 4),
    ("successive_halving", 2, 0.5, 4),
    ("median", 2, 0.5, 4),
    ("median", 3, 1 / 3, 4),
]


def run_unpruned(spec_path: Path, n_trials: int, scratch: Path) -> list[dict]:
    """The search with no pruning and FINE_EVALS_PER_EPOCH evaluations per epoch: each trial's
    final value, steps and every intermediate value."""

    from head_to_head import load_bench_spec  # the trial budget, no time limit

    raw = load_bench_spec(spec_path, None, None, None)
    raw["pruner"] = {"name": "none", "evals_per_epoch": FINE_EVALS_PER_EPOCH}
    raw.setdefault("budget", {})["n_trials"] = n_trials
    fine = scratch / "unpruned.yaml"
    fine.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage = f"sqlite:///{scratch / 'unpruned.db'}"
    env = {**os.environ, "HPSEARCH_ARTIFACTS": str(scratch / "artifacts")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            str(fine),
            "--storage",
            storage,
            "--study-name",
            "unpruned",
        ],
        cwd=REPO,
        env=env,
        check=True,
        capture_output=True,
    )
    return recorded_trials(storage)


def recorded_trials(storage: str) -> list[dict]:
    """The complete trials of the unpruned study in `storage`, in the order they ran."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name="unpruned", storage=storage)
    return [
        {
            "number": t.number,
            "value": t.value,
            "steps": t.user_attrs["n_steps"],
            "curve": [t.intermediate_values[k] for k in sorted(t.intermediate_values)],
            "direction": study.direction.name.lower(),
        }
        for t in study.get_trials(deepcopy=False)
        if t.state.name == "COMPLETE"
    ]


def replay(
    trials: list[dict], name: str, evals_per_epoch: int, first_rung: float, min_trials: int
) -> dict:
    """The setting's pruner on the recorded curves, trial by trial in the order they ran."""
    import optuna

    from hpsearch.spec import PrunerSpec
    from hpsearch.study import make_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line per setting
    maximize = trials[0]["direction"] == "maximize"
    pruner = make_pruner(
        PrunerSpec(
            name=name, evals_per_epoch=evals_per_epoch, first_rung=first_rung, min_trials=min_trials
        )
    )
    study = optuna.create_study(
        direction="maximize" if maximize else "minimize", pruner=pruner, study_name="replay"
    )
    every = FINE_EVALS_PER_EPOCH // evals_per_epoch
    ranked = sorted(trials, key=lambda t: t["value"], reverse=maximize)
    top3 = {t["number"] for t in ranked[:3]}
    pruned, steps_saved, kept = [], 0, []
    for recorded in trials:
        trial = study.ask()
        coarse = recorded["curve"][every - 1 :: every]
        stopped_at = None
        for step, value in enumerate(coarse, start=1):
            trial.report(value, step)
            if step < len(coarse) and trial.should_prune():  # the final evaluation never prunes
                stopped_at = step
                break
        if stopped_at is None:
            study.tell(trial, recorded["value"])
            kept.append(recorded["value"])
        else:
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            pruned.append((recorded["number"], stopped_at))
            steps_saved += round(recorded["steps"] * (1 - stopped_at / len(coarse)))
    total = sum(t["steps"] for t in trials)
    return {
        "pruner": name,
        "evals_per_epoch": evals_per_epoch,
        "first_rung": round(first_rung, 3),
        "min_trials": min_trials,
        "pruned": len(pruned),
        "steps_saved": steps_saved,
        "steps_saved_share": steps_saved / total,
        "top3_pruned": len(top3 & {number for number, _ in pruned}),
        "pruned_at": pruned,
        "kept_best": (max if maximize else min)(kept),
        "true_best": ranked[0]["value"],
    }


def render(rows: list[dict], n_trials: int) -> str:
    header = (
        "| pruner | evals per epoch | first rung (epochs) | min_trials | pruned | steps saved | "
        "top-3 trials pruned | best kept (best of all) | trials pruned (at evaluation) |"
    )
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(
            f"| {r['pruner']} | {r['evals_per_epoch']} | {r['first_rung']:.2f} "
            f"| {r['min_trials']} | {r['pruned']} of {n_trials} | {r['steps_saved_share']:.0%} "
            f"| {r['top3_pruned']} | "
            f"{r['kept_best']:.4f} ({r['true_best']:.4f}) | "
            f"{', '.join(f'{n} ({at})' for n, at in r['pruned_at']) or '-'} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--n-trials", type=int, default=12)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--json", type=Path, help="save the unpruned trials here (for --replay)")
    parser.add_argument(
        "--replay", type=Path, help="replay trials saved with --json; train nothing"
    )
    parser.add_argument(
        "--replay-storage", help="replay the unpruned study in this storage (a run cut short)"
    )
    args = parser.parse_args()
    if args.replay:
        trials = json.loads(args.replay.read_text())
    elif args.replay_storage:
        trials = recorded_trials(args.replay_storage)
        if args.json:
            args.json.write_text(json.dumps(trials, indent=2))
    else:
        scratch = Path(tempfile.mkdtemp(prefix="hpsearch-replay-"))
        from head_to_head import load_bench_spec  # the trial budget, no time limit

        raw = load_bench_spec(args.study, None, None, None)
        for key, value in (
            ("max_train_samples", args.max_train_samples),
            ("max_eval_samples", args.max_eval_samples),
        ):
            if value is not None:
                raw["dataset"][key] = value
        spec_path = scratch / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        trials = run_unpruned(spec_path, args.n_trials, scratch)
        if args.json:
            args.json.write_text(json.dumps(trials, indent=2))
    print(render([replay(trials, *setting) for setting in SETTINGS], len(trials)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
