"""nn: Module bookkeeping, state_dict, layers; Linear/Conv2d/pooling against PyTorch and direct loops."""

import math
from collections import OrderedDict

import numpy as np
import pytest

from mlsys_lab import Tensor, nn

RNG = np.random.default_rng(1234)


def _t(a, grad=True):
    return Tensor(np.asarray(a, dtype=np.float64), requires_grad=grad)


# ----------------------------------------------------------------------------- Module bookkeeping

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(4, 3)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(3, 2, bias=False)
        self.scale = nn.Parameter(np.ones(2, dtype=np.float32))
        self.not_a_param = np.zeros(5)          # plain arrays are not parameters

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x))) * self.scale


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.block = Block()
        self.head = nn.Sequential(nn.Linear(2, 2), nn.GELU())

    def forward(self, x):
        return self.head(self.block(x))


def test_named_parameters_order_and_names():
    # PyTorch's order: module by module (depth first), each module's own parameters first
    names = [n for n, _ in Net().named_parameters()]
    assert names == ["block.scale", "block.fc1.weight", "block.fc1.bias", "block.fc2.weight",
                     "head.0.weight", "head.0.bias"]
    net = Net()
    assert len(list(net.parameters())) == 6
    assert net.num_parameters() == 12 + 3 + 6 + 2 + 4 + 2
    assert [n for n, _ in net.named_children()] == ["block", "head"]
    assert [n for n, _ in net.named_modules()] == ["", "block", "block.fc1", "block.act", "block.fc2",
                                                   "head", "head.0", "head.1"]
    assert all(isinstance(p, nn.Parameter) and p.requires_grad for p in net.parameters())


def test_shared_parameter_listed_once():
    a = nn.Linear(3, 3)
    seq = nn.Sequential(a, nn.ReLU(), a)
    assert len(list(seq.parameters())) == 2


def test_train_eval_propagate():
    net = Net()
    assert all(m.training for m in net.modules())
    assert net.eval() is net
    assert not any(m.training for m in net.modules())
    net.train()
    assert all(m.training for m in net.modules())
    with pytest.raises(TypeError, match="bool"):
        net.train("no")


def test_zero_grad_and_call_on_ndarray():
    net = Net()
    out = net(RNG.standard_normal((5, 4)).astype(np.float32))   # ndarrays are wrapped
    assert isinstance(out, Tensor) and out.shape == (5, 2) and out.dtype == np.float32
    out.sum().backward()
    assert all(p.grad is not None and p.grad.shape == p.shape for p in net.parameters())
    net.zero_grad()
    assert all(p.grad is None for p in net.parameters())


def test_forward_not_implemented():
    with pytest.raises(NotImplementedError, match="forward"):
        nn.Module()(Tensor(np.zeros(1)))


def test_repr_is_readable():
    r = repr(nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(256, 10)))
    assert r.splitlines()[0] == "Sequential("
    assert "(0): Conv2d(1, 4, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))" in r
    assert "(3): Linear(in_features=256, out_features=10, bias=True)" in r
    assert "(block): Block(" in repr(Net()) and "    (fc1): Linear(" in repr(Net())
    assert repr(nn.Parameter(np.zeros((2, 3), np.float32))) == "Parameter(shape=(2, 3), dtype=float32)"


# ----------------------------------------------------------------------------- state_dict

def test_state_dict_round_trip():
    nn.init.manual_seed(1)
    a = Net()
    nn.init.manual_seed(2)
    b = Net()
    x = RNG.standard_normal((3, 4)).astype(np.float32)
    assert not np.allclose(a(x).data, b(x).data)
    sd = a.state_dict()
    assert list(sd) == [n for n, _ in a.named_parameters()]
    sd["block.scale"][0] = 123.0                  # a copy: the model is unchanged
    assert a.block.scale.data[0] == 1.0
    sd["block.scale"][0] = 1.0
    ids = [id(p.data) for p in b.parameters()]
    missing, unexpected = b.load_state_dict(sd)
    assert missing == [] and unexpected == []
    np.testing.assert_array_equal(a(x).data, b(x).data)
    assert ids == [id(p.data) for p in b.parameters()]     # loaded in place (optimizers keep working)


