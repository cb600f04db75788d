"""The grader (`course grade`, `pytest autograder`): reference solutions pass, stubs and broken
submissions fail each check with the message that says what to change.

Every case is a real notebook file graded by the real grader (worker process, tagged cells).
"""
from __future__ import annotations

import json
from pathlib import Path
import subprocess
import sys

import pytest
import torch

from autograder.assignments import ASSIGNMENTS
from autograder.checks import CheckFailed, submitted_record
from autograder.grade import grade
from instructor.reference.session2 import SESSION2_CONFIG, Session2Net
from course_utils.config import TrainConfig
from records import fake_record
from submissions import ROOT, completed, copy_records, edit, net, stub, write

pytestmark = pytest.mark.data

S2 = "session2/4_bn_dropout"
S3 = "session3/regularization"


def verdicts(report) -> dict:
    return {c.id: (c.passed, c.message) for c in report.checks}


def assert_only_fails(report, failing: dict):
    """``failing`` maps check id -> a phrase its message must contain; every other check passes."""
    got = verdicts(report)
    for cid, (passed, msg) in got.items():
        if cid in failing:
            assert not passed, f"{cid} passed but should fail"
            assert failing[cid].lower() in msg.lower(), f"{cid}: {msg!r} lacks {failing[cid]!r}"
        else:
            assert passed, f"{cid} failed: {msg}"


# --------------------------------------------------------------------------- no training needed

def test_the_record_graded_is_the_one_trained_with_the_notebooks_config(tmp_path):
    """Other seeds' runs, newer and failing, sit in the same runs/ folder: the notebook's own run is graded;
    with none trained on the notebook's config, the message names the closest record and what differs."""
    runs = tmp_path / "runs"
    fake_record(runs, Session2Net(), SESSION2_CONFIG, [99.5] * 14)
    fake_record(runs, Session2Net(), SESSION2_CONFIG.replace(seed=2), [99.0] * 14)
    fake_record(runs, Session2Net(), SESSION2_CONFIG.replace(seed=3, lr=0.05), [99.0] * 14)
    assert submitted_record(SESSION2_CONFIG, [runs]).config == SESSION2_CONFIG
    assert submitted_record(SESSION2_CONFIG.replace(seed=2), [runs]).history[-1]["test_accuracy"] == 99.0
    with pytest.raises(CheckFailed, match=r"-s1\) differs in: epochs \(record 14, notebook 10\)\. Re-run"):
        submitted_record(SESSION2_CONFIG.replace(epochs=10), [runs])
    with pytest.raises(CheckFailed, match="No run record named 's2-4-bn-dropout' in"):
        submitted_record(SESSION2_CONFIG, [tmp_path / "elsewhere"])


@pytest.mark.parametrize("name", ["1_skeleton", "2_lighter", "3_gap"])
def test_completed_session2_iterations_get_full_marks(name, tmp_path):
    report = grade(write(completed(f"session2/{name}"), tmp_path, f"{name}.ipynb"))
    assert report.passed and report.score == report.max_score == 3, report.table()


@pytest.mark.parametrize("assignment", ["session2/1_skeleton", S2, S3])
def test_stub_notebooks_fail_every_check_naming_the_stub(assignment, tmp_path):
    report = grade(ROOT / "sessions" / f"{assignment}.ipynb", runs_dirs=[tmp_path])
    assert report.score == 0 and not report.passed
    for c in report.checks:
        if c.id in ("epochs", "accuracy"):
            assert "No run record" in c.message, c.message
        else:
            assert "is not implemented yet" in c.message and "`" in c.message, (c.id, c.message)


def test_session3_exercises_pass_before_training(tmp_path):
    report = grade(write(completed(S3), tmp_path, "regularization.ipynb"), runs_dirs=[tmp_path])
    assert_only_fails(report, {"epochs": "No run record named 's3-l1-bn'", "accuracy": "No run record"})


