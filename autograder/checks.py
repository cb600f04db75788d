"""Grading checks: importable functions that notebook test cells and pytest graders both call.

Each check raises :class:`CheckFailed` (an ``AssertionError``) with a message that tells the
student what to change, and returns a short description when it passes. Student code still
raising the ``NotImplementedError`` stub is reported as "not implemented yet", naming the piece.
Checks compare against trusted references (``nn.BatchNorm2d`` per virtual batch, autograd) rather
than against the course's own solution.
"""
from __future__ import annotations

import contextlib
import math
from typing import Callable

import torch
import torch.nn as nn
from torch.overrides import TorchFunctionMode
from torch.utils._python_dispatch import TorchDispatchMode

from course_utils.inspection import find_fc_layers, largest_layers

from .policy import POLICIES, Policy


class CheckFailed(AssertionError):
    """A grading check did not pass; the message says why and what to do."""


#: set by the grading worker: an :class:`autograder.guard.Snapshot` taken before the submission ran
GUARD = None
#: what the submission replaced in torch, builtins or the grader (restored, then reported)
TAMPERED: list[str] = []


def _restore() -> None:
    """Undo the submission's monkeypatches (in the grading worker; a no-op elsewhere)."""
    if GUARD is not None:
        TAMPERED.extend(x for x in GUARD.restore() if x not in TAMPERED)


def _fail(msg: str):
    raise CheckFailed(msg)


@contextlib.contextmanager
def _stub_guard(what: str):
    """Turn the notebook stub's ``NotImplementedError`` into a message naming what to implement."""
    try:
        yield
    except NotImplementedError:
        _fail(f"{what} is not implemented yet: replace the `raise NotImplementedError` stub in its cell "
              "(marked YOUR CODE HERE) with your code, run that cell, then run this test again.")


def build(model_cls: Callable[[], nn.Module], name: str | None = None) -> nn.Module:
    """Instantiate a student's model class with a clear message when it is still a stub or broken."""
    name = name or getattr(model_cls, "__name__", "the model")
    with _stub_guard(f"`{name}`"):
        try:
            model = model_cls()
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001 - any error building the model is the student's to fix
            _fail(f"`{name}()` raised {type(e).__name__}: {e}")
    _restore()
    if not isinstance(model, nn.Module):
        _fail(f"`{name}()` must build an nn.Module, got {type(model).__name__}")
    return model


_numel = torch._C.TensorBase.numel
_Parameter, _Tensor = nn.Parameter, torch.Tensor


def trusted_parameters(model: nn.Module) -> list[torch.Tensor]:
    """Every parameter registered anywhere in ``model``, found by walking the modules' own
    ``_parameters``/``_modules`` dictionaries: no method the submission could override
    (``parameters``, ``named_modules``, ...) is called. Shared parameters are listed once."""
    out, seen_params, seen_mods, stack = [], set(), set(), [model]
    while stack:
        m = stack.pop()
        if id(m) in seen_mods:
            continue
        seen_mods.add(id(m))
        try:
            params = object.__getattribute__(m, "_parameters")
            mods = object.__getattribute__(m, "_modules")
        except AttributeError:
            _fail(f"{type(m).__name__} is not initialised as an nn.Module (call super().__init__() first)")
        for p in dict.values(params):
            if p is not None and id(p) not in seen_params:
                seen_params.add(id(p))
                out.append(p)
        stack.extend(v for v in dict.values(mods) if v is not None)
    odd = sorted({type(p).__name__ for p in out if type(p) not in (_Parameter, _Tensor)})
    if odd:
        _fail(f"Parameters must be plain nn.Parameter tensors, found {', '.join(odd)}: a tensor subclass can "
              "misreport its size, so the grader does not accept one.")
    return out


def count_parameters(model: nn.Module) -> int:
    """Total parameters (trainable and frozen), counted from the tensors themselves."""
    return sum(_numel(p) for p in trusted_parameters(model))


class _DenseOpTrace(TorchFunctionMode):
    """Records calls of matrix-product functions during a forward pass (a dense layer written by hand
    in ``forward`` shows up here even though no ``nn.Linear`` module exists)."""

    DENSE = {torch.nn.functional.linear, torch.nn.functional.bilinear, torch.matmul, torch.mm, torch.bmm,
             torch.addmm, torch.einsum, torch.tensordot, torch.Tensor.matmul, torch.Tensor.__matmul__,
             torch.Tensor.__rmatmul__, torch.Tensor.mm, torch.Tensor.bmm, torch.Tensor.addmm}

    def __init__(self):
        super().__init__()
        self.calls: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in self.DENSE:
            self.calls.append(getattr(func, "__name__", str(func)))
        return func(*args, **(kwargs or {}))


