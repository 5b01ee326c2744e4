#!/usr/bin/env python3
"""Writes tests/data/f16/<case>/ and tests/data/bf16/<case>/: float16 and
bfloat16 (and mixed with float32/float64) replay cases whose expected states
come from an independent run of Keras 3's code op by op, each op in the
dtype Keras's numpy backend computes it in:
  float16  numpy's float16 (every op rounded to float16, as Keras's numpy
           backend computes), cross-checked against torch's float16;
  bfloat16 torch's bfloat16 CPU tensors (every op rounded to bfloat16).
The op order is the one of make_f64_vectors.py (adadelta.py update_step,
base_optimizer.py, loss_scale_optimizer.py), with the promotions Keras
makes for 16-bit gradients:
  - LossScaleOptimizer divides a 16-bit gradient by its float32 scale: the
    unscaled gradient is float32, clipped in float32 and accumulated as
    float32 + accumulator (rounded to the accumulator's dtype when stored),
    until update_step casts it to the variable's dtype;
  - loss_scale_factor (a Python float) keeps the gradient's dtype;
  - a global norm is in the widest dtype of the per-variable sums
    (float16 with bfloat16 is float32), and v * scale then update_step's cast.
Where Keras is not one fixed computation this follows the library's
documented order (README "Dtypes"): squares in the gradient's dtype added in
double per shard in 16 lanes, a variable's sum rounded once to its dtype;
float32 global sums over every shard, rounded once.
It does not use the library.

Run from the repository root:  /usr/bin/python3 tests/data/make_half_vectors.py
Deterministic (fixed seeds); the cases are committed.
"""
import json
import os
import struct
import sys

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_f64_vectors import LANES, SHAPES, SHARD, learning_rate  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
F16, BF16, F32, F64 = "float16", "bfloat16", "float32", "float64"
TORCH = {F16: torch.float16, BF16: torch.bfloat16, F32: torch.float32, F64: torch.float64}
NUMPY = {F16: np.float16, F32: np.float32, F64: np.float64}
CODE = {F16: "F16", BF16: "BF16", F32: "F32", F64: "F64"}
RANK = {F16: 1, BF16: 1, F32: 2, F64: 3}


def widest(dts):
    """Keras's result_type of float dtypes (float16 with bfloat16: float32)."""
    dts = set(dts)
    if len(dts) == 1:
        return dts.pop()
    top = max(dts, key=lambda d: RANK[d])
    return F32 if RANK[top] == 1 else top


class NumpyOps:
    """Arrays are numpy arrays; a scalar of dtype d is numpy's d(x)."""
    name = "numpy"

    def array(self, a, dt): return np.asarray(a, dtype=NUMPY[dt])
    def scalar(self, x, dt): return NUMPY[dt](x)
    def dtype(self, a): return {np.dtype(v): k for k, v in NUMPY.items()}[a.dtype]
    def cast(self, a, dt): return a.astype(NUMPY[dt])
    def sqrt(self, a): return np.sqrt(a)
    def div(self, a, b): return a / b
    def maximum(self, a, b): return np.maximum(a, b)
    def minimum(self, a, b): return np.minimum(a, b)
    def clip(self, a, lo, hi): return np.clip(a, lo, hi)
    def all_finite(self, a): return bool(np.all(np.isfinite(a)))
    def zeros_like(self, a): return np.zeros_like(a)
    def copy(self, a): return a.copy()
    def to_numpy_f64(self, a): return np.asarray(a, np.float64)
    def bits(self, a): return np.ascontiguousarray(a)


