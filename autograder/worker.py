"""The grading worker: the only process that runs a submission's code. It produces data, never verdicts.

    python -m autograder.worker REQUEST.json

:mod:`autograder.grade` starts it in a sandbox (:mod:`autograder.sandbox`) on a private scratch
folder, or, in checkpoint mode, has it forked in a sandbox of its own by a zygote that has already
imported torch (:mod:`autograder.zygote`, which calls :func:`main` as this command line would).
It runs the notebook's setup/definitions/config cells, then produces each requested *item* into
``outputs/``: model graphs (:mod:`autograder.export`), Ghost Batch Norm and penalty outputs on
the judge's inputs (:mod:`autograder.probes`), the training jobs the notebook declares, and in retrain
mode the weights of its last epochs, trained on the training set (the test set is not in the
sandbox). The grader's judge (:mod:`autograder.judge`), a process that never ran student code, turns
them into verdicts. Events go to ``outputs/events.jsonl`` (or the file the request names: in retrain mode
each training has its own), one JSON object a line:

    {"event": "load", "ok": true}
    {"event": "start", "item": "model"}
    {"event": "done", "item": "model", "ok": true, "files": ["model-eval.json", ...]}
    {"event": "done", "item": "gbn", "ok": false, "message": "`GhostBatchNorm` is not implemented yet: ..."}

If the worker dies mid-item (crash, ``sys.exit``, memory, timeout), the grader sees a "start"
without its "done", fails the checks that needed it with the reason and starts a new worker for
the rest. Anything written here may be forged by the submission; the judge trusts none of it.
"""
from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

from .submission import CodeCell, SubmissionError, graded_code


class LoadFailed(Exception):
    """The submission's tagged cells could not be run; every check fails with this message."""


class ItemFailed(Exception):
    """An item could not be produced for a reason that is the student's to fix."""


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
            exec(code, ns)  # noqa: S102 - this is the sandboxed worker process whose job it is
        except (Exception, SystemExit) as e:  # noqa: BLE001 - any failure is reported as the student's
            line = _student_line(e)
            raise LoadFailed(f"{_where(cell)} raised {type(e).__name__}: {e}"
                             + (f" (line {line})" if line else "")) from None
    return ns


def _student_line(e: BaseException) -> int | None:
    tb = traceback.extract_tb(e.__traceback__)
    lines = [f.lineno for f in tb if f.filename.startswith("<cell ")]
    return lines[-1] if lines else None


def _err(e: BaseException) -> str:
    line = _student_line(e)
    return f"{type(e).__name__}: {e}" + (f" (in your code, line {line})" if line else "")


def is_stub(e: BaseException) -> bool:
    """A ``NotImplementedError`` raised by the student's own code (the notebook's stub), not by torch."""
    tb = traceback.extract_tb(e.__traceback__)
    return isinstance(e, NotImplementedError) and bool(tb) and "/torch/" not in tb[-1].filename.replace("\\", "/")


def _stub(what: str) -> str:
    return (f"{what} is not implemented yet: replace the `raise NotImplementedError` stub in its cell (marked YOUR "
            "CODE HERE) with your code, run that cell, then run this test again.")


