#!/usr/bin/env python3
"""Writes tests/data/f64/<case>/: float64 (and mixed float32/float64) replay
cases whose expected states come from numpy, following Keras 3's own code
op by op (keras/src/optimizers/adadelta.py update_step, base_optimizer.py
apply / _backend_apply_gradients / _clip_by_norm / clip_by_global_norm /
_apply_weight_decay / _update_model_variables_moving_average,
loss_scale_optimizer.py), each op in the variable's dtype as Keras's numpy
backend computes it. It does not use the library.

Run from the repository root:  /usr/bin/python3 tests/data/make_f64_vectors.py
The output is deterministic (fixed seeds); the cases are committed.

Where Keras is not one fixed computation this follows the library's
documented choice (README, "float64"): a sum of squares is added in double,
per shard of 16384 elements in 16 lanes (element k of a shard into lane
k % 16, in order), the lanes then in order, the shards of a variable in
order; a float32 variable's sum is rounded to float32 once. Everything else
is Keras's order exactly, so the test compares bit for bit.
"""
import ctypes
import ctypes.util
import json
import os
import struct

import numpy as np

F32, F64 = np.float32, np.float64
SHARD = 16384
LANES = 16
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "f64")


# ------------------------------------------------------------ safetensors

def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, numpy array); written in that order."""
    codes = {np.dtype(F32): "F32", np.dtype(F64): "F64", np.dtype(np.int64): "I64"}
    header, blobs, at = {}, [], 0
    for name, a in tensors:
        a = np.ascontiguousarray(a)
        b = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": codes[a.dtype], "shape": list(a.shape),
                        "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


# ------------------------------------------------------------ the norms

def shard_partials(g):
    """The library's fixed order of a sum of squares: one double per shard."""
    flat = g.reshape(-1)
    out = []
    for b in range(0, flat.size, SHARD):
        sq = (flat[b:b + SHARD] * flat[b:b + SHARD]).astype(F64)  # g*g in g's dtype
        lane = [0.0] * LANES
        for k in range(sq.size):
            lane[k % LANES] = lane[k % LANES] + float(sq[k])
        s = 0.0
        for j in range(LANES):
            s = s + lane[j]
        out.append(s)
    return out


def sum_squares(g):
    """A variable's sum: its shards' partials added in order."""
    total = 0.0
    for s in shard_partials(g):
        total = total + s
    return total


def variable_norm_sum(g):
    """ops.sum(ops.square(g)) in g's dtype."""
    s = sum_squares(g)
    return F64(s) if g.dtype == F64 else F32(s)


# ------------------------------------------------------------ schedules (float32)

# A schedule is float32 arithmetic (tested by the float32 suites); its
# power is the C library's powf: numpy's own float32 power differs from
# libm's in the last bit at some arguments (0.9 ** 0.4 here).
_libm = ctypes.CDLL(ctypes.util.find_library("m"))
_libm.powf.restype = ctypes.c_float
_libm.powf.argtypes = [ctypes.c_float, ctypes.c_float]


def powf(x, y):
    return F32(_libm.powf(float(x), float(y)))


def learning_rate(lr, step):
    if not isinstance(lr, dict):
        return F32(lr)
    c, kind = lr["config"], lr["class_name"]
    s = F32(step)
    if kind == "ExponentialDecay":
        p = s / F32(c["decay_steps"])
        if c.get("staircase"):
            p = np.floor(p)
        return F32(c["initial_learning_rate"]) * powf(F32(c["decay_rate"]), p)
    if kind == "InverseTimeDecay":
        p = s / F32(c["decay_steps"])
        if c.get("staircase"):
            p = np.floor(p)
        return F32(c["initial_learning_rate"]) / (F32(1) + F32(c["decay_rate"]) * p)
    if kind == "PiecewiseConstantDecay":
        b, v = c["boundaries"], c["values"]
        for i, x in enumerate(b):
            if s <= F32(x):
                return F32(v[i])
        return F32(v[-1])
    raise ValueError(kind)


