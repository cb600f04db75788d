"""Grading a class on Dask (`course grade FOLDER --workers N | --cluster ADDRESS`): real Dask clusters
(a LocalCluster, and a scheduler with two separate workers, one of them killed mid-run), a folder of
submissions in nbgrader's layout graded by the real grader."""
from __future__ import annotations

import csv
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from autograder.classgrade import CSV_NAME, discover
from autograder.grade import ROOT
from submissions import completed, edit, stub, write

pytest.importorskip("distributed")
pytestmark = [pytest.mark.data]

S2, NAME2 = "session2/4_bn_dropout", "4_bn_dropout.ipynb"
GOOD = ["alice", "bob", "chen", "dana", "femi", "gus", "hana", "ivan"]
BAD = {"kim": ("setup", "import ctypes\nctypes.string_at(0)", "SIGSEGV"),          # crashes
       "lee": ("setup", "while True:\n    pass", "timed out"),                        # hangs
       "max": (None, None, "not implemented"),                                         # the stub as released
       "ned": ("definitions", "class Net(nn.Module:\n    pass", "syntax error")}         # broken
STUDENTS = sorted(GOOD + list(BAD))


def _class_folder(tmp_path: Path) -> Path:
    """``course/submitted/<student>/session2/4_bn_dropout.ipynb`` for twelve students."""
    base = completed(S2)
    course = tmp_path / "course"
    for s in STUDENTS:
        where, code, _ = BAD.get(s, (None, None, None))
        nb = stub(S2) if s == "max" else edit(base, where, None, code) if where else base
        write(nb, course / "submitted" / s / "session2", NAME2)
    return course


