"""adadelta.Adadelta / LossScaleOptimizer over numpy arrays: the replay
driver reproduced byte for byte on every conformance case, Keras's API, and
refused input that changes nothing."""

import os

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed (python3-numpy)")

import adadelta  # noqa: E402
from adadelta import errors  # noqa: E402
from conftest import case_dirs, load_case, run_replay  # noqa: E402
import safetensors_io as st  # noqa: E402

CASES = case_dirs()


def replay_with_python(d, out=None, threads=None):
    """The case through the Python API: (optimizer, names, arrays)."""
    case, config = load_case(d)
    _, params = st.read(os.path.join(d, "params.safetensors"))
    _, grads = st.read(os.path.join(d, "grads.safetensors"))
    names = list(params)
    arrays = [np.array(params[n]) for n in names]
    opt = adadelta.from_config(config)
    if threads:
        opt.threads = threads
    if case.get("exclude_from_weight_decay"):
        opt.exclude_from_weight_decay(var_names=case["exclude_from_weight_decay"])
    opt.build(arrays, names)
    calls = 1 + max(int(k.split("/")[1]) for k in grads)
    for k in range(calls):
        # copies: a view into the file may be misaligned for float64
        g = [grads.get("grads/%d/%s" % (k, n)) for n in names]
        opt.apply([None if x is None else np.array(x) for x in g])
    if case.get("finalize"):
        opt.finalize_variable_values()
    if out:
        opt.save(out)
    return opt, names, arrays


@pytest.mark.skipif(not CASES, reason="no conformance cases found (ADADELTA_TEST_DATA)")
@pytest.mark.parametrize("d", CASES, ids=[os.path.basename(c) for c in CASES])
def test_conformance_bytewise(d, tmp_path):
    ref, got = str(tmp_path / "replay.safetensors"), str(tmp_path / "python.safetensors")
    run_replay(d, ref)
    opt, names, arrays = replay_with_python(d, got, threads=2)
    # the variables and every slot, read through the API, byte for byte
    meta, want = st.read(ref)
    for n, a in zip(names, arrays):
        assert a.tobytes() == want[n].tobytes(), n
    kinds = {"accumulated_grad": "accumulated_grad",
             "accumulated_delta_var": "accumulated_delta_var", "ema": "average",
             "gradient_accumulator": "gradient_accumulator"}
    for key, t in want.items():
        parts = key.split("/")
        if parts[0] == "optimizer" and parts[1] in kinds:
            name = "/".join(parts[2:])
            assert opt.slot(name, kinds[parts[1]]).tobytes() == t.tobytes(), key
    assert opt.iterations == int(want["optimizer/iterations"])
    # and the whole file (metadata included)
    with open(ref, "rb") as f, open(got, "rb") as g:
        assert f.read() == g.read()


def test_expected_values_within_tolerance():
    """The conformance vectors themselves (expected.safetensors)."""
    for d in CASES:
        case, _ = load_case(d)
        opt, names, arrays = replay_with_python(d)
        _, exp = st.read(os.path.join(d, "expected.safetensors"))
        tol = case.get("tolerance", {"rtol": 2e-5, "atol": 1e-6})
        for n, a in zip(names, arrays):
            np.testing.assert_allclose(a, exp[n], rtol=tol["rtol"], atol=tol["atol"], err_msg=d)


def model(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((6, 4)).astype(np.float32),
            rng.standard_normal(4).astype(np.float32)]


def grads_for(vs, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape).astype(np.float32) for v in vs]


def snapshot(opt, vs):
    return [v.copy() for v in vs] + [s.copy() for s in opt.variables] + [opt.iterations]


def same(a, b):
    return all((x == y) if isinstance(x, int) else x.tobytes() == y.tobytes() for x, y in zip(a, b))


def test_keras_api_basics():
    vs = model()
    opt = adadelta.Adadelta(learning_rate=1.0)
    assert not opt.built and opt.variables == []
    opt.build(vs)
    assert opt.built and opt.variable_names == ["variable_0", "variable_1"]
    before = vs[0].copy()
    opt.apply(grads_for(vs, 1))
    assert opt.iterations == 1 and not np.array_equal(before, vs[0])
    assert len(opt.variables) == 4  # accumulated_grad x2, accumulated_delta_var x2
    assert opt.learning_rate == np.float32(1.0)
    # apply_gradients with a subset in another order: the others get None
    b = vs[1].copy()
    opt.apply_gradients([(grads_for(vs, 2)[0], vs[0])])
    assert opt.iterations == 2 and np.array_equal(b, vs[1])
    # a None gradient
    opt.apply([None, grads_for(vs, 3)[1]])
    assert opt.iterations == 3
    # all None: Keras's ValueError
    with pytest.raises(ValueError, match="No gradients"):
        opt.apply([None, None])
    opt.apply([])  # nothing, as in Keras
    assert opt.iterations == 3


