"""The one training loop of the course: ``fit`` trains, ``evaluate`` measures; each run leaves a run
record (:mod:`course_utils.records`: the layout, and the one rule that selects records) under the runs
directory (``$COURSE_RUNS`` or ``./runs``, gitignored).

Every notebook and grader calls these instead of writing its own loop.
"""
from __future__ import annotations

import json
import os
import platform
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Mapping

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import TrainConfig
from .inspection import count_parameters
from .loader import MNISTData, data_for
from .perf import tune_allocator
from .policy import TARGET_ACCURACY
from .records import RUNS_ENV, RunRecord, find_records, load_record, records_of, runs_root, save_record, select  # noqa: F401
from .seed import seed_everything
from .threads import configure as configure_threads

Penalty = Callable[[nn.Module], torch.Tensor]


@dataclass
class EvalResult:
    """Accuracy in percent, mean loss, and per-image predictions/targets of one pass over a loader."""

    accuracy: float
    loss: float
    predictions: torch.Tensor
    targets: torch.Tensor

    @property
    def wrong_indices(self) -> torch.Tensor:
        return (self.predictions != self.targets).nonzero().flatten()


@dataclass(repr=False)
class RunResult(RunRecord):
    """What ``fit`` returns: the run's record (folder, config, metrics with the per-epoch history) and
    the trained model in memory. ``load_state_dict()`` reads the checkpoint on disk, what graders evaluate."""

    model: nn.Module | None = None

    @property
    def run_dir(self) -> Path | None:
        return self.path

    def __repr__(self) -> str:
        return (f"RunResult({self.config.name!r}, epochs={len(self.history)}, "
                f"best={self.best_test_accuracy:.2f}%, final={self.final_test_accuracy:.2f}%, "
                f"params={self.metrics['parameters']:,}, run_dir={str(self.run_dir)!r})")


def default_device() -> torch.device:
    """CUDA if there is a GPU, else Apple's MPS, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def model_digest(model: nn.Module) -> str:
    """A short fingerprint of a network's layers (its module tree, with shapes and settings), stored in
    each run record: a record is reused only for a network that prints the same."""
    import hashlib

    return hashlib.sha256(repr(model).encode()).hexdigest()[:16]


def _as_loader(data):
    return data.test if isinstance(data, MNISTData) else data


@torch.no_grad()
def evaluate(model: nn.Module, data, *, device: str | torch.device | None = None) -> EvalResult:
    """Accuracy and loss of ``model`` on ``data`` (an ``MNISTData``, whose test split is used, or any
    iterable of ``(x, y)`` batches) on ``device`` (default: the device the model's parameters are on).
    The model is put in eval mode; its mode is restored after."""
    tune_allocator()
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    loader = _as_loader(data)
    was_training = model.training
    model.eval()
    total_loss, preds, targets = 0.0, [], []
    try:
        for x, y in loader:
            x, y = x.to(device), y.to(device)
            out = model(x)
            _check_output(out, x, y)
            total_loss += F.cross_entropy(out, y, reduction="sum").item()
            preds.append(out.argmax(1).cpu())
            targets.append(y.cpu())
    finally:
        model.train(was_training)
    predictions, targets = torch.cat(preds), torch.cat(targets)
    n = len(targets)
    return EvalResult(100.0 * (predictions == targets).sum().item() / n, total_loss / n, predictions, targets)


def _check_output(out, x, y) -> None:
    if not isinstance(out, torch.Tensor) or out.shape != (len(x), 10):
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"The model must return one row of 10 class scores per image: expected shape "
                         f"({len(x)}, 10) for a batch of {len(x)}, got {shape}. Check the last conv "
                         "(10 output channels), the global average pooling and the final flatten/view.")


def make_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """SGD / Adam / AdamW as the config says. Weight decay (L2) applies to weight matrices and conv
    kernels only (parameters with 2+ dimensions), not to BatchNorm's gamma/beta or biases: decaying
    BN's scale fights the normalisation, and biases add no complexity (the same coverage as the
    course's L1 penalty)."""
    params = list(model.parameters())
    if config.weight_decay:
        params = [{"params": [p for p in params if p.dim() >= 2]},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, nesterov=config.nesterov,
                               weight_decay=config.weight_decay)
    if config.optimizer == "adam":
        return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)


def make_scheduler(optimizer, config: TrainConfig, steps_per_epoch: int):
    """Returns ``(scheduler, per_batch)``; ``per_batch`` says whether to step it every batch."""
    if config.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=config.step_size, gamma=config.gamma), False
    if config.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, epochs=config.epochs, steps_per_epoch=steps_per_epoch,
            pct_start=config.pct_start, div_factor=config.div_factor,
            final_div_factor=config.final_div_factor), True
    return None, False