# ------------------------------------------------------------ the optimizer

class Reference:
    """One Keras Adadelta (optionally inside a LossScaleOptimizer) over numpy
    arrays of float32 or float64."""

    def __init__(self, config, variables, exclude_names=()):
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
            self.c["loss_scale_factor"] = None  # Keras 3.10: the inner one is cleared
        self.names = [n for n, _ in variables]
        self.vars = [v.copy() for _, v in variables]
        self.acc_g = [np.zeros_like(v) for v in self.vars]
        self.acc_d = [np.zeros_like(v) for v in self.vars]
        self.ema = [v.copy() for v in self.vars] if self.c["use_ema"] else None
        n = self.c["gradient_accumulation_steps"]
        self.accum = [np.zeros_like(v) for v in self.vars] if n else None
        self.iterations = 0
        self.scale = F32(self.initial_scale)
        self.step_counter = 0
        short = [x.split("/")[-1] for x in self.names]
        self.decay = [not any(e in s for e in exclude_names) for s in short]

    def public_iterations(self):
        n = self.c["gradient_accumulation_steps"]
        return self.iterations // n if n else self.iterations

    # LossScaleOptimizer.apply
    def apply(self, grads):
        if self.lso:
            present = [g for g in grads if g is not None]
            if not all(np.all(np.isfinite(g)) for g in present):
                self.step_counter = 0
                self.scale = F32(self.scale * F32(0.5))
                return
            # ops.divide(g, dynamic_scale): a float64 g is promoted, so / f64(scale)
            grads = [None if g is None else g / g.dtype.type(self.scale) for g in grads]
            self.inner_apply(grads)
            if self.step_counter == self.growth - 1:
                self.step_counter = 0
                self.scale = F32(self.scale * F32(2.0))
            else:
                self.step_counter += 1
            return
        self.inner_apply(grads)

    # BaseOptimizer.apply
    def inner_apply(self, grads):
        c = self.c
        idx = [i for i, g in enumerate(grads) if g is not None]
        g = {i: grads[i] for i in idx}
        if c["loss_scale_factor"] is not None:
            g = {i: x / x.dtype.type(c["loss_scale_factor"]) for i, x in g.items()}
        lr32 = learning_rate(c["learning_rate"], self.iterations)
        n = c["gradient_accumulation_steps"]
        if n:
            if (self.iterations + 1) % n != 0:
                for i in idx:
                    self.accum[i] = g[i] + self.accum[i]
                self.ema_step()
                self.iterations += 1
                return
            g = {i: (x + self.accum[i]) / x.dtype.type(n) for i, x in g.items()}
        g = self.clip(g)
        if c["weight_decay"] is not None:
            for i in idx:
                if self.decay[i]:
                    v = self.vars[i]
                    T = v.dtype.type
                    self.vars[i] = v - v * T(c["weight_decay"]) * T(lr32)
        for i in idx:
            self.update_step(i, g[i], lr32)
        if n:
            self.accum = [np.zeros_like(a) for a in self.accum]
        self.ema_step()
        self.iterations += 1

    def clip(self, g):
        c = self.c
        if c["clipnorm"] and c["clipnorm"] > 0:
            out = {}
            for i, x in g.items():
                T = x.dtype.type
                l2sum = variable_norm_sum(x)
                l2norm = np.sqrt(l2sum) if l2sum > 0 else l2sum
                out[i] = (x * T(c["clipnorm"])) / np.maximum(l2norm, T(c["clipnorm"]))
            return out
        if c["global_clipnorm"] and c["global_clipnorm"] > 0:
            cn = c["global_clipnorm"]
            sums = [variable_norm_sum(x) for x in g.values()]
            if any(x.dtype == F64 for x in g.values()):
                # ops.stack of float32 and float64 sums is float64
                total = 0.0
                for s in sums:
                    total = total + float(s)
                norm = np.sqrt(F64(total))
                scale = F64(cn) * np.minimum(F64(1.0) / norm, F64(1.0 / cn)) + (norm - norm)
                # v * scale: a float32 v is promoted, then update_step casts it back
                return {i: (x.astype(F64) * scale).astype(x.dtype) for i, x in g.items()}
            # all float32: the library adds the squares in double, rounds once
            total = 0.0  # every shard's partial in order, across the variables
            for x in g.values():
                for s in shard_partials(x):
                    total = total + s
            norm = np.sqrt(F32(total))
            scale = F32(cn) * np.minimum(F32(1.0) / norm, F32(1.0 / cn)) + (norm - norm)
            return {i: x * scale for i, x in g.items()}
        if c["clipvalue"] and c["clipvalue"] > 0:
            return {i: np.clip(x, x.dtype.type(-c["clipvalue"]), x.dtype.type(c["clipvalue"]))
                    for i, x in g.items()}
        return g

    # Adadelta.update_step, in the variable's dtype
    def update_step(self, i, grad, lr32):
        v = self.vars[i]
        T = v.dtype.type
        lr = T(lr32)
        rho = self.c["rho"]
        eps = T(self.c["epsilon"])
        rho_t, omr = T(rho), T(1 - rho)  # 1 - rho: Python floats, then cast
        ag = rho_t * self.acc_g[i] + omr * (grad * grad)
        self.acc_g[i] = ag
        delta = -((np.sqrt(self.acc_d[i] + eps) * grad) / np.sqrt(ag + eps))
        self.acc_d[i] = rho_t * self.acc_d[i] + omr * (delta * delta)
        self.vars[i] = v + lr * delta

    def ema_step(self):
        if not self.c["use_ema"]:
            return
        it = self.public_iterations()
        for i, v in enumerate(self.vars):
            T = v.dtype.type
            m = T(it != 0) * T(self.c["ema_momentum"])
            self.ema[i] = m * self.ema[i] + (T(1) - m) * v
        f = self.c["ema_overwrite_frequency"]
        if f and (it + 1) % f == 0:
            self.vars = [a.copy() for a in self.ema]

    def finalize(self):
        if self.c["use_ema"]:
            self.vars = [a.copy() for a in self.ema]

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
            t.append(("optimizer/dynamic_scale", np.array(self.scale, F32)))
            t.append(("optimizer/step_counter", np.array(self.step_counter, np.int64)))
        return t


