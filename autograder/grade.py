"""Grade notebook submissions: ``course grade PATH... [--retrain] [--final]`` / ``python -m autograder.grade``.

For each notebook the grader

1. identifies the assignment (file name, or ``--assignment``) and its checks and points
   (:mod:`autograder.assignments`);
2. copies the notebook into a private scratch folder and starts a worker process on it
   (:mod:`autograder.worker`), inside the bubblewrap sandbox where it works (:mod:`autograder.sandbox`),
   with memory, process and wall-time limits (in checkpoint mode the worker is forked, already sandboxed
   and with torch imported, by a zygote: :mod:`autograder.zygote`; it starts in milliseconds instead of
   seconds). Only the worker runs the student's cells, and only those
   tagged setup/definitions/config. It produces *data*: the model's exported graph, Ghost Batch Norm and
   penalty outputs on the judge's inputs, the training configs, and in retrain mode the weights of the
   last epochs. If it crashes, exits, runs out of memory or time, the items it was producing fail with
   the reason and a fresh worker carries on with the rest. In retrain mode each training run gets a
   worker of its own at one thread, several at once (``--train-workers``), beside the other items' worker;
3. judges those outputs here (:mod:`autograder.judge`): this process never imports or runs student
   code; it runs the exported graph itself on the MD5-verified MNIST test set, which the worker never sees;
4. prints a score table (check, points, pass/fail, one-line reason, the isolation it ran under) and
   feedback for each failed check, and writes a JSON result file. Exit status 1 when any check fails.

Checkpoint mode (default) grades the submitted run records (``runs/`` next to the notebook, or
``--runs-dir``). Retrain mode (``--retrain``) trains the student's model from scratch with the
notebook's config, the course data pipeline and the config's own seed (or ``--seed``), on the training
set alone, and grades that run instead (the judge evaluates its last epochs' weights itself): it proves
the model reaches the target, whatever checkpoint was submitted. ``--final`` (an instructor's final
grade) refuses to run without the sandbox.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

from . import classgrade, sandbox, zygote
from .assignments import Assignment, identify
from .classgrade import write_atomic
from course_utils.policy import GRADER_SEED, RETRAIN_THREADS
from .submission import SubmissionError, read_notebook

ROOT = Path(__file__).resolve().parents[1]
CHECKPOINT_TIMEOUT = 300      # seconds per worker in checkpoint mode (a normal grading takes ~10)
RETRAIN_TIMEOUT = 3 * 3600    # retrain mode: five Session 3 variants on a 2-core CPU
MEMORY_LIMIT = 8 * 2**30      # address space of a worker (torch alone maps ~3.5 GB)


@dataclass
class CheckResult:
    id: str
    title: str
    points: int
    max_points: int
    passed: bool
    message: str
    seconds: float = 0.0


@dataclass
class GradeReport:
    notebook: str
    assignment: str | None
    mode: str
    seed: int | None
    checks: list[CheckResult] = field(default_factory=list)
    error: str | None = None          # the submission could not be graded at all
    seconds: float = 0.0
    isolation: str = sandbox.NONE     # what the student's code ran under (see autograder.sandbox)
    written: int = 0                  # points of written answers, graded by hand (not in score/max_score)

    @property
    def score(self) -> int:
        return sum(c.points for c in self.checks)

    @property
    def max_score(self) -> int:
        return sum(c.max_points for c in self.checks)

    @property
    def passed(self) -> bool:
        return self.error is None and bool(self.checks) and all(c.passed for c in self.checks)

    def to_dict(self) -> dict:
        d = asdict(self)
        d.update(score=self.score, max_score=self.max_score, passed=self.passed)
        return d

    def table(self, width: int = 100) -> str:
        lines = [f"{self.notebook}: {self.assignment or '?'} ({self.mode} mode"
                 + ((f", seed {self.seed}" if self.seed is not None else ", the configs' own seeds")
                    if self.mode == "retrain" else "") + f"; isolation: {self.isolation})"]
        if self.error:
            return "\n".join(lines + [f"  not graded: {self.error}"])
        idw = max(len(c.id) for c in self.checks)
        lines.append(f"  {'check':<{idw}}  {'points':>6}  {'result':<6}  reason")
        for c in self.checks:
            reason = " ".join(c.message.split())
            room = max(20, width - idw - 22)
            reason = reason if len(reason) <= room else reason[:room - 3] + "..."
            lines.append(f"  {c.id:<{idw}}  {c.points:>2}/{c.max_points:<3}  {'PASS' if c.passed else 'FAIL':<6}  {reason}")
        lines.append(f"  {'total':<{idw}}  {self.score:>2}/{self.max_score:<3}  "
                     f"{'PASS' if self.passed else 'FAIL':<6}  ({self.seconds:.1f} s)")
        if self.written:
            lines.append(f"  + {self.written} point(s) for your written answers, graded by your instructor")
        failed = [c for c in self.checks if not c.passed]
        if failed:
            lines.append("  What to change:")
            for c in failed:
                body = textwrap.fill(" ".join(c.message.split()), width=width - 6, initial_indent="    ",
                                     subsequent_indent="    ")
                lines.append(f"  - {c.id} ({c.title}):\n{body}")
        return "\n".join(lines)


def default_runs_dirs(notebook: Path) -> list[Path]:
    """Where a submission's run records are looked for: ``runs/`` next to the notebook, and in the
    repository it belongs to (the nearest folder above it, at most two up, holding ``.git``). Never the
    grader's own repository, whose ``runs/`` may hold the reference solutions' records."""
    here = notebook.resolve().parent
    dirs = [here / "runs"]
    for d in list(here.parents)[:2]:
        if (d / ".git").exists():
            if d != ROOT:
                dirs.append(d / "runs")
            break
    return [d for d in dict.fromkeys(dirs) if d.is_dir()] or [here / "runs"]


def data_root() -> Path:
    """The grader's MNIST root, passed to the worker (which verifies it by MD5 before grading)."""
    if os.environ.get("COURSE_DATA"):
        return Path(os.environ["COURSE_DATA"]).expanduser().resolve()
    here = Path.cwd().resolve()
    for d in (here, *here.parents, ROOT):
        if (d / "data" / "MNIST" / "raw").is_dir():
            return d / "data"
    return ROOT / "data"


