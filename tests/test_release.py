"""The student notebooks: generated from the solutions, up to date, no leaks, no outputs."""
from __future__ import annotations

import json
import shutil

import pytest

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