def test_load_state_dict_missing_and_unexpected_keys():
    net = Net()
    sd = net.state_dict()
    del sd["head.0.bias"]
    sd["head.1.weight"] = np.zeros(2)
    with pytest.raises(nn.StateDictKeyError) as e:
        Net().load_state_dict(sd)
    msg = str(e.value)
    assert "missing key(s) ['head.0.bias']" in msg and "unexpected key(s) ['head.1.weight']" in msg
    assert isinstance(e.value, KeyError)
    other = Net()
    missing, unexpected = other.load_state_dict(sd, strict=False)
    assert missing == ["head.0.bias"] and unexpected == ["head.1.weight"]
    np.testing.assert_array_equal(other.head[0].weight.data, net.head[0].weight.data)


def test_load_state_dict_shape_mismatch_changes_nothing():
    net = Net()
    before = net.state_dict()
    sd = Net().state_dict()
    sd["block.fc2.weight"] = np.zeros((3, 2))
    with pytest.raises(ValueError, match=r"'block.fc2.weight'.*\(3, 2\).*\(2, 3\)"):
        net.load_state_dict(sd)
    for k, v in net.state_dict().items():           # checked before anything was copied
        np.testing.assert_array_equal(v, before[k])
    with pytest.raises(TypeError, match="dict"):
        net.load_state_dict([1, 2])


# ----------------------------------------------------------------------------- init

def test_linear_init_bounds_dtype_and_seeding():
    lin = nn.Linear(100, 50)
    assert lin.weight.shape == (50, 100) and lin.bias.shape == (50,)
    assert lin.weight.dtype == np.float32 and lin.bias.dtype == np.float32
    bound = 1 / math.sqrt(100)
    assert np.abs(lin.weight.data).max() <= bound and np.abs(lin.bias.data).max() <= bound
    assert np.abs(lin.weight.data).max() > 0.9 * bound          # uniform over the whole interval
    np.testing.assert_allclose(lin.weight.data.std(), bound / math.sqrt(3), rtol=0.05)
    nn.init.manual_seed(7)
    a = nn.Linear(5, 4)
    nn.init.manual_seed(7)
    b = nn.Linear(5, 4)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    c, d = nn.Linear(5, 4, rng=3), nn.Linear(5, 4, rng=np.random.default_rng(3))
    np.testing.assert_array_equal(c.weight.data, d.weight.data)
    assert not np.array_equal(a.weight.data, c.weight.data)
    assert nn.Linear(3, 2, dtype=np.float64).weight.dtype == np.float64


def test_conv_init_fan_in():
    conv = nn.Conv2d(3, 8, (3, 5))
    assert conv.weight.shape == (8, 3, 3, 5)
    assert nn.init.calculate_fan_in_and_fan_out(conv.weight) == (45, 120)
    assert np.abs(conv.weight.data).max() <= 1 / math.sqrt(45)
    with pytest.raises(TypeError, match="rng"):
        nn.Linear(2, 2, rng="seed")


# ----------------------------------------------------------------------------- layers

def test_linear_matches_formula_and_leading_dims():
    lin = nn.Linear(4, 3, dtype=np.float64)
    x = _t(RNG.standard_normal((2, 5, 4)))
    out = lin(x)
    np.testing.assert_allclose(out.data, x.data @ lin.weight.data.T + lin.bias.data, rtol=1e-12)
    g = RNG.standard_normal(out.shape)
    out.backward(g)
    np.testing.assert_allclose(x.grad, g @ lin.weight.data, rtol=1e-12)
    np.testing.assert_allclose(lin.weight.grad, np.einsum("bno,bni->oi", g, x.data), rtol=1e-12)
    np.testing.assert_allclose(lin.bias.grad, g.sum((0, 1)), rtol=1e-12)


def test_linear_errors():
    with pytest.raises(ValueError, match=r"last dimension is 4, got shape \(2, 3\)"):
        nn.Linear(4, 3)(Tensor(np.zeros((2, 3), np.float32)))
    with pytest.raises(ValueError, match="in_features"):
        nn.Linear(0, 3)


def test_sequential_container():
    seq = nn.Sequential(nn.Linear(2, 3), nn.ReLU())
    seq.append(nn.Linear(3, 1))
    assert len(seq) == 3 and isinstance(seq[-1], nn.Linear) and isinstance(seq[1], nn.ReLU)
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert len(seq[1:]) == 2
    named = nn.Sequential(OrderedDict(fc=nn.Linear(2, 2), act=nn.ReLU()))
    assert [n for n, _ in named.named_parameters()] == ["fc.weight", "fc.bias"]
    assert seq(np.ones((4, 2), np.float32)).shape == (4, 1)
    with pytest.raises(TypeError, match="Modules"):
        nn.Sequential(nn.ReLU(), lambda x: x)


