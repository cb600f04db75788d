"""Made-up run records for tests of code that reads records (reports, sweeps)."""
from __future__ import annotations

from datetime import datetime, timezone

from course_utils.engine import RunResult, _new_run_dir, save_record, summarize


def fake_record(runs, model, config, finals):
    """A complete run record with a real checkpoint (untrained weights) and a made-up history."""
    history = [{"epoch": e + 1, "train_loss": 0.1, "train_accuracy": 98.0 + e * 0.05, "test_loss": 0.03 - e * 1e-3,
                "test_accuracy": acc, "lr": 0.01, "train_seconds": 1.0, "epoch_seconds": 1.2, "steps": 10 * (e + 1)}
               for e, acc in enumerate(finals)]
    started = datetime.now(timezone.utc)
    metrics = summarize(history, config=config, n_params=sum(p.numel() for p in model.parameters()), started=started,
                        model=model)
    result = RunResult(_new_run_dir(runs, config, started), config, metrics, model)
    config.save(result.run_dir / "config.json")
    save_record(result)
    return metrics
