"""Experiment settings: one frozen dataclass per run, saved as ``config.json`` in its run record."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "step", "onecycle")


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides a training run, apart from the model's code.

    Learning rate: ``lr`` is the constant (or starting) rate; with ``scheduler="onecycle"`` it is
    OneCycleLR's peak (``max_lr``). Augmentation is applied to whole batches on tensors
    (``rotation`` degrees, ``translate`` fraction of the image, ``scale`` +/- fraction). ``ema_decay`` > 0
    keeps an exponential moving average of the weights (and BN statistics) after every step, and that
    average is the network tested after each epoch, saved and graded (0: the last weights, as trained).
    ``ema_warmup`` lets that average start short: after step ``n`` it uses ``min(ema_decay, (1 + n) / (10 + n))``,
    so it leaves the random initial weights behind within the first epoch instead of after about
    ``3 / (1 - ema_decay)`` steps (with 0.999, three epochs of 469 steps in which the average is not yet useful).
    """

    name: str = "run"
    epochs: int = 15
    batch_size: int = 128
    seed: int = 1
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 6
    gamma: float = 0.1
    pct_start: float = 0.25
    div_factor: float = 25.0
    final_div_factor: float = 1e4
    rotation: float = 0.0
    translate: float = 0.0
    scale: float = 0.0
    label_smoothing: float = 0.0
    ema_decay: float = 0.0
    ema_warmup: bool = False
    test_batch_size: int = 2000
    channels_last: bool = True
    notes: str = ""

    def __post_init__(self):
        problems = []
        if self.optimizer not in OPTIMIZERS:
            problems.append(f"optimizer={self.optimizer!r} (choose from {OPTIMIZERS})")
        if self.scheduler not in SCHEDULERS:
            problems.append(f"scheduler={self.scheduler!r} (choose from {SCHEDULERS})")
        for name in ("epochs", "batch_size", "test_batch_size", "step_size"):
            if int(getattr(self, name)) < 1:
                problems.append(f"{name}={getattr(self, name)} (must be >= 1)")
        if self.lr <= 0:
            problems.append(f"lr={self.lr} (must be > 0)")
        if not 0.0 <= self.ema_decay < 1.0:
            problems.append(f"ema_decay={self.ema_decay} (must be in [0, 1))")
        if problems:
            raise ValueError("Invalid TrainConfig: " + "; ".join(problems))

    def replace(self, **changes) -> "TrainConfig":
        """A copy with some fields changed (the dataclass is frozen)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"Unknown TrainConfig fields: {sorted(unknown)}")
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "TrainConfig":
        return cls.from_dict(json.loads(Path(path).read_text()))
