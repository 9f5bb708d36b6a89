"""Where one trial of the default study spends its time on this CPU (issue 24, part 5).

One trial of studies/sentiment.yaml, built and trained by hpsearch's own code (start_fit, the
evaluating callback, the precision chosen for this CPU), with fixed parameters (below). Reports the
model and Trainer's set-up, the training steps and the evaluations apart, in wall and CPU seconds
(CPU seconds, with one thread, are the fairer comparison on a shared machine: two threads spin at
their barriers when the cores are busy), and with --profile the operators that took the time.

    python bench/first_run.py [--threads 1,2] [--epochs 1] [--profile] [--study FILE] \
        [--set dataset.max_length=48 --set training.freeze_layers=2 ...]

To see an AVX2-only CPU (no AVX-512, no bf16) on a newer one, hold torch and its libraries to AVX2:

    ATEN_CPU_CAPABILITY=avx2 MKL_ENABLE_INSTRUCTIONS=AVX2 ONEDNN_MAX_CPU_ISA=AVX2 \
        python bench/first_run.py

(hpsearch then trains in fp32, hpsearch.trial.precision). The numbers go to BENCHMARKS.md,
"Default study (`make study`)".
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

PARAMS = {
    "learning_rate": 1.6e-4,
    "per_device_train_batch_size": 32,
    "weight_decay": 0.046,
    "warmup_steps": 0.156,
}


def cpu_seconds() -> float:
    """User + system time of this process and its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds spent inside the calls it wraps."""

    def __init__(self) -> None:
        self.wall = self.cpu = 0.0
        self.calls = 0

    def wrap(self, function):
        def timed(*args, **kwargs):
            wall, cpu = time.perf_counter(), cpu_seconds()
            try:
                return function(*args, **kwargs)
            finally:
                self.wall += time.perf_counter() - wall
                self.cpu += cpu_seconds() - cpu
                self.calls += 1

        return timed


def one_trial(loaded, spec, threads: int, epochs: int, profile: bool) -> dict:
    import torch

    from hpsearch.spec import split_params
    from hpsearch.trial.fit import start_fit
    from hpsearch.trial.precision import auto_precision, precision_name

    torch.set_num_threads(threads)
    values = {**spec.training, **PARAMS, "num_train_epochs": epochs}
    with tempfile.TemporaryDirectory() as scratch:
        setup = time.perf_counter()
        fitting = start_fit(
            spec, loaded.data, loaded.factory, loaded.tokenizer, values, 0, Path(scratch)
        )
        setup = time.perf_counter() - setup
        evaluation = Clock()
        fitting.trainer.evaluate = evaluation.wrap(fitting.trainer.evaluate)
        wall, cpu = time.perf_counter(), cpu_seconds()
        if profile:
            from torch.profiler import ProfilerActivity
            from torch.profiler import profile as torch_profile

            with torch_profile(activities=[ProfilerActivity.CPU]) as profiler:
                fitting.train()
            table = profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=25)
        else:
            fitting.train()
            table = None
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    arguments = split_params(values).arguments
    return {
        "threads": threads,
        "precision": precision_name(auto_precision(arguments)),
        "steps": fitting.trainer.state.global_step,
        "evaluations": evaluation.calls,
        "model_and_trainer_s": round(setup, 1),
        "train_wall_s": round(wall - evaluation.wall, 1),
        "train_cpu_s": round(cpu - evaluation.cpu, 1),
        "eval_wall_s": round(evaluation.wall, 1),
        "eval_cpu_s": round(evaluation.cpu, 1),
        "accuracy": round(fitting.callback.last_metrics[spec.objective.eval_key], 3),
        "profile": table,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--threads", default="2", help="torch threads, comma-separated")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--profile", action="store_true", help="torch.profiler's top operators")
    parser.add_argument(
        "--set", action="append", default=[], help="SECTION.KEY=VALUE (YAML) changed in the spec"
    )
    args = parser.parse_args()

    import torch
    import yaml

    from hpsearch.spec.schema import parse_spec
    from hpsearch.trial import load_for_training, quiet_libraries

    quiet_libraries()
    data = yaml.safe_load(args.study.read_text())
    for change in args.set:
        key, value = change.split("=", 1)
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = yaml.safe_load(value)
    spec = parse_spec(data, str(args.study))
    started = time.perf_counter()
    loaded = load_for_training(spec)
    print(f"torch {torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}")
    print(f"data and weights loaded in {time.perf_counter() - started:.1f} s")
    print(f"parameters {PARAMS}, {args.epochs} epoch(s), changes {args.set or 'none'}")
    for threads in (int(t) for t in args.threads.split(",")):
        result = one_trial(loaded, spec, threads, args.epochs, args.profile)
        table = result.pop("profile")
        print(result, flush=True)
        if table is not None:
            print(table, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
