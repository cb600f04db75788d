"""Judge side: load a model graph exported by the worker, check it, and run it, trusting nothing in it.

The worker (:mod:`autograder.export`) hands back a list of aten operations and the tensors they
read. This module never imports or runs the student's code: it resolves every operation against an
allow-list of aten operators (anything else is refused with a message), counts every tensor the
graph reads as a weight, and runs the graph itself on the images it chooses, so the forward it
inspects is the forward it grades.

What counts as a fully connected layer (the definition the no-FC check applies to the graph):
learned numbers applied per pixel position across a whole multi-pixel map. Concretely, any of

1. a matrix product (``linear``, ``mm``, ``matmul``, ``einsum``, ``bmm``, ...), with or without
   learned weights;
2. a convolution whose kernel covers its whole input of more than one pixel (a 1x1 output);
3. a learned operation (convolution, batch norm, elementwise with a model tensor) applied after a
   multi-pixel map was folded into channels or a vector (``view``/``reshape``/``flatten``/
   ``pixel_unshuffle`` leaving no spatial extent), e.g. ``(N, C*H*W, 1, 1)`` then a 1x1 conv;
4. a model tensor multiplied with (or added to) a multi-pixel map, varying over its pixel positions.

A 1x1 conv on the 1x1 map left by global average pooling is none of these.
"""
from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field

MAX_NODES = 1000                   # the course's networks export to ~70-130 operations
MAX_TENSOR_BYTES = 64 * 2**20      # all the tensors a graph reads
MAX_VALUE_ELEMENTS = 2**26         # any intermediate value (256 MB of float32)
MAX_FLOPS = 1e12                   # per batch (the reference: ~2e9 for 500 images; iteration 1: ~1e11)
MAX_FOLD = 16                      # space-to-depth by up to 4x4 is a convolution's business; more is not
BATCH = {"eval": 500, "train": 128}  # the judge's batch sizes (the worker's claims are not used)

CONV = {"conv1d", "conv2d", "convolution", "_convolution"}
BATCH_NORM = {"batch_norm", "native_batch_norm", "_native_batch_norm_legit_no_training", "_native_batch_norm_legit",
              "_native_batch_norm_legit_functional"}
ELEMENTWISE = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_", "maximum", "minimum", "rsub"}
RESHAPE = {"view", "reshape", "_unsafe_view", "flatten", "unflatten", "squeeze", "squeeze_", "unsqueeze", "permute",
           "transpose", "t", "pixel_unshuffle", "pixel_shuffle", "movedim", "contiguous", "clone", "expand",
           "select", "slice", "narrow", "alias", "detach", "lift_fresh_copy", "_to_copy", "to"}
DENSE = {"linear", "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "mv", "addmv", "dot", "vdot", "inner", "outer",
         "ger", "einsum", "tensordot", "bilinear", "_trilinear", "_addmm_activation", "mkldnn_linear", "chain_matmul",
         "linalg_multi_dot", "embedding", "embedding_bag"}
OTHER = {"relu", "relu_", "relu6", "leaky_relu", "leaky_relu_", "elu", "elu_", "gelu", "silu", "silu_", "sigmoid",
         "tanh", "hardtanh", "hardtanh_", "hardswish", "hardswish_", "softplus", "mish", "neg", "abs", "exp", "log",
         "sqrt", "rsqrt", "pow", "clamp", "clamp_", "clamp_min", "clamp_max",
         "max_pool2d", "max_pool2d_with_indices", "avg_pool2d", "adaptive_avg_pool2d", "_adaptive_avg_pool2d",
         "adaptive_max_pool2d", "mean", "sum", "amax", "var", "var_mean", "std",
         "log_softmax", "_log_softmax", "softmax", "_softmax",
         "chunk", "split", "split_with_sizes", "unbind", "cat", "stack", "repeat",
         "pad", "constant_pad_nd", "reflection_pad2d", "replication_pad2d",
         "dropout", "dropout_", "feature_dropout", "feature_dropout_", "alpha_dropout", "native_dropout",
         "zeros", "ones", "full", "zeros_like", "ones_like", "full_like", "empty", "empty_like", "new_empty",
         "new_zeros", "new_ones", "scalar_tensor", "copy", "copy_", "slice_scatter", "select_scatter", "fill_",
         "zero_", "_assert_tensor_metadata"}
