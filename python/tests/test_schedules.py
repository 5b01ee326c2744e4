"""adadelta.schedules: Keras's configs, serialization, and evaluation equal
to what the optimizer applies at each iteration."""

import math

import pytest

np = pytest.importorskip("numpy", reason="numpy is not installed (python3-numpy)")

import adadelta  # noqa: E402
from adadelta import schedules as S  # noqa: E402

ALL = [
    S.ExponentialDecay(1.0, 5, 0.9),
    S.ExponentialDecay(0.5, 3, 0.5, staircase=True, name="exp"),
    S.InverseTimeDecay(1.0, 4, 0.5),
    S.InverseTimeDecay(1.0, 4, 0.5, staircase=True),
    S.PolynomialDecay(1.0, 10, end_learning_rate=0.01, power=2.0),
    S.PolynomialDecay(1.0, 4, cycle=True),
    S.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1]),
    S.CosineDecay(1.0, 10, alpha=0.1),
    S.CosineDecay(0.1, 10, warmup_target=1.0, warmup_steps=3),
    S.CosineDecayRestarts(1.0, 3, t_mul=2.0, m_mul=0.9, alpha=0.05),
    S.CosineDecayRestarts(1.0, 3, t_mul=1.0),
]


@pytest.mark.parametrize("s", ALL, ids=[type(s).__name__ for s in ALL])
def test_call_is_the_rate_the_optimizer_applies(s):
    w = np.zeros(3, np.float32)
    opt = adadelta.Adadelta(learning_rate=s)
    opt.build([w])
    for step in range(25):
        assert opt.learning_rate == s(step), step
        assert isinstance(s(step), np.float32)
        opt.apply([np.ones(3, np.float32)])


@pytest.mark.parametrize("s", ALL, ids=[type(s).__name__ for s in ALL])
def test_config_round_trip(s):
    cfg = s.get_config()
    assert "name" in cfg and "class_name" not in cfg  # Keras: the constructor's arguments
    assert type(s).from_config(cfg) == s
    ser = S.serialize(s)
    assert ser == {"module": "keras.optimizers.schedules", "class_name": type(s).__name__,
                   "config": cfg, "registered_name": None}
    assert S.deserialize(ser) == s
    # and as the C library writes it inside the optimizer's config
    got = adadelta.Adadelta(learning_rate=s).get_config()["learning_rate"]
    assert got["class_name"] == type(s).__name__ and got["module"] == ser["module"]
    assert S.deserialize(got)(7) == s(7)


def test_formulas_in_float32():
    f32 = np.float32
    s = S.ExponentialDecay(1.0, 5, 0.9)
    assert s(7) == f32(1.0) * np.power(f32(0.9), f32(7) / f32(5))
    s = S.InverseTimeDecay(2.0, 4, 0.5)
    assert s(6) == f32(2.0) / (f32(1) + f32(0.5) * (f32(6) / f32(4)))
    s = S.PiecewiseConstantDecay([2, 5], [1.0, 0.5, 0.1])
    assert [s(k) for k in (0, 2, 3, 5, 6)] == [f32(1.0), f32(1.0), f32(0.5), f32(0.5), f32(0.1)]
    s = S.CosineDecay(1.0, 10)
    assert abs(s(5) - 0.5) < 1e-6 and s(10) == 0 and s(20) == 0
    assert abs(S.CosineDecay(1.0, 10, alpha=0.2)(10) - 0.2) < 1e-7
    s = S.CosineDecay(0.0, 10, warmup_target=1.0, warmup_steps=4)
    assert s(2) == f32(0.5) and s(4) == f32(1.0)
    s = S.PolynomialDecay(1.0, 10, end_learning_rate=0.0, power=1.0)
    assert s(5) == f32(0.5) and s(30) == 0
    s = S.CosineDecayRestarts(1.0, 4, t_mul=1.0)
    assert abs(s(2) - 0.5) < 1e-6 and s(4) == 1.0
    assert abs(S.CosineDecayRestarts(1.0, 4)(1) - 0.5 * (1 + math.cos(math.pi / 4))) < 1e-6


def test_keras_defaults_and_errors():
    assert S.PiecewiseConstantDecay([1], [1.0, 0.5]).name == "PiecewiseConstant"
    assert S.CosineDecayRestarts(1.0, 3).name == "SGDRDecay"
    assert S.PolynomialDecay(1.0, 3).get_config()["end_learning_rate"] == 0.0001
    with pytest.raises(ValueError, match="1 less"):
        S.PiecewiseConstantDecay([1, 2], [1.0])
    with pytest.raises(ValueError):
        S.ExponentialDecay("1", 5, 0.9)
    with pytest.raises(TypeError):
        S.ExponentialDecay(1.0, 5, 0.9, bogus=1)
    with pytest.raises(ValueError, match="decay_steps"):
        adadelta.Adadelta(learning_rate=S.ExponentialDecay(1.0, 0, 0.9))
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        S.deserialize({"class_name": "StepDecay", "config": {}})
