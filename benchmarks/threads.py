"""Two trainings on the same cores: does each run about 2x slower (fair sharing) or 4-10x (collapse)?

    make bench-threads    (or: python -m benchmarks.threads [--steps N] [--threads T])

Each row runs training steps of the Session 2 reference network (batch 128, SGD, synthetic MNIST-shaped
batches: the cost of a step does not depend on the pixels) in fresh processes with ``--threads`` torch
threads each, under one OpenMP wait setting (PyTorch's Linux wheels use GNU OpenMP):
  default      nothing set: an idle OpenMP thread spins ~300,000 iterations before it sleeps
  passive      ``OMP_WAIT_POLICY=PASSIVE``: idle threads sleep at once
  short-spin   ``GOMP_SPINCOUNT=1000``: what ``course_utils`` sets (:mod:`course_utils.threads`)
and prints milliseconds per step for one process alone and for each of two processes at once, and the
slowdown (pair / alone). Fair sharing of the cores gives about 2x. Results are printed and written to
benchmarks/results/threads.json, with the load average before the run.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.results_file import write_results
from benchmarks.args import positive, out_file

ROOT = Path(__file__).resolve().parents[1]
#: name -> the OpenMP settings of the processes (anything else of the environment is kept, the wait settings removed)
POLICIES = {"default": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "short-spin": {"GOMP_SPINCOUNT": "1000"}}


def child(steps: int, threads: int) -> None:
    import torch  # first: the wait policy in the environment is read when torch's OpenMP runtime loads
    import torch.nn.functional as F

    from instructor.reference.session2 import SESSION2_CONFIG, Session2Net
    from course_utils.engine import make_optimizer

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = Session2Net().to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, SESSION2_CONFIG)
    x = torch.randn(128, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (128,))
    warmup = max(2, steps // 5)
    for i in range(steps + warmup):
        if i == warmup:
            t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        optimizer.step()
    print(json.dumps({"ms_per_step": 1000 * (time.perf_counter() - t0) / steps}))


def run(policy: str, copies: int, steps: int, threads: int) -> list[float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    env.update(POLICIES[policy])
    cmd = [sys.executable, "-m", "benchmarks.threads", "--child", "--steps", str(steps), "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"benchmark child failed (exit {p.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1])["ms_per_step"])
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=positive, default=100, help="timed training steps per process (default 100)")
    ap.add_argument("--threads", type=positive, default=os.cpu_count() or 1,
                    help="torch threads per process (default: all cores, the case that collapses)")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "benchmarks" / "results" / "threads.json"))
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        return child(args.steps, args.threads)
    load = os.getloadavg()[0]
    print(f"{args.threads} torch threads per process, {args.steps} steps, {os.cpu_count()} CPUs, load {load:.2f}")
    print(f"{'wait policy':<12} {'alone ms/step':>14} {'pair ms/step (each)':>22} {'slowdown':>9}")
    rows = []
    for policy in POLICIES:
        alone = run(policy, 1, args.steps, args.threads)[0]
        pair = run(policy, 2, args.steps, args.threads)
        slowdown = max(pair) / alone
        rows.append({"policy": policy, "alone_ms": round(alone, 2), "pair_ms": [round(p, 2) for p in pair],
                     "slowdown": round(slowdown, 2)})
        print(f"{policy:<12} {alone:>14.1f} {' / '.join(f'{p:.1f}' for p in pair):>22} {slowdown:>8.1f}x")
    write_results(args.out,
                  {"benchmark": "threads", "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
                   "load_before": round(load, 2), "threads": args.threads, "steps": args.steps, "rows": rows})


if __name__ == "__main__":
    main()
