"""adadelta.torch.Adadelta: torch.optim.Adadelta's results where both define
the step the same way, the conformance cases, exact resume through
state_dict, parameter groups, refused input, and the digits MLP."""

import importlib.util
import io
import os

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed (python3-numpy)")
torch = pytest.importorskip("torch", reason="PyTorch is not installed (python3-torch, "
                            "/usr/bin/python3)")

import adadelta  # noqa: E402
import adadelta.torch as adt  # noqa: E402
from adadelta import errors  # noqa: E402
from conftest import DIGITS, case_dirs, load_case, run_replay  # noqa: E402
import safetensors_io as st  # noqa: E402

SHAPES = [(33, 17), (17,), (4, 3, 5), ()]


def params(seed=0, shapes=SHAPES):
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(s, generator=g)) for s in shapes]


def recorded_grads(steps, shapes=SHAPES, seed=1):
    g = torch.Generator().manual_seed(seed)
    return [[torch.randn(s, generator=g) * (1.0 + k % 7) for s in shapes] for k in range(steps)]


def clone(ps):
    return [torch.nn.Parameter(p.detach().clone()) for p in ps]


def bits(ps):
    return b"".join(p.detach().numpy().tobytes() for p in ps)


def run(opt, ps, grads):
    for gs in grads:
        for p, g in zip(ps, gs):
            p.grad = None if g is None else g.clone()
        opt.step()


@pytest.mark.parametrize("lr,rho,eps", [(1.0, 0.95, 1e-6), (0.1, 0.9, 1e-7), (1.0, 0.5, 1e-3)])
def test_matches_torch_optim_adadelta_100_steps(lr, rho, eps):
    a = params()
    b = clone(a)
    grads = recorded_grads(100)
    run(adt.Adadelta(a, learning_rate=lr, rho=rho, epsilon=eps), a, grads)
    run(torch.optim.Adadelta(b, lr=lr, rho=rho, eps=eps, foreach=False), b, grads)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q, rtol=2e-5, atol=1e-6)


TORCH_CASES = [d for d in case_dirs() if os.path.basename(os.path.dirname(d)) == "torch"]


@pytest.mark.skipif(not TORCH_CASES, reason="no tests/data/torch cases (ADADELTA_TEST_DATA)")
@pytest.mark.parametrize("d", TORCH_CASES, ids=[os.path.basename(c) for c in TORCH_CASES])
def test_torch_conformance_cases(d, tmp_path):
    case, config = load_case(d)
    _, init = st.read(os.path.join(d, "params.safetensors"))
    _, grads = st.read(os.path.join(d, "grads.safetensors"))
    names = list(init)
    ps = [torch.nn.Parameter(torch.from_numpy(np.array(init[n]))) for n in names]
    opt = adt.Adadelta(list(zip(names, ps)), **config)
    for k in range(case["calls"]):
        for p, n in zip(ps, names):
            g = grads.get("grads/%d/%s" % (k, n))
            p.grad = None if g is None else torch.from_numpy(np.array(g))
        opt.step()
    ref = str(tmp_path / "replay.safetensors")
    run_replay(d, ref)
    _, want = st.read(ref)
    _, exp = st.read(os.path.join(d, "expected.safetensors"))
    for p, n in zip(ps, names):
        assert p.detach().numpy().tobytes() == want[n].tobytes(), n  # the C library's bits
        np.testing.assert_allclose(p.detach().numpy(), exp[n], **case["tolerance"])
        assert opt.state[p]["accumulated_grad"].numpy().tobytes() == \
            want["optimizer/accumulated_grad/" + n].tobytes()


def test_keras_semantics_documented_defaults():
    p = params()[:1]
    opt = adt.Adadelta(p)
    cfg = opt.optimizers[0].get_config()
    assert cfg["learning_rate"] == float(np.float32(0.001)) and cfg["epsilon"] == 1e-7
    assert "Keras semantics" in adt.__doc__ and "decoupled" in adt.__doc__
    assert isinstance(opt, torch.optim.Optimizer)


