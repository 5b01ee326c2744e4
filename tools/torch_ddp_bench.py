#!/usr/bin/python3
"""torch_ddp_bench.py - the PyTorch peer of adadelta-mpi-bench (gloo, CPU).

    /usr/bin/python3 tools/torch_ddp_bench.py [--min-log2 A] [--max-log2 B]
        [--elements N] [--tensors T] [--threads P] [--steps S] [--warmup W]
        [--rounds R] [--foreach 0|1] [--world-size R] [--bind none|core|auto]
        [--check]

Starts --world-size processes itself (torch.multiprocessing, gloo on
127.0.0.1 and a free port), or, when RANK and WORLD_SIZE are set in the
environment (torchrun), joins that group instead (env://). Each rank holds
T float32 parameters of N elements (the same values on every rank) and a
fixed gradient of its own, and times what a data-parallel training step
costs beyond computing the gradients: summing the gradients over the ranks,
dividing by the world size and torch.optim.Adadelta(lr=1.0, rho=0.95,
eps=1e-7, foreach=F).step(). Two ways of doing the reduction are timed:

  ddp    DistributedDataParallel's own path: a module whose parameters are
         an nn.ParameterList is wrapped in DDP (default settings: 25 MiB
         buckets, gradient_as_bucket_view=False); the forward pass (not
         timed) computes loss = sum_k (p_k * g_k).sum() with this rank's
         gradients g_k as plain inputs, so dL/dp_k = g_k exactly; timed are
         loss.backward() (which in DDP copies each gradient into its bucket
         divided by the world size, allreduces the buckets on gloo's worker
         thread while the backward goes on, waits and copies the result back
         into p.grad) and the optimizer step. zero_grad(set_to_none=True)
         comes before the forward, as in a training loop.
           ddp_backward_step_seconds  that backward + step
           backward_seconds           the same loss.backward() under
                                      ddp.no_sync() (no communication): the
                                      cost of producing the gradients
           ddp_step_seconds           the difference of the two
  flat   the gradients are views into one flat buffer (filled with this
         rank's gradients before the timer starts); timed are
         dist.all_reduce(flat), flat.div_(world_size) and the step.
           flat_step_seconds

step_seconds is the faster of ddp_step_seconds and flat_step_seconds
("path" says which). In the same run, alternating with the steps:

  allreduce_seconds  a bare dist.all_reduce (gloo, float32 sum) of the same
                     T*N floats in one buffer
  update_seconds     the Adadelta step alone (no communication), timed on
                     all ranks at once like adadelta-mpi-bench's update

Timing: each sample is taken between a dist.barrier() and the end of the
operation on that rank; a sample counts with the slowest rank's time (the
per-sample times are all_reduce'd with MAX at the end) and the median over
S samples is printed. After W warm-up calls of each measurement, the S
samples of each are taken in R rounds (default 5) that go through all the
measurements in ABBA order, with one untimed call at the start of each
round, because this VM's memory and loopback bandwidth drift over minutes:
a slow phase then hits all measurements alike. With --foreach unset both
foreach=False and True are measured (on the same optimizers, switching the
param group's flag) and the faster step is kept; "by_foreach" holds both.

--check first runs, for every size, two steps of each path with fresh
parameters and compares the parameters after each step, on every rank, to
one single-process torch.optim.Adadelta(foreach=False) applied to the mean
of all ranks' gradients (regenerated locally from their seeds); it fails
(exit status 1) if any difference exceeds 1e-6, and the JSON line gets
"check_max_abs_diff".

rank 0 prints one JSON line per size. Threads: --threads P is
torch.set_num_threads(P) in every rank (OMP_NUM_THREADS=P is also set for
the spawned ranks); gloo adds its own threads in every process (two worker
threads per process group, which run DDP's asynchronous bucket allreduce,
and the TCP event loop), so a rank is more than P threads. By default
(--bind none, as torchrun does) the ranks are not pinned; --bind core pins
each rank, gloo's threads included, to its own P cores as mpirun binds
ranks to cores (--bind auto: only when world_size * P <= available cores).
On this 2-vCPU VM pinning made small gloo allreduces 2-3x slower (a rank
then shares its core with gloo's threads for every wake-up) and large steps
faster in some runs and slower in others, hence the default.
"""

