"""Session 3's five variants, trained in the background while the rest of the suite runs.

`make test` starts this before the fast tests and exports ``COURSE_PRETRAINED_RUNS=DIR``. The training is
exactly what the Session 3 notebook test runs itself otherwise (``course train regularization.ipynb
--workers 5``: the notebook's own cells, five processes of one torch thread), only started earlier and at
the lowest CPU priority (``nice 19``), so it takes the cycles the other tests leave idle and never slows
them down. The slow session's ``solution_runs`` fixture waits for it, checks its exit status and log, and
executes the notebook, whose training cell then reuses the five records.

    python tests/pretrain.py start DIR   # returns at once; DIR/train.log, DIR/runs/, DIR/rc when done
    python tests/pretrain.py stop DIR    # kills it if it still runs (make test's exit path)
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "solutions" / "session3" / "regularization.ipynb"
WORKERS = 5
ENV = "COURSE_PRETRAINED_RUNS"


def start(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "work").mkdir(parents=True)
    notebook = folder / "work" / NOTEBOOK.name
    shutil.copy(NOTEBOOK, notebook)
    env = {**os.environ, "COURSE_RUNS": str(folder / "runs")}
    # its own session (to be killed as a group) is also its own scheduler autogroup where the kernel has them
    # (sched_autogroup_enabled), and groups share the CPU equally whatever their processes' nice: so the
    # group's nice is lowered too, else it would take half the machine from the tests
    script = ('echo 19 > /proc/self/autogroup 2>/dev/null; '
              'nice -n 19 "$0" -m course train "$1" --workers "$2" > "$3/train.log" 2>&1; '
              'echo $? > "$3/rc.tmp" && mv "$3/rc.tmp" "$3/rc"')
    proc = subprocess.Popen(["bash", "-c", script, sys.executable, str(notebook), str(WORKERS), str(folder)],
                            cwd=ROOT, env=env, stdin=subprocess.DEVNULL, start_new_session=True)
    (folder / "pid").write_text(str(proc.pid))
    print(f">> Session 3's five variants train in the background (nice 19) into {folder}/runs "
          f"(log: {folder}/train.log)")


def stop(folder: Path) -> None:
    try:
        os.killpg(int((folder / "pid").read_text()), signal.SIGKILL)
    except (OSError, ValueError):
        pass


def wait(folder: Path, timeout: float = 6 * 3600) -> tuple[int, str]:
    """Block until the background training ends: (exit status, its log). -1 if it died without one."""
    pid = int((folder / "pid").read_text())
    deadline = time.monotonic() + timeout
    while not (folder / "rc").exists() and time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break          # the group is gone: finished (rc appears) or killed (it never will)
        time.sleep(2)
    log = (folder / "train.log").read_text(errors="replace") if (folder / "train.log").exists() else ""
    rc = (folder / "rc").read_text().strip() if (folder / "rc").exists() else ""
    return (int(rc) if rc else -1), log


if __name__ == "__main__":
    command, where = sys.argv[1], Path(sys.argv[2]).resolve()
    {"start": start, "stop": stop}[command](where)
