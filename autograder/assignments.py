"""What each course notebook is graded on: its checks and their points, in one table.

The points mirror the notebook's nbgrader test cells, so `course grade`, `pytest autograder` and
nbgrader give the same total. Check ids name functions in :mod:`autograder.worker`.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .policy import POLICIES, Policy


@dataclass(frozen=True)
class Check:
    id: str
    points: int
    title: str
    params: tuple = ()  # (key, value) pairs passed to the check, e.g. a parameter limit

    @property
    def kwargs(self) -> dict:
        return dict(self.params)


@dataclass(frozen=True)
class Assignment:
    id: str                 # "session2/4_bn_dropout"
    session: str            # key of POLICIES
    checks: tuple[Check, ...]
    trains: bool = False    # has graded training runs (epochs/accuracy checks, retrain mode)
    runs: str | None = None            # where the notebook declares its runs: "config" (CONFIG) or "variants"
    models: tuple[str, ...] = ("model",)  # the models the worker builds: "model" = Net(), "model:ghost=4" = Net(ghost=4)
    labels: tuple[str, ...] = ()       # the graded training runs, by label

    @property
    def policy(self) -> Policy:
        return POLICIES[self.session]

    @property
    def total(self) -> int:
        return sum(c.points for c in self.checks)


def _iteration(name: str, limit: int, full_map_ok: bool = False) -> Assignment:
    return Assignment(f"session2/{name}", "session2", (
        Check("output", 1, "forward gives (N, 10) scores"),
        Check("parameters", 1, f"parameters < {limit:,}", (("limit", limit),)),
        Check("no_fc", 1, "no fully connected layer", (("full_map_ok", True),) if full_map_ok else ()),
    ))


#: the five graded Session 3 variants, in the order the notebook trains them
SESSION3_LABELS = ("L1+BN", "L2+BN", "L1+L2+BN", "GBN", "L1+L2+GBN")

ASSIGNMENTS = {a.id: a for a in (
    _iteration("1_skeleton", 200_000, full_map_ok=True),   # iterations 1-2 end with a 7x7 conv over a
    _iteration("2_lighter", 15_000, full_map_ok=True),     # 7x7 map; iteration 3 teaches why to remove it
    _iteration("3_gap", 10_000),
    Assignment("session2/4_bn_dropout", "session2", (
        Check("output", 1, "forward gives (N, 10) scores"),
        Check("parameters", 2, "parameters < 10,000"),
        Check("no_fc", 2, "no fully connected layer"),
        Check("epochs", 1, "epochs < 15 (record and history)"),
        Check("accuracy", 4, ">= 99.4% (grader-evaluated checkpoint, last 3 epochs)"),
    ), trains=True, runs="config", labels=("Net",)),
    Assignment("session3/regularization", "session3", (
        Check("ghost_batch_norm", 4, "GhostBatchNorm = BatchNorm2d per virtual batch"),
        Check("l1_penalty", 3, "l1_penalty: conv weights, value and gradient"),
        Check("net", 2, "Net(ghost=0/4): shape, parameters < 10,000, no FC, uses GBN"),
        Check("epochs", 1, "each variant: epochs < 25 (record and history)"),
        Check("accuracy", 4, "each variant >= 99.4% (grader-evaluated, last 3 epochs)"),
    ), trains=True, runs="variants", models=("model:ghost=0", "model:ghost=4"), labels=SESSION3_LABELS),
)}


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