BROKEN_MODELS = {
    # name: (edit of the definitions cell "net", check -> phrase in its message)
    "over_10k_parameters": (("nn.MaxPool2d(2),",
                             "nn.MaxPool2d(2), nn.Conv2d(16, 16, 3, padding=1, bias=False), "
                             "nn.Conv2d(16, 16, 3, padding=1, bias=False),"),
                            {"parameters": "parameters: the limit is fewer than 10,000. Largest layers"}),
    "linear_head": (("nn.Conv2d(16, 10, 1, bias=False),", "nn.Flatten(), nn.Linear(16, 10, bias=False),"),
                    {"no_fc": "forward() computes a dense (fully connected) product: aten.linear"}),
    "functional_linear_head": (("return F.log_softmax(self.features(x).flatten(1), dim=1)",
                                "h = self.features[:-1](x).flatten(1)\n"
                                "        return F.log_softmax(F.linear(h, self.features[-1].weight.flatten(1)), dim=1)"),
                               {"no_fc": "forward() computes a dense (fully connected) product: aten.linear"}),
}


@pytest.mark.parametrize("case", sorted(BROKEN_MODELS))
def test_broken_session2_models_are_caught(case, tmp_path):
    (old, new), failing = BROKEN_MODELS[case]
    nb = edit(completed(S2), "net", old, new)
    report = grade(write(nb, tmp_path, "4_bn_dropout.ipynb"), runs_dirs=[tmp_path])
    failing = {**failing, "epochs": "No run record", "accuracy": "No run record"}
    assert_only_fails(report, failing)


def test_fifteen_epochs_in_session2_fail_the_epoch_check(tmp_path):
    nb = edit(completed(S2), "config", 'epochs=14', 'epochs=15')
    report = grade(write(nb, tmp_path, "4_bn_dropout.ipynb"), runs_dirs=[tmp_path])
    passed, msg = verdicts(report)["epochs"]
    assert not passed and "declares 15 epochs; session2 allows fewer than 15" in msg, msg


def test_ghost_batch_norm_that_ignores_virtual_batches_is_caught(tmp_path):
    solution = completed(S3)
    plain = "\n".join(["class GhostBatchNorm(nn.BatchNorm2d):",
                       "    def __init__(self, num_features, num_splits=4, **kwargs):",
                       "        super().__init__(num_features, **kwargs)",
                       "        self.num_splits = num_splits"])
    report = grade(write(edit(solution, "ghost_batch_norm", None, plain), tmp_path, "regularization.ipynb"),
                   runs_dirs=[tmp_path])
    passed, msg = verdicts(report)["ghost_batch_norm"]
    assert not passed and "matches ordinary BatchNorm over the whole batch: split the batch" in msg, msg
    assert verdicts(report)["l1_penalty"][0]
    passed, msg = verdicts(report)["net"]  # the judge sees Net(ghost=4)'s batch norms use the whole batch
    assert not passed and "Net(ghost=4): it must normalise virtual batches of 32 images" in msg, msg


@pytest.mark.parametrize("body, phrase", [
    ("return sum(p.abs().sum() for n, p in model.named_parameters() if 'bn' in n or p.dim() == 1)",
     "the sum of |w| over conv weights is"),
    ("return next(m for m in model.modules() if isinstance(m, nn.Conv2d)).weight.abs().sum()",
     "the sum of |w| over conv weights is"),
])
def test_l1_penalty_that_skips_conv_weights_is_caught(body, phrase, tmp_path):
    src = f"def l1_penalty(model):\n    {body}\n"
    report = grade(write(edit(completed(S3), "l1_penalty", None, src), tmp_path, "regularization.ipynb"),
                   runs_dirs=[tmp_path])
    passed, msg = verdicts(report)["l1_penalty"]
    assert not passed and phrase in msg, msg


def test_variant_that_does_not_use_its_regulariser_is_caught(tmp_path):
    nb = edit(completed(S3), "config", 'BASE.replace(name="s3-l2-bn", weight_decay=WEIGHT_DECAY)',
              'BASE.replace(name="s3-l2-bn")')
    report = grade(write(nb, tmp_path, "regularization.ipynb"), runs_dirs=[tmp_path])
    passed, msg = verdicts(report)["accuracy"]
    assert not passed and "VARIANTS['L2+BN'] needs weight_decay > 0" in msg, msg


