"""The commands that write a model for use outside hpsearch: `export` (the best trial's model, and
its deployable forms) and `train` (a trial's configuration trained again, on all the data if asked).
"""

from __future__ import annotations

import json
import socket
from pathlib import Path

import click

from hpsearch.cli.app import check_training_args, cli, console, open_storage_flag, storage_option
from hpsearch.errors import HpsearchError


@cli.command()
@click.option("--study", "name", required=True, metavar="NAME")
@storage_option
@click.option(
    "--adapter",
    "adapter_only",
    is_flag=True,
    help="Of a PEFT study: write the adapter and head alone (megabytes), not merged weights.",
)
@click.option(
    "--quantize",
    type=click.Choice(["int8"]),
    help="Also write OUT_DIR/int8/: the linear layers dynamically quantized to int8 (classifiers).",
)
@click.option(
    "--onnx",
    is_flag=True,
    help="Also write OUT_DIR/onnx/: the model as ONNX, for ONNX Runtime (classifiers).",
)
@click.option(
    "--trial",
    "number",
    type=click.IntRange(min=0),
    metavar="N",
    help="Export trial N's kept model (the best trial's, or a Pareto front member's).",
)
@click.option(
    "--max-latency-ms",
    type=click.FloatRange(min=0, min_open=True),
    metavar="X",
    help="Of a multi-objective study: the kept front member best on the first objective whose "
    "latency_ms is at most X.",
)
@click.argument("out_dir", type=click.Path(path_type=Path))
def export(
    name: str,
    storage: str | None,
    adapter_only: bool,
    quantize: str | None,
    onnx: bool,
    number: int | None,
    max_latency_ms: float | None,
    out_dir: Path,
) -> None:
    """Write the best model, tokenizer, label names and a model card to OUT_DIR, ready for
    pipeline().

    A LoRA study's adapter is merged into the weights (--adapter: written alone). With --quantize
    int8 and/or --onnx, also its deployable forms, each measured against the fp32 model (file size,
    CPU latency per example, the objective on the study's eval set) in the card.
    """
    from hpsearch.deploy import export_best_model
    from hpsearch.storage import artifact_dir, open_artifact_store
    from hpsearch.study import stored_spec
    from hpsearch.tasks import get_task
    from hpsearch.views import ADAPTER_CONFIG, adapter_is_mergeable

    def finish(model_dir: Path, spec) -> None:
        # A LoRA or IA3 adapter is merged into the pretrained weights (torch and peft: imported
        # only here); virtual tokens (prompt and prefix tuning) cannot be, and stay the adapter.
        if (model_dir / ADAPTER_CONFIG).is_file() or adapter_only:
            from hpsearch.deploy.merge import make_deployable

            make_deployable(model_dir, spec, adapter_only or not adapter_is_mergeable(model_dir))

    url, rdb = open_storage_flag(storage, must_exist=True)
    deployable = bool(quantize or onnx)
    if deployable and adapter_only:
        raise HpsearchError(
            "--adapter writes the LoRA adapter alone; --quantize and --onnx convert the merged "
            "model: export one or the other"
        )
    if deployable:
        from hpsearch.deploy import check_deployable

        # An unknown study, a task lacking these forms, a missing package: one line, nothing written
        spec = stored_spec(rdb, name)
        check_deployable(spec, name, onnx=onnx)
    store = open_artifact_store(artifact_dir(url), create=False)
    if deployable:
        from hpsearch.deploy import export_deployable
        from hpsearch.trial import cache_dir, quiet_libraries

        quiet_libraries()
        with console.status("exporting, then measuring each form on the study's eval set"):
            exported, result = export_deployable(
                rdb,
                name,
                store,
                out_dir,
                quantize=quantize,
                onnx=onnx,
                cache_dir=cache_dir(),
                finish=finish,
                trial=number,
                max_latency_ms=max_latency_ms,
            )
    else:
        exported = export_best_model(
            rdb, name, store, out_dir, finish, trial=number, max_latency_ms=max_latency_ms
        )
    console.print(
        f"exported trial {exported['number']} ({exported['metric']} {exported['value']:.4f}) to "
        f"{out_dir}"
    )
    task = get_task(exported["task"])
    console.print(f"load it with:\n{task.usage(out_dir)}", markup=False)
    if deployable:
        _print_deployment(task, out_dir, result)


def _print_deployment(task, out_dir: Path, result: dict) -> None:
    from hpsearch.deploy import (
        INT8_DIR,
        ONNX_DIR,
        Measurement,
        deployment_table,
        usage_int8,
        usage_onnx,
    )

    measurements = [Measurement(**m) for m in result["forms"]]
    console.print(deployment_table(measurements, result["conditions"]))
    forms = {m.form for m in measurements}
    if "int8" in forms:
        console.print(
            f"load the int8 form with:\n{usage_int8(task, out_dir / INT8_DIR)}", markup=False
        )
    if "onnx" in forms:
        console.print(
            f"run the ONNX form with:\n{usage_onnx(task, out_dir / ONNX_DIR)}", markup=False
        )


