"""The grading worker: the only process that runs a submission's code.

    python -m autograder.worker REQUEST.json

:mod:`autograder.grade` starts one worker per submission (a fresh process, its own working folder,
a memory limit, a wall-time limit) and reads its verdicts from a JSON-lines file, one line per event:

    {"event": "start", "check": "accuracy"}
    {"event": "result", "check": "accuracy", "passed": true, "message": "...", "seconds": 1.2}
    {"event": "load", "ok": false, "message": "cell 3 (definitions): SyntaxError ..."}

If the worker dies mid-check (crash, ``sys.exit``, memory, timeout), the grader sees a "start"
without its "result", fails that check with the reason and starts a new worker for the rest.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from .assignments import ASSIGNMENTS, Assignment
from .submission import CodeCell, SubmissionError, graded_code

CHECKS: dict[str, Callable] = {}


class LoadFailed(Exception):
    """The submission's tagged cells could not be run; every check fails with this message."""


def check(name: str):
    def register(fn):
        CHECKS[name] = fn
        return fn
    return register


def _where(cell: CodeCell) -> str:
    gid = f", {cell.grade_id}" if cell.grade_id else ""
    return f"cell {cell.index + 1} (tagged {cell.tag}{gid})"


def load_namespace(path: str | Path, cells: list[CodeCell] | None = None) -> dict:
    """Run the setup/definitions/config cells of the notebook in a fresh namespace."""
    cells = graded_code(path) if cells is None else cells
    ns: dict = {"__name__": "submission", "__file__": str(path)}
    for cell in cells:
        try:
            code = compile(cell.source, f"<{_where(cell)}>", "exec")
        except SyntaxError as e:
            raise LoadFailed(f"{_where(cell)} has a syntax error on line {e.lineno}: {e.msg}"
                             + (f": {e.text.strip()}" if e.text else "")) from None
        try:
            exec(code, ns)  # noqa: S102 - this is the isolated worker process whose job it is
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure is reported as the student's
            line = _student_line(e)
            raise LoadFailed(f"{_where(cell)} raised {type(e).__name__}: {e}"
                             + (f" (line {line})" if line else "")) from None
    return ns


def _student_line(e: BaseException) -> int | None:
    tb = traceback.extract_tb(e.__traceback__)
    lines = [f.lineno for f in tb if f.filename.startswith("<cell ")]
    return lines[-1] if lines else None


