"""adadelta.mpi on 2 ranks (run by run_mpi.sh: mpirun -np 2 python3 -m
pytest test_mpi.py): bit-identical parameters on every rank, equal to one
process stepping with the mean gradient, in both modes, with apply, the
overlapped step and the torch hooks; resume; refused input."""

import os
import shutil
import tempfile

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed (python3-numpy)")
mpi4py = pytest.importorskip("mpi4py", reason="mpi4py is not installed (python3-mpi4py)")
from mpi4py import MPI  # noqa: E402

COMM = MPI.COMM_WORLD
pytestmark = pytest.mark.skipif(COMM.size != 2, reason="run under mpirun -np 2 (run_mpi.sh)")

import adadelta  # noqa: E402
import adadelta.mpi  # noqa: E402
from adadelta import errors  # noqa: E402

R = COMM.rank
MODES = ["replicated", "sharded"]
SHAPES = [(40, 9), (9,), (3, 5, 7)]
NAMES = ["dense/kernel", "dense/bias", "conv/kernel"]
KW = dict(learning_rate=adadelta.schedules.CosineDecay(1.0, 20), weight_decay=0.01,
          global_clipnorm=1.0, use_ema=True, ema_momentum=0.9)


def initial():
    rng = np.random.default_rng(0)
    return [rng.standard_normal(s).astype(np.float32) for s in SHAPES]


def local_grads(step, rank):
    rng = np.random.default_rng(1000 * step + rank)
    g = [rng.standard_normal(s).astype(np.float32) for s in SHAPES]
    if step % 4 == 3:
        g[1] = None  # a None gradient (on every rank)
    return g


def mean_grads(step):
    g0, g1 = local_grads(step, 0), local_grads(step, 1)
    return [None if a is None else (a + b) / np.float32(2) for a, b in zip(g0, g1)]


def reference(steps, **kw):
    vs = initial()
    opt = adadelta.Adadelta(**kw)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build(vs, NAMES)
    for k in range(steps):
        opt.apply(mean_grads(k))
    opt.finalize_variable_values()
    return vs


def identical_on_ranks(arrays):
    blobs = COMM.allgather(b"".join(a.tobytes() for a in arrays))
    return all(b == blobs[0] for b in blobs)


@pytest.fixture
def shared_dir():
    d = COMM.bcast(tempfile.mkdtemp(prefix="adadelta-mpi-") if R == 0 else None)
    yield d
    COMM.Barrier()
    if R == 0:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("overlap", [False, True], ids=["apply", "overlap"])
def test_numpy_equals_one_process_on_the_mean_gradient(mode, overlap):
    steps = 12
    vs = initial()
    opt = adadelta.mpi.Adadelta(comm=COMM, mode=mode, **KW)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build(vs, NAMES)
    order = [2, 0, 1]
    for k in range(steps):
        g = local_grads(k, R)
        if overlap:
            opt.begin_step()
            for i in order:  # any order, by index, name or array
                opt.grad_ready(NAMES[i] if i == 0 else (vs[i] if i == 2 else i), g[i])
            opt.end_step()
        else:
            opt.apply(g)
    opt.finalize_variable_values()
    assert opt.iterations == steps
    assert opt.engine in ("shm", "p2p")
    assert identical_on_ranks(vs)
    ref = reference(steps, **KW)
    for a, b in zip(vs, ref):
        assert a.tobytes() == b.tobytes()
    opt.close()


DTYPES = [np.float64, np.float16, np.float32]


@pytest.mark.parametrize("mode", MODES)
def test_numpy_float64_float16_variables(mode):
    """float64, float16 and float32 variables in one optimizer: each rank's
    gradient in its variable's dtype; one process stepping with the mean
    (float64 for float64, float32 rounded to float16 for float16, numpy's
    arithmetic) gives the same bits."""
    steps = 6

    def cast(arrays):
        return [None if a is None else a.astype(t) for a, t in zip(arrays, DTYPES)]

    vs = cast(initial())
    opt = adadelta.mpi.Adadelta(comm=COMM, mode=mode, **KW)
    opt.exclude_from_weight_decay(var_names=["bias"])
    opt.build(vs, NAMES)
    for k in range(steps):
        opt.apply(cast(local_grads(k, R)))
    opt.finalize_variable_values()
    assert identical_on_ranks(vs)

    ref = cast(initial())
    one = adadelta.Adadelta(**KW)
    one.exclude_from_weight_decay(var_names=["bias"])
    one.build(ref, NAMES)
    for k in range(steps):
        g0, g1 = cast(local_grads(k, 0)), cast(local_grads(k, 1))
        mean = []
        for a, b, t in zip(g0, g1, DTYPES):
            if a is None:
                mean.append(None)
            elif t == np.float64:
                mean.append((a + b) / 2.0)
            else:
                s = (a.astype(np.float32) + b.astype(np.float32)) / np.float32(2)
                mean.append(s.astype(t))
        one.apply(mean)
    one.finalize_variable_values()
    for a, b in zip(vs, ref):
        assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
    opt.close()


