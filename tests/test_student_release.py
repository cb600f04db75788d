"""`make student-release`: the student template has notebooks, library, grader and CI workflow,
and no solution code, hidden test, reference solution, data or checkpoint."""
from __future__ import annotations

import json
import os
import re
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
                ".github/workflows/classroom.yml", "Makefile", "README.md", "pyproject.toml"):
        assert (template / rel).is_file(), rel
    assert not (template / "autograder" / "reference").exists()
    assert not (template / "solutions").exists() and not (template / "tests").exists()
    assert student_release.leaks(template) == []
    workflow = (template / ".github" / "workflows" / "classroom.yml").read_text()
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
    with --grader-repo/--grader-ref the workflow fetches the grader from the grader repository."""
    out = student_release.build(tmp_path / "pinned", grader_repo="https://example.org/grader.git", grader_ref="abc123")
    workflow = (out / ".github" / "workflows" / "classroom.yml").read_text()
    assert 'GRADER_REPO: "https://example.org/grader.git"' in workflow and 'GRADER_REF: "abc123"' in workflow
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


@pytest.mark.data
def test_the_workflow_run_locally_reports_classroom_points(template, tmp_path, mnist_root):
    """The workflow's own steps (MNIST, Grade, Classroom points), read from the YAML and run in order
    with bash as the runner would, on a template with one notebook completed and one deleted: the
    points output decodes to the reporter's format, the completed notebook earns its points, the deleted
    one costs its points, and a second copy of a notebook adds nothing."""
    import base64
    import os
    import shutil

    import yaml

    from autograder.assignments import ASSIGNMENTS

    repo = tmp_path / "student"
    shutil.copytree(template, repo)
    write(completed("session2/3_gap"), repo / "sessions" / "session2", "3_gap.ipynb")
    write(completed("session2/3_gap"), repo / "sessions" / "copy", "3_gap.ipynb")
    (repo / "sessions" / "session2" / "1_skeleton.ipynb").unlink()
    workflow = yaml.safe_load((repo / ".github" / "workflows" / student_release.WORKFLOW_NAME).read_text())
    job = workflow["jobs"]["run-autograding-tests"]
    assert job["name"] == "Autograding Tests" and "github-classroom[bot]" in job["if"]
    steps = {s.get("name"): s for s in job["steps"]}
    reporter = next(s for s in job["steps"] if "autograding-grading-reporter" in s.get("uses", ""))
    assert reporter["with"]["runners"] == "points" and "steps.points.outputs.result" in reporter["env"]["POINTS_RESULTS"]
    output = tmp_path / "github_output"
    env = {**os.environ, "GITHUB_OUTPUT": str(output), "COURSE_DATA": str(mnist_root), "PYTHONPATH": str(repo),
           "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    for name in ("MNIST (verified by MD5)", "Grade", "Classroom points"):
        proc = subprocess.run(["bash", "-e", "-c", steps[name]["run"]], cwd=repo, env=env, capture_output=True,
                              text=True, timeout=900)
        assert proc.returncode == (1 if name == "Grade" else 0), (name, proc.stdout[-2000:], proc.stderr[-2000:])
    (line,) = [ln for ln in output.read_text().splitlines() if ln.startswith("result=")]
    result = json.loads(base64.b64decode(line.removeprefix("result=")))
    assert result["version"] == 1 and result["status"] == "fail"
    assert result["max_score"] == sum(c.points for a in ASSIGNMENTS.values() for c in a.checks)
    by_assignment: dict = {}
    for t in result["tests"]:
        by_assignment.setdefault(t["name"].split(":")[0], []).append(t)
    assert sum(t["score"] for t in by_assignment["session2/3_gap"]) == 3 and len(by_assignment["session2/3_gap"]) == 3
    assert [t["score"] for t in by_assignment["session2/1_skeleton"]] == [0, 0, 0]
    assert "no graded notebook for session2/1_skeleton" in by_assignment["session2/1_skeleton"][0]["message"]
    assert sum(t["score"] for t in result["tests"]) == 3   # every other notebook is a stub


def test_the_grader_artifact_holds_the_grader_alone_and_the_pinned_step_restores_it(template, tmp_path):
    """`make student-release` also builds the grader as its own repository (no solutions, versioned,
    hashed). The workflow's "Pinned grader" step, run locally against that repository as a git remote at
    a pinned commit, replaces a student's edited grader and passes its hash check."""
    import os
    import shutil

    import yaml

    grader = student_release.build_grader(tmp_path / "grader")
    assert sorted(p.name for p in grader.iterdir()) == ["README.md", "VERSION", "autograder", "course", "course_utils",
                                                        "grader.sha256", "pyproject.toml"]
    assert student_release.leaks(grader) == [] and not (grader / "instructor").exists()
    assert 'name = "mnist-course-grader"' in (grader / "pyproject.toml").read_text()
    assert (grader / "grader.sha256").read_text() == (template / "grader.sha256").read_text()
    git = ["git", "-c", "user.email=t@example.org", "-c", "user.name=t"]
    for cmd in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "grader"]):
        subprocess.run(git + cmd, cwd=grader, check=True, capture_output=True)
    ref = subprocess.run(["git", "rev-parse", "HEAD"], cwd=grader, capture_output=True, text=True, check=True).stdout.strip()

    repo = tmp_path / "student"
    shutil.copytree(template, repo)
    judge_py = repo / "autograder" / "judge.py"
    judge_py.write_text(judge_py.read_text().replace("if n >= limit:", "if False:"))   # a student's "fix"
    steps = {s.get("name"): s for s in yaml.safe_load((repo / ".github" / "workflows" / student_release.WORKFLOW_NAME)
                                                      .read_text())["jobs"]["run-autograding-tests"]["steps"]}
    step = steps["Pinned grader"]
    run = step["run"].replace("/tmp/grader", str(tmp_path / "fetched"))
    env = {**os.environ, "GRADER_REPO": str(grader), "GRADER_REF": ref}
    proc = subprocess.run(["bash", "-e", "-c", run], cwd=repo, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "if n >= limit:" in judge_py.read_text()            # the course's judge is back
    unpinned = subprocess.run(["bash", "-e", "-c", run], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "GRADER_REPO": "", "GRADER_REF": ""})
    assert unpinned.returncode == 0
    judge_py.write_text(judge_py.read_text().replace("if n >= limit:", "if False:"))
    unpinned = subprocess.run(["bash", "-e", "-c", run], cwd=repo, capture_output=True, text=True,
                              env={**os.environ, "GRADER_REPO": "", "GRADER_REF": ""})
    assert unpinned.returncode != 0 and "autograder/judge.py" in unpinned.stdout + unpinned.stderr