class TorchOps:
    """Arrays are torch CPU tensors; a scalar is a 0-d tensor of the dtype."""
    name = "torch"

    def array(self, a, dt):
        if dt == F16:  # numpy's rounding, so both references see one input
            return torch.from_numpy(np.asarray(a, np.float16))
        return torch.tensor(np.asarray(a, np.float64), dtype=TORCH[dt])
    def scalar(self, x, dt): return torch.tensor(float(x), dtype=torch.float64).to(TORCH[dt]) \
        if dt == F64 else torch.tensor(np.float64(x)).to(TORCH[dt])
    def dtype(self, a): return {v: k for k, v in TORCH.items()}[a.dtype]
    def cast(self, a, dt): return a.to(TORCH[dt])
    def sqrt(self, a):
        if a.dtype == torch.float16:  # no float16 sqrt on this CPU build
            return torch.sqrt(a.float()).half()  # float32 then one rounding
        return torch.sqrt(a)

    def div(self, a, b):
        """a / b elementwise: torch divides by a 0-d tensor as a times its
        reciprocal, so b (and a) are given as tensors of the result's shape."""
        shape = torch.broadcast_shapes(a.shape, b.shape)
        n = max(1, int(np.prod(shape)))
        q = a.expand(shape).reshape(-1).expand(n).clone() / \
            b.expand(shape).reshape(-1).expand(n).clone()
        return q.reshape(shape)

    def maximum(self, a, b): return torch.maximum(a, b)
    def minimum(self, a, b): return torch.minimum(a, b)
    def clip(self, a, lo, hi):  # no float16 clamp on CPU; NaN stays NaN
        return torch.where(a < lo, lo, torch.where(a > hi, hi, a))
    def all_finite(self, a): return bool(torch.all(torch.isfinite(a)))
    def zeros_like(self, a): return torch.zeros_like(a)
    def copy(self, a): return a.clone()
    def to_numpy_f64(self, a): return a.to(torch.float64).numpy()

    def bits(self, a):
        if a.dtype == torch.bfloat16:
            return a.contiguous().view(torch.int16).numpy().view(np.uint16)
        return a.numpy()


def scalar_direct(ops, x, dt):
    """A Python float cast to dt: one rounding from the double (torch's own
    double -> bfloat16 goes through float32, so it is rounded here)."""
    if dt == F16 and ops.name == "torch":
        return torch.from_numpy(np.array(np.float16(x)))
    if dt != BF16:
        return ops.scalar(x, dt)
    b = struct.unpack("<Q", struct.pack("<d", float(x)))[0]
    a = b & 0x7fffffffffffffff
    if a > 0x7ff0000000000000:
        return torch.tensor(float("nan"), dtype=torch.bfloat16)
    if a < 0x3810000000000000:  # below 2^-126: multiples of 2^-133
        q = 2.0 ** -133
        v = round(abs(float(x)) / q) * q  # Python's round: ties to even
        v = -v if b >> 63 else v
    else:
        r = (b + (1 << 44) - 1 + ((b >> 45) & 1)) & ~((1 << 45) - 1)
        v = struct.unpack("<d", struct.pack("<Q", r))[0]
    return torch.tensor(v, dtype=torch.float64).to(torch.float32).to(torch.bfloat16)


def cast_direct(ops, a, dt):
    """An array of float64 cast to dt with one rounding (see scalar_direct)."""
    if ops.dtype(a) != F64:
        return ops.cast(a, dt)
    if dt == F16 and ops.name == "torch":
        return torch.from_numpy(a.numpy().astype(np.float16))
    if dt != BF16:
        return ops.cast(a, dt)
    flat = a.reshape(-1).tolist()
    return torch.stack([scalar_direct(ops, x, BF16) for x in flat]).reshape(a.shape) \
        if flat else a.to(torch.bfloat16)


def shard_partials(sq):
    """The library's fixed order of a sum of squares (sq: the squares, each
    in the gradient's dtype): one double per shard, 16 lanes."""
    flat = np.asarray(sq, np.float64).reshape(-1)
    out = []
    for b in range(0, flat.size, SHARD):
        part = flat[b:b + SHARD]
        lane = [0.0] * LANES
        for k in range(part.size):
            lane[k % LANES] = lane[k % LANES] + float(part[k])
        s = 0.0
        for j in range(LANES):
            s = s + lane[j]
        out.append(s)
    return out


def norm_sum(ops, x):
    """ops.sum(ops.square(x)) in x's dtype, the library's order: (that
    scalar, the double sum)."""
    total = 0.0
    for s in shard_partials(ops.to_numpy_f64(x * x)):
        total = total + s
    return scalar_direct(ops, total, ops.dtype(x)), total


