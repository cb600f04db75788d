"""Shared fixtures: the real MNIST (provisioned once per session) and a scratch runs directory."""
from __future__ import annotations

import pytest

from course_utils.data import ensure_mnist, load_uint8


DATA_FIXTURES = {"mnist_root", "mnist_tensors"}


def pytest_collection_modifyitems(config, items):
    """Every test that needs the real MNIST (directly or through another fixture) carries the ``data``
    marker, so ``pytest -m "not data"`` runs exactly the tests that need no data set."""
    for item in items:
        if DATA_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.data)


@pytest.fixture(scope="session")
def mnist_root():
    """The verified data root (``$COURSE_DATA`` or ./data); provisions MNIST if it is not there."""
    return ensure_mnist(verbose=False)


@pytest.fixture(scope="session")
def mnist_tensors(mnist_root):
    return load_uint8(mnist_root)


@pytest.fixture
def runs_dir(tmp_path, monkeypatch):
    d = tmp_path / "runs"
    monkeypatch.setenv("COURSE_RUNS", str(d))
    return d


REUSE_ENV = "COURSE_REUSE_SOLUTION_RUNS"


class SolutionRuns:
    """The graded solution notebooks, executed at full length once per test session (on first use);
    all their run records land in one folder that grader and nbgrader tests grade from.

    For local work on grader tests only, ``COURSE_REUSE_SOLUTION_RUNS=DIR`` reuses the records in DIR
    instead of training; tests that need the notebooks' own execution are then skipped (and say so).
    """

    NOTEBOOKS = {"session2": "session2/4_bn_dropout", "session3": "session3/regularization"}

    def __init__(self, base):
        import os
        from pathlib import Path

        self.reused = os.environ.get(REUSE_ENV)
        self.runs = Path(self.reused).resolve() if self.reused else base / "runs"
        self.base = base
        self._done: dict = {}

    def execute(self, session: str):
        """The notebook's :class:`instructor.notebooks.Executed` (skips when records are reused)."""
        import shutil

        from instructor.notebooks import execute
        from instructor.release import ROOT

        if self.reused:
            pytest.skip(f"{REUSE_ENV} is set: solution notebooks were not executed")
        if session not in self._done:
            src = ROOT / "solutions" / f"{self.NOTEBOOKS[session]}.ipynb"
            work = self.base / session
            work.mkdir()
            shutil.copy(src, work)
            self._done[session] = execute(work / src.name, work, env={"COURSE_RUNS": str(self.runs)})
        return self._done[session]

    def records_of(self, session: str):
        """The runs folder once the session's solution notebook has produced its records."""
        if not self.reused:
            self.execute(session)
        return self.runs


@pytest.fixture(scope="session")
def solution_runs(tmp_path_factory):
    return SolutionRuns(tmp_path_factory.mktemp("solutions"))
