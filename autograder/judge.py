"""Verdicts: every grading decision, computed from data alone.

The functions here take what the worker handed back (model graphs, probe outputs, run-record files)
plus the grader's own trusted material (the MNIST test labels, ``nn.BatchNorm2d``, autograd) and
return a one-line description or raise :class:`CheckFailed` with a message for the student. They
never import or call a submission's code, so a submission cannot change how they count or compare:
``course grade`` runs them in its own process, which never executed student code. The notebooks'
test cells (a self-check) call the same functions through :mod:`autograder.checks`.
"""
from __future__ import annotations

import math

from course_utils.policy import Policy
from .program import GraphRejected, Program


class CheckFailed(AssertionError):
    """A grading check did not pass; the message says why and what to do.

    In Jupyter (and in nbgrader's feedback, which shows the notebook's error output) a failed check shows
    its message alone, not a traceback through the grader that buries it; ``COURSE_TRACEBACK=1`` in the
    environment shows the full traceback again."""

    def _render_traceback_(self):  # IPython's hook for how an exception is displayed
        import os
        import traceback

        if os.environ.get("COURSE_TRACEBACK", "") not in ("", "0"):
            return "".join(traceback.format_exception(type(self), self, self.__traceback__)).splitlines()
        return [f"CheckFailed: {self}"]


def _fail(msg: str):
    raise CheckFailed(msg)


def _analysis(prog: Program):
    """The judge's own run of the graph on a fixed random batch, with the rule analysis."""
    import torch

    cached = getattr(prog, "_analysis", None)
    if cached is None:
        x = torch.randn(prog.batch, 1, 28, 28, generator=torch.Generator().manual_seed(7))
        try:
            cached = prog.run(x, analyse=True)
        except GraphRejected as e:
            cached = e
        prog._analysis = cached
    if isinstance(cached, GraphRejected):
        raise CheckFailed(str(cached))
    return cached


# --------------------------------------------------------------------------- the model's structure

def output(prog: Program) -> str:
    """A batch of 1x28x28 images gives finite scores of shape (batch, 10)."""
    out, info = _analysis(prog)
    n = prog.batch
    if info.output_shape != (n, 10):
        _fail(f"forward() must return shape ({n}, 10) for a batch of {n}, got {info.output_shape}. Check that the "
              "last conv has 10 channels, that global average pooling reduces to 1x1, and flatten at the end.")
    if not bool(out.isfinite().all()):
        _fail("forward() returns NaN or infinite values on ordinary inputs")
    return f"output shape ({n}, 10)"


def parameters(prog: Program, policy: Policy, limit: int | None = None) -> str:
    """Every tensor the forward reads counts (parameters, buffers, constants, tensors loaded from a
    file), except batch-norm running statistics; a conv kernel must be an ``nn.Parameter``."""
    limit = limit or policy.max_parameters
    _, info = _analysis(prog)
    n = info.parameters
    if n >= limit:
        big = ", ".join(f"{k} {v:,}" for k, v in sorted(info.counted.items(), key=lambda kv: -kv[1])[:4])
        _fail(f"{n:,} parameters: the limit is fewer than {limit:,}. Largest layers: {big}. Use fewer channels "
              "there, a 1x1 conv to reduce channels, or global average pooling instead of a big final kernel.")
    if info.hidden:
        _fail(f"{'; '.join(info.hidden)}: its weight is not an nn.Parameter of the model (a buffer, a plain tensor "
              "attribute, a tensor built in forward or loaded from a file). The grader counts it anyway, but it is "
              "not learned: make every conv weight a parameter (use nn.Conv2d).")
    return f"{n:,} parameters (< {limit:,})"


def no_fc(progs: list[Program], full_map_ok: bool = False) -> str:
    """No fully connected layer in any of the graphs (eval and training forward); see
    :mod:`autograder.program` for what counts as one."""
    notes = []
    for prog in progs:
        _, info = _analysis(prog)
        where = "" if prog.mode == "eval" else " (training-mode forward)"
        if info.fully_connected:
            _fail(f"{info.fully_connected[0]}{where}. Use convolutions, global average pooling and a 1x1 conv "
                  "to 10 channels instead.")
        if info.full_map and not full_map_ok:
            _fail(f"{'; '.join(info.full_map)}{where}: a kernel that covers its whole feature map is a fully "
                  "connected layer. Reduce the map with global average pooling first; a 1x1 conv on the pooled 1x1 "
                  "map is fine.")
        notes += [m for m in info.full_map if m not in notes]
    if notes:
        return (f"no fully connected layer; note: {'; '.join(notes)} covers its whole feature map, which is what a "
                "fully connected layer does (iteration 3 replaces it with global average pooling)")
    return "no fully connected layer (graph of the eval and training forward)"