def _interactive() -> bool:
    """A terminal or a notebook kernel: places where a live progress bar helps (not CI logs)."""
    import sys

    return sys.stderr.isatty() or "ipykernel" in sys.modules


def _progress(iterable, total, desc, enabled):
    if not enabled or not _interactive():
        return iterable
    # the text bar, also in notebooks: a saved notebook shows its last line ("epoch 3/14: 100% 469/469 ...");
    # the widget bar of tqdm.auto saves as a bare "0/469" wherever the notebook was executed headless
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, mininterval=0.5)


def _say(msg: str, enabled: bool) -> None:
    if enabled:
        from tqdm import tqdm

        tqdm.write(msg)


def fit(model: nn.Module | Callable[[], nn.Module], data: MNISTData | None, config: TrainConfig, *,
        penalties: Mapping[str, Penalty] | None = None, runs_dir: str | os.PathLike | None = None,
        record: bool = True, progress: bool = True, verbose: bool = True,
        device: str | torch.device | None = None, max_steps: int | None = None,
        on_epoch: Callable[[dict, nn.Module], None] | None = None, resume: str | os.PathLike | None = None) -> RunResult:
    """Train ``model`` on ``data`` as ``config`` says, evaluating on the test split after every epoch.

    ``model`` may be a module or a zero-argument factory (a class); a factory is built after
    ``seed_everything(config.seed)`` so the initial weights follow the recorded seed. ``data=None``
    builds the in-memory MNIST loaders from the config. ``penalties`` maps a name to a callable
    ``penalty(model) -> scalar tensor`` added to the loss every batch (Session 3's L1/L2); their
    mean per epoch is recorded. ``device``: default :func:`default_device` (a GPU when there is one);
    on the CPU, threads follow :mod:`course_utils.threads`. ``max_steps`` stops early (tests).
    ``on_epoch(row, network)`` is called with each epoch's history row as soon as it is measured, and the
    network that was tested (the moving average when there is one): benchmarks time-stamp the row, the
    grader's retrain mode keeps the network's weights. Returns a :class:`RunResult`; with ``record=True`` the
    run record is written to ``runs_dir``: ``config.json`` at the start, then after every epoch
    ``metrics.json`` (the history so far) and ``last.pt`` (model, optimizer, schedule and random states), and
    ``model.pt`` at the end, which completes the record (``last.pt`` is then removed). An interrupted run
    keeps its epochs; ``resume=<its folder>`` continues it from its last finished epoch, to the same result as
    an uninterrupted run on the same machine. With ``config.ema_decay`` the network that is tested after each
    epoch, saved and returned is the moving average of the weights (:class:`MovingAverage`).
    """
    tune_allocator()
    device = torch.device(device) if device is not None else default_device()
    threads = configure_threads() if device.type == "cpu" else None
    seed_everything(config.seed)
    if not isinstance(model, nn.Module):
        model = model()
        if not isinstance(model, nn.Module):
            raise TypeError(f"fit() needs an nn.Module or a factory returning one, got {type(model).__name__}")
    if data is None:
        data = data_for(config)
    elif hasattr(data.train, "generator"):
        data.train.generator.manual_seed(config.seed)  # shuffling and augmentation follow the seed too
    penalties = dict(penalties or {})
    model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = make_optimizer(model, config)
    steps_per_epoch = len(data.train)
    scheduler, per_batch = make_scheduler(optimizer, config, steps_per_epoch)
    n_params = count_parameters(model)
    ema = MovingAverage(model, config.ema_decay, warmup=config.ema_warmup) if config.ema_decay else None
    graded = model if ema is None else ema.module  # the network that is tested, saved and returned

    started = datetime.now(timezone.utc)
    history: list[dict] = []
    first_epoch, steps = 1, 0
    if resume is not None:
        run_dir = Path(resume)
        state = _load_progress(run_dir, config)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError:
            raise ValueError(f"{run_dir.name} was trained by a network with other layers: it cannot be resumed "
                             "with this one") from None
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        if ema is not None:
            ema.load_state_dict(state["ema"])
        history = json.loads((run_dir / "metrics.json").read_text())["history"][:state["epoch"]]
        started = datetime.fromisoformat(state["started_utc"])
        first_epoch, steps = state["epoch"] + 1, state["steps"]
        torch.set_rng_state(state["torch_rng"])
        if hasattr(data.train, "generator"):
            data.train.generator.set_state(state["loader_rng"])
        _say(f"Resuming {run_dir.name} after epoch {state['epoch']} of {config.epochs}", verbose)
    else:
        run_dir = _new_run_dir(runs_root(runs_dir), config, started) if record else None
    if run_dir is not None and resume is None:
        config.save(run_dir / "config.json")
    _say(f"Training {config.name!r}: {type(model).__name__}, {n_params:,} parameters, {config.epochs} epochs, "
         f"batch {config.batch_size}, {config.optimizer} lr {config.lr} ({config.scheduler}), seed {config.seed}; "
         + (f"on the CPU, {threads} thread{'s' if threads != 1 else ''}" if threads else f"on {device}")
         + (f", penalties {sorted(penalties)}" if penalties else ""), verbose)

    t_fit = time.perf_counter()
    for epoch in range(first_epoch, config.epochs + 1):
        model.train()
        t0 = time.perf_counter()
        loss_sum, correct, seen, pen_sums = 0.0, 0, 0, {k: 0.0 for k in penalties}
        bar = _progress(data.train, steps_per_epoch, f"epoch {epoch}/{config.epochs}", progress)
        for x, y in bar:
            x, y = x.to(device), y.to(device)
            out = model(x)
            if epoch == 1 and seen == 0:
                _check_output(out, x, y)
            loss = F.cross_entropy(out, y, label_smoothing=config.label_smoothing)
            total = loss
            for k, pen in penalties.items():
                value = pen(model)
                pen_sums[k] += float(value.detach()) * len(y)
                total = total + value
            if not torch.isfinite(total):
                raise FloatingPointError(f"Loss became {total.item()} at epoch {epoch}, step {steps}: lower the "
                                         "learning rate or the penalty weights, or check the model's output.")
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if per_batch:
                scheduler.step()
            if ema is not None:
                ema.update(model)
            loss_sum += loss.item() * len(y)
            correct += (out.argmax(1) == y).sum().item()
            seen += len(y)
            steps += 1
            if steps % 20 == 0 and hasattr(bar, "set_postfix"):
                bar.set_postfix(loss=f"{loss_sum / seen:.4f}", acc=f"{100 * correct / seen:.2f}")
            if max_steps is not None and steps >= max_steps:
                break
        lr_used = optimizer.param_groups[0]["lr"]
        if scheduler is not None and not per_batch:
            scheduler.step()
        train_time = time.perf_counter() - t0
        ev = evaluate(graded, data.test, device=device) if data.test is not None else None
        row = {"epoch": epoch, "train_loss": loss_sum / seen, "train_accuracy": 100.0 * correct / seen,
               "test_loss": ev.loss if ev else None, "test_accuracy": ev.accuracy if ev else None, "lr": lr_used,
               "train_seconds": train_time, "epoch_seconds": time.perf_counter() - t0, "steps": steps}
        row.update({f"penalty_{k}": v / seen for k, v in pen_sums.items()})
        history.append(row)
        if run_dir is not None:
            _save_progress(run_dir, history, config, model, optimizer, scheduler, data, started, steps, ema)
        if on_epoch is not None:
            on_epoch(row, graded)
        mark = " *" if ev and ev.accuracy >= TARGET_ACCURACY else ""
        test = f"test loss {ev.loss:.4f} acc {ev.accuracy:6.2f}%{mark}" if ev else "no test split"
        _say(f"epoch {epoch:2d}/{config.epochs}  train loss {row['train_loss']:.4f} acc {row['train_accuracy']:6.2f}%"
             f"  | {test}  | {row['epoch_seconds']:5.1f}s", verbose)
        if max_steps is not None and steps >= max_steps:
            break

    metrics = summarize(history, config=config, n_params=n_params, penalties=sorted(penalties),
                        wall_seconds=time.perf_counter() - t_fit, started=started, model=graded, device=device)
    result = RunResult(run_dir, config, metrics, graded)
    if run_dir is not None:
        save_record(result)
        (run_dir / PROGRESS).unlink(missing_ok=True)
    if data.test is not None:
        _say(f"Done: best test accuracy {metrics['best_test_accuracy']:.2f}% (epoch {metrics['best_epoch']}), "
             f"final {metrics['final_test_accuracy']:.2f}%" + (f"; record: {run_dir}" if run_dir else ""), verbose)
    return result