def test_bad_notebook_file_gives_a_clear_message(tmp_path):
    bad = tmp_path / "4_bn_dropout.ipynb"
    bad.write_text('{"cells": [')
    report = grade(bad)
    assert report.score == 0 and all("is not valid notebook JSON" in c.message for c in report.checks)


def test_cli_prints_a_table_writes_json_and_exits_1_on_failure(tmp_path):
    path = write(completed("session2/3_gap"), tmp_path / "sub", "3_gap.ipynb")
    broken = write(stub("session2/2_lighter"), tmp_path / "sub", "2_lighter.ipynb")
    before = path.read_bytes(), broken.read_bytes()
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "sub"), "--out",
                           str(tmp_path / "grades")], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "total        3/3    PASS" in proc.stdout and "0/3" in proc.stdout, proc.stdout
    assert "What to change:" in proc.stdout and "`Net` is not implemented yet" in proc.stdout
    result = json.loads((tmp_path / "grades" / "3_gap.json").read_text())
    assert result["score"] == result["max_score"] == 3 and result["passed"] is True
    assert (path.read_bytes(), broken.read_bytes()) == before, "the grader modified a submission"
    table = (tmp_path / "grades" / "class.csv").read_text().splitlines()   # a folder is graded as a class
    assert table[0].startswith("student,assignment,notebook,output,parameters,no_fc,total,max,passed,mode,isolation")
    assert sorted(row.split(",")[:2] for row in table[1:]) == [["2_lighter", "session2/2_lighter"],
                                                                 ["3_gap", "session2/3_gap"]], table
    assert "2 submissions: 1 passed every check" in proc.stdout, proc.stdout[-1000:]


