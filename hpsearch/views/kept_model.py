"""Which kept model `export --trial N` or `export --max-latency-ms X` writes, or why none.

A single-objective study keeps its best trial's model (storage/best_model.py), a multi-objective
one its Pareto front's, up to MAX_FRONT_MODELS (storage/front_models.py); any of those may be
exported by its trial number.
"""

from __future__ import annotations

from typing import Any

import optuna

from hpsearch.errors import StudyError
from hpsearch.storage import resolve_best_model
from hpsearch.storage.front_models import MAX_FRONT_MODELS, front_model_pointers
from hpsearch.study.pareto import pareto_front, pick_within


def choose_kept_model(
    study: optuna.Study, spec, trial: int | None, max_latency_ms: float | None
) -> dict[str, Any]:
    """The pointer ({"trial", "artifact_id", ...}) of the kept model to export."""
    name = study.study_name
    if trial is not None and max_latency_ms is not None:
        raise StudyError("--trial and --max-latency-ms each pick a model; give one of them")
    if not spec.is_multi_objective:
        if max_latency_ms is not None:
            raise StudyError(
                f"--max-latency-ms picks among a Pareto front's models, and study {name!r} has "
                "one objective; export its best model, or --trial N"
            )
        kept = resolve_best_model(study)
        if kept.problem is not None:
            raise StudyError(kept.problem)
        if kept.pointer["trial"] != trial:
            raise StudyError(
                f"trial {trial}'s model was not kept: study {name!r} keeps its best trial's "
                f"(trial {kept.pointer['trial']}); `hpsearch train --study {name} --trial "
                f"{trial}` trains its configuration again"
            )
        return kept.pointer
    kept = {p["trial"]: p for p in front_model_pointers(study)}
    front = pareto_front(study, spec)
    if trial is not None:
        if trial not in kept:
            listed = ", ".join(map(str, sorted(kept))) or "none yet"
            raise StudyError(
                f"trial {trial}'s model was not kept: study {name!r} keeps the models of its "
                f"Pareto front, up to {MAX_FRONT_MODELS} (trials {listed}); `hpsearch train "
                f"--study {name} --trial {trial}` trains its configuration again"
            )
        return kept[trial]
    member = pick_within(front, max_latency_ms)
    if member is None:
        latencies = ", ".join(
            f"trial {m['number']} {m['costs']['latency_ms']:.2f} ms"
            for m in front
            if m["model_kept"] and "latency_ms" in m["costs"]
        )
        raise StudyError(
            f"no kept model of the Pareto front of study {name!r} runs within {max_latency_ms} ms "
            f"({latencies or 'none is kept yet'}); raise --max-latency-ms"
        )
    return kept[member["number"]]
