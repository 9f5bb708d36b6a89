"""A 1B-parameter model per trial: build time and memory, the mapped build against the old one.

The model is tools/make_large_model.py's (a Llama-style causal LM, 1.06B parameters, fp32
safetensors, random weights). Each scenario runs in fresh worker processes, one after another:

- build: `ModelFactory.build` (new: meta skeleton, weights mapped from the file) or the build it
  replaced (old, reimplemented here: `from_config`, which initialises every weight, then
  `load_state_dict` from the state the factory kept), then every weight read twice (a sum of
  each) and two forward passes of 64 tokens. A mapped build defers reading the weights to their
  first use: the first read's excess over the second is that cost, so build + that excess is the
  fair comparison with the old build.
- lora: the same build with LoRA adapters (r 8, the default targets), then 3 AdamW steps
  (batch 2, 64 tokens).
- sgd: the new build, full fine-tune, one SGD step (batch 1, 64 tokens): SGD, not AdamW, to stay
  inside this machine's memory (AdamW's two moments add 8.4 GB).

with 1 and (build, lora) 2 workers at once. Memory is read from /proc while the workers hold
their models: VmHWM (peak RSS) and, from smaps_rollup, RSS and PSS. RSS counts a page of the
shared page cache in every process that maps it; PSS divides it among them, so the sum of the
workers' PSS is what they take from the machine together. The baseline for time is one read of
the weights file from the page cache (`cat FILE > /dev/null`, warm).

    python tools/make_large_model.py /tmp/hpsearch-1b
    python bench/large_model.py /tmp/hpsearch-1b [--only build,lora,sgd] [--workers 1,2]
        [--json out.json]
"""

from __future__ import annotations

import argparse
import copy
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

LORA = {
    "method": "lora",
    "r": 8,
    "alpha": 16,
    "dropout": 0.0,
    "target_modules": None,
    "bias": "none",
}
SEQ_LEN = 64
N_LORA_STEPS = 3
GiB = 2**30


class OldFactory:
    """The build hpsearch did before: the pretrained state held by the factory, and per trial
    `from_config` (every weight initialised from the seed) then `load_state_dict`."""

    def __init__(self, location, task):
        from hpsearch.trial.classes import transformers_class
        from hpsearch.trial.model import load_config, source_of

        self.auto_class = transformers_class(task.model_class)
        self.config = load_config(location)
        pretrained, info = self.auto_class.from_pretrained(
            source_of(location), config=self.config, output_loading_info=True
        )
        fresh = set(info["missing_keys"]) | {key for key, *_ in info["mismatched_keys"]}
        self.pretrained_state = {k: v for k, v in pretrained.state_dict().items() if k not in fresh}
        self.fresh_modules = sorted({key.rsplit(".", 1)[0] for key in fresh})
        self.task = task

    def build(self, seed: int, knobs: dict, lora: dict | None = None):
        from transformers import set_seed

        set_seed(seed)
        model = self.auto_class.from_config(copy.deepcopy(self.config))
        model.load_state_dict(self.pretrained_state, strict=False)
        if lora is not None:
            from hpsearch.trial.lora import add_adapters

            model = add_adapters(model, lora, self.task, self.fresh_modules)
        return model


def memory(pid: int | str = "self") -> dict[str, float]:
    """GiB: peak RSS (VmHWM), and RSS, PSS and its anonymous and file-backed parts now."""
    fields = {}
    for name in ("status", "smaps_rollup"):
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            key, _, value = line.partition(":")
            if value.strip().endswith("kB"):
                fields[key] = int(value.split()[0]) * 1024 / GiB
    return {
        "peak_rss": fields["VmHWM"],
        "rss": fields["Rss"],
        "pss": fields["Pss"],
        "pss_anon": fields["Pss_Anon"],
        "pss_file": fields["Pss_File"],
    }