ALLOWED = CONV | BATCH_NORM | ELEMENTWISE | RESHAPE | OTHER


class GraphRejected(Exception):
    """The exported graph breaks a rule (or is not a graph the judge can run); the message says which."""


def _resolve(target: str):
    import torch

    if target == "getitem":
        return operator.getitem, "getitem"
    parts = target.split(".")
    if len(parts) != 3 or parts[0] != "aten":
        raise GraphRejected(f"forward() calls {target}, which is not an aten operator the grader runs")
    packet = parts[1]
    if packet not in ALLOWED and packet not in DENSE:
        raise GraphRejected(f"forward() uses aten.{packet}, which the course's networks do not need and the grader "
                            "does not run (allowed: convolutions, batch norm, activations, pooling, reshapes, dropout, "
                            "elementwise arithmetic).")
    try:
        return getattr(getattr(torch.ops.aten, packet), parts[2]), packet
    except AttributeError:
        raise GraphRejected(f"unknown operator {target}") from None


def _decode(value, env: dict):
    import torch

    if isinstance(value, list):
        return [_decode(v, env) for v in value]
    if isinstance(value, dict):
        if set(value) == {"$node"}:
            if value["$node"] not in env:
                raise GraphRejected(f"graph refers to an unknown value {value['$node']!r}")
            return env[value["$node"]]
        if set(value) == {"$float"}:
            return float(value["$float"])
        if set(value) == {"$dtype"}:
            dt = getattr(torch, str(value["$dtype"]), None)
            if not isinstance(dt, torch.dtype) or not (dt.is_floating_point or dt in (torch.bool, torch.int64)):
                raise GraphRejected(f"dtype {value['$dtype']!r} is not allowed in the model's graph")
            return dt
        if set(value) == {"$device"}:
            return torch.device("cpu")
        if set(value) == {"$layout"}:
            return torch.strided
        if set(value) == {"$memory_format"}:
            mf = getattr(torch, str(value["$memory_format"]), None)
            return mf if isinstance(mf, torch.memory_format) else torch.contiguous_format
        raise GraphRejected("graph argument: an unexpected mapping")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GraphRejected(f"graph argument of type {type(value).__name__}")


def _refs(value) -> list[str]:
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        if set(value) == {"$node"}:
            return [value["$node"]]
        return []
    return []


def _tensors(value) -> list:
    import torch

    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


@dataclass
class Analysis:
    """What the judge saw while running a graph: facts for the parameter and no-FC checks."""

    counted: dict = field(default_factory=dict)         # weight key -> numel (counts toward the budget)
    hidden: list = field(default_factory=list)          # conv kernels that are not parameters
    fully_connected: list = field(default_factory=list)  # why the graph has an FC layer (rules 1, 3, 4)
    full_map: list = field(default_factory=list)        # rule 2 cases (allowed in Session 2 iterations 1-2)
    norm_batches: list = field(default_factory=list)    # batch dimension of every batch-norm input
    output_shape: tuple = ()

    @property
    def parameters(self) -> int:
        return sum(self.counted.values())


@dataclass(frozen=True)
class Taint:
    """What the judge knows about a value: derived from the image (``act``), which model tensors flow
    into it (``roots``, also through activations), and how far pixel positions were regrouped into other
    dimensions by reshapes (``fold``, a factor; ``flat``: a multi-pixel map folded away entirely)."""

    act: bool = False
    roots: frozenset = frozenset()
    fold: float = 1.0
    flat: bool = False
    why: str = ""

    def merge(self, other: "Taint") -> "Taint":
        return Taint(self.act or other.act, self.roots | other.roots, max(self.fold, other.fold),
                     self.flat or other.flat, self.why or other.why)

    @property
    def folded(self) -> bool:
        return self.flat or self.fold > MAX_FOLD


INPLACE_EXTRA = {"copy_", "fill_", "zero_"}
LITERALS = {"zeros", "ones", "full", "empty", "scalar_tensor"}
ALIASING = RESHAPE | {"chunk", "split", "split_with_sizes", "unbind", "getitem"}


def _spatial(t) -> int:
    return math.prod(t.shape[2:]) if t.dim() >= 3 else 0