class Worker:
    def __init__(self, ns: dict, request: dict):
        self.ns = ns
        self.request = request
        self.out = Path(request["outputs"])
        from .export import EVAL_BATCH

        self.batch = int(request.get("batch", EVAL_BATCH))

    def get(self, name: str, what: str):
        if name not in self.ns:
            raise ItemFailed(f"`{name}` is not defined: the notebook's cells tagged setup/definitions/config must "
                             f"define {what}. Run the released notebook's cells in order; keep its names.")
        return self.ns[name]

    # ------------------------------------------------------------------ models
    def build(self, item: str):
        """``model`` -> ``Net()``; ``model:ghost=4`` -> ``Net(ghost=4)``."""
        import torch.nn as nn

        kwargs = dict(kv.split("=") for kv in item.split(":", 1)[1].split(",")) if ":" in item else {}
        kwargs = {k: int(v) for k, v in kwargs.items()}
        net = self.get("Net", "the model class `Net`" + ("(ghost=...)" if kwargs else ""))
        label = "Net(" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")" if kwargs else "Net"
        try:
            model = net(**kwargs)
        except NotImplementedError:
            raise ItemFailed(_stub(f"`{label}`")) from None
        except (Exception, SystemExit) as e:  # noqa: BLE001
            raise ItemFailed(f"`{label}` raised {_err(e)}") from None
        if not isinstance(model, nn.Module):
            raise ItemFailed(f"`{label}` must build an nn.Module, got {type(model).__name__}")
        return model, label

    def export(self, model, label: str, mode: str, prefix: str) -> list[str]:
        import torch

        from .export import export_model

        try:
            graph, tensors = export_model(model, self.batch if mode == "eval" else 128, mode)
        except (Exception, SystemExit) as e:  # noqa: BLE001
            raise ItemFailed(_stub(f"`{label}.forward`") if is_stub(e) else _export_message(e, label, mode)) from None
        (self.out / f"{prefix}-{mode}.json").write_text(json.dumps(graph))
        torch.save(tensors, self.out / f"{prefix}-{mode}.pt")
        return [f"{prefix}-{mode}.json", f"{prefix}-{mode}.pt"]

    def item_model(self, item: str) -> list[str]:
        model, label = self.build(item)
        prefix = item.replace(":", "-").replace("=", "")
        return self.export(model, label, "eval", prefix) + self.export(model, label, "train", prefix)

    # ------------------------------------------------------------------ probes
    def item_gbn(self) -> list[str]:
        import torch

        from .probes import GBN_CASES, probe_ghost_batch_norm

        gbn = self.get("GhostBatchNorm", "the class `GhostBatchNorm`")
        results = []
        for channels, splits, batches in GBN_CASES:
            try:
                results.append(probe_ghost_batch_norm(gbn, channels, splits, batches))
            except NotImplementedError:
                raise ItemFailed(_stub("`GhostBatchNorm`")) from None
            except (Exception, SystemExit) as e:  # noqa: BLE001
                raise ItemFailed(f"GhostBatchNorm({channels}, {splits}) raised {_err(e)}") from None
        torch.save(results, self.out / "gbn.pt")
        return ["gbn.pt"]

    def item_penalty(self, kind: str) -> list[str]:
        import torch

        from .probes import probe_penalty

        name = f"{kind}_penalty"
        if kind == "l2" and name not in self.ns:
            return []   # L2 is weight decay unless the notebook writes its own l2_penalty
        fn = self.get(name, f"the function `{name}(model)`")
        try:
            res = probe_penalty(fn)
        except NotImplementedError:
            raise ItemFailed(_stub(f"`{name}`")) from None
        except (Exception, SystemExit) as e:  # noqa: BLE001
            raise ItemFailed(f"`{name}(model)` raised {_err(e)}") from None
        torch.save(res, self.out / f"{name}.pt")
        return [f"{name}.pt"]

    # ------------------------------------------------------------------ training jobs
    def jobs(self) -> list[dict]:
        """The notebook's graded training runs: label, config, ghost splits, L1 weight, model item."""
        from course_utils.config import TrainConfig

        if self.request.get("runs") == "config":
            config = self.get("CONFIG", "the training config `CONFIG`")
            if not isinstance(config, TrainConfig):
                raise ItemFailed(f"`CONFIG` must be a course_utils.TrainConfig, got {type(config).__name__}")
            return [{"label": "Net", "config": config.to_dict(), "ghost": 0, "l1": 0.0, "model": "model"}]
        variants = self.get("VARIANTS", "the dict `VARIANTS` of the five variants")
        if not isinstance(variants, dict):
            raise ItemFailed(f"`VARIANTS` must be a dict label -> (ghost, l1, config), got {type(variants).__name__}")
        labels = self.request.get("labels", [])
        missing = [k for k in labels if k not in variants]
        if missing:
            raise ItemFailed(f"`VARIANTS` lacks {', '.join(missing)}: all five variants are graded ({', '.join(labels)}).")
        out = []
        for label in labels:
            try:
                ghost, l1, config = variants[label]
                ghost, l1 = int(ghost or 0), float(l1 or 0)
            except (TypeError, ValueError):
                raise ItemFailed(f"VARIANTS[{label!r}] must be a tuple (ghost splits, L1 weight, TrainConfig)") from None
            if not isinstance(config, TrainConfig):
                raise ItemFailed(f"VARIANTS[{label!r}]: the config must be a TrainConfig, got {type(config).__name__}")
            out.append({"label": label, "config": config.to_dict(), "ghost": ghost, "l1": l1,
                        "model": f"model:ghost={ghost}"})
        return out

    def item_jobs(self) -> list[str]:
        (self.out / "jobs.json").write_text(json.dumps(self.jobs()))
        return ["jobs.json"]

    def item_train(self, label: str) -> list[str]:
        """Retrain one job from scratch with the grader's seed on the training set alone; keep the
        weights of its last epochs for the judge to evaluate."""
        import torch

        from course_utils.config import TrainConfig
        from course_utils.data import read_idx
        from course_utils.engine import fit
        from course_utils.loader import MNISTData, TensorLoader
        from course_utils.threads import training_threads

        job = next((j for j in self.jobs() if j["label"] == label), None)
        if job is None:
            raise ItemFailed(f"no training job {label!r}")
        cfg = TrainConfig.from_dict(job["config"])
        if self.request.get("seed") is not None:
            cfg = cfg.replace(seed=int(self.request["seed"]))
        limit, keep = int(self.request["epoch_limit"]), int(self.request.get("keep_epochs", 3))
        if cfg.epochs >= limit:
            raise ItemFailed(f"Not retrained: the config asks for {cfg.epochs} epochs; fewer than {limit} are allowed.")
        images, labels = (torch.from_numpy(read_idx(Path(p)).copy()) for p in self.request["train_files"])
        train = TensorLoader(images, labels.long(), cfg.batch_size, shuffle=True, rotation=cfg.rotation,
                             translate=cfg.translate, scale=cfg.scale, seed=cfg.seed, channels_last=cfg.channels_last)
        net = self.get("Net", "the model class `Net`")
        kwargs = {"ghost": job["ghost"]} if self.request.get("runs") == "variants" else {}
        penalties = {}
        if job["l1"]:
            l1_fn = self.get("l1_penalty", "the function `l1_penalty(model)`")
            penalties = {"l1": lambda m, w=job["l1"], f=l1_fn: w * f(m)}
        states = []

        def factory():   # built by fit after it seeds the run, so the initial weights follow the config's seed
            return net(**kwargs)

        def on_epoch(row, tested):  # the network fit tests and saves: the moving average when the config has one
            states.append({k: v.detach().clone().contiguous() for k, v in tested.state_dict().items()})
            del states[:-keep]

        print(f"retraining {cfg.name} with seed {cfg.seed} ({cfg.epochs} epochs, {training_threads()} torch "
              f"thread(s), no test set)", flush=True)
        try:
            result = fit(factory, MNISTData(train, None), cfg, penalties=penalties, record=False, progress=False,
                         on_epoch=on_epoch)
        except (Exception, SystemExit) as e:  # noqa: BLE001
            raise ItemFailed(f"Retraining {cfg.name} failed: {_err(e)}") from None
        name = train_file(label)
        torch.save({"states": states, "epochs": len(result.history), "config": cfg.to_dict(),
                    "history": [{k: v for k, v in h.items() if not k.startswith("test_")} for h in result.history]},
                   self.out / name)
        return [name]

    def produce(self, item: str) -> list[str]:
        if item.startswith("model"):
            return self.item_model(item)
        if item == "gbn":
            return self.item_gbn()
        if item in ("l1_penalty", "l2_penalty"):
            return self.item_penalty(item.split("_")[0])
        if item == "jobs":
            return self.item_jobs()
        if item.startswith("train:"):
            return self.item_train(item.split(":", 1)[1])
        raise ItemFailed(f"unknown item {item!r}")


