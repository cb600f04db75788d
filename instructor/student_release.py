"""Build the student-facing template repository (GitHub Classroom starter code).

    python -m instructor.student_release [--out build/student-template]     (make student-release)

The template holds what a student needs and nothing an instructor keeps back:

* ``sessions/``   the generated student notebooks (stubs, visible tests only);
* ``course_utils/`` the course library, ``autograder/`` the grader and ``course/`` the command
  front door, each copied whole (the instructor tools and reference solutions live in
  ``instructor/``, which is not copied);
* ``pyproject.toml``, ``environment.yml``, a student ``Makefile`` and ``README.md``;
* ``.github/workflows/classroom.yml``: on every push, installs the environment, provisions MNIST and
  runs ``pytest autograder --submission sessions`` (checkpoint mode: the run records the student
  commits under ``sessions/*/runs/``), writes the score table to the job summary and reports the points
  to GitHub Classroom (``autograder.classroom`` + Classroom's grading reporter action).

:func:`leaks` scans a built template for solution code, hidden tests, solution markers, the
reference solutions, data and checkpoints; the build fails if it finds any (and a test checks it).
"""
from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from .release import MARKERS, ROOT, _solution_lines

WORKFLOW_NAME = "classroom.yml"   # where GitHub Classroom looks for autograding

#: The first code cell of every course notebook (a test checks the solution notebooks hold exactly this):
#: on Colab, or in any Python without the course package, it installs the grader package (``build_grader``:
#: the library, the grader and the command line) from the address ``build`` writes into ``COURSE_PACKAGE``
#: when given ``grader_repo``/``grader_ref``; where the package is installed it does nothing. Its tag is not
#: one the grader runs.
INSTALL_TAG = "install"
INSTALL_CELL = """\
# On Colab, or in any Python without the course package: install it first (about a minute).
COURSE_PACKAGE = ""  # the course package's address (git+https://...@commit): your instructor fills it in
import importlib.util
if importlib.util.find_spec("course_utils") is None:
    if not COURSE_PACKAGE:
        raise SystemExit("The course package is not installed in this Python. On your machine: run `make` in "
                         "your course repository and choose its .venv as the notebook's kernel. On Colab: set "
                         "COURSE_PACKAGE above to the address your instructor gives you, then run this cell again.")
    import subprocess, sys
    subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", COURSE_PACKAGE])
    importlib.invalidate_caches()
"""


def install_address(grader_repo: str, grader_ref: str) -> str:
    """What the install cell pip-installs: the grader repository at the pinned commit."""
    return f"git+{grader_repo}@{grader_ref}" if grader_ref else f"git+{grader_repo}"


def _fill_install_cell(notebook: Path, address: str) -> None:
    import json

    nb = json.loads(notebook.read_text())
    for cell in nb["cells"]:
        if INSTALL_TAG in cell.get("metadata", {}).get("tags", []):
            source = "".join(cell["source"]).replace('COURSE_PACKAGE = ""', f"COURSE_PACKAGE = {address!r}", 1)
            cell["source"] = source.splitlines(keepends=True)
    notebook.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc", ".ipynb_checkpoints", "runs", "*.egg-info")