class Reference:
    def __init__(self, ops, config, variables, exclude_names=()):
        self.ops = ops
        lso = "inner_optimizer" in config
        inner = config["inner_optimizer"]["config"] if lso else config
        self.lso = lso
        self.initial_scale = config.get("initial_scale", 32768.0)
        self.growth = config.get("dynamic_growth_steps", 2000)
        self.c = dict(learning_rate=0.001, rho=0.95, epsilon=1e-7, weight_decay=None,
                      clipnorm=None, clipvalue=None, global_clipnorm=None, use_ema=False,
                      ema_momentum=0.99, ema_overwrite_frequency=None, loss_scale_factor=None,
                      gradient_accumulation_steps=None)
        self.c.update(inner)
        if lso:
            self.c["loss_scale_factor"] = None
        self.names = [n for n, _ in variables]
        self.vars = [ops.copy(v) for _, v in variables]
        self.dts = [ops.dtype(v) for v in self.vars]
        self.acc_g = [ops.zeros_like(v) for v in self.vars]
        self.acc_d = [ops.zeros_like(v) for v in self.vars]
        self.ema = [ops.copy(v) for v in self.vars] if self.c["use_ema"] else None
        n = self.c["gradient_accumulation_steps"]
        self.accum = [ops.zeros_like(v) for v in self.vars] if n else None
        self.iterations = 0
        self.scale = np.float32(self.initial_scale)
        self.step_counter = 0
        short = [x.split("/")[-1] for x in self.names]
        self.decay = [not any(e in s for e in exclude_names) for s in short]

    def S(self, x, dt):
        return scalar_direct(self.ops, x, dt)

    def public_iterations(self):
        n = self.c["gradient_accumulation_steps"]
        return self.iterations // n if n else self.iterations

    def apply(self, grads):
        ops = self.ops
        if self.lso:
            present = [g for g in grads if g is not None]
            if not all(ops.all_finite(g) for g in present):
                self.step_counter = 0
                self.scale = np.float32(self.scale * np.float32(0.5))
                return
            out = []
            for g in grads:
                if g is None:
                    out.append(None)
                    continue
                dt = widest([ops.dtype(g), F32])  # g / float32 variable
                out.append(ops.div(ops.cast(g, dt), ops.scalar(self.scale, dt)))
            self.inner_apply(out)
            if self.step_counter == self.growth - 1:
                self.step_counter = 0
                self.scale = np.float32(self.scale * np.float32(2.0))
            else:
                self.step_counter += 1
            return
        self.inner_apply(grads)

    def inner_apply(self, grads):
        ops, c = self.ops, self.c
        idx = [i for i, g in enumerate(grads) if g is not None]
        g = {i: grads[i] for i in idx}
        if c["loss_scale_factor"] is not None:
            g = {i: ops.div(x, self.S(c["loss_scale_factor"], ops.dtype(x))) for i, x in g.items()}
        lr32 = learning_rate(c["learning_rate"], self.iterations)
        n = c["gradient_accumulation_steps"]
        if n:
            if (self.iterations + 1) % n != 0:
                for i in idx:
                    dt = widest([ops.dtype(g[i]), self.dts[i]])
                    s = ops.cast(g[i], dt) + ops.cast(self.accum[i], dt)
                    self.accum[i] = ops.cast(s, self.dts[i])  # assign: the variable's dtype
                self.ema_step()
                self.iterations += 1
                return
            out = {}
            for i, x in g.items():
                dt = widest([ops.dtype(x), self.dts[i]])
                out[i] = ops.div(ops.cast(x, dt) + ops.cast(self.accum[i], dt), self.S(n, dt))
            g = out
        g = self.clip(g)
        if c["weight_decay"] is not None:
            for i in idx:
                if self.decay[i]:
                    v, dt = self.vars[i], self.dts[i]
                    self.vars[i] = v - v * self.S(c["weight_decay"], dt) * ops.scalar(lr32, dt)
        for i in idx:
            self.update_step(i, g[i], lr32)
        if n:
            self.accum = [ops.zeros_like(a) for a in self.accum]
        self.ema_step()
        self.iterations += 1

    def clip(self, g):
        ops, c = self.ops, self.c
        if c["clipnorm"] and c["clipnorm"] > 0:
            out = {}
            for i, x in g.items():
                dt = ops.dtype(x)
                l2sum, _ = norm_sum(ops, x)
                l2norm = ops.sqrt(l2sum) if float(l2sum) > 0 else l2sum
                cn = self.S(c["clipnorm"], dt)
                out[i] = ops.div(x * cn, ops.maximum(l2norm, cn))
            return out
        if c["global_clipnorm"] and c["global_clipnorm"] > 0:
            cn = c["global_clipnorm"]
            dts = [ops.dtype(x) for x in g.values()]
            W = widest(dts)
            if W == F32:
                # the library: every float32 shard's partial in order, a
                # 16-bit variable's sum rounded to its dtype, then f32 once
                total = 0.0
                for x in g.values():
                    if ops.dtype(x) == F32:
                        for s in shard_partials(ops.to_numpy_f64(x * x)):
                            total = total + s
                    else:
                        total = total + float(norm_sum(ops, x)[0])
            elif W == F64:
                total = 0.0
                for x in g.values():
                    r, s = norm_sum(ops, x)
                    total = total + (s if ops.dtype(x) == F64 else float(r))
            else:  # one 16-bit dtype: the stack's sum in double, rounded once
                total = 0.0
                for x in g.values():
                    total = total + float(norm_sum(ops, x)[0])
            norm = ops.sqrt(self.S(total, W))
            one = ops.scalar(1.0, W)
            scale = self.S(cn, W) * ops.minimum(ops.div(one, norm), self.S(1.0 / cn, W)) + (norm - norm)
            out = {}
            for i, x in g.items():
                dt = ops.dtype(x)
                if dt == W:
                    out[i] = x * scale
                else:  # promoted, then update_step's cast (one rounding)
                    out[i] = cast_direct(ops, ops.cast(x, W) * scale, self.dts[i])
            return out
        if c["clipvalue"] and c["clipvalue"] > 0:
            out = {}
            for i, x in g.items():
                dt = ops.dtype(x)
                out[i] = ops.clip(x, self.S(-c["clipvalue"], dt), self.S(c["clipvalue"], dt))
            return out
        return g

    def update_step(self, i, grad, lr32):
        ops = self.ops
        v, dt = self.vars[i], self.dts[i]
        lr = ops.scalar(lr32, dt)
        grad = ops.cast(grad, dt)
        rho = self.c["rho"]
        eps = self.S(self.c["epsilon"], dt)
        rho_t, omr = self.S(rho, dt), self.S(1 - rho, dt)
        ag = rho_t * self.acc_g[i] + omr * (grad * grad)
        self.acc_g[i] = ag
        delta = -ops.div(ops.sqrt(self.acc_d[i] + eps) * grad, ops.sqrt(ag + eps))
        self.acc_d[i] = rho_t * self.acc_d[i] + omr * (delta * delta)
        self.vars[i] = v + lr * delta

    def ema_step(self):
        if not self.c["use_ema"]:
            return
        it = self.public_iterations()
        for i, v in enumerate(self.vars):
            dt = self.dts[i]
            m = self.S(float(it != 0), dt) * self.S(self.c["ema_momentum"], dt)
            self.ema[i] = m * self.ema[i] + (self.S(1, dt) - m) * v
        f = self.c["ema_overwrite_frequency"]
        if f and (it + 1) % f == 0:
            self.vars = [self.ops.copy(a) for a in self.ema]

    def finalize(self):
        if self.c["use_ema"]:
            self.vars = [self.ops.copy(a) for a in self.ema]

    def state(self):
        t = list(zip(self.names, self.vars))
        t.append(("optimizer/iterations", np.array(self.iterations, np.int64)))
        t += [("optimizer/accumulated_grad/" + n, a) for n, a in zip(self.names, self.acc_g)]
        t += [("optimizer/accumulated_delta_var/" + n, a) for n, a in zip(self.names, self.acc_d)]
        if self.ema is not None:
            t += [("optimizer/ema/" + n, a) for n, a in zip(self.names, self.ema)]
        if self.accum is not None:
            t += [("optimizer/gradient_accumulator/" + n, a)
                  for n, a in zip(self.names, self.accum)]
        if self.lso:
            t.append(("optimizer/dynamic_scale", np.array(self.scale, np.float32)))
            t.append(("optimizer/step_counter", np.array(self.step_counter, np.int64)))
        return t


