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

MAX_NODES = 4000
MAX_TENSOR_BYTES = 64 * 2**20

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


class FullyConnected(GraphRejected):
    """The graph contains what the course counts as a fully connected layer."""


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
        if set(value) == {"node"}:
            if value["node"] not in env:
                raise GraphRejected(f"graph refers to an unknown value {value['node']!r}")
            return env[value["node"]]
        if set(value) == {"float"}:
            return float(value["float"])
        if set(value) == {"dtype"}:
            dt = getattr(torch, str(value["dtype"]), None)
            if not isinstance(dt, torch.dtype):
                raise GraphRejected(f"unknown dtype {value['dtype']!r}")
            return dt
        if set(value) == {"device"}:
            return torch.device("cpu")
        if set(value) == {"layout"}:
            return torch.strided
        if set(value) == {"memory_format"}:
            mf = getattr(torch, str(value["memory_format"]), None)
            return mf if isinstance(mf, torch.memory_format) else torch.contiguous_format
        return {str(k): _decode(v, env) for k, v in value.items()}
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise GraphRejected(f"graph argument of type {type(value).__name__}")


def _refs(value) -> list[str]:
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    if isinstance(value, dict):
        if set(value) == {"node"}:
            return [value["node"]]
        return [r for v in value.values() for r in _refs(v)]
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
    fully_connected: list = field(default_factory=list)  # why the graph has an FC layer (rules 2-4)
    full_map: list = field(default_factory=list)        # rule 2 cases (allowed in Session 2 iterations 1-2)
    norm_batches: list = field(default_factory=list)    # batch dimension of every batch-norm input
    output_shape: tuple = ()

    @property
    def parameters(self) -> int:
        return sum(self.counted.values())


