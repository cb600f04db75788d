"""Where a training step's time goes: each Session 2 network's step, and batch norm alone, per memory layout.

    python -m benchmarks.layer_cost [--threads 2] [--steps 40]

Rows, in this process (synthetic batches of 128: the cost does not depend on the pixels):
  step       one SGD step (forward, backward, update) of each network, in ms and as seconds per 469-step
             epoch (training steps only: no data loading, augmentation or test pass), with the input and
             weights in channels_last (the course's default, ``TrainConfig.channels_last``) and in NCHW
  batchnorm  one ``nn.BatchNorm2d`` forward + backward on the activation shapes of ``PooledNet``'s blocks (8 and 12
             channels, and 16 as in every block of ``SpeedNet``), in both layouts
Median of three timed rounds after a warm-up. Results are printed and written to
benchmarks/results/layer_cost.json.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from benchmarks.results_file import write_results
from course_utils.perf import tune_allocator
from instructor.reference.session2 import PooledNet, Session2Net, SpaceToDepthNet, SpeedNet
from benchmarks.args import positive, out_file

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {"Session2Net (iteration 4)": Session2Net, "SpeedNet (iteration 5)": SpeedNet, "PooledNet": PooledNet,
            "SpaceToDepthNet": SpaceToDepthNet}
BN_SHAPES = [(128, 8, 28, 28), (128, 12, 14, 14), (128, 16, 14, 14), (128, 16, 7, 7)]


def _layout(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    return t.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def _median_ms(fn, steps: int, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    rounds = []
    for _ in range(3):
        t = time.perf_counter()
        for _ in range(steps):
            fn()
        rounds.append((time.perf_counter() - t) / steps * 1000)
    return statistics.median(rounds)


def step_ms(factory, channels_last: bool, steps: int) -> float:
    model = factory()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x, y = _layout(torch.randn(128, 1, 28, 28), channels_last), torch.randint(0, 10, (128,))

    def step():
        opt.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        opt.step()
    return _median_ms(step, steps)


def batchnorm_ms(shape, channels_last: bool, steps: int) -> float:
    bn = nn.BatchNorm2d(shape[1])
    x = _layout(torch.randn(*shape), channels_last).requires_grad_()
    # a gradient in the same layout, as a conv or ReLU hands back in training (``.sum().backward()`` would hand
    # batch norm an expanded tensor of ones, which its backward takes a slower path for)
    grad = _layout(torch.randn(*shape), channels_last)
    return _median_ms(lambda: bn(x).backward(grad), steps)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=positive, default=2, help="torch threads (default 2)")
    ap.add_argument("--steps", type=positive, default=40, help="timed steps per round")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "benchmarks" / "results" / "layer_cost.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    tune_allocator()  # as fit does: freed activations stay mapped (course_utils/perf.py)

    rows = {"step": {}, "batchnorm": {}}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch 128\n")
    print(f"{'network':<28} {'params':>6} {'channels_last ms':>16} {'NCHW ms':>8} {'s/epoch (cl / NCHW)':>20}")
    for name, factory in NETWORKS.items():
        cl, nchw = (step_ms(factory, layout, args.steps) for layout in (True, False))
        params = sum(p.numel() for p in factory().parameters())
        rows["step"][name] = {"parameters": params, "channels_last_ms": round(cl, 2), "nchw_ms": round(nchw, 2)}
        print(f"{name:<28} {params:>6,} {cl:>16.2f} {nchw:>8.2f} {cl * 0.469:>9.2f} / {nchw * 0.469:.2f}", flush=True)
    print(f"\n{'batch norm, forward + backward':<34} {'channels_last ms':>16} {'NCHW ms':>8}")
    for shape in BN_SHAPES:
        cl, nchw = (batchnorm_ms(shape, layout, args.steps) for layout in (True, False))
        rows["batchnorm"]["x".join(map(str, shape))] = {"channels_last_ms": round(cl, 3), "nchw_ms": round(nchw, 3)}
        print(f"{'x'.join(map(str, shape)):<34} {cl:>16.3f} {nchw:>8.3f}", flush=True)
    write_results(args.out, {"command": "python -m benchmarks.layer_cost", "threads": args.threads,
                             "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()), **rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
