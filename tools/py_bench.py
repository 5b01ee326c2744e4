#!/usr/bin/python3
"""py_bench.py - the Python front end's step against the C library's and
PyTorch's CPU Adadelta, on the same sizes and threads, in one process.

    /usr/bin/python3 tools/py_bench.py [--elements N] [--threads P]
        [--tensors T] [--steps S] [--rounds R]

Prints one JSON line per library ("library", "elements", "tensors",
"threads", "seconds_per_step": the median over all timed steps):

    adadelta-torch  adadelta.torch.Adadelta(...).step() on torch parameters
    adadelta-c      the C library alone: adadelta_apply through ctypes with a
                    preallocated gradient-pointer array (one foreign call)
    torch           torch.optim.Adadelta(foreach=False).step()
    torch-foreach   torch.optim.Adadelta(foreach=True).step()

All four get T float32 tensors of N elements with the same initial values
and fixed gradients, lr=1.0, rho=0.95, epsilon=1e-7, P threads
(torch.set_num_threads and the optimizer's threads). The libraries are timed
in R rounds of S steps each, alternating their order (ABCD, DCBA, ...) with
one untimed step at the start of each, so a disturbance hits all alike.
The adadelta-torch line adds "vs_c" (its time / the C step's),
"fixed_cost_us" (the difference per call, in microseconds) and
"vs_best_torch" (the faster torch time / its time). Run from a build tree
(it finds python/ and the libraries there) or with the package installed.
"""

import argparse
import ctypes
import json
import os
import statistics
import sys
import time


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", type=int, default=1 << 20, help="elements per tensor")
    p.add_argument("--tensors", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="0: torch's default thread count")
    p.add_argument("--steps", type=int, default=20, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=6)
    a = p.parse_args(argv)
    if a.elements < 1 or a.tensors < 1 or a.steps < 1 or a.rounds < 1:
        p.error("--elements, --tensors, --steps and --rounds must be >= 1")
    return a


def main(argv):
    a = parse_args(argv)
    here = os.path.dirname(os.path.abspath(__file__))
    src = os.path.join(os.path.dirname(here), "python")
    try:
        import torch
    except ImportError:
        print("py_bench.py: cannot import torch with %s (Debian: python3-torch, run with "
              "/usr/bin/python3)" % sys.executable, file=sys.stderr)
        return 1
    try:
        import adadelta.torch
    except ImportError:
        sys.path.insert(0, src)
        import adadelta.torch
    from adadelta import _capi

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    n, t = a.elements, a.tensors

    def values(seed, lo, hi):
        g = torch.Generator().manual_seed(seed)
        return torch.empty(n, dtype=torch.float32).uniform_(lo, hi, generator=g)

    init = [values(2 * k, -1.0, 1.0) for k in range(t)]
    grads = []
    for k in range(t):
        g = values(2 * k + 1, 0.001, 0.01)
        g[1::2].neg_()
        grads.append(g)

    def torch_params():
        ps = [torch.nn.Parameter(x.clone()) for x in init]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        return ps

    steppers = {}

    # adadelta-torch: the front end
    ps = torch_params()
    front = adadelta.torch.Adadelta(ps, learning_rate=1.0, rho=0.95, epsilon=1e-7)
    front.threads = threads
    steppers["adadelta-torch"] = front.step

    # adadelta-c: the C library alone, one ctypes call per step
    lib = _capi.lib
    handle = ctypes.c_void_p()
    _capi.check(lib.adadelta_create_from_json(
        b'{"learning_rate": 1.0, "rho": 0.95, "epsilon": 1e-07}', ctypes.byref(handle)))
    c_vars = [x.clone() for x in init]
    c_grads = [g.clone() for g in grads]
    for k, v in enumerate(c_vars):
        shape = (ctypes.c_int64 * 1)(n)
        _capi.check(lib.adadelta_add_variable(handle, b"v%d" % k, _capi.F32,
                                              ctypes.c_void_p(v.data_ptr()), 1, shape))
    _capi.check(lib.adadelta_set_threads(handle, threads))
    _capi.check(lib.adadelta_build(handle))
    ptrs = (ctypes.c_void_p * t)(*[g.data_ptr() for g in c_grads])
    apply_fn, h, addr = lib.adadelta_apply, handle.value, ctypes.addressof(ptrs)

    def c_step():
        if apply_fn(h, addr):
            raise RuntimeError(_capi.last_error())

    steppers["adadelta-c"] = c_step

    # PyTorch, both implementations
    for name, foreach in (("torch", False), ("torch-foreach", True)):
        tp = torch_params()
        opt = torch.optim.Adadelta(tp, lr=1.0, rho=0.95, eps=1e-7, foreach=foreach)
        steppers[name] = opt.step

    samples = {k: [] for k in steppers}
    order = list(steppers)
    clock = time.perf_counter
    with torch.no_grad():
        for r in range(a.rounds):
            for name in (order if r % 2 == 0 else order[::-1]):
                step = steppers[name]
                step()  # untimed
                out = samples[name]
                for _ in range(a.steps):
                    t0 = clock()
                    step()
                    out.append(clock() - t0)

    med = {k: statistics.median(v) for k, v in samples.items()}
    best_torch = min(med["torch"], med["torch-foreach"])
    for name in ("adadelta-torch", "adadelta-c", "torch", "torch-foreach"):
        line = {"library": name, "elements": n, "tensors": t, "threads": threads,
                "seconds_per_step": med[name], "steps": len(samples[name])}
        if name == "adadelta-torch":
            line.update(vs_c=round(med[name] / med["adadelta-c"], 3),
                        fixed_cost_us=round(1e6 * (med[name] - med["adadelta-c"]), 2),
                        vs_best_torch=round(best_torch / med[name], 2))
        print(json.dumps(line), flush=True)
    lib.adadelta_destroy(h)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
