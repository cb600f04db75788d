"""``course`` / ``python -m course``: the command table of the course.

    data, info     the library (course_utils)
    check          a self-check: notebooks graded as `course grade` grades them, nothing written
    submit         a notebook and exactly the run records it will be graded on, checked
    grade          the grader (autograder; `course grade --help`)
    train          a named reference run (instructor/reference)
    report, release  instructor tools (instructor/)

Each command imports its package only when it runs, so a student copy without ``instructor/`` works
for everything else. Failures print one clear line (exit status 1), not a traceback.
"""
from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def _reference_runs() -> dict:
    try:
        from instructor.reference import REFERENCE_RUNS
    except ImportError:
        raise SystemExit("error: the reference configs are instructor material (instructor/reference) and are "
                         "not in this copy of the course; train your own model from the notebook instead") from None
    return REFERENCE_RUNS


def _load_model_class(spec: str):
    """``name`` of a reference run, or ``package.module:ClassName``."""
    if ":" not in spec:
        runs = _reference_runs()
        if spec not in runs:
            raise SystemExit(f"error: unknown model {spec!r}; use one of {sorted(runs)} or module:Class")
        return runs[spec][0]
    module, _, attr = spec.partition(":")
    try:
        obj = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise SystemExit(f"error: cannot load {spec!r}: {e}") from None
    except Exception as e:  # noqa: BLE001 - the module's own code failed (syntax error, a bad import line)
        raise SystemExit(f"error: importing {module} raised {type(e).__name__}: {e}") from None
    return obj


def cmd_data(args) -> int:
    from course_utils.data import MNISTUnavailable, ensure_mnist, raw_dir

    try:
        root = ensure_mnist(args.root, allow_download=not args.offline)
    except MNISTUnavailable as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"MNIST ready and verified (MD5) in {raw_dir(root)}")
    return 0


def cmd_train(args) -> int:
    from course_utils.engine import fit
    from course_utils.policy import TARGET_ACCURACY

    if args.name.endswith(".ipynb"):   # a notebook's own runs, side by side
        from course_utils.threads import usable_cpus

        from .notebook_runs import main as train_notebook

        if not Path(args.name).is_file():
            print(f"error: no such notebook: {args.name}", file=sys.stderr)
            return 2
        return train_notebook(args.name, args.runs_dir, args.workers or usable_cpus())
    runs = _reference_runs()
    if args.name not in runs:
        print(f"error: unknown reference run {args.name!r}; choose from: {', '.join(sorted(runs))}", file=sys.stderr)
        return 1
    model_cls, config = runs[args.name]
    changes = {k: v for k, v in (("epochs", args.epochs), ("seed", args.seed)) if v is not None}
    config = config.replace(**changes)
    result = fit(model_cls, None, config, runs_dir=args.runs_dir, progress=not args.no_progress)
    m = result.metrics
    tail = [h["test_accuracy"] for h in result.history[-3:]]
    print()
    print(f"Results of {config.name!r} (seed {config.seed}, {m['parameters']:,} parameters, "
          f"{m['epochs_run']} epochs, {sum(m['seconds_per_epoch']):.0f} s):")
    print(f"  final test accuracy   {m['final_test_accuracy']:.2f}%")
    print(f"  best test accuracy    {m['best_test_accuracy']:.2f}% (epoch {m['best_epoch']})")
    print(f"  last 3 epochs         {', '.join(f'{a:.2f}%' for a in tail)}")
    first = m["first_epoch_at_target"]
    print(f"  first epoch >= {TARGET_ACCURACY}%  {first if first else 'never'}")
    print(f"  run record            {result.run_dir}")
    return 0


def _notebook_net(path: str):
    """``Net`` as the notebook's tagged setup and definitions cells define it."""
    from .notebook_runs import namespace

    return namespace(Path(path), tags=("setup", "definitions"))["Net"]


def _submit(args) -> int:
    from .submit import main

    return main(args.notebook, args.runs_dir, args.out)


def cmd_check(args) -> int:
    """Grade notebooks as `course grade` does and print the tables; writes nothing."""
    from autograder.grade import find_notebooks, grade

    missing = [p for p in args.notebooks if not Path(p).exists()]
    notebooks = find_notebooks(args.notebooks)
    if missing or not notebooks:
        print(f"error: no such notebook or folder: {', '.join(missing)}" if missing
              else f"error: no notebooks in {', '.join(args.notebooks)}", file=sys.stderr)
        return 2
    reports = [grade(nb) for nb in notebooks]
    for r in reports:
        print(r.table())
    return 0 if reports and all(r.passed for r in reports) else 1


