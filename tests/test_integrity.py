"""Adversarial and malformed submissions, each a real notebook file graded by the real grader.

Every case is the released notebook, completed, then edited the way a student who wants marks without
the work would (or the way a broken submission is). Each names the checks that must fail with a phrase
of their message and the checks that must still pass (a bad submission costs the affected checks
only). The attack classes (see the README's threat model):

* tampering in the worker (monkeypatched torch, builtins, the grader's own functions, Tensor dunders):
  no effect, because the verdicts are computed by the judge in the grading process;
* reading the test set, the grader's files, the network, the environment: not there in the sandbox;
* input-dependent forwards: the judge runs the exported graph itself, so there is no branch to take;
* dense layers in disguise (folded maps, per-position weights, matmul, full-map kernels);
* forged worker outputs (pickles, graphs with lookups, miscounted weights): the judge validates them;
* regularisers in name only, Ghost Batch Norm variants (correct ones pass), broken run records.

The fixtures are graded two at a time (one worker process each). Sandbox-only cases (they would harm
or be meaningless without isolation) are skipped, saying so, where bubblewrap does not work.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from autograder import sandbox
from autograder.grade import ROOT, grade
from instructor.reference.session2 import SESSION2_CONFIG, Session2Net
from submissions import completed, edit, net, write

pytestmark = pytest.mark.data

S2, S3 = "session2/4_bn_dropout", "session3/regularization"
NAME2, NAME3 = "4_bn_dropout.ipynb", "regularization.ipynb"
SANDBOXED = sandbox.isolation() == sandbox.SANDBOX
WARM = SANDBOXED and os.environ.get("COURSE_ZYGOTE", "").lower() not in ("off", "0", "no")   # zygote tests can run
MARKER = Path("/tmp") / f"judge-ran-student-pickle-{uuid.uuid4().hex}"

BIG = "        self.big = nn.Conv2d(8, 64, 5, padding=2, bias=False)\n"   # 12,800 parameters
BIG_FORWARD = "        x = self.c2(F.relu(self.big(x))[:, :8])"
LIMIT = "parameters: the limit is fewer than 10,000"
LINEAR_HEAD = "F.log_softmax(F.linear(F.adaptive_avg_pool2d(x, 1).flatten(1), self.w), dim=1)"
DATA_BRANCH = "takes a different path depending on the values of the images"
TRACE = "could not be traced as a graph of tensor operations"

# name: (new source of the definitions cell, {check: phrase it must fail with}, checks that must pass)
NET_CASES = {
    # tampering with the counting machinery in the worker: the judge counts the graph's tensors itself
    "parameters_method_overridden": (
        net(BIG, BIG_FORWARD, after="    def parameters(self, recurse=True):\n        return iter([])\n"
                                    "    def named_parameters(self, *a, **k):\n        return iter([])\n"),
        {c: TRACE for c in ("output", "parameters", "no_fc")}, set()),   # torch.export needs the real ones
    "module_parameters_monkeypatched": (
        net(BIG, BIG_FORWARD, before="nn.Module.parameters = lambda self, recurse=True: iter([])\n"),
        {"parameters": LIMIT}, {"output", "no_fc"}),
    "tensor_numel_monkeypatched": (
        net(BIG, BIG_FORWARD, before="torch.Tensor.numel = lambda self: 1\n"), {"parameters": TRACE}, set()),
    "builtins_sum_patched_in_init": (
        net(BIG + "        import builtins\n        builtins.sum = lambda *a, **k: 0\n", BIG_FORWARD),
        {"parameters": LIMIT}, {"output"}),
    "grader_judge_replaced_in_worker": (
        net(BIG, BIG_FORWARD, before="from autograder import judge as _j, checks as _c\n"
                                     "_j.parameters = _c.check_parameters = lambda *a, **k: 'fine'\n"),
        {"parameters": LIMIT}, {"output"}),
    "residual_adds_count_each_weight_once": (  # activations carry their weights' provenance, not their count
        net(forward="        x = self.c2(x)\n        x = x + x * 0.5 + F.batch_norm(x, None, None, None, None, True)"),
        {}, {"output", "parameters", "no_fc"}),
    "torchinfo_patched_harmlessly": (  # tampering that changes no verdict is simply ignored
        net(before="import torchinfo\ntorchinfo.summary = lambda *a, **k: None\n"), {}, {"output", "parameters", "no_fc"}),
    "tensor_eq_and_ge_patched": (
        net(BIG, BIG_FORWARD, before="torch.Tensor.__eq__ = lambda a, b: torch.ones(a.shape, dtype=torch.bool)\n"
                                     "torch.Tensor.__ge__ = lambda a, b: torch.ones(a.shape, dtype=torch.bool)\n"),
        {"parameters": LIMIT}, {"output"}),
    # weights that are not parameters: counted anyway, and refused as conv kernels
    "buffer_used_as_weight": (
        net("        self.register_buffer('w2', torch.randn(10, 8, 3, 3))", "        x = F.conv2d(x, self.w2)"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "plain_tensor_attribute_weight": (
        net("        self.w2 = torch.randn(10, 8, 3, 3)", "        x = F.conv2d(x, self.w2)"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "weight_built_in_forward": (
        net(forward="        x = F.conv2d(x, torch.ones(10, 8, 3, 3) * self.c2.weight.mean())"),
        {"parameters": "is not an nn.Parameter"}, {"output", "no_fc"}),
    "weight_read_from_file": (
        net(forward="        x = F.conv2d(x, torch.load('w.pt'))", before="torch.save(torch.randn(10, 8, 3, 3), 'w.pt')\n"),
        {"parameters": TRACE}, set()),
    "big_hidden_constant": (
        net("        self.w2 = torch.randn(10, 8, 35, 35)", "        x = F.conv2d(x, self.w2, padding=17)"),
        {"parameters": "Largest layers: w2 98,000"}, {"output"}),
    # dense layers, plain and in disguise
    "full_map_conv_head": (
        net("        self.head = nn.Conv2d(10, 10, 5, bias=False)", "        x = self.head(F.max_pool2d(self.c2(x), 2))"),
        {"no_fc": "a 5x5 conv over a 5x5 feature map"}, {"output", "parameters"}),
    "aten_mm_head": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = torch.ops.aten.mm(F.adaptive_avg_pool2d(self.c2(x), 1).flatten(1), self.w)[:, :, None, None]"),
        {"no_fc": "dense (fully connected) product: aten.mm"}, {"output", "parameters"}),
    "einsum_head": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = torch.einsum('bc,cd->bd', F.adaptive_avg_pool2d(self.c2(x), 1).flatten(1), self.w)[:, :, None, None]"),
        {"no_fc": "dense (fully connected) product"}, {"output", "parameters"}),
    "matmul_operator_head": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = (F.adaptive_avg_pool2d(self.c2(x), 1).flatten(1) @ self.w)[:, :, None, None]"),
        {"no_fc": "dense (fully connected) product"}, {"output", "parameters"}),
    "flattened_map_into_channels_then_1x1_conv": (
        net("        self.head = nn.Conv2d(10 * 5 * 5, 10, 1, bias=False)",
            "        x = F.max_pool2d(self.c2(x), 2)\n"
            "        x = self.head(x.reshape(x.shape[0], -1, 1, 1))"),
        {"no_fc": "folded into channels and mixed by learned weights"}, {"output", "parameters"}),
    "pixel_unshuffle_whole_map_then_1x1_conv": (
        net("        self.head = nn.Conv2d(10 * 121, 10, 1, bias=False)",
            "        x = self.head(F.pixel_unshuffle(self.c2(x), 11))"),
        {"no_fc": "folded into channels"}, {"output"}),
    "conv1d_over_the_flattened_map": (
        net("        self.head = nn.Conv1d(1, 10, 10 * 5 * 5, bias=False)",
            "        x = F.max_pool2d(self.c2(x), 2)\n"
            "        x = self.head(x.flatten(1).unsqueeze(1)).unsqueeze(-1)"),
        {"no_fc": "folded into channels"}, {"output", "parameters"}),
    "per_position_weights_then_mean": (
        net("        self.w = nn.Parameter(torch.randn(1, 10, 11, 11))", "        x = self.c2(x) * self.w"),
        {"no_fc": "vary over pixel positions"}, {"output", "parameters"}),
    "linear_head_only_in_training_mode": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = self.c2(x)\n        if self.training:\n            return " + LINEAR_HEAD),
        {"no_fc": "(training-mode forward)"}, {"output", "parameters"}),
    "linear_head_unless_batch_of_500": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = self.c2(x)\n        if x.shape[0] != 500:\n            return " + LINEAR_HEAD),
        {"no_fc": "(training-mode forward)"}, {"output", "parameters"}),
    "linear_head_unless_exporting": (  # the graph the judge runs is the graph it inspects: no FC there
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = self.c2(x)\n        if not torch.compiler.is_exporting():\n            return " + LINEAR_HEAD),
        {}, {"output", "parameters", "no_fc"}),
    "weights_laundered_through_an_activation": (
        net("        self.w = nn.Parameter(torch.randn(1, 100, 5, 5))",
            "        x = F.max_pool2d(self.c2(x), 2)\n"
            "        w = x.mean((1, 2, 3), keepdim=True) * 0 + self.w\n"
            "        x = (x.repeat(1, 10, 1, 1) * w).sum((2, 3)).view(-1, 10, 10).sum(2)[:, :, None, None]"),
        {"no_fc": "vary over pixel positions"}, {"output", "parameters"}),
    "batch_norm_statistics_as_a_dense_layer": (
        net("        self.register_buffer('m', torch.zeros(12100))\n        self.register_buffer('v', torch.ones(12100))",
            "        x = self.c2(x)\n"
            "        f = torch.cat([x, -x], 1).repeat(1, 10, 1, 1).reshape(x.shape[0], 12100, 2, 1)\n"
            "        x = F.batch_norm(f, self.m, self.v, None, None, False, 0.0, 0.0).reshape(x.shape[0], 10, -1, 1)"),
        {"no_fc": "a batch norm after reshape regroups", "parameters": LIMIT}, {"output"}),
    "full_map_conv_hidden_by_padding": (
        net("        self.head = nn.Conv2d(10, 10, 5, padding=1, bias=False)",
            "        x = self.head(F.max_pool2d(self.c2(x), 2))"),
        {"no_fc": "a 5x5 conv over a 5x5 feature map"}, {"output", "parameters"}),
    # input-dependent forwards: there is no graph to grade
    "branch_on_image_values": (
        net("        self.w = nn.Parameter(torch.randn(10, 10))",
            "        x = self.c2(x)\n        if x.any():\n            return " + LINEAR_HEAD),
        {"output": DATA_BRANCH, "parameters": DATA_BRANCH, "no_fc": DATA_BRANCH}, set()),
    "python_loop_over_images": (
        net(forward="        x = self.c2(x)\n        x = torch.stack([v * 2 if v.sum() > 0 else v for v in x])"),
        {"output": DATA_BRANCH, "no_fc": DATA_BRANCH}, set()),
    "lookup_table_indexed_by_the_image": (
        net("        self.table = nn.Parameter(torch.randn(784, 10))",
            "        return self.table[x.flatten(1).argmax(1)]"),
        {"output": "the grader does not run", "no_fc": "the grader does not run"}, set()),
    "im2col_then_matmul": (
        net("        self.w = nn.Parameter(torch.randn(10, 72))",
            "        x = (self.w @ F.unfold(x, 3)).view(x.shape[0], 10, 11, 11)"),
        {"output": "the grader does not run"}, set()),
    # plain mistakes
    "syntax_error": ("class Net(nn.Module)\n    pass\n",
                     {c: "has a syntax error on line 1" for c in ("output", "parameters", "no_fc")}, set()),
    "forward_fails_on_a_batch": (net(forward="        x = self.c2(x.view(-1, 8, 28, 28))"),
                                 {"output": "could not be traced", "no_fc": "could not be traced"}, set()),
    "wrong_output_shape": (net(forward="        x = torch.cat([self.c2(x)] * 2, 1)"),
                           {"output": "must return shape (500, 10) for a batch of 500, got (500, 20)"}, {"parameters"}),
    "nan_output": (net(forward="        x = self.c2(x) * float('nan')"),
                   {"output": "NaN or infinite"}, {"parameters", "no_fc"}),
    "no_definitions_tag": (None, {c: "has no code cell tagged 'definitions'" for c in ("output", "parameters", "no_fc")},
                           set()),
}

# Forged worker outputs: the submission patches the grader's worker code (it runs in the same process)
FORGE = '''
import sys, autograder.export as _e
_w = sys.modules["__main__"]   # the running worker (python -m autograder.worker)
{body}
'''
FORGED_GRAPH = '''
_orig = _e.export_model
def _forged(model, batch, mode="eval", example=None):
    graph, tensors = _orig(model, batch, mode, example)
    image = next(s["name"] for s in graph["inputs"] if s["kind"] == "image")
{edit}    return graph, tensors
_e.export_model = _forged
'''


def forged_graph(edit: str) -> str:
    """A definitions-cell prefix that makes the worker hand back its real graph edited by ``edit`` (code
    that may use ``graph``, ``tensors``, ``batch`` and ``image``, the name of the image input)."""
    return FORGE.format(body=FORGED_GRAPH.replace("{edit}", textwrap.indent(edit.lstrip("\n"), "    ")))


FORGE_CASES = {
    "pickle_with_code_in_the_weights_file": (FORGE.format(body=f'''
class _Boom:
    def __reduce__(self):
        import os
        return (os.system, ("touch {MARKER}",))
_orig = _w.Worker.export
def _export(self, model, label, mode, prefix):
    files = _orig(self, model, label, mode, prefix)
    torch.save({{"x": _Boom()}}, self.out / f"{{prefix}}-{{mode}}.pt")
    return files
_w.Worker.export = _export
'''), {c: "could not be read safely" for c in ("output", "parameters", "no_fc")}),
    "graph_forged_with_a_lookup_op": (forged_graph('''
out = graph["nodes"][-1]
graph["nodes"].insert(-1, {"name": "look", "op": "call_function", "target": "aten.index_select.default",
                           "args": [out["args"][0][0], 0, {"$node": "look_idx"}], "kwargs": {}})
'''), {c: "aten.index_select" for c in ("output", "parameters", "no_fc")}),
    "big_weight_relabelled_as_a_buffer": (forged_graph('''
for spec in graph["inputs"]:
    if spec.get("key") == "big.weight":
        spec["kind"] = "buffer"
'''), {"parameters": LIMIT}),
    "in_place_copy_launders_the_image_into_a_matmul": (forged_graph('''
graph["inputs"].append({"name": "fc_w", "kind": "parameter", "key": "fc.weight"})
tensors["fc.weight"] = torch.randn(784, 10)
out = graph["nodes"].pop()
graph["nodes"] += [
    {"name": "flat", "op": "call_function", "target": "aten.view.default", "args": [{"$node": image}, [batch, 784]], "kwargs": {}},
    {"name": "z", "op": "call_function", "target": "aten.zeros.default", "args": [[batch, 784]], "kwargs": {}},
    {"name": "c", "op": "call_function", "target": "aten.copy_.default", "args": [{"$node": "z"}, {"$node": "flat"}], "kwargs": {}},
    {"name": "m", "op": "call_function", "target": "aten.mm.default", "args": [{"$node": "z"}, {"$node": "fc_w"}], "kwargs": {}},
    {"name": "output", "op": "output", "target": "output", "args": [[{"$node": "m"}]], "kwargs": {}}]
'''), {"no_fc": "a model tensor used in copy_ on the activations"}),
    "tensor_indexed_by_getitem": (forged_graph('''
graph["nodes"].insert(0, {"name": "look", "op": "call_function", "target": "getitem",
                          "args": [{"$node": image}, 0], "kwargs": {}})
'''), {c: "getitem is allowed only" for c in ("output", "parameters", "no_fc")}),
    "graph_that_makes_a_huge_tensor": (forged_graph('''
graph["nodes"].insert(0, {"name": "huge", "op": "call_function", "target": "aten.expand.default",
                          "args": [{"$node": image}, [batch, 10**6, 28, 28]], "kwargs": {}})
graph["nodes"].insert(1, {"name": "huge2", "op": "call_function", "target": "aten.clone.default",
                          "args": [{"$node": "huge"}], "kwargs": {}})
'''), {c: "limit" for c in ("output", "parameters", "no_fc")}),
    "jobs_forged_as_an_empty_list": (FORGE.format(body='''
def _jobs(self):
    (self.out / "jobs.json").write_text("[]")
    return ["jobs.json"]
_w.Worker.item_jobs = _jobs
'''), {"epochs": "must be exactly Net", "accuracy": "must be exactly Net"}),
    "events_file_replaced_by_a_fifo": (FORGE.format(body='''
import os
os.remove("events.jsonl")
os.mkfifo("events.jsonl")
'''), {c: "stopped the grader" for c in ("output", "parameters", "no_fc", "epochs", "accuracy")}),
}

# whole-notebook problems: (cell, new source, phrase every check's message contains)
LOAD_CASES = {
    "exception_at_import": ("setup", "raise RuntimeError('boom at import')", "raised RuntimeError: boom at import"),
    "missing_module": ("setup", "import not_a_real_module_xyz", "raised ModuleNotFoundError"),
    "sys_exit_at_import": ("setup", "import sys\nsys.exit(3)", "raised SystemExit"),
    "endless_loop_at_import": ("setup", "while True:\n    pass", "timed out after"),
    "allocates_20_gb": ("setup", "import torch\nx = torch.ones(20 * 2**30, dtype=torch.uint8)", "memory"),
    "segfault_at_import": ("setup", "import ctypes\nctypes.string_at(0)", "SIGSEGV"),
    "reads_the_grader_environment": (
        "setup", "import os\nraise RuntimeError('secret=' + os.environ.get('COURSE_FIXTURE_SECRET', 'absent') + "
                 "' data=' + os.environ.get('COURSE_DATA', 'absent'))", "secret=absent data=absent"),
}
# only meaningful (or only safe) inside the sandbox: (cell, source, phrase)
SANDBOX_CASES = {
    "reads_the_test_labels": (
        "setup", "import autograder, pathlib\nroot = pathlib.Path(autograder.__file__).resolve().parents[1]\n"
                 "labels = (root / 'data' / 'MNIST' / 'raw' / 't10k-labels-idx1-ubyte').read_bytes()",
        "No such file or directory"),
    "rewrites_the_grader_on_disk": (
        "setup", "import autograder, pathlib\n"
                 "(pathlib.Path(autograder.__file__).parent / 'judge.py').write_text('# graded by me')",
        "Read-only file system"),
    "reads_another_submission": (
        "setup", "import os\nos.listdir({other!r})", "No such file or directory"),
    "opens_a_network_connection": (
        "setup", "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)", "raised"),
    "imports_the_reference_solution": (
        "setup", "from instructor.reference.session2 import Session2Net", "No module named 'instructor'"),
    "unmounts_to_find_other_grades": (   # a warm worker's /z hides every grade's folder (autograder.zygote)
        "setup", "import ctypes, os\nlibc = ctypes.CDLL(None, use_errno=True)\n"
                 "libc.unshare(0x10000000 | 0x00020000)  # a user and mount namespace of its own: capabilities there\n"
                 "for d in ('/z', '/proc', '/tmp', '/w/.stage', '/w/in'):\n"
                 "    libc.umount2(d.encode(), 2)\n"
                 "raise RuntimeError('scratch folders seen: ' + repr(os.listdir('/z') if os.path.isdir('/z') else []))",
        "scratch folders seen: []"),
    "kills_every_process_it_can_see": (
        "setup", "import os, signal\ntry:\n    os.kill(-1, signal.SIGKILL)\nexcept OSError:\n    pass\n"
                 "os.killpg(0, signal.SIGKILL)", "the grading process"),
}

RECORD_CASES = ("checkpoint_with_wrong_keys", "checkpoint_with_wrong_shapes", "missing_run_record",
                "history_contradicts_epoch_count")

# an untrained checkpoint whose record claims 99.5% every epoch: (definitions-cell prefix, phrase)
ACCURACY_CASES = {
    "record_claims_99_5_for_an_untrained_checkpoint": ("", "on the MNIST test set (evaluated by the grader); 99.4% is needed"),
    "tensor_eq_patched_to_always_true": (
        "torch.Tensor.__eq__ = lambda a, b: torch.ones(torch.broadcast_shapes(a.shape, getattr(b, 'shape', ())), "
        "dtype=torch.bool)\n", "99.4% is needed"),
    "argmax_patched_to_the_labels_it_guesses": (
        "torch.Tensor.argmax = lambda self, *a, **k: torch.zeros(self.shape[0], dtype=torch.long)\n", "99.4% is needed"),
}

DOC_GBN = '''
class GhostBatchNorm(nn.BatchNorm2d):
    """The course documents' Ghost Batch Norm: interleaved virtual batches, per-split running statistics."""

    def __init__(self, num_features, num_splits, **kw):
        super().__init__(num_features, **kw)
        self.num_splits = num_splits
        self.register_buffer("running_mean", torch.zeros(num_features * self.num_splits))
        self.register_buffer("running_var", torch.ones(num_features * self.num_splits))

    def train(self, mode=True):
        if (self.training is True) and (mode is False):
            self.running_mean = torch.mean(self.running_mean.view(self.num_splits, self.num_features), dim=0).repeat(self.num_splits)
            self.running_var = torch.mean(self.running_var.view(self.num_splits, self.num_features), dim=0).repeat(self.num_splits)
        return super().train(mode)

    def forward(self, input):
        N, C, H, W = input.shape
{check}        if self.training or not self.track_running_stats:
            return F.batch_norm(
                input.view(-1, C * self.num_splits, H, W), self.running_mean, self.running_var,
                self.weight.repeat(self.num_splits), self.bias.repeat(self.num_splits),
                True, self.momentum, self.eps).view(N, C, H, W)
        return F.batch_norm(input, self.running_mean[:self.num_features], self.running_var[:self.num_features],
                            self.weight, self.bias, False, self.momentum, self.eps)