#: README commands that open something interactive: listed, never run by the test
INTERACTIVE = (".venv/bin/jupyter lab",)


def _readme_commands(text: str) -> list[str]:
    """The student README's commands, in order: its indented code lines that start with `make` or `.venv/bin/`
    (a trailing comment dropped)."""
    import re

    return [m.group(1).strip() for ln in text.splitlines()
            if (m := re.match(r"^ {4,}((?:make |\.venv/bin/)[^#]*)", ln))]


@pytest.mark.slow
@pytest.mark.data
def test_the_student_readme_run_verbatim(template, tmp_path, mnist_root):
    """Every command of the template's README, run in order, as written, in a fresh copy of the template
    (stub notebooks, as a student first gets them): each does its job or fails with one clear message,
    never a traceback. One preparation: `.venv` is created first, with this suite's own installed packages
    on its path (a 6 GB torch install per test run is not affordable); the README's `make` then runs the
    template's own `pip install -e .` into it. MNIST comes from the suite's verified copy ($COURSE_DATA)."""
    import shutil
    import sysconfig

    student = tmp_path / "student"
    shutil.copytree(template, student)
    subprocess.run([sys.executable, "-m", "venv", str(student / ".venv")], check=True)
    (site,) = (student / ".venv" / "lib").glob("python3*/site-packages")
    (site / "suite_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COURSE_", "VIRTUAL_ENV", "PYTHON"))}
    env.update(COURSE_DATA=str(mnist_root), PATH="/usr/local/bin:/usr/bin:/bin")

    commands = _readme_commands((student / "README.md").read_text())
    expected = {   # command prefix -> (exit status, what its output must say)
        "make grade": (2, "is not implemented yet"),   # make says "Error 1": course grade exits 1 when a check fails
        "make data": (0, "MNIST ready and verified"),
        ".venv/bin/course train sessions/session3/regularization.ipynb": (1, "Not implemented yet"),
        ".venv/bin/course check sessions": (1, "+ 3 point(s) for your written answers"),
        ".venv/bin/course submit sessions/session2/4_bn_dropout.ipynb": (1, "No run record named 's2-4-bn-dropout'"),
        ".venv/bin/course grade sessions/session2/4_bn_dropout.ipynb": (1, "session2/4_bn_dropout"),
    }
    assert [c for c in commands if not c.startswith(INTERACTIVE)] == list(expected), commands
    for cmd in commands:
        if cmd.startswith(INTERACTIVE):
            continue
        proc = subprocess.run(["bash", "-c", cmd], cwd=student, env=env, capture_output=True, text=True, timeout=900)
        out = proc.stdout + proc.stderr
        code, phrase = expected[cmd]
        assert proc.returncode == code and phrase in out and "Traceback" not in out, (cmd, proc.returncode, out[-3000:])
    assert (student / ".venv" / "bin" / "course").is_file()   # installed by the README's own `make`
    assert (student / "grades" / "session2__4_bn_dropout.json").is_file()