def uses_ghost(train_prog: Program, ghost: int) -> None:
    """In the training forward every batch norm sees ``batch / ghost`` images (ghost > 1), or the whole
    batch (plain BatchNorm)."""
    _, info = _analysis(train_prog)
    n = train_prog.batch
    want = n // ghost if ghost > 1 else n
    sizes = sorted(set(info.norm_batches))
    if not sizes:
        _fail("it has no batch norm in its training forward")
    if sizes != [want]:
        if ghost > 1:
            _fail(f"it must normalise virtual batches of {want} images in training (GhostBatchNorm with {ghost} "
                  f"splits in its conv blocks); its batch norms saw batches of {sizes} of a batch of {n}")
        _fail(f"it must use plain nn.BatchNorm2d over the whole batch of {n}; its batch norms saw {sizes}")


# --------------------------------------------------------------------------- Ghost Batch Norm

def _infer_groups(x, z):
    """Which samples share normalisation statistics: per sample and channel, ``x = mu + sigma * z``
    fitted over the pixels; samples with equal (mu, sigma) in every channel form one virtual batch.
    Returns a list of index lists ordered by first index."""
    import torch

    n = x.shape[0]
    xf, zf = x.flatten(2).double(), z.flatten(2).double()
    zc = zf - zf.mean(-1, keepdim=True)
    sigma = (zc * (xf - xf.mean(-1, keepdim=True))).sum(-1) / (zc * zc).sum(-1).clamp_min(1e-12)
    mu = xf.mean(-1) - sigma * zf.mean(-1)
    feats = torch.cat([mu, sigma], 1)                      # (n, 2C)
    scale = feats.abs().amax(0).clamp_min(1e-6)
    close = ((feats[:, None] - feats[None]).abs() / scale).amax(-1) < 1e-3
    groups, seen = [], set()
    for i in range(n):
        if i in seen:
            continue
        members = [j for j in range(n) if bool(close[i, j]) and j not in seen]
        seen.update(members)
        groups.append(members)
    return groups


def _bn_groups(x, groups, gamma, beta, eps):
    import torch
    import torch.nn.functional as F

    out = torch.empty_like(x)
    for g in groups:
        out[g] = F.batch_norm(x[g], None, None, gamma, beta, True, 0.0, eps)
    return out


def _stats_update(rm, rv, x, groups, momentum, sequential: bool):
    """Running statistics after one training step: one BatchNorm update per virtual batch in order
    (``sequential``), or each split's update averaged (the course documents' GBN)."""
    means, vars_ = [], []
    for g in groups:
        xg = x[g].transpose(0, 1).flatten(1).double()
        means.append(xg.mean(1))
        vars_.append(xg.var(1, unbiased=True))
    if sequential:
        for m, v in zip(means, vars_):
            rm = (1 - momentum) * rm + momentum * m
            rv = (1 - momentum) * rv + momentum * v
        return rm, rv
    return (1 - momentum) * rm + momentum * sum(means) / len(means), (1 - momentum) * rv + momentum * sum(vars_) / len(vars_)


