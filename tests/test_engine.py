"""The training engine: learning happens, schedules and penalties work, run records are complete."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from course_utils.config import TrainConfig
from course_utils.engine import evaluate, find_records, fit, load_record
from course_utils.loader import mnist_data
from course_utils.seed import seed_everything


class Tiny(nn.Module):
    """A ~3.4k-parameter conv net: learns MNIST well past chance in a few hundred steps."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3)
        self.bn1 = nn.BatchNorm2d(8)
        self.c2 = nn.Conv2d(8, 16, 3)
        self.bn2 = nn.BatchNorm2d(16)
        self.c3 = nn.Conv2d(16, 10, 3)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn1(self.c1(x))), 2)
        x = F.max_pool2d(F.relu(self.bn2(self.c2(x))), 2)
        return F.adaptive_avg_pool2d(self.c3(x), 1).flatten(1)


@pytest.fixture(scope="module")
def small_data(mnist_tensors):
    xtr, ytr, xte, yte = mnist_tensors
    return mnist_data(64, tensors=(xtr[:12800], ytr[:12800], xte[:2000], yte[:2000]), seed=0)


@pytest.fixture(scope="module")
def few_batches(mnist_tensors):
    """50 training batches per epoch: for tests of what a run does, not of how well it learns."""
    xtr, ytr, xte, yte = mnist_tensors
    return mnist_data(64, tensors=(xtr[:3200], ytr[:3200], xte[:1000], yte[:1000]), seed=0)


def test_training_a_few_hundred_steps_lowers_the_loss(small_data, runs_dir):
    seed_everything(0)
    model = Tiny()
    before = evaluate(model, small_data)
    cfg = TrainConfig(name="tiny", epochs=2, batch_size=64, lr=0.05, scheduler="onecycle")
    result = fit(model, small_data, cfg, progress=False, verbose=False)
    assert result.history[-1]["steps"] == 400
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    assert result.final_test_accuracy > max(90.0, before.accuracy + 60), (before.accuracy, result.final_test_accuracy)
    assert result.history[-1]["test_loss"] < before.loss / 2


def test_run_record_holds_config_metrics_and_a_loadable_checkpoint(small_data, runs_dir):
    cfg = TrainConfig(name="record", epochs=2, batch_size=64, lr=0.05, seed=11)
    result = fit(Tiny, small_data, cfg, progress=False, verbose=False)
    rec = load_record(result.run_dir)
    assert result.run_dir.parent == runs_dir and result.run_dir.name.startswith("record-")
    assert rec.config == cfg
    m = json.loads((result.run_dir / "metrics.json").read_text())
    for key in ("history", "best_test_accuracy", "final_test_accuracy", "epochs_run", "parameters",
                "seconds_per_epoch", "torch_version", "seed", "best_train_accuracy", "first_epoch_at_target"):
        assert key in m, key
    assert m["seed"] == 11 and m["epochs_run"] == len(m["history"]) == 2
    assert m["parameters"] == sum(p.numel() for p in Tiny().parameters())
    assert m["final_test_accuracy"] == m["history"][-1]["test_accuracy"]
    assert m["best_test_accuracy"] == max(h["test_accuracy"] for h in m["history"])
    assert len(m["seconds_per_epoch"]) == 2 and all(s > 0 for s in m["seconds_per_epoch"])
    fresh = Tiny()
    fresh.load_state_dict(rec.load_state_dict())
    assert evaluate(fresh, small_data).accuracy == pytest.approx(m["final_test_accuracy"])
    assert [r.path for r in find_records("record")] == [result.run_dir]


def test_same_seed_same_run(small_data):
    cfg = TrainConfig(name="repro", epochs=1, batch_size=64, lr=0.05, rotation=7.0, seed=5)
    a = fit(Tiny, small_data, cfg, record=False, progress=False, verbose=False, max_steps=30)
    b = fit(Tiny, small_data, cfg, record=False, progress=False, verbose=False, max_steps=30)
    for pa, pb in zip(a.model.state_dict().values(), b.model.state_dict().values()):
        torch.testing.assert_close(pa, pb)


def test_penalties_are_added_to_the_loss_and_recorded(small_data):
    def l1(model):
        return 0.05 * sum(p.abs().sum() for n, p in model.named_parameters() if n.endswith("weight"))

    cfg = TrainConfig(name="pen", epochs=1, batch_size=64, lr=0.05)
    plain = fit(Tiny, small_data, cfg, record=False, progress=False, verbose=False, max_steps=150)
    pen = fit(Tiny, small_data, cfg, penalties={"l1": l1}, record=False, progress=False, verbose=False, max_steps=150)
    assert "penalty_l1" in pen.history[0] and pen.history[0]["penalty_l1"] > 0
    assert pen.metrics["penalties"] == ["l1"]
    norm = lambda m: sum(p.abs().sum().item() for n, p in m.named_parameters() if n.endswith("weight"))  # noqa: E731
    assert norm(pen.model) < 0.7 * norm(plain.model)