def to_16(x, kind):
    """x rounded to bfloat16 (through torch's conversion) or float16 (numpy's),
    back in float32: conversions independent of the library's."""
    if kind == "f16":
        return x.astype(np.float16).astype(np.float32)
    torch = pytest.importorskip("torch", reason="torch is not installed (python3-torch)")
    return torch.from_numpy(x).to(torch.bfloat16).to(torch.float32).numpy()


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("kind", ["bf16", "f16"])
def test_numpy_compressed_exchange(mode, kind):
    steps = 6
    kw = dict(learning_rate=0.5, weight_decay=0.01)
    vs = initial()
    opt = adadelta.mpi.Adadelta(comm=COMM, mode=mode, compression=kind, **kw)
    opt.build(vs, NAMES)
    for k in range(steps):
        opt.apply(local_grads(k, R))
    assert identical_on_ranks(vs)
    ref = initial()
    one = adadelta.Adadelta(**kw)
    one.build(ref, NAMES)
    for k in range(steps):
        g0, g1 = local_grads(k, 0), local_grads(k, 1)
        one.apply([None if a is None else to_16((to_16(a, kind) + to_16(b, kind)) / np.float32(2), kind)
                   for a, b in zip(g0, g1)])
    for a, b in zip(vs, ref):
        assert a.tobytes() == b.tobytes()
    opt.close()
    with pytest.raises(errors.InvalidArgumentError):
        adadelta.mpi.Adadelta(comm=COMM, compression="fp8")


@pytest.mark.parametrize("mode", MODES)
def test_numpy_save_load_resume(mode, shared_dir):
    path = os.path.join(shared_dir, "state.safetensors")
    va = initial()
    a = adadelta.mpi.Adadelta(comm=COMM, mode=mode, learning_rate=1.0, use_ema=True)
    a.build(va, NAMES)
    for k in range(5):
        a.apply(local_grads(k, R))
    a.save(path)
    for k in range(5, 9):
        a.apply(local_grads(k, R))
    vb = [np.zeros_like(v) for v in initial()]
    other = "sharded" if mode == "replicated" else "replicated"  # the same file in both modes
    b = adadelta.mpi.Adadelta(comm=COMM, mode=other, learning_rate=1.0, use_ema=True)
    b.build(vb, NAMES)
    b.load(path)
    assert b.iterations == 5
    for k in range(5, 9):
        b.apply(local_grads(k, R))
    assert all(x.tobytes() == y.tobytes() for x, y in zip(va, vb))
    with pytest.raises(OSError):
        b.load(os.path.join(shared_dir, "missing.safetensors"))  # on every rank
    a.close()
    b.close()


def test_numpy_learning_rate_and_refused_input():
    vs = initial()
    opt = adadelta.mpi.Adadelta(comm=COMM, learning_rate=1.0)
    opt.build(vs, NAMES)
    opt.learning_rate = 0.5  # collective, the same on every rank
    assert opt.learning_rate == np.float32(0.5)
    before = [v.copy() for v in vs]
    g = local_grads(0, R)
    with pytest.raises(ValueError):
        opt.apply([g[0].astype(np.float64), g[1], g[2]])  # refused locally, before any collective
    with pytest.raises(ValueError):
        opt.apply(g[:2])
    assert all(a.tobytes() == b.tobytes() for a, b in zip(before, vs)) and opt.iterations == 0
    with pytest.raises(errors.StateError):
        opt.end_step()
    with pytest.raises(ValueError):
        adadelta.mpi.Adadelta(comm=COMM, mode="ring")
    with pytest.raises(ValueError):
        adadelta.mpi.Adadelta(comm="world")
    opt.apply(g)
    assert opt.iterations == 1 and identical_on_ranks(vs)
    opt.close()


# ------------------------------------------------------------------ torch

try:
    import torch
except ImportError:
    torch = None
needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed (python3-torch)")
if torch is not None:
    torch.set_num_threads(1)  # the same summation order in every process
    X = torch.randn(64, 20, generator=torch.Generator().manual_seed(1))
    Y = torch.randint(0, 5, (64,), generator=torch.Generator().manual_seed(2))


def net():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.ReLU(), torch.nn.Linear(30, 5))


def backward(model, rank, scale=1.0):
    sl = slice(32 * rank, 32 * rank + 32)
    (torch.nn.functional.cross_entropy(model(X[sl]), Y[sl]) * scale).backward()