def test_zero_copy():
    ps = params()
    opt = adt.Adadelta(ps, learning_rate=1.0)
    eng = opt.optimizers[0]
    assert eng._pointers == [p.data_ptr() for p in ps]
    g = torch.ones(SHAPES[0])
    ps[0].grad = g
    opt.step()
    assert ps[0].grad is g
    view = opt.state[ps[0]]["accumulated_grad"]
    assert torch.equal(view, torch.from_numpy(eng.slot(0)))
    assert view.data_ptr() == eng.slot(0).ctypes.data  # live C memory, no copy


def test_state_dict_round_trip_resumes_bit_exactly():
    kw = dict(learning_rate=adadelta.schedules.ExponentialDecay(1.0, 7, 0.9), use_ema=True,
              ema_overwrite_frequency=5, gradient_accumulation_steps=2, weight_decay=0.01,
              global_clipnorm=2.0)
    grads = recorded_grads(30)
    a = params()
    oa = adt.Adadelta(list(zip(["w", "b", "c", "s"], a)), **kw)
    oa.exclude_from_weight_decay(var_names=["b"])
    run(oa, a, grads[:14])
    buf = io.BytesIO()
    torch.save({"model": [p.detach().clone() for p in a], "opt": oa.state_dict()}, buf)
    run(oa, a, grads[14:])

    buf.seek(0)
    saved = torch.load(buf)
    b = params(seed=5)  # other values: restored below from the model's checkpoint
    ob = adt.Adadelta(list(zip(["w", "b", "c", "s"], b)), **kw)
    ob.exclude_from_weight_decay(var_names=["b"])
    before = bits(b)
    ob.load_state_dict(saved["opt"])
    assert bits(b) == before  # as in PyTorch: the parameters are not changed
    with torch.no_grad():
        for p, v in zip(b, saved["model"]):
            p.copy_(v)
    assert ob.iterations == 14
    run(ob, b, grads[14:])
    assert bits(a) == bits(b)
    assert ob.iterations == oa.iterations == 30
    for p, q in zip(a, b):
        for k in oa.state[p]:
            assert torch.equal(oa.state[p][k], ob.state[q][k])


def test_load_state_dict_refuses_and_changes_nothing():
    a = params()
    oa = adt.Adadelta(a, learning_rate=1.0, use_ema=True)
    run(oa, a, recorded_grads(3))
    sd = oa.state_dict()
    shapes = [(33, 17), (17,), (4, 3, 6), ()]  # one shape differs: the state does not fit
    b = params(seed=3, shapes=shapes)
    ob = adt.Adadelta(b, learning_rate=1.0)
    run(ob, b, recorded_grads(2, shapes=shapes, seed=9))
    before = bits(b), ob.iterations, ob.state_dict()["adadelta_state"]
    with pytest.raises(ValueError) as e:
        ob.load_state_dict(sd)
    assert e.value.status == errors.EMISMATCH
    with pytest.raises(ValueError):
        ob.load_state_dict({"state": {}, "param_groups": sd["param_groups"]})
    bad = dict(sd, adadelta_state=[sd["adadelta_state"][0][:-5]])
    with pytest.raises(errors.FormatError):
        oa.load_state_dict(bad)
    assert (bits(b), ob.iterations, ob.state_dict()["adadelta_state"]) == before
    c = adt.Adadelta(params()[:2], learning_rate=1.0, use_ema=True)
    with pytest.raises(ValueError):
        c.load_state_dict(sd)  # other parameters


def test_load_state_dict_restores_the_hyperparameters():
    a = params()
    oa = adt.Adadelta(a, learning_rate=0.5, rho=0.8)
    run(oa, a, recorded_grads(3))
    sd = oa.state_dict()
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    ob = adt.Adadelta(b, learning_rate=1.0, rho=0.95)
    ob.load_state_dict(sd)
    assert ob.param_groups[0]["rho"] == 0.8 and ob.param_groups[0]["learning_rate"] == 0.5
    run(oa, a, recorded_grads(4, seed=4))
    run(ob, b, recorded_grads(4, seed=4))
    assert bits(a) == bits(b)