def ghost_batch_norm(cases: list[tuple[tuple, dict]]) -> str:
    """Each case is ``((channels, splits, batches), what the worker's probe returned)``. Training output
    and gradients equal ``nn.BatchNorm2d`` applied to each virtual batch (any partition of the batch
    into ``splits`` equal virtual batches: consecutive chunks, interleaved, ...); eval mode normalises
    with running statistics updated once per virtual batch (in order) or per split and averaged (the
    course documents' version), independently of the batch; an indivisible batch raises ValueError;
    ``state_dict`` round-trips."""
    import torch
    import torch.nn.functional as F

    from .probes import gbn_inputs

    for (channels, splits, batches), res in cases:
        if not isinstance(res, dict) or not res.get("is_module"):
            _fail("GhostBatchNorm must be an nn.Module (subclass nn.BatchNorm2d)")
        inp = gbn_inputs(channels, splits, batches)
        steps = res.get("steps")
        if not isinstance(steps, list) or not steps:
            _fail(f"GhostBatchNorm({channels}, {splits}) produced no training step")
        last = steps[-1] if isinstance(steps[-1], dict) else {}
        if "error" in last:
            _fail(f"GhostBatchNorm({channels}, {splits}) fails on a training batch of "
                  f"{inp['train'][len(steps) - 1][0].shape[0]}: {last['error']}")
        if len(steps) != len(inp["train"]):
            _fail(f"GhostBatchNorm({channels}, {splits}) produced {len(steps)} training steps for "
                  f"{len(inp['train'])} batches")
        for (x, _), step in zip(inp["train"], steps):
            shapes = {"out": x.shape, "grad": x.shape, "eval": inp["eval"].shape, "single": inp["eval"].shape}
            for field_, shape in shapes.items():
                v = step.get(field_) if isinstance(step, dict) else None
                if field_ == "grad" and v is None:
                    continue
                if type(v) is not torch.Tensor or tuple(v.shape) != tuple(shape) or not v.is_floating_point():
                    _fail(f"GhostBatchNorm output shape {tuple(v.shape) if isinstance(v, torch.Tensor) else v} != input "
                          f"shape {tuple(shape)}")
        restored = res.get("restored")
        if "restore_error" not in res and not (isinstance(restored, tuple) and len(restored) == 2 and all(
                type(t) is torch.Tensor and tuple(t.shape) == tuple(inp["eval"].shape) for t in restored)):
            _fail("GhostBatchNorm's state_dict round trip produced no output")
        gamma, beta = inp["gamma"].double(), inp["beta"].double()
        momentum, eps = float(res.get("momentum", 0.1)), float(res.get("eps", 1e-5))
        refs = {True: (torch.zeros(channels, dtype=torch.double), torch.ones(channels, dtype=torch.double)),
                False: (torch.zeros(channels, dtype=torch.double), torch.ones(channels, dtype=torch.double))}
        alive = {True, False}
        for (x, w), step in zip(inp["train"], steps):
            n = x.shape[0]
            out = step["out"]
            if tuple(out.shape) != tuple(x.shape):
                _fail(f"GhostBatchNorm output shape {tuple(out.shape)} != input shape {tuple(x.shape)}")
            xd, outd = x.double(), out.double()
            z = (outd - beta.view(1, -1, 1, 1)) / gamma.view(1, -1, 1, 1)
            groups = _infer_groups(xd, z)
            sizes = sorted({len(g) for g in groups})
            chunks = [list(range(i * n // splits, (i + 1) * n // splits)) for i in range(splits)]
            if len(groups) != splits or sizes != [n // splits]:
                pooled = F.batch_norm(xd, None, None, gamma, beta, True, 0.0, eps)
                if torch.allclose(outd, pooled, atol=1e-4):
                    _fail(f"In training mode with a batch of {n}, GhostBatchNorm matches ordinary BatchNorm over the "
                          f"whole batch: split the batch into {splits} virtual batches of {n // splits}.")
                ref = _bn_groups(xd, chunks, gamma, beta, eps)
                _fail(f"In training mode with a batch of {n}, the output is not nn.BatchNorm2d applied to {splits} "
                      f"equal virtual batches of {n // splits} images (max difference from consecutive chunks "
                      f"{(outd - ref).abs().max().item():.3g}; the output's statistics group the images into "
                      f"{len(groups)} batches of sizes {sizes}).")
            ref = _bn_groups(xd, groups, gamma, beta, eps)
            if not torch.allclose(outd, ref, atol=1e-4, rtol=1e-4):
                _fail(f"In training mode with a batch of {n}, the output differs from nn.BatchNorm2d applied to each "
                      f"of the {splits} virtual batches (max difference {(outd - ref).abs().max().item():.3g}).")
            xr = xd.clone().requires_grad_(True)
            (_bn_groups(xr, groups, gamma, beta, eps) * w.double()).sum().backward()
            grad = step.get("grad")
            if grad is None or not torch.allclose(grad.double(), xr.grad, atol=1e-4, rtol=1e-3):
                _fail("Gradients through GhostBatchNorm differ from nn.BatchNorm2d per virtual batch: keep the "
                      "computation in torch operations (no .detach(), .item() or in-place edits of the input).")
            for seq in list(alive):
                refs[seq] = _stats_update(*refs[seq], xd, groups, momentum, seq)
            ev, single = step["eval"].double(), step["single"].double()
            if not torch.allclose(ev, single, atol=1e-5):
                _fail("In eval mode GhostBatchNorm must normalise with the running statistics, independently of the "
                      "batch (one image alone gives a different output than in a batch of 8)")
            xe = inp["eval"].double()
            for seq in list(alive):
                rm, rv = refs[seq]
                want = F.batch_norm(xe, rm, rv, gamma, beta, False, 0.0, eps)
                if not torch.allclose(ev, want, atol=1e-4, rtol=1e-4):
                    alive.discard(seq)
            if not alive:
                _fail(f"After a training step of {n} images, eval mode does not normalise with running statistics "
                      "updated from the virtual batches: update them once per virtual batch (as nn.BatchNorm2d would, "
                      f"with the layer's momentum {momentum:g}), or per split and average them for eval.")
        if "restore_error" in res:
            _fail(f"state_dict does not load into a fresh GhostBatchNorm: {res['restore_error']}")
        a, b = res["restored"]
        if not torch.allclose(a, b, atol=1e-6):
            _fail("A GhostBatchNorm restored from state_dict gives different outputs")
        if res.get("bad_batch") is None:
            _fail(f"A training batch of {splits * 8 + 1} images cannot be split into {splits} equal virtual batches: "
                  "raise ValueError with a clear message, as the lesson's rule says.")
        if not res.get("bad_is_value_error"):
            _fail(f"A batch not divisible by num_splits must raise ValueError, got {res['bad_batch']}. The course "
                  "asks for a ValueError with a clear message (check `x.shape[0] % num_splits` before splitting), "
                  "so a wrong batch size is reported as such instead of as a shape error deep inside.")
    batches = cases[0][0][2]
    return f"GhostBatchNorm matches nn.BatchNorm2d per virtual batch (batches {', '.join(map(str, batches))})"


# --------------------------------------------------------------------------- penalties

def penalty(res: dict, kind: str = "l1") -> str:
    """``l1_penalty`` (sum |w|, gradient sign(w)) or ``l2_penalty`` (sum w^2, gradient 2w) over conv
    weights only, on the grader's probe network; checked against autograd here."""
    import torch

    from .probes import penalty_probe

    name = f"{kind}_penalty"
    model = penalty_probe()
    conv = {"conv1.weight", "conv2.weight"}
    params = dict(model.named_parameters())
    res = res if isinstance(res, dict) else {}
    value = res.get("value")
    if type(value) is not torch.Tensor or value.dim() != 0 or not value.is_floating_point():
        _fail(f"{name} must return a scalar tensor (so it can be added to the loss), got {res.get('type')}"
              + (f" of shape {tuple(value.shape)}" if isinstance(value, torch.Tensor) else ""))
    ref = {n: p.detach().clone().requires_grad_(True) for n, p in params.items()}
    expected = sum((ref[n].abs().sum() if kind == "l1" else (ref[n] ** 2).sum()) for n in sorted(conv))
    expected.backward()
    expected = expected.detach()
    what = "|w|" if kind == "l1" else "w^2"
    if not math.isclose(float(value), float(expected), rel_tol=1e-5):
        parts = {
            "conv weights": float(expected),
            "conv biases": float(params["conv2.bias"].detach().abs().sum() if kind == "l1"
                                 else (params["conv2.bias"].detach() ** 2).sum()),
            "BN gamma/beta": float(sum((p.detach().abs().sum() if kind == "l1" else (p.detach() ** 2).sum())
                                       for n, p in params.items() if n.startswith(("bn.", "gbn_like.")))),
        }
        _fail(f"{name} gives {float(value):.4f}; the sum of {what} over conv weights is {float(expected):.4f}. "
              f"Cover every conv weight and only those (not conv biases, BN gamma/beta). For reference: conv "
              f"weights {parts['conv weights']:.4f}, conv biases {parts['conv biases']:.4f}, "
              f"BN {parts['BN gamma/beta']:.4f}.")
    if not res.get("requires_grad"):
        _fail(f"{name}'s result has no gradient: compute it from the parameters with torch ops (no .item()/.detach())")
    if "backward_error" in res:
        _fail(f"{name}(...).backward() fails: {res['backward_error']}")
    grads = res.get("grads") or {}
    for n, p in ref.items():
        want = p.grad if n in conv else torch.zeros_like(p)
        got = grads.get(n) if isinstance(grads, dict) else None
        got = got if type(got) is torch.Tensor else torch.zeros_like(p)
        if got.shape != want.shape or not torch.allclose(got, want, atol=1e-6):
            _fail(f"Gradient of {name} with respect to {n} is wrong: expected "
                  f"{('sign(w)' if kind == 'l1' else '2w') if n in conv else 'zero (not covered)'}")
    return f"{name} = sum {what} over conv weights; gradient {'sign(w)' if kind == 'l1' else '2w'}"


def regularisation(label: str, *, ghost, l1, weight_decay, policy: Policy) -> str | None:
    """A Session 3 variant uses what its label names, strongly enough to matter, and nothing else:
    ``None`` if so, else what is wrong. "L2" is weight decay in the config; "GBN" is ``ghost`` > 1."""
    parts = set(label.split("+"))
    try:
        ghost, l1, weight_decay = int(ghost or 0), float(l1 or 0), float(weight_decay or 0)
    except (TypeError, ValueError):
        return "must hold numbers: (ghost splits, L1 weight, config)"
    problems = []
    if ("L1" in parts) != (l1 > 0):
        problems.append("an L1 weight > 0" if "L1" in parts else "no L1 penalty (L1 weight 0)")
    elif "L1" in parts and l1 < policy.min_l1_weight:
        problems.append(f"an L1 weight of at least {policy.min_l1_weight:g} (got {l1:g}, too weak to matter)")
    if ("L2" in parts) != (weight_decay > 0):
        problems.append("weight_decay > 0 in its config" if "L2" in parts else "no weight decay")
    elif "L2" in parts and weight_decay < policy.min_weight_decay:
        problems.append(f"weight_decay of at least {policy.min_weight_decay:g} (got {weight_decay:g}, too weak to matter)")
    if ("GBN" in parts) != (ghost > 1):
        problems.append("ghost splits > 1 (GhostBatchNorm)" if "GBN" in parts else "ghost=0 (plain BatchNorm)")
    return ("needs " + ", ".join(problems) + f" to be the {label} variant") if problems else None


# --------------------------------------------------------------------------- run records and accuracy

def epochs(record, policy: Policy) -> str:
    """Epochs below the session's limit, in the config and in the per-epoch history alike."""
    declared, ran = record.config.epochs, len(record.history)
    if record.metrics.get("epochs_run") != ran:
        _fail(f"The run record is inconsistent: metrics say {record.metrics.get('epochs_run')} epochs, the "
              f"history holds {ran}. Re-run the training cell instead of editing the record.")
    if max(declared, ran) >= policy.epoch_limit:
        _fail(f"{max(declared, ran)} epochs: {policy.session} allows fewer than {policy.epoch_limit} "
              f"(at most {policy.max_epochs}). Lower `epochs` in the config and retrain.")
    if [h.get("epoch") for h in record.history] != list(range(1, ran + 1)):
        _fail("The run record's history does not number its epochs 1..N: re-run the training cell.")
    return f"{ran} epochs (< {policy.epoch_limit})"


def fit_checkpoint(prog: Program, state: dict) -> dict:
    """The checkpoint's tensors for the graph's weights, refusing one that does not fit the model."""
    import torch

    if not isinstance(state, dict):
        _fail("The checkpoint is not a state_dict")
    wanted = {s["key"]: prog.tensors.get(s["key"]) for s in prog.inputs if s["kind"] in ("parameter", "buffer")}
    missing = [k for k in wanted if k not in state]
    unexpected = [k for k in state if k not in wanted]
    if missing or unexpected:
        _fail("The checkpoint does not fit the model class (retrain after changing the model): "
              + (f"missing {', '.join(missing[:4])}" if missing else "")
              + ("; " if missing and unexpected else "") + (f"unexpected {', '.join(unexpected[:4])}" if unexpected else ""))
    for k, t in state.items():
        ref = wanted[k]
        if type(t) is not torch.Tensor:
            _fail(f"The checkpoint entry {k} is not a tensor")
        if isinstance(ref, torch.Tensor) and tuple(t.shape) != tuple(ref.shape):
            _fail(f"The checkpoint does not fit the model class: size mismatch for {k}: checkpoint "
                  f"{tuple(t.shape)}, model {tuple(ref.shape)} (retrain after changing the model)")
    return {k: t for k, t in state.items()}


def predict(prog: Program, images, weights: dict | None) -> "object":
    """Predicted classes for uint8 ``images`` (N, 28, 28), normalised as the course loader does, in
    batches of the graph's size (the last one padded)."""
    import torch

    from course_utils.data import MNIST_MEAN, MNIST_STD

    b, preds = prog.batch, []
    for start in range(0, len(images), b):
        x = images[start:start + b].float().div(255.0).unsqueeze(1).sub(MNIST_MEAN).div(MNIST_STD)
        k = len(x)
        if k < b:
            x = torch.cat([x, torch.zeros(b - k, *x.shape[1:])])
        try:
            out = prog.run(x, weights)
        except GraphRejected as e:
            _fail(str(e))
        if tuple(out.shape) != (b, 10):
            _fail(f"forward() must return ({b}, 10) class scores, got {tuple(out.shape)}")
        preds.append(out[:k].argmax(1))
    return torch.cat(preds)


def _accuracy(prog, images, labels, weights) -> float:
    return 100.0 * float((predict(prog, images, weights) == labels).double().mean())


def _fresh_weights(prog: Program, seed: int) -> dict:
    """Weights re-initialised by the judge (uniform +-1/sqrt(fan_in), as PyTorch's conv default; BN at
    identity): the same graph must not reach the target with them."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in prog.tensors.items():
        if t.dim() >= 2:
            bound = 1.0 / math.sqrt(max(1, t[0].numel()))
            out[key] = (torch.rand(t.shape, generator=gen) * 2 - 1) * bound
        elif t.dim() == 1 and t.is_floating_point():
            one = key.endswith(("running_var", "weight"))
            out[key] = torch.ones_like(t) if one else torch.zeros_like(t)
        else:
            out[key] = t
    return out


def shifted(images, dx: int, dy: int):
    """Images moved by (dx, dy) pixels, zero-filled."""
    import torch

    out = torch.zeros_like(images)
    h, w = images.shape[-2:]
    ys, yd = (slice(0, h - dy), slice(dy, h)) if dy >= 0 else (slice(-dy, h), slice(0, h + dy))
    xs, xd = (slice(0, w - dx), slice(dx, w)) if dx >= 0 else (slice(-dx, w), slice(0, w + dx))
    out[..., yd, xd] = images[..., ys, xs]
    return out


def accuracy(prog: Program, states: list[dict], test, policy: Policy, *, history=None, seed: int = 0) -> str:
    """The graph with the checkpoint's weights, run by the judge on the MNIST test images
    (``test = (images uint8, labels)``), reaches the target; with ``history`` (checkpoint mode) the
    record's last epochs must too, else every state in ``states`` (retrain mode: the last epochs'
    checkpoints, all evaluated here). Two probes show the accuracy comes from learned weights:
    re-initialised weights stay far below the target, and one-pixel shifts of the images cost little."""
    import torch

    images, labels = test
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed or 0))
    images, labels = images[order], labels[order]   # order-dependent graphs gain nothing
    weights = [fit_checkpoint(prog, s) for s in states]
    preds = [predict(prog, images, w) for w in weights]
    accs = [100.0 * float((p == labels).double().mean()) for p in preds]
    final = accs[-1]
    if final < policy.min_accuracy:
        _fail(f"The checkpoint reaches {final:.2f}% on the MNIST test set (evaluated by the grader); "
              f"{policy.min_accuracy}% is needed.")
    k = policy.consistent_epochs
    tail = [h["test_accuracy"] for h in history[-k:]] if history is not None else accs[-k:]
    if len(tail) < k or min(tail) < policy.min_accuracy:
        _fail(f"The last {k} epochs reached {', '.join(f'{a:.2f}%' for a in tail)}: each must be >= "
              f"{policy.min_accuracy}% (consistently, not once). Try a learning-rate schedule or light augmentation.")
    sub = slice(0, policy.probe_images)
    fresh = getattr(prog, "_fresh_accuracy", None)   # the same for every checkpoint of this graph
    if fresh is None:
        fresh = prog._fresh_accuracy = _accuracy(prog, images[sub], labels[sub], _fresh_weights(prog, seed or 0))
    if fresh >= policy.max_untrained_accuracy:
        _fail(f"With its weights re-initialised by the grader, the model still scores {fresh:.1f}% "
              f"(an untrained network scores ~10%): its predictions do not come from learned weights.")
    clean = 100.0 * float((preds[-1][sub] == labels[sub]).double().mean())
    moved = torch.cat([shifted(images[sub][i::4], dx, dy) for i, (dx, dy) in enumerate(((1, 0), (-1, 0), (0, 1), (0, -1)))])
    moved_labels = torch.cat([labels[sub][i::4] for i in range(4)])
    shift_acc = _accuracy(prog, moved, moved_labels, weights[-1])
    if clean - shift_acc > policy.max_shift_drop:
        _fail(f"On test images shifted by one pixel the model scores {shift_acc:.1f}% against {clean:.1f}% unshifted: "
              f"a drop over {policy.max_shift_drop:g} points means it recognises exact images, not digits.")
    where = "grader-evaluated" + ("" if history is not None else f", last {k} retrained epochs")
    return (f"checkpoint {final:.2f}% ({where}); last {k} epochs {', '.join(f'{a:.2f}%' for a in tail)}; "
            f"shifted by 1 px {shift_acc:.1f}%, re-initialised {fresh:.1f}%")


__all__ = ["CheckFailed", "GraphRejected", "Program", "accuracy", "epochs", "ghost_batch_norm",
           "no_fc", "output", "parameters", "penalty", "regularisation", "uses_ghost"]


# --------------------------------------------------------------------------- run records

def submitted_record(config, runs_dirs=None):
    """The newest run record trained with exactly ``config`` (a ``TrainConfig``), seed included.

    One rule for every front end (notebook test cells, nbgrader, ``course grade``): a record trained
    with another config (the student changed a setting after training, or trained other seeds) is
    never graded in its place. When no record matches, the message names the folders searched and
    the closest record of that name and the settings in which it differs. ``runs_dirs`` defaults to
    the course runs folder.
    """
    from course_utils.records import runs_root, select

    dirs = list(runs_dirs) if runs_dirs is not None else [runs_root()]
    exact = select(config, dirs)
    if exact:
        return exact[-1]
    named = select(config.name, dirs)
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


# --------------------------------------------------------------------------- checks from the worker's items

class Evidence:
    """What one grading run has to judge with: the worker's items (files or failure messages), the
    assignment, the mode, where run records are, and the grader's own test set (loaded lazily)."""

    def __init__(self, assignment, outputs, items: dict, *, retrain: bool, seed: int, runs_dirs, data_root=None):
        self.assignment, self.policy = assignment, assignment.policy
        self.outputs, self.items = outputs, items
        self.retrain, self.seed, self.runs_dirs, self.data_root = retrain, seed, runs_dirs, data_root
        self._cache: dict = {}

    def path(self, name: str, max_bytes: int = 256 * 2**20):
        """A worker output file, by the name the grader expects: a regular file (no link, pipe or device)
        of bounded size, or the check fails."""
        import stat

        p = self.outputs / name
        try:
            st = p.lstat()
        except OSError:
            _fail(f"the worker produced no {name}")
        if not stat.S_ISREG(st.st_mode) or st.st_size > max_bytes:
            _fail(f"the worker's {name} is not a regular file of at most {max_bytes // 2**20} MB")
        return p

    def files(self, item: str) -> list[str]:
        if item not in self.items:
            _fail(f"internal grader error: the worker produced no {item!r}")
        status = self.items[item]
        if isinstance(status, str):
            raise CheckFailed(status)
        return status

    def program(self, item: str, mode: str) -> Program:
        import json

        from .program import load

        key = (item, mode)
        if key not in self._cache:
            self.files(item)
            prefix = item.replace(":", "-").replace("=", "")
            try:
                graph = json.loads(self.path(f"{prefix}-{mode}.json", 16 * 2**20).read_text())
                self._cache[key] = load(graph, self.path(f"{prefix}-{mode}.pt", 80 * 2**20), mode)
            except (OSError, ValueError) as e:
                self._cache[key] = CheckFailed(f"the model graph could not be read: {e}")
            except GraphRejected as e:
                self._cache[key] = CheckFailed(str(e))
        got = self._cache[key]
        if isinstance(got, CheckFailed):
            raise got
        return got

    def tensors(self, item: str, name: str):
        import torch

        if not self.files(item):
            return None
        try:
            return torch.load(self.path(name), map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001
            _fail(f"the worker's output for {item} could not be read safely: {type(e).__name__}: {e}")

    def jobs(self) -> list[dict]:
        import json

        from course_utils.config import TrainConfig

        if "jobs" not in self._cache:
            self.files("jobs")
            raw = json.loads(self.path("jobs.json", 2**20).read_text())
            labels = list(self.assignment.labels)
            if not isinstance(raw, list) or [j.get("label") if isinstance(j, dict) else None for j in raw] != labels:
                _fail(f"the graded training runs must be exactly {', '.join(labels)}")
            jobs = []
            for j in raw:
                try:
                    ghost = int(j.get("ghost") or 0)
                    job = {"label": j["label"], "ghost": ghost, "l1": float(j.get("l1") or 0),
                           "config": TrainConfig.from_dict(j["config"]),
                           "model": f"model:ghost={ghost}" if self.assignment.runs == "variants" else "model"}
                except (TypeError, ValueError, KeyError, AttributeError) as e:
                    _fail(f"a training config could not be read: {e}")
                if job["model"] not in self.assignment.models:
                    allowed = ", ".join(m.split(":")[-1] for m in self.assignment.models)
                    _fail(f"VARIANTS[{job['label']!r}] uses {job['model'].split(':')[-1]}; the graded models are "
                          f"Net({allowed}): use the lesson's splits")
                jobs.append(job)
            names = [j["config"].name for j in jobs]
            if len(set(names)) != len(names):
                _fail(f"The variants' configs must have distinct names (got {names}): each gets its own run record")
            for j in jobs:
                if self.assignment.runs == "variants":
                    problem = regularisation(j["label"], ghost=j["ghost"], l1=j["l1"],
                                             weight_decay=j["config"].weight_decay, policy=self.policy)
                    if problem:
                        _fail(f"VARIANTS[{j['label']!r}] {problem}")
            self._cache["jobs"] = jobs
        return self._cache["jobs"]

    def test_set(self):
        if "test" not in self._cache:
            from course_utils.data import load_uint8

            _, _, xte, yte = load_uint8(self.data_root)   # MD5-verified before every grading run
            self._cache["test"] = (xte, yte)
        return self._cache["test"]


def _each_job(ev: Evidence, fn) -> list[str]:
    """``fn`` on every graded run; if any fails, the check fails with every failing run's reason (a student
    with five variants learns which ones to fix, not only the first)."""
    out, failed = [], []
    for job in ev.jobs():
        try:
            out.append(fn(job))
        except CheckFailed as e:
            label = job["label"]
            failed.append(str(e) if label == "Net" else f"{label}: {e}")
    if failed:
        raise CheckFailed(" | ".join(failed))
    return out


def check_output_item(ev: Evidence) -> str:
    return output(ev.program("model", "eval"))


def check_parameters_item(ev: Evidence, limit: int | None = None) -> str:
    return parameters(ev.program("model", "eval"), ev.policy, limit)


def check_no_fc_item(ev: Evidence, full_map_ok: bool = False) -> str:
    return no_fc([ev.program("model", "eval"), ev.program("model", "train")], full_map_ok=full_map_ok)


def check_net_item(ev: Evidence) -> str:
    parts = []
    for item in ev.assignment.models:
        label = f"Net(ghost={int(item.split('=')[1])})"
        try:
            parts.append(f"{label}: {_structure(ev, item)}")
        except CheckFailed as err:
            raise CheckFailed(f"{label}: {err}") from None
    return "; ".join(parts) + "; no FC layer; ghost=4 normalises virtual batches"


def check_gbn_item(ev: Evidence) -> str:
    from .probes import GBN_CASES

    results = ev.tensors("gbn", "gbn.pt")
    if not isinstance(results, list) or len(results) != len(GBN_CASES):
        _fail("internal grader error: unexpected Ghost Batch Norm output")
    msg = ghost_batch_norm([(GBN_CASES[0], results[0])])
    ghost_batch_norm(list(zip(GBN_CASES[1:], results[1:])))
    return msg + "; also 2 and 8 splits"


def check_penalty_item(ev: Evidence) -> str:
    msg = penalty(ev.tensors("l1_penalty", "l1_penalty.pt") or {}, "l1")
    if "l2_penalty" in ev.items:
        l2 = ev.tensors("l2_penalty", "l2_penalty.pt")
        if l2 is not None:
            msg += "; " + penalty(l2, "l2")
    return msg


def _record_for(ev: Evidence, job):
    key = ("record", job["label"])
    if key not in ev._cache:
        try:
            ev._cache[key] = submitted_record(job["config"], ev.runs_dirs)
        except CheckFailed as e:
            ev._cache[key] = e
    got = ev._cache[key]
    if isinstance(got, CheckFailed):
        raise got
    return got


def _trained(ev: Evidence, job) -> dict:
    from .worker import train_file

    got = ev.tensors(f"train:{job['label']}", train_file(job["label"]))
    if not isinstance(got, dict):
        _fail("retraining produced no readable weights")
    return got


def check_epochs_item(ev: Evidence) -> str:
    def one(job):
        cfg = job["config"]
        if cfg.epochs >= ev.policy.epoch_limit:
            _fail(f"the config declares {cfg.epochs} epochs; {ev.policy.session} allows fewer than "
                  f"{ev.policy.epoch_limit} (at most {ev.policy.max_epochs}). Lower `epochs` and retrain.")
        if ev.retrain:
            ran = int(_trained(ev, job).get("epochs", 0))
            if ran >= ev.policy.epoch_limit or ran != cfg.epochs:
                _fail(f"retraining ran {ran} epochs for a config of {cfg.epochs}")
            return f"{ran} epochs (< {ev.policy.epoch_limit}, retrained)"
        return epochs(_record_for(ev, job), ev.policy)

    out = _each_job(ev, one)
    return out[0] if len(out) == 1 else f"{len(out)} runs: " + "; ".join(out)


def _structure(ev: Evidence, item: str) -> str:
    """One model's structural checks (output, parameters, no FC, and for Session 3 the ghost splits) on
    its eval and training graphs; returns the parameter count line."""
    e, t = ev.program(item, "eval"), ev.program(item, "train")
    output(e)
    msg = parameters(e, ev.policy)
    no_fc([e, t])
    if ev.assignment.runs == "variants":
        uses_ghost(t, int(item.split("=")[1]))
    return msg


def _seed(ev: Evidence) -> str:
    return f"seed {ev.seed}" if ev.seed is not None else "each config's own seed"


def check_accuracy_item(ev: Evidence) -> str:
    def one(job):
        if not ev.retrain:
            _record_for(ev, job)  # a missing record is the first thing to say
        prog = ev.program(job["model"], "eval")
        try:
            _structure(ev, job["model"])     # accuracy counts only for a model within the rules
        except CheckFailed as err:
            raise CheckFailed(f"not graded for accuracy: the model breaks a rule: {err}") from None
        if ev.retrain:
            trained = _trained(ev, job)
            states = trained.get("states") or []
            if not states:
                _fail("retraining kept no weights to evaluate")
            return accuracy(prog, states, ev.test_set(), ev.policy, seed=ev.seed)
        rec = _record_for(ev, job)
        if rec.checkpoint.stat().st_size > 80 * 2**20:   # a course checkpoint is ~50 KB
            _fail(f"The checkpoint of {rec.path.name} is over 80 MB: not a course model's")
        try:
            state = rec.load_state_dict()
        except Exception as e:  # noqa: BLE001
            _fail(f"The checkpoint of {rec.path.name} could not be read safely: {type(e).__name__}: {e}")
        return accuracy(prog, [state], ev.test_set(), ev.policy, history=rec.history, seed=ev.seed)

    out = _each_job(ev, one)
    if len(out) == 1:
        return out[0] + (f" [retrained, {_seed(ev)}]" if ev.retrain else "")
    labels = [j["label"] for j in ev.jobs()]
    return "; ".join(f"{lab} {m.split(' (')[0]}" for lab, m in zip(labels, out)) + \
        (f" [retrained, {_seed(ev)}]" if ev.retrain else "")


#: check id -> (the worker items it needs, the verdict); an assignment's checks name these ids
CHECKS = {
    "output": (lambda a, retrain: ["model"], check_output_item),
    "parameters": (lambda a, retrain: ["model"], check_parameters_item),
    "no_fc": (lambda a, retrain: ["model"], check_no_fc_item),
    "net": (lambda a, retrain: list(a.models), check_net_item),
    "ghost_batch_norm": (lambda a, retrain: ["gbn"], check_gbn_item),
    "l1_penalty": (lambda a, retrain: ["l1_penalty", "l2_penalty"], check_penalty_item),
    "epochs": (lambda a, retrain: ["jobs"] + ([f"train:{lab}" for lab in a.labels] if retrain else []),
               check_epochs_item),
    "accuracy": (lambda a, retrain: ["jobs", *a.models] + ([f"train:{lab}" for lab in a.labels] if retrain else []),
                 check_accuracy_item),
}
