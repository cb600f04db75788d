"""Worker side: run a student's Ghost Batch Norm and penalty functions on inputs the judge chose, and
hand back what they computed (tensors), never a verdict.

Inputs come from a seed (:func:`gbn_inputs`, :func:`penalty_probe`), so the judge
(:mod:`autograder.judge`) rebuilds the same inputs itself and compares the outputs with trusted
references. Nothing returned here is trusted: a wrong output simply fails there.
"""
from __future__ import annotations

#: the Ghost Batch Norm cases the grader runs: (channels, splits, training batch sizes)
GBN_CASES = ((6, 4, (128, 96, 32)), (3, 2, (64, 8)), (10, 8, (128, 96)))


def gbn_inputs(channels: int, splits: int, batches, seed: int = 0) -> dict:
    """The tensors of one Ghost Batch Norm case: gamma/beta, training batches with upstream gradients
    (each virtual batch gets its own scale and shift, so pooled statistics would differ), an eval
    batch, and a batch that does not divide into ``splits``."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {"gamma": torch.rand(channels, generator=gen) + 0.5, "beta": torch.rand(channels, generator=gen) + 0.5,
           "train": []}
    for n in batches:
        x = torch.randn(n, channels, 5, 5, generator=gen) * torch.arange(1, n + 1).view(n, 1, 1, 1) ** 0.5 \
            + torch.arange(n).view(n, 1, 1, 1) * 0.1
        out["train"].append((x, torch.randn(x.shape, generator=gen)))
    out["eval"] = torch.randn(8, channels, 5, 5, generator=gen)
    out["bad"] = torch.randn(splits * 8 + 1, channels, 5, 5, generator=gen)
    return out


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"


def probe_ghost_batch_norm(gbn_cls, channels: int, splits: int, batches, seed: int = 0) -> dict:
    """What ``gbn_cls(channels, splits)`` computes on the case's inputs. Raises ``NotImplementedError``
    (the stub) and what the constructor raises; later failures are returned as messages."""
    import torch
    import torch.nn as nn

    inp = gbn_inputs(channels, splits, batches, seed)
    gbn = gbn_cls(channels, splits)
    res: dict = {"is_module": isinstance(gbn, nn.Module), "steps": []}
    if not res["is_module"]:
        return res
    with torch.no_grad():
        for name, value in (("weight", inp["gamma"]), ("bias", inp["beta"])):
            p = getattr(gbn, name, None)
            if isinstance(p, torch.Tensor) and p.shape == value.shape:
                p.copy_(value)
    res["momentum"] = float(getattr(gbn, "momentum", 0.1) or 0.1)
    res["eps"] = float(getattr(gbn, "eps", 1e-5))
    for x, w in inp["train"]:
        step: dict = {}
        x = x.clone().requires_grad_(True)
        try:
            gbn.train()
            out = gbn(x)
            step["out"] = out.detach().clone()
            (out * w).sum().backward()
            step["grad"] = x.grad.clone() if x.grad is not None else None
            gbn.eval()
            with torch.no_grad():
                step["eval"] = gbn(inp["eval"]).clone()
                step["single"] = torch.cat([gbn(inp["eval"][i:i + 1]) for i in range(len(inp["eval"]))])
            gbn.train()
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001
            step["error"] = _error(e)
            res["steps"].append(step)
            return res
        res["steps"].append(step)
    try:
        fresh = gbn_cls(channels, splits)
        fresh.load_state_dict(gbn.state_dict())
        fresh.eval()
        gbn.eval()
        with torch.no_grad():
            res["restored"] = (fresh(inp["eval"]).clone(), gbn(inp["eval"]).clone())
    except Exception as e:  # noqa: BLE001
        res["restore_error"] = _error(e)
    gbn.train()
    try:
        gbn(inp["bad"])
        res["bad_batch"] = None
    except Exception as e:  # noqa: BLE001
        res["bad_batch"] = type(e).__name__ if isinstance(e, ValueError) else _error(e)
        res["bad_is_value_error"] = isinstance(e, ValueError)
    return res


def penalty_probe(seed: int = 1):
    """A fixed small network with every kind of parameter the lesson talks about: conv weights with
    and without bias, BatchNorm gamma/beta."""
    import torch
    import torch.nn as nn

    class PenaltyProbe(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 3, 3, bias=False)
            self.bn = nn.BatchNorm2d(3)
            self.conv2 = nn.Conv2d(3, 4, 3, bias=True)
            self.gbn_like = nn.BatchNorm2d(4)

    gen = torch.Generator().manual_seed(seed)
    model = PenaltyProbe()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return model


def probe_penalty(penalty_fn, seed: int = 1) -> dict:
    """``penalty_fn(probe)`` and its gradient with respect to each of the probe's parameters."""
    import torch

    model = penalty_probe(seed)
    value = penalty_fn(model)
    res: dict = {"type": type(value).__name__}
    if isinstance(value, torch.Tensor):
        res["value"] = value.detach().clone()
        res["requires_grad"] = bool(value.requires_grad)
        if value.requires_grad and value.dim() == 0:
            try:
                value.backward()
            except Exception as e:  # noqa: BLE001
                res["backward_error"] = _error(e)
            res["grads"] = {n: (p.grad.clone() if p.grad is not None else None) for n, p in model.named_parameters()}
    return res
