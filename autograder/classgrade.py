"""Grade a whole class on Dask: ``course grade FOLDER --workers N`` or ``--cluster tcp://host:8786``.

One Dask task per (student, notebook). Each task runs :func:`autograder.grade.grade` on a Dask worker,
exactly as ``course grade NOTEBOOK`` does on one machine: the student's cells run in the sandboxed grading
worker, the judge runs in the Dask worker's process, which never runs student code. ``--workers N`` starts
a ``LocalCluster`` of N single-threaded worker processes here; ``--cluster ADDRESS`` sends the same tasks
to a scheduler that is already running (Slurm through dask-jobqueue, Kubernetes, or ``dask scheduler`` and
``dask worker`` by hand: README, "Grading a class").

Nothing lost, nothing twice:

- each finished grade is written at once, atomically, as ``OUT/<student>__<notebook>.json``, and the class
  table ``OUT/class.csv`` is rewritten (atomically) from every JSON there, so it has one row per
  submission however often a task ran;
- a JSON carries the submission's fingerprint (notebook, run records, grader version, mode, seed): a second
  run skips what is unchanged, ``--force`` grades everything again;
- a Dask worker that dies mid-task has its task run again elsewhere (Dask's own rescheduling); a task
  that keeps killing workers, or fails inside the grader, gets its row with the reason;
- Ctrl-C stops the run and keeps every row already written.

Submission layouts: nbgrader's ``submitted/<student>/<assignment>/<notebook>.ipynb`` (the folder given may
be the course folder holding ``submitted/`` or ``submitted/`` itself) and a flat
``<student>/<notebook>.ipynb`` or ``<notebook>.ipynb`` folder.
"""
from __future__ import annotations

import asyncio
import csv
import functools
import hashlib
import io
import json
import os
import platform
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSV_NAME = "class.csv"
HISTOGRAM_NAME = "totals.png"
CONNECT_TIMEOUT = "20s"     # how long to wait for a --cluster scheduler ($COURSE_CONNECT_TIMEOUT, e.g. "5s", overrides)
WORKER_WAIT = 600           # seconds to wait for a first worker of a --cluster that has none


@dataclass(frozen=True)
class Submission:
    student: str
    notebook: Path          # absolute
    name: str               # the JSON result's file name, unique in the class

    def runs_dirs(self, given) -> list[Path]:
        from .grade import default_runs_dirs

        return [Path(p).resolve() for p in given] if given else default_runs_dirs(self.notebook)


def discover(folder: Path) -> list[Submission]:
    """Every notebook under ``folder``, with its student: nbgrader layout or flat (see the module doc)."""
    from .grade import find_notebooks

    folder = Path(folder).resolve()
    base = folder / "submitted" if (folder / "submitted").is_dir() else folder
    subs = []
    for nb in find_notebooks([base]):
        rel = nb.resolve().relative_to(base)
        if any(p in ("runs", "grades") for p in rel.parts[:-1]):
            continue
        student = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        subs.append(Submission(student, nb.resolve(), "__".join(rel.with_suffix("").parts) + ".json"))
    return subs


@functools.lru_cache(maxsize=1)
def grader_version() -> str:
    """The package version and a digest of the grader's and library's source: a changed grader regrades."""
    from importlib.metadata import PackageNotFoundError, version

    h = hashlib.sha256()
    for pkg in ("autograder", "course_utils"):
        for f in sorted((ROOT / pkg).rglob("*.py")):
            h.update(f.relative_to(ROOT).as_posix().encode() + b"\0" + f.read_bytes())
    try:
        v = version("course-utils")
    except PackageNotFoundError:
        v = "0"
    return f"{v}+{h.hexdigest()[:12]}"


def _digest_file(h, path: Path) -> None:
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)


def fingerprint(sub: Submission, options: dict) -> str:
    """What a grade depends on: the notebook's bytes, the files of its run records, the grader version
    and the grading options (mode, seed, assignment, whether the sandbox was required). Equal fingerprints
    mean a regrade would give the same result."""
    h = hashlib.sha256()
    h.update(json.dumps({k: options.get(k) for k in ("retrain", "seed", "assignment", "require_sandbox")},
                        sort_keys=True).encode())
    h.update(grader_version().encode())
    _digest_file(h, sub.notebook)
    if not options["retrain"]:
        for d in sub.runs_dirs(options["runs_dirs"]):
            for f in sorted(p for p in d.rglob("*") if p.is_file() and not p.is_symlink()):
                h.update(str(f.relative_to(d)).encode() + b"\0")
                _digest_file(h, f)
    return h.hexdigest()


def grade_task(sub: Submission, options: dict, fp: str) -> dict:
    """Runs on a Dask worker: grade one notebook, return its result as a dict (never raises for anything
    wrong with the submission)."""
    threads = str(options.get("threads", 1))
    os.environ["COURSE_THREADS"] = threads              # the grading worker's training threads
    os.environ.setdefault("OMP_NUM_THREADS", threads)
    import torch

    torch.set_num_threads(int(threads))                 # the judge's own evaluation in this process
    from .grade import grade

    report = grade(sub.notebook, assignment=options["assignment"], retrain=options["retrain"],
                   seed=options["seed"], runs_dirs=options["runs_dirs"], timeout=options["timeout"],
                   memory_bytes=options["memory_bytes"], require_sandbox=options.get("require_sandbox", False),
                   train_workers=int(threads))           # as many trainings at once as the task has threads
    return class_row(sub, report, fp)