class ForwardTrace(TorchDispatchMode):
    """Every aten operation of one forward pass (below Python, so wrappers, monkeypatches and direct
    ``torch.ops.aten`` calls are all seen): convolutions with their shapes and weight storage, and
    dense matrix products. ``calls`` holds the Python-level dense functions of the same pass."""

    DENSE = {"mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "mv", "addmv", "dot", "linear",
             "_addmm_activation", "mkldnn_linear"}

    def __init__(self):
        super().__init__()
        self.convs: list[dict] = []
        self.dense: list[str] = []
        self.calls: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name in ("convolution", "_convolution", "conv2d", "mkldnn_convolution"):
            x, w = args[0], args[1]
            padding = args[4] if len(args) > 4 else kwargs.get("padding", (0, 0))
            self.convs.append({"input": tuple(x.shape), "weight": tuple(w.shape), "padding": tuple(padding),
                               "storage": w.untyped_storage().data_ptr()})
        elif name in self.DENSE:
            self.dense.append(name)
        return func(*args, **(kwargs or {}))


def trace_forward(model: nn.Module, input_size=(2, 1, 28, 28)) -> ForwardTrace:
    """Run one eval-mode forward pass of a batch of zeros under :class:`ForwardTrace` (operators) and
    :class:`_DenseOpTrace` (Python-level dense functions, kept in ``trace.calls``)."""
    model.eval()
    with _stub_guard(f"`{type(model).__name__}.forward`"):
        try:
            with torch.no_grad(), _DenseOpTrace() as functions, ForwardTrace() as trace:
                model(torch.zeros(input_size))
            trace.calls = functions.calls
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001
            _fail(f"forward() fails on a batch of shape {tuple(input_size)}: {type(e).__name__}: {e}")
    return trace


def hidden_weights(model: nn.Module) -> list[str]:
    """Convolutions whose kernel is not a registered parameter: a buffer, a plain tensor attribute,
    a tensor built in ``forward`` or read from a file (weights the parameter count would miss)."""
    trace = trace_forward(model)
    owned = {p.untyped_storage().data_ptr() for p in trusted_parameters(model)}
    return [f"conv with kernel {c['weight']} on input {c['input']}" for c in trace.convs if c["storage"] not in owned]


def full_map_convs(trace: ForwardTrace) -> list[str]:
    """Convolutions whose kernel covers their whole (padded) input of more than one pixel, giving a 1x1
    output: a fully connected layer written as a conv. The 1x1 conv after global average pooling
    (a 1x1 input) is not one."""
    out = []
    for c in trace.convs:
        (h, w), (kh, kw) = c["input"][-2:], c["weight"][-2:]
        pad = tuple(c["padding"]) or (0,)
        ph, pw = (pad * 2)[:2] if len(pad) == 1 else pad[:2]
        if h * w > 1 and kh * kw > 1 and h + 2 * ph - kh + 1 <= 1 and w + 2 * pw - kw + 1 <= 1:
            out.append(f"a {kh}x{kw} conv over a {h}x{w} feature map (kernel {c['weight']})")
    return out


def check_parameters(model: nn.Module, policy: Policy | str = "session2", limit: int | None = None) -> str:
    """Total parameters (trainable and frozen) below the limit; on failure, name the largest layers.
    Counted from the registered parameter tensors; convolutions whose weights are not parameters
    (buffers, plain tensors, tensors made in ``forward``) fail the check, since they would escape it."""
    policy = POLICIES[policy] if isinstance(policy, str) else policy
    limit = limit or policy.max_parameters
    hidden = hidden_weights(model)
    _restore()
    if TAMPERED:
        _fail(f"Your code replaces {', '.join(TAMPERED[:4])}{' ...' if len(TAMPERED) > 4 else ''} (monkeypatching "
              "torch, Python builtins or the grader). That is not allowed: the grader restored the originals. "
              "Remove that code.")
    n = count_parameters(model)
    if hidden:
        _fail(f"{'; '.join(hidden)}: its weight is not an nn.Parameter of the model (a buffer, a plain tensor "
              "attribute, a tensor built in forward or loaded from a file), so it would escape the parameter "
              "budget. Make every conv weight a parameter (use nn.Conv2d).")
    if n >= limit:
        big = ", ".join(f"{name} {count:,}" for name, count in largest_layers(model, 4))
        _fail(f"{n:,} parameters: the limit is fewer than {limit:,}. Largest layers: {big}. Use fewer channels "
              "there, a 1x1 conv to reduce channels, or global average pooling instead of a big final kernel.")
    return f"{n:,} parameters (< {limit:,})"