def test_param_groups_are_separate_keras_optimizers():
    a = params()
    opt = adt.Adadelta([{"params": a[:2]}, {"params": a[2:], "learning_rate": 0.1, "rho": 0.5}],
                       learning_rate=1.0)
    b = clone(a)
    o1 = adt.Adadelta(b[:2], learning_rate=1.0)
    o2 = adt.Adadelta(b[2:], learning_rate=0.1, rho=0.5)
    grads = recorded_grads(10)
    for gs in grads:
        for p, q, g in zip(a, b, gs):
            p.grad, q.grad = g.clone(), g.clone()
        opt.step()
        o1.step()
        o2.step()
    assert bits(a) == bits(b)
    assert [o.iterations for o in opt.optimizers] == [10, 10]
    # a group without gradients this step is not stepped
    for p in a[2:]:
        p.grad = None
    opt.step()
    assert [o.iterations for o in opt.optimizers] == [11, 10]
    with pytest.raises(ValueError, match="global_clipnorm"):
        adt.Adadelta([{"params": a[:1]}, {"params": a[1:]}], global_clipnorm=1.0)
    with pytest.raises(ValueError, match="unknown key"):
        adt.Adadelta([{"params": a[:1], "lr": 0.1}])
    with pytest.raises(ValueError, match="twice"):
        adt.Adadelta([a[0], a[0]])
    with pytest.raises(ValueError, match="more than one"):
        adt.Adadelta([{"params": a[:2]}, {"params": a[1:]}])


def test_learning_rate_in_the_group_is_settable():
    a = params()
    b = clone(a)
    oa = adt.Adadelta(a, learning_rate=1.0)
    ob = adt.Adadelta(b, learning_rate=1.0)
    grads = recorded_grads(6)
    run(oa, a, grads[:3])
    run(ob, b, grads[:3])
    oa.param_groups[0]["learning_rate"] = 0.25
    ob.param_groups[0]["learning_rate"] = adadelta.schedules.PiecewiseConstantDecay([0], [9.0, 0.25])
    run(oa, a, grads[3:])
    run(ob, b, grads[3:])
    assert bits(a) == bits(b)
    assert oa.optimizers[0].learning_rate == np.float32(0.25)
    oa.param_groups[0]["rho"] = 0.5
    with pytest.raises(ValueError, match="only learning_rate"):
        run(oa, a, grads[:1])


def test_exclude_from_weight_decay_and_closure():
    a = params()
    b = clone(a)
    names = ["dense/kernel", "dense/bias", "conv/kernel", "scale"]
    oa = adt.Adadelta(list(zip(names, a)), learning_rate=1.0, weight_decay=0.1)
    oa.exclude_from_weight_decay(var_names=["bias"], var_list=[a[3]])
    ob = adadelta.Adadelta(learning_rate=1.0, weight_decay=0.1)
    arrays = [p.detach().numpy() for p in b]  # the numpy API on the same memory
    ob.exclude_from_weight_decay(var_names=["bias"], var_list=[arrays[3]])
    ob.build(arrays, names)
    grads = recorded_grads(5)
    for gs in grads:
        for p, g in zip(a, gs):
            p.grad = g.clone()

        def closure():
            return torch.tensor(1.5)

        assert oa.step(closure) == 1.5
        ob.apply([g.numpy() for g in gs])
    assert bits(a) == bits(b)
    with pytest.raises(ValueError, match="not a parameter"):
        oa.exclude_from_weight_decay(var_list=[torch.zeros(1)])


def test_bad_input_raises_and_changes_nothing():
    a = params()
    opt = adt.Adadelta(a, learning_rate=1.0)
    run(opt, a, recorded_grads(2))
    before = bits(a), opt.iterations, opt.state_dict()["adadelta_state"]
    g = recorded_grads(1, seed=7)[0]
    a[0].grad = torch.randn(17, 33).t()  # right shape, not contiguous
    for p, x in zip(a[1:], g[1:]):
        p.grad = x
    with pytest.raises(ValueError, match="not contiguous"):
        opt.step()
    for p in a:
        p.grad = None
    with pytest.raises(ValueError, match="No gradients"):
        opt.step()
    assert (bits(a), opt.iterations, opt.state_dict()["adadelta_state"]) == before
    # refused parameters
    with pytest.raises(ValueError, match="learning_rate"):
        adt.Adadelta(a, lr=1.0)
    with pytest.raises(ValueError, match="Argument"):
        adt.Adadelta(a, momentum=0.9)
    with pytest.raises(ValueError, match="contiguous"):
        adt.Adadelta([torch.nn.Parameter(torch.zeros(4, 3).t())])
    with pytest.raises(ValueError, match="dtype"):
        adt.Adadelta([torch.nn.Parameter(torch.zeros(3, dtype=torch.int32), requires_grad=False)])
    try:
        adt.Adadelta([torch.nn.Parameter(torch.zeros(3, dtype=torch.float64))])
    except ValueError as e:  # the C library refuses F64 today, naming it
        assert e.status == errors.EINVAL and "dtype 1" in str(e)
    with pytest.raises(ValueError, match="rho"):
        adt.Adadelta(a, rho=7.0)
    with pytest.raises(ValueError):
        adt.Adadelta([])
    # a parameter whose storage was replaced
    p = torch.nn.Parameter(torch.zeros(3))
    o = adt.Adadelta([p])
    p.data = torch.zeros(3)
    p.grad = torch.ones(3)
    with pytest.raises(errors.StateError):
        o.step()


