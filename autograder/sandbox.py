"""Where student code runs: an OS-level sandbox from an existing tool (bubblewrap), or nothing.

``command(argv, ...)`` wraps the worker's command line in ``bwrap`` when it is installed and works
here: no network, new PID/IPC/UTS/user namespaces (the worker runs as ``nobody``), dies with the
grader, a read-only view of Python, the installed packages and the grader's own two packages
(``autograder``, ``course_utils``: not ``instructor``, which holds the reference solutions), a
private writable scratch folder, an empty ``/tmp``, and, in retrain mode only, the MNIST training
files. The test set, the run records, other submissions, the repository and the home folder are
not there at all. Memory and process limits are set in the worker before it reads the notebook
(:func:`limit_resources`); the wall-time limit is the grader's.

:func:`zygote_command` is the same sandbox for :mod:`autograder.zygote`, which forks checkpoint-mode
workers into namespaces of their own inside it.

Where bubblewrap is missing (a student's laptop) grading still runs, as a *self-check*: the worker
is then an ordinary child process. Every grade records which of the two it ran under
(:func:`isolation`), and ``course grade --final`` refuses to run without the sandbox.

Nothing outlives the grader: the worker (or bwrap) gets ``PR_SET_PDEATHSIG`` = SIGKILL, bwrap adds
``--die-with-parent`` for everything inside, and scratch folders live under one root where a
later run removes those whose grader process is gone (:func:`scratch_dir`).
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SANDBOX = "sandbox (bubblewrap)"
NONE = "none (self-check)"
ENV = "COURSE_SANDBOX"  # "off" forces the unisolated self-check (tests of that path)


@functools.lru_cache(maxsize=1)
def _bwrap_problem() -> str | None:
    """None when bwrap runs a trivial command with the options the worker gets; else why not."""
    if os.environ.get(ENV, "").lower() in ("off", "0", "none"):
        return f"turned off by {ENV}={os.environ[ENV]}"
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory() as tmp:
        try:
            proc = subprocess.run(_bwrap(exe, Path(tmp), []) + [sys.executable, "-c", "print('ok')"],
                                  capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"bwrap failed to start: {e}"
    if proc.returncode != 0 or proc.stdout.strip() != "ok":
        return f"bwrap does not work here: {(proc.stderr or proc.stdout).strip()[:200]}"
    return None


def isolation() -> str:
    """The isolation level graders run under on this machine."""
    return NONE if _bwrap_problem() else SANDBOX


def why_not_sandboxed() -> str | None:
    return _bwrap_problem()


def _ro_paths() -> list[Path]:
    paths = [Path(p) for p in ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc/ld.so.cache",
                               "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime", "/etc/passwd", "/etc/group",
                               "/etc/fonts")]
    paths += [Path(sys.base_prefix), Path(sys.prefix)]
    # installed packages outside the prefix (user site, a .pth to another environment's site-packages): the
    # worker imports torch from wherever the grader does; only package folders, never a source checkout
    paths += [Path(p) for p in sys.path if Path(p).name in ("site-packages", "dist-packages")]
    paths += [ROOT / "autograder", ROOT / "course_utils"]
    out = []
    for p in paths:   # each once, and none inside a folder already bound
        if p.exists() and not any(p == q or q in p.parents for q in out):
            out.append(p)
    return out


def _hidden(bound: list[Path]) -> list[Path]:
    """Instructor material inside a bound package folder (a non-editable ``pip install`` of the course
    repository puts ``instructor/``, with the reference solutions, into site-packages): mounted over with
    an empty tmpfs, so the worker never sees it."""
    prefixes = {Path(sys.prefix), Path(sys.base_prefix)}
    pkgs = [p for p in bound if p.name in ("site-packages", "dist-packages")]
    pkgs += [d for p in bound if p in prefixes for d in p.glob("lib/python3*/*-packages")]
    return sorted({d / "instructor" for d in pkgs if (d / "instructor").is_dir()})


def _base(exe: str) -> list[str]:
    """Every sandbox's options: new namespaces, nobody, read-only Python and packages, instructor material hidden."""
    cmd = [exe, "--unshare-all", "--die-with-parent", "--new-session", "--uid", "65534", "--gid", "65534",
           "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"]
    bound = _ro_paths()
    for p in bound:
        cmd += ["--ro-bind", str(p), str(p)]
    for p in _hidden(bound):
        cmd += ["--tmpfs", str(p)]
    return cmd