'''
VALUE_CHECK = ("        if self.training and N % self.num_splits:\n"
               "            raise ValueError(f'batch of {N} does not split into {self.num_splits}')\n")
INTERLEAVED_GBN = '''
class GhostBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, num_splits=4, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits

    def forward(self, x):
        if not self.training:
            return super().forward(x)
        if x.shape[0] % self.num_splits:
            raise ValueError("batch does not split")
        out = torch.empty_like(x)
        for g in range(self.num_splits):
            out[g::self.num_splits] = F.batch_norm(x[g::self.num_splits], self.running_mean, self.running_var,
                                                   self.weight, self.bias, True, self.momentum, self.eps)
        return out
'''
PLAIN_BN = '''
class GhostBatchNorm(nn.BatchNorm2d):
    def __init__(self, num_features, num_splits=4, **kwargs):
        super().__init__(num_features, **kwargs)
        self.num_splits = num_splits
'''
# Session 3: (cell, old text or None for the whole cell, new text, {check: phrase}, checks that must pass)
S3_CASES = {
    "documents_ghost_batch_norm": ("ghost_batch_norm", None, DOC_GBN.format(check=""),
                                   {"ghost_batch_norm": "The course asks for a ValueError"}, {"net", "l1_penalty"}),
    "documents_ghost_batch_norm_with_the_value_error": (
        "ghost_batch_norm", None, DOC_GBN.format(check=VALUE_CHECK), {}, {"ghost_batch_norm", "net", "l1_penalty"}),
    "interleaved_ghost_batch_norm": ("ghost_batch_norm", None, INTERLEAVED_GBN, {},
                                     {"ghost_batch_norm", "net", "l1_penalty"}),
    "plain_batch_norm_with_allclose_patched": (
        "ghost_batch_norm", None, "torch.allclose = lambda *a, **k: True\n" + PLAIN_BN,
        {"ghost_batch_norm": "matches ordinary BatchNorm over the whole batch",
         "net": "must normalise virtual batches of 32 images"}, {"l1_penalty"}),
    "l1_over_all_parameters_with_isclose_patched": (
        "l1_penalty", None, "import math\nmath.isclose = lambda *a, **k: True\n"
                            "def l1_penalty(model):\n    return sum(p.abs().sum() for p in model.parameters())\n",
        {"l1_penalty": "Cover every conv weight and only those"}, {"ghost_batch_norm", "net"}),
    "l2_penalty_written_wrong": (
        "l1_penalty", "def l1_penalty(model):", "def l2_penalty(model):\n    return sum(p.pow(2).sum() for p in model.parameters())\n\n\ndef l1_penalty(model):",
        {"l1_penalty": "l2_penalty gives"}, {"ghost_batch_norm", "net"}),
    "ghost_batch_norm_outputs_forged_without_steps": (
        "ghost_batch_norm", "class GhostBatchNorm(", "import sys\n_w = sys.modules['__main__']\n"
        "def _gbn(self):\n    t = torch.zeros(8, 6, 5, 5)\n"
        "    torch.save([{'is_module': True, 'steps': [], 'restored': (t, t), 'bad_batch': 'ValueError', "
        "'bad_is_value_error': True}] * 3, self.out / 'gbn.pt')\n    return ['gbn.pt']\n"
        "_w.Worker.item_gbn = _gbn\n\n\nclass GhostBatchNorm(",
        {"ghost_batch_norm": "produced no training step"}, {"net", "l1_penalty"}),
    "l1_weight_of_1e-30": ("config", "L1_WEIGHT = 2e-5", "L1_WEIGHT = 1e-30",
                           {"epochs": "too weak to matter", "accuracy": "too weak to matter"}, {"net", "l1_penalty"}),
    "weight_decay_of_1e-30": ("config", "WEIGHT_DECAY = 1e-4", "WEIGHT_DECAY = 1e-30",
                              {"epochs": "too weak to matter", "accuracy": "too weak to matter"}, {"net"}),
}


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


class _Listener:
    """A TCP server on loopback that counts the connections it gets (none may come from a worker)."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.sock.settimeout(0.2)
        self.port, self.connections, self.stop = self.sock.getsockname()[1], 0, False
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
                self.connections += 1
                conn.close()
            except OSError:
                pass


def _build_all(folder: Path, listener: _Listener) -> dict:
    """Write every fixture; returns name -> (notebook path, runs dir, grade kwargs)."""
    base, base3 = completed(S2), completed(S3)
    out = {}
    for name, (src, _, _) in NET_CASES.items():
        if src is None:
            nb = json.loads(json.dumps(base))
            for cell in nb["cells"]:
                cell["metadata"]["tags"] = [t for t in cell["metadata"].get("tags", []) if t != "definitions"]
        else:
            nb = edit(base, "net", None, src)
        out[name] = (write(nb, folder / name, NAME2), folder / name / "runs", {})
    for name, (src, _) in FORGE_CASES.items():
        nb = edit(base, "net", None, src + net(BIG, BIG_FORWARD) if "big" in name else src + net())
        out[name] = (write(nb, folder / name, NAME2), folder / name / "runs", {})
    for name, (cell, src, _) in LOAD_CASES.items():
        nb = edit(base, cell, None, src)
        kwargs = {"timeout": 10} if name == "endless_loop_at_import" else {}
        out[name] = (write(nb, folder / name, NAME2), folder / name / "runs", kwargs)
    if SANDBOXED:
        for name, (cell, src, _) in SANDBOX_CASES.items():
            src = src.format(other=str(folder / "exception_at_import"), port=listener.port)
            nb = edit(base, cell, None, src)
            out[name] = (write(nb, folder / name, NAME2), folder / name / "runs", {"timeout": 60})
    for name in RECORD_CASES:
        runs = folder / name / "runs"
        _fake_record(runs, name)
        out[name] = (write(base, folder / name, NAME2), runs, {})
    for name, (prefix, _) in ACCURACY_CASES.items():
        runs = folder / name / "runs"
        _fake_record(runs, name)
        nb = edit(base, "net", "def conv_block(", prefix + "def conv_block(") if prefix else base
        out[name] = (write(nb, folder / name, NAME2), runs, {})
    for name, (cell, old, new, _, _) in S3_CASES.items():
        out[name] = (write(edit(base3, cell, old, new), folder / name, NAME3), folder / name / "runs", {})
    return out


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    folder = tmp_path_factory.mktemp("adversarial")
    listener = _Listener()
    fixtures = _build_all(folder, listener)
    before = {name: path.read_bytes() for name, (path, _, _) in fixtures.items()}
    judge_source = (ROOT / "autograder" / "judge.py").read_bytes()
    os.environ["COURSE_FIXTURE_SECRET"] = "hunter2"   # in the grader's environment, never the worker's

    def one(item):
        name, (path, runs, kwargs) = item
        return name, grade(path, runs_dirs=[runs], **kwargs)

    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            reports = dict(pool.map(one, fixtures.items()))
    finally:
        os.environ.pop("COURSE_FIXTURE_SECRET", None)
        listener.stop = True
    for name, (path, _, _) in fixtures.items():
        assert path.read_bytes() == before[name], f"{name}: the grader modified the submission"
    assert (ROOT / "autograder" / "judge.py").read_bytes() == judge_source, "a submission rewrote the grader"
    assert listener.connections == 0, "a worker reached the network"
    assert not MARKER.exists(), "the judge executed code from a worker's output"
    print(f"\ngraded {len(reports)} adversarial or malformed fixtures "
          f"({sandbox.isolation()}; sandbox-only cases {'included' if SANDBOXED else 'skipped'})")
    return reports


def _verdicts(report):
    return {c.id: (c.passed, c.message) for c in report.checks}


def _assert_case(report, failing: dict, passing: set):
    got = _verdicts(report)
    for cid, phrase in failing.items():
        passed, msg = got[cid]
        assert not passed and phrase.lower() in msg.lower(), f"{cid}: {msg!r} lacks {phrase!r}"
    for cid in passing:
        assert got[cid][0], f"{cid} should pass: {got[cid][1]}"


def test_at_least_forty_five_adversarial_or_malformed_fixtures(graded):
    assert len(graded) >= 45, len(graded)


def test_readme_states_the_number_of_fixtures_that_ran(graded):
    """The README's count is the number graded here (with the sandbox, as CI runs it)."""
    readme = (ROOT / "README.md").read_text()
    m = re.search(r"(\d+) adversarial or malformed submissions", readme)
    assert m, "README lacks the fixture count"
    if SANDBOXED:
        assert int(m.group(1)) == len(graded), f"README says {m.group(1)}, {len(graded)} were graded"


@pytest.mark.parametrize("case", sorted(NET_CASES))
def test_model_level_cases(case, graded):
    _, failing, passing = NET_CASES[case]
    _assert_case(graded[case], failing, passing)
    assert not _verdicts(graded[case])["accuracy"][0]  # no run record in these fixtures


def test_the_judge_counts_the_parameters_a_module_registers(graded):
    assert _verdicts(graded["residual_adds_count_each_weight_once"])["parameters"][1].startswith("792 parameters")
    assert _verdicts(graded["torchinfo_patched_harmlessly"])["parameters"][1].startswith("792 parameters")


@pytest.mark.parametrize("case", sorted(FORGE_CASES))
def test_forged_worker_outputs_are_refused_by_the_judge(case, graded):
    _assert_case(graded[case], FORGE_CASES[case][1], set())
    assert graded[case].score < graded[case].max_score


@pytest.mark.parametrize("case", sorted(LOAD_CASES))
def test_notebook_level_failures_fail_every_check_with_the_reason(case, graded):
    phrase = LOAD_CASES[case][2]
    report = graded[case]
    assert report.score == 0 and len(report.checks) == 5
    for c in report.checks:
        assert not c.passed and phrase.lower() in c.message.lower(), (c.id, c.message)


@pytest.mark.parametrize("case", sorted(SANDBOX_CASES))
def test_the_sandbox_hides_data_grader_network_and_other_submissions(case, graded):
    if not SANDBOXED:
        pytest.skip(f"no sandbox here ({sandbox.why_not_sandboxed()}): these cases need bubblewrap")
    phrase = SANDBOX_CASES[case][2]
    report = graded[case]
    assert report.score == 0 and report.isolation == sandbox.SANDBOX
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


@pytest.mark.parametrize("case", sorted(ACCURACY_CASES))
def test_accuracy_is_computed_by_the_judge_whatever_the_worker_patches(case, graded):
    got = _verdicts(graded[case])
    passed, msg = got["accuracy"]
    assert not passed and ACCURACY_CASES[case][1].lower() in msg.lower(), msg
    assert got["epochs"][0] and got["parameters"][0], got


@pytest.mark.parametrize("case", sorted(S3_CASES))
def test_session3_cases(case, graded):
    _, _, _, failing, passing = S3_CASES[case]
    _assert_case(graded[case], failing, passing)


@pytest.mark.parametrize("isolation", ["sandbox", "none"])
def test_grader_killed_with_sigkill_leaves_no_worker_and_its_scratch_is_reaped(isolation, tmp_path):
    """`course grade` killed with SIGKILL: its worker dies with it (bwrap --die-with-parent in the
    sandbox, PR_SET_PDEATHSIG without), and so do the zygote and the workers it forked; the scratch
    folder it leaves is removed by the next grader."""
    if isolation == "sandbox" and not SANDBOXED:
        pytest.skip(f"no sandbox here ({sandbox.why_not_sandboxed()})")
    nb = edit(completed(S2), "setup", None, "import time\ntime.sleep(120)")
    path = write(nb, tmp_path / "sleepy", NAME2)
    scratch_root = tmp_path / "scratch"
    env = {**os.environ, sandbox.SCRATCH_ROOT_ENV: str(scratch_root)}
    if isolation == "none":
        env[sandbox.ENV] = "off"
    proc = subprocess.Popen([sys.executable, "-m", "course", "grade", str(path), "--out", str(tmp_path / "g")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def workers():
        found = []
        for p in Path("/proc").iterdir():
            if p.name.isdigit():
                try:
                    cmd = (p / "cmdline").read_bytes().decode(errors="replace")
                except OSError:
                    continue
                if str(scratch_root) in cmd and ("autograder.worker" in cmd or "autograder.zygote" in cmd):
                    found.append(cmd)
        return found

    def student_code_runs():   # a worker process, or under a zygote (python -m autograder.zygote) its forked C1-C3
        pythons = [c for c in workers() if not Path(c.split("\0")[0]).name.startswith("bwrap")]
        requested = any(scratch_root.glob("*/in/request-*.json"))   # after the zygote's self-test
        return requested and len(pythons) >= (4 if any("autograder.zygote" in c for c in pythons) else 1)

    deadline = time.monotonic() + 60
    while not student_code_runs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert workers(), "the worker never started"
    leftover = [d for d in scratch_root.iterdir()]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while workers() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not workers(), "a worker outlived the grader"
    assert leftover and all(d.exists() for d in leftover)   # SIGKILL leaves the folder...
    os.environ[sandbox.SCRATCH_ROOT_ENV] = str(scratch_root)
    try:
        removed = sandbox.reap()                               # ...the next grader removes it
    finally:
        os.environ.pop(sandbox.SCRATCH_ROOT_ENV)
    assert sorted(removed) == sorted(leftover) and not any(d.exists() for d in leftover)


def test_records_are_searched_next_to_the_notebook_and_in_its_own_repository_only(tmp_path):
    """The reference solutions' records in the course repository never stand in for a student's
    (nbgrader's submitted/<student>/<assignment>/ sits inside it)."""
    from autograder.grade import default_runs_dirs

    course = tmp_path / "course"
    (course / ".git").mkdir(parents=True)
    (course / "runs").mkdir()
    nb = write(completed(S2), course / "submitted" / "alice" / "session2", NAME2)
    assert default_runs_dirs(nb) == [nb.parent / "runs"]
    repo = tmp_path / "student-repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "runs").mkdir()
    nb2 = write(completed(S2), repo / "sessions" / "session2", NAME2)
    assert default_runs_dirs(nb2) == [repo / "runs"]


def test_unsandboxed_grading_says_so_and_a_final_grade_refuses_it(tmp_path, monkeypatch):
    path = write(completed("session2/3_gap"), tmp_path / "sub", "3_gap.ipynb")
    env = {**os.environ, sandbox.ENV: "off"}
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(path), "--out", str(tmp_path / "g")],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "isolation: none (self-check)" in proc.stdout, proc.stdout + proc.stderr
    saved = json.loads(next((tmp_path / "g").glob("*.json")).read_text())
    assert saved["isolation"] == sandbox.NONE
    final = subprocess.run([sys.executable, "-m", "course", "grade", str(path), "--final", "--out",
                            str(tmp_path / "g2")], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 2 and "a final grade needs the sandbox" in final.stdout + final.stderr, final.stdout
    allowed = subprocess.run([sys.executable, "-m", "course", "grade", str(path), "--final", "--allow-unisolated",
                              "--out", str(tmp_path / "g3")], env=env, capture_output=True, text=True, timeout=300)
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr


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
        write(nb, folder / s, NAME2)
    out = tmp_path / "grades"
    proc = subprocess.run([sys.executable, "-m", "course", "grade", str(folder), "--out", str(out),
                           "--timeout", "10"], capture_output=True, text=True, timeout=900)
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


@pytest.mark.skipif(sandbox.isolation() != sandbox.SANDBOX, reason="needs bubblewrap")
def test_instructor_material_in_a_bound_package_folder_is_hidden_from_the_worker(tmp_path, monkeypatch):
    """Package folders on the grader's sys.path are readable in the sandbox (the worker imports torch from
    them), but an ``instructor/`` installed there (a non-editable install of the course repository, with
    the reference solutions) is mounted over with an empty tmpfs."""
    site = tmp_path / "lib" / "site-packages"
    (site / "instructor" / "reference").mkdir(parents=True)
    (site / "instructor" / "reference" / "session2.py").write_text("SOLUTION = 1\n")
    (site / "somepackage.py").write_text("X = 1\n")
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    work = tmp_path / "work"
    work.mkdir()
    argv, level = sandbox.command(["/bin/sh", "-c", f"ls -A {site} {site}/instructor"], work)
    assert level == sandbox.SANDBOX
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "somepackage.py" in proc.stdout and "reference" not in proc.stdout, proc.stdout


def test_nothing_a_submission_starts_outlives_its_worker(tmp_path):
    """A process the notebook starts in the background (here a long `sleep`) ends with its worker: the
    worker's PID namespace ends with it, warm (forked by the zygote) or not."""
    mark = f"{time.time_ns() % 10**6}.25"
    daemon = ("import os\nif os.fork() == 0:\n    os.setsid()\n    os.execv('/bin/sleep', ['sleep', " + repr(mark) + "])")
    path = write(edit(completed(S2), "net", "def conv_block(", daemon + "\n\n\ndef conv_block("), tmp_path / "sub", NAME2)

    def sleepers():
        found = []
        for p in Path("/proc").iterdir():
            try:
                if p.name.isdigit() and (p / "cmdline").read_bytes().split(b"\0")[:2] == [b"sleep", mark.encode()]:
                    found.append(p.name)
            except OSError:
                pass
        return found

    with ThreadPoolExecutor(1) as pool:
        graded = pool.submit(grade, path, runs_dirs=[tmp_path / "runs"])
        seen = False
        while not graded.done():
            seen = seen or bool(sleepers())
            time.sleep(0.01)
        report = graded.result()
    assert _verdicts(report)["output"][0], report.table()
    assert seen, "the background process never ran (the test would prove nothing)"
    deadline = time.monotonic() + 10
    while sleepers() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers(), "a process the submission started outlived its worker"


@pytest.mark.skipif(not WARM, reason="needs bubblewrap, and the zygote not turned off (COURSE_ZYGOTE)")
def test_without_a_zygote_each_worker_is_its_own_sandbox_and_grades_the_same(tmp_path, monkeypatch):
    """Where a zygote cannot start (user namespaces restricted inside bubblewrap, say) the grader starts
    each worker as its own bwrap process, as before, and says why in `zygote.why_not()`."""
    from autograder import zygote

    path = write(completed(S2), tmp_path / "sub", NAME2)
    warm = grade(path, runs_dirs=[tmp_path / "runs"])
    zygote.shutdown()
    monkeypatch.setattr(sandbox, "zygote_command", lambda root: [sys.executable, "-c", "import sys; sys.exit(3)"])
    monkeypatch.setattr(zygote, "_FAILED", {})
    try:
        cold = grade(path, runs_dirs=[tmp_path / "runs"])
        assert "the zygote exited" in zygote.why_not()
    finally:
        zygote.shutdown()
    assert cold.isolation == warm.isolation == sandbox.SANDBOX
    assert [(c.id, c.passed, c.message) for c in cold.checks] == [(c.id, c.passed, c.message) for c in warm.checks]


@pytest.mark.skipif(not WARM, reason="needs bubblewrap, and the zygote not turned off (COURSE_ZYGOTE)")
def test_a_zygote_that_dies_mid_class_costs_speed_not_grades(tmp_path, monkeypatch):
    """If the zygote cannot fork a worker (it was killed), that worker and every later one start on their own."""
    from autograder import zygote

    path = write(completed(S2), tmp_path / "sub", NAME2)
    warm = grade(path, runs_dirs=[tmp_path / "runs"])

    def gone(self, *a, **k):
        raise zygote.Gone("the zygote is gone: killed for this test")

    monkeypatch.setattr(zygote.Zygote, "spawn", gone)
    monkeypatch.setattr(zygote, "_FAILED", {})
    try:
        cold = grade(path, runs_dirs=[tmp_path / "runs"])
        assert zygote.why_not() == "the zygote is gone: killed for this test"
    finally:
        zygote.shutdown()
    assert [(c.id, c.passed, c.message) for c in cold.checks] == [(c.id, c.passed, c.message) for c in warm.checks]


def test_course_zygote_off_starts_every_worker_on_its_own(tmp_path, monkeypatch):
    from autograder import zygote

    monkeypatch.setenv(zygote.ENV, "off")
    assert zygote.get(tmp_path, {}) is None and zygote.why_not() == "turned off by COURSE_ZYGOTE=off"


def test_a_submission_leaves_nothing_for_the_next_one(tmp_path):
    """Two submissions graded one after the other by the same grader (so, where it runs, by workers of the
    same zygote): whatever the first writes anywhere it can, the second does not find."""
    places = ["/leak.py", "/w/leak", "/dev/leak", "/dev/shm/leak", "/dev/pts/leak", "/tmp/leak", "/z/leak",
              "/w/out/../leak", str(ROOT / "autograder" / "leak.py")]
    first = ("import os\nfor p in " + repr(places) + ":\n    try:\n        open(p, 'w').write('x')\n"
             "    except OSError:\n        pass\n")
    second = ("import os\nraise RuntimeError('left behind: ' + repr([p for p in " + repr(places) + " if os.path.exists(p)]))")
    a = write(edit(completed(S2), "net", "def conv_block(", first + "\n\ndef conv_block("), tmp_path / "a", NAME2)
    b = write(edit(completed(S2), "setup", None, second), tmp_path / "b", NAME2)
    assert _verdicts(grade(a, runs_dirs=[tmp_path / "runs"]))["output"][0]
    assert "raised RuntimeError: left behind: [] " in _verdicts(grade(b, runs_dirs=[tmp_path / "runs"]))["output"][1]


@pytest.mark.skipif(not WARM, reason="needs bubblewrap, and the zygote not turned off (COURSE_ZYGOTE)")
def test_a_zygote_killed_while_its_worker_runs_costs_a_rerun_not_points(tmp_path, monkeypatch):
    """The zygote killed from outside mid-grade (its worker dies with it): the grader produces that worker's
    items again in a worker of its own, and the grade is the same as an undisturbed one."""
    from autograder import zygote

    scratch_root = tmp_path / "scratch"
    monkeypatch.setenv(sandbox.SCRATCH_ROOT_ENV, str(scratch_root))   # a zygote of this test's own
    monkeypatch.setattr(zygote, "_FAILED", {})
    slow = edit(completed(S2), "net", "def conv_block(", "import time\ntime.sleep(3)\n\n\ndef conv_block(")
    path = write(slow, tmp_path / "sub", NAME2)
    try:
        undisturbed = grade(path, runs_dirs=[tmp_path / "runs"])
        with ThreadPoolExecutor(1) as pool:
            graded = pool.submit(grade, path, runs_dirs=[tmp_path / "runs"])
            deadline = time.monotonic() + 60
            while not any(scratch_root.glob("*/in/request-*.json")) and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.5)                                   # the worker is in its sleep
            (warm,) = [z for z in zygote._ZYGOTES.values() if z.root == scratch_root]
            os.killpg(warm.proc.pid, signal.SIGKILL)
            report = graded.result()
        assert "the zygote" in (zygote.why_not() or ""), zygote.why_not()
    finally:
        zygote.shutdown()
    assert [(c.id, c.passed, c.message) for c in report.checks] == \
        [(c.id, c.passed, c.message) for c in undisturbed.checks], report.table()


@pytest.mark.skipif(not WARM, reason="needs bubblewrap, and the zygote not turned off (COURSE_ZYGOTE)")
def test_the_zygote_starts_here_also_with_the_grader_under_tmp(tmp_path):
    """Where bubblewrap works the zygote must too: a silent fallback would hide a broken zygote behind slower,
    still-correct grades. Also with the grader's packages under /tmp (a CI clone, the student template),
    which each worker's fresh /tmp must bind again."""
    import shutil

    from autograder import zygote
    from autograder.grade import _worker_env

    (tmp_path / "root").mkdir()
    z, why = zygote.Zygote.start(tmp_path / "root", _worker_env(Path(zygote.W) / "out"))
    assert z is not None, why
    z.close()
    copy = tmp_path / "grader"
    for package in ("autograder", "course_utils"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    code = ("import sys; from pathlib import Path; from autograder import zygote; from autograder.grade import "
            "_worker_env\nassert zygote.__file__.startswith(sys.argv[1]), zygote.__file__\n"
            "z, why = zygote.Zygote.start(Path(sys.argv[2]), _worker_env(Path(zygote.W) / 'out'))\n"
            "print('started' if z else why)\nz and z.close()")
    proc = subprocess.run([sys.executable, "-c", code, str(copy), str(tmp_path / "root")], cwd=copy,
                          env={**os.environ, "PYTHONPATH": str(copy)}, capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip() == "started", proc.stdout + proc.stderr
