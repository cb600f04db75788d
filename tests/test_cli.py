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
    for cmd in ("data", "train", "info", "check", "submit", "grade"):
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


def test_check_grades_notebooks_and_writes_nothing(tmp_path):
    """`course check` is `course grade` without output files: a table per notebook with the points and the
    written answers the instructor grades; exit 1 when a check fails, 2 for a path that is not there."""
    from submissions import completed, stub, write

    write(completed("session2/3_gap"), tmp_path / "sessions", "3_gap.ipynb")
    write(stub("session2/1_skeleton"), tmp_path / "sessions", "1_skeleton.ipynb")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    r = subprocess.run([sys.executable, "-m", "course", "check", "sessions"], capture_output=True, text=True,
                       cwd=tmp_path, timeout=300)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "session2/3_gap" in r.stdout and " 3/3 " in r.stdout and "session2/1_skeleton" in r.stdout
    assert "is not implemented yet" in r.stdout and "Traceback" not in r.stdout + r.stderr
    assert "+ 1 point(s) for your written answers, graded by your instructor" in r.stdout
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before   # nothing written
    r = course("check", str(tmp_path / "nope.ipynb"))
    assert r.returncode == 2 and "no such notebook" in r.stderr and "Traceback" not in r.stderr


def test_check_all_grades_the_saved_notebook_from_inside_it(tmp_path, monkeypatch, capsys):
    """The notebooks' last cell, `checks.check_all(NAME)`: the saved file graded by the real grader, the
    table printed; a wrong name is one message; under nbgrader it does nothing (nbgrader grades)."""
    from autograder.checks import CheckFailed, check_all
    from submissions import completed, write

    monkeypatch.chdir(write(completed("session2/3_gap"), tmp_path, "3_gap.ipynb").parent)
    assert check_all("3_gap.ipynb") == "3/3 points (everything passes)"
    out = capsys.readouterr().out
    assert "The notebook as saved at" in out and "session2/3_gap" in out and "no_fc" in out
    with pytest.raises(CheckFailed, match="There is no 3_gapp.ipynb in"):
        check_all("3_gapp.ipynb")
    monkeypatch.setenv("NBGRADER_EXECUTION", "autograde")
    assert check_all("3_gap.ipynb").startswith("skipped")


def test_unknown_names_fail_with_one_clear_line():
    r = course("train", "no-such-run")
    assert r.returncode == 1 and "unknown reference run 'no-such-run'" in r.stderr
    assert "Traceback" not in r.stderr
    r = course("info", "nope.module:Net")
    assert r.returncode == 1 and "cannot load 'nope.module:Net'" in r.stderr and "Traceback" not in r.stderr


def test_info_says_in_one_line_when_the_models_module_or_forward_fails(tmp_path):
    """A syntax error in the module, or a forward() that fails on a 28x28 image, used to be a traceback."""
    import os

    (tmp_path / "broken.py").write_text("def oops(:\n")
    (tmp_path / "typo.py").write_text("import torch.nn as nn\n\n\nclass Net(nn.Module):\n"
                                      "    def __init__(self):\n        super().__init__()\n"
                                      "        self.conv = nn.Conv2d(1, 10, 3)\n\n"
                                      "    def forward(self, x):\n        return self.cnov(x)\n")
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    r = course("info", "broken:Net", env=env)
    assert r.returncode == 1 and "importing broken raised SyntaxError" in r.stderr and "Traceback" not in r.stderr
    r = course("info", "typo:Net", env=env)
    assert r.returncode == 1 and "failed on a (1, 1, 28, 28) input: AttributeError" in r.stderr, r.stderr
    assert "cnov" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
@pytest.mark.data
def test_train_one_epoch_writes_a_record(tmp_path, mnist_root):
    r = course("train", "session2", "--epochs", "1", "--runs-dir", str(tmp_path), "--no-progress")
    assert r.returncode == 0, r.stderr
    assert "final test accuracy" in r.stdout and "run record" in r.stdout
    (record,) = list(tmp_path.iterdir())
    assert {p.name for p in record.iterdir()} >= {"config.json", "metrics.json", "model.pt"}


