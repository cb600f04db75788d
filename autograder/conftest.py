"""pytest front end of the grader: ``pytest autograder --submission PATH [--retrain]``.

Each check of each submitted notebook becomes one test, marked with its points; a failing test's
message is the grader's feedback, and the summary prints the score table. Grading itself runs in
worker processes (:mod:`autograder.grade`), exactly as ``course grade`` does.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest


def pytest_addoption(parser):
    g = parser.getgroup("course grader")
    g.addoption("--submission", action="append", default=[], metavar="PATH",
                help="notebook (or folder of notebooks) to grade; repeatable")
    g.addoption("--retrain", action="store_true",
                help="train each graded run again from scratch (its config's seed) and judge those weights, "
                     "instead of the submitted checkpoint")
    g.addoption("--grader-seed", type=int, default=None,
                help="retrain mode: train with this seed instead of each config's own")
    g.addoption("--assignment", default=None, help="e.g. session2/4_bn_dropout (default: from the file name)")
    g.addoption("--submission-runs", action="append", default=None, metavar="DIR",
                help="where the submission's run records are (default: runs/ next to the notebook)")
    g.addoption("--grade-json", default=None, metavar="FILE", help="write all results to this JSON file")


def pytest_configure(config):
    config.addinivalue_line("markers", "points(n): points the grading check is worth")


def _submissions(config) -> list[Path]:
    from autograder.grade import find_notebooks

    paths = config.getoption("--submission")
    if not paths:
        raise pytest.UsageError("pytest autograder grades a notebook: pass --submission PATH "
                                "(e.g. --submission sessions/session2/4_bn_dropout.ipynb)")
    found = find_notebooks(paths)
    if not found:
        raise pytest.UsageError(f"no notebooks found at {', '.join(paths)}")
    return found


def pytest_generate_tests(metafunc):
    if "check_id" not in metafunc.fixturenames:
        return
    from autograder.assignments import identify

    params = []
    for nb in _submissions(metafunc.config):
        try:
            checks = identify(nb, metafunc.config.getoption("--assignment")).checks
        except ValueError:
            params.append(pytest.param(str(nb), None, id=f"{nb.stem}::identify"))
            continue
        params += [pytest.param(str(nb), c.id, id=f"{nb.parent.name}/{nb.stem}::{c.id}[{c.points}pt]",
                                marks=pytest.mark.points(c.points))
                   for c in checks]
    metafunc.parametrize(("submission", "check_id"), params)


_REPORTS: dict = {}


@pytest.fixture(scope="session")
def graded(pytestconfig):
    """Grades each submission once (all its checks in one worker) and caches the report."""
    from autograder.grade import grade
    from course_utils.policy import GRADER_SEED

    def get(path: str):
        if path not in _REPORTS:
            seed = pytestconfig.getoption("--grader-seed")
            _REPORTS[path] = grade(path, assignment=pytestconfig.getoption("--assignment"),
                                   retrain=pytestconfig.getoption("--retrain"),
                                   seed=GRADER_SEED if seed is None else seed,  # None: the configs' seeds
                                   runs_dirs=pytestconfig.getoption("--submission-runs"))
        return _REPORTS[path]
    return get


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if not _REPORTS:
        return
    terminalreporter.section("grade")
    for report in _REPORTS.values():
        terminalreporter.write_line(report.table())
    total = sum(r.score for r in _REPORTS.values())
    out_of = sum(r.max_score for r in _REPORTS.values())
    terminalreporter.write_line(f"score: {total}/{out_of}")
    path = config.getoption("--grade-json")
    if path:
        Path(path).write_text(json.dumps([r.to_dict() for r in _REPORTS.values()], indent=2) + "\n")
        terminalreporter.write_line(f"results: {path}")
