"""Hand in a notebook with exactly the run records it will be graded on: ``course submit NOTEBOOK.ipynb``.

1. reads the notebook's config cells (``CONFIG``, or Session 3's ``VARIANTS``: your own code, run here on
   your request) and finds, for each config, the run record the grader will grade: the newest one trained
   with exactly that config, seed included (``autograder.judge.submitted_record``, the grader's own rule),
   in ``runs/`` next to the notebook (or ``--runs-dir``);
2. if one is missing, says which and why (the folders searched, the closest record and how
   its config differs) and writes nothing (exit status 1);
3. grades the notebook against those records as ``course grade`` does (a self-check: the table you will
   get), then writes ``<notebook>-submission.zip`` with the notebook and only those records' files
   (``config.json``, ``metrics.json``, ``model.pt``): no smoke runs, other seeds or partial checkpoints.
"""
from __future__ import annotations

import sys
import zipfile
from pathlib import Path

from course_utils.records import RECORD_FILES

def graded_records(nb: Path, runs_dirs: list[Path]) -> list:
    """The run records the grader will grade for this notebook, one per config (none for an assignment
    that grades no training run); raises SystemExit with the grader's message when one is missing."""
    from autograder.assignments import identify
    from autograder.judge import CheckFailed, submitted_record

    from .notebook_runs import namespace, runs

    try:
        spec = identify(nb)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    if spec.runs is None:
        return []   # structure-graded only: the notebook alone is the submission
    records = []
    for label, _, _, config in runs(namespace(nb)):
        try:
            records.append(submitted_record(config, runs_dirs))   # complete records only
        except CheckFailed as e:
            raise SystemExit(f"error: {label}: {e}") from None
    return records


def main(path: str, runs_dir: str | None, out: str | None) -> int:
    from autograder.grade import default_runs_dirs, grade

    nb = Path(path)
    if not nb.is_file():
        print(f"error: no such notebook: {path}", file=sys.stderr)
        return 2
    runs_dirs = [Path(runs_dir).resolve()] if runs_dir else default_runs_dirs(nb)
    try:
        records = graded_records(nb.resolve(), runs_dirs)
    except SystemExit as e:
        print(e, file=sys.stderr)
        return 1
    for rec in records:
        print(f"{rec.config.name} (seed {rec.config.seed}): {rec.path}")
    report = grade(nb, runs_dirs=runs_dirs)
    print(report.table())
    dest = Path(out) if out else nb.with_name(f"{nb.stem}-submission.zip")
    if dest.is_dir():   # a folder: the zip goes into it
        dest = dest / f"{nb.stem}-submission.zip"
    with zipfile.ZipFile(dest, "w", zipfile.ZIP_DEFLATED) as z:
        z.write(nb, nb.name)
        for rec in records:
            for f in RECORD_FILES:
                z.write(rec.path / f, f"runs/{rec.path.name}/{f}")
    print(f"wrote {dest}: {nb.name} and {len(records)} run record(s); self-check {report.score}/{report.max_score}"
          + ("" if report.passed else " (see What to change above)"))
    return 0