def check_no_fc(model: nn.Module, full_map_ok: bool = False) -> str:
    """No fully connected layer: neither an FC module nor a dense product written in ``forward``,
    nor a conv whose kernel covers its whole multi-pixel input. ``full_map_ok`` lets that last one
    through for Session 2 iterations 1-2, whose final 7x7 conv is the big kernel iteration 3 removes."""
    fc = find_fc_layers(model)
    if fc:
        _fail("Fully connected layers are not allowed: " + ", ".join(f"{n} ({t})" for n, t in fc) +
              ". End with global average pooling and a 1x1 conv to 10 channels instead.")
    trace = trace_forward(model)
    if trace.calls:
        _fail(f"forward() computes a dense (fully connected) product: {sorted(set(trace.calls))}. "
              "Use convolutions, global average pooling and a 1x1 conv to 10 channels instead.")
    if trace.dense:
        _fail(f"forward() computes a dense (fully connected) product: {sorted(set(trace.dense))} "
              "(seen at the operator level). Use convolutions, global average pooling and a 1x1 conv instead.")
    full = full_map_convs(trace)
    if full and full_map_ok:
        return (f"no fully connected layer; note: {'; '.join(full)} covers its whole feature map, which is what a "
                "fully connected layer does (iteration 3 replaces it with global average pooling)")
    if full:
        _fail(f"{'; '.join(full)}: a kernel that covers its whole feature map is a fully connected layer. "
              "Reduce the map with global average pooling first; a 1x1 conv on the pooled 1x1 map is fine.")
    return "no fully connected layer (modules and traced forward)"


def check_output(model: nn.Module, batch: int = 4) -> str:
    """A batch of 1x28x28 images gives finite scores of shape (batch, 10)."""
    model.eval()
    with _stub_guard(f"`{type(model).__name__}.forward`"), torch.no_grad():
        try:
            out = model(torch.randn(batch, 1, 28, 28))
        except NotImplementedError:
            raise
        except Exception as e:  # noqa: BLE001
            _fail(f"forward() fails on a batch of shape ({batch}, 1, 28, 28): {type(e).__name__}: {e}")
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (batch, 10):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        _fail(f"forward() must return shape ({batch}, 10) for a batch of {batch}, got {got}. Check that the "
              "last conv has 10 channels, that global average pooling reduces to 1x1, and flatten at the end.")
    if not torch.isfinite(out).all():
        _fail("forward() returns NaN or infinite values on ordinary inputs")
    return f"output shape ({batch}, 10)"


# --------------------------------------------------------------------------- Ghost Batch Norm

def _reference_ghost(bn_state: dict, x: torch.Tensor, splits: int, momentum: float, eps: float):
    """Trusted reference: one nn.BatchNorm2d applied to each virtual batch in turn."""
    ref = nn.BatchNorm2d(x.shape[1], momentum=momentum, eps=eps)
    ref.load_state_dict(bn_state, strict=False)
    ref.train()
    out = torch.cat([ref(chunk) for chunk in x.chunk(splits)])
    return out, ref