def write_safetensors(ops, path, tensors):
    header, blobs, at = {}, [], 0
    for name, a in tensors:
        if isinstance(a, np.ndarray) and a.dtype == np.int64:
            code, b = "I64", a.astype("<i8").tobytes()
        elif isinstance(a, np.ndarray) and a.dtype == np.float32 and a.ndim == 0 \
                and name == "optimizer/dynamic_scale":
            code, b = "F32", a.astype("<f4").tobytes()
        else:
            code = CODE[ops.dtype(a)]
            b = np.ascontiguousarray(ops.bits(a)).tobytes()
        shape = list(a.shape)
        header[name] = {"dtype": code, "shape": shape, "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def run(ops, suite, config, calls=8, dtypes=None, finalize=False, exclude=(), none=None,
        nonfinite=(), big=False, seed=0, grad_scale=1.0):
    """One reference run: (variables, gradients, expected state, dtypes)."""
    rng = np.random.default_rng(seed)
    shapes = list(SHAPES)
    if big:  # several shards: the per-shard order of the sums
        shapes.append(("embed/table", (2, 9000)))
    dtypes = dtypes or [suite] * len(shapes)
    variables = [(n, ops.array(rng.standard_normal(s), dt)) for (n, s), dt in zip(shapes, dtypes)]
    ref = Reference(ops, config, variables, exclude)
    grads_file = []
    for k in range(calls):
        grads = []
        for vi, (n, v) in enumerate(variables):
            if none and (k, vi) in none:
                grads.append(None)
                continue
            x = rng.standard_normal(tuple(v.shape)) * grad_scale * (1 + vi)
            if (k, vi) in nonfinite:
                x.reshape(-1)[0] = np.inf
            g = ops.array(x, dtypes[vi])
            grads.append(g)
            grads_file.append(("grads/%d/%s" % (k, n), g))
        ref.apply(grads)
    if finalize:
        ref.finalize()
    return variables, grads_file, ref.state(), dtypes