def test_flatten_relu_dropout():
    x = _t(RNG.standard_normal((2, 3, 4, 5)))
    assert nn.Flatten()(x).shape == (2, 60)
    assert nn.Flatten(2)(x).shape == (2, 3, 20)
    np.testing.assert_array_equal(nn.ReLU()(x).data, np.maximum(x.data, 0))
    drop = nn.Dropout(0.5, rng=0)
    y = drop(x)
    kept = y.data != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(y.data[kept], 2 * x.data[kept])
    drop.eval()
    assert drop(x) is x
    with pytest.raises(ValueError, match="dropout probability"):
        nn.Dropout(1.0)


# ----------------------------------------------------------------------------- conv and pooling

def _conv_loop(x, w, b, stride, padding):
    """Direct definition: out[n, o, i, j] = sum_{c, u, v} xpad[n, c, i*s + u, j*s + v] * w[o, c, u, v] + b[o]."""
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    n, _, hp, wp = xp.shape
    o, _, kh, kw = w.shape
    oh, ow = (hp - kh) // sh + 1, (wp - kw) // sw + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = xp[:, :, i * sh:i * sh + kh, j * sw:j * sw + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out + (0 if b is None else b[None, :, None, None])


CONV_CASES = [  # (N, C, H, W, O, kernel, stride, padding, bias)
    (2, 1, 8, 8, 4, 3, 1, 1, True),
    (3, 3, 9, 7, 5, 3, 2, 0, True),
    (2, 2, 6, 7, 3, (2, 3), (2, 1), (1, 0), False),
    (1, 4, 5, 5, 2, 5, 1, 2, True),
]


@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_direct_loop_and_finite_differences(case):
    n, c, h, w, o, k, s, p, bias = case
    conv = nn.Conv2d(c, o, k, stride=s, padding=p, bias=bias, dtype=np.float64, rng=0)
    x = _t(RNG.standard_normal((n, c, h, w)))
    out = conv(x)
    ref = _conv_loop(x.data, conv.weight.data, None if conv.bias is None else conv.bias.data,
                     conv.stride, conv.padding)
    np.testing.assert_allclose(out.data, ref, rtol=1e-10, atol=1e-12)
    g = RNG.standard_normal(out.shape)
    out.backward(g)

    def f(xv, wv):
        return (_conv_loop(xv, wv, None, conv.stride, conv.padding) * g).sum()

    eps = 1e-6
    for arr, grad, which in ((x.data, x.grad, "x"), (conv.weight.data, conv.weight.grad, "w")):
        for idx in [tuple(RNG.integers(0, d) for d in arr.shape) for _ in range(6)]:
            plus, minus = arr.copy(), arr.copy()
            plus[idx] += eps
            minus[idx] -= eps
            args_p = (plus, conv.weight.data) if which == "x" else (x.data, plus)
            args_m = (minus, conv.weight.data) if which == "x" else (x.data, minus)
            numeric = (f(*args_p) - f(*args_m)) / (2 * eps)
            assert abs(numeric - grad[idx]) <= 1e-6 * max(1.0, abs(numeric)), (which, idx)
    if bias:
        np.testing.assert_allclose(conv.bias.grad, g.sum((0, 2, 3)), rtol=1e-10)


def test_im2col_col2im_are_adjoint():
    x = RNG.standard_normal((2, 3, 7, 6))
    cols = nn.im2col(x, 3, stride=2, padding=1)
    assert cols.shape == (2 * 4 * 3, 27)
    c = RNG.standard_normal(cols.shape)
    back = nn.col2im(c, x.shape, 3, stride=2, padding=1)
    assert back.shape == x.shape
    np.testing.assert_allclose((cols * c).sum(), (x * back).sum(), rtol=1e-10)


def test_conv_errors():
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(ValueError, match=r"\(N, C, H, W\), got shape \(3, 8, 8\)"):
        conv(np.zeros((3, 8, 8), np.float32))
    with pytest.raises(ValueError, match=r"2 channels.*expects 3"):
        conv(np.zeros((1, 2, 8, 8), np.float32))
    with pytest.raises(ValueError, match="larger than the padded input"):
        conv(np.zeros((1, 3, 2, 2), np.float32))
    with pytest.raises(ValueError, match="stride"):
        nn.Conv2d(3, 4, 3, stride=0)


