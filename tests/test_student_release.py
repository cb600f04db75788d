"""`make student-release`: the student template has notebooks, library, grader and CI workflow,
and no solution code, hidden test, reference solution, data or checkpoint."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from instructor import student_release
from submissions import ROOT, completed, write


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    return student_release.build(tmp_path_factory.mktemp("tmpl") / "student")


def test_template_holds_what_a_student_needs_and_no_instructor_material(template):
    for rel in ("sessions/session2/4_bn_dropout.ipynb", "sessions/session3/regularization.ipynb",
                "course_utils/engine.py", "autograder/grade.py", "autograder/checks.py", "autograder/conftest.py",
                ".github/workflows/grade.yml", "Makefile", "README.md", "pyproject.toml"):
        assert (template / rel).is_file(), rel
    assert not (template / "autograder" / "reference").exists()
    assert not (template / "solutions").exists() and not (template / "tests").exists()
    assert student_release.leaks(template) == []
    workflow = (template / ".github" / "workflows" / "grade.yml").read_text()
    assert "pytest autograder --submission sessions" in workflow and "GITHUB_STEP_SUMMARY" in workflow


def test_leak_scan_finds_solution_code_markers_and_checkpoints(template, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    solution = json.loads((ROOT / "solutions" / "session3" / "regularization.ipynb").read_text())
    line = next(iter(student_release._solution_lines(solution)))
    (bad / "notes.py").write_text(f"# copied\n{line}\n")
    (bad / "hidden.py").write_text("### BEGIN HIDDEN TESTS\n")
    (bad / "model.pt").write_bytes(b"\0")
    problems = "\n".join(student_release.leaks(bad))
    assert "notes.py: contains solution code" in problems
    assert "hidden.py: contains solution or hidden-test markers" in problems
    assert "model.pt: checkpoint" in problems


@pytest.mark.data
def test_template_grader_runs_on_its_own(template, tmp_path):
    """The copy of the grader in the template works without the instructor's files."""
    write(completed("session2/3_gap"), template / "sessions" / "done", "3_gap.ipynb")
    proc = subprocess.run([sys.executable, "-m", "autograder.grade", "sessions", "--out", str(tmp_path / "g")],
                          cwd=template, capture_output=True, text=True, env={"PYTHONPATH": str(template),
                                                                             "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "sessions/done/3_gap.ipynb: session2/3_gap" in proc.stdout and "3/3" in proc.stdout, proc.stdout
    assert "is not implemented yet" in proc.stdout
    assert "instructor/reference" not in proc.stdout + proc.stderr


def test_workflow_grades_with_a_pinned_grader(tmp_path):
    """grader.sha256 pins every grader file; an edited check or test fails the workflow's check, and
    with --course-repo/--course-ref the workflow fetches the grader from the course repository."""
    out = student_release.build(tmp_path / "pinned", course_repo="https://example.org/course.git", course_ref="abc123")
    workflow = (out / ".github" / "workflows" / "grade.yml").read_text()
    assert 'COURSE_REPO: "https://example.org/course.git"' in workflow and 'COURSE_REF: "abc123"' in workflow
    assert workflow.index("sha256sum --check") < workflow.index("pytest autograder --submission")
    listed = (out / "grader.sha256").read_text()
    assert "autograder/checks.py" in listed and "autograder/conftest.py" in listed and "course_utils/engine.py" in listed
    check = ["sha256sum", "--check", "--quiet", "grader.sha256"]
    assert subprocess.run(check, cwd=out, capture_output=True).returncode == 0
    judge_py = out / "autograder" / "judge.py"
    judge_py.write_text(judge_py.read_text().replace("if n >= limit:", "if False:"))
    proc = subprocess.run(check, cwd=out, capture_output=True, text=True)
    assert proc.returncode != 0 and "autograder/judge.py" in proc.stdout + proc.stderr


def test_template_never_commits_data_smoke_runs_or_grader_output(tmp_path):
    """In a student's clone of the template, MNIST fetched from a notebook folder, smoke-run records,
    partial checkpoints and grade results stay out of git at any depth; graded run records go in."""
    import os

    from course_utils.data import data_root

    out = student_release.build(tmp_path / "template")
    assert "make data" in (out / "README.md").read_text()
    subprocess.run(["git", "init", "-q"], cwd=out, check=True)
    nbdir = out / "sessions" / "session2"
    here = Path.cwd()
    os.chdir(nbdir)
    try:
        assert data_root() == out / "data"   # a notebook folder provisions into the repository's data/
    finally:
        os.chdir(here)
    junk = [nbdir / "data" / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", nbdir / "grade.json",
            nbdir / "runs" / "s2-1-skeleton-quick-20260101-000000-s1" / "model.pt", nbdir / "runs" / "r" / ".model.pt.tmp",
            out / "grades" / "4_bn_dropout.json", nbdir / ".ipynb_checkpoints" / "x.ipynb"]
    keep = nbdir / "runs" / "s2-4-bn-dropout-20260101-000000-s1" / "model.pt"
    for p in junk + [keep]:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")
    staged = subprocess.run(["git", "add", "--dry-run", "-A"], cwd=out, capture_output=True, text=True, check=True).stdout
    assert str(keep.relative_to(out)) in staged
    for p in junk:
        assert str(p.relative_to(out)) not in staged, p
