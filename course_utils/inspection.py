"""Looking inside a model: parameter table, fully connected layers, receptive field per layer.

The receptive-field table is how the course reasons about architectures: each conv or pooling
layer's output size and receptive field, from which one sees where to put the transition block
(after RF ~5-7 for MNIST edges/gradients) and whether the last layer sees the whole digit.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn

FC_TYPES = (nn.Linear, nn.LazyLinear, nn.Bilinear)


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters (all of them unless ``trainable_only``); buffers are not parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameter_table(model: nn.Module, input_size=(1, 1, 28, 28), depth: int = 3, verbose: int = 0):
    """torchinfo's per-layer summary (output shapes, parameters, multiply-adds) of ``model``.

    Returns torchinfo's ``ModelStatistics``; ``print()`` it or use ``str()`` for the table.
    """
    from torchinfo import summary

    was_training = model.training
    try:
        return summary(model, input_size=input_size, depth=depth, verbose=verbose, device="cpu",
                       col_names=("output_size", "num_params", "mult_adds"), row_settings=("var_names",))
    finally:
        model.train(was_training)


def largest_layers(model: nn.Module, n: int = 5) -> list[tuple[str, int]]:
    """The ``n`` modules with the most parameters of their own: ``[(name, count), ...]``."""
    sizes = []
    for name, module in model.named_modules():
        own = sum(p.numel() for p in module.parameters(recurse=False))
        if own:
            sizes.append((name or type(module).__name__, own))
    return sorted(sizes, key=lambda t: -t[1])[:n]


def find_fc_layers(model: nn.Module) -> list[tuple[str, str]]:
    """Fully connected modules in ``model`` as ``[(name, type), ...]`` (``nn.Linear``,
    ``nn.LazyLinear``, ``nn.Bilinear`` and subclasses). Dense layers written by hand in ``forward``
    are found by the autograder's traced check, not here."""
    return [(name, type(m).__name__) for name, m in model.named_modules() if isinstance(m, FC_TYPES)]


@dataclass
class RFRow:
    """One spatial layer of the receptive-field table."""

    name: str
    layer: str
    kernel: int
    stride: int
    padding: int
    dilation: int
    in_size: int
    out_size: int
    channels: int
    jump: int
    rf: int


def _pair(v) -> int:
    if isinstance(v, (tuple, list)):
        if len(set(v)) != 1:
            raise ValueError(f"non-square setting {v} is not supported by the receptive-field table")
        return int(v[0])
    return int(v)


def receptive_field(model: nn.Module, input_size: int = 28, in_channels: int = 1) -> list[RFRow]:
    """Output size and receptive field after each conv / pooling layer, in the order the forward
    pass runs them (found with forward hooks on a dummy batch).

    Rules: ``rf_out = rf_in + (k - 1) * dilation * jump_in`` and ``jump_out = jump_in * stride``;
    adaptive pooling is treated as a kernel covering its whole input.
    """
    spatial = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)
    names = {m: n for n, m in model.named_modules()}
    calls: list[tuple[nn.Module, tuple, tuple]] = []
    hooks = [m.register_forward_hook(lambda mod, inp, out: calls.append((mod, tuple(inp[0].shape), tuple(out.shape))))
             for m in model.modules() if isinstance(m, spatial)]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_channels, input_size, input_size))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)

    rows, rf, jump = [], 1, 1
    for mod, in_shape, out_shape in calls:
        if isinstance(mod, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            k, s, p, d = in_shape[-1], in_shape[-1], 0, 1
        else:
            k, p = _pair(mod.kernel_size), _pair(mod.padding)
            s = _pair(mod.stride if mod.stride is not None else mod.kernel_size)
            d = _pair(getattr(mod, "dilation", 1))
        rf = rf + (k - 1) * d * jump
        jump = jump * s
        rows.append(RFRow(names.get(mod, "?"), type(mod).__name__, k, s, p, d, in_shape[-1], out_shape[-1],
                          out_shape[1], jump, rf))
    return rows


def format_rf_table(rows: list[RFRow]) -> str:
    """The receptive-field table as aligned text."""
    head = f"{'layer':<28} {'type':<18} {'k':>2} {'s':>2} {'p':>2} {'in':>4} {'out':>4} {'ch':>4} {'jump':>4} {'RF':>4}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lines.append(f"{r.name[:28]:<28} {r.layer:<18} {r.kernel:>2} {r.stride:>2} {r.padding:>2} "
                     f"{r.in_size:>4} {r.out_size:>4} {r.channels:>4} {r.jump:>4} {r.rf:>4}")
    return "\n".join(lines)


def describe(model: nn.Module, input_size: int = 28) -> str:
    """Parameter count, fully connected layers and the receptive-field table, as one text."""
    fc = find_fc_layers(model)
    parts = [f"{type(model).__name__}: {count_parameters(model):,} parameters "
             f"({count_parameters(model, trainable_only=True):,} trainable)",
             "Fully connected layers: " + (", ".join(f"{n} ({t})" for n, t in fc) if fc else "none"),
             "", format_rf_table(receptive_field(model, input_size))]
    return "\n".join(parts)