def class_row(sub: Submission, report, fp: str) -> dict:
    """A grade report as the class's JSON result: the report plus who, what was graded, and where."""
    import torch

    return _row_dict(sub, report.to_dict(), fp, machine=platform.node(), torch_version=torch.__version__)


def _row_dict(sub: Submission, result: dict, fp: str, **extra) -> dict:
    return {**result, "notebook": str(sub.notebook), "student": sub.student, "fingerprint": fp,
            "grader_version": grader_version(), **extra}


def _failed_task(sub: Submission, options: dict, why: str) -> dict:
    """The row of a submission whose task could not finish at all."""
    return _row_dict(sub, {"notebook": str(sub.notebook), "assignment": None,
                           "mode": "retrain" if options["retrain"] else "checkpoint", "seed": None, "checks": [],
                           "error": why, "seconds": 0.0, "isolation": "?", "score": 0, "max_score": 0,
                           "passed": False}, "")


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def load_results(out: Path) -> list[dict]:
    rows = []
    for p in sorted(out.glob("*.json")):
        try:
            r = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError):
            continue
        if isinstance(r, dict) and "fingerprint" in r and "student" in r:
            rows.append(r)
    return rows


def class_csv(results: list[dict]) -> str:
    """One row per result: student, assignment, notebook, points per check, total, mode, isolation, grader
    version, seconds, error."""
    check_ids = list(dict.fromkeys(c["id"] for r in results for c in r.get("checks", [])))
    head = ["student", "assignment", "notebook", *check_ids, "total", "max", "passed", "mode", "isolation",
            "grader_version", "seconds", "machine", "error"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(head)
    for r in sorted(results, key=lambda r: (r["student"], str(r.get("assignment")), r["notebook"])):
        points = {c["id"]: c["points"] for c in r.get("checks", [])}
        w.writerow([r["student"], r.get("assignment") or "", Path(r["notebook"]).name,
                    *[points.get(i, "") for i in check_ids], r.get("score", 0), r.get("max_score", 0),
                    r.get("passed", False), r.get("mode"), r.get("isolation"), r.get("grader_version"),
                    f"{r.get('seconds', 0):.1f}", r.get("machine", ""), r.get("error") or ""])
    return buf.getvalue()


def summary(results: list[dict]) -> str:
    if not results:
        return "no results"
    lines = [f"{len(results)} submissions: {sum(r.get('passed', False) for r in results)} passed every check, "
             f"{sum(bool(r.get('error')) for r in results)} not graded (see the error column)"]
    by_check: dict = {}
    for r in results:
        for c in r.get("checks", []):
            by_check.setdefault((r.get("assignment"), c["id"]), []).append((c["points"], c["max_points"]))
    if by_check:
        lines.append(f"  {'assignment / check':<40} {'n':>4} {'mean':>6} {'min':>4} {'max':>4} {'of':>4}")
        for (a, cid), pts in by_check.items():
            p = [x for x, _ in pts]
            lines.append(f"  {(str(a) + ' / ' + cid)[-40:]:<40} {len(p):>4} {statistics.mean(p):>6.2f} "
                         f"{min(p):>4} {max(p):>4} {pts[0][1]:>4}")
    totals = [r.get("score", 0) for r in results]
    lines.append(f"  total: mean {statistics.mean(totals):.2f}, min {min(totals)}, max {max(totals)}")
    return "\n".join(lines)


def histogram(results: list[dict], path: Path) -> Path | None:
    """A histogram of the totals, one panel per assignment."""
    if not results:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups: dict = {}
    for r in results:
        groups.setdefault(r.get("assignment") or "not graded", []).append(r.get("score", 0))
    fig, axes = plt.subplots(1, len(groups), figsize=(4 * len(groups), 3), squeeze=False)
    for ax, (name, totals) in zip(axes[0], sorted(groups.items())):
        top = max([r.get("max_score", 0) for r in results if (r.get("assignment") or "not graded") == name] + [1])
        ax.hist(totals, bins=range(0, top + 2), align="left", rwidth=0.8)
        ax.set(title=f"{name} ({len(totals)})", xlabel="total points", ylabel="submissions", xlim=(-0.5, top + 0.5))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _client(workers: int | None, cluster: str | None, threads: int):
    """A Dask client: to the scheduler at ``cluster``, or to a new LocalCluster of ``workers`` processes."""
    from distributed import Client, LocalCluster

    if cluster:
        return Client(cluster, timeout=os.environ.get("COURSE_CONNECT_TIMEOUT") or CONNECT_TIMEOUT), None
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "COURSE_THREADS"):   # inherited by the worker processes
        os.environ[var] = str(threads)
    local = LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                         memory_limit=0, silence_logs=40)
    return Client(local), local