class Context:
    """What a check sees: the student's namespace, the assignment, where records are, the mode."""

    def __init__(self, ns: dict, assignment: Assignment, request: dict):
        self.ns = ns
        self.assignment = assignment
        self.policy = assignment.policy
        self.runs_dirs = [Path(p) for p in request.get("runs_dirs", [])]
        self.retrain = bool(request.get("retrain"))
        self.seed = int(request.get("seed", 0))
        self.scratch = Path(request.get("scratch") or ".").resolve()
        self._records: dict = {}
        self._data = None

    def get(self, name: str, what: str):
        from .checks import CheckFailed

        if name not in self.ns:
            raise CheckFailed(f"`{name}` is not defined: the notebook's cells tagged setup/definitions/config must "
                              f"define {what}. Run the released notebook's cells in order; keep its names.")
        return self.ns[name]

    # ---------------------------------------------------------------- training jobs
    def jobs(self) -> list[tuple[str, Callable, object, dict]]:
        """(label, model factory, config, penalties) of every graded training run."""
        from course_utils.config import TrainConfig

        from .checks import CheckFailed

        if self.assignment.session == "session2":
            net = self.get("Net", "the model class `Net`")
            config = self.get("CONFIG", "the training config `CONFIG`")
            if not isinstance(config, TrainConfig):
                raise CheckFailed(f"`CONFIG` must be a course_utils.TrainConfig, got {type(config).__name__}")
            return [("Net", net, config, {})]
        from .assignments import SESSION3_LABELS, expected_regularisation

        net = self.get("Net", "the model class `Net(ghost=...)`")
        variants = self.get("VARIANTS", "the dict `VARIANTS` of the five variants")
        if not isinstance(variants, dict):
            raise CheckFailed(f"`VARIANTS` must be a dict label -> (ghost, l1, config), got {type(variants).__name__}")
        missing = [k for k in SESSION3_LABELS if k not in variants]
        if missing:
            raise CheckFailed(f"`VARIANTS` lacks {', '.join(missing)}: all five variants are graded "
                              f"({', '.join(SESSION3_LABELS)}).")
        jobs = []
        for label in SESSION3_LABELS:
            try:
                ghost, l1, config = variants[label]
            except (TypeError, ValueError):
                raise CheckFailed(f"VARIANTS[{label!r}] must be a tuple (ghost splits, L1 weight, TrainConfig)") from None
            if not isinstance(config, TrainConfig):
                raise CheckFailed(f"VARIANTS[{label!r}]: the config must be a TrainConfig, got {type(config).__name__}")
            problem = expected_regularisation(label, ghost=ghost, l1=l1, weight_decay=config.weight_decay)
            if problem:
                raise CheckFailed(f"VARIANTS[{label!r}] {problem}")
            penalties = {}
            if l1:
                l1_fn = self.get("l1_penalty", "the function `l1_penalty(model)`")
                penalties = {"l1": lambda m, w=float(l1), f=l1_fn: w * f(m)}
            jobs.append((label, (lambda g=ghost: net(ghost=g)), config, penalties))
        names = [c.name for _, _, c, _ in jobs]
        if len(set(names)) != len(names):
            raise CheckFailed(f"The variants' configs must have distinct names (got {names}): each gets its own run record")
        return jobs

    def record(self, label: str, factory, config, penalties):
        """The run record graded for one job: retrained here (retrain mode) or the submitted one."""
        if label not in self._records:
            try:
                self._records[label] = self._retrain(factory, config, penalties) if self.retrain \
                    else self._submitted(config)
            except Exception as e:  # noqa: BLE001 - remembered, so later checks give the same reason
                self._records[label] = e
        rec = self._records[label]
        if isinstance(rec, Exception):
            raise rec
        return rec

    def _submitted(self, config):
        from .checks import submitted_record

        return submitted_record(config, self.runs_dirs)

    def _retrain(self, factory, config, penalties):
        from course_utils.engine import fit
        from course_utils.loader import data_for

        from .checks import CheckFailed

        if config.epochs >= self.policy.epoch_limit:
            raise CheckFailed(f"Not retrained: the config asks for {config.epochs} epochs; {self.policy.session} "
                              f"allows fewer than {self.policy.epoch_limit}.")
        cfg = config.replace(seed=self.seed)
        print(f"retraining {cfg.name} with grader seed {self.seed} ({cfg.epochs} epochs)", flush=True)
        try:
            result = fit(factory, data_for(cfg, tensors=self.tensors()), cfg, penalties=penalties,
                         runs_dir=self.scratch / "retrain-runs", progress=False)
        except CheckFailed:
            raise
        except Exception as e:  # noqa: BLE001
            raise CheckFailed(f"Retraining {cfg.name} failed: {type(e).__name__}: {e}") from None
        from course_utils.engine import load_record

        return load_record(result.run_dir)

    def tensors(self):
        from course_utils.data import load_uint8

        if self._data is None:
            self._data = load_uint8()
        return self._data

    def test_data(self):
        from course_utils.loader import TensorLoader

        _, _, xte, yte = self.tensors()
        return TensorLoader(xte, yte, 1000)


# --------------------------------------------------------------------------- the checks

def _model(ctx: Context):
    from . import checks

    return checks.build(ctx.get("Net", "the model class `Net`"), "Net")


@check("output")
def _output(ctx: Context) -> str:
    from . import checks

    return checks.check_output(_model(ctx))


@check("parameters")
def _parameters(ctx: Context, limit: int | None = None) -> str:
    from . import checks

    return checks.check_parameters(_model(ctx), ctx.policy, limit)


@check("no_fc")
def _no_fc(ctx: Context, full_map_ok: bool = False) -> str:
    from . import checks

    return checks.check_no_fc(_model(ctx), full_map_ok=full_map_ok)


@check("ghost_batch_norm")
def _ghost_batch_norm(ctx: Context) -> str:
    from . import checks

    gbn = ctx.get("GhostBatchNorm", "the class `GhostBatchNorm`")
    msg = checks.check_ghost_batch_norm(gbn)
    checks.check_ghost_batch_norm(gbn, channels=3, splits=2, batches=(64, 8))
    checks.check_ghost_batch_norm(gbn, channels=10, splits=8, batches=(128, 96))
    return msg + "; also 2 and 8 splits"