def child(scenario: str, path: str, n_threads: int) -> None:
    """One worker: build as `scenario` says, measure, report a JSON line, hold the model until
    the parent closes stdin (so two workers' memory is measured while both hold theirs)."""
    import torch

    from hpsearch.spec import resolve_model
    from hpsearch.tasks import TASKS
    from hpsearch.trial import ModelFactory

    torch.set_num_threads(n_threads)
    kind, path_name = scenario.split("-")  # e.g. build-new, lora-old, sgd-new
    location, task = resolve_model(path), TASKS["causal-lm"]
    started = time.perf_counter()
    factory = (
        ModelFactory(location, task, None) if path_name == "new" else OldFactory(location, task)
    )
    result = {"factory_s": time.perf_counter() - started}
    started = time.perf_counter()
    model = factory.build(seed=0, knobs={}, lora=LORA if kind == "lora" else None)
    result["build_s"] = time.perf_counter() - started
    result["trainable"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    generator = torch.Generator().manual_seed(0)
    batch_size = {"build": 1, "lora": 2, "sgd": 1}[kind]
    ids = torch.randint(1000, 30000, (batch_size, SEQ_LEN), generator=generator)
    started = time.perf_counter()
    if kind == "build":
        with torch.no_grad():
            # Every weight read once (a sum: little compute), then again from memory: the
            # difference is what reading the mapped weights on first use cost.
            for key in ("touch_s", "touch_again_s"):
                begun = time.perf_counter()
                for p in model.parameters():
                    p.sum()
                result[key] = time.perf_counter() - begun
            started = time.perf_counter()
            model(input_ids=ids)
            result["forward_s"] = time.perf_counter() - started
            # Again, on weights already in memory: the first forward's excess over this one is
            # what reading the mapped weights cost.
            started = time.perf_counter()
            model(input_ids=ids)
            result["forward_again_s"] = time.perf_counter() - started
    else:
        model.train()
        parameters = [p for p in model.parameters() if p.requires_grad]
        if kind == "lora":
            optimizer = torch.optim.AdamW(parameters, lr=1e-4)
        else:
            optimizer = torch.optim.SGD(parameters, lr=1e-4)
        steps = []
        for _ in range(N_LORA_STEPS if kind == "lora" else 1):
            begun = time.perf_counter()
            model(input_ids=ids, labels=ids).loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            steps.append(time.perf_counter() - begun)
        result["step_s"] = steps
    result |= memory()
    print(json.dumps(result), flush=True)
    sys.stdin.read()  # hold the model until released


def run_workers(scenario: str, path: str, n_workers: int) -> list[dict]:
    """`n_workers` workers of `scenario` started at once; each one's own figures, plus its
    memory read by the parent once all hold their models."""
    n_threads = max(1, 2 // n_workers)
    procs = [
        subprocess.Popen(
            [sys.executable, __file__, "--child", scenario, path, "--threads", str(n_threads)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(n_workers)
    ]
    results = []
    for proc in procs:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit(f"{scenario}: a worker exited with {proc.wait()}")
        results.append(json.loads(line))
    for proc, result in zip(procs, results, strict=True):
        result["together"] = memory(proc.pid)
    for proc in procs:
        proc.stdin.close()
        proc.wait()
    return results


def page_cache_read_s(path: Path) -> float:
    """Seconds to read the weights once from the page cache (the second of two reads)."""
    files = sorted(str(f) for f in path.glob("*.safetensors"))
    for _ in range(2):
        started = time.perf_counter()
        subprocess.run(f"cat {' '.join(files)} > /dev/null", shell=True, check=True)
        elapsed = time.perf_counter() - started
    return elapsed


def available_gib() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024 / GiB
    return 0.0


# Scenario, workers, GiB the machine must have available before it starts (old builds hold a
# private 4 GB copy each, a full fine-tune step 8 GB more).
PLAN = [
    ("build-new", 1, 6),
    ("build-old", 1, 10),
    ("build-new", 2, 6),
    ("build-old", 2, 14),
    ("lora-new", 1, 6),
    ("lora-old", 1, 10),
    ("lora-new", 2, 6),
    ("lora-old", 2, 14),
    ("sgd-new", 1, 14),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", default="/tmp/hpsearch-1b")
    parser.add_argument("--only", default="build,lora,sgd")
    parser.add_argument("--workers", default="1,2", help="which worker counts to run")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--child")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.model, args.threads)
        return
    path = Path(args.model)
    if not (path / "config.json").is_file():
        raise SystemExit(f"{path}: no model; make one with tools/make_large_model.py {path}")
    report = {"page_cache_read_s": page_cache_read_s(path), "runs": []}
    print(f"one read of the weights from the page cache: {report['page_cache_read_s']:.2f} s")
    kinds = set(args.only.split(","))
    for scenario, n_workers, needs in PLAN:
        if scenario.split("-")[0] not in kinds or str(n_workers) not in args.workers.split(","):
            continue
        if available_gib() < needs:
            print(
                f"{scenario} x{n_workers}: skipped, {available_gib():.1f} GiB available < {needs}"
            )
            continue
        results = run_workers(scenario, args.model, n_workers)
        report["runs"].append({"scenario": scenario, "n_workers": n_workers, "workers": results})
        pss = sum(r["together"]["pss"] for r in results)
        first = results[0]
        print(
            f"{scenario} x{n_workers}: build {first['build_s']:.2f} s, "
            f"forward {first.get('forward_s', 0):.2f} s, "
            f"then {first.get('forward_again_s', 0):.2f} s, "
            f"touch {first.get('touch_s', 0):.2f} s then {first.get('touch_again_s', 0):.2f} s, "
            f"steps {first.get('step_s', [])}, "
            f"peak RSS {first['peak_rss']:.2f} GiB, RSS {first['together']['rss']:.2f} GiB "
            f"each, PSS total {pss:.2f} GiB",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