def check_ghost_batch_norm(gbn_cls, *, channels: int = 6, splits: int = 4, batches=(128, 96, 32)) -> str:
    """``gbn_cls(num_features, num_splits)`` behaves as documented in the lesson:

    * training output equals ``nn.BatchNorm2d`` applied to each virtual batch separately, with
      gradients that match too;
    * running statistics after a step equal that BatchNorm2d's (one update per virtual batch);
    * eval mode normalises with the running statistics (no dependence on the batch);
    * batch sizes of the course work (128 and the last batch of an epoch, 96); a batch that does not
      divide into the virtual batches raises ``ValueError``;
    * ``state_dict`` round-trips into a fresh instance.
    """
    with _stub_guard("`GhostBatchNorm`"):
        gbn = gbn_cls(channels, splits)
    if not isinstance(gbn, nn.Module):
        _fail("GhostBatchNorm must be an nn.Module (subclass nn.BatchNorm2d)")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in gbn.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) + 0.5)
    momentum = getattr(gbn, "momentum", 0.1) or 0.1
    eps = getattr(gbn, "eps", 1e-5)
    for n in batches:
        # each virtual batch gets its own scale and shift, so pooled statistics would differ
        x = torch.randn(n, channels, 5, 5, generator=gen) * torch.arange(1, n + 1).view(n, 1, 1, 1) ** 0.5 \
            + torch.arange(n).view(n, 1, 1, 1) * 0.1
        x.requires_grad_(True)
        state = {k: v.clone() for k, v in gbn.state_dict().items()}
        gbn.train()
        with _stub_guard("`GhostBatchNorm.forward`"):
            out = gbn(x)
        ref_x = x.detach().clone().requires_grad_(True)
        ref_out, ref = _reference_ghost(state, ref_x, splits, momentum, eps)
        if out.shape != x.shape:
            _fail(f"GhostBatchNorm output shape {tuple(out.shape)} != input shape {tuple(x.shape)}")
        if not torch.allclose(out, ref_out, atol=1e-4, rtol=1e-4):
            pooled = nn.functional.batch_norm(x.detach(), None, None, state.get("weight"), state.get("bias"), True)
            hint = (" It matches ordinary BatchNorm over the whole batch: split the batch into "
                    f"{splits} virtual batches." if torch.allclose(out.detach(), pooled, atol=1e-4) else "")
            _fail(f"In training mode with a batch of {n}, the output differs from nn.BatchNorm2d applied to each "
                  f"of the {splits} virtual batches (max difference {(out - ref_out).abs().max().item():.3g})." + hint)
        w = torch.randn(x.shape, generator=gen)
        (out * w).sum().backward()
        (ref_out * w).sum().backward()
        if x.grad is None or not torch.allclose(x.grad, ref_x.grad, atol=1e-4, rtol=1e-3):
            _fail("Gradients through GhostBatchNorm differ from nn.BatchNorm2d per virtual batch: keep the "
                  "computation in torch operations (no .detach(), .item() or in-place edits of the input).")
        for name in ("running_mean", "running_var"):
            got = getattr(gbn, name, None)
            if got is None or not torch.allclose(got, getattr(ref, name), atol=1e-5, rtol=1e-4):
                _fail(f"{name} after a training step of {n} images differs from nn.BatchNorm2d updated once per "
                      "virtual batch (in order, with the layer's momentum).")
    gbn.eval()
    x = torch.randn(8, channels, 5, 5, generator=gen)
    with torch.no_grad():
        expected = nn.functional.batch_norm(x, gbn.running_mean, gbn.running_var, gbn.weight, gbn.bias, False,
                                            0.0, eps)
        got = gbn(x)
        single = torch.cat([gbn(x[i:i + 1]) for i in range(8)])
    if not (torch.allclose(got, expected, atol=1e-5) and torch.allclose(single, expected, atol=1e-5)):
        _fail("In eval mode GhostBatchNorm must normalise with the running statistics, independently of the batch")
    gbn.train()
    try:
        gbn(torch.randn(splits * 8 + 1, channels, 5, 5))
    except ValueError:
        pass
    except Exception as e:  # noqa: BLE001
        _fail(f"A batch not divisible by num_splits must raise ValueError, got {type(e).__name__}: {e}")
    else:
        _fail(f"A training batch of {splits * 8 + 1} images cannot be split into {splits} equal virtual batches: "
              "raise ValueError with a clear message, as the lesson's rule says.")
    fresh = gbn_cls(channels, splits)
    try:
        fresh.load_state_dict(gbn.state_dict())
    except Exception as e:  # noqa: BLE001
        _fail(f"state_dict does not load into a fresh GhostBatchNorm: {e}")
    fresh.eval()
    gbn.eval()
    with torch.no_grad():
        if not torch.allclose(fresh(x), gbn(x), atol=1e-6):
            _fail("A GhostBatchNorm restored from state_dict gives different outputs")
    return f"GhostBatchNorm matches nn.BatchNorm2d per virtual batch (batches {', '.join(map(str, batches))})"