def grade_class(folder: Path, out: Path, options: dict, *, workers: int | None = None, cluster: str | None = None,
                force: bool = False, stream=sys.stdout) -> int:
    """Grade every submission under ``folder`` on Dask; returns the exit status (0 all passed, 1 not,
    2 no notebooks or no scheduler, 130 interrupted)."""
    from tqdm.auto import tqdm

    out.mkdir(parents=True, exist_ok=True)
    subs = discover(folder)
    if not subs:
        print(f"error: no notebooks found in {folder}", file=sys.stderr)
        return 2
    here = {str(s.notebook) for s in subs}
    rows = {r["notebook"]: r for r in load_results(out) if r["notebook"] in here}   # this class's results so far
    todo, skipped = [], 0
    for s in subs:
        fp = fingerprint(s, options)
        previous = rows.get(str(s.notebook))
        if not force and previous is not None and previous.get("fingerprint") == fp:
            skipped += 1
        else:
            todo.append((s, fp))
    print(f"{len(subs)} submissions in {folder}: {len(todo)} to grade, {skipped} unchanged since their last grade "
          f"(--force grades them again); grader {grader_version()}", file=stream, flush=True)
    status = 0
    if todo:
        try:
            status = _run(todo, rows, out, options, workers, cluster, stream, tqdm)
        except OSError as e:  # the scheduler is not there (distributed raises OSError on connect timeouts)
            print(f"error: cannot reach the Dask scheduler at {cluster}: {e}", file=sys.stderr)
            return 2
    print(finish(list(rows.values()), out), file=stream, flush=True)
    if status:
        return status
    return 0 if rows and all(r.get("passed") for r in rows.values()) else 1


def finish(results: list[dict], out: Path) -> str:
    """Write the class table and the histogram of these results; return the summary."""
    write_atomic(out / CSV_NAME, class_csv(results))
    png = histogram(results, out / HISTOGRAM_NAME)
    return summary(results) + f"\nclass table: {out / CSV_NAME}" + (f"; histogram: {png}" if png else "")


def _run(todo, rows: dict, out: Path, options: dict, workers, cluster, stream, tqdm) -> int:
    """Grade ``todo`` on Dask; each finished row is written as JSON at once and put into ``rows``
    (notebook -> row), from which the class table is rewritten."""
    from distributed import as_completed

    client, local = _client(workers, cluster, options.get("threads", 1))
    interrupted = False
    try:
        link = getattr(client, "dashboard_link", None) if _has_dashboard() else None
        n = len(client.scheduler_info().get("workers", {}))
        if not n and cluster:   # its workers are still starting, or not started yet: tasks would only queue
            print(f"Dask: {cluster} has no workers yet; waiting up to {WORKER_WAIT // 60} minutes for one (start "
                  f"them with `dask worker {cluster}`)", file=stream, flush=True)
            try:
                client.wait_for_workers(1, timeout=WORKER_WAIT)
            except (TimeoutError, asyncio.TimeoutError):
                print(f"error: no Dask worker joined {cluster} in {WORKER_WAIT // 60} minutes", file=sys.stderr)
                return 2
            n = len(client.scheduler_info().get("workers", {}))
        print(f"Dask: {cluster or f'LocalCluster of {workers} single-threaded processes'} ({n} workers)"
              + (f"; dashboard: {link}" if link else "; pip install bokeh for Dask's dashboard"), file=stream,
              flush=True)
        futures = {client.submit(grade_task, s, options, fp, key=f"grade-{fp[:16]}-{s.name}", pure=False,
                                 retries=1): (s, fp) for s, fp in todo}
        bar = tqdm(total=len(futures), desc="grading", unit="notebook", file=stream, dynamic_ncols=True)
        try:
            for fut in as_completed(futures):
                s, fp = futures[fut]
                try:
                    row = fut.result()
                except Exception as e:  # noqa: BLE001 - KilledWorker, or a grader bug: the row says why
                    row = _failed_task(s, options, _task_error(e))   # no fingerprint: the next run retries it
                write_atomic(out / s.name, json.dumps(row, indent=2) + "\n")
                rows[row["notebook"]] = row
                write_atomic(out / CSV_NAME, class_csv(list(rows.values())))
                bar.update(1)
                bar.set_postfix_str(f"{s.student}: {row.get('score', 0)}/{row.get('max_score', 0)}")
        finally:
            bar.close()
    except KeyboardInterrupt:
        interrupted = True
        print("\ninterrupted: every grade finished so far is kept", file=stream, flush=True)
    finally:
        client.close()
        if local is not None:
            local.close()
    return 130 if interrupted else 0


def _has_dashboard() -> bool:
    """Dask serves its dashboard only where bokeh is installed (``pip install bokeh``)."""
    import importlib.util

    return importlib.util.find_spec("bokeh") is not None


def _task_error(e: BaseException) -> str:
    name = type(e).__name__
    if name == "KilledWorker":
        return ("not graded: the Dask workers grading it died each time it ran (the grading process itself "
                "was killed: out of memory on the Dask worker, or the machine went away)")
    return f"not graded: internal grader error: {name}: {e}"