def make_case(ops, suite, name, config, **kw):
    variables, grads_file, state, dtypes = run(ops, suite, config, **kw)
    d = os.path.join(HERE, "f16" if suite == F16 else "bf16", name)
    os.makedirs(d, exist_ok=True)
    write_safetensors(ops, os.path.join(d, "params.safetensors"), variables)
    write_safetensors(ops, os.path.join(d, "grads.safetensors"), grads_file)
    write_safetensors(ops, os.path.join(d, "expected.safetensors"), state)
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    exclude = kw.get("exclude", ())
    case = {"ranks": 1, "calls": kw.get("calls", 8), "finalize": kw.get("finalize", False),
            "exclude_from_weight_decay": list(exclude) or None,
            "variables": [n for n, _ in variables], "dtypes": list(dtypes),
            "reference": ops.name,
            # bit for bit: the reference follows the library's fixed sum order
            "tolerance": {"rtol": 0, "atol": 0}}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)
    return state


def same_bits(a, b, ops_a, ops_b, case):
    """Two states hold the same values bit for bit (NaN: NaN)."""
    for (na, x), (nb, y) in zip(a, b):
        assert na == nb
        if isinstance(x, np.ndarray):
            assert np.array_equal(x, np.asarray(y), equal_nan=x.dtype.kind == "f"), (case, na)
            continue
        fx = ops_a.to_numpy_f64(x).reshape(-1)
        fy = ops_b.to_numpy_f64(y).reshape(-1)
        nan = np.isnan(fx)
        assert np.array_equal(nan, np.isnan(fy)), (case, na)
        bx = np.asarray(ops_a.bits(x)).reshape(-1).view(np.uint16)[~nan]
        by = np.asarray(ops_b.bits(y)).reshape(-1).view(np.uint16)[~nan]
        assert np.array_equal(bx, by), (case, na)


