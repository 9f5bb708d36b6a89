"""A plain fine-tune of a QA study's model with transformers' documented defaults, to compare a
search against: `TrainingArguments`' own defaults (learning rate 5e-5, 3 epochs, batch 8, linear
decay, no warmup), on the study's data as hpsearch tokenizes it (the same cache, max_length,
doc_stride) and scored by the same SQuAD exact match and F1 on the same eval set. Only what the
machine needs is set: no checkpoints, no reporting, the precision hpsearch picks here (bf16 on a
CPU with AVX512-BF16 or AMX), which the study's trials train in too.

    python bench/qa_baseline.py [--study studies/qa.yaml]

Prints one JSON line: wall time (from the start of this script, imports and loading included),
exact match, F1, optimizer steps.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

STARTED = time.monotonic()
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", default=str(REPO / "studies" / "qa.yaml"))
    options = parser.parse_args()

    from transformers import Trainer, TrainingArguments

    from hpsearch.spec.file import load_spec_file
    from hpsearch.trial import load_for_training, transformers_class
    from hpsearch.trial.precision import auto_precision

    spec = load_spec_file(Path(options.study))
    task = spec.task_spec
    loaded = load_for_training(spec)
    model = loaded.factory.build(spec.seed, {}, {}, None)
    with tempfile.TemporaryDirectory() as scratch:
        args = TrainingArguments(
            output_dir=scratch,
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            **auto_precision({}),
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=loaded.data.train,
            eval_dataset=loaded.data.eval,
            processing_class=loaded.tokenizer,
            data_collator=transformers_class(task.collator_class)(loaded.tokenizer),
            compute_metrics=task.compute_metrics(
                spec.dataset, loaded.tokenizer, None, features=loaded.data.eval
            ),
        )
        trainer.train()
        metrics = trainer.evaluate()
    print(
        json.dumps(
            {
                "wall_s": round(time.monotonic() - STARTED, 1),
                "exact_match": round(metrics["eval_exact_match"], 2),
                "f1": round(metrics["eval_f1"], 2),
                "steps": trainer.state.global_step,
                "precision": "bf16" if args.bf16 else "fp32",
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
