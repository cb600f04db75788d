"""Threads from the CPUs a process may really use, a short OpenMP spin, and the device line."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from course_utils import threads
from course_utils.config import TrainConfig
from course_utils.engine import fit
from course_utils.loader import mnist_data
from test_engine import Tiny


def test_cgroup_v2_quota_in_cpus(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert threads.cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert threads.cgroup_cpus(tmp_path) is None


def test_cgroup_v1_quota_in_cpus(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert threads.cgroup_cpus(tmp_path) == 0.5
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("-1\n")
    assert threads.cgroup_cpus(tmp_path) is None
    assert threads.cgroup_cpus(tmp_path / "nothing here") is None


def test_usable_cpus_is_the_affinity_capped_by_the_quota(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(threads, "cgroup_cpus", lambda root="/sys/fs/cgroup": None)
    assert threads.usable_cpus() == 4
    monkeypatch.setattr(threads, "cgroup_cpus", lambda root="/sys/fs/cgroup": 1.5)
    assert threads.usable_cpus() == 2          # a quota of 1.5 CPUs: 2 threads, not the machine's 4
    monkeypatch.setattr(threads, "cgroup_cpus", lambda root="/sys/fs/cgroup": 0.2)
    assert threads.usable_cpus() == 1


def test_course_threads_overrides_and_a_bad_value_says_what_is_expected(monkeypatch):
    monkeypatch.setenv(threads.THREADS_ENV, "3")
    assert threads.training_threads() == 3
    monkeypatch.setenv(threads.THREADS_ENV, "many")
    with pytest.raises(ValueError, match="COURSE_THREADS='many': expected a whole number"):
        threads.training_threads()


@pytest.mark.parametrize("given, expected", [({}, "1000"), ({"GOMP_SPINCOUNT": "50"}, "50"),
                                              ({"OMP_WAIT_POLICY": "PASSIVE"}, "None")])
def test_importing_course_utils_sets_a_short_openmp_spin_unless_a_wait_setting_is_given(given, expected):
    code = "import os, course_utils; print(os.environ.get('GOMP_SPINCOUNT'))"
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run([sys.executable, "-c", code], env={**env, **given}, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == expected


def test_fit_trains_with_the_configured_threads_and_records_its_device(mnist_tensors, monkeypatch, capsys):
    xtr, ytr, xte, yte = mnist_tensors
    data = mnist_data(64, tensors=(xtr[:640], ytr[:640], xte[:500], yte[:500]), seed=0)
    before = torch.get_num_threads()
    monkeypatch.setenv(threads.THREADS_ENV, "1")
    try:
        r = fit(Tiny, data, TrainConfig(epochs=1), record=False, progress=False, device="cpu", max_steps=3)
    finally:
        torch.set_num_threads(before)
    assert r.metrics["num_threads"] == 1 and r.metrics["device"] == "cpu"
    out = capsys.readouterr()
    assert "on the CPU, 1 thread" in out.out + out.err