@cli.command()
@click.option(
    "--study", "name", required=True, metavar="NAME", help="The study's name in the storage."
)
@storage_option
@click.option(
    "--trial",
    "number",
    type=click.IntRange(min=0),
    metavar="N",
    help="Train trial N's configuration (a COMPLETE or PRUNED trial) [default: the best trial].",
)
@click.option(
    "--full-data",
    is_flag=True,
    help=(
        "Train on all the training data, without dataset.max_train_samples (the eval set stays "
        "the search's)."
    ),
)
@click.option(
    "--epochs",
    type=click.FloatRange(min=0, min_open=True),
    metavar="E",
    help="Train for E epochs instead of the trial's num_train_epochs.",
)
@click.argument("out_dir", type=click.Path(path_type=Path))
def train(
    name: str,
    storage: str | None,
    number: int | None,
    full_data: bool,
    epochs: float | None,
    out_dir: Path,
) -> None:
    """Train a trial's configuration and seed again (on all the data with --full-data), evaluate it
    and write the model, tokenizer, label names and a model card to OUT_DIR, ready for pipeline().
    """
    import optuna

    from hpsearch.deploy import check_new_directory
    from hpsearch.spec import check_sources
    from hpsearch.study import (
        plan_final_training,
        record_final_training,
        stored_spec,
    )
    from hpsearch.tasks import get_task
    from hpsearch.views import describe_epochs, write_note

    url, rdb = open_storage_flag(storage, must_exist=True)
    spec = stored_spec(rdb, name)
    study = optuna.load_study(study_name=name, storage=rdb)
    plan = plan_final_training(study, spec, number, full_data=full_data, epochs=epochs)
    check_new_directory(out_dir)  # before minutes of training, not after
    check_sources(plan.spec)  # the model and data must be reachable from this machine
    check_training_args(plan.spec)
    _train_on_one_device()
    record = _train_final(study, spec, plan, out_dir, url)
    # Recorded once the directory is complete: a failed training leaves neither.
    record_final_training(study, record)
    write_note(study, spec)
    recorded = "" if plan.trial_value is None else f" (the trial recorded {plan.trial_value:.4f})"
    console.print(
        f"trained trial {plan.trial} on {record['n_train_examples']} examples for "
        f"{describe_epochs(record['epochs'])}: {record['metric']} {record['value']:.4f}{recorded}; "
        f"wrote {out_dir}"
    )
    if record["test_scores"]:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in record["test_scores"].items())
        console.print(f"on the held-out test set: {shown}", markup=False)
    console.print(f"load it with:\n{get_task(spec.task).usage(out_dir)}")


FINAL_RECORD_FILE = "hpsearch-final-training.json"


def _train_on_one_device() -> None:
    """A final training is one process: on a host with several GPUs it takes the first (Trainer
    would otherwise spread it over all of them with DataParallel), and says so."""
    from hpsearch.trial import count_gpus
    from hpsearch.workers import train_on_one_device

    notice = train_on_one_device(count_gpus())  # before CUDA starts
    if notice is not None:
        console.print(notice, markup=False)


def _train_final(study, spec, plan, out_dir: Path, url=None) -> dict:
    """Train `plan` with a live display of its steps and evaluations; the model, its card and its
    record in OUT_DIR, all or nothing. Returns the record. `url`: the storage (where a distill:
    teacher of best-of:/trial: is kept)."""
    import datetime

    from hpsearch.deploy import staged_directory
    from hpsearch.trial import final_record, load_for_training, quiet_libraries, train_final
    from hpsearch.views import TrainingProgress, final_model_card, read_adapter_settings

    quiet_libraries()
    with console.status("loading model and data (tokenized once, then cached)"):
        loaded = load_for_training(plan.spec, url)
    data = "all the training data" if plan.full_data else "the search's data"
    console.print(
        f"training trial {plan.trial}'s configuration (seed {plan.seed}) on {data}: "
        f"{len(loaded.data.train)} training examples, {len(loaded.data.eval)} eval examples"
    )
    if plan.trial_devices > 1:
        accumulation = plan.values["gradient_accumulation_steps"]
        console.print(
            f"trial {plan.trial} trained on {plan.trial_devices} devices (DDP): here one device "
            f"accumulates {accumulation} steps, for the same examples per optimizer step"
        )
    with staged_directory(out_dir) as staging:
        with TrainingProgress(
            console, f"trial {plan.trial}", spec.objective.eval_key, plan.trial_value
        ) as progress:
            result = train_final(plan, loaded, staging, progress)
        test_scores = None
        if plan.spec.dataset.has_test_set:  # the held-out test set: the model is scored once
            from hpsearch.deploy import score_on_test_set
            from hpsearch.trial import cache_dir

            with console.status("scoring the model on the held-out test set"):
                test_scores = score_on_test_set(plan.spec, staging, cache_dir())
        record = final_record(
            plan,
            result,
            test_scores=test_scores,
            out_dir=str(out_dir.resolve()),
            host=socket.gethostname(),
            finished_at=datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M:%S UTC"
            ),
        )
        card = final_model_card(study, spec, plan, record, read_adapter_settings(staging))
        (staging / "README.md").write_text(card)
        (staging / FINAL_RECORD_FILE).write_text(json.dumps(record, indent=2))
    return record
