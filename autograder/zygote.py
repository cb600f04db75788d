"""Warm workers: a sandboxed process that has imported torch forks a fresh, separately sandboxed worker
for each request, so a worker starts in milliseconds instead of seconds of imports.

Grader side, :class:`Zygote`: ``Zygote.start(root, env)`` starts

    bwrap <the worker's sandbox options> --bind ROOT /z --dir /w/in --dir /w/out --dir /w/.stage \\
        --remount-ro / python -m autograder.zygote FD ROOT SELFTEST

(:func:`autograder.sandbox.zygote_command`), where ``ROOT`` is the folder that holds every grade's
scratch folder. The zygote imports what a worker imports (torch, ``torch.export``, the grader's worker
code, never student code), checks that it can build a child's sandbox, says "ready" on the socket ``FD``
and then only ever forks. Each request (:meth:`Zygote.spawn`) names one scratch folder and carries the
worker's log file and a socket of its own; for it the zygote forks

* C1, which enters new user, mount, PID, network, IPC and UTS namespaces; sees its own scratch folder
  only (``in/`` read-only at ``/w/in``, ``out/`` writable at ``/w/out``; every other grade's folder is
  under an empty read-only tmpfs over ``/z``), a fresh ``/tmp``, ``/dev/shm`` and ``/dev/pts``, an
  empty ``/proc``, and every other mount read-only (bwrap's root, its ``/dev``, any tmpfs it added: they
  are the same for all workers); and waits;
* C2, PID 1 of the new PID namespace: starts the worker and reaps; when it ends, the kernel ends
  everything in the namespace, so nothing a submission starts outlives its worker;
* C3, the worker: no capabilities, ``no_new_privs``, its own session and session keyring, the
  request's environment and the log as stdout/stderr; then :func:`autograder.worker.main` exactly as ``python -m
  autograder.worker`` runs it (``__main__`` is the worker module).

C1 reports C3's exit status (negative: killed by that signal, as ``subprocess`` does) on the request's
socket, and kills the whole namespace when the grader closes that socket or sends ``kill``. What a
worker can write (its ``/w/out``, its ``/tmp``, ``/dev/shm``, ``/dev/pts``) ends with it, so between
submissions nothing is shared but the zygote's memory image, which never ran student code; two
submissions graded at once cannot see each other's files, processes or sockets. The zygote's self-test
checks this on a worker of its own (:func:`self_test_worker`) before it serves any, and
``tests/test_integrity.py`` attacks it.

Where any step is not possible (an old kernel, user namespaces disabled or restricted, bubblewrap
missing), :meth:`Zygote.start` returns None with the reason and the grader starts each worker as its own
``bwrap`` process, as before: slower, equally isolated. ``COURSE_ZYGOTE=off`` does that on purpose.
Retrain mode always does (its workers train for minutes and read the training files, which the
zygote's sandbox does not hold).
"""
from __future__ import annotations

import ctypes
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from . import sandbox

Z, W = "/z", "/w"    # where the zygote sees the scratch root, and where a worker sees its own scratch folder
PROBE = "/tmp/.zygote-probe"   # written in the zygote's /tmp: a worker must not see it
WRITABLE = ("/tmp", "/dev/shm", "/dev/pts", f"{W}/out")   # a worker's own; every other mount is read-only
STAGE = "/w/.stage"  # where a worker's namespace keeps the zygote's /tmp while it builds its own (then covered)

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
PR_SET_PDEATHSIG, PR_SET_NO_NEW_PRIVS = 1, 38
SYS_CAPSET = {"x86_64": 126, "aarch64": 91}
MAX_MSG = 1 << 16
ENV = "COURSE_ZYGOTE"   # "off": every worker is a process (and sandbox) of its own, as without a zygote


# ---------------------------------------------------------------------------------------------- in the sandbox
def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str | None = None) -> None:
    def enc(s):
        return s.encode() if s is not None else None

    _check(_libc().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)), f"mount {target}")