import argparse
import gc
import json
import os
import socket
import statistics
import sys
import time

LR, RHO, EPS = 1.0, 0.95, 1e-7
TOLERANCE = 1e-6


def parse_args(argv):
    p = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="See the module docstring (top of this file) for what is "
               "timed and how.")
    p.add_argument("--min-log2", type=int, default=10,
                   help="smallest size: N = 2^A elements per tensor (10)")
    p.add_argument("--max-log2", type=int, default=25,
                   help="largest size: N = 2^B elements per tensor (25)")
    p.add_argument("--elements", type=int, default=None,
                   help="one size N instead of the 2^A..2^B range")
    p.add_argument("--tensors", type=int, default=1,
                   help="T parameters of N elements each (1)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch.set_num_threads per process (1)")
    p.add_argument("--steps", type=int, default=0,
                   help="timed samples per measurement (default: "
                        "2^26/(N*T) clamped to [10, 500])")
    p.add_argument("--warmup", type=int, default=3,
                   help="untimed calls of each measurement first (3)")
    p.add_argument("--rounds", type=int, default=5,
                   help="ABBA rounds the samples are split into (5)")
    p.add_argument("--foreach", type=int, choices=(0, 1), default=None,
                   help="Adadelta foreach (default: measure both, keep the "
                        "faster)")
    p.add_argument("--world-size", type=int, default=2,
                   help="processes to spawn (2; ignored under torchrun)")
    p.add_argument("--bind", choices=("none", "core", "auto"),
                   default="none",
                   help="none: leave placement to the OS (default); core: "
                        "pin each rank to its own --threads cores; auto: "
                        "core when they fit")
    p.add_argument("--check", action="store_true",
                   help="verify two steps of each path against a "
                        "single-process Adadelta on the mean gradient")
    a = p.parse_args(argv)
    if not 0 <= a.min_log2 <= a.max_log2 <= 40:
        p.error("need 0 <= --min-log2 <= --max-log2 <= 40")
    if a.elements is not None and a.elements < 1:
        p.error("--elements must be >= 1")
    if (a.tensors < 1 or a.threads < 1 or a.steps < 0 or a.warmup < 0
            or a.rounds < 1 or a.world_size < 1):
        p.error("--tensors, --threads, --rounds, --world-size must be >= 1; "
                "--steps, --warmup >= 0")
    return a


def sizes(a):
    if a.elements is not None:
        return [a.elements]
    return [1 << k for k in range(a.min_log2, a.max_log2 + 1)]


