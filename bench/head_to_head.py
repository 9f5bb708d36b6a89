"""Head-to-head: hpsearch, `Trainer.hyperparameter_search(backend="optuna")` and plain Optuna.

One study spec (the default, studies/sentiment.yaml, unless --study names another) is searched by
each contender chosen with --only, back to back on this machine, with the same model, tokenized
data, caps, search space, number of trials and sampler (the spec's, with its seed) unless the
contender says otherwise below:

- hpsearch: `hpsearch run --study SPEC` on a fresh SQLite storage, as a user runs it.
- hpsearch-workers: the same with `--workers N`, N = this machine's cores: one single-threaded
  worker process per core, hpsearch's own way to use a CPU machine.
- hf: `Trainer(model_init=...).hyperparameter_search(backend="optuna", hp_space=..., sampler=...)`,
  set up as transformers' documentation shows (evaluation each epoch, which is also when it can
  prune; Optuna's default pruner).
- optuna: a plain `study.optimize` loop whose objective builds a Trainer, trains, evaluates at the
  end and returns the metric; no pruning.
- plain: no search at all: one fine-tune with default settings (learning rate 5e-5, batch 16, one
  epoch), the reference a search has to beat.
- hpsearch-timed: hpsearch with no trial limit and `--timeout` equal to HF's wall time in the same
  run (so it runs after hf): the same compute as HF, spent on as many trials as it fits.
- hpsearch-warm: hpsearch warm-started (`--warm-start-from`, the spec's top or 5) from the finished
  hpsearch study of the previous seed in the same run (so it needs --seeds with two or more, and
  runs from the second on), stopped at half HF's wall time: what matters is how soon it reaches
  HF's final best (issue 25's target: a quarter of HF's time).
- hpsearch-models: hpsearch-timed (HF's wall time, no trial limit) on the spec with its model
  searched: `model: {choice: [the spec's model, that model cut to its bottom half of layers]}`, a
  second small model made from the same pretrained weights (nothing downloaded); a fixed
  `freeze_layers` holds for the full model only (the cut one trains all its layers). Against
  hpsearch-timed: the model choice at equal wall time.
- defaults: what users do without a search: one fine-tune with transformers' default
  `TrainingArguments` (learning rate 5e-5, batch 8, no warm-up, no weight decay) for as many epochs
  as the search's longest trial (the top of its `num_train_epochs` range).

Every contender trains in the same precision (`--precision`, default: what hpsearch picks on this
machine, bf16 on a CPU with AVX512-BF16 or AMX, fp32 elsewhere), written into the spec's
`training:` section that hpsearch's trials and the hand-written contenders' TrainingArguments both
take; the table's header names it and the CPU's flags.

Every contender's anytime curve (best so far against wall time and optimizer steps, bench/curves.py)
is recorded; with `--seeds 0,1,2` the whole comparison runs once per sampler seed and the curves'
figures are summarized over the seeds (median and range).

Each contender runs in its own Python process, timed from its start to its exit, so each pays its
own imports and model loading; the tokenized data comes from hpsearch's cache for all of them
(warmed before any timing). The spec's fixed training values (`training:`) and model knobs apply to
every contender.

    python bench/head_to_head.py [--study studies/sentiment.yaml] [--n-trials N]
        [--max-train-samples N] [--max-eval-samples N] [--sampler-seed N]
        [--only hpsearch,hpsearch-workers,hf,optuna,plain,hpsearch-timed,hpsearch-warm,
                hpsearch-models,defaults] [--seeds 0,1,2]
        [--precision auto|bf16|fp32] [--json out.json] [--png curves.png]

Prints a Markdown table: wall time, best eval metric, optimizer steps trained, trials by state.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

CONTENDERS = (
    "hpsearch",
    "hpsearch-workers",
    "hf",
    "optuna",
    "plain",
    "hpsearch-timed",
    "hpsearch-warm",
    "hpsearch-models",
    "defaults",
)
TIMED = ("hpsearch-timed", "hpsearch-models")  # run for HF's wall time with no trial limit
DEFAULT_CONTENDERS = CONTENDERS[:5]
UNLIMITED_TRIALS = 10_000  # hpsearch-timed: the timeout, not the trial count, ends the run
# One fine-tune with default settings: transformers' learning rate, one epoch, batch 16.
PLAIN_SETTINGS = {"learning_rate": 5e-5, "num_train_epochs": 1, "per_device_train_batch_size": 16}
# HF's Trainer for its search: eval_strategy="epoch" as in transformers' hyperparameter-search guide
# (HF reports each evaluation to the trial and prunes there). warmup_steps=0.0: HF casts each
# sampled value to the type of the argument's default, and the default 0 is an int, so a warmup
# fraction would silently become 0.
HF_SEARCH_ARGS = {"eval_strategy": "epoch", "logging_strategy": "no", "warmup_steps": 0.0}
WARM_TIME_SHARE = 0.5  # hpsearch-warm stops at this share of HF's wall time


def load_bench_spec(
    path: Path,
    n_trials: int | None,
    max_train: int | None,
    max_eval: int | None,
    sampler_seed: int | None = None,
) -> dict:
    """The spec as a dict, with the bench's overrides of budget, caps and sampler seed.

    The budget is the study's trial count alone: the benches compare runs of as many trials. The
    default study's time limit (a first run on a slow CPU) would cut a run on a busy machine short.
    """
    raw = yaml.safe_load(path.read_text())
    for time_limit in ("timeout", "at_timeout"):
        raw.get("budget", {}).pop(time_limit, None)
    if sampler_seed is not None:
        raw.setdefault("sampler", {})["seed"] = sampler_seed
    if n_trials is not None:
        raw.setdefault("budget", {})["n_trials"] = n_trials
    for key, value in (("max_train_samples", max_train), ("max_eval_samples", max_eval)):
        if value is not None:
            raw["dataset"][key] = value
    return raw


def equal_precision(raw: dict, precision: str) -> str:
    """Write one precision into the spec's `training:` for every contender; return its name. A
    spec that fixes bf16 or fp16 itself keeps it."""
    from hpsearch.trial.precision import PRECISION_KEYS, auto_precision, precision_name

    training = raw.setdefault("training", {})
    if not any(key in training for key in PRECISION_KEYS):
        if precision == "auto":
            training.update(auto_precision(training) or {"bf16": False})
        else:
            training["bf16"] = precision == "bf16"
            if training["bf16"]:
                import torch

                training["use_cpu"] = not torch.cuda.is_available()
    return precision_name(training)


def cpu_flags() -> str:
    """The CPU's model name and the flags that decide its training speed (lscpu's)."""
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in info.splitlines()
            if line.startswith("model name")
        ),
        "unknown CPU",
    )
    flags = next(
        (
            set(line.split(":", 1)[1].split())
            for line in info.splitlines()
            if line.startswith("flags")
        ),
        set(),
    )
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return f"{model}, {os.cpu_count()} cores, flags: {' '.join(f for f in wanted if f in flags)}"


# --- the contenders that are not hpsearch: what a user writes by hand -----------------------------


class Shared:
    """Everything both hand-written contenders take from the spec: data, model path, args, space,
    and the task's model class, collator, Trainer and metrics (as hpsearch's trials use them)."""

    def __init__(self, spec):
        from hpsearch.spec import resolve_model, split_params
        from hpsearch.trial import load_config, load_data, quiet_libraries

        quiet_libraries()
        self.spec = spec
        self.task = spec.task_spec
        location = resolve_model(spec.model)
        self.model_path = str(location.path) if location.path is not None else location.hub_id
        self.tokenizer, self.data = load_data(spec, location)
        self.config = load_config(location, self.data.label_names)
        fixed = split_params(spec.training)
        self.fixed_args, self.knobs, self.generation = (
            fixed.arguments,
            fixed.knobs,
            fixed.generation,
        )
        self.n_steps = 0
        self.trial_first_steps: list[int] = []  # self.n_steps when each trial began, in order
        self.precision = "fp32"  # what the last Trainer trained in (TrainingArguments' own flags)

    def steps_summary(self) -> dict:
        """Steps in all, and per trial (trials run one after another, each begins a training)."""
        ends = self.trial_first_steps[1:] + [self.n_steps]
        return {
            "n_steps": self.n_steps,
            "trial_steps": [b - a for a, b in zip(self.trial_first_steps, ends, strict=True)],
            "precision": self.precision,
        }

    def model(self):
        from hpsearch.trial import transformers_class

        model = transformers_class(self.task.model_class).from_pretrained(
            self.model_path, config=self.config
        )
        if self.knobs.get("freeze_embeddings"):
            model.base_model.get_input_embeddings().requires_grad_(False)
        if self.knobs.get("freeze_layers"):  # as hpsearch's trials: both contenders train alike
            from hpsearch.trial.model import freeze_layers

            freeze_layers(model, self.knobs["freeze_layers"])
        for name, value in self.generation.items():  # fixed ones only: HF cannot search these
            setattr(model.generation_config, name, value)
        return model

    def hp_space(self, trial) -> dict:
        from hpsearch.spec import suggest_params

        return suggest_params(trial, self.spec.search_space)

    def metrics(self, metrics: dict) -> dict:
        """Trainer's metrics and the task's derived ones (perplexity), as hpsearch reports them."""
        return {**metrics, **self.task.derive_metrics(metrics)}

    def trained(self, output_dir: str, args: dict):
        """A Trainer that has trained one model with `args` and no evaluation on the way: the
        hand-written loop's trial and the fine-tunes without search. Seeded before the model's new
        head is made, as transformers' example scripts do (a Trainer given a model seeds only its
        training), so that it can be repeated."""
        from transformers import set_seed

        set_seed(self.spec.seed)
        trainer = self.trainer(output_dir, {**args, "eval_strategy": "no"}, model=self.model())
        trainer.train()
        return trainer

    def trainer(self, output_dir: str, args: dict, **kwargs):
        from transformers import TrainerCallback

        from hpsearch.trial import transformers_class

        shared = self

        class CountSteps(TrainerCallback):
            def on_train_begin(self, args, state, control, **kw):
                shared.trial_first_steps.append(shared.n_steps)

            def on_step_end(self, args, state, control, **kw):
                shared.n_steps += 1

        training_args = transformers_class(self.task.arguments_class)(
            output_dir=output_dir,
            seed=self.spec.seed,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **{"per_device_eval_batch_size": 64, **self.fixed_args, **args, **self.task.arguments},
        )
        self.precision = "bf16" if training_args.bf16 else "fp16" if training_args.fp16 else "fp32"
        model = kwargs.get("model")
        collator_kwargs = self.task.collator_kwargs(model) if model is not None else {}
        return transformers_class(self.task.trainer_class)(
            args=training_args,
            train_dataset=self.data.train,
            eval_dataset=self.data.eval,
            processing_class=self.tokenizer,
            data_collator=transformers_class(self.task.collator_class)(
                self.tokenizer, **collator_kwargs
            ),
            compute_metrics=self.task.compute_metrics(
                self.spec.dataset, self.tokenizer, self.data.label_names, features=self.data.eval
            ),
            callbacks=[CountSteps()],
            **kwargs,
        )


def run_hf(spec, storage: str, output_dir: str) -> dict:
    from hpsearch.study import make_sampler

    shared = Shared(spec)
    trainer = shared.trainer(output_dir, HF_SEARCH_ARGS, model_init=shared.model)
    metric = spec.objective.eval_key
    trainer.hyperparameter_search(
        hp_space=shared.hp_space,
        compute_objective=lambda metrics: shared.metrics(metrics)[metric],
        n_trials=spec.budget.n_trials,
        direction=spec.objective.direction,
        backend="optuna",
        sampler=make_sampler(spec.sampler),
        storage=storage,
        study_name="hf",
    )
    return shared.steps_summary()


def run_optuna(spec, storage: str, output_dir: str) -> dict:
    import optuna

    from hpsearch.study import make_sampler

    shared = Shared(spec)
    metric = spec.objective.eval_key

    def objective(trial: optuna.Trial) -> float:
        trainer = shared.trained(output_dir, shared.hp_space(trial))
        return shared.metrics(trainer.evaluate())[metric]

    study = optuna.create_study(
        storage=storage,
        study_name="optuna",
        direction=spec.objective.direction,
        sampler=make_sampler(spec.sampler),
    )
    study.optimize(objective, n_trials=spec.budget.n_trials)
    return shared.steps_summary()


def fine_tune_once(spec, storage: str, output_dir: str, name: str, args: dict) -> dict:
    """One fine-tune with `args` and no search, stored as a one-trial study named `name`."""
    import optuna

    shared = Shared(spec)
    metric = spec.objective.eval_key

    def objective(trial: optuna.Trial) -> float:
        return shared.metrics(shared.trained(output_dir, args).evaluate())[metric]

    study = optuna.create_study(
        storage=storage, study_name=name, direction=spec.objective.direction
    )
    study.optimize(objective, n_trials=1)
    return shared.steps_summary()


def run_plain(spec, storage: str, output_dir: str) -> dict:
    return fine_tune_once(spec, storage, output_dir, "plain", PLAIN_SETTINGS)


def search_epochs(spec) -> float:
    """The most epochs a trial of the search trains: the top of a searched `num_train_epochs`, else
    the spec's fixed value, else transformers' default (3)."""
    searched = spec.search_space.get("num_train_epochs")
    if searched is not None:
        return max(getattr(searched, "choices", None) or searched.bounds)
    return spec.training.get("num_train_epochs", 3)


def run_defaults(spec, storage: str, output_dir: str) -> dict:
    """transformers' default TrainingArguments, for the search's longest trial."""
    return fine_tune_once(
        spec, storage, output_dir, "defaults", {"num_train_epochs": search_epochs(spec)}
    )


def contender_main(name: str, spec_path: Path, storage: str, result_path: Path) -> None:
    from hpsearch.spec import load_spec_file

    spec = load_spec_file(spec_path)
    with tempfile.TemporaryDirectory(prefix=f"h2h-{name}-") as output_dir:
        run = {"hf": run_hf, "optuna": run_optuna, "plain": run_plain, "defaults": run_defaults}
        result = run[name](spec, storage, output_dir)
    result_path.write_text(json.dumps(result))


# --- the parent: runs each contender in its own process and reads what it stored ------------------


def run_contender(
    name: str,
    spec_path: Path,
    scratch: Path,
    timeout: float | None = None,
    warm_from: Path | None = None,
) -> dict:
    """Run one contender in its own process and read what it stored. `timeout`: HF's wall time in
    this run (hpsearch-timed, hpsearch-warm); `warm_from`: the storage holding the finished study
    `hpsearch` that hpsearch-warm starts from (copied: the earlier run's file is left as it was)."""
    storage = f"sqlite:///{scratch / f'{name}.db'}"
    if warm_from is not None:
        shutil.copyfile(warm_from, scratch / f"{name}.db")
    result_path = scratch / f"{name}.json"
    env = {**os.environ, "HPSEARCH_ARTIFACTS": str(scratch / "artifacts")}
    if name.startswith("hpsearch"):
        command = [
            sys.executable,
            "-m",
            "hpsearch.cli",
            "run",
            "--study",
            str(spec_path),
            "--storage",
            storage,
            "--study-name",
            name,
        ]
        if name == "hpsearch-workers":
            command += ["--workers", str(os.cpu_count() or 1)]
        if name in TIMED:
            command += ["--timeout", f"{timeout:.0f}", "--n-trials", str(UNLIMITED_TRIALS)]
        if name == "hpsearch-warm":
            command += [
                "--warm-start-from",
                "hpsearch",
                "--timeout",
                f"{timeout * WARM_TIME_SHARE:.0f}",
            ]
    else:
        command = [
            sys.executable,
            __file__,
            "--contender",
            name,
            "--study",
            str(spec_path),
            "--storage",
            storage,
            "--result",
            str(result_path),
        ]
    started_at = time.time()
    started = time.perf_counter()
    completed = subprocess.run(
        command, env=env, cwd=REPO, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - started
    if completed.returncode != 0:
        sys.exit(
            f"{name} failed (exit {completed.returncode}):\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    stepped = None if name.startswith("hpsearch") else json.loads(result_path.read_text())
    measured = summarize_storage(storage, name, started_at, stepped)
    return {"contender": name, "seconds": seconds, **measured}


def summarize_storage(
    storage: str, study_name: str, started_at: float, stepped: dict | None
) -> dict:
    """What the contender's storage holds: best, states, steps and the anytime curve. hpsearch's
    trials record their steps; the hand-written contenders' steps come in `stepped`."""
    import optuna
    from curves import anytime_curve

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.get_trials(deepcopy=False)
    states: dict[str, int] = {}
    for trial in trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    best = study.best_trial
    steps = (
        [t.user_attrs.get("n_steps", 0) for t in trials]
        if stepped is None
        else stepped["trial_steps"] + [0] * (len(trials) - len(stepped["trial_steps"]))
    )
    finished = [
        {
            "finished_at": t.datetime_complete.timestamp() if t.datetime_complete else None,
            "steps": n,
            "state": t.state.name,
            "value": t.value,
        }
        for t, n in zip(trials, steps, strict=True)
    ]
    # hpsearch's trials record their device, e.g. "cpu (2 threads, bf16)"; the others say.
    device = trials[0].user_attrs.get("device", "") if stepped is None else ""
    precision = (
        stepped["precision"]
        if stepped is not None
        else next((p for p in ("bf16", "fp16", "fp32") if p in device), "unknown")
    )
    return {
        "precision": precision,
        "best_value": best.value,
        "best_trial": best.number,
        "best_params": best.params,
        "first_params": trials[0].params,
        "states": states,
        "n_steps": sum(steps),
        "trials": [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in trials
        ],
        "curve": anytime_curve(
            finished, started_at, study.direction == optuna.study.StudyDirection.MAXIMIZE
        ),
    }


def model_choice_spec(raw: dict, scratch: Path) -> dict:
    """The spec with its model searched against the same model cut to its bottom half of layers
    (saved in `scratch`); a fixed `freeze_layers` becomes a choice of one for the full model."""
    import copy

    from transformers import AutoConfig, AutoModel, AutoTokenizer

    from hpsearch.spec import resolve_model

    full = raw["model"]
    path = resolve_model(full).path
    if path is None:
        sys.exit(f"hpsearch-models cuts the spec's model, so it needs a local one, got {full}")
    layers = AutoConfig.from_pretrained(path).num_hidden_layers // 2
    cut = scratch / f"{path.name}-{layers}-layers"
    AutoModel.from_pretrained(path, num_hidden_layers=layers).save_pretrained(cut)
    AutoTokenizer.from_pretrained(path).save_pretrained(cut)
    searched = copy.deepcopy(raw)
    searched["model"] = {"choice": [full, str(cut)]}
    frozen = searched.get("training", {}).pop("freeze_layers", None)
    if frozen is not None:
        searched["search_space"]["freeze_layers"] = {"choice": [frozen], "when": {"model": full}}
    return searched


def warm_cache(spec_path: Path) -> None:
    """Tokenize once, before any timing: all three contenders read the same cached data."""
    from hpsearch.spec import load_spec_file
    from hpsearch.workers import warm_cache as warm

    warm(load_spec_file(spec_path))


def render(results: list[dict], metric: str) -> str:
    hf = next((r for r in results if r["contender"] == "hf"), None)
    lines = [
        f"| contender | wall time | vs HF | best {metric} | optimizer steps | trials |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        versus = f"{r['seconds'] / hf['seconds']:.2f}x" if hf else "-"
        states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(r["states"].items()))
        lines.append(
            f"| {r['contender']} | {r['seconds']:.0f} s | {versus} | {r['best_value']:.4f} "
            f"(trial {r['best_trial']}) | {r['n_steps']} | {states} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-train-samples", type=int)
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument(
        "--sampler-seed", type=int, help="override the spec's sampler seed, for every contender"
    )
    parser.add_argument(
        "--seeds", help="run the whole comparison once per sampler seed, e.g. 0,1,2"
    )
    parser.add_argument("--only", default=",".join(DEFAULT_CONTENDERS))
    parser.add_argument(
        "--precision",
        choices=("auto", "bf16", "fp32"),
        default="auto",
        help="every contender's precision (auto: what hpsearch picks here)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the results here (bench/curves.py reads it)"
    )
    parser.add_argument("--png", type=Path, help="write the anytime curves here")
    # Internal: run one hand-written contender in this process.
    parser.add_argument(
        "--contender", choices=("hf", "optuna", "plain", "defaults"), help=argparse.SUPPRESS
    )
    parser.add_argument("--storage", help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.contender:
        contender_main(args.contender, args.study, args.storage, args.result)
        return 0
    chosen = [c.strip() for c in args.only.split(",")]
    unknown = set(chosen) - set(CONTENDERS)
    if unknown:
        parser.error(
            f"--only: unknown contenders {sorted(unknown)}; pick from {', '.join(CONTENDERS)}"
        )
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.sampler_seed]
    for timed in set(TIMED + ("hpsearch-warm",)) & set(chosen):
        if "hf" not in chosen or chosen.index("hf") > chosen.index(timed):
            parser.error(f"--only: {timed} is timed by HF's wall time, so hf must come before it")
    if "hpsearch-warm" in chosen and (
        "hpsearch" not in chosen
        or chosen.index("hpsearch") > chosen.index("hpsearch-warm")
        or len(seeds) < 2
    ):
        parser.error(
            "--only: hpsearch-warm starts from the previous seed's hpsearch study: it needs"
            " hpsearch before it and two or more --seeds"
        )
    from curves import report

    from hpsearch.spec import load_spec_file

    runs_by_seed, metric, direction = {}, None, "maximize"
    previous_hpsearch = None  # the storage of the last seed's hpsearch study, for hpsearch-warm
    for seed in seeds:
        scratch = Path(tempfile.mkdtemp(prefix="hpsearch-h2h-"))
        raw = load_bench_spec(
            args.study, args.n_trials, args.max_train_samples, args.max_eval_samples, seed
        )
        precision = equal_precision(raw, args.precision)
        spec_path = scratch / "spec.yaml"
        spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
        warm_cache(spec_path)
        spec_paths = {name: spec_path for name in chosen}
        if "hpsearch-models" in chosen:
            spec_paths["hpsearch-models"] = scratch / "spec-models.yaml"
            spec_paths["hpsearch-models"].write_text(
                yaml.safe_dump(model_choice_spec(raw, scratch), sort_keys=False)
            )
            warm_cache(spec_paths["hpsearch-models"])
        spec = load_spec_file(spec_path)
        metric, direction = spec.objective.eval_key, spec.objective.direction
        results = []
        for name in chosen:
            if name == "hpsearch-warm" and previous_hpsearch is None:
                print(f"seed {seed}: hpsearch-warm waits for a finished seed", file=sys.stderr)
                continue
            print(f"seed {seed}: running {name} ...", file=sys.stderr, flush=True)
            hf = next((r for r in results if r["contender"] == "hf"), None)
            warm_from = previous_hpsearch if name == "hpsearch-warm" else None
            results.append(
                run_contender(
                    name,
                    spec_paths[name],
                    scratch,
                    timeout=hf and hf["seconds"],
                    warm_from=warm_from,
                )
            )
            print(
                json.dumps({k: v for k, v in results[-1].items() if k != "curve"}),
                file=sys.stderr,
                flush=True,
            )
        print(
            f"{raw['budget']['n_trials']} trials each, "
            f"{raw['dataset'].get('max_train_samples')} train / "
            f"{raw['dataset'].get('max_eval_samples')} eval examples, spec {args.study.name}, "
            f"sampler seed {raw.get('sampler', {}).get('seed')}, {precision} for every "
            f"contender, on {cpu_flags()}\n"
        )
        print(render(results, metric) + "\n")
        runs_by_seed[str(raw.get("sampler", {}).get("seed"))] = {r["contender"]: r for r in results}
        if "hpsearch" in chosen:
            previous_hpsearch = scratch / "hpsearch.db"
        if args.json:  # after every seed: a long run interrupted keeps what it measured
            saved = (
                {
                    "metric": metric,
                    "direction": direction,
                    "precision": precision,
                    "cpu": cpu_flags(),
                    "runs": runs_by_seed,
                }
                if args.seeds
                else results
            )
            args.json.write_text(json.dumps(saved, indent=2))
    if "hf" in chosen:
        print(report(runs_by_seed, metric, direction == "maximize", args.png))
    return 0


if __name__ == "__main__":
    sys.exit(main())
