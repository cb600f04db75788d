"""Reading a submitted notebook without running it: the tagged-cell convention.

The course notebooks tag their code cells (cell metadata ``tags``):

* ``setup``        imports and settings,
* ``definitions``  the student's code: model classes, ``GhostBatchNorm``, penalty functions,
* ``config``       the training config (``CONFIG``, or Session 3's ``VARIANTS``),
* ``data`` / ``training`` / ``results`` / ``test``: never run by the grader (the sandboxed grader has no
  data set: a cell that loads MNIST to show it is tagged ``data``).

The grader runs only ``setup``, ``definitions`` and ``config`` cells, in notebook order, in a
separate process (:mod:`autograder.worker`), so grading never retrains and never trusts what a
training or results cell printed. This module only parses JSON: it imports no torch and runs no
student code, and it never writes to the submission.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

GRADED_TAGS = ("setup", "definitions", "config")
REQUIRED_TAGS = ("definitions", "config")


class SubmissionError(Exception):
    """The submission cannot be read as a course notebook; the message says what to fix."""


@dataclass(frozen=True)
class CodeCell:
    index: int
    tag: str
    grade_id: str | None
    source: str


_MAGIC = re.compile(r"^\s*[%!]")


def _clean(source: str) -> str:
    """Drop IPython magics and shell escapes (``%matplotlib``, ``!pip``): not Python, not needed."""
    return "\n".join("pass  # (magic removed by the grader)" if _MAGIC.match(line) else line
                     for line in source.splitlines())


def read_notebook(path: str | Path) -> dict:
    """The notebook as JSON, or :class:`SubmissionError` naming what is wrong with the file."""
    path = Path(path)
    if not path.exists():
        raise SubmissionError(f"{path}: no such file")
    if path.is_dir():
        raise SubmissionError(f"{path} is a folder, not a notebook")
    try:
        nb = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise SubmissionError(f"{path.name} is not a text file (expected a Jupyter notebook, .ipynb)") from None
    except json.JSONDecodeError as e:
        raise SubmissionError(f"{path.name} is not valid notebook JSON (line {e.lineno}, column {e.colno}: {e.msg}). "
                              "Open it in Jupyter and save it again, or restore it from git.") from None
    if not isinstance(nb, dict) or not isinstance(nb.get("cells"), list):
        raise SubmissionError(f"{path.name} is JSON but not a Jupyter notebook (no list of cells)")
    return nb


def code_cells(nb: dict, tags=GRADED_TAGS) -> list[CodeCell]:
    """The code cells carrying one of ``tags``, in notebook order."""
    out = []
    for i, cell in enumerate(nb["cells"]):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        meta = cell.get("metadata") or {}
        cell_tags = meta.get("tags") or []
        tag = next((t for t in tags if t in cell_tags), None)
        if tag is None:
            continue
        src = cell.get("source", "")
        src = "".join(src) if isinstance(src, list) else str(src)
        out.append(CodeCell(i, tag, (meta.get("nbgrader") or {}).get("grade_id"), _clean(src)))
    return out


def graded_code(path: str | Path, required=REQUIRED_TAGS) -> list[CodeCell]:
    """The cells the grader runs; :class:`SubmissionError` when a required tagged cell is missing
    (deleted, or its tag removed) so the message can say which one."""
    nb = read_notebook(path)
    cells = code_cells(nb)
    present = {c.tag for c in cells}
    missing = [t for t in required if t not in present]
    if missing:
        raise SubmissionError(
            f"{Path(path).name} has no code cell tagged {' or '.join(repr(t) for t in missing)}. The grader runs only "
            "the cells tagged setup/definitions/config (View > Cell Toolbar > Tags in Jupyter). Restore the "
            "cell from the released notebook and keep your code inside it.")
    return cells


