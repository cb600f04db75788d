"""Class grading throughput: submissions graded per minute in checkpoint mode, plain (with and without the
zygote that forks warm workers) and on Dask with 1 and 2 workers.

    make bench-class          (or: python -m benchmarks.class_grading [--students 12]
                               [--workers no-zygote sequential 1 2])

Builds a class in nbgrader's layout (``submitted/<student>/session2/4_bn_dropout.ipynb``): each student
hands in the Session 2 solution notebook and, when this checkout has one, the reference run record
(``runs/``, the newest complete record of the notebook's own config, seed included), so the judge evaluates a real checkpoint
on the test set, as in a real class. Then grades the whole folder with ``course grade FOLDER --force``
once per setting (``--workers N`` on Dask, or ``sequential``: plain ``course grade FOLDER``, one notebook
after another in one process), in a fresh process each, and prints wall time (start-up included) and submissions per
minute side by side, with the load average before each. Results: ``benchmarks/results/class_grading.json``.

Retrain mode costs the training itself per notebook (README, "Grading a class": the cost model).
"""
from __future__ import annotations

import argparse
import csv
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results_file import write_results
from benchmarks.args import positive, out_file

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "session2" / "4_bn_dropout.ipynb"


def reference_record() -> Path | None:
    from course_utils.records import select
    from instructor.reference.session2 import SESSION2_CONFIG

    found = select(SESSION2_CONFIG, ROOT / "runs")   # the notebook's own config, seed included: the one it grades
    return found[-1].path if found else None


def build_class(folder: Path, students: int, record: Path | None) -> None:
    for i in range(1, students + 1):
        dest = folder / "submitted" / f"student{i:03d}" / "session2"
        dest.mkdir(parents=True)
        shutil.copyfile(NOTEBOOK, dest / NOTEBOOK.name)
        if record is not None:
            shutil.copytree(record, dest / "runs" / record.name)


SEQUENTIAL = ("sequential", "no-zygote")
LABELS = {"sequential": "sequential, no Dask (judge on all cores)",
          "no-zygote": "sequential, a process per worker (COURSE_ZYGOTE=off)"}


def run(folder: Path, out: Path, setting: str) -> dict:
    args = ["--workers", setting] if setting not in SEQUENTIAL else []
    env = {**os.environ, "COURSE_ZYGOTE": "off"} if setting == "no-zygote" else None
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(folder), "--out", str(out), "--force", *args],
                          capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    with open(out / "class.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    graded, scores = len(rows), [f"{r['total']}/{r['max']}" for r in rows]
    return {"setting": setting, "seconds": round(seconds, 1), "graded": graded, "load_before": round(load, 2),
            "per_minute": round(60 * graded / seconds, 2), "scores": sorted(set(scores)),
            "exit": proc.returncode, "tail": proc.stdout[-300:] if proc.returncode not in (0, 1) else ""}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--students", type=positive, default=12)
    ap.add_argument("--workers", nargs="+", default=["no-zygote", "sequential", "1", "2"],
                    help="Dask worker counts to time; 'sequential' times plain course grade FOLDER (no Dask), "
                         "'no-zygote' the same with every worker started as a process of its own")
    ap.add_argument("--out", type=out_file, default=str(ROOT / "benchmarks" / "results" / "class_grading.json"))
    args = ap.parse_args(argv)
    bad = [w for w in args.workers if w not in SEQUENTIAL and not (w.isdigit() and int(w) >= 1)]
    if bad:
        ap.error(f"--workers: {', '.join(bad)}: each must be 'sequential', 'no-zygote' or a worker count of at least 1")

    record = reference_record()
    print(f"{args.students} submissions of {NOTEBOOK.relative_to(ROOT)}, "
          + (f"each with the run record {record.name}" if record else "without run records (none in runs/: "
             "the accuracy check fails fast, so this measures less than a real class)"), flush=True)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "class"
        build_class(folder, args.students, record)
        for setting in args.workers:
            r = run(folder, Path(tmp) / f"grades-{setting}", setting)
            results.append(r)
            label = LABELS.get(setting, f"Dask, {setting} worker(s)")
            print(f"  {label:>40}: {r['graded']} graded in {r['seconds']:.1f} s = {r['per_minute']:.1f} "
                  f"per minute (load before {r['load_before']}; scores {', '.join(r['scores']) or '-'})", flush=True)
            if r["tail"]:
                print(r["tail"])
    write_results(args.out, {"students": args.students, "record": record.name if record else None,
                             "cpus": os.cpu_count(), "results": results,
                             "date_utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime())})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
