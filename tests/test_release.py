"""The student notebooks: generated from the solutions, up to date, no leaks, no outputs."""
from __future__ import annotations

import json
import shutil

import pytest

from autograder.assignments import ASSIGNMENTS
from instructor import release

ROOT = release.ROOT


def test_sessions_are_generated_current_and_clean():
    problems = release.check()
    assert problems == [], "\n".join(problems)


@pytest.fixture
def course_copy(tmp_path):
    for name in ("solutions", "sessions"):
        shutil.copytree(ROOT / name, tmp_path / name)
    shutil.copy(ROOT / "nbgrader_config.py", tmp_path)
    return tmp_path


def _edit(path, fn):
    nb = json.loads(path.read_text())
    fn(nb)
    path.write_text(json.dumps(nb, indent=1))


def test_check_catches_stale_leaked_and_executed_notebooks(course_copy):
    sol = course_copy / "solutions" / "session2" / "3_gap.ipynb"
    _edit(sol, lambda nb: nb["cells"][0]["source"].append("\nA new sentence."))  # source changed, not released
    stu = course_copy / "sessions" / "session2" / "2_lighter.ipynb"

    def leak(nb):
        cell = next(c for c in nb["cells"] if c["metadata"].get("nbgrader", {}).get("solution"))
        cell["source"] = "### BEGIN SOLUTION\nnn.Conv2d(1, 10, 3, bias=False), nn.ReLU(),     # 26, RF 3\n"
    _edit(stu, leak)
    out = course_copy / "sessions" / "session2" / "1_skeleton.ipynb"
    _edit(out, lambda nb: next(c for c in nb["cells"] if c["cell_type"] == "code")["outputs"].append(
        {"output_type": "stream", "name": "stdout", "text": "hello"}))
    (course_copy / "sessions" / "session2" / "extra.ipynb").write_text(out.read_text())

    problems = "\n".join(release.check(course_copy))
    assert "3_gap.ipynb: stale" in problems
    assert "2_lighter.ipynb: contains solution or hidden-test markers" in problems
    assert "2_lighter.ipynb: leaks solution code" in problems
    assert "1_skeleton.ipynb: has outputs" in problems
    assert "extra.ipynb: has no source" in problems

    release.release(course_copy)
    assert release.check(course_copy) == []


def test_nbgrader_config_sets_only_options_nbgrader_takes():
    """Every option in nbgrader_config.py is a configurable trait of its nbgrader class (an unknown one
    is ignored by nbgrader with only a warning, e.g. the former ``Execute.allow_errors``)."""
    from nbgrader.coursedir import CourseDirectory
    from nbgrader.preprocessors import ClearSolutions, Execute
    from traitlets.config import Config

    config = Config()
    exec(compile((release.ROOT / "nbgrader_config.py").read_text(), "nbgrader_config.py", "exec"),  # noqa: S102
         {"get_config": lambda: config})
    classes = {"CourseDirectory": CourseDirectory, "ClearSolutions": ClearSolutions, "Execute": Execute}
    assert set(config) <= set(classes), set(config)
    for section, options in config.items():
        traits = classes[section].class_traits(config=True)
        unknown = [name for name in options if name not in traits]
        assert not unknown, f"{section}: {unknown} are not options nbgrader takes"


def test_nbgrader_writes_its_release_where_the_release_tool_reads_it():
    text = (ROOT / "nbgrader_config.py").read_text()
    assert f'c.CourseDirectory.release_directory = "{release.RELEASE_DIRECTORY}"' in text
    assert not release.RELEASE_DIRECTORY.startswith("sessions")  # --force deletes that folder


@pytest.mark.parametrize("assignment", sorted(a for a, spec in ASSIGNMENTS.items() if spec.written))
def test_written_answers_are_the_students_to_write(assignment):
    """Analysis / Findings: the solution holds the instructor's model answer, the student copy an empty,
    manually graded answer cell worth the assignment's points, after a prompt that asks the question."""
    spec = ASSIGNMENTS[assignment]
    for folder, model_answer in (("solutions", True), ("sessions", False)):
        cells = json.loads((ROOT / folder / spec.notebook).read_text())["cells"]
        for w in spec.written:
            i, cell = next((i, c) for i, c in enumerate(cells)
                           if c["metadata"].get("nbgrader", {}).get("grade_id") == w.cell)
            meta, text = cell["metadata"]["nbgrader"], "".join(cell["source"])
            assert cell["cell_type"] == "markdown" and meta["solution"] and meta["grade"], (folder, meta)
            assert meta["points"] == w.points and not meta.get("locked")
            assert (len(text) > 200) if model_answer else text == "YOUR ANSWER HERE", (folder, text[:200])
            assert f"({w.points} point" in "".join(cells[i - 1]["source"])   # the prompt says what it is worth