def test_save_load_files(tmp_path):
    a = params()
    opt = adt.Adadelta(a, learning_rate=1.0)
    run(opt, a, recorded_grads(3))
    opt.save(str(tmp_path / "s.safetensors"))
    b = params(seed=2)
    o2 = adt.Adadelta(b, learning_rate=1.0)
    o2.load(str(tmp_path / "s.safetensors"))  # the file holds the parameters too
    assert bits(a) == bits(b) and o2.iterations == 3


def _train_digits():
    path = os.path.join(os.path.dirname(DIGITS), "..", "train_digits.py")
    spec = importlib.util.spec_from_file_location("train_digits", os.path.abspath(path))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.skipif(not os.path.exists(DIGITS), reason="examples/data/digits.csv.gz not found")
def test_digits_mlp_reaches_torch_accuracy():
    td = _train_digits()
    torch.set_num_threads(2)
    args = td.parse_args(["--epochs", "50", "--quiet"])
    x, y = td.load_digits(DIGITS)
    assert x.shape == (1797, 64) and y.shape == (1797,)
    data = td.split_train_test(x, y, args.seed)
    acc_torch = td.train("torch", args, data)
    acc_ours = td.train("adadelta", args, data)
    print("digits test accuracy: torch.optim.Adadelta %.1f%%, adadelta.torch.Adadelta %.1f%%"
          % (100 * acc_torch, 100 * acc_ours))
    assert acc_ours >= 0.9
    assert abs(acc_ours - acc_torch) <= 0.01


def test_profiler_label_and_small_step_cost():
    p = torch.nn.Parameter(torch.zeros(16))
    p.grad = torch.ones(16)
    opt = adt.Adadelta([p], learning_rate=1.0)
    with torch.profiler.profile() as prof:
        opt.step()
    assert any(e.key == "Optimizer.step#Adadelta.step" for e in prof.key_averages())
    assert opt.iterations == 1


def test_bfloat16_parameters_step_as_keras():
    """A bfloat16 parameter steps in bfloat16: equal to torch's bfloat16 ops
    in Keras's update_step order (constants exact in bfloat16, so no double
    rounding in the reference)."""
    T = torch.bfloat16
    p = torch.nn.Parameter(torch.tensor([0.5, -1.25, 3.0, 1e-3], dtype=T))
    g = torch.tensor([0.1, -2.0, 7.5, 3e-4], dtype=T)
    opt = adt.Adadelta([p], learning_rate=1.0, rho=0.75, epsilon=2.0 ** -20)
    p.grad = g.clone()
    opt.step()
    zero = torch.zeros(4, dtype=T)
    rho, omr, eps = (torch.full((4,), x, dtype=T) for x in (0.75, 0.25, 2.0 ** -20))
    ag = rho * zero + omr * (g * g)
    delta = -((torch.sqrt(zero + eps) * g) / torch.sqrt(ag + eps))
    want = torch.tensor([0.5, -1.25, 3.0, 1e-3], dtype=T) + torch.ones(4, dtype=T) * delta
    assert torch.equal(p.detach().view(torch.int16), want.view(torch.int16))
    assert not torch.equal(p.detach(), torch.tensor([0.5, -1.25, 3.0, 1e-3], dtype=T))