class Program:
    """An exported graph, checked against the allow-list and ready to run on the judge's inputs."""

    def __init__(self, graph: dict, tensors: dict, mode: str | None = None):
        import torch

        if not isinstance(graph, dict) or graph.get("format") != 1 or not isinstance(graph.get("nodes"), list):
            raise GraphRejected("the worker returned no readable model graph")
        if len(graph["nodes"]) > MAX_NODES:
            raise GraphRejected(f"the model's graph has {len(graph['nodes'])} operations (limit {MAX_NODES})")
        self.mode = mode or graph.get("mode")
        if self.mode not in BATCH:
            raise GraphRejected(f"unknown graph mode {self.mode!r}")
        self.batch = BATCH[self.mode]
        self.inputs = []
        for spec in graph.get("inputs", []):
            kind, name, key = spec.get("kind"), spec.get("name"), spec.get("key")
            if not isinstance(name, str) or kind not in ("image", "parameter", "buffer", "constant") or \
                    (kind != "image" and not isinstance(key, str)):
                raise GraphRejected(f"graph input {spec!r} is not understood")
            self.inputs.append({"name": name, "kind": kind, "key": key})
        if sum(1 for s in self.inputs if s["kind"] == "image") != 1:
            raise GraphRejected("the model's forward must take exactly one input (the batch of images)")
        total = 0
        for key, t in tensors.items():
            if type(t) is not torch.Tensor or t.layout != torch.strided:
                raise GraphRejected(f"weight {key!r} is not a plain tensor")
            total += t.numel() * t.element_size()
        if total > MAX_TENSOR_BYTES:
            raise GraphRejected(f"the model's tensors take {total / 2**20:.0f} MB (limit {MAX_TENSOR_BYTES // 2**20} MB)")
        missing = [s["key"] for s in self.inputs if s["kind"] != "image" and s["key"] not in tensors]
        if missing:
            raise GraphRejected(f"no tensor for the model's weight {missing[0]!r}")
        self.tensors = tensors
        self.nodes = []
        for n in graph["nodes"]:
            if not isinstance(n, dict) or not isinstance(n.get("name"), str):
                raise GraphRejected("a graph node is not understood")
            if n.get("op") == "output":
                self.nodes.append((n["name"], "output", None, None, n.get("args"), {}))
            elif n.get("op") == "call_function":
                fn, packet = _resolve(str(n.get("target")))
                args, kwargs = n.get("args") or [], n.get("kwargs") or {}
                if not isinstance(args, list) or not isinstance(kwargs, dict):
                    raise GraphRejected("a graph node's arguments are not understood")
                self.nodes.append((n["name"], "call", fn, packet, args, kwargs))
            else:
                raise GraphRejected(f"graph node kind {n.get('op')!r} is not allowed (get_attr, call_module, ...)")
        self._check_sizes()

    def weight_keys(self) -> dict:
        """Graph input name -> weight key, for every non-image input."""
        return {s["name"]: s["key"] for s in self.inputs if s["kind"] != "image"}

    def _check_sizes(self) -> None:
        """A dry run on shapes only (meta tensors): no value too large, not too many operations' worth of
        arithmetic, before the judge spends real memory and time on the graph."""
        import torch

        x = torch.empty(self.batch, 1, 28, 28, device="meta")
        weights = {k: torch.empty(t.shape, dtype=t.dtype, device="meta") for k, t in self.tensors.items()}
        self.run(x, weights, _meta=True)

    def run(self, x, weights: dict | None = None, analyse: bool = False, _meta: bool = False):
        """The graph's output for the image batch ``x``; with ``analyse`` also an :class:`Analysis`.
        ``weights`` (key -> tensor) replaces the exported tensors (a checkpoint); every call runs on
        fresh copies, so a graph cannot keep state from one batch to the next."""
        import torch

        if tuple(x.shape) != (self.batch, 1, 28, 28):
            raise GraphRejected(f"the judge runs batches of {self.batch} images, got {tuple(x.shape)}")
        source = dict(self.tensors)
        if weights is not None:
            source.update(weights)
        env: dict = {}
        taint: dict = {}
        group: dict = {}     # value name -> the alias group it belongs to (views share memory)
        info = Analysis()
        kinds = {s["key"]: s["kind"] for s in self.inputs if s["kind"] != "image"}
        flops = 0.0
        for spec in self.inputs:
            name = spec["name"]
            group[name] = {name}
            if spec["kind"] == "image":
                env[name], taint[name] = x, Taint(act=True)
                continue
            t = source[spec["key"]]
            env[name] = t if _meta else t.detach().clone()
            taint[name] = Taint(roots=frozenset({spec["key"]}))
            if analyse and spec["kind"] == "parameter":
                info.counted[spec["key"]] = t.numel()
        output = None
        with torch.no_grad():
            for name, op, fn, packet, args, kwargs in self.nodes:
                if op == "output":
                    output = _decode(args, env)
                    break
                a = _decode(args, env)
                k = {str(key): _decode(v, env) for key, v in kwargs.items()}
                if _meta and (packet in LITERALS or "device" in k):
                    k["device"] = torch.device("meta")   # tensors the graph makes are shapes only, too
                refs = [r for r in _refs(args) + [r for v in kwargs.values() for r in _refs(v)] if r in env]
                if packet == "getitem" and not (isinstance(a[0], (list, tuple)) and type(a[1]) is int):
                    raise GraphRejected("getitem is allowed only to pick one result of chunk/split")
                if packet in ("_to_copy", "to") and isinstance(k.get("dtype"), torch.dtype) \
                        and not k["dtype"].is_floating_point:
                    raise GraphRejected(f"forward() converts a tensor to {k['dtype']}; the graph computes in floats")
                if analyse:
                    self._inspect(packet, args, a, refs, env, taint, info, kinds)
                try:
                    out = fn(*a, **k)
                except Exception as e:  # noqa: BLE001 - the graph is data; its failure is the submission's
                    raise GraphRejected(f"the model's graph fails at {packet}: {type(e).__name__}: {e}") from None
                for t in _tensors(out):
                    if t.numel() > MAX_VALUE_ELEMENTS:
                        raise GraphRejected(f"the model's graph makes a {tuple(t.shape)} tensor at {packet} (limit "
                                            f"{MAX_VALUE_ELEMENTS:,} numbers)")
                if packet in CONV:
                    w, o = a[1], _tensors(out)[0]
                    flops += 2.0 * o.numel() * (w.numel() / max(1, w.shape[0]))
                    if flops > MAX_FLOPS:
                        raise GraphRejected(f"the model's graph needs more than {MAX_FLOPS:.0e} operations per batch")
                env[name] = out
                self._propagate(name, packet, a, refs, out, taint, group)
        outs = output[0] if isinstance(output, (list, tuple)) and output else output
        out = outs[0] if isinstance(outs, (list, tuple)) else outs
        if not isinstance(out, torch.Tensor):
            raise GraphRejected(f"forward() must return a tensor of class scores, got {type(out).__name__}")
        info.output_shape = tuple(out.shape)
        return (out, info) if analyse else out

    @staticmethod
    def _propagate(name, packet, a, refs, out, taint, group):
        """The output's taint: the union of its inputs', plus a fold where a reshape regroups pixels; an
        in-place operation passes its inputs' taint to everything that shares memory with its target."""
        import torch

        t = Taint()
        for r in refs:
            t = t.merge(taint[r])
        if packet in LITERALS or packet == "full_like":
            t = t.merge(Taint(roots=frozenset({f"literal:{name}"})))
        x = a[0] if a and isinstance(a[0], torch.Tensor) else None
        o = out if isinstance(out, torch.Tensor) else None
        if packet in RESHAPE and x is not None and o is not None and t.act:
            before, after = _spatial(x), _spatial(o)
            if before > 1 and (o.dim() < 3 or after <= 1):
                t = Taint(t.act, t.roots, t.fold, True, t.why or f"{packet} turns a {tuple(x.shape[1:])} map into "
                                                                 f"{tuple(o.shape[1:])}")
            elif before and after and before != after:
                factor = max(before / after, after / before) * t.fold
                t = Taint(t.act, t.roots, factor, t.flat, t.why or f"{packet} regroups a {tuple(x.shape[1:])} map "
                                                                    f"into {tuple(o.shape[1:])}")
        taint[name] = t
        group[name] = {name}
        if packet in ALIASING and refs:
            members = group[refs[0]] | {name}
            for m in members:
                group[m] = members
        if (packet.endswith("_") or packet in INPLACE_EXTRA) and refs:
            members = group[refs[0]] | {name}
            for m in members:
                group[m] = members
                taint[m] = taint[m].merge(t) if m in taint else t

    def _inspect(self, packet, args, a, refs, env, taint, info, kinds):
        """Apply the rules to one operation before it runs (its inputs are known)."""
        import torch

        def arg_ref(i):
            v = args[i] if i < len(args) else None
            return v["$node"] if isinstance(v, dict) and set(v) == {"$node"} else None

        def count(ref):
            for key in taint[ref].roots:
                if key.startswith("literal:"):
                    node = key.split(":", 1)[1]
                    info.counted[key] = env[node].numel() if isinstance(env.get(node), torch.Tensor) else 0
                else:
                    info.counted[key] = self.tensors[key].numel()

        acts = [r for r in refs if taint[r].act]
        model = [r for r in refs if not taint[r].act and taint[r].roots]   # model tensors used directly here
        if not acts:
            return
        folded = next((taint[r] for r in refs if taint[r].folded), None)
        if packet in DENSE:
            for r in model:
                count(r)
            info.fully_connected.append(f"forward() computes a dense (fully connected) product: aten.{packet}")
            return
        if packet in CONV:
            x, w = a[0], a[1]
            wref = arg_ref(1)
            for r in (wref, arg_ref(2)):
                if r:
                    count(r)
            roots = taint[wref].roots if wref else frozenset()
            is_param = wref in self.weight_keys() and len(roots) == 1 and kinds.get(next(iter(roots))) == "parameter"
            if not is_param:
                info.hidden.append(f"conv with kernel {tuple(w.shape)} on input {tuple(x.shape)}")
            if folded:
                info.fully_connected.append(f"a convolution after {folded.why}: the whole map folded into channels and "
                                            "mixed by learned weights is a fully connected layer")
            ks, ins = tuple(w.shape[2:]), tuple(x.shape[2:])
            if math.prod(ins) > 1 and math.prod(ks) > 1 and all(kk >= i for kk, i in zip(ks, ins)):
                info.full_map.append(f"a {'x'.join(map(str, ks))} conv over a {'x'.join(map(str, ins))} feature map "
                                     f"(kernel {tuple(w.shape)})")
        elif packet in BATCH_NORM:
            x = a[0]
            info.norm_batches.append(int(x.shape[0]))
            channels = x.shape[1] if x.dim() > 1 else 0
            for i in (1, 2, 3, 4):
                r = arg_ref(i)
                t = a[i] if i < len(a) else None
                if not r or not isinstance(t, torch.Tensor):
                    continue
                if i in (1, 2) or t.numel() != channels or taint[r].act or folded:
                    count(r)
                if t.numel() != channels:
                    info.fully_connected.append(f"batch norm with {t.numel()} numbers for {channels} channels")
            if folded:
                info.fully_connected.append(f"a batch norm after {folded.why}: per-position learned numbers over a "
                                            "folded map")
        elif packet in ELEMENTWISE and model:
            for r in model:
                count(r)
            if folded:
                info.fully_connected.append(f"model numbers applied after {folded.why}")
            for r in refs:
                w = env[r]
                if taint[r].act or not taint[r].roots or not isinstance(w, torch.Tensor):
                    continue
                if sum(1 for d in w.shape if d > 1) > 1:
                    info.fully_connected.append(
                        f"a model tensor of shape {tuple(w.shape)} applied ({packet}) to the activations: model "
                        "numbers that vary over pixel positions are a fully connected layer (per-channel scales and "
                        "shifts are fine)")
        elif any(not taint[r].act and taint[r].roots for r in refs):
            for r in model:
                count(r)
            info.fully_connected.append(f"a model tensor used in {packet} on the activations (the grader accepts model "
                                        "tensors only as conv kernels/biases, batch-norm parameters and per-channel "
                                        "scales)")


def load(graph: dict, tensors_path, mode: str | None = None) -> Program:
    """A :class:`Program` from the worker's graph JSON and tensor file (loaded with
    ``weights_only=True``: plain tensors only, no code)."""
    import torch

    try:
        tensors = torch.load(tensors_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise GraphRejected(f"the model's tensors could not be read safely: {type(e).__name__}: {e}") from None
    if not isinstance(tensors, dict):
        raise GraphRejected("the model's tensors are not a dict")
    return Program(graph, tensors, mode)
