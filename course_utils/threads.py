"""How many threads a training uses, and how they wait.

Two settings keep small-CNN training from collapsing when a machine is shared (two trainings on two
cores, a grader next to a notebook; measurements: RESULTS.md, "Threads"):

* **Threads = the CPUs this process may really use**: its CPU affinity, capped by a cgroup CPU quota
  (containers, CI runners and Slurm jobs often grant fewer CPUs than the machine has; PyTorch's default
  counts the machine's cores). ``COURSE_THREADS=N`` overrides it.
* **A short OpenMP spin** (``GOMP_SPINCOUNT=1000``): an idle OpenMP thread of PyTorch's GNU OpenMP
  runtime (Linux wheels) spins about a microsecond, not ~300,000 iterations, before it sleeps. Spinning
  threads of two processes on the same cores steal each other's time slices (two trainings on two cores
  ran ~6x slower each, not 2x); a short spin costs a single training little, unlike
  ``OMP_WAIT_POLICY=PASSIVE`` (no spin at all), which fixes the pair too. Both were measured side by
  side (``make bench-threads``). The runtime reads it once, when PyTorch loads, so it is set when
  ``course_utils`` is imported and only takes effect if that happens before ``import torch`` (the
  notebooks' first line). A ``GOMP_SPINCOUNT`` or ``OMP_WAIT_POLICY`` already in the environment is kept.
"""
from __future__ import annotations

import math
import os
from pathlib import Path

THREADS_ENV = "COURSE_THREADS"
SPIN = ("GOMP_SPINCOUNT", "1000")


def set_wait_policy() -> None:
    """Put the short spin in the environment (for this process, if torch is not loaded yet, and for every
    child process), unless a wait setting is already there."""
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault(*SPIN)


def cgroup_cpus(root: str | os.PathLike = "/sys/fs/cgroup") -> float | None:
    """The CPU quota of this process's cgroup in CPUs (``1.5`` = 150 ms per 100 ms), or None if unlimited
    or unknown. Reads cgroup v2 ``cpu.max`` or cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``."""
    root = Path(root)
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return None if quota <= 0 or period <= 0 else quota / period
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """CPUs this process may run on: its affinity mask, capped by the cgroup quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        n = os.cpu_count() or 1
    quota = cgroup_cpus()
    if quota is not None:
        n = min(n, math.ceil(quota))
    return max(1, n)


def training_threads() -> int:
    """The thread count training uses: ``$COURSE_THREADS`` if set, else :func:`usable_cpus`."""
    value = os.environ.get(THREADS_ENV, "").strip()
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{THREADS_ENV}={value!r}: expected a whole number of threads") from None
    return usable_cpus()


def configure() -> int:
    """Give PyTorch :func:`training_threads` intra-op threads; returns the number."""
    import torch

    n = training_threads()
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n