def test_apply_builds_and_matches_one_to_one():
    vs = model()
    a = adadelta.Adadelta(learning_rate=1.0)
    a.apply(grads_for(vs, 1), vs)  # builds
    vs2 = model()
    b = adadelta.Adadelta(learning_rate=1.0)
    b.build(vs2)
    b.apply(grads_for(vs2, 1))
    assert same(vs, vs2)
    with pytest.raises(ValueError, match="must already be built"):
        adadelta.Adadelta().apply(grads_for(vs, 1))


def test_get_config_from_config_round_trip():
    sch = adadelta.schedules.CosineDecay(1.0, 100, alpha=0.1, warmup_target=2.0, warmup_steps=5)
    opt = adadelta.Adadelta(learning_rate=sch, rho=0.9, epsilon=1e-6, weight_decay=0.01,
                            global_clipnorm=1.0, use_ema=True, ema_momentum=0.95,
                            ema_overwrite_frequency=10, gradient_accumulation_steps=2,
                            loss_scale_factor=4.0, name="opt")
    cfg = opt.get_config()
    assert list(cfg) == ["name", "learning_rate", "weight_decay", "clipnorm", "global_clipnorm",
                         "clipvalue", "use_ema", "ema_momentum", "ema_overwrite_frequency",
                         "loss_scale_factor", "gradient_accumulation_steps", "rho", "epsilon"]
    assert cfg["learning_rate"]["class_name"] == "CosineDecay"
    assert cfg["learning_rate"]["module"] == "keras.optimizers.schedules"
    assert cfg["learning_rate"]["config"] == sch.get_config()
    again = adadelta.Adadelta.from_config(cfg)
    assert again.get_config() == cfg
    d = adadelta.Adadelta().get_config()
    assert d["learning_rate"] == float(np.float32(0.001)) and d["rho"] == 0.95
    assert d["epsilon"] == 1e-7 and d["name"] == "adadelta" and d["use_ema"] is False


def test_loss_scale_optimizer():
    inner = adadelta.Adadelta(learning_rate=1.0)
    opt = adadelta.LossScaleOptimizer(inner, initial_scale=1024.0, dynamic_growth_steps=2)
    cfg = opt.get_config()
    assert cfg["inner_optimizer"]["class_name"] == "Adadelta"
    assert cfg["initial_scale"] == 1024.0 and cfg["dynamic_growth_steps"] == 2
    assert adadelta.LossScaleOptimizer.from_config(cfg).get_config() == cfg
    vs = model()
    opt.build(vs)
    assert opt.dynamic_scale == 1024.0 and opt.scale_loss(2.0) == 2048.0
    bad = grads_for(vs, 1)
    bad[0][0, 0] = np.inf
    before = [v.copy() for v in vs]
    opt.apply(bad)  # non-finite: skipped, scale halved
    assert same(before, vs) and opt.dynamic_scale == 512.0
    opt.apply(grads_for(vs, 2))
    opt.apply(grads_for(vs, 3))
    assert opt.dynamic_scale == 1024.0  # grew after 2 finite steps
    with pytest.raises(ValueError):
        adadelta.LossScaleOptimizer(inner, foo=1)


def test_learning_rate_settable_and_callable():
    vs = model()
    opt = adadelta.Adadelta(learning_rate=0.5)
    opt.build(vs)
    assert opt.learning_rate == np.float32(0.5)
    opt.learning_rate = 0.25
    assert opt.learning_rate == np.float32(0.25)
    opt.learning_rate = adadelta.schedules.ExponentialDecay(1.0, 2, 0.5, staircase=True)
    opt.apply(grads_for(vs, 1))
    opt.apply(grads_for(vs, 2))
    assert opt.learning_rate == np.float32(0.5)  # iteration 2: 0.5 ** 1
    calls = []

    def lr():
        calls.append(1)
        return 0.125

    opt.learning_rate = lr
    opt.apply(grads_for(vs, 3))
    assert len(calls) == 1  # once per step, as Keras
    assert opt.learning_rate == np.float32(0.125)
    # a callable that raises: the step does not happen
    def boom():
        raise RuntimeError("no rate")

    opt.learning_rate = boom
    before = snapshot(opt, vs)
    with pytest.raises(RuntimeError, match="no rate"):
        opt.apply(grads_for(vs, 4))
    assert same(before, snapshot(opt, vs))
    with pytest.raises(ValueError):
        opt.learning_rate = "fast"