def cmd_info(args) -> int:
    from course_utils.inspection import describe, parameter_table

    obj = _notebook_net(args.model) if args.model.endswith(".ipynb") else _load_model_class(args.model)
    try:
        model = obj() if isinstance(obj, type) or callable(obj) else obj
    except Exception as e:  # noqa: BLE001 - a student's Net that cannot be built: one line, not a traceback
        print(f"error: building {args.model}'s model raised {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    try:
        text = describe(model) + "\n\n" + str(parameter_table(model))   # torchinfo returns its statistics object
    except Exception as e:  # noqa: BLE001 - its forward() fails on a 28x28 image: one line, not a traceback
        print(f"error: {args.model}'s model failed on a (1, 1, 28, 28) input: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(text)
    return 0


def _instructor(module: str, argv: list[str]) -> int:
    try:
        mod = importlib.import_module(f"instructor.{module}")
    except ImportError:
        raise SystemExit(f"error: `course {module}` is an instructor command (instructor/) and is not in this copy "
                         "of the course") from None
    return mod.main(argv)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="course", description="MNIST 99.4% under 10k parameters: course tools")
    sub = p.add_subparsers(dest="command", required=True)

    d = sub.add_parser("data", help="make MNIST available and verified under the data root")
    d.add_argument("--root", help="data root (default: $COURSE_DATA or ./data)")
    d.add_argument("--offline", action="store_true", help="skip torchvision's network download")
    d.set_defaults(func=cmd_data)

    t = sub.add_parser("train", help="train a named reference configuration, or a notebook's runs side by side")
    t.add_argument("name", help="reference run name (e.g. session2), or a notebook (NOTEBOOK.ipynb: its VARIANTS "
                                "or CONFIG, trained by its own code, one process per run; its training cell then "
                                "reuses the records)")
    t.add_argument("--workers", type=int, help="with a notebook: training processes (default: the usable CPUs)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--seed", type=int)
    t.add_argument("--runs-dir", help="where run records go (default: $COURSE_RUNS or ./runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
    t.set_defaults(func=cmd_train)

    i = sub.add_parser("info", help="parameter table, FC layers and receptive field of a model")
    i.add_argument("model", help="a notebook (its Net, from the cells tagged setup/definitions), a reference "
                                 "run name (e.g. session2) or package.module:ClassName")
    i.set_defaults(func=cmd_info)

    s = sub.add_parser("submit", help="bundle a notebook with exactly the run records it will be graded on "
                                      "(checked first, then self-graded)")
    s.add_argument("notebook", help="NOTEBOOK.ipynb")
    s.add_argument("--runs-dir", help="where its run records are (default: runs/ next to it, and the repository's)")
    s.add_argument("--out", help="the zip to write, or a folder for it (default: NOTEBOOK-submission.zip next to it)")
    s.set_defaults(func=_submit)

    c = sub.add_parser("check", help="self-check: grade notebooks as `course grade` does (the saved files, "
                                     "runs/ next to them) and print points per check; writes nothing")
    c.add_argument("notebooks", nargs="+", help="notebooks, or folders of them (e.g. sessions)")
    c.set_defaults(func=cmd_check)

    r = sub.add_parser("report", help="render the session READMEs from run records (instructors)")
    r.add_argument("--runs-dir")
    r.add_argument("--session", action="append",
                   help="render only this session's report (repeatable; default: every session)")
    r.set_defaults(func=lambda a: _instructor("report", (["--runs-dir", a.runs_dir] if a.runs_dir else [])
                                              + [x for s in a.session or [] for x in ("--session", s)]))

    sub.add_parser("grade", add_help=False, help="grade notebook submissions (course grade --help for options)")

    rel = sub.add_parser("release", help="regenerate sessions/ from solutions/ with nbgrader (instructors)")
    rel.add_argument("--check", action="store_true", help="only check that sessions/ is current and clean")
    rel.set_defaults(func=lambda a: _instructor("release", ["--check"] if a.check else []))
    return p


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["grade"]:  # all of its options belong to the grader
        try:
            from autograder.grade import main as grade_main  # noqa: I001
        except ImportError:
            raise SystemExit("error: the grader (autograder/) is not in this copy of the course") from None
        return grade_main(argv[1:])
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, TypeError, OSError, RuntimeError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
