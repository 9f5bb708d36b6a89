"""Anytime curves: the best objective found so far against wall time and against optimizer steps.

HPO papers compare search methods this way (best-so-far against compute), not by the best after N
trials: a method that finds a good model sooner, or spends the same compute on more trials, wins on
the curve. `bench/head_to_head.py` records one curve per contender and sampler seed; this module
extracts them from a study's trials, reads the figures the benchmark reports off them, and renders
the table and the plot for BENCHMARKS.md:

    python bench/curves.py RUNS.json [MORE.json ...] [--png bench/anytime.png]

RUNS.json is what `bench/head_to_head.py --seeds ... --json RUNS.json` writes; seeds run apart
(seed 0 one day, 1-4 the next) are read together.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

REFERENCE = "hf"  # the contender the others are measured against: Trainer.hyperparameter_search


def anytime_curve(trials: list[dict], started_at: float, maximize: bool = True) -> list[dict]:
    """One point per finished trial, in the order they finished: seconds since `started_at` (the
    contender's start), optimizer steps trained by all trials finished so far, and the best value
    of a completed trial so far (None until one completes). `trials` are dicts with `finished_at`
    (epoch seconds), `steps`, `state` and `value`; a pruned or failed trial adds its steps and
    time but no value: its model is not one a user could take."""
    points, steps, best = [], 0, None
    for trial in sorted(
        (t for t in trials if t["finished_at"] is not None), key=lambda t: t["finished_at"]
    ):
        steps += trial["steps"] or 0
        value = trial["value"] if trial["state"] == "COMPLETE" else None
        if (
            value is not None
            and math.isfinite(value)
            and (best is None or (value > best) == maximize)
        ):
            best = value
        points.append({"seconds": trial["finished_at"] - started_at, "steps": steps, "best": best})
    return points


def best_at(curve: list[dict], seconds: float) -> float | None:
    """The best value found by `seconds` into the run: trials still running then do not count."""
    reached = [p["best"] for p in curve if p["seconds"] <= seconds and p["best"] is not None]
    return reached[-1] if reached else None


def time_to_reach(curve: list[dict], target: float, maximize: bool = True) -> float | None:
    """Seconds until the best so far first reaches `target`; None if it never does."""
    for point in curve:
        if point["best"] is not None and (
            point["best"] >= target if maximize else point["best"] <= target
        ):
            return point["seconds"]
    return None


def seed_figures(runs: dict[str, dict], maximize: bool = True) -> dict[str, dict]:
    """For one sampler seed ({contender: run}), each contender's figures against the reference:
    time to reach the reference's final best (and as a fraction of the reference's wall time), its
    best at the reference's wall time, and its final best."""
    reference = runs[REFERENCE]
    target, budget = reference["best_value"], reference["seconds"]
    figures = {}
    for name, run in runs.items():
        reach = time_to_reach(run["curve"], target, maximize)
        figures[name] = {
            "reach_seconds": reach,
            "reach_fraction": None if reach is None else reach / budget,
            "best_at_reference_time": best_at(run["curve"], budget),
            "final_best": run["best_value"],
            "seconds": run["seconds"],
            "trials": len(run["curve"]),
        }
    return figures


def _median_and_range(
    values: list[float | None], unreached: str = "never", signed: bool = False
) -> str:
    form = "{:+.2f}" if signed else "{:.2f}"
    if any(v is None for v in values):
        known = sorted(v for v in values if v is not None)
        shown = ", ".join(form.format(v) for v in known)
        return f"{unreached} in {values.count(None)} of {len(values)}" + (
            f" ({shown} in the others)" if known else ""
        )
    median, low, high = (
        form.format(v) for v in (statistics.median(values), min(values), max(values))
    )
    return f"{median} ({low} to {high})"