WORKFLOW = """\
# GitHub Classroom autograding: grades this repository on every push with the course's grader
# (checkpoint mode) and reports the points to the Classroom dashboard. Train in the notebooks, commit
# the notebooks *and* the run records they write under sessions/<session>/runs/, push, and read the
# score table in the workflow run's summary.
name: Autograding Tests
on: [push, repository_dispatch, workflow_dispatch]
permissions:
  checks: write
  actions: read
  contents: read
jobs:
  run-autograding-tests:
    name: Autograding Tests           # the check run the Classroom reporter writes the points to
    runs-on: ubuntu-latest
    # not on the template's first commit, which GitHub Classroom's bot pushes into each new repository
    if: github.actor != 'github-classroom[bot]'
    timeout-minutes: 45
    steps:
      - uses: actions/checkout@v4
      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
      - name: Install (CPU PyTorch, the course package)
        run: |
          python -m pip install --upgrade pip
          python -m pip install torch torchvision --index-url https://download.pytorch.org/whl/cpu
          python -m pip install -e .
      - name: Pinned grader
        # The grader is the course's, not this repository's: with GRADER_REPO/GRADER_REF set (make
        # student-release GRADER_REPO=... GRADER_REF=...) its three packages are replaced by those of the
        # grader repository (built by make student-release in build/grader: no solutions in it) at that
        # commit; either way every grader file must match grader.sha256, written when the template was
        # built. An edited test or check fails here, or is replaced, instead of changing the grade.
        env:
          GRADER_REPO: "{grader_repo}"
          GRADER_REF: "{grader_ref}"
        run: |
          if [ -n "$GRADER_REPO" ]; then
            git clone --quiet "$GRADER_REPO" /tmp/grader && git -C /tmp/grader checkout --quiet "$GRADER_REF"
            for d in autograder course_utils course; do rm -rf "$d" && cp -r "/tmp/grader/$d" "$d"; done
          fi
          sha256sum --check --quiet grader.sha256 || {{ echo "::error::grader files differ from the pinned copy (grader.sha256)"; exit 1; }}
      - uses: actions/cache@v4
        with:
          path: data
          key: mnist-md5-v1
      - name: MNIST (verified by MD5)
        run: python -m course data
      - name: Grade
        run: python -m pytest autograder --submission sessions --grade-json grade.json -p no:cacheprovider -q
      - name: Classroom points
        id: points
        if: always()
        run: python -m autograder.classroom grade.json >> "$GITHUB_OUTPUT"
      - name: Score table
        if: always()
        run: |
          python - <<'EOF' >> "$GITHUB_STEP_SUMMARY"
          import json, pathlib
          p = pathlib.Path("grade.json")
          if not p.exists():
              print("Grading did not run: see the job log."); raise SystemExit
          for r in json.loads(p.read_text()):
              print(f"### {{r['notebook']}}: {{r['score']}}/{{r['max_score']}}\\n")
              print("| check | points | result | reason |\\n| --- | --- | --- | --- |")
              for c in r["checks"]:
                  reason = " ".join(c["message"].split()).replace("|", "/")[:300]
                  print(f"| {{c['id']}} | {{c['points']}}/{{c['max_points']}} | {{'PASS' if c['passed'] else 'FAIL'}} | {{reason}} |")
              print()
          EOF
      - name: Report points to GitHub Classroom
        if: always()
        uses: classroom-resources/autograding-grading-reporter@v1
        env:
          POINTS_RESULTS: "${{{{ steps.points.outputs.result }}}}"
        with:
          runners: points
      - uses: actions/upload-artifact@v4
        if: always()
        with:
          name: grade
          path: grade.json
"""

MAKEFILE = """\
# Student front door: make setup | make data | make grade
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup data grade

$(VENV)/.installed: pyproject.toml
\t@test -x $(PY) || $(PYTHON) -m venv $(VENV)
\t@$(PY) -m pip install -q -e .
\t@touch $@

setup: $(VENV)/.installed

data: setup
\t@$(PY) -m course data

# grade every notebook under sessions/ from the run records next to it, as CI does
grade: data
\t@$(PY) -m course grade sessions
"""

#: ignored at any depth: data, smoke-run records, partial checkpoints, grader output and caches (the
#: graded run records under sessions/<session>/runs/ are committed)
GITIGNORE = """\
.venv/
data/
__pycache__/
*.egg-info/
.ipynb_checkpoints/
.pytest_cache/
grades/
grade.json
**/runs/*-quick-*/
*.pt.tmp
"""

README = """\
# MNIST 99.4% under 10k parameters: your course repository

    make grade      # set up, fetch MNIST, grade every notebook under sessions/ (as CI does on push)

1. Set up `.venv` and fetch MNIST into `data/` (MD5-verified; it is never committed), then open the first
   notebook (the second command is interactive: it starts Jupyter in your browser):

       make data
       .venv/bin/jupyter lab sessions/session2/1_skeleton.ipynb

2. Replace each `raise NotImplementedError` stub (cells marked YOUR CODE HERE) and run the test cell
   under it; its message says what to change. Write your Analysis (Session 2) and Findings (Session 3) in
   the answer cells that say YOUR ANSWER HERE: your instructor grades them by hand.
3. Run the training cells: each run writes a record (config, per-epoch metrics, checkpoint) under
   `sessions/<session>/runs/`. Session 3 trains five variants; with two or more cores this trains them side
   by side from your notebook's cells (one process each), and the notebook's training cell then reuses
   those records instead of training again:

       .venv/bin/course train sessions/session3/regularization.ipynb

4. Check everything gradable so far: this grades the saved notebooks the way the course's grader does and
   prints the points per check (the last cell of `4_bn_dropout` and of Session 3's notebook does the same
   from inside them):

       .venv/bin/course check sessions

5. Before you hand in, this checks that the run records the grader will grade are there (it names any
   that is missing and why), shows your grade, and writes a zip with the notebook and exactly those records:

       .venv/bin/course submit sessions/session2/4_bn_dropout.ipynb

6. Commit the notebooks **and** their `runs/` folders, then push. The `Autograding Tests` workflow grades
   your push: the grader rebuilds your model from the notebook's tagged cells (setup / definitions /
   config; keep the tags), evaluates your checkpoint itself on the MNIST test set, and checks parameters
   (< {s2.max_parameters:,}), no fully connected layer, epochs (< {s2.epoch_limit} in Session 2, < {s3.epoch_limit} in Session 3) and
   >= {s2.min_accuracy}% in each of the last {s2.consistent_epochs} epochs. The score table is in the workflow run's summary. Your instructor may also
   retrain your model from scratch (`course grade --retrain`: your config, its seed or one they choose), so a
   lucky checkpoint is not enough.

To grade one notebook and keep the result as JSON under `grades/`:

    .venv/bin/course grade sessions/session2/4_bn_dropout.ipynb

On Colab (or any Jupyter without this repository's `.venv`), each notebook's first code cell installs the
course package where it is missing, from the address your instructor wrote into it (if there is none, the
cell says what to do); MNIST is then downloaded in the Colab session. The run records stay there too:
download the notebook and its `runs/` folder into `sessions/<session>/` here before you commit.
"""


