"""One test per grading check of each ``--submission`` notebook (see ``autograder/conftest.py``)."""


def test_check(submission, check_id, graded):
    report = graded(submission)
    assert report.error is None, report.error
    assert check_id is not None, "cannot tell which assignment this notebook is: pass --assignment"
    result = next(c for c in report.checks if c.id == check_id)
    assert result.passed, f"{result.id} ({result.points}/{result.max_points}): {result.message}"
