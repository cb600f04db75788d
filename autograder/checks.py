"""The notebooks' self-check: the grader's checks, run in the notebook's own process.

Each function produces what the grading worker would (a model graph, Ghost Batch Norm or penalty
outputs) and hands it to the same verdict functions ``course grade`` uses (:mod:`autograder.judge`),
so a test cell and the grader agree on every message. Because the student's code runs in this
same process, a test cell is a self-check, not a grade: the grade that counts comes from
``course grade``, where the verdicts are computed in a process that never ran student code.

Each check raises :class:`CheckFailed` (an ``AssertionError``) with a message that tells the
student what to change, and returns a short description when it passes. Student code still
raising the ``NotImplementedError`` stub is reported as "not implemented yet", naming the piece.
"""
from __future__ import annotations

import contextlib
from typing import Callable

import torch.nn as nn

from . import judge
from .judge import CheckFailed, submitted_record  # noqa: F401 - part of the notebooks' API
from course_utils.policy import POLICIES, Policy

from .export import EVAL_BATCH


def _fail(msg: str):
    raise CheckFailed(msg)


def _policy(policy: Policy | str) -> Policy:
    return POLICIES[policy] if isinstance(policy, str) else policy


@contextlib.contextmanager
def _stub_guard(what: str):
    """Turn the notebook stub's ``NotImplementedError`` into a message naming what to implement."""
    try:
        yield
    except NotImplementedError:
        from .worker import _stub

        _fail(_stub(what))


def build(model_cls: Callable[[], nn.Module], name: str | None = None) -> nn.Module:
    """Instantiate a student's model class with a clear message when it is still a stub or broken."""
    name = name or getattr(model_cls, "__name__", "the model")
    with _stub_guard(f"`{name}`"):
        try:
            model = model_cls()
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001 - any error building the model is the student's to fix
            _fail(f"`{name}()` raised {type(e).__name__}: {e}")
    if not isinstance(model, nn.Module):
        _fail(f"`{name}()` must build an nn.Module, got {type(model).__name__}")
    return model


def program(model: nn.Module, mode: str = "eval") -> judge.Program:
    """The model's forward as the judge sees it: exported to a graph, then loaded from that data."""
    from .export import export_model
    from .worker import _export_message, _stub, is_stub

    label = type(model).__name__
    try:
        graph, tensors = export_model(model, EVAL_BATCH if mode == "eval" else 128, mode)
    except Exception as e:  # noqa: BLE001
        _fail(_stub(f"`{label}.forward`") if is_stub(e) else _export_message(e, label, mode))
    try:
        return judge.Program(graph, tensors)
    except judge.GraphRejected as e:
        raise CheckFailed(str(e)) from None


def check_output(model: nn.Module) -> str:
    """A batch of 1x28x28 images gives finite scores of shape (batch, 10)."""
    return judge.output(program(model))


def check_parameters(model: nn.Module, policy: Policy | str = "session2", limit: int | None = None) -> str:
    """Every tensor the forward reads counts, except batch-norm running statistics (see
    :func:`autograder.judge.parameters`)."""
    return judge.parameters(program(model), _policy(policy), limit)


def check_no_fc(model: nn.Module, full_map_ok: bool = False) -> str:
    """No fully connected layer in the eval or training forward (see :mod:`autograder.program`)."""
    return judge.no_fc([program(model, "eval"), program(model, "train")], full_map_ok=full_map_ok)


def check_ghost_batch_norm(gbn_cls, *, channels: int = 6, splits: int = 4, batches=(128, 96, 32)) -> str:
    """``gbn_cls(num_features, num_splits)`` normalises each virtual batch as ``nn.BatchNorm2d`` would
    (see :func:`autograder.judge.ghost_batch_norm`)."""
    from .probes import probe_ghost_batch_norm

    with _stub_guard("`GhostBatchNorm`"):
        try:
            res = probe_ghost_batch_norm(gbn_cls, channels, splits, batches)
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001
            _fail(f"GhostBatchNorm({channels}, {splits}) raised {type(e).__name__}: {e}")
    return judge.ghost_batch_norm([((channels, splits, tuple(batches)), res)])