PROGRESS = "last.pt"


class MovingAverage:
    """The exponential moving average of a network's weights and BatchNorm statistics (``TrainConfig.ema_decay``):
    after every optimizer step, ``avg = d * avg + (1 - d) * weights`` with ``d = decay``, or with ``warmup``
    ``d = min(decay, (1 + n) / (10 + n))`` after step ``n``. ``module`` is the averaged copy of the network.

    The arithmetic of ``torch.optim.swa_utils.AveragedModel`` with ``get_ema_multi_avg_fn`` and
    ``use_buffers=True`` (the first update copies, floating-point tensors are lerped in one foreach call,
    integer buffers such as ``num_batches_tracked`` are blended and truncated) and its state dict layout, with
    the tensor lists built once instead of at every step."""

    def __init__(self, model: nn.Module, decay: float, *, warmup: bool = False):
        import copy

        self.module = copy.deepcopy(model)
        self.decay, self.warmup, self.n = float(decay), bool(warmup), 0
        pairs = list(zip([*self.module.parameters(), *self.module.buffers()], [*model.parameters(), *model.buffers()]))
        self._floats = ([a.detach() for a, b in pairs if a.is_floating_point()],
                        [b.detach() for a, b in pairs if a.is_floating_point()])
        self._others = [(a.detach(), b.detach()) for a, b in pairs if not a.is_floating_point()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.n) / (10 + self.n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Blend in ``model``'s current weights (the network given at construction: its tensors are held)."""
        averaged, current = self._floats
        if self.n == 0:
            torch._foreach_copy_(averaged, current)
            for a, b in self._others:
                a.copy_(b)
        else:
            d = self.current_decay()
            torch._foreach_lerp_(averaged, current, 1 - d)
            for a, b in self._others:
                a.copy_(a * d + b * (1 - d))
        self.n += 1

    def state_dict(self) -> dict:
        state = {f"module.{k}": v for k, v in self.module.state_dict().items()}
        state["n_averaged"] = torch.tensor(self.n, dtype=torch.long)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict({k[len("module."):]: v for k, v in state.items() if k.startswith("module.")})
        self.n = int(state["n_averaged"])


def _save_progress(run_dir: Path, history, config, model, optimizer, scheduler, data, started, steps, ema=None) -> None:
    """After an epoch: the history so far (``metrics.json``) and what resuming needs (``last.pt``), each
    replaced atomically, so an interruption at any moment leaves the last finished epoch on disk."""
    partial = {"name": config.name, "seed": config.seed, "epochs_run": len(history), "complete": False,
               "started_utc": started.isoformat(timespec="seconds"), "history": history}
    tmp = run_dir / ".metrics.json.tmp"
    tmp.write_text(json.dumps(partial, indent=2) + "\n")
    state = {"epoch": len(history), "steps": steps, "started_utc": started.isoformat(),
             "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
             "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict() if scheduler is not None else None,
             "ema": ema.state_dict() if ema is not None else None,
             "torch_rng": torch.get_rng_state(),
             "loader_rng": data.train.generator.get_state() if hasattr(data.train, "generator") else None}
    torch.save(state, run_dir / ".last.pt.tmp")
    os.replace(run_dir / ".last.pt.tmp", run_dir / PROGRESS)
    os.replace(tmp, run_dir / "metrics.json")


def _load_progress(run_dir: Path, config: TrainConfig) -> dict:
    path = Path(run_dir) / PROGRESS
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} has no {PROGRESS}: nothing to resume (a finished run, or one stopped "
                                "before its first epoch ended)")
    saved = TrainConfig.load(Path(run_dir) / "config.json")
    if saved != config:
        raise ValueError(f"{run_dir} was started with another config than the one given: it cannot be resumed with it")
    return torch.load(path, map_location="cpu", weights_only=True)