def manifest(template: Path) -> str:
    """``sha256sum``-format lines for every grader file (autograder/, course_utils/, course/) of a template."""
    import hashlib

    lines = []
    for d in ("autograder", "course_utils", "course"):
        for p in sorted((template / d).rglob("*")):
            if p.is_file() and "__pycache__" not in p.parts:
                lines.append(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(template).as_posix()}")
    return "\n".join(lines) + "\n"


GRADER_PACKAGES = ("course_utils", "autograder", "course")

GRADER_README = """\
# The MNIST course's grader ({version})

The grader students' workflows run, on its own: `autograder/` (the grader: assignments, sandboxed worker,
judge, `course grade`), `course_utils/` (the library it and the notebooks use) and `course/` (the
command line), copied whole from the course repository by `make student-release`. It holds no solutions,
hidden tests or reference models. `grader.sha256` lists every file's SHA-256; the student template's
workflow (`GRADER_REPO`/`GRADER_REF`) fetches this repository at a pinned commit and checks that list.

    pip install -e .          # then: course grade NOTEBOOK.ipynb
"""


MARK = "grader.sha256"   # every build writes it, first as a placeholder: what makes a folder replaceable


def _refusal(out: Path, root: Path = ROOT) -> str | None:
    """Why ``out`` must not be (re)built into, or None. Only an earlier build (it has ``grader.sha256``, written
    first, so an interrupted build counts) that is not a git working tree is ever removed: a clone of the
    pushed template keeps its history, other folders and the course repository are left alone."""
    out, root = Path(out).resolve(), Path(root).resolve()
    if out == root or out in root.parents:
        return (f"{out}: refusing to build there: it is (or holds) the course repository; give a folder of its "
                "own, e.g. build/student-template")
    if out.exists() and not out.is_dir():
        return f"{out} is a file; give a folder"
    if out.is_dir() and any(out.iterdir()):
        if (out / ".git").exists():
            return (f"{out} is a git working tree; refusing to replace it (its history would be lost). Build into "
                    "an empty folder, then copy the files over your clone.")
        if not (out / MARK).is_file():
            return f"{out} is not empty and is not an earlier build (no {MARK}); refusing to replace it. Give a " \
                   "new or empty folder."
    return None


def _replace(out: Path, root: Path) -> Path:
    """``out`` as a new empty folder holding only the build's placeholder mark (see :func:`_refusal`)."""
    why = _refusal(out, root)
    if why:
        raise RuntimeError(why)
    out = Path(out).resolve()
    if out.is_dir():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    (out / MARK).write_text("an unfinished build: run make student-release again\n")
    return out


def build_grader(out: Path, root: Path = ROOT) -> Path:
    """The grader as its own artifact in ``out`` (an earlier build there is replaced: :func:`_replace`): the three grader packages, a
    ``pyproject.toml`` versioned with the grader's digest, a README and ``grader.sha256``; push it as a
    public repository so that pinned grading never needs the course repository (which holds solutions)."""
    from autograder.classgrade import grader_version

    out = _replace(out, root)
    for package in GRADER_PACKAGES:
        shutil.copytree(root / package, out / package, ignore=IGNORE)
    version = grader_version()
    text = (root / "pyproject.toml").read_text()
    text = text.replace('name = "course-utils"', 'name = "mnist-course-grader"')
    text = text.replace('include = ["course", "course_utils*", "autograder*", "instructor*"]',
                        'include = ["course", "course_utils*", "autograder*"]')
    text = text.replace('testpaths = ["tests"]', 'testpaths = ["autograder"]')
    (out / "pyproject.toml").write_text(text)
    (out / "README.md").write_text(GRADER_README.format(version=version))
    (out / "VERSION").write_text(version + "\n")
    (out / MARK).write_text(manifest(out))
    problems = leaks(out, root)
    if problems:
        raise RuntimeError("the grader artifact would leak instructor material:\n" + "\n".join(problems))
    return out


