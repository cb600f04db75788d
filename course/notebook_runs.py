"""Train a notebook's runs side by side: ``course train NOTEBOOK.ipynb --workers 2``.

Session 3 trains five variants one after another; on a machine with two or more cores they train faster
side by side, each in its own process with one torch thread (small convolutions scale poorly across
threads: RESULTS.md, "Threads"). This command runs the notebook's own cells tagged setup, definitions and
config (as Jupyter would, on your request: your code), then trains each run of ``VARIANTS`` (or the one
``CONFIG``) with ``course_utils.train``, exactly as the notebook's training cell does: the same network,
config, seed, penalties and data pipeline, into the same run records (``runs/`` next to the notebook, or
``$COURSE_RUNS``, or ``--runs-dir``). Run the notebook afterwards: its training cell (``reuse=True``) finds
these records, trained with exactly its configs by a network with the same layers, and loads them.
"""
from __future__ import annotations

import os
from pathlib import Path


def namespace(path: Path, tags=("setup", "definitions", "config")) -> dict:
    """The notebook's cells with these tags, run in a fresh namespace (the user's own code, run on the
    user's request, as Jupyter would; grading runs it in the sandbox instead); it must define ``Net``.
    Anything wrong is one line (``SystemExit``), not a traceback."""
    from autograder.submission import SubmissionError, code_cells, read_notebook

    try:
        cells = code_cells(read_notebook(path), tags=tags)
    except SubmissionError as e:
        raise SystemExit(f"error: {e}") from None
    ns: dict = {"__name__": "__course_notebook__"}
    for cell in cells:
        try:
            exec(compile(cell.source, f"{path} (cell {cell.index})", "exec"), ns)  # noqa: S102 - the user's notebook
        except Exception as e:  # noqa: BLE001 - reported as one line
            raise SystemExit(f"error: cell {cell.index} of {path} ({cell.tag}) raised {type(e).__name__}: {e}") from None
    if not isinstance(ns.get("Net"), type):
        raise SystemExit(f"error: {path} defines no class `Net` in its cells tagged {'/'.join(tags)}")
    return ns


def runs(ns: dict) -> list[tuple[str, int, float, object]]:
    """``(label, ghost splits, L1 weight, config)`` per run: Session 3's ``VARIANTS``, or ``CONFIG``."""
    if isinstance(ns.get("VARIANTS"), dict):
        return [(label, int(ghost), float(l1), config) for label, (ghost, l1, config) in ns["VARIANTS"].items()]
    if ns.get("CONFIG") is not None:
        return [(ns["CONFIG"].name, 0, 0.0, ns["CONFIG"])]
    raise SystemExit("error: the notebook's config cells define neither VARIANTS nor CONFIG")


def _factory(ns: dict, ghost: int):
    net = ns["Net"]
    return (lambda: net(ghost=ghost)) if "VARIANTS" in ns else net


def _penalties(ns: dict, l1: float):
    return {"l1": lambda model: l1 * ns["l1_penalty"](model)} if l1 else None


def _train_one(job) -> str:
    """In a worker process of one torch thread: train one run as the notebook's training cell would."""
    path, label, runs_dir = job
    os.environ["COURSE_THREADS"] = "1"
    os.chdir(Path(path).parent)
    from course_utils.notebook import train

    ns = namespace(Path(path))
    (_, ghost, l1, config), = [r for r in runs(ns) if r[0] == label]
    result = train(_factory(ns, ghost), config, penalties=_penalties(ns, l1), reuse=True, runs_dir=runs_dir,
                   progress=False, verbose=False)
    last = ", ".join(f"{e['test_accuracy']:.2f}" for e in result.metrics["history"][-3:])
    return f"{label}: final {result.metrics['final_test_accuracy']:.2f}%, last 3 epochs {last} ({result.run_dir})"


def main(path: str, runs_dir: str | None, workers: int) -> int:
    import multiprocessing as mp

    from course_utils.notebook import _reusable

    nb = Path(path).resolve()
    runs_dir = str(Path(runs_dir or os.environ.get("COURSE_RUNS") or nb.parent / "runs").resolve())
    ns = namespace(nb)
    todo = []
    for label, ghost, l1, config in runs(ns):
        try:
            _factory(ns, ghost)()
        except Exception as e:  # noqa: BLE001 - the student's Net: one line that says what to do
            hint = ("Finish the cells marked YOUR CODE HERE first" if isinstance(e, NotImplementedError)
                    else "Fix it first")
            raise SystemExit(f"error: {label}: building the notebook's Net raised {type(e).__name__}: {e}. {hint} "
                             "(the test cells under it say what is wrong).") from None
        if _reusable(_factory(ns, ghost), config, runs_dir) is None:   # prints "reusing ..." when there is one
            todo.append((str(nb), label, runs_dir))
    if not todo:
        print("Every run is already recorded: the notebook's training cell will reuse them.")
        return 0
    workers = max(1, min(workers, len(todo)))
    print(f"Training {len(todo)} run(s) of {nb.name} in {workers} process(es) of one torch thread each, into "
          f"{runs_dir} ...", flush=True)
    with mp.get_context("spawn").Pool(workers, maxtasksperchild=1) as pool:
        for line in pool.imap_unordered(_train_one, todo):
            print(line, flush=True)
    print("Done: run the notebook; its training cell reuses these records.")
    return 0