def summarize(history: list[dict], *, config: TrainConfig, n_params: int, penalties=(), wall_seconds=None,
              started=None, model=None, device=None) -> dict:
    """The ``metrics.json`` content for a finished history."""
    accs = [h["test_accuracy"] if h["test_accuracy"] is not None else float("nan") for h in history]
    best = max(range(len(accs)), key=lambda i: (accs[i] == accs[i], accs[i] if accs[i] == accs[i] else 0.0))
    first = next((h["epoch"] for h in history if (h["test_accuracy"] or 0.0) >= TARGET_ACCURACY), None)
    return {
        "name": config.name,
        "seed": config.seed,
        "epochs_run": len(history),
        "parameters": n_params,
        "best_test_accuracy": accs[best],
        "best_epoch": history[best]["epoch"],
        "final_test_accuracy": accs[-1],
        "best_train_accuracy": max(h["train_accuracy"] for h in history),
        "first_epoch_at_target": first,
        "target_accuracy": TARGET_ACCURACY,
        "seconds_per_epoch": [round(h["epoch_seconds"], 3) for h in history],
        "wall_seconds": wall_seconds,
        "penalties": list(penalties),
        "model_class": f"{type(model).__module__}.{type(model).__qualname__}" if model is not None else None,
        "model_digest": model_digest(model) if model is not None else None,
        "started_utc": started.isoformat(timespec="seconds") if started else None,
        "torch_version": torch.__version__,
        "python_version": platform.python_version(),
        "machine": platform.node(),
        "num_threads": torch.get_num_threads(),
        "device": str(device) if device is not None else None,
        "history": history,
    }


def _new_run_dir(root: Path, config: TrainConfig, started: datetime) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in config.name) or "run"
    base = root / f"{safe}-{started.strftime('%Y%m%d-%H%M%S')}-s{config.seed}"
    path, i = base, 1
    while True:
        try:
            path.mkdir(parents=True, exist_ok=False)
            return path
        except FileExistsError:
            i += 1
            path = base.with_name(f"{base.name}-{i}")