def train_files() -> list[Path]:
    """The MNIST training files (MD5-verified), all that retrain mode shows the worker."""
    from course_utils.data import ensure_mnist, raw_dir

    root = ensure_mnist(data_root(), allow_download=False, verbose=False)
    return [raw_dir(root) / "train-images-idx3-ubyte", raw_dir(root) / "train-labels-idx1-ubyte"]


def _regular(path: Path, max_bytes: int) -> bool:
    """A regular file (not a link, pipe or device) of at most ``max_bytes``: the only kind of file the
    grader reads from a folder a worker could write to."""
    import stat

    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= max_bytes


def _read_events(path: Path) -> list[dict]:
    if not _regular(path, 16 * 2**20):
        return []
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a killed worker
        if isinstance(event, dict):
            events.append(event)
    return events


def _tail(path: Path, n: int = 6) -> str:
    if not _regular(path, 2**40):
        return ""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, path.stat().st_size - 20000))
            lines = [ln for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-n:])[-600:]


def _worker_env(scratch: Path, retrain: bool = False) -> dict:
    """A minimal environment: nothing of the grader's (tokens, data and runs locations) leaks in. Retrain mode
    trains with ``RETRAIN_THREADS`` threads, so a retrained grade does not depend on the command or the cores."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "LANG", "LC_ALL", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                          "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "COURSE_THREADS", "TZ")}
    env.update(HOME=str(scratch), TMPDIR="/tmp", MPLBACKEND="Agg", PYTHONUNBUFFERED="1", TQDM_DISABLE="1",
               PYTHONDONTWRITEBYTECODE="1", PYTHONPATH=str(ROOT))
    if retrain:
        env.update(COURSE_THREADS=str(RETRAIN_THREADS), OMP_NUM_THREADS=str(RETRAIN_THREADS))
    return env


def _run_worker(argv: list[str], scratch: Path, timeout: float, log, echo: bool,
                sandboxed: bool = True, retrain: bool = False, tag: str = "",
                running: set | None = None, warm=None) -> tuple[int | None, str]:
    """Run one worker; returns (exit status or None if killed for time, why it stopped). ``running`` holds
    the process while it runs (so another thread can end it). ``warm``: a function that forks it from the
    zygote instead (:mod:`autograder.zygote`)."""
    env = _worker_env(scratch, retrain)
    if not sandboxed:
        env[sandbox.PARENT_ENV] = str(os.getpid())
    if warm is not None:
        proc = warm()          # raises zygote.Gone if the zygote cannot fork it
    else:
        proc = subprocess.Popen(argv, cwd=scratch, env=env, stdin=subprocess.DEVNULL,
                                stdout=subprocess.PIPE if echo else log, stderr=subprocess.STDOUT,
                                start_new_session=True)   # the worker dies with this process (see sandbox.py)
    if running is not None:
        running.add(proc)
    try:
        if echo:
            deadline = time.monotonic() + timeout
            for line in proc.stdout:  # retrain mode: show the worker's progress as it goes
                log.write(line)
                log.flush()
                sys.stderr.write("    " + tag + line.decode(errors="replace"))
                if time.monotonic() > deadline:
                    raise subprocess.TimeoutExpired(proc.args, timeout)
        proc.wait(timeout=timeout if not echo else max(1.0, deadline - time.monotonic()))
        return proc.returncode, ""
    except subprocess.TimeoutExpired:
        return None, f"timed out after {timeout:.0f} s (an endless loop, or far too slow)"
    finally:
        _kill(proc)
        if running is not None:
            running.discard(proc)


def _kill(proc) -> None:
    """End a worker and everything it started (its own session, or its PID namespace), and reap it."""
    if isinstance(proc, zygote.WarmWorker):
        proc.end()
    else:
        sandbox.end_session(proc)


def _death_reason(code: int | None, why: str, log_path: Path) -> str:
    if code is None:
        return why
    if code < 0:
        sig = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        what = "killed (out of memory?)" if sig == "SIGKILL" else f"killed by {sig}"
        reason = f"the grading process was {what}"
    elif code in (128 + signal.SIGKILL, 128 + signal.SIGSEGV, 128 + signal.SIGABRT):
        sig = signal.Signals(code - 128).name
        what = "killed (out of memory?)" if sig == "SIGKILL" else f"killed by {sig}"
        reason = f"the grading process was {what}"
    else:
        reason = f"the grading process exited with status {code} (sys.exit or os._exit in your code?)"
    tail = _tail(log_path)
    return reason + (f"; last output: {tail}" if tail else "")


def needed_items(spec: Assignment, retrain: bool) -> list[str]:
    """What the worker must produce for the assignment's checks, in a stable order."""
    from .judge import CHECKS

    return list(dict.fromkeys(i for c in spec.checks for i in CHECKS[c.id][0](spec, retrain)))


