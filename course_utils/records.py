"""Run records, in one place: what a training run leaves on disk, and the one rule that selects them.

    runs/<name>-<YYYYmmdd-HHMMSS>-s<seed>/
        config.json    the frozen TrainConfig
        metrics.json   per-epoch history, best/final test accuracy, parameters, timings, versions
        model.pt       the final state_dict (the checkpoint graders evaluate)

:func:`select` is the rule every reader uses: the grader and the notebooks' test cells (the record
trained with exactly the notebook's config), the notebook helpers, the reports (newest per seed) and the
sweeps (one config over seeds, one architecture).
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from .config import TrainConfig

RUNS_ENV = "COURSE_RUNS"


def runs_root(runs_dir: str | os.PathLike | None = None) -> Path:
    """Where run records go: the argument, else ``$COURSE_RUNS``, else ``./runs``."""
    return Path(runs_dir or os.environ.get(RUNS_ENV) or "runs").expanduser().resolve()


def save_record(result) -> None:
    """Write ``metrics.json`` and ``model.pt`` of a finished :class:`~course_utils.engine.RunResult`
    (``config.json`` is written when the run starts); the checkpoint is replaced atomically."""
    import torch

    d = result.run_dir
    (d / "metrics.json").write_text(json.dumps(result.metrics, indent=2) + "\n")
    state = {k: v.detach().cpu().contiguous() for k, v in result.model.state_dict().items()}
    tmp = d / ".model.pt.tmp"
    torch.save(state, tmp)
    os.replace(tmp, d / "model.pt")


@dataclass
class RunRecord:
    """A run record: its folder, config and metrics (the per-epoch history among them).
    :class:`~course_utils.engine.RunResult` is the same record with the trained model in memory."""

    path: Path | None
    config: TrainConfig
    metrics: dict = field(repr=False)

    @property
    def history(self) -> list[dict]:
        return self.metrics["history"]

    @property
    def best_test_accuracy(self) -> float:
        return self.metrics["best_test_accuracy"]

    @property
    def final_test_accuracy(self) -> float:
        return self.metrics["final_test_accuracy"]

    @property
    def checkpoint(self) -> Path:
        if self.path is None:
            raise FileNotFoundError("This run was not recorded (record=False): it has no checkpoint file")
        return self.path / "model.pt"

    def load_state_dict(self) -> dict:
        """The checkpoint as saved on disk (what graders evaluate)."""
        import torch

        return torch.load(self.checkpoint, map_location="cpu", weights_only=True)


#: the files of a complete run record (what graders read; ``last.pt`` is only for resuming)
RECORD_FILES = ("config.json", "metrics.json", "model.pt")


def load_record(path: str | os.PathLike) -> RunRecord:
    """Read ``config.json`` + ``metrics.json`` of a run folder, with a clear error when incomplete."""
    path = Path(path)
    missing = [n for n in RECORD_FILES if not (path / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{path} is not a complete run record: missing {', '.join(missing)} "
                                "(was the run interrupted before it finished?)")
    return RunRecord(path, TrainConfig.load(path / "config.json"), json.loads((path / "metrics.json").read_text()))


def find_records(name: str | None = None, runs_dir: str | os.PathLike | None = None) -> list[RunRecord]:
    """Complete run records under the runs directory (optionally only those of config ``name``),
    oldest first."""
    root = runs_root(runs_dir)
    out = []
    for d in sorted(root.glob("*/metrics.json")) if root.is_dir() else []:
        try:
            rec = load_record(d.parent)
        except (FileNotFoundError, ValueError, json.JSONDecodeError):
            continue
        if name is None or rec.config.name == name:
            out.append(rec)
    out.sort(key=lambda r: r.metrics.get("started_utc") or "")
    return out


def select(config: TrainConfig | str, runs_dirs=None, *, any_seed: bool = False, per_seed: bool = False,
           parameters: int | None = None) -> list[RunRecord]:
    """The records that count for ``config``, oldest first (with ``per_seed``: in seed order).

    * a ``TrainConfig``: records trained with exactly it, seed included (the graded run is the newest);
      with ``any_seed``, exactly it apart from the seed (a sweep): runs that tried another recipe under
      the same name never count;
    * a config name: any complete record of that name;
    * ``per_seed``: only the newest record of each seed;
    * ``parameters``: only records of a network with that many parameters (an earlier architecture
      under the same config name does not count).

    ``runs_dirs``: a folder or a list of folders (default: :func:`runs_root`).
    """
    dirs = [runs_dirs] if isinstance(runs_dirs, (str, os.PathLike)) else list(runs_dirs or [None])
    name = config if isinstance(config, str) else config.name
    recs = [r for d in dirs for r in find_records(name, d)]
    if not isinstance(config, str):
        recs = [r for r in recs if r.config == (config.replace(seed=r.config.seed) if any_seed or per_seed else config)]
    if parameters is not None:
        recs = [r for r in recs if r.metrics.get("parameters") == parameters]
    recs.sort(key=lambda r: (r.metrics.get("started_utc") or "", r.path.name))
    if per_seed:
        newest = {r.config.seed: r for r in recs}
        return [newest[s] for s in sorted(newest)]
    return recs


def interrupted(config: TrainConfig, runs_dir: str | os.PathLike | None = None) -> list[Path]:
    """Run folders started with exactly ``config`` that stopped after at least one epoch and before the
    end (``last.pt`` there, no ``model.pt``): what ``fit(resume=...)`` can continue. Oldest first."""
    root = runs_root(runs_dir)
    out = []
    for d in sorted(root.glob("*/last.pt")) if root.is_dir() else []:
        d = d.parent
        if (d / "model.pt").exists():
            continue
        try:
            if TrainConfig.load(d / "config.json") == config:
                out.append(d)
        except (OSError, ValueError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda d: d.stat().st_mtime)


def records_of(config: TrainConfig, runs_dir: str | os.PathLike | None = None) -> list[RunRecord]:
    """Records trained with exactly ``config`` apart from its seed (any seed), oldest first."""
    return select(config, runs_dir, any_seed=True)