@pytest.mark.slow
@pytest.mark.data
def test_train_a_notebooks_variants_side_by_side_then_reuse_them(tmp_path, mnist_root):
    """`course train NOTEBOOK --workers 2`: the notebook's own VARIANTS (here two, of one epoch), each
    in its own process; a second call finds them recorded and trains nothing."""
    import os

    from course_utils.records import find_records
    from submissions import completed, edit, write

    nb = completed("session3/regularization")
    cell = next(c for c in nb["cells"] if "config" in c["metadata"].get("tags", []))
    src = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
    nb = edit(nb, "config", None, src + "\nVARIANTS = {k: (g, l1, c.replace(epochs=1)) for k, (g, l1, c) in "
                                       "list(VARIANTS.items())[3:5]}\n")
    path = write(nb, tmp_path / "session3", "regularization.ipynb")
    env = {**os.environ, "COURSE_DATA": str(mnist_root)}
    env.pop("COURSE_RUNS", None)
    r = course("train", str(path), "--workers", "2", env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "Training 2 run(s) of regularization.ipynb in 2 process(es)" in r.stdout, r.stdout
    runs = tmp_path / "session3" / "runs"             # next to the notebook, where Jupyter would write them
    assert [len(find_records(n, runs)) for n in ("s3-gbn", "s3-l1-l2-gbn")] == [1, 1], r.stdout
    assert "GBN: final" in r.stdout and "L1+L2+GBN: final" in r.stdout
    again = course("train", str(path), env=env)
    assert again.returncode == 0 and again.stdout.count("reusing the run record") == 2, again.stdout
    assert "Every run is already recorded" in again.stdout
    missing = course("train", str(tmp_path / "nope.ipynb"))
    assert missing.returncode == 2 and "no such notebook" in missing.stderr


@pytest.mark.data
def test_submit_bundles_the_notebook_with_exactly_its_graded_records(tmp_path, mnist_root):
    """`course submit`: the graded record (the notebook's config, seed included) goes in the zip; another
    seed's record, a smoke run and a partial checkpoint stay out; a missing record is named, no zip."""
    import os
    import zipfile

    from instructor.reference.session2 import SESSION2_CONFIG, Session2Net
    from records import fake_record
    from submissions import completed, write

    folder = tmp_path / "session2"
    nb = write(completed("session2/4_bn_dropout"), folder, "4_bn_dropout.ipynb")
    env = {**os.environ, "COURSE_DATA": str(mnist_root)}
    env.pop("COURSE_RUNS", None)
    missing = course("submit", str(nb), env=env)
    assert missing.returncode == 1 and "No run record named 's2-4-bn-dropout'" in missing.stderr, missing.stderr
    assert str(folder / "runs") in missing.stderr and "Traceback" not in missing.stderr
    assert not list(folder.glob("*.zip"))

    runs = folder / "runs"
    fake_record(runs, Session2Net(), SESSION2_CONFIG, [99.5] * 14)
    fake_record(runs, Session2Net(), SESSION2_CONFIG.replace(seed=2), [99.5] * 14)
    fake_record(runs, Session2Net(), SESSION2_CONFIG.replace(name="s2-4-bn-dropout-quick", epochs=1), [90.0])
    graded = next(d for d in runs.iterdir() if d.name.endswith("-s1") and "quick" not in d.name)
    (graded / "last.pt").write_bytes(b"partial")
    r = course("submit", str(nb), env=env)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert f"s2-4-bn-dropout (seed 1): {graded}" in r.stdout and "total" in r.stdout   # the self-check table
    with zipfile.ZipFile(folder / "4_bn_dropout-submission.zip") as z:
        assert sorted(z.namelist()) == ["4_bn_dropout.ipynb"] + [f"runs/{graded.name}/{f}" for f in
                                                                  ("config.json", "metrics.json", "model.pt")]
    into = tmp_path / "hand-in"
    into.mkdir()
    r = course("submit", str(nb), "--out", str(into), env=env)   # a folder: the zip goes into it
    assert r.returncode == 0 and (into / "4_bn_dropout-submission.zip").is_file(), r.stderr[-2000:]
