"""What the notebooks' training and results cells call, so the notebooks stay thin.

``train`` runs ``fit`` and writes the run record next to the notebook (``./runs``, or
``$COURSE_RUNS``). Two environments change what it does:

* ``NBGRADER_EXECUTION`` (set by nbgrader while it validates or autogrades): the notebook does not
  retrain; ``train`` loads the latest complete run record trained with that config (or, failing that,
  the latest of that config's name), which the student submits with the notebook, and the grading
  cells evaluate its checkpoint themselves. Retraining
  inside nbgrader would take minutes per notebook and hit its cell timeout.
* ``COURSE_QUICK=1``: a smoke run of one short epoch, allowed only where the notebook says
  ``quick_ok=True`` (Session 2 iterations 1-3 and 5, whose accuracy is not graded, and Session 3's
  variants, for smoke runs of that notebook); iteration 4 ignores it. A quick run's record is named
  ``<config name>-quick``, which no grader selects, so its grading cells then fail.
"""
from __future__ import annotations

import os
from typing import Callable, Mapping

import torch.nn as nn

from .config import TrainConfig
from .policy import TARGET_ACCURACY
from .engine import RunResult, fit, runs_root
from .records import select
from .loader import data_for

QUICK_ENV = "COURSE_QUICK"
QUICK_STEPS = 60


def graded_execution() -> bool:
    """True while nbgrader executes the notebook (validate / autograde)."""
    return bool(os.environ.get("NBGRADER_EXECUTION"))


def quick_mode() -> bool:
    return os.environ.get(QUICK_ENV, "") in ("1", "true", "yes")


def load_latest(model_cls: Callable[[], nn.Module], config: TrainConfig | str, runs_dir=None) -> RunResult:
    """The newest complete run record trained with ``config`` (newest of its name if none matches exactly:
    the grading cells then say which settings differ), checkpoint loaded into ``model_cls()``.
    ``config`` may also be just a config name."""
    name = config if isinstance(config, str) else config.name
    records = (select(config, runs_dir) if not isinstance(config, str) else []) or select(name, runs_dir)
    if not records:
        raise FileNotFoundError(f"No run record named {name!r} under {runs_root(runs_dir)}: run the training cell "
                                "(without nbgrader) and submit the runs/ folder with the notebook.")
    rec = records[-1]
    model = model_cls()
    model.load_state_dict(rec.load_state_dict())
    return RunResult(rec.path, rec.config, rec.metrics, model)


def _reusable(model_cls, config: TrainConfig, runs_dir) -> RunResult | None:
    """The newest complete record trained with exactly ``config`` by a network of the same layers
    (``model_digest``), loaded; None if there is none."""
    from .engine import model_digest

    model = model_cls()
    digest = model_digest(model)
    for rec in reversed(select(config, runs_dir)):
        if rec.metrics.get("model_digest") == digest:
            model.load_state_dict(rec.load_state_dict())
            print(f"{config.name}: reusing the run record {rec.path.name} (started {rec.metrics.get('started_utc')}), "
                  "trained with exactly this config by a network with the same layers; delete that folder to train "
                  "it again.")
            return RunResult(rec.path, rec.config, rec.metrics, model)
    return None


def train(model_cls: Callable[[], nn.Module], config: TrainConfig, *, penalties: Mapping | None = None,
          quick_ok: bool = False, reuse: bool = False, data=None, runs_dir=None, **kwargs) -> RunResult:
    """Train ``model_cls`` with ``config`` (progress bar, one line per epoch, run record written),
    or load the submitted record under nbgrader. See the module docstring. ``reuse=True``: a complete
    record of exactly this config and the same layers is loaded instead of training again, and a run of
    this config that was interrupted is resumed from its last finished epoch (Session 3's five variants:
    a re-run after an interruption trains only what is missing)."""
    if graded_execution():
        return load_latest(model_cls, config, runs_dir)
    if reuse and not (quick_ok and quick_mode()):
        found = _reusable(model_cls, config, runs_dir)
        if found is not None:
            return found
        from .records import interrupted

        stopped = interrupted(config, runs_dir)
        if stopped:
            kwargs["resume"] = stopped[-1]
    max_steps = kwargs.pop("max_steps", None)
    if quick_ok and quick_mode():
        config = config.replace(epochs=1, name=config.name + "-quick")
        max_steps = QUICK_STEPS
        print(f"{QUICK_ENV}=1: smoke run of {QUICK_STEPS} steps (accuracy not meaningful)")
    data = data if data is not None else data_for(config)
    if kwargs.get("resume") is not None:
        try:
            return fit(model_cls, data, config, penalties=penalties, runs_dir=runs_dir, max_steps=max_steps, **kwargs)
        except ValueError as e:  # the network changed since: start afresh, saying why
            print(f"Not resumed: {e}. Training from the start.")
            kwargs.pop("resume")
    return fit(model_cls, data, config, penalties=penalties, runs_dir=runs_dir, max_steps=max_steps, **kwargs)


def results_rows(metrics: dict) -> list[tuple[str, str]]:
    """The Results lines of the course's Target / Results / Analysis write-up, from a run's metrics."""
    h = metrics["history"]
    last3 = ", ".join(f"{r['test_accuracy']:.2f}%" for r in h[-3:])
    first = metrics.get("first_epoch_at_target")
    return [
        ("Parameters", f"{metrics['parameters']:,}"),
        ("Epochs", str(metrics["epochs_run"])),
        ("Best train accuracy", f"{metrics['best_train_accuracy']:.2f}%"),
        ("Best test accuracy", f"{metrics['best_test_accuracy']:.2f}% (epoch {metrics['best_epoch']})"),
        ("Final test accuracy", f"{metrics['final_test_accuracy']:.2f}%"),
        ("Last 3 epochs (test)", last3),
        (f"First epoch >= {TARGET_ACCURACY}%", str(first) if first else "not reached"),
        ("Seed", str(metrics["seed"])),
        ("Training time", f"{sum(metrics['seconds_per_epoch']):.0f} s"),
    ]


def results_markdown(metrics: dict) -> str:
    rows = results_rows(metrics)
    return "| Result | Value |\n| --- | --- |\n" + "\n".join(f"| {k} | {v} |" for k, v in rows)


def show_results(run, *, curves: bool = True):
    """Display the Results table (and learning curves) of a run: a ``RunResult`` or a config name,
    whose newest run record under ``./runs`` is read. Without a record yet, say so instead of failing.
    Returns the run (or ``None``)."""
    if isinstance(run, str):
        records = select(run)
        if not records:
            print(f"No run record named {run!r} under {runs_root()} yet: run the training cell first.")
            return None
        run = records[-1]
    metrics = run.metrics
    path = getattr(run, "run_dir", None) or getattr(run, "path", None)
    text = results_markdown(metrics)
    shown = False
    try:
        from IPython import get_ipython
        from IPython.display import Markdown, display

        if get_ipython() is not None:
            display(Markdown(f"**Results** (from the run record `{path}`)\n\n" + text))
            shown = True
    except ImportError:
        pass
    if not shown:
        print(text)
    if curves:
        from .plots import plot_curves

        plot_curves(run.history, title=metrics.get("name"))
    return run
