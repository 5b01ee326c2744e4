#!/usr/bin/python3
"""torch_bench.py - PyTorch's CPU Adadelta on the sizes adadelta-bench uses.

    /usr/bin/python3 tools/torch_bench.py --elements N --tensors T --threads P \
        --steps S [--foreach 0|1] [--features plain|weight_decay|
        global_clipnorm|ema|all] [--dtype f32|f64|f16|bf16] [--warmup W] [--limit Z]

Times S calls of the optimizer step (after W warm-up calls) on T float32
(or --dtype) parameters of N elements with fixed gradients, and prints one JSON line with
the keys adadelta-bench prints. torch.optim.Adadelta(lr=1.0, rho=0.95,
eps=1e-7); the features map to PyTorch as follows, inside the timed step:

    weight_decay     Adadelta(weight_decay=0.01)  (PyTorch's L2 form)
    global_clipnorm  torch.nn.utils.clip_grad_norm_(params, 1.0) before step
    ema              an exponential moving average of the parameters
                     (momentum 0.99) after step, with _foreach ops when
                     --foreach 1 and per-tensor ops otherwise
    all              the three together

PyTorch has no memory-limit kernel here: limit_elements_per_second and
fraction_of_limit are null unless --limit gives the limit (elements/s, e.g.
from adadelta-bench on the same sizes).
"""

import argparse
import json
import math
import statistics
import sys
import time

FEATURES = ("plain", "weight_decay", "global_clipnorm", "ema", "all")
BYTES = {"plain": 28, "weight_decay": 28, "global_clipnorm": 32, "ema": 36,
         "all": 40}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--elements", type=int, default=1 << 20,
                   help="elements per tensor")
    p.add_argument("--tensors", type=int, default=1)
    p.add_argument("--threads", type=int, default=0,
                   help="torch.set_num_threads (0: leave PyTorch's default)")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--foreach", type=int, choices=(0, 1), default=1)
    p.add_argument("--features", choices=FEATURES, default="plain")
    p.add_argument("--dtype", choices=("f32", "f64", "f16", "bf16"), default="f32")
    p.add_argument("--limit", type=float, default=None,
                   help="memory limit in elements/s for fraction_of_limit")
    a = p.parse_args(argv)
    if a.elements < 1 or a.tensors < 1 or a.steps < 1 or a.warmup < 0:
        p.error("--elements, --tensors and --steps must be >= 1")
    return a


def make_values(n, seed, lo, hi, torch, dtype):
    g = torch.Generator().manual_seed(seed)
    return torch.empty(n, dtype=torch.float32).uniform_(lo, hi, generator=g).to(dtype)


def main(argv):
    a = parse_args(argv)
    try:
        import torch
    except ImportError:
        print("torch_bench.py: cannot import torch with %s (Debian: "
              "apt-get install python3-torch, run with /usr/bin/python3)"
              % sys.executable, file=sys.stderr)
        return 1

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    threads = torch.get_num_threads()
    feat = a.features
    wd = 0.01 if feat in ("weight_decay", "all") else 0.0
    clip = feat in ("global_clipnorm", "all")
    ema = feat in ("ema", "all")
    foreach = bool(a.foreach)

    dtype = {"f32": torch.float32, "f64": torch.float64, "f16": torch.float16,
             "bf16": torch.bfloat16}[a.dtype]
    params = []
    for k in range(a.tensors):
        p = torch.nn.Parameter(make_values(a.elements, 2 * k, -1.0, 1.0, torch, dtype))
        g = make_values(a.elements, 2 * k + 1, 0.001, 0.01, torch, dtype)
        g[1::2].neg_()
        p.grad = g
        params.append(p)
    opt = torch.optim.Adadelta(params, lr=1.0, rho=0.95, eps=1e-7,
                               weight_decay=wd, foreach=foreach)
    averages = [p.detach().clone() for p in params] if ema else []
    plist = [p.detach() for p in params]

    def step():
        if clip:
            torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if ema:
            if foreach:
                torch._foreach_mul_(averages, 0.99)
                torch._foreach_add_(averages, plist, alpha=0.01)
            else:
                for e, p in zip(averages, plist):
                    e.mul_(0.99).add_(p, alpha=0.01)

    samples = []
    with torch.no_grad():
        for _ in range(a.warmup):
            step()
        for _ in range(a.steps):
            t0 = time.perf_counter()
            step()
            samples.append(time.perf_counter() - t0)

    if not all(math.isfinite(float(p.detach()[0])) for p in params[:1]):
        print("torch_bench: warning: non-finite parameter", file=sys.stderr)

    t = statistics.median(samples)
    total = a.elements * a.tensors
    eps = total / t
    out = {
        "library": "torch-foreach" if foreach else "torch",
        "elements": a.elements,
        "tensors": a.tensors,
        "threads": threads,
        "features": feat,
        "steps": a.steps,
        "seconds_per_step": float("%.6g" % t),
        "elements_per_second": float("%.6g" % eps),
        "limit_seconds_per_step": (float("%.6g" % (total / a.limit))
                                   if a.limit else None),
        "limit_elements_per_second": a.limit,
        "fraction_of_limit": (round(eps / a.limit, 4) if a.limit else None),
        "bytes_per_element": BYTES[feat] * {"f32": 4, "f64": 8, "f16": 2, "bf16": 2}[a.dtype] // 4,
        "dtype": a.dtype,
        "version": torch.__version__,
    }
    print(json.dumps(out, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