def test_pooling_shapes_and_values():
    x = _t(np.arange(16.0).reshape(1, 1, 4, 4))
    np.testing.assert_array_equal(nn.MaxPool2d(2)(x).data[0, 0], [[5, 7], [13, 15]])
    np.testing.assert_array_equal(nn.AvgPool2d(2)(x).data[0, 0], [[2.5, 4.5], [10.5, 12.5]])
    y = nn.max_pool2d(x, 2)
    y.sum().backward()
    assert x.grad.sum() == 4 and x.grad[0, 0, 1, 1] == 1 and x.grad[0, 0, 0, 0] == 0


# ----------------------------------------------------------------------------- against PyTorch

@pytest.mark.torch
@pytest.mark.parametrize("case", CONV_CASES)
def test_conv2d_matches_torch(case):
    torch = pytest.importorskip("torch")
    n, c, h, w, o, k, s, p, bias = case
    conv = nn.Conv2d(c, o, k, stride=s, padding=p, bias=bias, dtype=np.float64, rng=1)
    x = _t(RNG.standard_normal((n, c, h, w)))
    out = conv(x)
    g = RNG.standard_normal(out.shape)
    out.backward(g)
    tx = torch.tensor(x.data, requires_grad=True)
    tw = torch.tensor(conv.weight.data, requires_grad=True)
    tb = torch.tensor(conv.bias.data, requires_grad=True) if bias else None
    tout = torch.nn.functional.conv2d(tx, tw, tb, stride=s, padding=p)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(conv.weight.grad, tw.grad.numpy(), rtol=1e-6, atol=1e-10)
    if bias:
        np.testing.assert_allclose(conv.bias.grad, tb.grad.numpy(), rtol=1e-6, atol=1e-10)


@pytest.mark.torch
def test_linear_mlp_matches_torch():
    torch = pytest.importorskip("torch")
    model = nn.Sequential(nn.Linear(6, 5, dtype=np.float64), nn.GELU(),
                          nn.Linear(5, 4, dtype=np.float64), nn.ReLU(), nn.Linear(4, 3, dtype=np.float64))
    tmodel = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.GELU(), torch.nn.Linear(5, 4),
                                 torch.nn.ReLU(), torch.nn.Linear(4, 3)).double()
    tmodel.load_state_dict({k: torch.tensor(v) for k, v in model.state_dict().items()})
    x = RNG.standard_normal((7, 6))
    out = model(_t(x))
    tx = torch.tensor(x, requires_grad=True)
    tout = tmodel(tx)
    g = RNG.standard_normal(out.shape)
    out.backward(g)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6)
    tgrads = {k: v.grad.numpy() for k, v in tmodel.named_parameters()}
    for k, p in model.named_parameters():
        np.testing.assert_allclose(p.grad, tgrads[k], rtol=1e-6, atol=1e-12, err_msg=k)
    # and torch's state_dict loads into ours
    model2 = nn.Sequential(nn.Linear(6, 5, dtype=np.float64), nn.GELU(),
                           nn.Linear(5, 4, dtype=np.float64), nn.ReLU(), nn.Linear(4, 3, dtype=np.float64))
    model2.load_state_dict({k: v.numpy() for k, v in tmodel.state_dict().items()})
    np.testing.assert_allclose(model2(x).data, tout.detach().numpy(), rtol=1e-6)


@pytest.mark.torch
@pytest.mark.parametrize("kind,k,s,p", [("max", 2, None, 0), ("max", 3, 1, 1), ("avg", 2, None, 0),
                                        ("avg", 3, 2, 1)])
def test_pooling_matches_torch(kind, k, s, p):
    torch = pytest.importorskip("torch")
    x = _t(RNG.standard_normal((2, 3, 7, 6)))
    f = nn.max_pool2d if kind == "max" else nn.avg_pool2d
    tf = torch.nn.functional.max_pool2d if kind == "max" else torch.nn.functional.avg_pool2d
    out = f(x, k, s, p)
    g = RNG.standard_normal(out.shape)
    out.backward(g)
    tx = torch.tensor(x.data, requires_grad=True)
    tout = tf(tx, k, s, p)
    tout.backward(torch.tensor(g))
    np.testing.assert_allclose(out.data, tout.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad, tx.grad.numpy(), rtol=1e-6, atol=1e-12)
