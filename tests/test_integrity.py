"""Adversarial and malformed submissions: each is a real notebook file (the released Session 2
iteration 4 notebook, completed, then edited) graded by the real grader in its worker process.

Every case names the checks that must fail with a phrase of their message, and the checks that must
still pass (a bad submission costs the affected checks only). The README's "What the grader
answers" table lists the same cases. The fixtures are graded two at a time (one worker process each).
"""
from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from autograder.grade import grade
from autograder.reference.session2 import SESSION2_CONFIG, Session2Net
from submissions import completed, edit, write

pytestmark = pytest.mark.data

S2 = "session2/4_bn_dropout"
NAME = "4_bn_dropout.ipynb"

# A small valid network (the tests only need its structure, not its accuracy).
SMALL = '''
class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3, bias=False)
        self.c2 = nn.Conv2d(8, 10, 3, bias=False)
{init}
    def forward(self, x):
        x = F.max_pool2d(F.relu(self.c1(x)), 2)          # 13x13
{forward}
        return F.log_softmax(F.adaptive_avg_pool2d(x, 1).flatten(1), dim=1)
'''


def net(init: str = "", forward: str = "        x = self.c2(x)", before: str = "", after: str = "") -> str:
    return before + SMALL.format(init=init or "        pass", forward=forward) + after


BIG = "        self.big = nn.Conv2d(8, 64, 5, padding=2, bias=False)\n"
BIG_FORWARD = "        x = self.c2(F.relu(self.big(x))[:, :8])"