@check("l1_penalty")
def _l1_penalty(ctx: Context) -> str:
    from . import checks

    return checks.check_l1_penalty(ctx.get("l1_penalty", "the function `l1_penalty(model)`"))


@check("net")
def _net(ctx: Context) -> str:
    from . import checks

    net = ctx.get("Net", "the model class `Net(ghost=...)`")
    gbn = ctx.get("GhostBatchNorm", "the class `GhostBatchNorm`")
    parts = []
    for ghost in (0, 4):
        model = checks.build(lambda g=ghost: net(ghost=g), f"Net(ghost={ghost})")
        checks.check_output(model)
        parts.append(f"Net(ghost={ghost}): " + checks.check_parameters(model, ctx.policy))
        checks.check_no_fc(model)
        uses = any(isinstance(m, gbn) for m in model.modules())
        if ghost and not uses:
            checks._fail("Net(ghost=4) must use GhostBatchNorm (with 4 splits) in its conv blocks")
        if not ghost and uses:
            checks._fail("Net(ghost=0) must use plain nn.BatchNorm2d, not GhostBatchNorm")
    return "; ".join(parts) + "; no FC layer"


@check("epochs")
def _epochs(ctx: Context) -> str:
    from . import checks

    out = []
    for label, factory, config, penalties in ctx.jobs():
        if config.epochs >= ctx.policy.epoch_limit:
            checks._fail(f"{label}: the config declares {config.epochs} epochs; {ctx.policy.session} allows fewer than "
                         f"{ctx.policy.epoch_limit} (at most {ctx.policy.max_epochs}). Lower `epochs` and retrain.")
        rec = ctx.record(label, factory, config, penalties)
        try:
            out.append(checks.check_epochs(rec, ctx.policy))
        except checks.CheckFailed as e:
            raise checks.CheckFailed(f"{label}: {e}") from None
    return out[0] if len(out) == 1 else f"{len(out)} runs: " + "; ".join(out)


@check("accuracy")
def _accuracy(ctx: Context) -> str:
    from course_utils.data import ensure_mnist

    from . import checks

    ensure_mnist(allow_download=False, verbose=False)  # MD5 of the test set, before every grading run
    out = []
    for label, factory, config, penalties in ctx.jobs():
        rec = ctx.record(label, factory, config, penalties)
        try:
            msg = checks.check_accuracy(factory, rec, ctx.policy, data=ctx.test_data())
        except checks.CheckFailed as e:
            raise checks.CheckFailed(f"{label}: {e}") from None
        out.append(msg if label == "Net" else f"{label} {msg.split(' (')[0]}")
    return "; ".join(out) + (f" [retrained, seed {ctx.seed}]" if ctx.retrain else "")


# --------------------------------------------------------------------------- entry point

def _limit_memory(max_bytes: int | None) -> None:
    if not max_bytes:
        return
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (max_bytes, max_bytes))


def run(request: dict) -> int:
    out = open(request["results"], "a", encoding="utf-8")

    def emit(**event):
        out.write(json.dumps(event) + "\n")
        out.flush()
        os.fsync(out.fileno())

    assignment = ASSIGNMENTS[request["assignment"]]
    from . import checks, guard
    from .checks import CheckFailed

    checks.GUARD = guard.snapshot()  # before any submission code runs
    try:
        ns = load_namespace(request["notebook"])
    except (SubmissionError, LoadFailed) as e:
        emit(event="load", ok=False, message=str(e))
        return 0
    checks._restore()
    emit(event="load", ok=True)
    ctx = Context(ns, assignment, request)

    by_id = {c.id: c for c in assignment.checks}
    for cid in request["checks"]:
        emit(event="start", check=cid)
        t0 = time.perf_counter()
        try:
            msg = CHECKS[cid](ctx, **by_id[cid].kwargs)
            passed = True
        except CheckFailed as e:
            passed, msg = False, str(e)
        except MemoryError:
            passed, msg = False, "ran out of memory (the grader's memory limit)"
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a check never takes the others down
            line = _student_line(e)
            passed, msg = False, f"{type(e).__name__}: {e}" + (f" (in your code, line {line})" if line else "")
        checks._restore()
        emit(event="result", check=cid, passed=passed, message=str(msg), seconds=round(time.perf_counter() - t0, 3))
    return 0


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    _limit_memory(request.get("memory_bytes"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run(request)


if __name__ == "__main__":
    sys.exit(main())