@pytest.mark.parametrize("scheduler,expect", [("onecycle", "peak"), ("step", "drop"), ("none", "flat")])
def test_schedulers_shape_the_learning_rate(mnist_tensors, scheduler, expect):
    xtr, ytr, xte, yte = mnist_tensors
    data = mnist_data(64, tensors=(xtr[:1280], ytr[:1280], xte[:500], yte[:500]))
    cfg = TrainConfig(name="lr", epochs=4, batch_size=64, lr=0.1, scheduler=scheduler, step_size=2, gamma=0.1)
    r = fit(Tiny, data, cfg, record=False, progress=False, verbose=False)
    lrs = [h["lr"] for h in r.history]
    if expect == "flat":
        assert lrs == [0.1] * len(lrs)
    elif expect == "drop":
        assert lrs[:2] == [0.1, 0.1] and lrs[2] == pytest.approx(0.01)
    else:
        assert max(lrs) <= 0.1 and lrs[0] < 0.1 and lrs[-1] < max(lrs)


def test_adam_trains_too(small_data):
    cfg = TrainConfig(name="adam", epochs=1, batch_size=64, optimizer="adam", lr=3e-3)
    r = fit(Tiny, small_data, cfg, record=False, progress=False, verbose=False, max_steps=150)
    assert r.final_test_accuracy > 60


def test_wrong_output_shape_gives_a_clear_error(small_data):
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(1, 10, 3)

        def forward(self, x):
            return self.c(x)  # forgot pooling + flatten

    with pytest.raises(ValueError, match=r"expected shape \(64, 10\).*got \(64, 10, 26, 26\)"):
        fit(Flat, small_data, TrainConfig(epochs=1), record=False, progress=False, verbose=False)


def test_the_averaged_network_is_the_one_tested_saved_and_returned(small_data):
    """With ema_decay, each epoch's test accuracy, the checkpoint and the returned model are the moving
    average of the weights (and BN statistics), not the last weights the optimizer produced."""
    cfg = TrainConfig(name="ema", epochs=1, batch_size=64, lr=0.05, seed=3, ema_decay=0.99)
    plain = fit(Tiny, small_data, cfg.replace(ema_decay=0.0), record=False, progress=False, verbose=False)
    seen = []
    averaged = fit(Tiny, small_data, cfg, record=False, progress=False, verbose=False,
                   on_epoch=lambda row, network: seen.append(network))
    assert type(averaged.model) is Tiny
    assert seen == [averaged.model]   # on_epoch is handed the tested network too (what retrain mode grades)
    # the same optimizer steps ran (same seed): the averaged network differs from the last weights
    assert not torch.equal(averaged.model.c1.weight, plain.model.c1.weight)
    assert not torch.equal(averaged.model.bn1.running_mean, plain.model.bn1.running_mean)
    assert evaluate(averaged.model, small_data).accuracy == averaged.final_test_accuracy
    assert averaged.final_test_accuracy > 80.0


