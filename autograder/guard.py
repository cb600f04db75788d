"""Tamper guard for the grading worker: undo monkeypatches a submission makes to torch, builtins and
the grader's own modules before any check looks at the submission.

A submission's cells run in the worker before the checks. A line such as
``nn.Module.parameters = lambda self: iter([])`` or ``torch.Tensor.numel = lambda self: 1`` in a
notebook cell (or in ``Net.__init__`` / ``forward``) would otherwise change what the checks count.
:func:`snapshot` records the attributes of the objects the checks rely on; ``restore()`` puts back
every attribute that was replaced or removed (and drops new non-module attributes on classes), and
returns their names so the grader can say what the submission did.
"""
from __future__ import annotations

import builtins
import math
import types


def _guarded():
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
    import torchinfo

    import course_utils.engine
    import course_utils.inspection
    import course_utils.loader

    from . import checks

    objs = [builtins, math, torch, F, torch.Tensor, nn.Module, nn.Parameter, nn.Conv2d, nn.BatchNorm2d,
            nn.modules.conv._ConvNd, nn.modules.batchnorm._BatchNorm, nn.modules.batchnorm._NormBase,
            torchinfo, course_utils.inspection, course_utils.engine, course_utils.loader, checks]
    return objs


class Snapshot:
    """The attribute dictionaries of the guarded objects at one point in time."""

    def __init__(self):
        self.saved = [(obj, dict(vars(obj))) for obj in _guarded()]

    def restore(self) -> list[str]:
        """Undo every change since the snapshot; the names of what had changed (empty if nothing)."""
        changed = []
        for obj, before in self.saved:
            name = getattr(obj, "__name__", type(obj).__name__)
            now = vars(obj)
            for key, value in before.items():
                if key in ("_", "GUARD", "TAMPERED") or (key.startswith("__") and key.endswith("__")
                                   and key not in ("__call__", "__matmul__", "__getattr__", "__setattr__")):
                    continue
                if key not in now or now[key] is not value:
                    try:
                        setattr(obj, key, value)
                    except (AttributeError, TypeError):
                        continue
                    changed.append(f"{name}.{key}")
            if isinstance(obj, type):
                for key in [k for k in now if k not in before]:
                    # pickling caches __slotnames__ on classes; new modules are lazy imports
                    if key.startswith("__") or isinstance(now[key], types.ModuleType):
                        continue
                    try:
                        delattr(obj, key)
                    except (AttributeError, TypeError):
                        continue
                    changed.append(f"{name}.{key} (added)")
        return changed


def _warm_up() -> None:
    """Let torch finish its lazy set-up before the snapshot: importing ``torch._dynamo`` (pulled in by
    dispatch tracing, among others) re-wraps ``torch.manual_seed``, which must not count as tampering."""
    import torch
    import torch._dynamo  # noqa: F401
    import torch.nn as nn

    from . import checks

    model = nn.Sequential(nn.Conv2d(1, 10, 3), nn.BatchNorm2d(10), nn.AdaptiveAvgPool2d(1), nn.Flatten())
    checks.check_output(model)
    checks.trace_forward(model)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(4, 1, 8, 8)).sum().backward()
    opt.step()
    torch.manual_seed(0)


def snapshot() -> Snapshot:
    """Warm torch up, then record the guarded attributes."""
    _warm_up()
    return Snapshot()