# --------------------------------------------------------------------------- penalties

class _PenaltyProbe(nn.Module):
    """Fixed small network with every kind of parameter the lesson talks about."""

    def __init__(self):
        super().__init__()
        gen = torch.Generator().manual_seed(1)
        self.conv1 = nn.Conv2d(1, 3, 3, bias=False)
        self.bn = nn.BatchNorm2d(3)
        self.conv2 = nn.Conv2d(3, 4, 3, bias=True)
        self.gbn_like = nn.BatchNorm2d(4)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=gen))


def check_l1_penalty(l1_penalty) -> str:
    """``l1_penalty(model)`` equals the sum of |w| over conv weights (the lesson's coverage: BN
    parameters and biases excluded), is a differentiable scalar, and its gradient is sign(w)."""
    model = _PenaltyProbe()
    with _stub_guard("`l1_penalty`"):
        value = l1_penalty(model)
    if not isinstance(value, torch.Tensor) or value.dim() != 0:
        _fail(f"l1_penalty must return a scalar tensor (so it can be added to the loss), got {type(value).__name__}"
              + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))
    conv_w = [model.conv1.weight, model.conv2.weight]
    expected = sum(w.detach().abs().sum() for w in conv_w)
    if not math.isclose(value.item(), expected.item(), rel_tol=1e-5):
        parts = {"conv weights": expected.item(),
                 "conv biases": model.conv2.bias.detach().abs().sum().item(),
                 "BN gamma/beta": sum(p.detach().abs().sum().item() for m in (model.bn, model.gbn_like)
                                      for p in m.parameters())}
        covered = [k for k in parts if k != "conv weights"]
        _fail(f"l1_penalty gives {value.item():.4f}; the sum of |w| over conv weights is {expected.item():.4f}. "
              f"Cover every conv weight and only those (not {', '.join(covered)}). "
              f"For reference: conv weights {parts['conv weights']:.4f}, conv biases {parts['conv biases']:.4f}, "
              f"BN {parts['BN gamma/beta']:.4f}.")
    if not value.requires_grad:
        _fail("l1_penalty's result has no gradient: compute it from the parameters with torch ops (no .item()/.detach())")
    value.backward()
    for name, p in model.named_parameters():
        want = torch.sign(p.detach()) if p is model.conv1.weight or p is model.conv2.weight else torch.zeros_like(p)
        got = p.grad if p.grad is not None else torch.zeros_like(p)
        if not torch.allclose(got, want):
            _fail(f"Gradient of l1_penalty with respect to {name} is wrong: expected "
                  f"{'sign(w)' if want.abs().sum() else 'zero (not covered)'}")
    return "l1_penalty = sum |w| over conv weights; gradient sign(w)"


def check_l2_penalty(l2_penalty) -> str:
    """An explicit ``l2_penalty(model)`` (if the student writes one) equals sum w^2 over conv weights
    and its gradient is 2w (checked with autograd)."""
    model = _PenaltyProbe()
    with _stub_guard("`l2_penalty`"):
        value = l2_penalty(model)
    expected = sum((m.weight.detach() ** 2).sum() for m in (model.conv1, model.conv2))
    if not isinstance(value, torch.Tensor) or value.dim() != 0 or not math.isclose(value.item(), expected.item(),
                                                                                     rel_tol=1e-5):
        _fail(f"l2_penalty should be the sum of w^2 over conv weights ({expected.item():.4f}), got "
              f"{value.item() if isinstance(value, torch.Tensor) and value.dim() == 0 else value}")
    value.backward()
    if not torch.allclose(model.conv1.weight.grad, 2 * model.conv1.weight.detach()):
        _fail("Gradient of l2_penalty with respect to a conv weight should be 2w")
    return "l2_penalty = sum w^2 over conv weights; gradient 2w"


# --------------------------------------------------------------------------- run records and accuracy