# name: (cell to replace -> new source, {check: phrase it must fail with}, checks that must pass)
NET_CASES = {
    # tamper: parameters hidden from the count
    "parameters_method_overridden": (
        net(BIG, BIG_FORWARD, after="    def parameters(self, recurse=True):\n        return iter([])\n"
                                    "    def named_parameters(self, *a, **k):\n        return iter([])\n"),
        {"parameters": "parameters: the limit is fewer than 10,000"}, {"output", "no_fc"}),
    "module_parameters_monkeypatched": (
        net(BIG, BIG_FORWARD, before="nn.Module.parameters = lambda self, recurse=True: iter([])\n"),
        {"parameters": "replaces Module.parameters"}, {"output", "no_fc"}),
    "tensor_numel_monkeypatched": (
        net(BIG, BIG_FORWARD, before="torch.Tensor.numel = lambda self: 1\n"),
        {"parameters": "replaces Tensor.numel"}, {"output"}),
    "builtins_sum_patched_in_init": (
        net(BIG + "        import builtins\n        builtins.sum = lambda *a, **k: 0\n", BIG_FORWARD),
        {"parameters": "replaces builtins.sum"}, set()),
    "torchinfo_patched": (
        net(before="import torchinfo\ntorchinfo.summary = lambda *a, **k: None\n"),
        {"parameters": "replaces torchinfo.summary"}, {"output"}),
    "grader_check_replaced": (
        net(BIG, BIG_FORWARD, before="from autograder import checks as _c\n"
                                     "_c.check_parameters = lambda *a, **k: 'fine'\n"),
        {"parameters": "replaces autograder.checks.check_parameters"}, {"output"}),
    # tamper: weights that are not parameters
    "buffer_used_as_weight": (
        net("        self.register_buffer('w2', torch.randn(10, 8, 3, 3))",
            "        x = F.conv2d(x, self.w2)"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "plain_tensor_attribute_weight": (
        net("        self.w2 = torch.randn(10, 8, 3, 3)", "        x = F.conv2d(x, self.w2)"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "weight_built_in_forward": (
        net(forward="        x = F.conv2d(x, torch.ones(10, 8, 3, 3) * self.c2.weight.mean())"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "weight_read_from_file": (
        net(forward="        x = F.conv2d(x, torch.load('w.pt'))",
            before="torch.save(torch.randn(10, 8, 3, 3), 'w.pt')\n"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    # dense layers in disguise
    "full_map_conv_head": (
        net("        self.head = nn.Conv2d(10, 10, 5, bias=False)", "        x = self.head(F.max_pool2d(self.c2(x), 2))"),
        {"no_fc": "a 5x5 conv over a 5x5 feature map"}, {"output", "parameters"}),
    "aten_mm_head": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = torch.ops.aten.mm(F.adaptive_avg_pool2d(self.c2(x), 1).flatten(1), self.w)[:, :, None, None]"),
        {"no_fc": "dense (fully connected) product: ['mm']"}, {"output", "parameters"}),
    "einsum_head": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = torch.einsum('bc,cd->bd', F.adaptive_avg_pool2d(self.c2(x), 1).flatten(1), self.w)[:, :, None, None]"),
        {"no_fc": "dense (fully connected) product: ['einsum']"}, {"output", "parameters"}),
    # bad input in the model
    "syntax_error": ("class Net(nn.Module)\n    pass\n",
                     {c: "has a syntax error on line 1" for c in ("output", "parameters", "no_fc")}, set()),
    "forward_fails_on_a_batch": (net(forward="        x = self.c2(x.view(-1, 8, 28, 28))"),
                                 {"output": "forward() fails on a batch of shape (4, 1, 28, 28)",
                                  "no_fc": "forward() fails"}, set()),
    "wrong_output_shape": (net(forward="        x = torch.cat([self.c2(x)] * 2, 1)"),
                           {"output": "must return shape (4, 10) for a batch of 4, got (4, 20)"}, {"parameters"}),
    "nan_output": (net(forward="        x = self.c2(x) * float('nan')"),
                   {"output": "NaN or infinite"}, {"parameters", "no_fc"}),
    "no_definitions_tag": (None, {c: "has no code cell tagged 'definitions'" for c in ("output", "parameters", "no_fc")},
                           set()),
}

# whole-notebook problems: (cell -> new source, {check: phrase}, checks that must pass, grade kwargs)
LOAD_CASES = {
    "exception_at_import": ("setup", "raise RuntimeError('boom at import')", "raised RuntimeError: boom at import"),
    "missing_module": ("setup", "import not_a_real_module_xyz", "raised ModuleNotFoundError"),
    "sys_exit_at_import": ("setup", "import sys\nsys.exit(3)", "raised SystemExit"),
    "endless_loop_at_import": ("setup", "while True:\n    pass", "timed out after"),
    "allocates_20_gb": ("setup", "import torch\nx = torch.ones(20 * 2**30, dtype=torch.uint8)", "memory"),
    "segfault_at_import": ("setup", "import ctypes\nctypes.string_at(0)", "SIGSEGV"),
}

RECORD_CASES = ("checkpoint_with_wrong_keys", "checkpoint_with_wrong_shapes", "missing_run_record",
                "history_contradicts_epoch_count")


def _fake_record(runs: Path, case: str) -> None:
    """A run record of the notebook's CONFIG, broken the way ``case`` says (no training needed)."""
    if case == "missing_run_record":
        runs.mkdir(parents=True, exist_ok=True)
        return
    d = runs / "s2-4-bn-dropout-20260101-000000-s1"
    d.mkdir(parents=True)
    SESSION2_CONFIG.save(d / "config.json")
    history = [{"epoch": e, "test_accuracy": 99.5, "train_accuracy": 99.0, "test_loss": 0.02, "train_loss": 0.03}
               for e in range(1, 15)]
    epochs_run = 14
    if case == "history_contradicts_epoch_count":
        history, epochs_run = history[:10], 14
    (d / "metrics.json").write_text(json.dumps({"epochs_run": epochs_run, "history": history,
                                                "started_utc": "2026-01-01T00:00:00+00:00"}))
    state = Session2Net().state_dict()
    if case == "checkpoint_with_wrong_keys":
        state = {"not_a_layer.weight": torch.zeros(3)}
    elif case == "checkpoint_with_wrong_shapes":
        state = {k: torch.zeros(v.shape[0] + 1, *v.shape[1:]) if v.dim() else v for k, v in state.items()}
    torch.save(state, d / "model.pt")


def _build_all(folder: Path) -> dict:
    """Write every fixture; returns name -> (notebook path, runs dir, grade kwargs)."""
    base = completed(S2)
    out = {}
    for name, (src, _, _) in NET_CASES.items():
        if src is None:
            nb = json.loads(json.dumps(base))
            for cell in nb["cells"]:
                cell["metadata"]["tags"] = [t for t in cell["metadata"].get("tags", []) if t != "definitions"]
        else:
            nb = edit(base, "net", None, src)
        out[name] = (write(nb, folder / name, NAME), folder / name / "runs", {})
    for name, (cell, src, _) in LOAD_CASES.items():
        nb = edit(base, cell, None, src)
        kwargs = {"timeout": 20} if name == "endless_loop_at_import" else {}
        out[name] = (write(nb, folder / name, NAME), folder / name / "runs", kwargs)
    for name in RECORD_CASES:
        runs = folder / name / "runs"
        _fake_record(runs, name)
        out[name] = (write(base, folder / name, NAME), runs, {})
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    fixtures = _build_all(folder)
    before = {name: path.read_bytes() for name, (path, _, _) in fixtures.items()}

    def one(item):
        name, (path, runs, kwargs) = item
        return name, grade(path, runs_dirs=[runs], **kwargs)

    with ThreadPoolExecutor(max_workers=2) as pool:
        reports = dict(pool.map(one, fixtures.items()))
    for name, (path, _, _) in fixtures.items():
        assert path.read_bytes() == before[name], f"{name}: the grader modified the submission"
    return reports


def _verdicts(report):
    return {c.id: (c.passed, c.message) for c in report.checks}


def test_at_least_twenty_adversarial_or_malformed_fixtures():
    assert len(NET_CASES) + len(LOAD_CASES) + len(RECORD_CASES) >= 20


@pytest.mark.parametrize("case", sorted(NET_CASES))
def test_model_level_cases(case, graded):
    _, failing, passing = NET_CASES[case]
    got = _verdicts(graded[case])
    for cid, phrase in failing.items():
        passed, msg = got[cid]
        assert not passed and phrase.lower() in msg.lower(), f"{cid}: {msg!r} lacks {phrase!r}"
    for cid in passing:
        assert got[cid][0], f"{cid} should pass: {got[cid][1]}"
    assert not got["accuracy"][0]  # no run record in these fixtures


@pytest.mark.parametrize("case", sorted(LOAD_CASES))
def test_notebook_level_failures_fail_every_check_with_the_reason(case, graded):
    phrase = LOAD_CASES[case][2]
    report = graded[case]
    assert report.score == 0 and len(report.checks) == 5
    for c in report.checks:
        assert not c.passed and phrase.lower() in c.message.lower(), (c.id, c.message)


@pytest.mark.parametrize("case", RECORD_CASES)
def test_run_record_problems_cost_only_the_record_checks(case, graded):
    got = _verdicts(graded[case])
    for cid in ("output", "parameters", "no_fc"):
        assert got[cid][0], (cid, got[cid][1])
    expected = {
        "checkpoint_with_wrong_keys": ("accuracy", "does not fit the model class"),
        "checkpoint_with_wrong_shapes": ("accuracy", "size mismatch"),
        "missing_run_record": ("accuracy", "No run record named 's2-4-bn-dropout'"),
        "history_contradicts_epoch_count": ("epochs", "metrics say 14 epochs, the history holds 10"),
    }[case]
    passed, msg = got[expected[0]]
    assert not passed and expected[1].lower() in msg.lower(), msg


def test_a_folder_of_ten_with_three_crashing_hanging_or_exhausting_memory_gives_ten_results(tmp_path):
    """`course grade FOLDER`: a crash (segfault), an endless loop and a 20 GB allocation among ten
    submissions; every one gets its JSON result and the good ones their points."""
    base = completed(S2)
    folder = tmp_path / "class"
    bad = {"carol": ("setup", "import ctypes\nctypes.string_at(0)"),
           "dave": ("setup", "while True:\n    pass"),
           "erin": ("setup", "import torch\nx = torch.ones(20 * 2**30, dtype=torch.uint8)")}
    students = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy"]
    for s in students:
        nb = edit(base, *bad[s][:1], None, bad[s][1]) if s in bad else base
        write(nb, folder / s, NAME)
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "course_utils", "grade", str(folder), "--out", str(out),
                           "--timeout", "20"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 1, proc.stdout[-2000:] + proc.stderr[-2000:]
    results = {p.name.split("__")[0]: json.loads(p.read_text()) for p in out.glob("*.json")}
    assert sorted(results) == students, proc.stdout[-3000:]
    for s, r in results.items():
        scores = {c["id"]: c["points"] for c in r["checks"]}
        if s in bad:
            assert sum(scores.values()) == 0, (s, r["checks"])
        else:  # no run record submitted: model checks pass, record checks fail
            assert scores["output"] == 1 and scores["parameters"] == 2 and scores["no_fc"] == 2, (s, r["checks"])
    messages = {s: results[s]["checks"][0]["message"] for s in bad}
    assert "SIGSEGV" in messages["carol"] and "timed out" in messages["dave"] and "memory" in messages["erin"].lower()