def default_train_workers() -> int:
    """How many retrain-mode trainings run at once: one more than the CPUs this process may use, so the
    last runs do not leave a core idle (each trains at ``RETRAIN_THREADS`` threads in a worker of its own:
    the count changes the time, never the weights; RESULTS.md, "Tests", compares 1, 2, 3 and 5 at once)."""
    from course_utils.threads import usable_cpus

    return max(1, usable_cpus() // RETRAIN_THREADS) + 1


def _produce(spec: Assignment, copy: Path, scratch: Path, *, retrain: bool, seed: int, timeout: float,
             memory_bytes: int | None, echo: bool, train_workers: int | None = None) -> tuple[dict, str, str | None]:
    """Run workers until every item is produced or failed: (item -> files or message, isolation,
    message if the notebook's own cells could not run). Retrain mode trains each run in a worker of its
    own, up to ``train_workers`` at once (default :func:`default_train_workers`), beside the worker that
    produces the other items."""
    outputs = scratch / "out"            # the workers' only writable folder
    outputs.mkdir()
    train = [str(p) for p in train_files()] if retrain else []
    job = _Job(spec, copy, scratch, outputs, retrain=retrain, seed=seed, train=train, memory_bytes=memory_bytes,
               echo=echo, deadline=time.monotonic() + timeout, timeout=timeout)  # one budget for the notebook
    items = needed_items(spec, retrain)
    trainings = [i for i in items if i.startswith("train:")]
    others = [i for i in items if i not in trainings]
    if not trainings:
        status, load_error = job.run(others, "events.jsonl", "worker.log")
        return status, job.level, load_error
    lanes = min(train_workers or default_train_workers(), len(trainings))
    tags = {item: f"[{item.split(':', 1)[1]}] " if lanes > 1 else "" for item in trainings}

    def train(n: int, item: str) -> dict:
        got, error = job.run([item], f"events-{n}.jsonl", f"worker-{n}.log", tags[item])
        return got if error is None else {item: error}   # the notebook's own failure is the other worker's to say

    # threads that wait on worker processes: the other items' worker, and the trainings beside it
    first, pool = ThreadPoolExecutor(1), ThreadPoolExecutor(lanes)
    futures = [first.submit(job.run, others, "events.jsonl", "worker.log")]
    futures += [pool.submit(train, n, item) for n, item in enumerate(trainings, 1)]
    try:
        status, load_error = futures[0].result()
        trained = [f.result() for f in futures[1:]]
    except BaseException:   # Ctrl-C: end every worker (the threads waiting on them return) and start no other
        for f in futures:
            f.cancel()          # those not started yet
        while not all(f.done() for f in futures):
            job.stop()
            time.sleep(0.05)
        raise
    finally:
        first.shutdown(cancel_futures=True)
        pool.shutdown(cancel_futures=True)
    if load_error is None:
        for got in trained:
            status.update(got)
    return status, job.level, load_error


@dataclass
class _Job:
    """What every worker of one notebook shares: its request fields, the outputs folder, the deadline."""
    spec: Assignment
    copy: Path
    scratch: Path
    outputs: Path
    retrain: bool
    seed: int | None
    train: list
    memory_bytes: int | None
    echo: bool
    deadline: float
    timeout: float
    level: str = sandbox.NONE
    running: set = field(default_factory=set)   # the workers running now
    stopped: bool = False

    def stop(self) -> None:
        """End every running worker, and start no other."""
        self.stopped = True
        for proc in list(self.running):
            _kill(proc)

    def _zygote(self):
        """The zygote that forks this job's workers (checkpoint mode in the sandbox), or None: a process each."""
        if self.retrain or self.echo or sandbox.isolation() != sandbox.SANDBOX or self.outputs != self.scratch / "out":
            return None
        return zygote.get(self.scratch.parent, _worker_env(Path(zygote.W) / "out"))

    def _warm(self, warm, req_path: Path, log):
        if warm is None:
            return None
        return lambda: warm.spawn(self.scratch, [f"{zygote.W}/in/{req_path.name}"], _worker_env(Path(zygote.W) / "out"),
                                  f"{zygote.W}/out", log)

    def run(self, items: list[str], events_name: str, log_name: str, tag: str = "") -> tuple[dict, str | None]:
        """Workers, one after another, until each of ``items`` is produced or failed (a worker that dies
        fails the item it was on, and a fresh one carries on with the rest)."""
        spec, outputs = self.spec, self.outputs
        events_path, log_path = outputs / events_name, self.scratch / log_name
        extra_ro = [self.copy.parent] + [Path(p) for p in self.train]
        timed_out = f"timed out after {self.timeout:.0f} s (an endless loop, or far too slow)"
        remaining, status = list(items), {}
        with open(log_path, "ab") as log:
            while remaining:
                left = self.deadline - time.monotonic()
                if self.stopped:
                    for i in remaining:
                        status[i] = "grading was interrupted"
                    break
                if left <= 1:
                    for i in remaining:
                        status[i] = timed_out
                    break
                warm = self._zygote()
                at = Path(zygote.W) if warm else self.scratch   # where the worker sees this grade's scratch folder
                request = dict(notebook=str(at / "in" / self.copy.name), assignment=spec.id, items=remaining,
                               outputs=str(at / "out"),
                               events=events_name, retrain=self.retrain, seed=self.seed, runs=spec.runs,
                               labels=list(spec.labels), epoch_limit=spec.policy.epoch_limit,
                               keep_epochs=spec.policy.consistent_epochs, train_files=self.train,
                               memory_bytes=self.memory_bytes)
                # read-only for the worker; one name per worker, also for workers started at the same instant
                req_path = self.copy.parent / f"request-{Path(events_name).stem}-{time.monotonic_ns()}.json"
                fd = os.open(req_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
                with os.fdopen(fd, "w") as f:
                    f.write(json.dumps(request))
                argv, self.level = sandbox.command([sys.executable, "-m", "autograder.worker", str(req_path)],
                                                   outputs, extra_ro)
                seen = len(_read_events(events_path))
                try:
                    code, why = _run_worker(argv, outputs, left, log, self.echo, sandboxed=self.level == sandbox.SANDBOX,
                                            retrain=self.retrain, tag=tag, running=self.running,
                                            warm=self._warm(warm, req_path, log))
                except zygote.Gone as e:   # the zygote failed this worker: its items again, in a worker of its own
                    zygote.forget(warm, str(e))
                    continue
                if code is None:
                    why = timed_out
                events = _read_events(events_path)[seen:]
                load = next((e for e in events if e.get("event") == "load"), None)
                if load is not None and not load.get("ok"):
                    return status, str(load.get("message"))
                if load is None:
                    return status, f"Your notebook's setup/definitions cells stopped the grader: " \
                                   f"{_death_reason(code, why, log_path)}"
                for e in events:
                    if e.get("event") == "done" and e.get("item") in remaining and e.get("item") not in status:
                        status[e["item"]] = [str(f) for f in e.get("files", [])] if e.get("ok") \
                            else str(e.get("message"))
                started = [e.get("item") for e in events if e.get("event") == "start"]
                for item in started:
                    if item in remaining and item not in status:
                        status[item] = _death_reason(code, why, log_path)
                before = len(remaining)
                remaining = [i for i in remaining if i not in status]
                if remaining and len(remaining) == before:
                    for i in remaining:  # cannot happen unless the worker itself is broken
                        status[i] = "internal grader error: " + _tail(log_path)
                    break
        return status, None


def grade(notebook: str | os.PathLike, *, assignment: str | None = None, retrain: bool = False,
          seed: int | None = GRADER_SEED, runs_dirs: list | None = None, timeout: float | None = None,
          memory_bytes: int | None = MEMORY_LIMIT, echo: bool = False, require_sandbox: bool = False,
          train_workers: int | None = None) -> GradeReport:
    """Grade one notebook; never raises for anything wrong with the submission.

    The worker (sandboxed where bubblewrap works) produces the items the checks need; the verdicts
    are computed here, by :mod:`autograder.judge`, in this process, which never runs student code.
    Retrain mode trains up to ``train_workers`` runs at once (default :func:`default_train_workers`)."""
    t0 = time.perf_counter()
    notebook = Path(notebook)
    mode = "retrain" if retrain else "checkpoint"
    report = GradeReport(str(notebook), None, mode, seed if retrain else None, isolation=sandbox.isolation())
    if require_sandbox and report.isolation != sandbox.SANDBOX:
        report.error = (f"not graded: a final grade needs the sandbox, and {sandbox.why_not_sandboxed()}. Install "
                        "bubblewrap (apt-get install bubblewrap) or pass --allow-unisolated.")
        return report
    try:
        spec: Assignment = identify(notebook, assignment)
        report.assignment, report.written = spec.id, sum(w.points for w in spec.written)
        read_notebook(notebook)
    except (ValueError, SubmissionError) as e:
        if report.assignment:
            spec_checks = identify(notebook, assignment).checks
            report.checks = [CheckResult(c.id, c.title, 0, c.points, False, str(e)) for c in spec_checks]
        else:
            report.error = str(e)
        report.seconds = time.perf_counter() - t0
        return report
    timeout = timeout or (RETRAIN_TIMEOUT if retrain else CHECKPOINT_TIMEOUT)
    runs = [Path(p).resolve() for p in runs_dirs] if runs_dirs else default_runs_dirs(notebook)
    scratch = sandbox.scratch_dir()
    try:
        (scratch / "in").mkdir()
        copy = scratch / "in" / notebook.name
        shutil.copyfile(notebook, copy)  # the worker reads a copy: the submission is never touched
        status, report.isolation, load_error = _produce(
            spec, copy, scratch, retrain=retrain, seed=seed, timeout=timeout, memory_bytes=memory_bytes, echo=echo,
            train_workers=train_workers)
        if load_error is not None:
            report.checks = [_result(spec, c.id, False, load_error) for c in spec.checks]
        else:
            report.checks = _judge(spec, scratch / "out", status, retrain=retrain, seed=seed, runs=runs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    report.seconds = time.perf_counter() - t0
    return report


def _judge(spec: Assignment, outputs: Path, status: dict, *, retrain: bool, seed: int, runs) -> list[CheckResult]:
    from .judge import CHECKS, CheckFailed, Evidence

    ev = Evidence(spec, outputs, status, retrain=retrain, seed=seed, runs_dirs=runs, data_root=data_root())
    out = []
    for c in spec.checks:
        t = time.perf_counter()
        try:
            msg, passed = CHECKS[c.id][1](ev, **c.kwargs), True
        except CheckFailed as e:
            msg, passed = str(e), False
        except Exception as e:  # noqa: BLE001 - a judge failure must not take the other checks down
            msg, passed = f"internal grader error while judging: {type(e).__name__}: {e}", False
        out.append(_result(spec, c.id, passed, msg, time.perf_counter() - t))
    return out


def _result(spec: Assignment, cid: str, passed: bool, message: str, seconds: float = 0.0) -> CheckResult:
    c = next(c for c in spec.checks if c.id == cid)
    return CheckResult(c.id, c.title, c.points if passed else 0, c.points, passed, message, seconds)


def find_notebooks(paths) -> list[Path]:
    """Notebook files named on the command line; folders are searched recursively."""
    out = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(q for q in p.rglob("*.ipynb") if ".ipynb_checkpoints" not in q.parts)
        else:
            out.append(p)
    return out


def _json_name(path: Path, base: Path | None) -> str:
    """The result file's name: the notebook's path under the graded folder, or its folder and name
    (``alice__4_bn_dropout.json``), so two students' notebooks of one assignment never share a file."""
    inside = base is not None and path.resolve().is_relative_to(base.resolve())
    rel = path.resolve().relative_to(base.resolve()) if inside else Path(path.resolve().parent.name) / path.name
    return "__".join(p for p in rel.with_suffix("").parts if p) + ".json"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="course grade", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Grade course notebooks: the grader runs each notebook's tagged cells in a sandboxed worker "
                    "and judges\nwhat it produces in this process, then prints a score table and writes a JSON "
                    "result per notebook.",
        epilog="modes:\n"
               "  checkpoint (default)  grade the submitted run records: the judge evaluates their checkpoints\n"
               "                        itself. Records are searched in runs/ next to the notebook and in the\n"
               "                        student's repository root (at most two folders up, holding .git),\n"
               "                        or in --runs-dir.\n"
               "  retrain (--retrain)   train each graded run again from scratch on the training set, then\n"
               "                        judge those weights (minutes per notebook).\n\n"
               "Exit status: 0 when every check of every notebook passes, 1 when one fails, 2 for a usage error.")
    ap.add_argument("paths", nargs="+", help="notebook(s) or folder(s) of notebooks")
    ap.add_argument("--retrain", action="store_true",
                    help="retrain from scratch on the training set (each config's own seed, or --seed), then grade")
    ap.add_argument("--seed", type=int, default=GRADER_SEED,
                    help="retrain mode: train with this seed instead of each config's own seed")
    ap.add_argument("--assignment", help="e.g. session2/4_bn_dropout (default: from the file name)")
    ap.add_argument("--runs-dir", action="append", help="where the submission's run records are (repeatable)")
    ap.add_argument("--out", default="grades", help="folder for the JSON results (default ./grades)")
    ap.add_argument("--timeout", type=float, help="seconds for one notebook, all its grading processes together")
    ap.add_argument("--train-workers", type=int, metavar="N",
                    help="retrain mode: trainings at once, each in its own worker at one thread (default: one more "
                         "than the usable CPUs; the trained weights do not depend on it)")
    ap.add_argument("--memory-gb", type=float, default=MEMORY_LIMIT / 2**30, help="memory limit per grading process")
    ap.add_argument("--final", action="store_true",
                    help="an instructor's final grade: refuse to run student code outside the sandbox (bubblewrap)")
    ap.add_argument("--allow-unisolated", action="store_true",
                    help="with --final: grade even where the sandbox is not available (the results say so)")
    cls = ap.add_argument_group("a whole class on Dask (one task per notebook; README, \"Grading a class\")")
    cls.add_argument("--workers", type=int, metavar="N",
                     help="grade on a LocalCluster of N single-threaded Dask worker processes on this machine")
    cls.add_argument("--cluster", metavar="ADDRESS", help="grade on a running Dask scheduler, e.g. tcp://host:8786")
    cls.add_argument("--threads", type=int, default=1,
                     help="torch threads per grading task (default 1: one per process is fastest on small CPUs); "
                          "retrain mode trains at one thread whatever this says")
    cls.add_argument("--force", action="store_true",
                     help="grade again submissions whose notebook, run records and grader are unchanged")
    args = ap.parse_args(argv)
    for name in ("workers", "train_workers"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.final and not args.allow_unisolated and sandbox.isolation() != sandbox.SANDBOX:
        print(f"error: a final grade needs the sandbox, and {sandbox.why_not_sandboxed()}. Install bubblewrap "
              "(apt-get install bubblewrap) or pass --allow-unisolated.", file=sys.stderr)
        return 2

    missing = [p for p in args.paths if not Path(p).exists()]
    if missing:
        ap.error(f"no such file or folder: {', '.join(missing)}")   # exit status 2, nothing written
    scheme = args.cluster.split("://", 1)[0].lower() if args.cluster and "://" in args.cluster else "tcp"
    if scheme not in ("tcp", "tls", "ws", "wss", "ucx", "ucxx", "inproc"):
        ap.error(f"--cluster {args.cluster}: give the Dask scheduler's address, e.g. tcp://host:8786 (not the "
                 "dashboard's http:// address)")
    options = dict(assignment=args.assignment, retrain=args.retrain, seed=args.seed, runs_dirs=args.runs_dir,
                   timeout=args.timeout, memory_bytes=int(args.memory_gb * 2**30), threads=args.threads,
                   require_sandbox=args.final and not args.allow_unisolated)   # on every Dask worker too
    on_dask = bool(args.workers or args.cluster)
    if on_dask and (len(args.paths) != 1 or not Path(args.paths[0]).is_dir()):
        ap.error("--workers/--cluster grade one folder of submissions")
    notebooks = [] if on_dask else find_notebooks(args.paths)
    if not on_dask and not notebooks:
        print(f"error: no notebooks found in {', '.join(args.paths)}", file=sys.stderr)
        return 2
    if args.retrain and not args.cluster:   # once, not per notebook (a remote cluster's workers have their own)
        from course_utils.data import MNISTUnavailable

        try:
            train_files()
        except MNISTUnavailable as e:
            print(f"error: retrain mode trains on the MNIST training files, which are not here: {e}", file=sys.stderr)
            return 2
    out = Path(args.out)   # made only now: a usage error writes nothing
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        ap.error(f"--out {out}: cannot make a folder for the results there ({e.strerror or e})")
    if not os.access(out, os.W_OK | os.X_OK):
        ap.error(f"--out {out}: the folder is not writable")
    if on_dask:
        return classgrade.grade_class(Path(args.paths[0]), out, options, workers=args.workers,
                                      cluster=args.cluster, force=args.force)
    base = Path(args.paths[0]) if len(args.paths) == 1 and Path(args.paths[0]).is_dir() else None
    if base is not None:   # a folder: grade it as a class (one row per submission), in this process
        subs = {s.notebook: s for s in classgrade.discover(base)}
        notebooks = [nb for nb in notebooks if nb.resolve() in subs]
    reports, rows = [], []
    try:
        for nb in notebooks:
            report = grade(nb, assignment=args.assignment, retrain=args.retrain, seed=args.seed,
                           runs_dirs=args.runs_dir, timeout=args.timeout, memory_bytes=options["memory_bytes"],
                           echo=args.retrain, train_workers=args.train_workers)
            reports.append(report)
            if base is None:
                dest, result = out / _json_name(nb, None), report.to_dict()
            else:  # the same file and fields as `--workers`, so a later class run skips what is unchanged
                sub = subs[nb.resolve()]
                dest = out / sub.name
                result = classgrade.class_row(sub, report, classgrade.fingerprint(sub, options))
                rows.append(result)
            write_atomic(dest, json.dumps(result, indent=2) + "\n")
            print(report.table())
            print(f"  result: {dest}\n", flush=True)
    except KeyboardInterrupt:   # Ctrl-C: every result already written stays; the grader's workers are ended
        print(f"interrupted: {len(reports)} of {len(notebooks)} notebook(s) graded, their results in {out}/",
              file=sys.stderr, flush=True)
        if rows:
            print(classgrade.finish(rows, out), flush=True)
        return 130
    if len(reports) > 1:
        print(f"{'notebook':<50} {'score':>7}  result")
        for r in reports:
            print(f"{str(r.notebook)[-50:]:<50} {r.score:>3}/{r.max_score:<3}  {'PASS' if r.passed else 'FAIL'}")
    if base is not None:
        print(classgrade.finish(rows, out), flush=True)
    return 0 if all(r.passed for r in reports) else 1

if __name__ == "__main__":
    sys.exit(main())
