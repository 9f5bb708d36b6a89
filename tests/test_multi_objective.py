"""A real multi-objective study (accuracy up, latency down): it prunes on accuracy, records the
costs, shows and draws its Pareto front, and exports a kept front member by trial or latency."""

from __future__ import annotations

import json

import optuna

from hpsearch.study.quality_pruning import REPORTS_ATTR
from tests.conftest import (
    BAD_LR,
    good_and_bad_search,
    run_hpsearch,
    run_study,
)

GOOD_LR = 3e-4


def test_multi_objective_study_prunes_shows_and_exports_its_front(workdir, tiny_spec):
    spec = {k: v for k, v in tiny_spec.items() if k != "objective"}
    spec["objectives"] = [{"metric": "accuracy"}, {"metric": "latency_ms"}]
    spec.update(good_and_bad_search(GOOD_LR))
    spec["dataset"] = {**spec["dataset"], "test_fraction": 0.005}  # ~190 held-out tweets
    _, study = run_study(workdir, "multi", spec)

    # One direction per objective, as the spec says.
    assert study.directions == [
        optuna.study.StudyDirection.MAXIMIZE,
        optuna.study.StudyDirection.MINIMIZE,
    ]
    # Pruning works on the first objective although Optuna cannot prune a multi-objective study:
    # the bad learning rates end PRUNED at their first evaluation.
    trials = study.get_trials()
    assert [t.params["learning_rate"] for t in trials] == [GOOD_LR, BAD_LR, BAD_LR]
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "PRUNED"]
    # Each evaluation's accuracy is recorded as the trial's report (not as Optuna's intermediate
    # values, which Optuna's TPE cannot read in a multi-objective study).
    assert [len(t.user_attrs[REPORTS_ATTR]) for t in trials] == [2, 1, 1]
    good = trials[0]
    # Its costs are measured and recorded; its second value is its measured latency.
    for cost in ("latency_ms", "model_size_mb", "params", "train_seconds"):
        assert good.user_attrs[cost] > 0
    assert good.values[1] == good.user_attrs["latency_ms"]

    status = run_hpsearch("status", "--study", "multi", "--json", cwd=workdir)
    assert status.returncode == 0, status.stderr
    pareto = json.loads(status.stdout)["pareto"]
    # The front is the complete trials no other dominates, each with its values and kept model.
    assert [m["number"] for m in pareto] == [t.number for t in study.best_trials] == [0]
    assert pareto[0]["values"] == {"eval_accuracy": good.values[0], "latency_ms": good.values[1]}
    assert pareto[0]["model_kept"] is True
    # The run's end scored each kept front member on the held-out test set, once.
    assert 0.0 <= pareto[0]["test_scores"]["test_accuracy"] <= 1.0

    shown = run_hpsearch("best", "--study", "multi", cwd=workdir)
    # `best` has no single best trial to show: it shows the front as a table.
    assert shown.returncode == 0, shown.stderr
    assert "Pareto front" in shown.stdout and "kept" in shown.stdout
    best = json.loads(run_hpsearch("best", "--study", "multi", "--json", cwd=workdir).stdout)
    assert best["pareto"][0]["test_scores"] == pareto[0]["test_scores"]

    report = run_hpsearch("report", "--study", "multi", "--out", "report", cwd=workdir)
    # The report draws the front besides the first objective's plots.
    assert report.returncode == 0, report.stderr
    assert (workdir / "report" / "pareto_front.png").stat().st_size > 0
    assert "Pareto front" in (workdir / "report" / "report.html").read_text()

    exported = run_hpsearch("export", "--study", "multi", "--trial", "0", "by-trial", cwd=workdir)
    # A kept front member exports by its number, the archive naming that trial.
    assert exported.returncode == 0, exported.stderr
    assert json.loads((workdir / "by-trial" / "hpsearch-trial.json").read_text())["trial"] == 0

    pruned = run_hpsearch("export", "--study", "multi", "--trial", "1", "pruned", cwd=workdir)
    # A trial whose model was not kept: one line saying so and how to get it, nothing written.
    assert pruned.returncode == 1
    assert "trial 1's model was not kept" in pruned.stderr and "Traceback" not in pruned.stderr
    assert not (workdir / "pruned").exists()

    latency = good.user_attrs["latency_ms"]
    within = run_hpsearch(
        "export", "--study", "multi", "--max-latency-ms", str(latency * 2), "fast", cwd=workdir
    )
    # The best front member within the latency is trial 0.
    assert within.returncode == 0, within.stderr
    assert "exported trial 0" in within.stdout
    too_fast = run_hpsearch(
        "export", "--study", "multi", "--max-latency-ms", str(latency / 2), "none", cwd=workdir
    )
    # None within: one line naming the front's latencies, nothing written.
    assert too_fast.returncode == 1
    assert "raise --max-latency-ms" in too_fast.stderr
    assert not (workdir / "none").exists()