def _sgd_steps(model, n, seed=0):
    """``n`` SGD steps on random batches, yielding after each (for the moving averages to follow)."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    for _ in range(n):
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        yield


def test_the_moving_average_is_torchs_averaged_model_bit_for_bit():
    """MovingAverage is AveragedModel(get_ema_multi_avg_fn, use_buffers=True) with its tensor lists built once:
    the same weights, BN statistics and batch counts after every step, and the same state dict entries."""
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    from course_utils.engine import MovingAverage

    seed_everything(0)
    model = Tiny()
    ours = MovingAverage(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in _sgd_steps(model, 12):
        ours.update(model)
        theirs.update_parameters(model)
        mine, torch_s = ours.module.state_dict(), theirs.module.state_dict()
        assert all(torch.equal(mine[k], torch_s[k]) for k in torch_s)
    assert ours.state_dict().keys() == theirs.state_dict().keys()
    assert int(ours.state_dict()["n_averaged"]) == int(theirs.n_averaged) == 12
    assert not torch.equal(ours.module.c1.weight, model.c1.weight)  # an average, not a copy


def test_a_warmed_up_average_starts_short_and_grows_to_its_decay():
    """With warmup the decay after step n is min(decay, (1 + n) / (10 + n)): the average follows the
    weights closely at first (the random initial weights leave it within a few steps), then as slowly as
    the plain average (0.999 is reached after 8,991 steps)."""
    from course_utils.engine import MovingAverage

    seed_everything(0)
    model = Tiny()
    plain, warm = MovingAverage(model, 0.999), MovingAverage(model, 0.999, warmup=True)
    decays = []
    for _ in _sgd_steps(model, 30):
        decays.append(warm.current_decay())
        plain.update(model)
        warm.update(model)
    assert decays[1:4] == [2 / 11, 3 / 12, 4 / 13] and plain.current_decay() == 0.999
    warm.n = 8991
    assert warm.current_decay() == 0.999
    dist = {name: (avg.module.c1.weight - model.c1.weight).norm() for name, avg in (("plain", plain), ("warm", warm))}
    assert dist["warm"] < dist["plain"] / 5, dist


def test_config_validates_and_round_trips(tmp_path):
    with pytest.raises(ValueError, match="optimizer='rmsprop'"):
        TrainConfig(optimizer="rmsprop")
    with pytest.raises(ValueError, match="ema_decay=1.0"):
        TrainConfig(ema_decay=1.0)
    with pytest.raises(ValueError, match="epochs=0"):
        TrainConfig(epochs=0)
    cfg = TrainConfig(name="x", rotation=5.0)
    cfg.save(tmp_path / "c.json")
    assert TrainConfig.load(tmp_path / "c.json") == cfg
    with pytest.raises(ValueError, match="Unknown"):
        TrainConfig.from_dict({"name": "x", "bogus": 1})
    with pytest.raises(Exception):
        cfg.epochs = 3  # frozen


def test_incomplete_run_record_is_reported(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="missing metrics.json, model.pt"):
        load_record(tmp_path)


def test_seed_helper_returns_and_applies_the_seed():
    assert seed_everything(3) == 3
    a = torch.rand(3)
    seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_train_reuses_a_complete_record_of_the_same_config_and_layers_only(small_data, runs_dir, capsys):
    from course_utils.notebook import train

    class Wider(Tiny):
        def __init__(self):
            super().__init__()
            self.c1, self.bn1, self.c2 = nn.Conv2d(1, 12, 3), nn.BatchNorm2d(12), nn.Conv2d(12, 16, 3)

    cfg = TrainConfig(name="reuse", epochs=1, batch_size=64, seed=3)
    first = train(Tiny, cfg, data=small_data, runs_dir=runs_dir, progress=False, verbose=False, max_steps=20)
    again = train(Tiny, cfg, data=small_data, runs_dir=runs_dir, reuse=True, progress=False, verbose=False)
    assert again.run_dir == first.run_dir and "reusing the run record" in capsys.readouterr().out
    for a, b in zip(again.model.state_dict().values(), first.model.state_dict().values()):
        assert torch.equal(a, b)
    other_layers = train(Wider, cfg, data=small_data, runs_dir=runs_dir, reuse=True, progress=False, verbose=False,
                         max_steps=20)
    other_config = train(Tiny, cfg.replace(lr=0.02), data=small_data, runs_dir=runs_dir, reuse=True, progress=False,
                         verbose=False, max_steps=20)
    assert len({first.run_dir, other_layers.run_dir, other_config.run_dir}) == 3
    assert "reusing" not in capsys.readouterr().out


@pytest.mark.parametrize("ema", [{}, {"ema_decay": 0.99}, {"ema_decay": 0.99, "ema_warmup": True}],
                         ids=["last-weights", "average", "warmed-up-average"])
def test_an_interrupted_run_keeps_its_epochs_and_resumes_to_the_same_result(few_batches, runs_dir, ema):
    from course_utils.records import interrupted

    cfg = TrainConfig(name="resume", epochs=3, batch_size=64, lr=0.05, scheduler="onecycle", rotation=5.0, seed=4, **ema)
    whole = fit(Tiny, few_batches, cfg, record=False, progress=False, verbose=False)

    def stop_after_two(row, network):
        if row["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(Tiny, few_batches, cfg, runs_dir=runs_dir, progress=False, verbose=False, on_epoch=stop_after_two)
    (run,) = interrupted(cfg, runs_dir)
    kept = json.loads((run / "metrics.json").read_text())
    assert [h["epoch"] for h in kept["history"]] == [1, 2] and not (run / "model.pt").exists()
    assert find_records("resume", runs_dir) == []  # incomplete: never graded, never reused

    resumed = fit(Tiny, few_batches, cfg, runs_dir=runs_dir, progress=False, verbose=False, resume=run)
    assert resumed.run_dir == run and [h["epoch"] for h in resumed.history] == [1, 2, 3]
    assert [h["test_accuracy"] for h in resumed.history] == [h["test_accuracy"] for h in whole.history]
    for a, b in zip(resumed.model.state_dict().values(), whole.model.state_dict().values()):
        assert torch.equal(a, b)
    assert not (run / "last.pt").exists() and interrupted(cfg, runs_dir) == []
    (record,) = find_records("resume", runs_dir)
    assert record.metrics["epochs_run"] == 3