# ------------------------------------------------------------ the cases

SHAPES = [("dense/kernel", (7, 5)), ("dense/bias", (5,)), ("conv/kernel", (3, 3, 2, 4)),
          ("norm/gamma", ())]


def make_case(name, config, calls=10, dtypes=None, finalize=False, exclude=(), none=None,
              nonfinite=(), big=False, seed=0, grad_scale=1.0):
    rng = np.random.default_rng(seed)
    shapes = list(SHAPES)
    if big:  # several shards: the per-shard order of the sums
        shapes.append(("embed/table", (2, 9000)))
    dtypes = dtypes or [F64] * len(shapes)
    variables = [(n, rng.standard_normal(s).astype(dt)) for (n, s), dt in zip(shapes, dtypes)]
    ref = Reference(config, variables, exclude)
    grads_file = []
    for k in range(calls):
        grads = []
        for vi, (n, v) in enumerate(variables):
            if none and (k, vi) in none:
                grads.append(None)
                continue
            g = (rng.standard_normal(v.shape) * grad_scale * (1 + vi)).astype(v.dtype)
            if (k, vi) in nonfinite:
                g.reshape(-1)[0] = np.inf
            grads.append(g)
            grads_file.append(("grads/%d/%s" % (k, n), g))
        ref.apply(grads)
    if finalize:
        ref.finalize()
    d = os.path.join(OUT, name)
    os.makedirs(d, exist_ok=True)
    write_safetensors(os.path.join(d, "params.safetensors"), variables)
    write_safetensors(os.path.join(d, "grads.safetensors"), grads_file)
    write_safetensors(os.path.join(d, "expected.safetensors"), ref.state())
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(config, f, indent=1)
    case = {"ranks": 1, "calls": calls, "finalize": finalize,
            "exclude_from_weight_decay": list(exclude) or None,
            "variables": [n for n, _ in variables],
            "dtypes": [np.dtype(v.dtype).name for _, v in variables],
            # bit for bit: the reference follows the library's fixed sum order
            "tolerance": {"rtol": 0, "atol": 0}}
    with open(os.path.join(d, "case.json"), "w") as f:
        json.dump(case, f, indent=1)