def submitted_record(config, runs_dirs=None):
    """The newest run record trained with exactly ``config`` (a ``TrainConfig``), seed included.

    One rule for every front end (notebook test cells, nbgrader, ``course grade``): a record trained
    with another config (the student changed a setting after training, or trained other seeds) is
    never graded in its place. When no record matches, the message names the closest record of that
    name and the settings in which it differs. ``runs_dirs`` defaults to the course runs folder.
    """
    from course_utils.engine import find_records, runs_root

    dirs = list(runs_dirs) if runs_dirs is not None else [runs_root()]
    named = sorted((r for d in dirs for r in find_records(config.name, d)), key=lambda r: r.path.name)
    exact = [r for r in named if r.config == config]
    if exact:
        return exact[-1]
    where = ", ".join(str(d) for d in dirs) or "(no runs folder)"
    if not named:
        _fail(f"No run record named {config.name!r} in {where}. Run the training cell and submit the "
              "runs/ folder next to the notebook (or grade with --retrain).")
    new = config.to_dict()

    def differences(rec):
        old = rec.config.to_dict()
        return [k for k in new if old.get(k) != new[k]]

    closest = min(reversed(named), key=lambda r: len(differences(r)))  # ties: the newest
    old = closest.config.to_dict()
    diff = ", ".join(f"{k} (record {old.get(k)!r}, notebook {new[k]!r})" for k in differences(closest))
    _fail(f"No run record in {where} was trained with this notebook's config {config.name!r}; the closest "
          f"({closest.path.name}) differs in: {diff}. Re-run the training cell with the notebook's config.")


def _record(record):
    """A run record as given; for a ``TrainConfig``, :func:`submitted_record`; for a config name (older
    notebooks), the newest complete record of that name under the runs folder."""
    from course_utils.config import TrainConfig

    if isinstance(record, TrainConfig):
        return submitted_record(record)
    if not isinstance(record, str):
        return record
    from course_utils.engine import find_records, runs_root

    found = find_records(record)
    if not found:
        _fail(f"No run record named {record!r} under {runs_root()}: run the training cell first (and submit the "
              "runs/ folder with your notebook).")
    return found[-1]


def check_epochs(record, policy: Policy | str = "session2") -> str:
    """Epochs below the session's limit, in the config and in the per-epoch history alike.
    ``record`` is a run record (or ``RunResult``), the ``TrainConfig`` it was trained with, or a config name."""
    policy = POLICIES[policy] if isinstance(policy, str) else policy
    record = _record(record)
    declared, ran = record.config.epochs, len(record.history)
    if record.metrics.get("epochs_run") != ran:
        _fail(f"The run record is inconsistent: metrics say {record.metrics.get('epochs_run')} epochs, the "
              f"history holds {ran}. Re-run the training cell instead of editing the record.")
    if max(declared, ran) >= policy.epoch_limit:
        _fail(f"{max(declared, ran)} epochs: {policy.session} allows fewer than {policy.epoch_limit} "
              f"(at most {policy.max_epochs}). Lower `epochs` in the config and retrain.")
    if [h["epoch"] for h in record.history] != list(range(1, ran + 1)):
        _fail("The run record's history does not number its epochs 1..N: re-run the training cell.")
    return f"{ran} epochs (< {policy.epoch_limit})"


def check_accuracy(model_cls, record, policy: Policy | str = "session2", data=None) -> str:
    """The grader evaluates the record's checkpoint itself on the verified MNIST test set (the
    printed numbers are not trusted) and reads the last epochs of its history."""
    from course_utils.engine import evaluate
    from course_utils.loader import mnist_data

    policy = POLICIES[policy] if isinstance(policy, str) else policy
    model = build(model_cls)
    record = _record(record)
    try:
        model.load_state_dict(record.load_state_dict())
    except Exception as e:  # noqa: BLE001
        _fail(f"The checkpoint does not fit the model class (retrain after changing the model): {e}")
    acc = evaluate(model, data if data is not None else mnist_data(128)).accuracy
    if acc < policy.min_accuracy:
        _fail(f"The checkpoint reaches {acc:.2f}% on the MNIST test set (evaluated by the grader); "
              f"{policy.min_accuracy}% is needed.")
    k = policy.consistent_epochs
    tail = [h["test_accuracy"] for h in record.history[-k:]]
    if len(tail) < k or min(tail) < policy.min_accuracy:
        _fail(f"The last {k} epochs reached {', '.join(f'{a:.2f}%' for a in tail)}: each must be >= "
              f"{policy.min_accuracy}% (consistently, not once). Try a learning-rate schedule or light augmentation.")
    return f"checkpoint {acc:.2f}% (grader-evaluated); last {k} epochs {', '.join(f'{a:.2f}%' for a in tail)}"
