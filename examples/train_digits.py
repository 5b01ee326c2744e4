#!/usr/bin/python3
"""train_digits.py - the digits MLP of train_digits.c, in PyTorch, trained
with torch.optim.Adadelta and with adadelta.torch.Adadelta (Keras's
Adadelta in C), one line per epoch each; under mpirun, data parallel
through adadelta.mpi with the gradients reported from autograd hooks.

    examples/train_digits.py                        # both optimizers, one process
    examples/train_digits.py --optimizer adadelta --schedule exponential \\
        --global-clipnorm 1 --weight-decay 1e-4 --ema 0.99
    mpirun --allow-run-as-root --oversubscribe -np 2 -x OMP_NUM_THREADS=1 \\
        /usr/bin/python3 examples/train_digits.py [--mode sharded] [--no-overlap]

The same data split, initial weights (splitmix64, Keras's Glorot uniform),
batches and hyperparameters as train_digits.c: a 64-128-10 ReLU MLP with
Keras's Dense layout (kernel (in, out), named dense/kernel ...), softmax
cross-entropy averaged over the global batch of 32, Adadelta lr 1.0
(rho 0.95, epsilon 1e-7) with a cosine decay to 0 over the run, 50 epochs,
the last 360 shuffled images as the test set. torch.optim.Adadelta gets the
same learning-rate curve through LambdaLR and eps=1e-7; the Keras extras
(--weight-decay, --global-clipnorm, --ema) go to adadelta only.

Needs /usr/bin/python3 with Debian's python3-torch (and python3-mpi4py for
mpirun); run from the source tree, or with the package installed.
"""

import argparse
import gzip
import math
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
N_IN, N_HIDDEN, N_OUT, N_TEST = 64, 128, 10, 360
M64 = (1 << 64) - 1


def _use_source_tree():
    """Lets `import adadelta` find python/adadelta in a source checkout."""
    src = os.path.join(os.path.dirname(HERE), "python")
    try:
        import adadelta  # noqa: F401 - installed or on PYTHONPATH
    except ImportError:
        if os.path.isdir(os.path.join(src, "adadelta")):
            sys.path.insert(0, src)


# ------------------------------------------------------------------ PRNG

class SplitMix64:
    """train_digits.c's generator: the same stream on every machine."""

    def __init__(self, seed):
        self.state = seed & M64

    def next(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & M64
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
        return z ^ (z >> 31)

    def uniform(self):
        return (self.next() >> 11) * 2.0 ** -53

    def shuffle(self, a):
        for i in range(len(a) - 1, 0, -1):
            j = self.next() % (i + 1)
            a[i], a[j] = a[j], a[i]
        return a


# ------------------------------------------------------------------ data

def load_digits(path):
    """(x float32 (n, 64) in [0, 1], y int64 (n,)) from the gzipped CSV."""
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64, ndmin=2)
    if rows.shape[1] != N_IN + 1:
        raise SystemExit("%s: expected 64 pixels and a label per line" % path)
    x = rows[:, :N_IN].astype(np.float32) / np.float32(16.0)
    return x, rows[:, N_IN].copy()


def split_train_test(x, y, seed):
    """train_digits.c's split: a fixed shuffle, the last 360 for testing."""
    order = SplitMix64(seed).shuffle(list(range(len(y))))
    n_train = len(y) - N_TEST
    tr, te = order[:n_train], order[n_train:]
    return (x[tr], y[tr]), (x[te], y[te])


# ------------------------------------------------------------------ model

def glorot(rng, fan_in, fan_out):
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return np.array([(2.0 * rng.uniform() - 1.0) * limit for _ in range(fan_in * fan_out)],
                    dtype=np.float32).reshape(fan_in, fan_out)


def make_model(seed):
    """The MLP as a torch module with Keras's variables; named_parameters
    gives Keras's names (dense/kernel, dense/bias, dense_1/kernel, ...)."""
    import torch

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            rng = SplitMix64(seed + 1)
            w1, w2 = glorot(rng, N_IN, N_HIDDEN), glorot(rng, N_HIDDEN, N_OUT)
            P = torch.nn.Parameter
            self.kernel1 = P(torch.from_numpy(w1))
            self.bias1 = P(torch.zeros(N_HIDDEN))
            self.kernel2 = P(torch.from_numpy(w2))
            self.bias2 = P(torch.zeros(N_OUT))

        def forward(self, x):
            return torch.relu(x @ self.kernel1 + self.bias1) @ self.kernel2 + self.bias2

        def keras_parameters(self):
            return [("dense/kernel", self.kernel1), ("dense/bias", self.bias1),
                    ("dense_1/kernel", self.kernel2), ("dense_1/bias", self.bias2)]

    return MLP()


# ------------------------------------------------------------------ training

def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--optimizer", choices=("both", "adadelta", "torch"), default="both")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=1.0)
    p.add_argument("--schedule", choices=("cosine", "exponential", "none"), default="cosine")
    p.add_argument("--weight-decay", type=float, default=None)
    p.add_argument("--global-clipnorm", type=float, default=None)
    p.add_argument("--ema", type=float, default=None, help="EMA momentum (use_ema)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--data", default=os.path.join(HERE, "data", "digits.csv.gz"))
    p.add_argument("--mode", choices=("replicated", "sharded"), default="replicated",
                   help="MPI: optimizer state on every rank or split over the ranks")
    p.add_argument("--no-overlap", action="store_true",
                   help="MPI: one apply after backward instead of autograd hooks")
    p.add_argument("--quiet", action="store_true", help="only the final line")
    return p.parse_args(argv)