class Program:
    """An exported graph, checked against the allow-list and ready to run on the judge's inputs."""

    def __init__(self, graph: dict, tensors: dict):
        import torch

        if not isinstance(graph, dict) or graph.get("format") != 1 or not isinstance(graph.get("nodes"), list):
            raise GraphRejected("the worker returned no readable model graph")
        if len(graph["nodes"]) > MAX_NODES:
            raise GraphRejected(f"the model's graph has {len(graph['nodes'])} operations (limit {MAX_NODES})")
        self.mode = graph.get("mode")
        self.batch = int(graph.get("batch", 0))
        self.inputs = []
        for spec in graph.get("inputs", []):
            kind, name = spec.get("kind"), spec.get("name")
            if not isinstance(name, str) or kind not in ("image", "parameter", "buffer", "constant"):
                raise GraphRejected(f"graph input {spec!r} is not understood")
            self.inputs.append({"name": name, "kind": kind, "key": spec.get("key")})
        if sum(1 for s in self.inputs if s["kind"] == "image") != 1:
            raise GraphRejected("the model's forward must take exactly one input (the batch of images)")
        total = 0
        for key, t in tensors.items():
            if type(t) is not torch.Tensor:
                raise GraphRejected(f"weight {key!r} is not a plain tensor")
            total += t.numel() * t.element_size()
        if total > MAX_TENSOR_BYTES:
            raise GraphRejected(f"the model's tensors take {total / 2**20:.0f} MB (limit {MAX_TENSOR_BYTES // 2**20} MB)")
        self.tensors = tensors
        self.nodes = []
        for n in graph["nodes"]:
            if n.get("op") == "output":
                self.nodes.append((n.get("name"), "output", None, None, n.get("args"), {}))
            elif n.get("op") == "call_function":
                fn, packet = _resolve(str(n.get("target")))
                self.nodes.append((n.get("name"), "call", fn, packet, n.get("args") or [], n.get("kwargs") or {}))
            else:
                raise GraphRejected(f"graph node kind {n.get('op')!r} is not allowed (get_attr, call_module, ...)")

    def weight_keys(self) -> dict:
        """Graph input name -> weight key, for every non-image input."""
        return {s["name"]: s["key"] for s in self.inputs if s["kind"] != "image"}

    def run(self, x, weights: dict | None = None, analyse: bool = False):
        """The graph's output for the image batch ``x``; with ``analyse`` also an :class:`Analysis`.
        ``weights`` (key -> tensor) replaces the exported tensors (a checkpoint); every call runs on
        fresh copies, so a graph cannot keep state from one batch to the next."""
        import torch

        source = dict(self.tensors)
        if weights is not None:
            source.update(weights)
        env: dict = {}
        roots: dict = {}     # value name -> set of weight keys it derives from (weights only)
        act: set = set()     # values derived from the image
        folded: dict = {}    # activation values in which a multi-pixel map was folded away -> where
        info = Analysis()
        for spec in self.inputs:
            if spec["kind"] == "image":
                env[spec["name"]] = x
                act.add(spec["name"])
                continue
            t = source.get(spec["key"])
            if not isinstance(t, torch.Tensor):
                raise GraphRejected(f"no tensor for the model's weight {spec['key']!r}")
            env[spec["name"]] = t.detach().clone()
            roots[spec["name"]] = {spec["key"]}
            if analyse and spec["kind"] == "parameter":
                info.counted[spec["key"]] = t.numel()
        kinds = {s["key"]: s["kind"] for s in self.inputs if s["kind"] != "image"}
        output = None
        with torch.no_grad():
            for name, op, fn, packet, args, kwargs in self.nodes:
                if op == "output":
                    output = _decode(args, env)
                    break
                a, k = _decode(args, env), _decode(kwargs, env)
                refs = _refs(args) + _refs(kwargs)
                if analyse:
                    self._inspect(name, packet, args, a, refs, env, roots, act, folded, kinds, info)
                try:
                    env[name] = fn(*a, **k)
                except Exception as e:  # noqa: BLE001 - the graph is data; its failure is the submission's
                    raise GraphRejected(f"the model's graph fails at {packet}: {type(e).__name__}: {e}") from None
                if any(r in act for r in refs):
                    act.add(name)
                    src = next((folded[r] for r in refs if r in folded), None)
                    if src:
                        folded[name] = src
                    elif analyse and packet in RESHAPE:
                        self._fold(name, packet, a, env[name], folded)
                else:
                    derived = set().union(*(roots.get(r, set()) for r in refs)) if refs else set()
                    roots[name] = derived
        outs = output[0] if isinstance(output, (list, tuple)) and output else output
        out = outs[0] if isinstance(outs, (list, tuple)) else outs
        if not isinstance(out, torch.Tensor):
            raise GraphRejected(f"forward() must return a tensor of class scores, got {type(out).__name__}")
        info.output_shape = tuple(out.shape)
        return (out, info) if analyse else out

    @staticmethod
    def _fold(name, packet, a, out, folded):
        import torch

        x = a[0] if a and isinstance(a[0], torch.Tensor) else None
        if x is None or not isinstance(out, torch.Tensor) or x.dim() < 3:
            return
        before = math.prod(x.shape[2:])
        after = math.prod(out.shape[2:]) if out.dim() >= 3 else 1
        if before > 1 and after == 1:
            folded[name] = f"{packet} turns a {tuple(x.shape[1:])} map into {tuple(out.shape[1:])}"

    def _inspect(self, name, packet, args, a, refs, env, roots, act, folded, kinds, info):
        """Apply the rules to one operation before it runs (its inputs are known)."""
        import torch

        def arg_ref(i):
            v = args[i] if i < len(args) else None
            return v["node"] if isinstance(v, dict) and set(v) == {"node"} else None

        def count(ref):
            for key in roots.get(ref, ()):
                t = self.tensors.get(key)
                info.counted[key] = t.numel() if isinstance(t, torch.Tensor) else 0

        acts = [r for r in refs if r in act]
        weights = [r for r in refs if r not in act and roots.get(r)]
        if packet in DENSE:
            for r in weights:
                count(r)
            if acts:
                info.fully_connected.append(f"forward() computes a dense (fully connected) product: aten.{packet}")
            return
        if not acts:
            return
        src = next((folded[r] for r in acts if r in folded), None)
        if packet in CONV:
            x, w = a[0], a[1]
            wref = arg_ref(1)
            for r in (wref, arg_ref(2)):
                if r:
                    count(r)
            is_param = wref is not None and len(roots.get(wref, ())) == 1 and wref in self.weight_keys() \
                and kinds.get(next(iter(roots[wref]))) == "parameter"
            if not is_param:
                info.hidden.append(f"conv with kernel {tuple(w.shape)} on input {tuple(x.shape)}")
            if src:
                info.fully_connected.append(f"a convolution after {src}: the whole map folded into channels and "
                                            "mixed by learned weights is a fully connected layer")
            ks, ins = tuple(w.shape[2:]), tuple(x.shape[2:])
            stride = a[3] if len(a) > 3 else 1
            padding = a[4] if len(a) > 4 else 0
            pads = list(padding) if isinstance(padding, (list, tuple)) else [padding] * len(ks)
            pads = (pads * len(ks))[:len(ks)] if len(pads) == 1 else pads
            outs = [i + 2 * p - kk + 1 for i, p, kk in zip(ins, pads, ks)]
            if math.prod(ins) > 1 and math.prod(ks) > 1 and all(o <= 1 for o in outs):
                what = f"a {'x'.join(map(str, ks))} conv over a {'x'.join(map(str, ins))} feature map (kernel {tuple(w.shape)})"
                info.full_map.append(what)
            del stride
        elif packet in BATCH_NORM:
            info.norm_batches.append(int(a[0].shape[0]))
            for i in (1, 2):
                r = arg_ref(i)
                if r:
                    count(r)
                    t = a[i]
                    if isinstance(t, torch.Tensor) and t.numel() != a[0].shape[1]:
                        info.fully_connected.append(f"batch norm with {t.numel()} weights for {a[0].shape[1]} channels")
            if src:
                info.fully_connected.append(f"a batch norm after {src}: per-position learned scales over a folded map")
        elif packet in ELEMENTWISE and weights:
            for r in weights:
                count(r)
            x = env[acts[0]]
            for r in weights:
                w = env[r]
                if src:
                    info.fully_connected.append(f"learned weights applied after {src}")
                elif isinstance(w, torch.Tensor) and isinstance(x, torch.Tensor) and x.dim() >= 3 \
                        and math.prod(x.shape[2:]) > 1:
                    shape = (1,) * max(0, x.dim() - w.dim()) + tuple(w.shape)
                    if math.prod(shape[2:]) > 1:
                        info.fully_connected.append(
                            f"a model tensor of shape {tuple(w.shape)} applied ({packet}) per pixel position of a "
                            f"{tuple(x.shape[1:])} map: learned weights per position are a fully connected layer")
        elif weights:
            for r in weights:
                count(r)
            info.fully_connected.append(f"a model tensor used in {packet} on the activations (the grader accepts model "
                                        "tensors only as conv kernels/biases, batch-norm parameters and per-channel scales)")


def load(graph: dict, tensors_path) -> Program:
    """A :class:`Program` from the worker's graph JSON and tensor file (loaded with
    ``weights_only=True``: plain tensors only, no code)."""
    import torch

    try:
        tensors = torch.load(tensors_path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        raise GraphRejected(f"the model's tensors could not be read safely: {type(e).__name__}: {e}") from None
    if not isinstance(tensors, dict):
        raise GraphRejected("the model's tensors are not a dict")
    return Program(graph, tensors)