def _course(*args, timeout=900, **kw):
    return subprocess.run([sys.executable, "-m", "course", "grade", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, **kw)


def _rows(out: Path) -> list[dict]:
    with open(out / CSV_NAME, newline="") as f:
        return list(csv.DictReader(f))


def _check_class(out: Path, proc) -> None:
    """One row per student, in the CSV and as JSON; good ones get the model checks, bad ones say why."""
    log = proc.stdout[-4000:] + proc.stderr[-4000:]
    rows = _rows(out)
    assert sorted(r["student"] for r in rows) == STUDENTS, log
    assert len(list(out.glob("*.json"))) == len(STUDENTS), log
    for r in rows:
        assert r["assignment"] == S2 and r["mode"] == "checkpoint" and r["isolation"], r
        if r["student"] in GOOD:  # no run record submitted: the model's checks pass, the record's fail
            assert (r["output"], r["parameters"], r["no_fc"], r["accuracy"]) == ("1", "2", "2", "0"), r
        else:
            assert r["total"] == "0", r
    results = {json.loads(p.read_text())["student"]: json.loads(p.read_text()) for p in out.glob("*.json")}
    for s, (_, _, phrase) in BAD.items():
        assert phrase.lower() in json.dumps(results[s]["checks"]).lower(), (s, results[s]["checks"])
    assert all(r["grader_version"] == results["alice"]["grader_version"] for r in results.values())


def test_discover_reads_the_nbgrader_layout_and_a_flat_folder(tmp_path):
    course = _class_folder(tmp_path)
    subs = discover(course)
    assert [s.student for s in subs] == STUDENTS
    assert subs[0].name == "alice__session2__4_bn_dropout.json"
    assert [s.student for s in discover(course / "submitted")] == STUDENTS
    flat = tmp_path / "flat"
    write(completed(S2), flat / "zoe", NAME2)
    write(completed(S2), flat, NAME2)
    assert sorted((s.student, s.name) for s in discover(flat)) == [
        ("4_bn_dropout", "4_bn_dropout.json"), ("zoe", "zoe__4_bn_dropout.json")]


@pytest.mark.slow
def test_a_local_cluster_grades_a_class_once_skips_it_the_second_time_and_regrades_with_force(tmp_path):
    """Ctrl-C after two grades keeps them (exit 130); the next run grades the other ten; a third grades
    nothing; a changed notebook or new run record is graded again; --force grades all twelve."""
    course, out = _class_folder(tmp_path), tmp_path / "grades"
    grader = subprocess.Popen([sys.executable, "-m", "course", "grade", str(course), "--workers", "2", "--out", str(out),
                               "--timeout", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              # as in a terminal: a test run started in the background (`cmd &`) ignores SIGINT,
                              # and its children would inherit that
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 300
    while len(list(out.glob("*.json"))) < 2 and time.monotonic() < deadline and grader.poll() is None:
        time.sleep(0.1)
    grader.send_signal(signal.SIGINT)
    stdout, stderr = grader.communicate(timeout=120)
    assert grader.returncode == 130 and "interrupted" in stdout, stdout[-2000:] + stderr[-2000:]
    assert "12 to grade, 0 unchanged" in stdout and "LocalCluster of 2" in stdout, stdout[-3000:]
    kept = {p.name for p in out.glob("*.json")}
    assert 2 <= len(kept) < len(STUDENTS) and len(_rows(out)) == len(kept), stdout[-2000:]

    proc = _course(course, "--workers", 2, "--out", out, "--timeout", 20)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{len(STUDENTS) - len(kept)} to grade, {len(kept)} unchanged" in proc.stdout, proc.stdout[-3000:]
    assert "12 submissions: 0 passed every check" in proc.stdout, proc.stdout[-3000:]
    _check_class(out, proc)
    assert (out / "totals.png").stat().st_size > 1000
    stamps = {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")}

    again = _course(course, "--workers", 2, "--out", out)
    assert again.returncode == 1 and "0 to grade, 12 unchanged" in again.stdout, again.stdout[-3000:]
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.json")} == stamps
    _check_class(out, again)

    edited = course / "submitted" / "bob" / "session2" / NAME2   # a resubmission is graded again, alone
    edited.write_text(edited.read_text() + "\n")
    (course / "submitted" / "femi" / "session2" / "runs").mkdir()  # so is a submission with new run records
    (course / "submitted" / "femi" / "session2" / "runs" / "note.txt").write_text("x")
    third = _course(course, "--workers", 1, "--out", out, "--timeout", 20)
    assert "2 to grade, 10 unchanged" in third.stdout, third.stdout[-3000:]
    _check_class(out, third)

    forced = _course(course, "--workers", 2, "--out", out, "--timeout", 20, "--force")
    assert "12 to grade, 0 unchanged" in forced.stdout, forced.stdout[-3000:]
    _check_class(out, forced)
    assert all(p.stat().st_mtime_ns > stamps[p.name] for p in out.glob("*.json"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children(pid: int) -> list[int]:
    """Child processes of ``pid``, started by any of its threads (Dask runs tasks in a thread)."""
    out = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            out += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return out


@pytest.mark.slow
def test_killing_a_dask_worker_mid_run_still_gives_every_row_exactly_once(tmp_path):
    """A scheduler started by hand (what `--cluster` connects to) and no worker yet: the grader says it waits
    for one. Two workers join; one is killed with SIGKILL while the class is being graded: its task runs
    again on the other, one row each."""
    course, out = _class_folder(tmp_path), tmp_path / "grades"
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COURSE_THREADS": "1", "PYTHONPATH": str(ROOT)}
    logs, printed = tmp_path / "dask.log", tmp_path / "grade.out"

    def wait_for(condition, what, seconds=300):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and grader.poll() is None and not condition():
            time.sleep(0.1)
        assert condition(), f"{what}\n" + printed.read_text()[-3000:] + logs.read_text()[-3000:]

    grader = None
    with open(logs, "wb") as log, open(printed, "w") as stdout:
        procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                   "--port", address.rsplit(":", 1)[1], "--no-dashboard"],
                                  stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)]
        try:
            grader = subprocess.Popen([sys.executable, "-m", "course", "grade", str(course), "--cluster", address,
                                       "--out", str(out), "--timeout", "20"],
                                      stdout=stdout, stderr=subprocess.PIPE, text=True)
            wait_for(lambda: "has no workers yet; waiting" in printed.read_text(), "the grader did not wait")
            procs += [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address,
                                        "--nthreads", "1", "--no-nanny", "--no-dashboard", "--name", f"w{i}"],
                                       stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
                      for i in range(2)]
            wait_for(lambda: list(out.glob("*.json")) and _children(procs[2].pid), "no grade finished, or w1 is idle")
            os.killpg(procs[2].pid, signal.SIGKILL)   # mid-task: w1 and the grading process it has started
            _, stderr = grader.communicate(timeout=900)
        finally:
            for p in procs + ([grader] if grader else []):
                try:
                    os.killpg(p.pid, signal.SIGKILL) if p is not grader else p.kill()
                except ProcessLookupError:
                    pass
                p.wait()

    proc = subprocess.CompletedProcess(grader.args, grader.returncode, printed.read_text(), stderr)
    assert proc.returncode == 1, proc.stdout[-3000:] + stderr[-3000:] + logs.read_text()[-3000:]
    assert address in proc.stdout and "workers)" in proc.stdout, proc.stdout[-3000:]
    _check_class(out, proc)
    assert len(_rows(out)) == len(STUDENTS)
    assert "w1" in logs.read_text() and "Remove worker" in logs.read_text(), logs.read_text()[-3000:]


def test_workers_or_cluster_need_one_folder_a_usage_error_otherwise(tmp_path):
    nb = write(completed(S2), tmp_path, NAME2)
    for extra in (["--workers", "2"], ["--cluster", "tcp://127.0.0.1:1"], ["--workers", "0"]):
        proc = _course(nb, *extra, "--out", tmp_path / "grades", timeout=120)
        assert proc.returncode == 2 and "error:" in proc.stderr, (extra, proc.stderr[-500:])
    assert not (tmp_path / "grades").exists()


def test_an_unreachable_cluster_is_one_line_and_exit_status_2(tmp_path):
    write(completed(S2), tmp_path / "class" / "zoe", NAME2)
    proc = _course(tmp_path / "class", "--cluster", f"tcp://127.0.0.1:{_free_port()}", "--out", tmp_path / "g",
                   timeout=300, env={**os.environ, "COURSE_CONNECT_TIMEOUT": "3s"})
    assert proc.returncode == 2, proc.stdout[-1000:] + proc.stderr[-1000:]
    assert "cannot reach the Dask scheduler" in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-1000:]



def test_a_final_grade_on_a_dask_worker_without_the_sandbox_is_refused_there(tmp_path):
    """`--final` is checked where the grade runs: a Dask worker without a working sandbox (here turned
    off) gives a row saying so instead of grading unisolated; and such a row is not skipped later."""
    nb = write(completed(S2), tmp_path / "class" / "zoe", NAME2)
    code = ("import json, sys; from pathlib import Path; from autograder.classgrade import discover, grade_task, "
            "fingerprint\n(sub,) = discover(Path(sys.argv[1]))\n"
            "opts = dict(assignment=None, retrain=False, seed=None, runs_dirs=None, timeout=60, memory_bytes=None, "
            "require_sandbox=True)\n"
            "print(json.dumps([grade_task(sub, opts, fingerprint(sub, opts)), fingerprint(sub, {**opts, "
            "'require_sandbox': False})]))")
    proc = subprocess.run([sys.executable, "-c", code, str(nb.parent.parent)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "COURSE_SANDBOX": "off"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    row, unsandboxed_fp = json.loads(proc.stdout.strip().splitlines()[-1])
    assert row["score"] == 0 and "a final grade needs the sandbox" in row["error"], row
    assert row["fingerprint"] != unsandboxed_fp
