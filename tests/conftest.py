"""Shared fixtures: the real MNIST (provisioned once per session) and a scratch runs directory."""
from __future__ import annotations

import pytest

from autograder.assignments import ASSIGNMENTS
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

    #: session -> its notebook that grades training runs (one per session: the assignments say which)
    NOTEBOOKS = {a.session: a.id for a in ASSIGNMENTS.values() if a.trains}

    def __init__(self, base):
        import os
        from pathlib import Path

        self.reused = os.environ.get(REUSE_ENV)
        self.runs = Path(self.reused).resolve() if self.reused else base / "runs"
        self.base = base
        self._done: dict = {}

    #: sessions whose runs `course train NOTEBOOK --workers 5` trains first, side by side: Session 3's five
    #: variants, by the notebook's own cells, all five at once in processes of one torch thread (on two
    #: cores that keeps both busy to the end, where two workers would leave one idle for the fifth); the
    #: notebook's training cell then reuses those records (``reuse=True``), so each is trained once
    SIDE_BY_SIDE = {"session3": 5}

    def execute(self, session: str):
        """The notebook's :class:`instructor.notebooks.Executed` (skips when records are reused)."""
        import os
        import shutil
        import subprocess
        import sys

        from instructor.notebooks import execute
        from instructor.release import ROOT

        if self.reused:
            pytest.skip(f"{REUSE_ENV} is set: solution notebooks were not executed")
        if session not in self._done:
            src = ROOT / "solutions" / f"{self.NOTEBOOKS[session]}.ipynb"
            work = self.base / session
            work.mkdir()
            shutil.copy(src, work)
            env = {"COURSE_RUNS": str(self.runs), "COURSE_DATA": str(ensure_mnist(verbose=False))}
            if session in self.SIDE_BY_SIDE:
                proc = subprocess.run([sys.executable, "-m", "course", "train", str(work / src.name), "--workers",
                                       str(self.SIDE_BY_SIDE[session])],
                                      env={**os.environ, **env}, capture_output=True, text=True, timeout=6 * 3600)
                assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
                self.side_by_side_log = proc.stdout
            self._done[session] = execute(work / src.name, work, env=env)
        return self._done[session]

    def records_of(self, session: str):
        """The runs folder once the session's solution notebook has produced its records."""
        if not self.reused:
            self.execute(session)
        return self.runs


@pytest.fixture(scope="session")
def solution_runs(tmp_path_factory):
    return SolutionRuns(tmp_path_factory.mktemp("solutions"))