def _mpi_world():
    """(comm, rank, size) under mpirun, else (None, 0, 1)."""
    if not any(v in os.environ for v in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK")):
        return None, 0, 1
    from mpi4py import MPI

    comm = MPI.COMM_WORLD
    return (comm, comm.rank, comm.size) if comm.size > 1 else (None, 0, 1)


def train(kind, args, data, out=print):
    """Trains a fresh model with `kind` ("adadelta" or "torch"); returns the
    final test accuracy (0..1)."""
    import torch

    comm, rank, nranks = _mpi_world()
    (xtr, ytr), (xte, yte) = data
    xtr_t, ytr_t = torch.from_numpy(xtr), torch.from_numpy(ytr)
    xte_t, yte_t = torch.from_numpy(xte), torch.from_numpy(yte)
    steps_per_epoch = (len(ytr) + args.batch - 1) // args.batch
    total = args.epochs * steps_per_epoch
    model = make_model(args.seed)
    named = model.keras_parameters()

    if kind == "adadelta":
        import adadelta
        import adadelta.torch

        if args.schedule == "cosine":
            lr = adadelta.schedules.CosineDecay(args.lr, max(total, 1))
        elif args.schedule == "exponential":
            lr = adadelta.schedules.ExponentialDecay(args.lr, steps_per_epoch, 0.95)
        else:
            lr = args.lr
        kw = dict(learning_rate=lr, rho=0.95, epsilon=1e-7, weight_decay=args.weight_decay,
                  global_clipnorm=args.global_clipnorm)
        if args.ema is not None:
            kw.update(use_ema=True, ema_momentum=args.ema)
        if comm is not None:
            import adadelta.mpi

            opt = adadelta.mpi.TorchAdadelta(named, comm=comm, mode=args.mode,
                                             overlap=not args.no_overlap, **kw)
        else:
            opt = adadelta.torch.Adadelta(named, **kw)
        opt.exclude_from_weight_decay(var_names=["bias"])
        if args.threads:
            opt.threads = args.threads
        scheduler = None
        current_lr = lambda: float(opt.optimizers[0].learning_rate)  # noqa: E731
    else:
        if comm is not None:
            raise SystemExit("--optimizer torch runs in one process (use --optimizer adadelta "
                             "under mpirun)")
        opt = torch.optim.Adadelta([p for _, p in named], lr=args.lr, rho=0.95, eps=1e-7,
                                   foreach=False)
        if args.schedule == "cosine":
            f = lambda k: 0.5 * (1.0 + math.cos(math.pi * min(k, total) / max(total, 1)))  # noqa
        elif args.schedule == "exponential":
            f = lambda k: 0.95 ** (k / steps_per_epoch)  # noqa: E731
        else:
            f = lambda k: 1.0  # noqa: E731
        scheduler = torch.optim.lr_scheduler.LambdaLR(opt, f)
        current_lr = lambda: opt.param_groups[0]["lr"]  # noqa: E731

    def evaluate():
        with torch.no_grad():
            pred = model(xte_t).argmax(1)
            return float((pred == yte_t).double().mean())

    acc = 0.0
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        lr_now = current_lr()
        state = args.seed ^ ((0x5851F42D4C957F2D * (epoch + 1)) & M64)
        order = torch.tensor(SplitMix64(state).shuffle(list(range(len(ytr)))))
        loss_sum = correct = 0.0
        for start in range(0, len(ytr), args.batch):
            bn = min(args.batch, len(ytr) - start)
            lo = start + bn * rank // nranks
            hi = start + bn * (rank + 1) // nranks
            rows = order[lo:hi]
            logits = model(xtr_t[rows])
            losses = torch.nn.functional.cross_entropy(logits, ytr_t[rows], reduction="none")
            # the global batch's mean: the MPI layer averages over the ranks
            loss = losses.sum() * (nranks / bn)
            opt.zero_grad()
            loss.backward()
            opt.step()
            if scheduler is not None:
                scheduler.step()
            loss_sum += float(losses.detach().sum())
            correct += float((logits.detach().argmax(1) == ytr_t[rows]).sum())
        if comm is not None:
            loss_sum, correct = comm.allreduce(loss_sum), comm.allreduce(correct)
        acc = evaluate()
        if rank == 0 and not args.quiet:
            out("%-8s epoch %3d | loss %.4f | train acc %5.1f%% | test acc %5.1f%% | lr %.4f "
                "| %.3f s" % (kind, epoch + 1, loss_sum / len(ytr), 100.0 * correct / len(ytr),
                              100.0 * acc, lr_now, time.perf_counter() - t0))
    if kind == "adadelta":
        opt.finalize_variable_values()  # with --ema, the averages become the weights
        acc = evaluate()
    return acc


def main(argv=None):
    args = parse_args(argv)
    _use_source_tree()
    try:
        import torch
    except ImportError:
        sys.exit("train_digits.py: cannot import torch with %s (Debian: apt-get install "
                 "python3-torch, run with /usr/bin/python3)" % sys.executable)
    if args.threads:
        torch.set_num_threads(args.threads)
    comm, rank, nranks = _mpi_world()
    x, y = load_digits(args.data)
    data = split_train_test(x, y, args.seed)
    kinds = ["torch", "adadelta"] if args.optimizer == "both" else [args.optimizer]
    if comm is not None:
        kinds = ["adadelta"]
    if rank == 0:
        print("digits: %d train, %d test | MLP 64-128-10 | batch %d, %d epochs, lr %g (%s)%s"
              % (len(data[0][1]), len(data[1][1]), args.batch, args.epochs, args.lr,
                 args.schedule, " | %d ranks (%s, %s)" % (nranks, args.mode, "apply" if
                                                         args.no_overlap else "overlap hooks")
                 if comm is not None else ""))
    results = {k: train(k, args, data) for k in kinds}
    if rank == 0:
        print("test accuracy: " + ", ".join("%s %.1f%%" % (k, 100 * a) for k, a in results.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