def _drop_capabilities() -> None:
    """No capabilities left in any set, and none to gain back through exec (``no_new_privs``). First thing in
    the worker, before anything could be imported from a path it controls."""
    nr = SYS_CAPSET.get(os.uname().machine)
    if nr is None:
        raise OSError(f"capset: unknown architecture {os.uname().machine}")
    header = (ctypes.c_uint32 * 2)(0x20080522, 0)     # _LINUX_CAPABILITY_VERSION_3, this process
    data = (ctypes.c_uint32 * 6)()                      # effective, permitted, inheritable: all zero
    _check(_libc().syscall(nr, header, data), "capset")
    _check(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(no_new_privs)")


def _enter_namespaces(name: str) -> list[str]:
    """C1: new namespaces; only scratch folder ``name`` visible (at /w), a fresh /tmp and /dev/shm."""
    if not name or "/" in name or name in (".", ".."):
        raise OSError(f"bad scratch folder name {name!r}")
    uid, gid = os.geteuid(), os.getegid()
    _check(_libc().unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS),
           "unshare")
    Path("/proc/self/setgroups").write_text("deny")
    Path("/proc/self/uid_map").write_text(f"{uid} {uid} 1")
    Path("/proc/self/gid_map").write_text(f"{gid} {gid} 1")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount(f"{Z}/{name}/in", f"{W}/in", None, MS_BIND)
    _read_only(f"{W}/in")
    _mount(f"{Z}/{name}/out", f"{W}/out", None, MS_BIND)
    _mount("tmpfs", Z, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")
    _fresh_tmp()
    if Path("/dev/shm").is_dir():
        _mount("tmpfs", "/dev/shm", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    if Path("/dev/pts").is_dir():   # bwrap's devpts is one for all the zygote's workers
        _mount("devpts", "/dev/pts", "devpts", MS_NOSUID | MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620,max=64")
    # Everything else read-only: bwrap's root (already, zygote_command), its /dev, the tmpfs it puts over an
    # installed instructor/ package, any other mount: all of them are one and the same for every worker.
    for point in _mount_points():
        if point in WRITABLE or any(point.startswith(covered + "/") for covered in (Z, STAGE)):
            continue
        try:
            writable = not os.statvfs(point).f_flag & MS_RDONLY
        except FileNotFoundError:   # under a cover (the staged copy of a folder under the old /tmp): out of reach
            continue
        if writable:
            _read_only(point)
    points = _mount_points()
    # The zygote's /proc lists its other workers. A fresh procfs cannot be mounted in a nested namespace under
    # bubblewrap's (the kernel refuses, since bwrap covers parts of its own /proc), so a warm worker has none.
    _mount("tmpfs", "/proc", "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,mode=0555")
    return points


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace, once each, from /proc/self/mountinfo (except /proc's own)."""
    def unescape(field: str) -> str:     # mountinfo writes space, tab, newline and backslash as \ooo
        return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)

    points = [unescape(line.split()[4]) for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    return [p for p in dict.fromkeys(points) if p != "/proc" and not p.startswith("/proc/")]


def _mount_points_under(top: str) -> list[str]:
    """Mount points strictly inside ``top`` whose parent mount is ``top`` itself."""
    inside = [p for p in _mount_points() if p.startswith(top + "/")]
    return [p for p in inside if not any(q != p and p.startswith(q + "/") for q in inside)]


def _read_only(path: str) -> None:
    """Remount the mount at ``path`` read-only, keeping its other flags (a locked flag may not be dropped)."""
    flags = os.statvfs(path).f_flag & (MS_NOSUID | MS_NODEV | MS_NOEXEC)   # ST_* bits equal MS_* bits here
    _mount(None, path, None, MS_REMOUNT | MS_BIND | MS_RDONLY | flags)


def _fresh_tmp() -> None:
    """An empty /tmp of the worker's own. What bubblewrap bound inside the zygote's /tmp (the virtual environment
    and the grader's packages, when they live under /tmp, as in a CI clone) is bound again, read-only as before,
    from a copy of the old /tmp tree that is then covered."""
    subs = _mount_points_under("/tmp")
    _mount("/tmp", STAGE, None, MS_BIND | MS_REC)
    _mount("tmpfs", "/tmp", "tmpfs", MS_NOSUID | MS_NODEV, "mode=1777")
    for point in subs:
        source = STAGE + point[len("/tmp"):]
        if Path(source).is_dir():
            os.makedirs(point, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(point), exist_ok=True)
            Path(point).touch()
        _mount(source, point, None, MS_BIND | MS_REC)
    _mount("tmpfs", STAGE, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV, "size=4k,mode=0555")


def _max_fds() -> int:
    try:
        return max(1024, min(os.sysconf("SC_OPEN_MAX"), 1 << 20))
    except (ValueError, OSError):
        return 1 << 16


SETUP_FAILED = 197   # C3's exit status when its own set-up failed (before any student code): the grader's fault
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219}


def _leave_session_keyring() -> None:
    """A new, empty session keyring: the one inherited from the grader is shared with everything it started."""
    nr = SYS_KEYCTL.get(os.uname().machine)
    if nr is not None:
        _libc().syscall(nr, 1, None)     # KEYCTL_JOIN_SESSION_KEYRING, anonymous; best effort


def _exit_status(status: int) -> int:
    """A ``waitpid`` status as ``subprocess`` reports it: the exit code, or minus the signal."""
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _worker(request: dict, log_fd: int) -> None:
    """C3: the worker itself; never returns."""
    code = SETUP_FAILED
    try:
        _drop_capabilities()
        signal.signal(signal.SIGINT, signal.default_int_handler)   # as in any Python process (C2 reset them)
        signal.signal(signal.SIGPIPE, signal.SIG_IGN)
        _leave_session_keyring()
        os.setsid()
        null = os.open("/dev/null", os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(log_fd, 1)
        os.dup2(log_fd, 2)
        os.closerange(3, _max_fds())   # nothing of the zygote's (its socket, other requests' files) stays open
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        code = 1
        if request["argv"] == ["--self-test"]:
            code = self_test_worker(request)
        else:
            from . import worker

            sys.modules["__main__"] = worker    # as under `python -m autograder.worker`
            sys.argv = ["autograder.worker", *request["argv"]]
            code = worker.main(request["argv"])
    except BaseException:  # noqa: BLE001 - the worker's own failures end up in its log, as a process's would
        import traceback

        traceback.print_exc()
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code if isinstance(code, int) else 1)


def _init(request: dict, log_fd: int, status_w: int) -> None:
    """C2: PID 1 of the worker's PID namespace (which ignores signals sent from inside it): starts the worker,
    reaps what it leaves, reports its status."""
    code = 1
    try:
        _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE):
            signal.signal(sig, signal.SIG_DFL)   # as PID 1 of its namespace, ignored when sent from inside it
        pid = os.fork()
        if pid == 0:
            os.close(status_w)
            _worker(request, log_fd)
        os.close(log_fd)
        while True:    # PID 1 reaps every orphan; it ends when the worker does
            done, status = os.waitpid(-1, 0)
            if done == pid:
                os.write(status_w, str(_exit_status(status)).encode())
                code = 0
                break
    except BaseException as e:  # noqa: BLE001
        os.write(2, f"zygote: {e}\n".encode())
    finally:
        os._exit(code)


def _child(request: dict, log_fd: int, reply: socket.socket) -> None:
    """C1: namespaces, then C2; waits for it or for the grader's kill; never returns."""
    code = 1
    try:
        request["mounts"] = _enter_namespaces(request["scratch"])
        status_r, status_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            reply.close()
            os.close(status_r)
            _init(request, log_fd, status_w)
        os.close(status_w)
        os.close(log_fd)
        reply.sendall(json.dumps({"started": True}).encode())
        pidfd = os.pidfd_open(pid)
        while True:
            ready, _, _ = select.select([reply, pidfd], [], [])
            if reply in ready:       # "kill", or the grader closed its end (it ended, or gave up on the worker)
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                reply.sendall(json.dumps({"status": -signal.SIGKILL}).encode())
                break
            _, status = os.waitpid(pid, 0)
            got = os.read(status_r, 64).decode().strip()
            if got.lstrip("-").isdigit():
                reply.sendall(json.dumps({"status": int(got)}).encode())
            else:   # C2 ended without the worker's status: not the submission's doing (it cannot signal C2)
                reply.sendall(json.dumps({"error": f"the worker's init ended ({_exit_status(status)})"}).encode())
            break
        code = 0
    except BaseException as e:  # noqa: BLE001 - reported to the grader, which falls back or fails the item
        try:
            reply.sendall(json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
        except OSError:
            pass
    finally:
        os._exit(code)


def _preload() -> None:
    """What every worker imports, imported once here (trusted code only)."""
    import torch  # noqa: F401
    import torch.export  # noqa: F401
    import torch.nn.functional  # noqa: F401

    from . import export, probes, submission, worker  # noqa: F401
    from course_utils import config, engine, loader  # noqa: F401

    for name in ("torchvision", "torchinfo", "matplotlib.pyplot"):   # what the released notebooks' setup cells import
        try:
            __import__(name)
        except ImportError:
            pass


def _self_test(name: str) -> str | None:
    """Build one child's sandbox end to end, on the empty scratch folder ``name`` the grader made for it (and
    removes); None when it works."""
    scratch = Path(Z) / name
    try:
        Path(PROBE).write_text("the zygote's /tmp")
    except OSError as e:
        return f"cannot write /tmp: {e}"
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    log_r, log_w = os.pipe()
    request = {"scratch": scratch.name, "env": {"PATH": os.environ.get("PATH", "")}, "cwd": f"{W}/out",
               "argv": ["--self-test"], "zygote_pts": os.stat("/dev/pts").st_dev}
    pid = os.fork()
    if pid == 0:
        a.close()
        os.close(log_r)
        _child(request, log_w, b)
    b.close()
    os.close(log_w)
    try:
        a.settimeout(30)
        replies = []
        while not any("status" in r or "error" in r for r in replies):
            msg = a.recv(MAX_MSG)
            if not msg:
                break
            replies.append(json.loads(msg))
        log = b""
        while chunk := os.read(log_r, 4096):
            log += chunk
    except OSError as e:
        return f"self-test: {e}"
    finally:
        a.close()
        os.close(log_r)
        os.waitpid(pid, 0)
    last = replies[-1] if replies else {}
    if "error" in last:
        return last["error"]
    if last.get("status") != 0:
        return f"self-test worker ended with {last.get('status')}: {log.decode(errors='replace').strip()[-300:]}"
    return None


def self_test_worker(request: dict) -> int:
    """What the self-test's worker checks from inside: what a worker sees, what it can write, what it can do."""
    problems = []
    if os.listdir(Z) or os.listdir("/proc"):
        problems.append(f"{Z} or /proc shows {os.listdir(Z) + os.listdir('/proc')}")
    try:
        _mount("tmpfs", f"{W}/out", "tmpfs", 0)
        problems.append("the worker can still mount (capabilities left)")
    except OSError:
        pass
    if not (Path(__file__).is_file() and Path(sys.prefix).is_dir()):
        problems.append(f"the grader's files are not there ({__file__}, {sys.prefix})")
    if os.stat("/dev/pts").st_dev == request["zygote_pts"]:
        problems.append("/dev/pts is the zygote's")
    for shared in {"/", W, "/dev", str(Path(__file__).parent), *request["mounts"]} - set(WRITABLE) - {"/proc"}:
        if not Path(shared).is_dir():
            continue
        try:
            Path(shared, ".zygote-probe").write_text("x")
            problems.append(f"{shared} is writable (and the zygote's other workers would see it)")
        except OSError:
            pass
    if Path(PROBE).exists():
        problems.append("/tmp is the zygote's, not a fresh one")
    Path("/tmp/x").write_text("x")       # and writable
    if os.getpid() != 2:
        problems.append(f"the worker is PID {os.getpid()} (not in a PID namespace of its own)")
    try:
        Path(f"{W}/in/x").write_text("x")
        problems.append(f"{W}/in is writable")
    except OSError:
        pass
    Path(f"{W}/out/ok").write_text("ok")
    if {name for _, name in socket.if_nameindex()} - {"lo"}:
        problems.append(f"network interfaces: {socket.if_nameindex()}")
    open_fds = []
    for fd in range(3, min(_max_fds(), 1 << 16)):
        try:
            os.fstat(fd)
            open_fds.append(fd)
        except OSError:
            pass
    if open_fds:
        problems.append(f"open file descriptors beyond stdin/out/err: {open_fds}")
    for p in problems:
        print(p)
    return 1 if problems else 0


def serve(fd: int, selftest: str) -> int:
    """The zygote's loop: one fork per request, until the grader closes the socket."""
    control = socket.socket(fileno=fd)
    try:
        _preload()
        why = _self_test(selftest)
    except BaseException as e:  # noqa: BLE001
        why = f"{type(e).__name__}: {e}"
    control.sendall(json.dumps({"ready": why is None, "why": why}).encode())
    if why is not None:
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)   # children are reaped by the kernel
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(control, MAX_MSG, 2)
        except OSError:
            return 0
        if not msg:
            return 0
        try:
            request = json.loads(msg)
            log_fd, reply_fd = fds
            pid = os.fork()
        except (ValueError, OSError) as e:   # one bad request (or no process left) fails that request only
            for f in fds:
                try:
                    if f == fds[-1]:
                        os.write(f, json.dumps({"error": f"{type(e).__name__}: {e}"}).encode())
                except OSError:
                    pass
                os.close(f)
            continue
        if pid == 0:
            control.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            _child(request, log_fd, socket.socket(fileno=reply_fd))
        os.close(log_fd)
        os.close(reply_fd)


# -------------------------------------------------------------------------------------------------- grader side
class Gone(OSError):
    """The zygote could not give a worker its sandbox or its status (it died, timed out forking, or a step of
    the worker's set-up failed): the grader's trouble, never the student's. The grader produces that
    worker's items again in a worker of its own, and stops using the zygote."""


class WarmWorker:
    """A worker forked by the zygote, with what the grader uses of a ``subprocess.Popen``: ``wait``, ``kill``."""

    def __init__(self, sock: socket.socket, argv: list[str]):
        self.sock, self.args, self.returncode = sock, argv, None

    def _read(self, timeout: float | None) -> None:
        if self.returncode is not None:
            return
        self.sock.settimeout(timeout)
        try:
            while self.returncode is None:
                msg = self.sock.recv(MAX_MSG)
                if not msg:       # C1 ended without a word: only the zygote's end takes it down
                    raise Gone("the zygote died while the worker ran")
                reply = json.loads(msg)
                if "status" in reply:
                    self.returncode = int(reply["status"])
                elif "error" in reply:   # C1 or C2 failed after the fork: the grader's trouble, not the student's
                    raise Gone(f"the zygote's worker failed: {reply['error']}")
            if self.returncode == SETUP_FAILED:
                raise Gone("the worker's own sandbox could not be set up")
        except socket.timeout:
            raise subprocess.TimeoutExpired(self.args, timeout) from None
        except (OSError, ValueError) as e:
            self.returncode = -signal.SIGKILL
            self.sock.close()
            raise e if isinstance(e, Gone) else Gone(f"lost the zygote's worker: {e}") from None
        if self.returncode is not None:
            self.sock.close()

    def wait(self, timeout: float | None = None) -> int:
        self._read(timeout)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            try:
                self.sock.sendall(b"kill")
            except OSError:
                pass

    def end(self) -> None:
        """Kill it (its whole PID namespace) and wait for C1 to say so."""
        self.kill()
        try:
            self.wait()
        except Gone:    # the zygote took it down with it: nothing left to end
            pass


class Zygote:
    """The grader's handle on one zygote (see the module docstring)."""

    def __init__(self, proc: subprocess.Popen, control: socket.socket, root: Path, key, errors):
        self.proc, self.control, self.root, self.key, self.errors = proc, control, root, key, errors
        self.lock = threading.Lock()
        self.closed = threading.Event()

    def stderr_tail(self) -> str:
        """The last line the zygote wrote to its stderr (why it died, if it did)."""
        try:
            self.errors.seek(0)
            lines = self.errors.read().decode(errors="replace").strip().splitlines()
        except (OSError, ValueError):
            return ""
        return lines[-1][:300] if lines else ""

    @classmethod
    def start(cls, root: Path, env: dict, key=None, timeout: float = 120) -> tuple[Zygote | None, str | None]:
        argv = sandbox.zygote_command(root)
        if argv is None:
            return None, "no sandbox"
        # the self-test's scratch folder, named like any grade's (so a later grader reaps it if this one is killed)
        selftest = Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-zygote-", dir=root))
        try:
            (selftest / "in").mkdir()
            (selftest / "out").mkdir()
            return cls._start(argv, root, env, key, selftest.name, timeout)
        finally:
            shutil.rmtree(selftest, ignore_errors=True)

    @classmethod
    def _start(cls, argv, root: Path, env: dict, key, selftest: str, timeout: float):
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        errors = tempfile.TemporaryFile()   # the zygote's own stderr (its workers write to their logs)
        try:
            proc = subprocess.Popen(argv + [str(theirs.fileno()), str(root), selftest], env=env, stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=errors, pass_fds=[theirs.fileno()],
                                    start_new_session=True)
        except OSError as e:
            ours.close()
            errors.close()
            return None, f"the zygote did not start: {e}"
        finally:
            theirs.close()
        ours.settimeout(timeout)
        try:
            msg = ours.recv(MAX_MSG)
            reply = json.loads(msg) if msg else {"ready": False, "why": "the zygote exited"}
        except (OSError, ValueError) as e:
            reply = {"ready": False, "why": f"no answer from the zygote: {e}"}
        if not reply.get("ready"):
            sandbox.end_session(proc)
            ours.close()
            errors.seek(0)
            err = errors.read().decode(errors="replace").strip().splitlines()
            errors.close()
            return None, str(reply.get("why")) + (f" ({err[-1][:300]})" if err else "")
        ours.settimeout(None)
        return cls(proc, ours, root, key, errors), None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def spawn(self, scratch: Path, argv: list[str], env: dict, cwd: str, log) -> WarmWorker:
        """Fork a worker on ``scratch`` (a folder directly in this zygote's root); ``log`` gets its output."""
        if scratch.parent != self.root:
            raise ValueError(f"{scratch} is not in {self.root}")
        try:
            ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        except OSError as e:
            raise Gone(f"no socket for the zygote: {e}") from None
        request = {"scratch": scratch.name, "argv": argv, "env": env, "cwd": cwd}
        try:
            with self.lock:
                socket.send_fds(self.control, [json.dumps(request).encode()], [log.fileno(), theirs.fileno()])
        except OSError as e:
            ours.close()
            raise Gone(f"the zygote is gone: {e}") from None
        finally:
            theirs.close()
        ours.settimeout(60)
        try:
            msg = ours.recv(MAX_MSG)
        except OSError as e:
            ours.close()
            raise Gone(f"the zygote did not fork a worker: {e}") from None
        reply = json.loads(msg) if msg else {"error": f"the zygote closed the request ({self.stderr_tail()})"}
        if not reply.get("started"):
            ours.close()
            raise Gone(f"the zygote could not start a worker: {reply.get('error')}")
        ours.settimeout(None)
        return WarmWorker(ours, argv)

    def close(self) -> None:
        try:
            self.control.close()
        finally:
            sandbox.end_session(self.proc)
            self.errors.close()
            self.closed.set()


_ZYGOTES: dict = {}          # key (root, environment) -> its zygote
_RETIRED: list = []          # zygotes no longer used (died, or failed to fork): closed by shutdown()
_FAILED: dict = {}           # key -> why its zygote could not start, died or failed to fork: not tried again here
_LAST: str | None = None
_LOCK = threading.Lock()


def get(root: Path, env: dict) -> Zygote | None:
    """This process's zygote for scratch folders in ``root`` and workers with environment ``env`` (started
    on first use). None, and a process per worker, where it cannot work, or once it died (:func:`why_not`)."""
    global _LAST
    key = (str(root), tuple(sorted(env.items())))
    if os.environ.get(ENV, "").lower() in ("off", "0", "no"):
        _LAST = f"turned off by {ENV}={os.environ[ENV]}"
        return None
    with _LOCK:
        zygote = _ZYGOTES.get(key)
        if zygote is not None and not zygote.alive():
            del _ZYGOTES[key]
            zygote.close()
            _FAILED[key] = f"the zygote ended (exit status {zygote.proc.returncode}) {zygote.stderr_tail()}".strip()
            zygote = None
        if zygote is None and key not in _FAILED:
            zygote, why = _start_in_keeper_thread(root, env, key)
            if zygote is None:
                _FAILED[key] = why
            else:
                _ZYGOTES[key] = zygote
        _LAST = None if zygote is not None else _FAILED.get(key)
        return zygote


def _start_in_keeper_thread(root: Path, env: dict, key) -> tuple[Zygote | None, str | None]:
    """Start a zygote from a thread that lives as long as the zygote: bwrap's --die-with-parent (like
    PR_SET_PDEATHSIG) ends the sandbox when the *thread* that started it ends, and a grade may run in a
    pool thread that ends before the next grade."""
    got: list = [None, "the zygote's start raised"]
    started = threading.Event()

    def keeper():
        try:
            got[:] = Zygote.start(root, env, key)
        except BaseException as e:  # noqa: BLE001 - a grader without a zygote still grades
            got[:] = [None, f"the zygote did not start: {type(e).__name__}: {e}"]
        finally:
            started.set()
        if got[0] is not None:
            got[0].closed.wait()    # until close(); a daemon thread, so it never holds the process up

    try:
        threading.Thread(target=keeper, name="zygote-keeper", daemon=True).start()
    except RuntimeError as e:   # no thread left to start
        return None, f"the zygote did not start: {e}"
    started.wait()
    return got[0], got[1]


def forget(zygote: Zygote, why: str) -> None:
    """Stop using ``zygote`` (it failed to fork a worker) and start no other for its root and environment.
    It is not ended here: workers of other grades may still be running in it (it ends with this process)."""
    global _LAST
    with _LOCK:
        _FAILED[zygote.key] = _LAST = why
        if _ZYGOTES.get(zygote.key) is zygote:
            del _ZYGOTES[zygote.key]
        _RETIRED.append(zygote)


def why_not() -> str | None:
    """Why the last :func:`get` gave no zygote (None when it gave one, or none was asked for)."""
    return _LAST


def shutdown() -> None:
    """End every zygote of this process (and the workers running in them)."""
    with _LOCK:
        for zygote in [*_ZYGOTES.values(), *_RETIRED]:
            zygote.close()
        _ZYGOTES.clear()
        _RETIRED.clear()


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    _libc().prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    return serve(int(argv[0]), argv[2])   # FD ROOT SELFTEST (ROOT: the grader's name for /z, for ps)


if __name__ == "__main__":
    sys.exit(main())
