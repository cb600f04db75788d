"""One training epoch, side by side: the seed-style per-sample DataLoader vs the in-memory pipeline.

    make bench-epoch    (or: python -m benchmarks.pipeline_speed [--epochs N])

Rows, one process on this machine (the first two on the documents' 9,920-parameter ``SeedNet``):
  seed-style   torchvision MNIST + ToTensor/Normalize per sample, DataLoader batch 64 (shuffled),
               element-wise Dropout, SGD 0.01 momentum 0.9: the course documents' CPU set-up
  in-memory    the same model and batch size on ``course_utils.loader`` (uint8 tensors in memory,
               batches on tensors, channels_last): the pipeline's own effect
  reference    the Session 2 reference (``Session2Net``, 9,904 parameters, channel-wise dropout) and
               its config on the in-memory pipeline: batch 128, OneCycle, +/-7 degree rotation per batch
Each row reports seconds for one training epoch and for one pass over the 10k test images.
Results are printed and written to benchmarks/results/pipeline_speed.json.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from instructor.reference.session2 import SESSION2_CONFIG, SeedNet, Session2Net
from course_utils.data import load_uint8, torchvision_datasets
from course_utils.engine import evaluate, make_optimizer, make_scheduler
from course_utils.loader import mnist_data
from course_utils.seed import seed_everything
from benchmarks.results_file import write_results
from benchmarks.args import positive, out_file

ROOT = Path(__file__).resolve().parents[1]

def train_epoch(model, loader, optimizer, scheduler=None, channels_last=False):
    model.train()
    t = time.perf_counter()
    n = 0
    for x, y in loader:
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        F.nll_loss(model(x), y).backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        n += len(y)
    return time.perf_counter() - t, n


def timed_eval(model, loader):
    t = time.perf_counter()
    acc = evaluate(model, loader).accuracy
    return time.perf_counter() - t, acc


def seed_style(epochs):
    from torch.utils.data import DataLoader

    seed_everything(1)
    train, test = torchvision_datasets()
    train_loader = DataLoader(train, batch_size=64, shuffle=True)
    test_loader = DataLoader(test, batch_size=1000)
    model = SeedNet()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return [(*train_epoch(model, train_loader, opt), *timed_eval(model, test_loader)) for _ in range(epochs)]


def in_memory(epochs, tensors):
    seed_everything(1)
    data = mnist_data(64, tensors=tensors, channels_last=True)
    model = SeedNet().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return [(*train_epoch(model, data.train, opt), *timed_eval(model, data.test)) for _ in range(epochs)]


def reference(epochs, tensors):
    cfg = SESSION2_CONFIG
    seed_everything(cfg.seed)
    data = mnist_data(cfg.batch_size, rotation=cfg.rotation, tensors=tensors, channels_last=True, seed=cfg.seed)
    model = Session2Net().to(memory_format=torch.channels_last)
    opt = make_optimizer(model, cfg)
    sched, _ = make_scheduler(opt, cfg, len(data.train))
    return [(*train_epoch(model, data.train, opt, sched), *timed_eval(model, data.test)) for _ in range(epochs)]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=positive, default=1, help="epochs per pipeline (default 1)")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "benchmarks" / "results" / "pipeline_speed.json"))
    args = ap.parse_args(argv)

    tensors = load_uint8()
    rows = {}
    for name, fn in (("seed-style", lambda: seed_style(args.epochs)), ("in-memory", lambda: in_memory(args.epochs, tensors)),
                     ("reference", lambda: reference(args.epochs, tensors))):
        print(f"timing {name} ({args.epochs} epoch{'s' if args.epochs > 1 else ''}) ...", flush=True)
        res = fn()
        rows[name] = {"train_seconds_per_epoch": sum(r[0] for r in res) / len(res),
                      "test_pass_seconds": sum(r[2] for r in res) / len(res),
                      "images_per_epoch": res[0][1], "test_accuracy_after": res[-1][3]}
    base = rows["seed-style"]["train_seconds_per_epoch"]
    for r in rows.values():
        r["speedup_vs_seed_style"] = base / r["train_seconds_per_epoch"]

    print()
    print(f"{'pipeline':<12} {'train s/epoch':>14} {'test pass s':>12} {'speed-up':>9} {'test acc':>9}")
    for name, r in rows.items():
        print(f"{name:<12} {r['train_seconds_per_epoch']:>14.1f} {r['test_pass_seconds']:>12.2f} "
              f"{r['speedup_vs_seed_style']:>8.1f}x {r['test_accuracy_after']:>8.2f}%")
    print()
    write_results(args.out, {"command": "make bench-epoch", "epochs": args.epochs, "torch": torch.__version__,
                             "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
