"""Ablation: what bf16 and length-grouped batches do to one trial's speed and accuracy.

One trial of the default study (fixed parameters: the ones below) is trained for one epoch under
each combination of precision (fp32, bf16 mixed) and training sampler (random, group_by_length),
for each seed, with a plain Trainer on the same cached data. This is the evidence behind hpsearch's
defaults: bf16 where the hardware runs it fast, random batches.

    python bench/ablation.py [--seeds 0,1] [--study studies/sentiment.yaml]

Prints a Markdown table: seconds for the epoch and the spec's eval metric per seed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

PARAMS = {
    "learning_rate": 1.6e-4,
    "per_device_train_batch_size": 32,
    "num_train_epochs": 1,
    "weight_decay": 0.046,
    "warmup_steps": 0.156,
}
VARIANTS = {
    "fp32, random batches": {},
    "bf16, random batches": {"bf16": True, "use_cpu": True},
    "fp32, group_by_length": {"train_sampling_strategy": "group_by_length"},
    "bf16, group_by_length": {
        "bf16": True,
        "use_cpu": True,
        "train_sampling_strategy": "group_by_length",
    },
}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()

    from head_to_head import Shared
    from transformers import set_seed
    from transformers.trainer_callback import PrinterCallback

    from hpsearch.spec import load_spec_file

    spec = load_spec_file(args.study)
    seeds = [int(s) for s in args.seeds.split(",")]
    print(f"one epoch, parameters {PARAMS}\n")
    metric = spec.objective.eval_key
    print("| variant | " + " | ".join(f"seed {s}: seconds, {metric}" for s in seeds) + " |")
    print("| --- | " + " | ".join("---" for _ in seeds) + " |")
    for label, extra in VARIANTS.items():
        cells = []
        for seed in seeds:
            shared = Shared(spec.model_copy(update={"seed": seed}))
            set_seed(seed)
            trainer = shared.trainer(
                "/tmp/hpsearch-ablation",
                {**PARAMS, **extra, "eval_strategy": "no", "logging_strategy": "no"},
                model=shared.model(),
            )
            trainer.remove_callback(PrinterCallback)  # its log lines would break the table
            started = time.perf_counter()
            trainer.train()
            seconds = time.perf_counter() - started
            value = shared.metrics(trainer.evaluate())[metric]
            cells.append(f"{seconds:.1f} s, {value:.3f}")
        print(f"| {label} | " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