def render_table(by_seed: dict[str, dict[str, dict]], metric: str) -> str:
    """Markdown: per seed and contender the figures, then medians and spreads over the seeds."""
    header = (
        f"| seed | contender | wall time | trials | final best {metric} | time to HF's final best "
        "(x HF's wall time) | best at HF's wall time | vs HF's best |"
    )
    lines = [header, "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for seed, figures in by_seed.items():
        reference_best = figures[REFERENCE]["final_best"]
        for name, f in figures.items():
            reach = (
                "not reached"
                if f["reach_seconds"] is None
                else f"{f['reach_seconds']:.0f} s ({f['reach_fraction']:.2f}x)"
            )
            at = f["best_at_reference_time"]
            versus = "-" if at is None else f"{100 * (at - reference_best):+.1f} pts"
            best_then = "-" if at is None else f"{at:.4f}"
            lines.append(
                f"| {seed} | {name} | {f['seconds']:.0f} s | {f['trials']} "
                f"| {f['final_best']:.4f} | {reach} | {best_then} | {versus} |"
            )
    summary = (
        "| contender | time to HF's final best, x HF's wall time: median (range) | "
        "best at HF's wall time minus HF's best, points: median (range) |"
    )
    lines += ["", summary, "| --- | --- | --- |"]
    for name in next(iter(by_seed.values())):
        fractions = [by_seed[s][name]["reach_fraction"] for s in by_seed]
        gaps = [
            None
            if by_seed[s][name]["best_at_reference_time"] is None
            else 100
            * (by_seed[s][name]["best_at_reference_time"] - by_seed[s][REFERENCE]["final_best"])
            for s in by_seed
        ]
        gap = _median_and_range(gaps, "nothing finished", signed=True)
        lines.append(f"| {name} | {_median_and_range(fractions)} | {gap} |")
    return "\n".join(lines)


def plot(runs_by_seed: dict[str, dict[str, dict]], metric: str, path: Path) -> None:
    """Best-so-far against wall time (left) and optimizer steps (right), a line per contender and
    seed, HF's wall time marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (by_time, by_steps) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    colors = {}
    for index, (seed, runs) in enumerate(runs_by_seed.items()):
        style = ("-", "--", ":", "-.")[index % 4]  # a colour per contender, a line style per seed
        for name, run in runs.items():
            color = colors.setdefault(name, f"C{len(colors)}")
            points = [p for p in run["curve"] if p["best"] is not None]
            for axis, key in ((by_time, "seconds"), (by_steps, "steps")):
                axis.step(
                    [p[key] for p in points],
                    [p["best"] for p in points],
                    where="post",
                    color=color,
                    linestyle=style,
                    alpha=0.8,
                    label=f"{name}, seed {seed}",
                    marker="o",
                    markersize=3,
                )
        by_time.axvline(
            runs[REFERENCE]["seconds"], color=colors[REFERENCE], linestyle=":", alpha=0.5
        )
    by_time.set_xlabel("wall time (s); dotted: HF's wall time per seed")
    by_steps.set_xlabel("optimizer steps trained")
    by_time.set_ylabel(f"best {metric} so far")
    by_time.legend(loc="lower right", fontsize="small")
    seeds = ", ".join(runs_by_seed)
    figure.suptitle(f"Anytime curves, sampler seeds {seeds}")
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def report(
    runs_by_seed: dict[str, dict[str, dict]], metric: str, maximize: bool, png: Path | None
) -> str:
    """The table of the figures over the seeds; the plot too, when `png` names a file."""
    if png:
        plot(runs_by_seed, metric, png)
    return render_table(
        {seed: seed_figures(runs, maximize) for seed, runs in runs_by_seed.items()}, metric
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "runs",
        type=Path,
        nargs="+",
        help="JSONs head_to_head.py --seeds ... --json wrote (of one study; seeds run apart)",
    )
    parser.add_argument("--png", type=Path, help="write the plot here")
    args = parser.parse_args()
    saved = [json.loads(path.read_text()) for path in args.runs]
    if len({s["metric"] for s in saved}) > 1:
        parser.error("the JSONs measure different metrics: give the runs of one study")
    runs_by_seed = {seed: runs for s in saved for seed, runs in s["runs"].items()}
    maximize = saved[0].get("direction", "maximize") == "maximize"
    print(report(runs_by_seed, saved[0]["metric"], maximize, args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