def torch_reference(steps, **kw):
    ref = net()
    opt = adadelta.torch.Adadelta(ref.named_parameters(), **kw)
    for _ in range(steps):
        grads = []
        for rank in range(2):
            ref.zero_grad()
            backward(ref, rank)
            grads.append([p.grad.clone() for p in ref.parameters()])
        for p, g0, g1 in zip(ref.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        opt.step()
    return ref


def params_bits(model):
    return [p.detach().numpy() for p in model.parameters()]


@needs_torch
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("overlap", [True, False], ids=["hooks", "apply"])
def test_torch_equals_one_process_on_the_mean_gradient(mode, overlap):
    import adadelta.torch

    steps = 8
    kw = dict(learning_rate=1.0, weight_decay=0.01, clipnorm=1.0)
    model = net()
    opt = adadelta.torch.DistributedAdadelta(model.named_parameters(), comm=COMM, mode=mode,
                                             overlap=overlap, **kw)
    for _ in range(steps):
        opt.zero_grad()
        backward(model, R)
        # with hooks, backward reported every gradient and opened the step
        assert opt.optimizers[0].step_open == overlap
        opt.step()
    assert opt.iterations == steps
    assert identical_on_ranks(params_bits(model))
    ref = torch_reference(steps, **kw)
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    opt.close()


@needs_torch
def test_torch_no_sync_accumulates_gradients():
    import adadelta.torch

    model = net()
    opt = adadelta.torch.DistributedAdadelta(model.parameters(), comm=COMM, learning_rate=1.0)
    ref = net()
    ropt = adadelta.torch.Adadelta(ref.parameters(), learning_rate=1.0)
    for _ in range(3):
        opt.zero_grad()
        with opt.no_sync():
            backward(model, R, 0.5)
        assert not opt.optimizers[0].step_open
        backward(model, R, 0.5)
        opt.step()
        grads = []
        for rank in range(2):
            ref.zero_grad()
            backward(ref, rank, 0.5)
            backward(ref, rank, 0.5)
            grads.append([p.grad.clone() for p in ref.parameters()])
        for p, g0, g1 in zip(ref.parameters(), *grads):
            p.grad = (g0 + g1) / 2
        ropt.step()
    for p, q in zip(model.parameters(), ref.parameters()):
        assert torch.equal(p, q)
    # a second backward without no_sync is refused (from the hook)
    opt.zero_grad()
    backward(model, R)
    with pytest.raises(RuntimeError, match="second backward"):
        backward(model, R)
    opt.step()  # completes the open step on every rank
    opt.close()


@needs_torch
@pytest.mark.parametrize("mode", MODES)
def test_torch_state_dict_resume_bit_exact(mode):
    import adadelta.torch

    kw = dict(learning_rate=adadelta.schedules.ExponentialDecay(1.0, 3, 0.8), use_ema=True)
    a = net()
    oa = adadelta.torch.DistributedAdadelta(a.parameters(), comm=COMM, mode=mode, **kw)
    for k in range(4):
        oa.zero_grad()
        backward(a, R)
        oa.step()
    sd = oa.state_dict()
    saved = [p.detach().clone() for p in a.parameters()]
    for k in range(4):
        oa.zero_grad()
        backward(a, R)
        oa.step()
    b = net()
    with torch.no_grad():
        for p, v in zip(b.parameters(), saved):
            p.copy_(v)
    ob = adadelta.torch.DistributedAdadelta(b.parameters(), comm=COMM, mode=mode, **kw)
    ob.load_state_dict(sd)
    for k in range(4):
        ob.zero_grad()
        backward(b, R)
        ob.step()
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.equal(p, q)
    assert identical_on_ranks(params_bits(b))
    oa.close()
    ob.close()


@pytest.mark.parametrize("mode", MODES)
def test_numpy_broadcast_and_first_step_check(mode):
    """Rank-dependent initial values: the first step refuses them on every
    rank (when R > 1) and changes nothing; after broadcast_variables(0)
    every rank holds rank 0's values and steps."""
    vs = initial()
    for a in vs:
        a += np.float32(COMM.Get_rank())
    want = initial()  # rank 0's (plus 0)
    opt = adadelta.mpi.Adadelta(comm=COMM, mode=mode, **KW)
    opt.build(vs, NAMES)
    before = [a.copy() for a in vs]
    if COMM.Get_size() > 1:
        with pytest.raises(adadelta.InvalidArgumentError, match="different variables"):
            opt.apply(local_grads(0, R))
        assert all(a.tobytes() == b.tobytes() for a, b in zip(vs, before))
        assert opt.iterations == 0
    opt.broadcast_variables(0)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(vs, want))
    opt.apply(local_grads(0, R))
    assert identical_on_ranks(vs)
    opt.close()


def test_torch_broadcast_parameters():
    torch = pytest.importorskip("torch", reason="torch is not installed (python3-torch)")
    torch.manual_seed(COMM.Get_rank())  # a different model on each rank
    model = torch.nn.Linear(5, 3)
    opt = adadelta.mpi.TorchAdadelta(model.parameters(), comm=COMM, learning_rate=1.0)
    opt.broadcast_parameters(0)
    torch.manual_seed(0)
    want = torch.nn.Linear(5, 3)
    assert torch.equal(model.weight, want.weight) and torch.equal(model.bias, want.bias)
    model(torch.ones(2, 5)).sum().backward()
    opt.step()
    assert identical_on_ranks([p.detach().numpy() for p in model.parameters()])
    opt.close()
