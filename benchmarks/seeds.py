"""Train the graded reference configurations over several seeds and print min / mean / max.

    python -m benchmarks.seeds --seeds 1 2 3            (make seeds SEEDS="1 2 3")

Configurations: the Session 2 references (iteration 4, and iteration 5: speed) and the five Session 3
variants, exactly as the solution notebooks train them (a test checks that the notebooks and instructor/reference agree);
and iteration 5's two earlier designs with its recipe, "Session 2 (pooled)" (Session 3's network) and "Session 2
(space-to-depth)" (a ``make bench`` pipeline), whose ten-seed results RESULTS.md cites.
Run records go to ``runs/`` (or ``--runs-dir``); a (config, seed) whose complete record is already
there is not trained again, so an interrupted sweep resumes. ``make report`` reads the same records.

Trying a recipe change over seeds (records of a changed config never count for the reference):

    python -m benchmarks.seeds --only GBN --seeds 1 2 3 --set translate=0.1 --epochs 20

Screening a change cheaply: ``--fail-fast`` stops at the first run that misses the grading policy, so
list first the seeds that the current recipe finds hardest.
"""
from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from course_utils.policy import POLICIES
from instructor.reference import session3
from instructor.reference.session2 import SESSION2_CONFIG, SPEED_CONFIG, PooledNet, Session2Net, SpaceToDepthNet, SpeedNet
from course_utils.data import load_uint8
from course_utils.engine import fit
from course_utils.records import load_record, select
from course_utils.inspection import count_parameters
from course_utils.loader import data_for
from benchmarks.args import positive

ROOT = Path(__file__).resolve().parents[1]

def configurations(epochs: int | None = None, overrides: dict | None = None):
    """label -> (session, model factory, config, penalties); ``epochs`` and ``overrides`` (TrainConfig
    field -> value) change every config (to try a recipe change; the default is the graded recipe)."""
    out = {"Session 2 (iteration 4)": ("session2", Session2Net, SESSION2_CONFIG, {}),
           "Session 2 (iteration 5)": ("session2", SpeedNet, SPEED_CONFIG, {}),
           "Session 2 (pooled)": ("session2", PooledNet, SPEED_CONFIG.replace(name="s2-pooled"), {}),
           "Session 2 (space-to-depth)": ("session2", SpaceToDepthNet, SPEED_CONFIG.replace(name="s2-space-to-depth"), {})}
    for label in session3.VARIANTS:
        factory, config, penalties = session3.variant(label)
        out[label] = ("session3", factory, config, penalties)
    changes = {**(overrides or {}), **({"epochs": epochs} if epochs else {})}
    if changes:
        out = {k: (s, f, c.replace(**changes), p) for k, (s, f, c, p) in out.items()}
    return out


def parse_overrides(items) -> dict:
    """``["translate=0.1", "nesterov=false"]`` -> ``{"translate": 0.1, "nesterov": False}``, typed like
    the TrainConfig field; an unknown field or a bad value is an error that names it."""
    import dataclasses

    from course_utils.config import TrainConfig

    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    out = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or key not in fields or key in ("name", "seed"):
            raise SystemExit(f"--set {item!r}: expected FIELD=VALUE with FIELD one of "
                             f"{sorted(set(fields) - {'name', 'seed'})}")
        kind = type(getattr(TrainConfig(), key))
        try:
            out[key] = raw.lower() in ("1", "true", "yes") if kind is bool else kind(raw)
        except ValueError:
            raise SystemExit(f"--set {item!r}: {raw!r} is not a {kind.__name__}") from None
    return out


def summary(records, policy) -> dict:
    finals = [r.metrics["final_test_accuracy"] for r in records]
    firsts = [r.metrics["first_epoch_at_target"] for r in records]
    return {"n": len(records), "final_min": min(finals), "final_mean": statistics.mean(finals),
            "final_max": max(finals), "last3_min": min(policy.lowest_of_last(r.history) for r in records),
            "passing": sum(policy.record_passes(r) for r in records), "first_epochs": firsts}


def _one_thread():
    import os

    import torch

    from course_utils.threads import THREADS_ENV

    os.environ[THREADS_ENV] = "1"  # fit() sets torch's threads from it
    torch.set_num_threads(1)


def run_jobs(train, jobs, workers: int, fail_fast: bool = False) -> bool:
    """Run ``train(job)`` for every job, printing each returned line: in this process, or in ``workers``
    spawned processes of one torch thread each (``train`` must be a module-level function returning
    ``(line, passed)``). With ``fail_fast`` the first run that misses the policy ends the sweep (runs
    still training are stopped, their records left incomplete, so they train again next time).
    Returns False when it stopped early."""
    def report(result) -> bool:
        line, passed = result
        print(line if passed else f"{line}  MISSES the policy", flush=True)
        if fail_fast and not passed:
            print("--fail-fast: stopping the sweep at the first miss", flush=True)
            return False
        return True

    if workers > 1 and len(jobs) > 1:
        import multiprocessing as mp

        with mp.get_context("spawn").Pool(workers, initializer=_one_thread, maxtasksperchild=1) as pool:
            for result in pool.imap_unordered(train, jobs):
                if not report(result):
                    pool.terminate()
                    return False
    else:
        for job in jobs:
            if not report(train(job)):
                return False
    return True