def default_steps(total):
    return max(10, min(500, (1 << 26) // total))


# ---------------------------------------------------------------- data

def fill_params(out, k, torch):
    """Tensor k's initial values: uniform in [-1, 1), the same on all ranks."""
    gen = torch.Generator().manual_seed(2 * k)
    out.uniform_(-1.0, 1.0, generator=gen)


def fill_grad(out, rank, k, torch):
    """Rank's gradient of tensor k: magnitudes in [0.001, 0.01), alternating
    signs (as adadelta-mpi-bench), different on every rank."""
    gen = torch.Generator().manual_seed(1000003 * (rank + 1) + 2 * k + 1)
    out.uniform_(0.001, 0.01, generator=gen)
    out[1::2].neg_()


def flat_grads(rank, n, t, torch):
    g = torch.empty(n * t, dtype=torch.float32)
    for k in range(t):
        fill_grad(g[k * n:(k + 1) * n], rank, k, torch)
    return g


def initial_params(n, t, torch):
    out = []
    for k in range(t):
        v = torch.empty(n, dtype=torch.float32)
        fill_params(v, k, torch)
        out.append(v)
    return out


def make_module_class(torch):
    class Params(torch.nn.Module):
        """T parameters; forward(consts) = sum_k (p_k * consts_k).sum(), so
        the gradient of p_k is consts_k."""

        def __init__(self, values):
            super().__init__()
            self.params = torch.nn.ParameterList(
                [torch.nn.Parameter(v) for v in values])

        def forward(self, consts):
            loss = None
            for p, c in zip(self.params, consts):
                term = (p * c).sum()
                loss = term if loss is None else loss + term
            return loss

    return Params


def adadelta(params, foreach, torch):
    return torch.optim.Adadelta(params, lr=LR, rho=RHO, eps=EPS,
                                foreach=foreach)


class Paths:
    """The objects of both paths for one size; the step functions."""

    def __init__(self, n, t, world, rank, foreach, torch, dist):
        from torch.nn.parallel import DistributedDataParallel as DDP
        self.torch, self.dist, self.world = torch, dist, world
        self.g_src = flat_grads(rank, n, t, torch)
        self.consts = [self.g_src[k * n:(k + 1) * n] for k in range(t)]
        # ddp path
        module = make_module_class(torch)(initial_params(n, t, torch))
        self.ddp = DDP(module)
        self.ddp_opt = adadelta(list(self.ddp.parameters()), foreach, torch)
        # flat path: p.grad are views into one buffer
        self.flat = torch.empty(n * t, dtype=torch.float32)
        self.flat_params = [torch.nn.Parameter(v)
                            for v in initial_params(n, t, torch)]
        for k, p in enumerate(self.flat_params):
            p.grad = self.flat[k * n:(k + 1) * n]
        self.flat_opt = adadelta(self.flat_params, foreach, torch)
        self.loss = None

    @staticmethod
    def set_foreach(opt, foreach):
        for g in opt.param_groups:
            g["foreach"] = foreach

    # Each measurement is (prep, run): prep is not timed.

    def ddp_prep(self, foreach):
        self.set_foreach(self.ddp_opt, foreach)
        self.ddp_opt.zero_grad(set_to_none=True)
        self.loss = self.ddp(self.consts)

    def ddp_run(self):
        self.loss.backward()
        self.loss = None
        self.ddp_opt.step()

    def backward_prep(self):
        self.ddp_opt.zero_grad(set_to_none=True)
        with self.ddp.no_sync():
            self.loss = self.ddp(self.consts)

    def backward_run(self):
        self.loss.backward()
        self.loss = None

    def flat_prep(self, foreach):
        self.set_foreach(self.flat_opt, foreach)
        self.flat.copy_(self.g_src)

    def flat_run(self):
        self.dist.all_reduce(self.flat)
        self.flat.div_(self.world)
        self.flat_opt.step()

    def allreduce_prep(self):
        self.flat.copy_(self.g_src)

    def allreduce_run(self):
        self.dist.all_reduce(self.flat)

    def update_run(self):
        self.flat_opt.step()

    def measurements(self, foreach_list):
        m = [("allreduce", self.allreduce_prep, self.allreduce_run),
             ("backward", self.backward_prep, self.backward_run)]
        for f in foreach_list:
            m.append(("ddp/%d" % f, lambda f=f: self.ddp_prep(f),
                      self.ddp_run))
            m.append(("flat/%d" % f, lambda f=f: self.flat_prep(f),
                      self.flat_run))
            m.append(("update/%d" % f, lambda f=f: self.flat_prep(f),
                      self.update_run))
        return m


# ---------------------------------------------------------------- check

def check_size(n, t, world, rank, foreach_list, torch, dist):
    """Two steps of each path from fresh parameters against one
    single-process Adadelta on the mean gradient. Returns the max abs
    difference over all ranks, paths, foreach values and both steps."""
    mean = flat_grads(0, n, t, torch)
    for r in range(1, world):
        mean.add_(flat_grads(r, n, t, torch))
    mean.div_(world)
    ref = [torch.nn.Parameter(v) for v in initial_params(n, t, torch)]
    for k, p in enumerate(ref):
        p.grad = mean[k * n:(k + 1) * n]
    ref_opt = adadelta(ref, False, torch)
    ref_after = []
    with torch.no_grad():
        for _ in range(2):
            ref_opt.step()
            ref_after.append([p.detach().clone() for p in ref])
    del ref, ref_opt, mean

    worst = 0.0
    for f in foreach_list:
        paths = Paths(n, t, world, rank, f, torch, dist)
        for which in ("ddp", "flat"):
            params = (list(paths.ddp.parameters()) if which == "ddp"
                      else paths.flat_params)
            for s in range(2):
                if which == "ddp":
                    paths.ddp_prep(f)
                    paths.ddp_run()
                else:
                    paths.flat_prep(f)
                    paths.flat_run()
                for p, q in zip(params, ref_after[s]):
                    d = (p.detach() - q).abs().max().item()
                    worst = max(worst, d)
        del paths
        gc.collect()
    w = torch.tensor([worst], dtype=torch.float64)
    dist.all_reduce(w, op=dist.ReduceOp.MAX)
    return w.item()


# ---------------------------------------------------------------- timing

def split(steps, rounds):
    rounds = min(rounds, steps)
    base, extra = divmod(steps, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def bench_size(n, a, world, rank, foreach_list, torch, dist):
    t = a.tensors
    steps = a.steps or default_steps(n * t)
    paths = Paths(n, t, world, rank, foreach_list[0], torch, dist)
    meas = paths.measurements(foreach_list)

    def sample(prep, run):
        prep()
        dist.barrier()
        t0 = time.perf_counter()
        run()
        return time.perf_counter() - t0

    for _, prep, run in meas:
        for _ in range(a.warmup):
            sample(prep, run)
    times = {name: [] for name, _, _ in meas}
    for r, count in enumerate(split(steps, a.rounds)):
        order = meas if r % 2 == 0 else meas[::-1]
        for name, prep, run in order:
            sample(prep, run)  # untimed, start of the round
            for _ in range(count):
                times[name].append(sample(prep, run))

    names = [name for name, _, _ in meas]
    mat = torch.tensor([times[k] for k in names], dtype=torch.float64)
    dist.all_reduce(mat, op=dist.ReduceOp.MAX)
    med = {k: statistics.median(mat[i].tolist()) for i, k in enumerate(names)}
    del paths, meas
    gc.collect()

    res = {"steps": steps, "rounds": len(split(steps, a.rounds)),
           "allreduce": med["allreduce"], "backward": med["backward"],
           "by_foreach": {}}
    for f in foreach_list:
        ddp_raw = med["ddp/%d" % f]
        ddp = ddp_raw - med["backward"]
        flat = med["flat/%d" % f]
        res["by_foreach"][f] = {
            "step": min(ddp, flat), "path": "ddp" if ddp <= flat else "flat",
            "ddp": ddp, "ddp_raw": ddp_raw, "flat": flat,
            "update": med["update/%d" % f]}
    return res


def g6(x):
    return float("%.6g" % x)


def run(rank, world, a, torch, dist):
    foreach_list = [0, 1] if a.foreach is None else [a.foreach]
    for n in sizes(a):
        gc.collect()
        diff = None
        if a.check:
            diff = check_size(n, a.tensors, world, rank, foreach_list,
                              torch, dist)
            ok = diff <= TOLERANCE  # the same on all ranks (MAX)
            if rank == 0:
                print("torch_ddp_bench: check N=%d T=%d: max |param - "
                      "reference| = %.3g (%s)" %
                      (n, a.tensors, diff,
                       "FAILED" if not ok else "exact" if diff == 0
                       else "ok"), file=sys.stderr, flush=True)
            if not ok:
                return 1
        res = bench_size(n, a, world, rank, foreach_list, torch, dist)
        best = min(foreach_list, key=lambda f: res["by_foreach"][f]["step"])
        b = res["by_foreach"][best]
        if rank == 0:
            out = {
                "library": "torch-ddp-gloo",
                "ranks": world,
                "threads": torch.get_num_threads(),
                "elements": n,
                "tensors": a.tensors,
                "steps": res["steps"],
                "step_seconds": g6(b["step"]),
                "path": b["path"],
                "ddp_step_seconds": g6(b["ddp"]),
                "ddp_backward_step_seconds": g6(b["ddp_raw"]),
                "backward_seconds": g6(res["backward"]),
                "flat_step_seconds": g6(b["flat"]),
                "allreduce_seconds": g6(res["allreduce"]),
                "ratio": round(b["step"] / res["allreduce"], 4),
                "update_seconds": g6(b["update"]),
                "foreach": bool(best),
                "by_foreach": {
                    str(bool(f)).lower(): {
                        k: g6(v[k]) for k in ("step", "ddp", "ddp_raw",
                                              "flat", "update")}
                    for f, v in res["by_foreach"].items()},
                "rounds": res["rounds"],
                "warmup": a.warmup,
                "bind": a.bind_effective,
                "torch_version": torch.__version__,
            }
            if diff is not None:
                out["check_max_abs_diff"] = diff
            print(json.dumps(out, separators=(",", ":")), flush=True)
    return 0


def bind_cores(a, local_rank, world_local):
    """Pin this process to its own a.threads cores if they fit."""
    a.bind_effective = "none"
    if a.bind == "none" or not hasattr(os, "sched_setaffinity"):
        return
    cores = sorted(os.sched_getaffinity(0))
    if world_local * a.threads > len(cores):
        if a.bind == "core":
            print("torch_ddp_bench: --bind core: %d ranks x %d threads > %d "
                  "cores; not binding" % (world_local, a.threads, len(cores)),
                  file=sys.stderr)
        return
    mine = cores[local_rank * a.threads:(local_rank + 1) * a.threads]
    os.sched_setaffinity(0, mine)
    a.bind_effective = "core"


def worker(rank, world, port, a):
    """One rank (spawned mode: rank from torch.multiprocessing.spawn)."""
    if port is None:  # torchrun
        local_rank = int(os.environ.get("LOCAL_RANK", rank))
        world_local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
    else:
        local_rank, world_local = rank, world
    bind_cores(a, local_rank, world_local)
    import datetime
    import torch
    import torch.distributed as dist
    torch.set_num_threads(a.threads)
    timeout = datetime.timedelta(minutes=60)
    if port is None:
        dist.init_process_group("gloo", rank=rank, world_size=world,
                                timeout=timeout)
    else:
        dist.init_process_group("gloo", init_method="tcp://127.0.0.1:%d" % port,
                                rank=rank, world_size=world, timeout=timeout)
    try:
        status = run(rank, world, a, torch, dist)
        dist.barrier()
    finally:
        dist.destroy_process_group()
    if status:
        sys.exit(status)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv):
    a = parse_args(argv)
    try:
        import torch.distributed as dist
        import torch.multiprocessing as mp
    except ImportError:
        print("torch_ddp_bench.py: cannot import torch with %s (Debian: "
              "apt-get install python3-torch, run with /usr/bin/python3)"
              % sys.executable, file=sys.stderr)
        return 1
    if not dist.is_available() or not dist.is_gloo_available():
        print("torch_ddp_bench.py: this torch has no gloo backend",
              file=sys.stderr)
        return 1

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        if rank == 0 and world != a.world_size:
            print("torch_ddp_bench: under torchrun: world size %d "
                  "(--world-size ignored)" % world, file=sys.stderr)
        try:
            worker(rank, world, None, a)
        except SystemExit as e:
            return e.code
        return 0

    os.environ["OMP_NUM_THREADS"] = str(a.threads)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    try:
        mp.spawn(worker, args=(a.world_size, free_port(), a),
                 nprocs=a.world_size, join=True)
    except mp.ProcessExitedException as e:
        print("torch_ddp_bench: %s" % e, file=sys.stderr)
        return 1
    except mp.ProcessRaisedException as e:
        print("torch_ddp_bench: a rank failed:\n%s" % e, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