def cases(suite):
    exp = {"class_name": "ExponentialDecay",
           "config": {"initial_learning_rate": 1.0, "decay_steps": 5, "decay_rate": 0.9,
                      "staircase": False}}
    piece = {"class_name": "PiecewiseConstantDecay",
             "config": {"boundaries": [2, 5], "values": [1.0, 0.5, 0.1]}}
    mixed = [suite, F32, suite, F64]
    return [
        ("defaults", {}, {}),
        ("lr_one", {"learning_rate": 1.0}, {}),
        ("rho_eps", {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-3}, {}),
        ("exp_decay", {"learning_rate": exp}, {}),
        ("piecewise", {"learning_rate": piece}, {}),
        ("weight_decay", {"learning_rate": 1.0, "weight_decay": 0.05},
         {"exclude": ("bias", "gamma")}),
        ("clipnorm", {"learning_rate": 1.0, "clipnorm": 2.0}, {"big": True}),
        ("clipnorm_overflow", {"learning_rate": 1.0, "clipnorm": 2.0}, {"grad_scale": 300.0}),
        ("clipvalue", {"learning_rate": 1.0, "clipvalue": 0.5}, {}),
        # (gradients small enough that float16's sum of squares stays finite)
        ("global_clipnorm", {"learning_rate": 1.0, "global_clipnorm": 3.0},
         {"big": True, "grad_scale": 0.2}),
        ("global_clipnorm_mixed", {"learning_rate": 1.0, "global_clipnorm": 3.0},
         {"dtypes": mixed + [suite], "big": True, "none": {(3, 1), (3, 3), (6, 0)},
          "grad_scale": 0.2}),
        ("global_clipnorm_f32", {"learning_rate": 1.0, "global_clipnorm": 3.0},
         {"dtypes": [suite, F32, suite, suite]}),
        ("ema", {"learning_rate": 1.0, "use_ema": True, "ema_momentum": 0.9,
                 "ema_overwrite_frequency": 4}, {"none": {(2, 1)}}),
        ("ema_finalize", {"learning_rate": 1.0, "use_ema": True}, {"finalize": True}),
        ("accumulation", {"learning_rate": 1.0, "gradient_accumulation_steps": 3},
         {"calls": 11, "none": {(4, 2)}}),
        ("loss_scale_factor", {"learning_rate": 1.0, "loss_scale_factor": 128.0},
         {"grad_scale": 128.0}),
        ("loss_scale_optimizer",
         {"name": "loss_scale_optimizer",
          "inner_optimizer": {"class_name": "Adadelta", "config": {"learning_rate": 1.0}},
          "initial_scale": 1024.0, "dynamic_growth_steps": 3},
         {"calls": 12, "grad_scale": 1024.0, "nonfinite": {(4, 2), (9, 0)}, "dtypes": mixed}),
        ("loss_scale_optimizer_clip_accum",
         {"name": "loss_scale_optimizer",
          "inner_optimizer": {"class_name": "Adadelta",
                              "config": {"learning_rate": 1.0, "clipnorm": 1.0,
                                         "gradient_accumulation_steps": 2}},
          "initial_scale": 64.0, "dynamic_growth_steps": 4},
         {"calls": 10, "grad_scale": 64.0, "nonfinite": {(3, 1)}}),
        ("loss_scale_optimizer_global",
         {"name": "loss_scale_optimizer",
          "inner_optimizer": {"class_name": "Adadelta",
                              "config": {"learning_rate": 1.0, "global_clipnorm": 2.0}},
          "initial_scale": 256.0},
         {"calls": 6, "grad_scale": 256.0}),
        ("sparse_none", {"learning_rate": 1.0}, {"none": {(0, 0), (1, 2), (1, 3), (5, 1)}}),
        ("mixed", {"learning_rate": 1.0, "clipnorm": 1.5}, {"dtypes": mixed}),
        ("kitchen_sink",
         {"learning_rate": exp, "weight_decay": 0.01, "global_clipnorm": 1.0,
          "use_ema": True, "ema_momentum": 0.95, "ema_overwrite_frequency": 5,
          "gradient_accumulation_steps": 2},
         {"calls": 12, "dtypes": mixed, "exclude": ("gamma", "bias"),
          "none": {(5, 1), (6, 3)}}),
    ]


def main():
    npo, to = NumpyOps(), TorchOps()
    for name, config, kw in cases(F16):
        s1 = make_case(npo, F16, name, config, **kw)
        if all(d in (F16, ) for d in kw.get("dtypes", [F16])):
            # torch's float16 gives the same bits (both round every op)
            same_bits(s1, run(to, F16, config, **kw)[2], npo, to, name)
    for name, config, kw in cases(BF16):
        make_case(to, BF16, name, config, **kw)
    mixed = {"dtypes": [BF16, F16, BF16, F16]}
    make_case(to, BF16, "global_clipnorm_f16_bf16",
              {"learning_rate": 1.0, "global_clipnorm": 2.0}, **mixed)
    make_case(to, BF16, "mixed_f16_bf16", {"learning_rate": 1.0, "clipnorm": 1.0}, **mixed)


if __name__ == "__main__":
    main()
