"""PEFT methods on the default study: best accuracy, trainable parameters and seconds per trial of
each against full fine-tuning.

The default study (studies/sentiment.yaml, unless --study names another) is run once per variant,
back to back, each with `hpsearch run` on a fresh SQLite storage in its own process, the same
sampler seed, trial budget and tokenized data (cached before any timing), by bench/techniques.py's
runner:

- full: the study as it is (full fine-tuning, embeddings and the 2 lower layers frozen).
- lora, dora, ia3, prompt_tuning: that method instead (`peft: {method: ...}` at PEFT's defaults,
  LoRA and DoRA at rank 8), the learning-rate range moved up tenfold as bench/techniques.py does
  for LoRA (adapters want larger rates), and prompt tuning's a further tenfold (PEFT's prompt
  tuning examples train at 3e-2); no freezing knobs (every method freezes the pretrained weights).
  Prefix tuning is not run: MiniLM, an encoder, takes no past key values (refused in one line).

    python bench/adapters.py [--study studies/sentiment.yaml] [--n-trials N]
        [--only full,lora,dora,ia3,prompt_tuning] [--json out.json]
        [--max-train-samples N --max-eval-samples N]   # smaller caps: a smoke run
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import tempfile
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from techniques import run_variants  # bench/techniques.py's runner, one process per variant

REPO = Path(__file__).resolve().parent.parent
VARIANTS = ("full", "lora", "dora", "ia3", "prompt_tuning")
RATE_SCALE = {"lora": 10, "dora": 10, "ia3": 10, "prompt_tuning": 100}


def variant_spec(base: dict, variant: str) -> dict:
    spec = copy.deepcopy(base)
    if variant == "full":
        return spec
    space, training = spec["search_space"], spec.setdefault("training", {})
    low, high = space["learning_rate"]["float"]
    scale = RATE_SCALE[variant]
    space["learning_rate"] = {"float": [low * scale, high * scale], "log": True}
    spec["peft"] = (
        {"method": "lora", "use_dora": True} if variant == "dora" else {"method": variant}
    )
    for knob in ("freeze_embeddings", "freeze_layers"):  # every method freezes the weights
        training.pop(knob, None)
    return spec


def table(rows: list[dict], metric: str) -> str:
    lines = [
        (
            f"| variant | best {metric} | trainable parameters (best trial) | s per full trial | "
            "best-model file | wall | trials |"
        ),
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        states = ", ".join(f"{n} {s}" for s, n in sorted(r["states"].items()))
        trainable = r["best_trial_trainable_parameters"]
        lines.append(
            f"| {r['variant']} | {r['best']} | {trainable if trainable else 'not recorded'} "
            f"| {r['seconds_per_full_trial']} | {r['model_artifact_mb']} MB "
            f"| {r['wall_seconds']:.0f} s | {states} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--n-trials", type=int)
    parser.add_argument("--max-train-samples", type=int, help="Smaller caps, for a smoke run.")
    parser.add_argument("--max-eval-samples", type=int)
    parser.add_argument("--only", default=",".join(VARIANTS))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    variants = [v for v in args.only.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"--only: unknown variant(s) {', '.join(sorted(unknown))}")
    from head_to_head import load_bench_spec  # the trial budget, no time limit

    base = load_bench_spec(args.study, None, None, None)
    if args.n_trials:
        base["budget"]["n_trials"] = args.n_trials
    for cap in ("max_train_samples", "max_eval_samples"):
        if getattr(args, cap):
            base["dataset"][cap] = getattr(args, cap)
    with tempfile.TemporaryDirectory(prefix="hpsearch-adapters-base-") as scratch:
        study_file = Path(scratch) / "base.yaml"
        study_file.write_text(yaml.safe_dump(base, sort_keys=False))
        rows = run_variants(base, variants, variant_spec, study_file, "hpsearch-adapters-")
    print(table(rows, base.get("objective", {}).get("metric", "accuracy")))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
