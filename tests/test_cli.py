"""The command line: each command runs, prints what it does, fails with one clear line."""
from __future__ import annotations

import subprocess
import sys

import pytest


def course(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "course", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_help_lists_commands():
    r = course("--help")
    assert r.returncode == 0
    for cmd in ("data", "train", "info"):
        assert cmd in r.stdout


@pytest.mark.data
def test_data_reports_verified_files(mnist_root):
    r = course("data", "--root", str(mnist_root))
    assert r.returncode == 0, r.stderr
    assert "verified" in r.stdout and str(mnist_root) in r.stdout


def test_info_prints_parameters_and_receptive_field():
    r = course("info", "session2")
    assert r.returncode == 0, r.stderr
    assert "9,904 parameters" in r.stdout and "Fully connected layers: none" in r.stdout
    assert "RF" in r.stdout and "Total params: 9,904" in r.stdout


def test_info_builds_the_net_of_a_notebook_from_its_tagged_cells(tmp_path):
    from submissions import completed, edit, stub, write

    r = course("info", str(write(completed("session2/4_bn_dropout"), tmp_path / "done", "4_bn_dropout.ipynb")))
    assert r.returncode == 0, r.stderr
    assert "9,904 parameters" in r.stdout and "Fully connected layers: none" in r.stdout
    r = course("info", str(write(stub("session2/4_bn_dropout"), tmp_path / "stub", "4_bn_dropout.ipynb")))
    assert r.returncode == 1 and "building" in r.stderr and "NotImplementedError" in r.stderr, r.stderr
    broken = edit(completed("session2/4_bn_dropout"), "net", None, "import nosuchmodule\n")
    r = course("info", str(write(broken, tmp_path / "broken", "4_bn_dropout.ipynb")))
    assert r.returncode == 1 and "raised ModuleNotFoundError" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_unknown_names_fail_with_one_clear_line():
    r = course("train", "no-such-run")
    assert r.returncode == 1 and "unknown reference run 'no-such-run'" in r.stderr
    assert "Traceback" not in r.stderr
    r = course("info", "nope.module:Net")
    assert r.returncode == 1 and "cannot load 'nope.module:Net'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.data
def test_train_one_epoch_writes_a_record(tmp_path, mnist_root):
    r = course("train", "session2", "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "final test accuracy" in r.stdout and "run record" in r.stdout
    (record,) = list(tmp_path.iterdir())
    assert {p.name for p in record.iterdir()} >= {"config.json", "metrics.json", "model.pt"}
