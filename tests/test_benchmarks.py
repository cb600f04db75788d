"""The benchmarks run end to end (a few steps each): they print their table and write their JSON.

Their numbers are measurements, not test assertions: `make bench` and `make seeds` print them.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.data
def test_time_to_target_smoke_run_writes_rows_and_a_table(tmp_path):
    out = tmp_path / "ttt.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.time_to_target", "--max-steps", "3",
                        "--epochs", "1", "--out", str(out)], capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert res["smoke_test"] is True and set(res["rows"]) == {"seed-style", "reference", "speed", "space-to-depth"}
    for row in res["rows"].values():
        assert row["epochs"] == 1 and row["parameters"] < 10_000 and row["peak_rss_mb"] > 0
        assert row["time_to_target_s"] is None  # 3 steps cannot reach 99.4%
    assert "| seed-style | SeedNet, 9,920 |" in r.stdout and "not reached in 1 epochs" in r.stdout
    assert "reference did not reach 99.4%: no ratio" in r.stdout and "speed did not reach 99.4%: no ratio" in r.stdout
    assert "| speed | SpeedNet, 9,680 |" in r.stdout and "load average before the run" in r.stdout
    assert "| space-to-depth | SpaceToDepthNet, 9,800 |" in r.stdout


def test_ratio_is_a_lower_bound_when_the_seed_style_run_never_reaches_the_target():
    from benchmarks.time_to_target import ratio

    ref = {"time_to_target_s": 50.0, "total_s": 80.0}
    assert ratio({"seed-style": {"time_to_target_s": 500.0, "total_s": 700.0}, "reference": ref}) == (10.0, False)
    assert ratio({"seed-style": {"time_to_target_s": None, "total_s": 700.0}, "reference": ref}) == (14.0, True)
    assert ratio({"seed-style": {"time_to_target_s": 500.0, "total_s": 700.0},
                  "reference": {"time_to_target_s": None, "total_s": 80.0}}) == (None, False)
    assert ratio({"seed-style": {"time_to_target_s": 500.0, "total_s": 700.0}, "speed": {"time_to_target_s": 25.0}},
                 "speed") == (20.0, False)


@pytest.mark.parametrize("env_value, expected", [(None, "True"), ("0", "False")])
def test_allocator_setting_is_on_by_default_on_linux_and_can_be_turned_off(env_value, expected):
    import os

    env = {k: v for k, v in os.environ.items() if k != "COURSE_TUNE_ALLOCATOR"}
    if env_value is not None:
        env["COURSE_TUNE_ALLOCATOR"] = env_value
    r = subprocess.run([sys.executable, "-c", "from course_utils.perf import tune_allocator as t; print(t(), t())"],
                       capture_output=True, text=True, env=env, timeout=120, cwd=ROOT)
    want = expected if sys.platform.startswith("linux") else "False"
    assert r.stdout.split() == [want, want], r.stdout + r.stderr


@pytest.mark.data
def test_frontier_widths_reproduce_the_reference_and_its_table_requires_every_seed(tmp_path, capsys):
    import torch

    from instructor.reference.session2 import SESSION2_CONFIG, Session2Net
    from course_utils.inspection import count_parameters
    from records import fake_record

    from benchmarks import frontier

    ref, wide = Session2Net().eval(), frontier.WidthNet((8, 12, 16), (16, 16, 16)).eval()
    wide.load_state_dict(ref.state_dict())
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(wide(x), ref(x))
    for name, cand in frontier.CANDIDATES.items():
        assert count_parameters(cand.build()) == int(name[1:5]) < 10_000, name  # names carry the count

    runs = tmp_path / "runs"
    ok, dip = [98.0] * 11 + [99.45, 99.5, 99.5], [98.0] * 11 + [99.39, 99.5, 99.5]
    for name, seed, finals in [("w4692", 1, ok), ("w4692", 2, ok), ("w4884", 1, ok), ("w4884", 2, dip)]:
        fake_record(runs, frontier.CANDIDATES[name].build(), frontier.config_for(name).replace(seed=seed), finals)
    # a record of another recipe under a candidate's name is not counted
    fake_record(runs, frontier.CANDIDATES["w4884"].build(),
                frontier.config_for("w4884").replace(seed=3, lr=0.05), ok)
    assert frontier.config_for("w4692").epochs == SESSION2_CONFIG.epochs
    assert frontier.main(["--no-train", "--runs-dir", str(runs), "--seeds", "1", "2", "3"]) == 0
    out = capsys.readouterr().out
    assert "no candidate passed all 3 seeds" in out
    frontier.main(["--no-train", "--runs-dir", str(runs), "--seeds", "1", "2"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("w4692") and " 2/2 " in line for line in lines), lines
    assert any(line.startswith("w4884") and " 1/2 " in line for line in lines), lines
    assert lines[-1].endswith("w4692, 4,692 parameters"), lines


def test_seeds_overrides_are_typed_and_reject_unknown_fields():
    from benchmarks import seeds

    assert seeds.parse_overrides(["translate=0.1", "epochs=20", "nesterov=false"]) == \
        {"translate": 0.1, "epochs": 20, "nesterov": False}
    for bad in (["bogus=1"], ["lr=fast"], ["seed=3"], ["translate"]):
        with pytest.raises(SystemExit, match="--set"):
            seeds.parse_overrides(bad)
    changed = seeds.configurations(overrides={"translate": 0.1})
    assert all(cfg.translate == 0.1 for _, _, cfg, _ in changed.values())


def test_seeds_only_names_the_unknown_label_and_the_real_ones(capsys):
    """A misspelt --only used to train nothing and print an empty table; now it is a usage error."""
    from benchmarks import seeds

    with pytest.raises(SystemExit) as exit_:
        seeds.main(["--only", "GBN,Session 2 (iteration 9)", "--no-train"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "'Session 2 (iteration 9)'" in err and "Session 2 (iteration 4)" in err, err


@pytest.mark.parametrize("module, argv, phrase", [
    ("seeds", ["--epochs", "0", "--no-train"], "must be at least 1"),
    ("seeds", ["--set", "lr=0", "--no-train"], "Invalid TrainConfig"),
    ("pipeline_speed", ["--epochs", "0"], "must be at least 1"),
    ("layer_cost", ["--steps", "-3"], "must be at least 1"),
    ("threads", ["--threads", "two"], "not a whole number"),
    ("class_grading", ["--workers", "sequential", "0"], "'no-zygote' or a worker count"),
    ("time_to_target", ["--out", "."], "is a folder"),
])
def test_benchmark_arguments_are_checked_before_anything_runs(module, argv, phrase, capsys):
    """A zero count (a division by zero, an empty loop) or a folder as --out used to fail after the run."""
    import importlib

    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"benchmarks.{module}").main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and phrase in err, err


def test_fail_fast_stops_a_sweep_at_the_first_run_that_misses_the_policy(capsys):
    from benchmarks import seeds

    trained = []

    def train(job):
        trained.append(job)
        return f"run {job}", job != 2

    assert seeds.run_jobs(train, [1, 2, 3], workers=1, fail_fast=True) is False
    assert trained == [1, 2]
    assert "run 2  MISSES the policy" in capsys.readouterr().out
    trained.clear()
    assert seeds.run_jobs(train, [1, 2, 3], workers=1) is True
    assert trained == [1, 2, 3]


def test_threads_benchmark_smoke_run_prints_both_policies_side_by_side(tmp_path):
    out = tmp_path / "threads.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.threads", "--steps", "2", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    names = ("default", "passive", "short-spin")
    rows = {ln.split()[0]: ln for ln in lines if ln.split() and ln.split()[0] in names}
    assert set(rows) == set(names), r.stdout
    for ln in rows.values():
        assert ln.rstrip().endswith("x") and " / " in ln  # alone, the pair, the slowdown
    res = json.loads(out.read_text())
    assert [row["policy"] for row in res["rows"]] == list(names) and res["threads"] == 1


def test_layer_cost_smoke_run_times_every_network_and_layout(tmp_path):
    out = tmp_path / "layer_cost.json"
    r = subprocess.run([sys.executable, "-m", "benchmarks.layer_cost", "--steps", "1", "--threads", "1", "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout + r.stderr
    res = json.loads(out.read_text())
    assert set(res["step"]) == {"Session2Net (iteration 4)", "SpeedNet (iteration 5)", "PooledNet", "SpaceToDepthNet"}
    assert res["step"]["SpeedNet (iteration 5)"]["parameters"] == 9680 and res["step"]["PooledNet"]["parameters"] == 9904
    assert all(row["channels_last_ms"] > 0 and row["nchw_ms"] > 0 for part in ("step", "batchnorm")
               for row in res[part].values())
    assert "128x8x28x28" in res["batchnorm"] and "SpaceToDepthNet" in r.stdout
