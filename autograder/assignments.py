"""Each assignment describes itself, in one entry: its notebook, its policy, the models and training
runs the notebook declares, and its checks with their points, titles and nbgrader cells.

The points mirror the notebook's nbgrader test cells (``Check.cell``; a test asserts they agree), so
`course grade`, `pytest autograder` and nbgrader give the same automatic totals; written answers
(``Written``) are nbgrader's manually graded cells, counted by nbgrader alone. Check ids name verdicts in
:data:`autograder.judge.CHECKS`. A new assignment (a Session 4) is one :func:`register` call (or one
entry below) plus its notebook.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from course_utils.policy import POLICIES, Policy


@dataclass(frozen=True)
class Check:
    id: str             # a key of autograder.judge.CHECKS
    points: int
    title: str
    params: tuple = ()  # (key, value) pairs passed to the check, e.g. a parameter limit
    cell: str = ""      # the nbgrader test cell (grade_id) that checks the same thing in the notebook

    @property
    def kwargs(self) -> dict:
        return dict(self.params)


@dataclass(frozen=True)
class Written:
    """A written answer (the Analysis or Findings markdown cell) that the instructor grades by hand in
    nbgrader: its points count in nbgrader's total, never in ``course grade``'s."""
    cell: str           # the nbgrader answer cell (grade_id)
    points: int
    title: str


@dataclass(frozen=True)
class Assignment:
    id: str                            # "session2/4_bn_dropout": solutions/<id>.ipynb, sessions/<id>.ipynb
    policy: Policy
    checks: tuple[Check, ...]
    runs: str | None = None            # where the notebook declares its graded runs: "config" (CONFIG),
                                       # "variants" (VARIANTS), or None (no training graded)
    models: tuple[str, ...] = ("model",)  # the models the worker builds: "model" = Net(), "model:ghost=4" = Net(ghost=4)
    labels: tuple[str, ...] = ()       # the graded training runs, by label
    written: tuple[Written, ...] = ()  # answers graded by hand (nbgrader manual grading)

    @property
    def session(self) -> str:
        return self.policy.session

    @property
    def trains(self) -> bool:
        return self.runs is not None

    @property
    def notebook(self) -> str:
        return f"{self.id}.ipynb"


def _structure(p: Policy, limit: int | None = None, points=(1, 1, 1), full_map_ok: bool = False) -> tuple:
    limit = limit or p.max_parameters
    return (Check("output", points[0], "forward gives (N, 10) scores", cell="test_output"),
            Check("parameters", points[1], f"parameters < {limit:,}", (("limit", limit),) if limit != p.max_parameters
                  else (), cell="test_parameters"),
            Check("no_fc", points[2], "no fully connected layer", (("full_map_ok", True),) if full_map_ok else (),
                  cell="test_no_fc"))


def _training(p: Policy, each: str = "", cell_epochs: str = "test_epochs") -> tuple:
    return (Check("epochs", 1, f"{each}epochs < {p.epoch_limit} (record and history)", cell=cell_epochs),
            Check("accuracy", 4, f"{each}>= {p.min_accuracy}% (grader-evaluated, last {p.consistent_epochs} epochs)",
                  cell="test_accuracy"))


S2, S3 = POLICIES["session2"], POLICIES["session3"]
#: the five graded Session 3 variants, in the order the notebook trains them
SESSION3_LABELS = ("L1+BN", "L2+BN", "L1+L2+BN", "GBN", "L1+L2+GBN")


def _analysis(points: int = 1) -> tuple:
    return (Written("analysis", points, "Analysis: what the results show, and what to change next"),)


ASSIGNMENTS: dict[str, Assignment] = {a.id: a for a in (
    # iterations 1-2 end with a 7x7 conv over a 7x7 map; iteration 3 teaches why to remove it
    Assignment("session2/1_skeleton", S2, _structure(S2, 200_000, full_map_ok=True), written=_analysis()),
    Assignment("session2/2_lighter", S2, _structure(S2, 15_000, full_map_ok=True), written=_analysis()),
    Assignment("session2/3_gap", S2, _structure(S2), written=_analysis()),
    Assignment("session2/4_bn_dropout", S2, _structure(S2, points=(1, 2, 2)) + _training(S2),
               runs="config", labels=("Net",), written=_analysis(2)),
    # beyond the documents: iteration 4's rules at a third of the training time; accuracy not graded (yet)
    Assignment("session2/5_speed", S2, _structure(S2), written=_analysis()),
    Assignment("session3/regularization", S3, (
        Check("ghost_batch_norm", 4, "GhostBatchNorm = BatchNorm2d per virtual batch", cell="test_ghost_batch_norm"),
        Check("l1_penalty", 3, "l1_penalty: conv weights, value and gradient", cell="test_l1_penalty"),
        Check("net", 2, f"Net(ghost=0/4): shape, parameters < {S3.max_parameters:,}, no FC, uses GBN", cell="test_net"),
    ) + _training(S3, "each variant: ", cell_epochs="test_accuracy"),
        runs="variants", models=("model:ghost=0", "model:ghost=4"), labels=SESSION3_LABELS,
        written=(Written("findings", 3, "Findings: the five variants compared"),)),
)}


def register(assignment: Assignment) -> Assignment:
    """Add (or replace) an assignment: the grader, the pytest front end and ``course grade`` find it by
    its notebook's file name from then on."""
    ASSIGNMENTS[assignment.id] = assignment
    return assignment


def identify(path: str | Path, assignment: str | None = None) -> Assignment:
    """The assignment a notebook belongs to: ``assignment`` if given, else from its file name
    (``4_bn_dropout.ipynb``, also ``4_bn_dropout-Copy1.ipynb``)."""
    if assignment:
        key = assignment.removesuffix(".ipynb")
        if key in ASSIGNMENTS:
            return ASSIGNMENTS[key]
        matches = [a for k, a in ASSIGNMENTS.items() if k.endswith("/" + key)]
        if len(matches) == 1:
            return matches[0]
        raise ValueError(f"unknown assignment {assignment!r}; choose from {', '.join(ASSIGNMENTS)}")
    stem = Path(path).stem
    matches = [a for k, a in ASSIGNMENTS.items() if stem == k.split("/")[1]]
    matches = matches or [a for k, a in ASSIGNMENTS.items() if k.split("/")[1] in stem]
    if len(matches) != 1:
        raise ValueError(f"cannot tell which assignment {Path(path).name} is from its name; pass --assignment "
                         f"(one of {', '.join(ASSIGNMENTS)})")
    return matches[0]
