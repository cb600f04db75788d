"""Worker side: turn a student's model into a portable graph that a trusted process can run.

``export_model(model, batch, mode)`` traces the model's forward with ``torch.export`` (no Python
branch on tensor values can survive it) and writes it as plain data: a JSON list of aten operations
with their arguments, and the tensors the graph reads (``torch.save`` of a dict of tensors). The
judge (:mod:`autograder.program`) loads that data without running any of the student's code,
validates every operation against an allow-list and runs the graph itself: the forward it grades is
the forward it inspected.

This module runs in the worker, next to the student's code; nothing it writes is trusted.
"""
from __future__ import annotations

import math

FORMAT = 1
EVAL_BATCH = 500   # the batch of the eval graph the judge runs (the test set is 20 such batches)


def _encode(value, names: dict):
    import torch
    import torch.fx as fx

    if isinstance(value, fx.Node):
        return {"$node": value.name}
    if isinstance(value, (list, tuple)):
        return [_encode(v, names) for v in value]
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, torch.dtype):
        return {"$dtype": str(value).removeprefix("torch.")}
    if isinstance(value, torch.device):
        return {"$device": "cpu"}
    if isinstance(value, torch.layout):
        return {"$layout": str(value).removeprefix("torch.")}
    if isinstance(value, torch.memory_format):
        return {"$memory_format": str(value).removeprefix("torch.")}
    raise TypeError(f"cannot serialise a graph argument of type {type(value).__name__}")


def _target(node) -> str:
    import operator

    t = node.target
    if t is operator.getitem:
        return "getitem"
    return str(t)  # "aten.conv2d.default"


def export_model(model, batch: int, mode: str = "eval", example=None) -> tuple[dict, dict]:
    """(graph as JSON-able dict, tensors by key) of ``model``'s forward on a ``(batch, 1, 28, 28)``
    input, in ``mode`` ("eval" or "train"). Raises what ``torch.export`` raises."""
    import torch

    model.train(mode == "train")
    x = example if example is not None else torch.randn(batch, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    ep = torch.export.export(model, (x,), strict=False)
    kinds = {"PARAMETER": "parameter", "BUFFER": "buffer", "CONSTANT_TENSOR": "constant", "USER_INPUT": "image"}
    inputs, tensors = [], {}
    state = {**ep.state_dict, **ep.constants}
    for spec in ep.graph_signature.input_specs:
        kind = kinds.get(spec.kind.name, spec.kind.name.lower())
        entry = {"name": spec.arg.name, "kind": kind}
        if kind != "image":
            entry["key"] = spec.target
            value = state.get(spec.target)
            if value is None and kind == "buffer":  # a non-persistent buffer
                value = dict(model.named_buffers()).get(spec.target)
            if isinstance(value, torch.Tensor):
                tensors[spec.target] = value.detach().to("cpu").clone().contiguous()
        inputs.append(entry)
    names: dict = {}
    nodes = []
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            continue
        entry = {"name": node.name, "op": node.op}
        if node.op == "call_function":
            entry["target"] = _target(node)
        entry["args"] = _encode(node.args, names)
        entry["kwargs"] = {str(k): _encode(v, names) for k, v in node.kwargs.items()}
        nodes.append(entry)
    graph = {"format": FORMAT, "mode": mode, "batch": int(x.shape[0]), "inputs": inputs, "nodes": nodes}
    return graph, tensors
