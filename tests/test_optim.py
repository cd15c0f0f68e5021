"""Optimizers and LR schedules: same updates as torch.optim on the same inputs (float64, 1e-6 rel)."""

import numpy as np
import pytest

from mlsys_lab import optim


class P:
    """The smallest thing an optimizer can update: .data and .grad ndarrays."""

    def __init__(self, data):
        self.data = np.array(data, dtype=np.float64)
        self.grad = None


SHAPES = [(3, 4), (4,), (2, 1, 3)]


def _init(seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(s) for s in SHAPES], [rng.standard_normal(s) for s in SHAPES]


def _grad(w, target, k):
    # gradient of a quadratic pulled towards `target`, plus a step-dependent term, so the
    # trajectory depends on the parameters themselves (not just on a fixed gradient list)
    return 2.0 * (w - target) + 0.1 * np.sin(k + w)


def _run_ours(cls, kwargs, steps=6, seed=0):
    w0, targets = _init(seed)
    ps = [P(w) for w in w0]
    opt = cls(ps, **kwargs)
    for k in range(steps):
        for p, t in zip(ps, targets):
            p.grad = _grad(p.data, t, k)
        opt.step()
    return [p.data for p in ps]


def _run_torch(cls, kwargs, steps=6, seed=0):
    torch = pytest.importorskip("torch")
    w0, targets = _init(seed)
    ps = [torch.tensor(w, dtype=torch.float64, requires_grad=True) for w in w0]
    opt = cls(ps, **kwargs)
    for k in range(steps):
        for p, t in zip(ps, targets):
            p.grad = torch.from_numpy(_grad(p.detach().numpy(), t, k))
        opt.step()
    return [p.detach().numpy() for p in ps]


CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.3)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3, amsgrad=True)),
]


@pytest.mark.torch
@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{sorted(k.items())}" for n, k in CASES])
def test_optimizer_matches_torch(name, kwargs):
    torch = pytest.importorskip("torch")
    ours = _run_ours(getattr(optim, name), kwargs)
    ref = _run_torch(getattr(torch.optim, name), kwargs)
    for a, b in zip(ours, ref):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-12)


def test_adam_and_adamw_weight_decay_differ():
    # Same lr and decay: L2-in-the-gradient (Adam) and decoupled decay (AdamW) give different weights.
    a = _run_ours(optim.Adam, dict(lr=0.01, weight_decay=0.1))
    b = _run_ours(optim.AdamW, dict(lr=0.01, weight_decay=0.1))
    assert not np.allclose(a[0], b[0])
    # ... and without decay they are the same algorithm
    a = _run_ours(optim.Adam, dict(lr=0.01))
    b = _run_ours(optim.AdamW, dict(lr=0.01, weight_decay=0.0))
    np.testing.assert_array_equal(a[0], b[0])


def test_adamw_default_weight_decay():
    opt = optim.AdamW([P(np.zeros(2))])
    assert opt.param_groups[0]["weight_decay"] == 1e-2
    assert optim.Adam([P(np.zeros(2))]).param_groups[0]["weight_decay"] == 0.0


def test_plain_sgd_formula_and_float32_dtype():
    p = P(np.ones(3))
    p.data = p.data.astype(np.float32)
    p.grad = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    g_before = p.grad.copy()
    data_id = id(p.data)
    optim.SGD([p], lr=0.5, weight_decay=0.1).step()
    np.testing.assert_allclose(p.data, 1 - 0.5 * (g_before + 0.1), rtol=1e-6)
    assert p.data.dtype == np.float32 and id(p.data) == data_id   # updated in place
    np.testing.assert_array_equal(p.grad, g_before)                 # the gradient is not modified


def test_adam_state_and_grad_untouched_float32():
    p = P(np.ones(3))
    p.data = p.data.astype(np.float32)
    p.grad = np.full(3, 0.5, dtype=np.float32)
    opt = optim.Adam([p], lr=0.1, weight_decay=0.1)
    opt.step()
    # first Adam step moves every weight by about lr (m / sqrt(v) = sign(g) after bias correction)
    np.testing.assert_allclose(p.data, 0.9, rtol=1e-5)
    assert p.data.dtype == np.float32 and p.grad[0] == 0.5
    assert opt.state[id(p)]["step"] == 1


def test_params_without_grad_are_skipped():
    a, b = P(np.ones(2)), P(np.ones(2))
    a.grad = np.ones(2)
    opt = optim.SGD([a, b], lr=1.0, momentum=0.9)
    opt.step()
    np.testing.assert_array_equal(a.data, 0.0)
    np.testing.assert_array_equal(b.data, 1.0)
    assert id(b) not in opt.state or not opt.state[id(b)]


def test_zero_grad():
    a = P(np.ones(2))
    a.grad = np.ones(2)
    opt = optim.SGD([a], lr=0.1)
    opt.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(a.grad, 0.0)
    opt.zero_grad()
    assert a.grad is None


def test_param_groups_and_lr_attribute():
    a, b = P(np.zeros(1)), P(np.zeros(1))
    opt = optim.SGD([{"params": [a]}, {"params": [b], "lr": 1.0}], lr=0.1)
    a.grad, b.grad = np.ones(1), np.ones(1)
    opt.step()
    np.testing.assert_allclose([a.data[0], b.data[0]], [-0.1, -1.0])
    assert opt.lr == 0.1
    opt.lr = 0.5
    assert [g["lr"] for g in opt.param_groups] == [0.5, 0.5]
    assert "group 1" in repr(opt)