def test_callable_matches_constant():
    va, vb = model(), model()
    a = adadelta.Adadelta(learning_rate=lambda: 0.75)
    b = adadelta.Adadelta(learning_rate=0.75)
    a.build(va)
    b.build(vb)
    for k in range(5):
        a.apply(grads_for(va, k))
        b.apply(grads_for(vb, k))
    assert same(va, vb)


def test_exclude_from_weight_decay_by_list_and_name():
    va, vb, vc = model(), model(), model()
    a = adadelta.Adadelta(learning_rate=1.0, weight_decay=0.1)
    a.exclude_from_weight_decay(var_list=[va[1]])
    a.build(va, ["dense/kernel", "dense/bias"])
    b = adadelta.Adadelta(learning_rate=1.0, weight_decay=0.1)
    b.build(vb, ["dense/kernel", "dense/bias"])
    b.exclude_from_weight_decay(var_names=["bias"])  # after build, before the first step
    c = adadelta.Adadelta(learning_rate=1.0, weight_decay=0.1)
    c.build(vc, ["dense/kernel", "dense/bias"])
    assert not a.uses_weight_decay(va[1]) and a.uses_weight_decay(0)
    for k in range(3):
        for o, v in ((a, va), (b, vb), (c, vc)):
            o.apply(grads_for(v, k))
    assert same(va, vb) and not same(va, vc)
    with pytest.raises(errors.AdadeltaError):
        b.exclude_from_weight_decay(var_names=["kernel"])  # after the first step


def test_threads_do_not_change_results():
    outs = []
    for t in (1, 2, 3):
        vs = [np.random.default_rng(0).standard_normal(100_003).astype(np.float32)]
        opt = adadelta.Adadelta(learning_rate=1.0, global_clipnorm=1.0)
        opt.threads = t
        opt.build(vs)
        assert opt.threads == t
        for k in range(3):
            opt.apply(grads_for(vs, k))
        outs.append(vs[0].tobytes())
    assert outs[0] == outs[1] == outs[2]


def test_save_load_resume_bit_exact(tmp_path):
    path = str(tmp_path / "ckpt.safetensors")
    va = model()
    a = adadelta.Adadelta(learning_rate=1.0, use_ema=True)
    a.build(va, ["k", "b"])
    for k in range(3):
        a.apply(grads_for(va, k))
    a.save(path)
    for k in range(3, 6):
        a.apply(grads_for(va, k))
    vb = [np.zeros_like(v) for v in model()]
    b = adadelta.Adadelta(learning_rate=1.0, use_ema=True)
    b.build(vb, ["k", "b"])
    b.load(path)
    assert b.iterations == 3
    for k in range(3, 6):
        b.apply(grads_for(vb, k))
    assert same(va, vb) and same(a.variables, b.variables)
    # refused files change nothing
    before = snapshot(b, vb)
    with pytest.raises(OSError) as e:
        b.load(str(tmp_path / "missing.safetensors"))
    assert e.value.status == errors.EIO and e.value.status_name == "ADADELTA_EIO"
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(open(path, "rb").read()[:-3])
    with pytest.raises(errors.FormatError):
        b.load(str(bad))
    c = adadelta.Adadelta(learning_rate=1.0)  # no EMA: the state does not fit
    c.build([np.zeros_like(v) for v in vb], ["k", "b"])
    with pytest.raises(ValueError) as e:
        c.load(path)
    assert e.value.status == errors.EMISMATCH
    assert same(before, snapshot(b, vb))


