"""A study's report: Optuna's plots as PNG files, and one HTML page that holds them inline.

The page embeds each PNG as a data: URI and loads nothing else, so it opens with no network.
A plot that the study cannot support yet (importances before two complete trials, say) is listed
with the reason instead.
"""

from __future__ import annotations

import base64
import html
import warnings
from pathlib import Path

import optuna

from hpsearch.errors import first_line
from hpsearch.spec import describe_model
from hpsearch.study import describe_states, recorded_test_scores, summarize

PLOTS = {
    "optimization_history": "Optimization history",
    "param_importances": "Parameter importances",
    "intermediate_values": "Intermediate values (pruned trials end early)",
    "parallel_coordinate": "Parallel coordinates",
    "slice": "Slice plots",
    "pareto_front": "Pareto front (several objectives; the plots above show the first)",
}

# The page's CSS (the text of its <style> element).
STYLE = (
    "body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1100px; "
    "color: #222; }\n"
    "table { border-collapse: collapse; } "
    "th, td { text-align: left; padding: .2rem .8rem; border-bottom: 1px solid #ddd; }\n"
    "img { max-width: 100%; } .missing { color: #a60; }"
)


def write_report(study: optuna.Study, spec, out_dir: Path) -> dict[str, str]:
    """Write the PNGs and report.html in out_dir; returns {plot: file name or why it is missing}."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as plots

    out_dir.mkdir(parents=True, exist_ok=True)
    target_name = spec.objective.eval_key
    # Several objectives: the single-objective plots show the first, and the front has its own.
    aim = {"target": (lambda t: t.values[0])} if spec.is_multi_objective else {}
    makers = {
        "optimization_history": lambda: plots.plot_optimization_history(
            study, target_name=target_name, **aim
        ),
        "param_importances": lambda: plots.plot_param_importances(
            study, target_name=target_name, **aim
        ),
        "intermediate_values": lambda: plots.plot_intermediate_values(study),
        "parallel_coordinate": lambda: plots.plot_parallel_coordinate(
            study, target_name=target_name, **aim
        ),
        "slice": lambda: plots.plot_slice(study, target_name=target_name, **aim),
    }
    if spec.is_multi_objective:
        makers["pareto_front"] = lambda: plots.plot_pareto_front(
            study, target_names=[o.shown_name for o in spec.all_objectives]
        )
    outcome: dict[str, str] = {}
    for name, make in makers.items():
        try:
            with warnings.catch_warnings():
                # Optuna's matplotlib plots are "experimental"; tight_layout frets over colorbars.
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                warnings.simplefilter("ignore", UserWarning)
                axes = make()
                figure = _figure_of(axes)
                figure.set_size_inches(
                    max(figure.get_size_inches()[0], 8), max(figure.get_size_inches()[1], 5)
                )
                figure.tight_layout()
        except (ValueError, RuntimeError) as e:  # e.g. importances need two complete trials
            outcome[name] = f"not drawn: {first_line(e)}"
            continue
        figure.savefig(out_dir / f"{name}.png", dpi=100)
        plt.close(figure)
        outcome[name] = f"{name}.png"
    (out_dir / "report.html").write_text(_page(study, spec, outcome, out_dir))
    return outcome


def _figure_of(axes):
    first = axes.flat[0] if hasattr(axes, "flat") else axes
    return first.get_figure()


def _page(study: optuna.Study, spec, outcome: dict[str, str], out_dir: Path) -> str:
    summary = summarize(study, spec)
    # Every metric the task's evaluation returned for the best trial, not only the objective.
    measured = [
        (f"&nbsp;&nbsp;{html.escape(k)}", f"{v:.4f}")
        for k, v in summary.best_metrics.items()
        if k != summary.metric
    ]
    # The held-out test set's scores of the best trial (hpsearch.study.test_scores), if scored.
    tested = recorded_test_scores(study).get(summary.best_number) or {}
    measured += [
        (f"&nbsp;&nbsp;{html.escape(k)} (held out)", f"{v:.4f}") for k, v in tested.items()
    ]
    rows = [
        (
            "trials",
            f"{summary.n_spent}/{summary.n_trials_budget} spent; "
            + describe_states(summary.states),
        ),
        (
            f"best {summary.metric}",
            "-"
            if summary.best_value is None
            else f"{summary.best_value:.4f} (trial {summary.best_number})",
        ),
        *(
            [("&nbsp;&nbsp;how sure", html.escape(summary.best_confidence.describe()))]
            if summary.best_confidence
            else []
        ),
        *(
            (f"&nbsp;&nbsp;{html.escape(k)}", html.escape(str(v)))
            for k, v in summary.best_params.items()
        ),
        *measured,
        ("compute spent", f"{summary.train_seconds:.0f} s, {summary.n_steps} optimizer steps"),
        ("saved by pruning", f"~{summary.seconds_saved:.0f} s, {summary.steps_saved} steps"),
        *(
            [
                (
                    "effective batch",
                    (
                        f"{summary.best_effective_batch_size} examples per optimizer step "
                        f"(best trial); {', '.join(map(str, summary.effective_batch_sizes))} "
                        "across trials"
                    ),
                )
            ]
            if summary.best_effective_batch_size is not None
            else []
        ),
        *(
            [
                (
                    "stopped early",
                    (
                        f"trials {', '.join(map(str, summary.stopped_early))}: "
                        f"~{summary.early_stopping_seconds_saved:.0f} s, "
                        f"{summary.early_stopping_steps_saved} steps saved"
                    ),
                )
            ]
            if summary.stopped_early
            else []
        ),
    ]
    table = "\n".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    sections = []
    for name, title in PLOTS.items():
        if name not in outcome:
            continue  # a plot of several objectives, for a study of one
        result = outcome[name]
        if result.endswith(".png"):
            data = base64.b64encode((out_dir / result).read_bytes()).decode()
            body = f'<img alt="{html.escape(title)}" src="data:image/png;base64,{data}">'
        else:
            body = f"<p class=missing>{html.escape(result)}</p>"
        sections.append(f"<section><h2>{html.escape(title)}</h2>{body}</section>")
    name = html.escape(study.study_name)
    objective = f"{html.escape(summary.direction)} {html.escape(summary.metric)}"
    model = html.escape(describe_model(spec))
    about = f"task {html.escape(spec.task)} &middot; {objective} &middot; model {model}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hpsearch report: {name}</title>
<style>
{STYLE}
</style></head><body>
<h1>Study {name}</h1>
<p>{about}</p>
<table>{table}</table>
{"".join(sections)}
</body></html>
"""