@pytest.mark.parametrize("make,match", [
    (lambda ps: optim.SGD(ps, lr=-1.0), "learning rate"),
    (lambda ps: optim.SGD(ps, lr=0.1, nesterov=True), "Nesterov"),
    (lambda ps: optim.SGD(ps, lr=0.1, momentum=-0.5), "momentum"),
    (lambda ps: optim.Adam(ps, betas=(1.0, 0.9)), "beta"),
    (lambda ps: optim.Adam(ps, weight_decay=-1), "weight_decay"),
    (lambda ps: optim.SGD([], lr=0.1), "empty"),
    (lambda ps: optim.SGD([{"params": ps, "mom": 0.9}], lr=0.1), "unknown option"),
    (lambda ps: optim.SGD(ps + ps, lr=0.1), "more than once"),
])
def test_bad_arguments_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make([P(np.zeros(2))])


def test_bad_param_types_raise():
    with pytest.raises(TypeError, match="single parameter"):
        optim.SGD(P(np.zeros(2)), lr=0.1)
    with pytest.raises(TypeError, match=r"\.data and \.grad"):
        optim.SGD([np.zeros(2)], lr=0.1)


def test_grad_shape_mismatch_raises():
    p = P(np.zeros(3))
    p.grad = np.zeros(4)
    with pytest.raises(ValueError, match=r"gradient shape \(4,\) does not match parameter shape \(3,\)"):
        optim.SGD([p], lr=0.1).step()


# ----------------------------------------------------------------------------- schedules

SCHEDULES = {
    "step": lambda m, o: m.StepLR(o, step_size=3, gamma=0.5),
    "linear": lambda m, o: m.LinearLR(o, start_factor=0.1, total_iters=4),
    "linear-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.2, total_iters=5),
    "cosine": lambda m, o: m.CosineAnnealingLR(o, T_max=7, eta_min=0.001),
    "warmup-cosine": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=3), m.CosineAnnealingLR(o, T_max=10)],
        milestones=[3]),
    "three-phase": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.25, total_iters=2), m.StepLR(o, step_size=2, gamma=0.5),
            m.CosineAnnealingLR(o, T_max=5, eta_min=0.01)], milestones=[3, 8]),
}


def _lr_trace(mod, opt_cls, make, steps, params):
    opt = opt_cls([{"params": params[:1]}, {"params": params[1:], "lr": 0.3}], lr=0.1)
    sched = make(mod, opt)
    trace = [sched.get_last_lr()]
    for _ in range(steps):
        opt.step()
        sched.step()
        trace.append(sched.get_last_lr())
        assert [g["lr"] for g in opt.param_groups] == trace[-1]
    return np.array(trace, dtype=float)


@pytest.mark.torch
@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_schedule_matches_torch(name):
    torch = pytest.importorskip("torch")
    # 25 steps: past T_max, so the cosine's second half-period is compared too
    ours = _lr_trace(optim, optim.SGD, SCHEDULES[name], 25, [P(np.zeros(1)), P(np.zeros(1))])
    tps = [torch.zeros(1, requires_grad=True) for _ in range(2)]
    ref = _lr_trace(torch.optim.lr_scheduler, torch.optim.SGD, SCHEDULES[name], 25, tps)
    np.testing.assert_allclose(ours, ref, rtol=1e-6)


def test_schedule_closed_forms():
    opt = optim.SGD([P(np.zeros(1))], lr=1.0)
    s = optim.CosineAnnealingLR(opt, T_max=10, eta_min=0.1)
    lrs = [s.get_last_lr()[0]]
    for _ in range(10):
        s.step()
        lrs.append(s.get_last_lr()[0])
    np.testing.assert_allclose(lrs, [s.closed_form_lr(e)[0] for e in range(11)], rtol=1e-12)
    assert lrs[0] == 1.0 and abs(lrs[-1] - 0.1) < 1e-12 and abs(lrs[5] - 0.55) < 1e-12

    opt = optim.SGD([P(np.zeros(1))], lr=1.0)
    s = optim.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(4):
        s.step()
    np.testing.assert_allclose(s.get_last_lr(), [0.01])
    assert opt.lr == s.get_last_lr()[0]


def test_warmup_then_cosine_shape():
    opt = optim.AdamW([P(np.zeros(1))], lr=1.0)
    s = optim.SequentialLR(opt, [optim.LinearLR(opt, start_factor=0.2, total_iters=4),
                                 optim.CosineAnnealingLR(opt, T_max=6)], milestones=[4])
    lrs = [s.get_last_lr()[0]]
    for _ in range(10):
        opt.step()
        s.step()
        lrs.append(s.get_last_lr()[0])
    np.testing.assert_allclose(lrs[:5], [0.2, 0.4, 0.6, 0.8, 1.0])   # warm-up, then the peak
    assert all(a > b for a, b in zip(lrs[4:], lrs[5:]))            # then monotone decay to 0
    assert abs(lrs[-1]) < 1e-12


def test_schedule_errors():
    opt = optim.SGD([P(np.zeros(1))], lr=1.0)
    with pytest.raises(TypeError, match="not an mlsys_lab.optim.Optimizer"):
        optim.StepLR(object(), step_size=1)
    with pytest.raises(ValueError, match="step_size"):
        optim.StepLR(opt, step_size=0)
    with pytest.raises(ValueError, match="start_factor"):
        optim.LinearLR(opt, start_factor=0.0)
    with pytest.raises(ValueError, match="T_max"):
        optim.CosineAnnealingLR(opt, T_max=0)
    a = optim.LinearLR(opt, total_iters=2)
    with pytest.raises(ValueError, match="one milestone fewer"):
        optim.SequentialLR(opt, [a], milestones=[2])
    other = optim.SGD([P(np.zeros(1))], lr=1.0)
    with pytest.raises(ValueError, match="different optimizer"):
        optim.SequentialLR(opt, [a, optim.StepLR(other, step_size=1)], milestones=[2])
