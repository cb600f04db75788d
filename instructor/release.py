"""Generate the student notebooks (``sessions/``) from the solution notebooks (``solutions/``).

    python -m instructor.release            regenerate sessions/<assignment>/*.ipynb   (make release)
    python -m instructor.release --check    fail when sessions/ is stale, leaks a solution or a
                                            hidden test, or any committed notebook has outputs

``nbgrader generate_assignment`` runs in a scratch copy of the course, so the repository's own
gradebook and the session folders' other files (README reports, figures) are left alone; only the
notebooks are written into ``sessions/``.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from autograder.assignments import ASSIGNMENTS as GRADED

ROOT = Path(__file__).resolve().parents[1]
#: nbgrader assignments = the sessions of the graded notebooks (autograder/assignments.py, their one home)
ASSIGNMENTS = tuple(dict.fromkeys(a.session for a in GRADED.values()))
#: where nbgrader_config.py tells ``nbgrader generate_assignment`` to write (a test checks they agree)
RELEASE_DIRECTORY = "build/release"
MARKERS = re.compile(r"BEGIN SOLUTION|END SOLUTION|BEGIN HIDDEN TESTS|END HIDDEN TESTS")


def _nbgrader_env() -> dict:
    env = dict(os.environ)
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # nbgrader calls alembic
    return env


def generate(root: Path = ROOT, assignments=ASSIGNMENTS) -> dict[str, dict[str, str]]:
    """Run nbgrader in a scratch course; return ``{assignment: {notebook name: json text}}``."""
    out = {}
    with tempfile.TemporaryDirectory(prefix="release-") as tmp:
        course = Path(tmp)
        shutil.copy(root / "nbgrader_config.py", course)
        for a in assignments:
            src = root / "solutions" / a
            if not src.is_dir():
                continue
            shutil.copytree(src, course / "solutions" / a, ignore=shutil.ignore_patterns("runs", ".ipynb_checkpoints",
                                                                                          "__pycache__"))
            proc = subprocess.run([sys.executable, "-m", "nbgrader", "generate_assignment", a, "--force"],
                                  cwd=course, capture_output=True, text=True, env=_nbgrader_env())
            if proc.returncode != 0:
                raise RuntimeError(f"nbgrader generate_assignment {a} failed:\n{proc.stderr[-3000:]}")
            out[a] = {p.name: p.read_text() for p in sorted((course / RELEASE_DIRECTORY / a).glob("*.ipynb"))}
    return out


def release(root: Path = ROOT) -> list[Path]:
    """Write the generated notebooks into ``sessions/``; remove student notebooks with no source."""
    written = []
    for a, notebooks in generate(root).items():
        dest = root / "sessions" / a
        dest.mkdir(parents=True, exist_ok=True)
        for old in dest.glob("*.ipynb"):
            if old.name not in notebooks:
                old.unlink()
        for name, text in notebooks.items():
            (dest / name).write_text(text)
            written.append(dest / name)
    return written


def _solution_lines(nb: dict) -> set[str]:
    """Distinctive code lines inside solution regions (what a student copy must not contain)."""
    lines, inside = set(), False
    for cell in nb["cells"]:
        for line in "".join(cell.get("source", "")).splitlines():
            s = line.strip()
            if "BEGIN SOLUTION" in s or "BEGIN HIDDEN TESTS" in s:
                inside = True
            elif "END SOLUTION" in s or "END HIDDEN TESTS" in s:
                inside = False
            elif inside and len(s) > 25 and not s.startswith("#"):
                lines.add(s)
    return lines


def check(root: Path = ROOT) -> list[str]:
    """Problems with the committed notebooks; an empty list means all is well."""
    problems = []
    for p in sorted(list((root / "sessions").rglob("*.ipynb")) + list((root / "solutions").rglob("*.ipynb"))):
        if ".ipynb_checkpoints" in p.parts:
            continue
        try:
            nb = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            problems.append(f"{p.relative_to(root)}: not valid notebook JSON ({e})")
            continue
        if any(c.get("outputs") or c.get("execution_count") for c in nb["cells"] if c["cell_type"] == "code"):
            problems.append(f"{p.relative_to(root)}: has outputs (clear them before committing)")
        if "sessions" in p.relative_to(root).parts[:1]:
            text = p.read_text()
            if MARKERS.search(text):
                problems.append(f"{p.relative_to(root)}: contains solution or hidden-test markers")
            src = root / "solutions" / p.parent.name / p.name
            if src.is_file():
                leaked = [ln for ln in _solution_lines(json.loads(src.read_text())) if ln in text]
                if leaked:
                    problems.append(f"{p.relative_to(root)}: leaks solution code, e.g. {leaked[0]!r}")
    generated = generate(root)
    for a, notebooks in generated.items():
        dest = root / "sessions" / a
        committed = {p.name for p in dest.glob("*.ipynb")} if dest.is_dir() else set()
        for name in sorted(set(notebooks) | committed):
            if name not in committed:
                problems.append(f"sessions/{a}/{name}: missing (run `make release`)")
            elif name not in notebooks:
                problems.append(f"sessions/{a}/{name}: has no source in solutions/{a} (run `make release`)")
            elif (dest / name).read_text() != notebooks[name]:
                problems.append(f"sessions/{a}/{name}: stale, differs from what solutions/{a}/{name} generates "
                                "(run `make release`; never edit sessions/ by hand)")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check", action="store_true", help="check instead of writing")
    args = ap.parse_args(argv)
    try:
        return _run(args.check)
    except RuntimeError as e:   # nbgrader missing or failing: its message, not a traceback
        print(f"error: {e}", file=sys.stderr)
        return 1


def _run(check_only: bool) -> int:
    if check_only:
        problems = check()
        for p in problems:
            print(f"FAIL {p}")
        print("sessions/ is up to date, with no solutions, hidden tests or outputs" if not problems
              else f"{len(problems)} problem(s)")
        return 1 if problems else 0
    for p in release():
        print(f"wrote {p.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