def _bwrap(exe: str, work: Path, extra_ro: list[Path]) -> list[str]:
    cmd = _base(exe) + ["--bind", str(work), str(work)]
    for p in extra_ro:
        cmd += ["--ro-bind", str(p), str(p)]
    return cmd + ["--chdir", str(work)]


def command(argv: list[str], work: Path, extra_ro: list[Path] = ()) -> tuple[list[str], str]:
    """(command line, isolation level) for running ``argv`` with ``work`` as its only writable folder
    and ``extra_ro`` (the notebook's folder, training files) readable."""
    if _bwrap_problem():
        return argv, NONE
    return _bwrap(shutil.which("bwrap"), work, list(extra_ro)) + argv, SANDBOX


def zygote_command(root: Path) -> list[str] | None:
    """The command line of a zygote (:mod:`autograder.zygote`) for scratch folders in ``root``: the worker's
    sandbox, with ``root`` at ``/z`` and mount points for a worker's own folder; None without the sandbox."""
    if _bwrap_problem():
        return None
    # the root read-only: its folders (mount points, /w) would otherwise be one writable place for all the
    # zygote's workers (each worker makes every other mount read-only too: autograder.zygote)
    return _base(shutil.which("bwrap")) + ["--bind", str(root), "/z", "--dir", "/w/in", "--dir", "/w/out",
                                           "--dir", "/w/.stage", "--remount-ro", "/", "--chdir", "/",
                                           sys.executable, "-m", "autograder.zygote"]


def end_session(proc: subprocess.Popen) -> None:
    """End a process started with ``start_new_session`` and everything in its session (SIGKILL), and reap it."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def die_with_parent() -> None:
    """Called first thing in the worker: it gets SIGKILL when its parent (the grader, or bwrap's init
    inside the sandbox) dies, even by SIGKILL. Not a ``preexec_fn``, which is unsafe in a grader that
    runs threads."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    parent = os.environ.get(PARENT_ENV)
    if parent and os.getppid() != int(parent):   # the grader died before the line above ran
        os._exit(1)


PARENT_ENV = "COURSE_GRADER_PID"   # set for an unsandboxed worker (in the sandbox, PIDs are its own)


def limit_resources(memory_bytes: int | None, processes: int = 1024, file_bytes: int = 2**30) -> None:
    """In the worker, before any student code: address-space, file-size and process (threads included)
    limits."""
    import resource

    if memory_bytes:
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    resource.setrlimit(resource.RLIMIT_FSIZE, (file_bytes, file_bytes))
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NPROC)
        cap = processes if hard == resource.RLIM_INFINITY else min(processes, hard)
        resource.setrlimit(resource.RLIMIT_NPROC, (cap, cap))
    except (ValueError, OSError):
        pass


SCRATCH_ROOT_ENV = "COURSE_SCRATCH"


def scratch_root() -> Path:
    root = Path(os.environ.get(SCRATCH_ROOT_ENV) or Path(tempfile.gettempdir()) / "course-grade")
    root.mkdir(parents=True, exist_ok=True)
    return root


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def reap() -> list[Path]:
    """Remove scratch folders left by graders that no longer run (killed with SIGKILL, power loss)."""
    removed = []
    for d in scratch_root().iterdir():
        pid = d.name.split("-", 1)[0]
        if d.is_dir() and pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def scratch_dir() -> Path:
    """A new private scratch folder (named after this grader's PID, so it can be reaped)."""
    reap()
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=scratch_root()))