MIXED = [F32, F64, F32, F64]


def main():
    exp = {"class_name": "ExponentialDecay",
           "config": {"initial_learning_rate": 1.0, "decay_steps": 5, "decay_rate": 0.9,
                      "staircase": False}}
    inv = {"class_name": "InverseTimeDecay",
           "config": {"initial_learning_rate": 0.7, "decay_steps": 3, "decay_rate": 0.5,
                      "staircase": True}}
    piece = {"class_name": "PiecewiseConstantDecay",
             "config": {"boundaries": [2, 5], "values": [1.0, 0.5, 0.1]}}
    make_case("defaults", {})
    make_case("lr_one", {"learning_rate": 1.0})
    make_case("rho_eps", {"learning_rate": 0.5, "rho": 0.9, "epsilon": 1e-6})
    make_case("exp_decay", {"learning_rate": exp})
    make_case("inv_time", {"learning_rate": inv})
    make_case("piecewise", {"learning_rate": piece})
    make_case("weight_decay", {"learning_rate": 1.0, "weight_decay": 0.05},
              exclude=("bias", "gamma"))
    make_case("clipnorm", {"learning_rate": 1.0, "clipnorm": 2.0}, big=True)
    make_case("clipvalue", {"learning_rate": 1.0, "clipvalue": 0.5})
    make_case("global_clipnorm", {"learning_rate": 1.0, "global_clipnorm": 3.0}, big=True)
    make_case("global_clipnorm_mixed", {"learning_rate": 1.0, "global_clipnorm": 3.0},
              dtypes=MIXED + [F32], big=True, none={(3, 1), (3, 3), (6, 0)})
    make_case("ema", {"learning_rate": 1.0, "use_ema": True, "ema_momentum": 0.9,
                      "ema_overwrite_frequency": 4}, none={(2, 1)})
    make_case("ema_finalize", {"learning_rate": 1.0, "use_ema": True}, finalize=True)
    make_case("accumulation", {"learning_rate": 1.0, "gradient_accumulation_steps": 3},
              calls=11, none={(4, 2)})
    make_case("loss_scale_factor", {"learning_rate": 1.0, "loss_scale_factor": 128.0},
              grad_scale=128.0)
    make_case("loss_scale_optimizer",
              {"name": "loss_scale_optimizer",
               "inner_optimizer": {"class_name": "Adadelta", "config": {"learning_rate": 1.0}},
               "initial_scale": 1024.0, "dynamic_growth_steps": 3},
              calls=12, grad_scale=1024.0, nonfinite={(4, 2), (9, 0)}, dtypes=MIXED)
    make_case("sparse_none", {"learning_rate": 1.0}, none={(0, 0), (1, 2), (1, 3), (5, 1)})
    make_case("mixed", {"learning_rate": 1.0, "clipnorm": 1.5}, dtypes=MIXED)
    make_case("kitchen_sink",
              {"learning_rate": exp, "weight_decay": 0.01, "global_clipnorm": 1.0,
               "use_ema": True, "ema_momentum": 0.95, "ema_overwrite_frequency": 5,
               "gradient_accumulation_steps": 2},
              calls=12, dtypes=MIXED, exclude=("gamma", "bias"), none={(5, 1), (6, 3)})


if __name__ == "__main__":
    main()