def build(out: Path, root: Path = ROOT, grader_repo: str = "", grader_ref: str = "") -> Path:
    """Write the template into ``out`` (an earlier build there is replaced); raise if it would leak anything.
    ``grader_repo``/``grader_ref`` make the student workflow fetch the grader from that commit of the
    grader repository (:func:`build_grader`)."""
    out = _replace(out, root)
    for a in sorted(p for p in (root / "sessions").iterdir() if p.is_dir()):
        dest = out / "sessions" / a.name
        dest.mkdir(parents=True)
        for nb in sorted(a.glob("*.ipynb")):
            shutil.copy(nb, dest / nb.name)
            if grader_repo:
                _fill_install_cell(dest / nb.name, install_address(grader_repo, grader_ref))
    for package in GRADER_PACKAGES:
        shutil.copytree(root / package, out / package, ignore=IGNORE)
    for name in ("pyproject.toml", "environment.yml"):
        shutil.copy(root / name, out / name)
    text = (out / "pyproject.toml").read_text()
    (out / "pyproject.toml").write_text(text.replace('testpaths = ["tests"]', 'testpaths = ["autograder"]'))
    (out / "Makefile").write_text(MAKEFILE)
    from course_utils.policy import POLICIES

    (out / "README.md").write_text(README.format(s2=POLICIES["session2"], s3=POLICIES["session3"]))
    (out / ".gitignore").write_text(GITIGNORE)
    (out / ".github" / "workflows").mkdir(parents=True)
    (out / ".github" / "workflows" / WORKFLOW_NAME).write_text(WORKFLOW.format(grader_repo=grader_repo,
                                                                              grader_ref=grader_ref))
    (out / MARK).write_text(manifest(out))
    problems = leaks(out, root)
    if problems:
        raise RuntimeError("the student template would leak instructor material:\n" + "\n".join(problems))
    return out


def leaks(template: Path, root: Path = ROOT) -> list[str]:
    """Solution code, hidden tests, markers, reference solutions, data or checkpoints in ``template``."""
    import json

    solution_lines = set()
    for nb in (root / "solutions").rglob("*.ipynb"):
        solution_lines |= _solution_lines(json.loads(nb.read_text()))
    problems = []
    for p in sorted(template.rglob("*")):
        rel = p.relative_to(template)
        if p.is_dir():
            if p.name in ("reference", "solutions", "runs", "data"):
                problems.append(f"{rel}/: instructor material or data")
            continue
        if p.suffix in (".pt", ".pth", ".db") or "idx" in p.name and "ubyte" in p.name:
            problems.append(f"{rel}: checkpoint, gradebook or data file")
            continue
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        if MARKERS.search(text) and p.name != "release.py":
            problems.append(f"{rel}: contains solution or hidden-test markers")
        leaked = [ln for ln in solution_lines if ln in text]
        if leaked:
            problems.append(f"{rel}: contains solution code, e.g. {leaked[0]!r}")
    return problems


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=str(ROOT / "build" / "student-template"))
    ap.add_argument("--grader-out", default=str(ROOT / "build" / "grader"),
                    help="where the grader artifact goes (push it as its own public repository)")
    ap.add_argument("--grader-repo", default="", help="git URL of that grader repository, for the student workflow")
    ap.add_argument("--grader-ref", default="", help="the commit (or tag) of the grader repository to grade with")
    args = ap.parse_args(argv)
    if bool(args.grader_repo) != bool(args.grader_ref):
        print("error: give --grader-repo and --grader-ref together (pin a commit)", file=sys.stderr)
        return 2
    out, grader_out = Path(args.out).resolve(), Path(args.grader_out).resolve()
    if out == grader_out or out in grader_out.parents or grader_out in out.parents:
        print("error: --out and --grader-out must be two separate folders (neither inside the other)", file=sys.stderr)
        return 2
    why = _refusal(grader_out) or _refusal(out)   # both checked before either is touched
    if why:
        print(f"error: {why}", file=sys.stderr)
        return 1
    try:
        grader = build_grader(grader_out)
        out = build(out, grader_repo=args.grader_repo, grader_ref=args.grader_ref)
    except (RuntimeError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    files = sum(1 for p in out.rglob("*") if p.is_file())
    print(f"grader artifact: {grader} (version {(grader / 'VERSION').read_text().strip()})")
    print(f"student template: {out} ({files} files); no solution code, hidden tests or reference solutions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
