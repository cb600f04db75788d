"""Execute course notebooks headless (tests, ``make reproduce``) and collect what went wrong per cell.

    python -m instructor.notebooks solutions/session2/4_bn_dropout.ipynb [...]   (full length)

Run records go to ``$COURSE_RUNS`` (``make reproduce`` points it at the repository's ``runs/``), so
no training output lands inside ``solutions/`` (nbgrader would copy it over submissions).
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nbformat


@dataclass
class CellError:
    index: int
    grade_id: str | None
    tags: list
    ename: str
    evalue: str
    traceback: list = ()   # what the notebook (and nbgrader's feedback) displays for the error


@dataclass
class Executed:
    notebook: nbformat.NotebookNode
    errors: list[CellError]
    seconds: float

    def error_for(self, grade_id: str) -> CellError | None:
        return next((e for e in self.errors if e.grade_id == grade_id), None)

    def graded_ids(self) -> list[str]:
        """The autograded (test) cells: code cells with points; written answers are graded by hand."""
        return [c.metadata["nbgrader"]["grade_id"] for c in self.notebook.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade")]

    def text(self) -> str:
        """All stream output of the executed notebook (for asserting on what it printed)."""
        return "".join(o.get("text", "") for c in self.notebook.cells if c.cell_type == "code"
                       for o in c.get("outputs", []) if o.get("output_type") == "stream")


def execute(path: str | os.PathLike, workdir: str | os.PathLike, *, env: dict | None = None,
            timeout: int = 3600) -> Executed:
    """Execute a copy of the notebook at ``path`` with ``workdir`` as its folder; never raises for
    a failing cell (each cell error is returned instead)."""
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", allow_errors=True,
                            resources={"metadata": {"path": str(workdir)}})
    old = dict(os.environ)
    os.environ.update(env or {})
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    t = time.perf_counter()
    try:
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(old)
    errors = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if out.get("output_type") == "error":
                errors.append(CellError(i, cell.metadata.get("nbgrader", {}).get("grade_id"),
                                        cell.metadata.get("tags", []), out["ename"], out["evalue"],
                                        list(out.get("traceback", []))))
    return Executed(nb, errors, time.perf_counter() - t)


def _first_line(e: BaseException) -> str:
    lines = str(e).strip().splitlines()
    return f"{type(e).__name__}" + (f": {lines[0][:300]}" if lines else "")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m instructor.notebooks",
                                 description="Execute notebooks headless at full length (a temporary copy of each; "
                                             "run records go to $COURSE_RUNS) and list the cells that failed.")
    ap.add_argument("notebooks", nargs="+", type=Path)
    paths = ap.parse_args(argv).notebooks
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        ap.error(f"no such notebook: {', '.join(missing)}")
    failed = 0
    for p in paths:
        print(f"executing {p} ...", flush=True)
        try:
            nbformat.read(p, as_version=4)
        except Exception as e:  # noqa: BLE001 - not a notebook nbformat can read: say so, go on with the next
            print(f"  FAILED: cannot read it as a notebook: {_first_line(e)}")
            failed += 1
            continue
        with tempfile.TemporaryDirectory() as tmp:
            shutil.copy(p, tmp)
            try:
                res = execute(Path(tmp) / Path(p).name, tmp)
            except Exception as e:  # noqa: BLE001 - the kernel died, timed out or would not start
                print(f"  FAILED: the kernel stopped: {_first_line(e)}")
                failed += 1
                continue
        for e in res.errors:
            print(f"  cell {e.index} ({e.grade_id or ','.join(e.tags) or 'code'}): {e.ename}: {e.evalue[:300]}")
        print(f"  {'OK' if not res.errors else 'FAILED'} in {res.seconds:.0f} s")
        failed += bool(res.errors)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