def test_pytest_front_end_reports_points_and_feedback(tmp_path):
    path = write(completed("session2/3_gap"), tmp_path, "3_gap.ipynb")
    stub_path = write(stub("session2/3_gap"), tmp_path / "stub", "3_gap.ipynb")
    proc = subprocess.run([sys.executable, "-m", "pytest", "autograder", "--submission", str(path), "--submission",
                           str(stub_path), "-p", "no:cacheprovider", "--grade-json", str(tmp_path / "g.json")],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "3 failed, 3 passed" in proc.stdout, proc.stdout[-3000:]
    assert "no_fc[1pt]" in proc.stdout and "score: 3/6" in proc.stdout
    assert json.loads((tmp_path / "g.json").read_text())[0]["score"] == 3
    usage = subprocess.run([sys.executable, "-m", "pytest", "autograder", "-p", "no:cacheprovider"],
                           capture_output=True, text=True, cwd=ROOT)
    assert usage.returncode != 0 and "--submission PATH" in usage.stdout + usage.stderr


# --------------------------------------------------------------------------- with real run records

@pytest.mark.slow
@pytest.mark.parametrize("assignment, session", [(S2, "session2"), (S3, "session3")])
def test_reference_solutions_get_full_marks_in_checkpoint_mode(assignment, session, solution_runs, tmp_path):
    runs = solution_runs.records_of(session)
    path = write(completed(assignment), tmp_path, assignment.split("/")[1] + ".ipynb")
    copy_records(runs, tmp_path / "runs")
    report = grade(path)  # finds runs/ next to the notebook
    assert report.passed and report.score == report.max_score, report.table()
    assert "(grader-evaluated)" in verdicts(report)["accuracy"][1] or session == "session3"


@pytest.mark.slow
def test_checkpoint_below_target_is_caught_whatever_the_record_says(solution_runs, tmp_path):
    runs = copy_records(solution_runs.records_of("session2"), tmp_path / "runs", {"s2-4-bn-dropout"})
    rec = next(d for d in runs.iterdir() if TrainConfig.load(d / "config.json") == SESSION2_CONFIG)  # the graded one
    state = torch.load(rec / "model.pt", weights_only=True)
    first = next(k for k in state if k.endswith("weight") and state[k].dim() == 4)
    state[first] = torch.zeros_like(state[first])  # the printed history still says >= 99.4%
    torch.save(state, rec / "model.pt")
    report = grade(write(completed(S2), tmp_path, "4_bn_dropout.ipynb"))
    passed, msg = verdicts(report)["accuracy"]
    assert not passed and "on the MNIST test set (evaluated by the grader); 99.4% is needed" in msg, msg
    assert verdicts(report)["epochs"][0]


@pytest.mark.slow
def test_record_trained_with_another_config_is_not_graded(solution_runs, tmp_path):
    copy_records(solution_runs.records_of("session2"), tmp_path / "runs", {"s2-4-bn-dropout"})
    nb = edit(completed(S2), "config", "lr=0.1", "lr=0.05")
    report = grade(write(nb, tmp_path, "4_bn_dropout.ipynb"))
    passed, msg = verdicts(report)["accuracy"]
    assert not passed and "differs in: lr (record 0.1, notebook 0.05)" in msg, msg


def test_retrain_mode_trains_at_one_thread_whatever_the_graders_environment(tmp_path, monkeypatch):
    """A retrained grade must not depend on the command or the cores (`course grade` alone would train with
    every core, Dask with one): the worker trains with RETRAIN_THREADS; checkpoint mode passes the setting on."""
    from autograder.grade import _worker_env
    from course_utils.policy import RETRAIN_THREADS

    monkeypatch.setenv("COURSE_THREADS", "2")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    retrain = _worker_env(tmp_path, retrain=True)
    assert retrain["COURSE_THREADS"] == retrain["OMP_NUM_THREADS"] == str(RETRAIN_THREADS) == "1"
    assert _worker_env(tmp_path)["COURSE_THREADS"] == "2"
    monkeypatch.delenv("COURSE_THREADS")
    assert _worker_env(tmp_path, retrain=True)["COURSE_THREADS"] == "1"


@pytest.mark.slow
def test_retrain_mode_trains_with_the_grader_seed_and_grades_that_run(tmp_path, monkeypatch):
    """Retrain mode ignores submitted records and trains the notebook's config with the grader's seed.
    A 2-epoch config keeps this test short (and below target, so the verdict is the retrained run's);
    `course grade --retrain` on the full reference solution is the long version (see the README)."""
    copy_records_from = tmp_path / "elsewhere"
    # with a moving average of the weights (iteration 5's and Session 3's recipes): the averaged network is graded
    nb = edit(edit(completed(S2), "config", "epochs=14", "epochs=2"), "config", "seed=1)",
              "ema_decay=0.999, ema_warmup=True, seed=1)")
    report = grade(write(nb, tmp_path, "4_bn_dropout.ipynb"), retrain=True, seed=7, runs_dirs=[copy_records_from])
    assert verdicts(report)["epochs"] == (True, "2 epochs (< 15, retrained)"), report.table()
    passed, msg = verdicts(report)["accuracy"]
    assert not passed and "(evaluated by the grader); 99.4% is needed" in msg, msg
    assert report.seed == 7 and report.mode == "retrain"
    # the grader trains at one thread whatever the cores and keeps the network fit tests (the average), so it
    # reproduces the student's own run at one thread (the notebook's Net and config are the reference's): the
    # accuracy that run recorded is the grader's
    from course_utils.engine import fit
    from course_utils.loader import data_for

    cfg = SESSION2_CONFIG.replace(epochs=2, seed=7, ema_decay=0.999, ema_warmup=True)
    threads = torch.get_num_threads()
    monkeypatch.setenv("COURSE_THREADS", "1")
    try:
        run = fit(Session2Net, data_for(cfg), cfg, record=False, progress=False, verbose=False)
    finally:
        torch.set_num_threads(threads)
    assert msg.split("%")[0].endswith(f" {run.history[-1]['test_accuracy']:.2f}"), (msg, run.history[-1])


@pytest.mark.slow
def test_retrain_mode_trains_runs_side_by_side_and_grades_them_as_one_at_a_time(tmp_path):
    """Retrain mode trains each of Session 3's five runs in a worker of its own, several at once (by default
    one more than the CPUs): how many changes the time, never the weights (one thread each), so one at a time
    gives the same grade.
    A worker that dies in one training fails that run alone, with the reason, and the other runs are graded."""
    nb = edit(completed(S3), "config", "epochs=20", "epochs=1")   # 1 epoch: short, and below target
    path = write(nb, tmp_path / "ok", "regularization.ipynb")
    one = grade(path, retrain=True, train_workers=1, runs_dirs=[tmp_path / "none"])
    several = grade(path, retrain=True, runs_dirs=[tmp_path / "none"])
    assert verdicts(one) == verdicts(several), (one.table(), several.table())
    passed, msg = verdicts(several)["accuracy"]
    # every failing variant is named, not only the first
    assert not passed and all(label in msg for label in ("L1+BN", "L2+BN", "L1+L2+BN", "GBN", "L1+L2+GBN")), msg
    assert verdicts(several)["epochs"][0], several.table()

    # the L1 penalty ends its process 100 calls in: each run that trains with it, in its own worker, dies
    dies = edit(nb, "l1_penalty", "    return sum(", "    _CALLS.append(1)\n    if len(_CALLS) > 100:\n"
                "        import os\n        os._exit(3)\n    return sum(")
    dies = edit(dies, "l1_penalty", "def l1_penalty(model):", "_CALLS = []\n\n\ndef l1_penalty(model):")
    report = grade(write(dies, tmp_path / "dies", "regularization.ipynb"), retrain=True, runs_dirs=[tmp_path / "none"])
    assert verdicts(report)["l1_penalty"][0], report.table()   # the judge's inputs: fewer than 100 calls
    passed, msg = verdicts(report)["accuracy"]
    assert not passed and "exited with status 3" in msg, msg
    for label in ("L2+BN", "GBN"):   # trained without the penalty: graded as in the runs above
        assert f"{label}: The checkpoint reaches" in msg, msg


def test_ctrl_c_while_runs_train_side_by_side_ends_every_worker_and_keeps_nothing(tmp_path):
    """Ctrl-C in `course grade --retrain` while runs train side by side: exit status 130 at once (not after the
    trainings), no worker process left, the scratch folder removed, the notebook untouched."""
    import signal

    from autograder.sandbox import scratch_root

    path = write(completed(S3), tmp_path, "regularization.ipynb")   # 20 epochs: minutes of training
    before = path.read_bytes()
    grader = subprocess.Popen([sys.executable, "-m", "course", "grade", str(path), "--retrain", "--out",
                               str(tmp_path / "grades")], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # as in a terminal
    try:
        started = 0
        for line in grader.stderr:   # the workers' progress, as the grader echoes it
            started += "retraining s3-" in line
            if started >= 2:
                break
        assert started >= 2, grader.communicate(timeout=60)
        grader.send_signal(signal.SIGINT)
        stdout, stderr = grader.communicate(timeout=60)   # waiting for the trainings would take minutes
    finally:
        if grader.poll() is None:   # the test failed: end the grader, whose workers die with it
            grader.kill()
            grader.wait()
    assert grader.returncode == 130 and "interrupted: 0 of 1 notebook(s) graded" in stderr, stdout[-2000:] + stderr[-2000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    mine = f"/{scratch_root().name}/{grader.pid}-"

    def workers():
        found = []
        for proc in Path("/proc").iterdir():
            try:
                if mine in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    found.append(proc.name)
            except OSError:
                pass
        return found

    assert workers() == [], workers()
    assert not list(scratch_root().glob(f"{grader.pid}-*"))
    assert path.read_bytes() == before


@pytest.mark.slow
def test_checkpoint_fitted_to_the_test_set_fools_checkpoint_mode_but_not_retrain(solution_runs, mnist_tensors, tmp_path):
    """Why the final grade uses --retrain: the reference checkpoint fine-tuned on the *test* images,
    submitted with a plausible 3-epoch record, passes checkpoint mode (the grader's own evaluation is
    on those very images); retraining the declared 3-epoch config on the training set with the
    grader's seed falls short of 99.4%."""
    from course_utils.engine import find_records, fit
    from course_utils.loader import MNISTData, TensorLoader

    ref = next(r for r in find_records("s2-4-bn-dropout", solution_runs.records_of("session2")) if r.config.seed == 1)
    model = Session2Net()
    model.load_state_dict(ref.load_state_dict())
    _, _, xte, yte = mnist_tensors
    on_test = MNISTData(TensorLoader(xte, yte, 128, shuffle=True, seed=1, channels_last=True),
                        TensorLoader(xte, yte, 2000, channels_last=True))
    cheat = fit(model, on_test, SESSION2_CONFIG.replace(name="cheat", epochs=2, lr=0.01, scheduler="none"),
                record=False, progress=False, verbose=False)
    # it has seen the answers: better than the honest checkpoint, and past the target
    assert cheat.final_test_accuracy > max(ref.metrics["final_test_accuracy"], 99.4), cheat.history

    config = SESSION2_CONFIG.replace(epochs=3)
    path = write(edit(completed(S2), "config", "epochs=14", "epochs=3"), tmp_path / "cheat", "4_bn_dropout.ipynb")
    rec = tmp_path / "cheat" / "runs" / "s2-4-bn-dropout-20260101-000000-s1"
    rec.mkdir(parents=True)
    config.save(rec / "config.json")
    history = [{"epoch": e, "test_accuracy": cheat.final_test_accuracy, "train_accuracy": 99.0, "test_loss": 0.02,
                "train_loss": 0.03} for e in (1, 2, 3)]
    (rec / "metrics.json").write_text(json.dumps({"epochs_run": 3, "history": history,
                                                  "started_utc": "2026-01-01T00:00:00+00:00"}))
    torch.save({k: v.contiguous() for k, v in cheat.model.state_dict().items()}, rec / "model.pt")

    fooled = grade(path)
    assert fooled.passed, fooled.table()
    caught = grade(path, retrain=True)
    passed, msg = verdicts(caught)["accuracy"]
    assert not passed and ("99.4% is needed" in msg or "each must be >= 99.4%" in msg), caught.table()


# --------------------------------------------------------------------------- assignments describe themselves

@pytest.mark.parametrize("assignment", sorted(ASSIGNMENTS))
def test_nbgrader_cell_points_equal_the_assignments_points(assignment):
    """Each check names the nbgrader test cell that checks the same thing; per cell, the points agree."""
    spec = ASSIGNMENTS[assignment]
    nb = json.loads((ROOT / "solutions" / spec.notebook).read_text())
    cells = {c["metadata"]["nbgrader"]["grade_id"]: c["metadata"]["nbgrader"]["points"] for c in nb["cells"]
             if c["metadata"].get("nbgrader", {}).get("grade")}
    by_cell: dict = {}
    for c in spec.checks:
        by_cell[c.cell] = by_cell.get(c.cell, 0) + c.points
    for w in spec.written:   # manually graded answer cells (markdown, nbgrader solution + grade)
        by_cell[w.cell] = by_cell.get(w.cell, 0) + w.points
    assert by_cell == cells


TOY = net()   # 792 parameters


def test_a_new_assignment_is_one_registered_entry(tmp_path):
    """A hypothetical Session 4: one `register` call with its own policy and checks, and its notebook."""
    from autograder.assignments import Assignment, Check, register
    from course_utils.policy import Policy

    toy = Assignment("session4/toy", Policy("session4", max_parameters=800, epoch_limit=5), (
        Check("output", 1, "forward gives (N, 10) scores"),
        Check("parameters", 3, "parameters < 800"),
        Check("no_fc", 1, "no fully connected layer")))
    nb = {"cells": [{"cell_type": "code", "metadata": {"tags": ["setup"]}, "outputs": [], "execution_count": None,
                     "source": "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F"},
                    {"cell_type": "code", "metadata": {"tags": ["definitions"]}, "outputs": [], "execution_count": None,
                     "source": TOY},
                    {"cell_type": "code", "metadata": {"tags": ["config"]}, "outputs": [], "execution_count": None,
                     "source": "pass"}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    register(toy)
    try:
        report = grade(write(nb, tmp_path / "ok", "toy.ipynb"))
        assert report.assignment == "session4/toy" and report.score == report.max_score == 5, report.table()
        big = json.loads(json.dumps(nb))
        big["cells"][1]["source"] = TOY.replace("nn.Conv2d(8, 10, 3", "nn.Conv2d(8, 10, 5")
        report = grade(write(big, tmp_path / "big", "toy.ipynb"))
        passed, msg = verdicts(report)["parameters"]
        assert not passed and "2,072 parameters: the limit is fewer than 800" in msg, msg
    finally:
        ASSIGNMENTS.pop("session4/toy")


def test_cli_usage_errors_and_result_names(tmp_path):
    """A missing file is a usage error (exit 2, nothing written); two students' notebooks of one
    assignment, graded one after the other, keep separate result files; --help explains the modes."""
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path / "nope.ipynb"), "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no such file or folder" in proc.stderr and not out.exists(), proc.stderr
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(tmp_path), "--retrain", "--train-workers", "0"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--train-workers must be at least 1" in proc.stderr, proc.stderr
    for student in ("alice", "bob"):
        path = write(completed("session2/3_gap"), tmp_path / student, "3_gap.ipynb")
        proc = subprocess.run([sys.executable, "-m", "course", "grade", str(path), "--out", str(out)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sorted(p.name for p in out.iterdir()) == ["alice__3_gap.json", "bob__3_gap.json"]
    helped = subprocess.run([sys.executable, "-m", "course", "grade", "--help"], capture_output=True, text=True)
    assert "checkpoint (default)" in helped.stdout and "runs/ next to the notebook" in helped.stdout
    assert "``" not in helped.stdout


def test_cli_refuses_a_bad_out_folder_a_dashboard_address_and_retrain_without_data(tmp_path, monkeypatch, capsys):
    """Mistakes that used to end in a traceback (FileExistsError, distributed's ValueError, MNISTUnavailable
    from the first notebook) are one line and exit status 2, before any notebook is graded."""
    from autograder import grade as grade_mod
    from course_utils.data import MNISTUnavailable

    nb = write(completed("session2/3_gap"), tmp_path / "alice", "3_gap.ipynb")
    (tmp_path / "afile").write_text("x")
    for argv, phrase in (([str(nb), "--out", str(tmp_path / "afile")], "--out"),
                         ([str(tmp_path), "--workers", "1", "--cluster", "http://localhost:8787/status"],
                          "not the dashboard's http:// address")):
        with pytest.raises(SystemExit) as exit_:
            grade_mod.main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2 and phrase in err, err

    (tmp_path / "empty").mkdir()
    assert grade_mod.main([str(tmp_path / "empty"), "--out", str(tmp_path / "g")]) == 2   # like `course check`
    assert "no notebooks found" in capsys.readouterr().err and not (tmp_path / "g").exists()   # nothing written

    def no_data():
        raise MNISTUnavailable("Could not make MNIST available.")

    monkeypatch.setattr(grade_mod, "train_files", no_data)
    monkeypatch.setattr(grade_mod, "grade", lambda *a, **k: pytest.fail("graded without training files"))
    assert grade_mod.main([str(nb), "--retrain", "--out", str(tmp_path / "g")]) == 2
    assert "retrain mode trains on the MNIST training files" in capsys.readouterr().err
    assert not (tmp_path / "g").exists()


def test_a_failed_check_shows_its_message_alone_in_jupyter_and_the_traceback_on_request(monkeypatch):
    """IPython (and so nbgrader's feedback) displays an exception through ``_render_traceback_``: a failed
    check is its one-line message, not forty lines through the grader with the message at the bottom."""
    from autograder.judge import CheckFailed

    try:
        raise CheckFailed("`Net` is not implemented yet: write its layers")
    except CheckFailed as e:
        err = e
    monkeypatch.delenv("COURSE_TRACEBACK", raising=False)
    assert err._render_traceback_() == ["CheckFailed: `Net` is not implemented yet: write its layers"]
    monkeypatch.setenv("COURSE_TRACEBACK", "1")
    lines = err._render_traceback_()
    assert lines[0].startswith("Traceback") and lines[-1].startswith("autograder.judge.CheckFailed: `Net`")