def train_file(label: str) -> str:
    """The file retrain mode writes a job's weights to (the judge reads exactly this name)."""
    return "train-" + "".join(c if c.isalnum() else "_" for c in label) + ".pt"


def _export_message(e: BaseException, label: str, mode: str) -> str:
    text = str(e).strip().splitlines()[0] if str(e).strip() else ""
    name = type(e).__name__
    if "DataDependent" in name or "data-dependent" in str(e) or "data dependent" in str(e):
        return (f"{label}.forward ({mode} mode) takes a different path depending on the values of the images "
                "(an `if`, `.item()` or `.tolist()` on a tensor): the grader runs one fixed graph of tensor "
                "operations for every image. Compute the same operations whatever the input.")
    return (f"{label}.forward ({mode} mode) could not be traced as a graph of tensor operations "
            f"(torch.export): {name}: {text[:300]}")


def run(request: dict) -> int:
    out_dir = Path(request["outputs"])
    out_dir.mkdir(parents=True, exist_ok=True)
    events = open(out_dir / Path(request.get("events", "events.jsonl")).name, "a", encoding="utf-8")

    def emit(**event):
        events.write(json.dumps(event) + "\n")
        events.flush()
        os.fsync(events.fileno())

    import logging

    logging.getLogger("torch").setLevel(logging.ERROR)  # torch.export's own warnings are not the student's
    try:
        ns = load_namespace(request["notebook"])
    except (SubmissionError, LoadFailed) as e:
        emit(event="load", ok=False, message=str(e))
        return 0
    emit(event="load", ok=True)
    worker = Worker(ns, request)
    for item in request["items"]:
        emit(event="start", item=item)
        t0 = time.perf_counter()
        try:
            files = worker.produce(item)
            emit(event="done", item=item, ok=True, files=files, seconds=round(time.perf_counter() - t0, 3))
        except ItemFailed as e:
            emit(event="done", item=item, ok=False, message=str(e), seconds=round(time.perf_counter() - t0, 3))
        except MemoryError:
            emit(event="done", item=item, ok=False, message="ran out of memory (the grader's memory limit)")
        except (Exception, SystemExit) as e:  # noqa: BLE001 - an item never takes the others down
            emit(event="done", item=item, ok=False, message=_err(e))
    return 0


def main(argv=None) -> int:
    from .sandbox import die_with_parent, limit_resources

    die_with_parent()   # first thing: no worker outlives its grader (bwrap adds --die-with-parent)
    argv = sys.argv[1:] if argv is None else argv
    request = json.loads(Path(argv[0]).read_text())
    limit_resources(request.get("memory_bytes"))
    os.environ.setdefault("MPLBACKEND", "Agg")
    return run(request)


if __name__ == "__main__":
    sys.exit(main())
