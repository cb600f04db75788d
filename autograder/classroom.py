"""GitHub Classroom points from the grader's results: ``python -m autograder.classroom grade.json``.

Prints ``result=<base64 JSON>`` for ``$GITHUB_OUTPUT``: the payload that GitHub Classroom's
``classroom-resources/autograding-grading-reporter`` reads from ``<RUNNER>_RESULTS`` (one test per check,
with its points; the reporter sums the scores and sends "Points N/M" to the Classroom dashboard). The
maximum counts every assignment of the course (:data:`autograder.assignments.ASSIGNMENTS`), so a notebook
that was deleted, renamed or could not be graded costs its points instead of leaving the total, and each
assignment counts once (a second copy of a notebook adds nothing).
"""
from __future__ import annotations

import base64
import json
import sys
from pathlib import Path


def payload(reports: list[dict]) -> dict:
    """The reporter's JSON: ``{"version": 1, "status", "max_score", "tests": [...]}``."""
    from .assignments import ASSIGNMENTS

    tests, seen = [], set()
    # one report per assignment counts: the notebook at its released path first (a second copy of a
    # notebook elsewhere must not count its points twice)
    reports = sorted(reports, key=lambda r: not str(r.get("notebook", "")).endswith(f"{r.get('assignment')}.ipynb"))
    for r in reports:
        name = Path(str(r.get("notebook", "?"))).name
        if not r.get("assignment") or r.get("error"):
            tests.append(_test(f"{name}: graded", "error", 0, r.get("error") or "could not be graded"))
            continue
        if r["assignment"] in seen:
            continue
        seen.add(r["assignment"])
        for c in r.get("checks", []):
            tests.append(_test(f"{r['assignment']}: {c['title']}", "pass" if c["passed"] else "fail", c["points"],
                               " ".join(str(c["message"]).split()), c["id"], name))
    for a in ASSIGNMENTS.values():
        if a.id not in seen:   # missing, renamed or ungradeable: zero of its points, named
            for c in a.checks:
                tests.append(_test(f"{a.id}: {c.title}", "fail", 0,
                                   f"no graded notebook for {a.id} (expected sessions/{a.id}.ipynb)", c.id))
    max_score = sum(c.points for a in ASSIGNMENTS.values() for c in a.checks)
    status = "error" if any(t["status"] == "error" for t in tests) else \
        "pass" if tests and all(t["status"] == "pass" for t in tests) else "fail"
    return {"version": 1, "status": status, "max_score": max_score, "tests": tests}


def _test(name: str, status: str, score: int, message: str, code: str = "", filename: str = "") -> dict:
    return {"name": name, "status": status, "score": score, "message": message, "test_code": code,
            "filename": filename, "line_no": 0, "execution_time": ""}


def main(argv=None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m autograder.classroom GRADE_JSON   (the file of pytest autograder --grade-json)",
              file=sys.stderr)
        return 2
    path = Path(args[0])
    try:
        reports = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        print(f"no readable grade results in {path} ({e}): every check counts 0", file=sys.stderr)
        reports = []
    reports = reports if isinstance(reports, list) else [reports]
    data = payload([r for r in reports if isinstance(r, dict)])   # anything else is not a grade: it counts 0
    total = sum(t["score"] for t in data["tests"])
    print(f"Points {total}/{data['max_score']}", file=sys.stderr)
    print("result=" + base64.b64encode(json.dumps(data).encode()).decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