def _train(job) -> tuple[str, bool]:
    """Train one (label, seed) into its run record; returns a one-line summary and whether it passes."""
    label, seed, runs_dir, epochs, overrides = job
    session, factory, config, penalties = configurations(epochs, overrides)[label]
    cfg = config.replace(seed=seed)
    return train_one(label, factory, cfg, runs_dir, POLICIES[session], penalties)


def train_one(label: str, factory, cfg, runs_dir, policy, penalties=None) -> tuple[str, bool]:
    """Train ``factory()`` with ``cfg`` into a run record under ``runs_dir``; returns a one-line summary
    and whether the record passes ``policy``."""
    result = fit(factory, data_for(cfg, tensors=load_uint8()), cfg, penalties=penalties or {}, runs_dir=runs_dir,
                 progress=False, verbose=False)
    r = load_record(result.run_dir)
    last3 = ", ".join(f"{h['test_accuracy']:.2f}" for h in r.history[-policy.consistent_epochs:])
    line = f"{label} seed {cfg.seed}: final {r.metrics['final_test_accuracy']:.2f}%, last " \
           f"{policy.consistent_epochs} epochs {last3} ({r.path.name})"
    return line, policy.record_passes(r)


def matching_records(config, n_params: int, runs_dir) -> list:
    """Complete records of ``config`` (any seed) whose network has ``n_params`` parameters: records of
    another recipe, or of an earlier architecture under the same config name, do not count. In seed order."""
    return sorted(select(config, runs_dir, any_seed=True, parameters=n_params), key=lambda r: r.config.seed)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    ap.add_argument("--only", help="comma-separated labels (default: all)")
    ap.add_argument("--runs-dir", default=str(ROOT / "runs"))
    ap.add_argument("--workers", type=positive, default=1,
                    help="parallel training processes, one torch thread each (default 1: one process "
                         "with all cores); small convolutions scale poorly across threads (RESULTS.md)")
    ap.add_argument("--epochs", type=positive, help="train every configuration for this many epochs instead of "
                    "its recipe's (exploring a recipe change; records count only for the same epoch count)")
    ap.add_argument("--set", action="append", metavar="FIELD=VALUE", default=[],
                    help="change a TrainConfig field of every configuration (repeatable), e.g. --set translate=0.1; "
                         "records count only for the same changed config, and `make report` never shows them")
    ap.add_argument("--no-train", action="store_true", help="only print the summary of existing records")
    ap.add_argument("--fail-fast", action="store_true",
                    help="stop at the first run that misses the grading policy (screening a recipe change: "
                         "list the seeds most likely to fail first)")
    args = ap.parse_args(argv)

    overrides = parse_overrides(args.set)
    try:
        configs = configurations(args.epochs, overrides)
    except ValueError as e:   # a value of the right type that TrainConfig refuses (lr=0, optimizer=foo)
        ap.error(f"--set: {e}")
    if args.only:
        wanted = [w.strip() for w in args.only.split(",") if w.strip()]
        unknown = [w for w in wanted if w not in configs]
        if unknown:
            ap.error(f"--only: no configuration named {', '.join(map(repr, unknown))}; "
                     f"the labels are: {', '.join(configs)}")
        configs = {k: v for k, v in configs.items() if k in wanted}
    records = {label: matching_records(config, count_parameters(factory()), args.runs_dir)
               for label, (_, factory, config, _) in configs.items()}
    jobs = []
    for seed in [] if args.no_train else args.seeds:
        for label in configs:
            done = [r for r in records[label] if r.config.seed == seed]
            if done:
                print(f"{label} seed {seed}: already recorded in {done[-1].path.name}", flush=True)
            else:
                jobs.append((label, seed, args.runs_dir, args.epochs, overrides))
    finished = run_jobs(_train, jobs, args.workers, args.fail_fast)

    print(f"\n{'configuration':<26} {'seeds':>5} {'final min':>9} {'mean':>6} {'max':>6} {'last-3 min':>10} "
          f"{'pass':>5}  first epoch >= 99.4")
    failed = False
    for label, (session, factory, config, _) in configs.items():
        if jobs:  # new records were written
            records[label] = matching_records(config, count_parameters(factory()), args.runs_dir)
        recs = [r for r in records[label] if r.config.seed in args.seeds]
        if not recs:
            continue
        s = summary(recs, POLICIES[session])
        failed |= s["passing"] < s["n"]
        print(f"{label:<26} {s['n']:>5} {s['final_min']:>9.2f} {s['final_mean']:>6.2f} {s['final_max']:>6.2f} "
              f"{s['last3_min']:>10.2f} {s['passing']:>2}/{s['n']:<2}  {s['first_epochs']}")
    if not finished:
        print("(stopped early by --fail-fast: the table shows the runs recorded so far)")
    return 1 if failed or not finished else 0


if __name__ == "__main__":
    raise SystemExit(main())