def _check_penalty(fn, kind: str) -> str:
    from .probes import probe_penalty

    with _stub_guard(f"`{kind}_penalty`"):
        try:
            res = probe_penalty(fn)
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001
            _fail(f"`{kind}_penalty(model)` raised {type(e).__name__}: {e}")
    return judge.penalty(res, kind)


def check_l1_penalty(l1_penalty) -> str:
    """``l1_penalty(model)`` = sum |w| over conv weights, gradient sign(w) (checked against autograd)."""
    return _check_penalty(l1_penalty, "l1")


def check_l2_penalty(l2_penalty) -> str:
    """An explicit ``l2_penalty(model)`` = sum w^2 over conv weights, gradient 2w."""
    return _check_penalty(l2_penalty, "l2")


def _record(record):
    """A run record as given; for a ``TrainConfig``, :func:`submitted_record`; for a config name (older
    notebooks), the newest record of that name under the runs folder."""
    from course_utils.config import TrainConfig

    if isinstance(record, TrainConfig):
        return submitted_record(record)
    if not isinstance(record, str):
        return record
    from course_utils.records import runs_root, select

    found = select(record)
    if not found:
        _fail(f"No run record named {record!r} under {runs_root()}: run the training cell first (and submit the "
              "runs/ folder with your notebook).")
    return found[-1]


def check_epochs(record, policy: Policy | str = "session2") -> str:
    """Epochs below the session's limit, in the config and in the per-epoch history alike.
    ``record`` is a run record (or ``RunResult``), the ``TrainConfig`` it was trained with, or a config name."""
    return judge.epochs(_record(record), _policy(policy))


def check_accuracy(model_cls, record, policy: Policy | str = "session2", data=None) -> str:
    """The record's checkpoint, run through the model's graph on the verified MNIST test set, reaches the
    target, and the record's last epochs did too (see :func:`autograder.judge.accuracy`)."""
    from course_utils.data import load_uint8

    prog = program(build(model_cls))
    record = _record(record)
    if data is not None and hasattr(data, "images"):
        test = (data.images, data.labels)
    else:
        _, _, xte, yte = load_uint8()
        test = (xte, yte)
    try:
        state = record.load_state_dict()
    except Exception as e:  # noqa: BLE001
        _fail(f"The checkpoint could not be read: {type(e).__name__}: {e}")
    return judge.accuracy(prog, [state], test, _policy(policy), history=record.history)


def check_all(notebook: str) -> str:
    """Everything gradable so far, graded the way ``course grade`` grades it (Otter's ``check_all``): the
    *saved* notebook file is graded by the real grader (its cells in a sandboxed worker where one is
    available, the verdicts in a process that never ran them), so what the kernel holds but the file does
    not (an unsaved edit, a cell run out of order) shows up here. Prints the table, returns the points.
    Run records are looked for where ``course grade`` looks (``runs/`` next to the notebook) and, when
    ``$COURSE_RUNS`` sends the training cell's records elsewhere, there too (with a warning: the grader
    will not look there)."""
    import time
    from pathlib import Path

    from course_utils.notebook import graded_execution
    from course_utils.records import runs_root

    from .grade import default_runs_dirs, grade

    if graded_execution():
        return "skipped: nbgrader is grading this notebook itself"
    path = Path(notebook).expanduser().resolve()
    if not path.is_file():
        _fail(f"There is no {notebook} in {Path.cwd()}: pass this notebook's file name (and save it first).")
    graders = default_runs_dirs(path)
    runs = [d for d in dict.fromkeys([*graders, runs_root()]) if d.is_dir()]
    saved = time.strftime("%H:%M:%S", time.localtime(path.stat().st_mtime))
    report = grade(path, runs_dirs=runs or None)
    print(f"The notebook as saved at {saved} (save first: unsaved edits are not graded):")
    if runs_root() not in graders:
        print(f"(run records also from $COURSE_RUNS = {runs_root()}: the grader looks only in "
              f"{', '.join(map(str, graders))}; hand the records in there)")
    print(report.table())
    return f"{report.score}/{report.max_score} points" + (" (everything passes)" if report.passed else "")