def test_template_has_no_dangling_references(template):
    """What a student reads in the template (its README, the notebooks' cells) names only files, make targets
    and commands the template has: no instructor-only `make report`, RESULTS.md or session READMEs."""
    import re

    texts = {"README.md": (template / "README.md").read_text()}
    for nb in (template / "sessions").rglob("*.ipynb"):
        cells = json.loads(nb.read_text())["cells"]
        texts[str(nb.relative_to(template))] = "\n".join("".join(c["source"]) for c in cells)
    targets = set(re.findall(r"^([\w-]+):", (template / "Makefile").read_text(), re.M))
    problems = []
    for name, text in texts.items():
        problems += [f"{name}: `make {t}`" for t in re.findall(r"`make ([\w-]+)", text) if t not in targets]
        problems += [f"{name}: {f}" for f in re.findall(r"[\w./-]+\.md\b", text) if not (template / f).exists()]
        problems += [f"{name}: course {c}" for c in re.findall(r"(?:`|\.venv/bin/)course (\w+)", text)
                     if c not in ("data", "train", "info", "check", "submit", "grade")]
    assert problems == [], problems


def _first_code_cell(path: Path) -> dict:
    return next(c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")


def test_every_course_notebook_starts_with_the_install_cell():
    """Colab: each notebook's first code cell installs the course package where it is missing (one text,
    `student_release.INSTALL_CELL`, in every solution notebook and so in every generated student copy)."""
    notebooks = sorted((ROOT / "solutions").rglob("*.ipynb")) + sorted((ROOT / "sessions").rglob("*.ipynb"))
    assert len(notebooks) >= 12
    for nb in notebooks:
        cell = _first_code_cell(nb)
        assert "".join(cell["source"]) == student_release.INSTALL_CELL, nb
        assert cell["metadata"].get("tags") == [student_release.INSTALL_TAG], nb


def test_the_install_cell_installs_the_pinned_grader_where_the_package_is_missing(tmp_path, monkeypatch):
    import importlib.util

    out = student_release.build(tmp_path / "pinned", grader_repo="https://example.org/grader.git", grader_ref="abc123")
    sources = ["".join(_first_code_cell(nb)["source"]) for nb in sorted((out / "sessions").rglob("*.ipynb"))]
    real_find_spec, calls = importlib.util.find_spec, []

    exec(sources[0], {})  # noqa: S102  (the package is installed here: the cell does nothing)
    assert calls == []
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "course_utils"
                        else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "check_call", lambda cmd: calls.append(cmd) or 0)
    for source in sources:
        exec(source, {})  # noqa: S102
    assert calls == [[sys.executable, "-m", "pip", "install", "--quiet",
                      "git+https://example.org/grader.git@abc123"]] * len(sources)
    with pytest.raises(SystemExit, match="set COURSE_PACKAGE above to the address your instructor gives you"):
        exec(student_release.INSTALL_CELL, {})  # noqa: S102  (a template built without the address)
    assert len(calls) == len(sources)


def test_a_rebuild_replaces_only_an_earlier_build_and_never_a_clone_or_the_repository(tmp_path, capsys):
    """`--out` pointed at a git clone of the pushed template, at a folder of other files or at the course
    repository used to be deleted whole before the build; now only an earlier build is replaced."""
    grader = student_release.build_grader(tmp_path / "grader")
    (grader / "stale.txt").write_text("from an earlier build")
    assert not (student_release.build_grader(grader) / "stale.txt").exists()   # an earlier build: replaced

    clone = tmp_path / "clone"
    (clone / ".git").mkdir(parents=True)
    (clone / "grader.sha256").write_text("pushed\n")
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.md").write_text("mine")
    for out, phrase in ((clone, "is a git working tree"), (other, "is not an earlier build"),
                        (ROOT, "holds) the course repository"), (other / "notes.md", "is a file")):
        with pytest.raises(RuntimeError, match=re.escape(phrase)):
            student_release.build(out)
    assert (clone / ".git").is_dir() and (other / "notes.md").read_text() == "mine"

    assert student_release.main(["--out", str(tmp_path / "t"), "--grader-out", str(tmp_path / "t" / "g")]) == 2
    assert "two separate folders" in capsys.readouterr().err
    assert student_release.main(["--out", str(clone), "--grader-out", str(tmp_path / "g2")]) == 1
    assert "git working tree" in capsys.readouterr().err and (clone / ".git").is_dir()
    assert not (tmp_path / "g2").exists()   # refused before anything was built

    partial = tmp_path / "partial"   # a build interrupted after its first copies: replaceable
    partial.mkdir()
    (partial / "grader.sha256").write_text("an unfinished build: run make student-release again\n")
    (partial / "autograder").mkdir()
    assert (student_release.build(partial) / "sessions").is_dir()


@pytest.mark.parametrize("content", [None, "not json", '"a string"', '[1, "x"]'])
def test_classroom_points_from_a_missing_or_malformed_results_file_are_zero_not_a_traceback(content, tmp_path,
                                                                                             capsys):
    import base64

    from autograder import classroom

    path = tmp_path / "grade.json"
    if content is not None:
        path.write_text(content)
    assert classroom.main([str(path)]) == 0
    out = capsys.readouterr()
    data = json.loads(base64.b64decode(out.out.split("result=", 1)[1]))
    assert data["status"] == "fail" and data["max_score"] > 0 and sum(t["score"] for t in data["tests"]) == 0
    assert f"Points 0/{data['max_score']}" in out.err
