"""The instructor's nbgrader cycle, headless, on a scratch course directory:
generate_assignment -> a completed and a stub-only submission -> autograde -> generate_feedback
-> export. The completed submission gets every automatic point (its written answers wait for manual
grading), the stubs get zero, both get feedback HTML;
autograding the same submissions a second time gives the same grades (one gradebook row each)."""
from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from submissions import ROOT, completed, copy_records, stub, write

pytestmark = [pytest.mark.slow, pytest.mark.notebook, pytest.mark.data]

NOTEBOOKS = {"session2": ["1_skeleton", "2_lighter", "3_gap", "4_bn_dropout", "5_speed"], "session3": ["regularization"]}


def nbgrader(course: Path, *args: str, data_root: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_RUNS", "NBGRADER_EXECUTION")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # nbgrader calls alembic
    env["COURSE_DATA"] = str(data_root)
    proc = subprocess.run([sys.executable, "-m", "nbgrader", *args], cwd=course, env=env, capture_output=True,
                          text=True, timeout=1800)
    assert proc.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def test_generate_autograde_feedback_export(solution_runs, mnist_root, tmp_path):
    runs = solution_runs.records_of("session2")
    solution_runs.records_of("session3")
    course = tmp_path / "course"
    course.mkdir()
    shutil.copy(ROOT / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "solutions", course / "solutions",
                    ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints", "__pycache__"))
    for a, names in NOTEBOOKS.items():
        nbgrader(course, "generate_assignment", a, "--force", data_root=mnist_root)
        for name in names:
            write(completed(f"{a}/{name}"), course / "submitted" / "alice" / a, f"{name}.ipynb")
            write(stub(f"{a}/{name}"), course / "submitted" / "bob" / a, f"{name}.ipynb")
        copy_records(runs, course / "submitted" / "alice" / a / "runs")
        submitted = {p: p.read_bytes() for p in (course / "submitted").rglob("*.ipynb")}
        nbgrader(course, "autograde", a, "--force", data_root=mnist_root)
        nbgrader(course, "generate_feedback", a, "--force", data_root=mnist_root)
        assert {p: p.read_bytes() for p in (course / "submitted").rglob("*.ipynb")} == submitted
        for student in ("alice", "bob"):
            html = sorted((course / "feedback" / student / a).glob("*.html"))
            assert [h.stem for h in html] == sorted(names), (student, a, html)
    nbgrader(course, "export", data_root=mnist_root)
    rows = list(csv.DictReader((course / "grades.csv").open()))
    scores = {(r["student_id"], r["assignment"]): (float(r["score"]), float(r["max_score"])) for r in rows}
    # every automatic point; the written answers (6 and 3 points) wait for the instructor's manual grading
    assert scores[("alice", "session2")] == (22.0, 28.0), scores
    assert scores[("alice", "session3")] == (14.0, 17.0), scores
    assert scores[("bob", "session2")][0] == 0 and scores[("bob", "session3")][0] == 0, scores

    # autograding the same submissions again gives the same grades and a consistent gradebook
    nbgrader(course, "autograde", "session2", "--force", data_root=mnist_root)
    nbgrader(course, "export", data_root=mnist_root)
    again = list(csv.DictReader((course / "grades.csv").open()))
    assert len(again) == len(rows)
    assert {(r["student_id"], r["assignment"]): (float(r["score"]), float(r["max_score"])) for r in again} == scores


def _readme_cycle_commands() -> list[str]:
    """The nbgrader commands of the README's instructor cycle, verbatim (comments dropped by the shell)."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if "**nbgrader cycle**" in ln)
    block = []
    for ln in lines[start + 1:]:
        if ln.startswith("      nbgrader "):
            block.append(ln.strip())
        elif block and ln.strip() and not ln.startswith("      "):
            break
    return block


def test_the_readmes_instructor_cycle_run_verbatim_deletes_nothing_committed(mnist_root, tmp_path):
    """Bug: `nbgrader generate_assignment session2 --force` from the repository root used to remove
    sessions/session2 wholesale (its README and figures). Run the README's commands as written, in a copy
    of the repository's tracked files with one submission collected, and compare every tracked file."""
    commands = _readme_cycle_commands()
    assert [c.split()[1] for c in commands] == ["generate_assignment", "autograde", "generate_feedback", "export"]
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    repo = tmp_path / "repo"
    for rel in tracked:
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / rel, repo / rel)
    before = {rel: (repo / rel).read_bytes() for rel in tracked}
    write(completed("session2/3_gap"), repo / "submitted" / "alice" / "session2", "3_gap.ipynb")
    env = {k: v for k, v in os.environ.items() if k not in ("COURSE_RUNS", "NBGRADER_EXECUTION")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    env["COURSE_DATA"] = str(mnist_root)
    for command in commands:
        proc = subprocess.run(command, shell=True, cwd=repo, env=env, capture_output=True, text=True, timeout=900)
        assert proc.returncode == 0, f"{command}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    changed = [rel for rel in tracked if not (repo / rel).is_file() or (repo / rel).read_bytes() != before[rel]]
    assert changed == [], f"the README's cycle deleted or changed committed files: {changed[:10]}"
    assert (repo / "build" / "release" / "session2" / "3_gap.ipynb").is_file() and (repo / "grades.csv").is_file()