def test_bad_input_raises_and_changes_nothing():
    vs = model()
    opt = adadelta.Adadelta(learning_rate=1.0)
    opt.build(vs)
    opt.apply(grads_for(vs, 0))
    before = snapshot(opt, vs)
    g = grads_for(vs, 1)
    cases = [
        [g[0].astype(np.float64), g[1]],                         # wrong dtype
        [np.asfortranarray(g[0]), g[1]],                         # non-contiguous
        [g[0][:, :3], g[1]],                                     # mismatched shape
        [g[0].reshape(4, 6), g[1]],                              # mismatched shape
        [g[0]],                                                  # too few
        [g[0], g[1], g[1]],                                      # too many
        [g[0].tolist(), g[1]],                                   # not an array
    ]
    for grads in cases:
        with pytest.raises(ValueError) as e:
            opt.apply(grads)
        assert isinstance(e.value, errors.AdadeltaError) and e.value.status < 0
        assert same(before, snapshot(opt, vs))
    with pytest.raises(ValueError, match="Unknown variable"):
        opt.apply([g[0]], [np.zeros((6, 4), np.float32)])
    assert same(before, snapshot(opt, vs))
    # unknown keyword, invalid values: ValueError as Keras
    for kw in ({"learning_rte": 1.0}, {"rho": 1.5}, {"epsilon": -1.0},
               {"clipnorm": 1.0, "clipvalue": 1.0}, {"gradient_accumulation_steps": 1},
               {"use_ema": "yes"}, {"learning_rate": float("inf")}, {"use_ema": True, "ema_momentum": 2.0}):
        with pytest.raises(ValueError) as e:
            adadelta.Adadelta(**kw)
        assert e.value.status_name == "ADADELTA_EINVAL"


def test_build_refuses_bad_variables_atomically():
    opt = adadelta.Adadelta()
    good = np.zeros(3, np.float32)
    for bad in (np.zeros(3, np.int32), np.zeros((3, 4), np.float32).T, [1.0, 2.0],
                np.zeros(3, np.float32)[::2]):
        with pytest.raises(ValueError):
            opt.build([good, bad])
        assert not opt.built
    ro = np.zeros(3, np.float32)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="writeable"):
        opt.build([ro])
    with pytest.raises(ValueError, match="name"):
        opt.build([good, np.zeros(2, np.float32)], names=["a", "a"])  # duplicate names (C)
    assert not opt.built
    opt.build([good])
    assert opt.built


def test_other_dtypes_are_passed_to_the_library():
    """float64, float16 and bfloat16 (as uint16 bits) map to
    ADADELTA_F64/F16/BF16 and step in their dtype: one step of a float16
    variable equals numpy's float16 run of Keras's update_step."""
    from adadelta.optimizer import numpy_dtype_code

    assert numpy_dtype_code(np.float32) == 0 and numpy_dtype_code(np.float64) == 1
    assert numpy_dtype_code(np.float16) == 2 and numpy_dtype_code(np.uint16) == 3
    for dt in (np.float64, np.float16, np.uint16):
        opt = adadelta.Adadelta()
        v = np.zeros(4, dt)
        opt.build([v])
        opt.apply([np.full(4, 0x3f80 if dt == np.uint16 else 1, dt)])  # bfloat16 1.0
        assert np.all(v != 0)
    h = np.array([0.5, -1.25, 3.0], np.float16)
    g = np.array([0.1, -2.0, 7.5], np.float16)
    opt = adadelta.Adadelta(learning_rate=1.0)
    opt.build([h])
    opt.apply([g])
    T = np.float16
    ag = T(0.95) * np.zeros(3, T) + T(1 - 0.95) * (g * g)
    delta = -((np.sqrt(np.zeros(3, T) + T(1e-7)) * g) / np.sqrt(ag + T(1e-7)))
    want = np.array([0.5, -1.25, 3.0], T) + T(np.float32(1.0)) * delta
    assert h.tobytes() == want.tobytes()


def test_errors_carry_status():
    with pytest.raises(adadelta.AdadeltaError) as e:
        adadelta.Adadelta(rho=3.0)
    assert isinstance(e.value, ValueError) and e.value.status == -1
    assert "rho" in str(e.value) and e.value.status_name == "ADADELTA_EINVAL"
    assert issubclass(errors.AdadeltaIOError, OSError)
    assert issubclass(errors.AdadeltaMemoryError, MemoryError)
    assert errors.error_for(errors.ESTATE, "x").status_name == "ADADELTA_ESTATE"


def test_module_facts():
    assert adadelta.__version__.count(".") == 2
    assert adadelta.kernel() in ("avx512fp16", "avx512f", "avx2", "default")
    assert os.path.exists(adadelta.LIB_PATH) or "adadelta" in adadelta.LIB_PATH
