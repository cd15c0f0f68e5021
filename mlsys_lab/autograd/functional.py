"""Functions on Tensors whose backward is written by hand rather than composed from smaller ops.

Each one is a single graph node made with ``make_op``: the forward is NumPy code chosen for numerical
stability, the backward is the closed-form derivative. Composing them from ``exp``, ``sum`` and ``/``
would also give correct gradients, but slower and, for log-softmax and cross-entropy, less accurate.

* ``softmax(x, axis)``: ``y = exp(x - max) / sum(exp(x - max))``; backward ``dx = y * (dy - sum(y * dy))``.
* ``log_softmax(x, axis)``: ``x - max - log(sum(exp(x - max)))``; backward ``dx = dy - softmax(x) * sum(dy)``.
* ``cross_entropy(logits, targets)``: log-softmax and the negative log-likelihood fused; backward
  ``(softmax(logits) - onehot(targets)) / N``.
* ``einsum(subscripts, *operands)``: any Einstein summation; the gradient of each operand is another einsum.
* ``relu``, ``gelu`` (exact with erf, or the tanh approximation), ``sigmoid``, ``tanh``, ``linear``.

``lower_einsum`` / ``einsum_via_matmul`` show how a two-operand einsum becomes transpose + reshape +
one batched matrix multiply, the way frameworks run it on BLAS.
"""

from __future__ import annotations

import math
import string

import numpy as np

from .tensor import Tensor, make_op, unbroadcast, _normalize_axes

__all__ = [
    "softmax", "log_softmax", "cross_entropy", "nll_loss", "mse_loss", "einsum", "relu", "gelu",
    "sigmoid", "tanh", "linear", "erf", "lower_einsum", "einsum_via_matmul", "EinsumLowering",
]


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def _single_axis(axis, ndim, op):
    if axis is None or isinstance(axis, (tuple, list)):
        raise TypeError(f"{op}: axis must be a single int, got {axis!r}")
    axes = _normalize_axes(axis, ndim, op)
    return axes[0] if axes else None


# ----------------------------------------------------------------------------------------------------------
# Softmax family
# ----------------------------------------------------------------------------------------------------------

def softmax(x, axis: int = -1) -> Tensor:
    """Softmax along ``axis``: ``exp(x_i) / sum_j exp(x_j)``.

    Forward subtracts the maximum first, which changes nothing mathematically but keeps ``exp`` from
    overflowing. Backward: with ``y = softmax(x)`` the Jacobian is ``diag(y) - y y^T``, so
    ``dx = y * (dy - sum(y * dy))``, which never builds the n-by-n matrix.
    """
    x = _tensor(x)
    a = _single_axis(axis, x.ndim, "softmax")
    if a is None:
        return make_op(np.ones_like(x.data), (x,), lambda g: (np.zeros_like(g),), "softmax",
                       (("axis", a),))
    e = np.exp(x.data - x.data.max(axis=a, keepdims=True))
    y = e / e.sum(axis=a, keepdims=True)

    def backward(g):
        yg = y * g
        return (yg - y * yg.sum(axis=a, keepdims=True),)

    return make_op(y, (x,), backward, "softmax", (("axis", a),))


def log_softmax(x, axis: int = -1) -> Tensor:
    """``log(softmax(x))`` along ``axis``, computed as ``x - max - log(sum(exp(x - max)))``.

    Taking the log of a softmax that underflowed to 0 would give ``-inf``; this form stays finite.
    Backward: ``dx = dy - softmax(x) * sum(dy)``.
    """
    x = _tensor(x)
    a = _single_axis(axis, x.ndim, "log_softmax")
    if a is None:
        return make_op(np.zeros_like(x.data), (x,), lambda g: (np.zeros_like(g),), "log_softmax",
                       (("axis", a),))
    shifted = x.data - x.data.max(axis=a, keepdims=True)
    out = shifted - np.log(np.exp(shifted).sum(axis=a, keepdims=True))

    def backward(g):
        return (g - np.exp(out) * g.sum(axis=a, keepdims=True),)

    return make_op(out, (x,), backward, "log_softmax", (("axis", a),))


def _check_targets(logits: np.ndarray, targets, op: str) -> np.ndarray:
    t = targets.data if isinstance(targets, Tensor) else np.asarray(targets)
    if t.dtype.kind not in "iu":
        raise TypeError(
            f"{op}: targets must be integer class indices, got dtype {t.dtype}"
            + (" (convert with targets.astype(np.int64))" if t.dtype.kind in "fb" else "")
        )
    if logits.ndim < 1:
        raise ValueError(f"{op}: logits must have at least 1 dimension, got shape {logits.shape}")
    expected = logits.shape[:1] + logits.shape[2:] if logits.ndim > 1 else ()
    if t.shape != expected:
        raise ValueError(
            f"{op}: logits of shape {logits.shape} need targets of shape {expected}, got {t.shape}"
        )
    n_classes = logits.shape[1] if logits.ndim > 1 else logits.shape[0]
    if t.size and (t.min() < 0 or t.max() >= n_classes):
        bad = t[(t < 0) | (t >= n_classes)].flat[0]
        raise ValueError(f"{op}: target {bad} is out of range for {n_classes} classes (0..{n_classes - 1})")
    return t


def _as_rows(x: np.ndarray, t: np.ndarray):
    """View logits as (rows, classes) and targets as (rows,): the class axis (1, or 0 for 1-D) moved last.

    Returns the 2-D logits, the flat targets, and a function that maps a (rows, classes) gradient
    back to the shape of ``x``.
    """
    if x.ndim == 1:
        return x[None], t.reshape(1), lambda d: d.reshape(x.shape)
    if x.ndim == 2:
        return x, t, lambda d: d
    moved = np.moveaxis(x, 1, -1)
    return (moved.reshape(-1, x.shape[1]), t.reshape(-1),
            lambda d: np.moveaxis(d.reshape(moved.shape), -1, 1))


def _reduce_loss(per_row: np.ndarray, t_shape: tuple, reduction: str, op: str):
    """Reduce per-row losses; also return the factor d(loss)/d(per_row) as a column to scale gradients by."""
    if reduction == "mean":
        return np.asarray(per_row.mean()), lambda g: g * (1.0 / max(per_row.size, 1))
    if reduction == "sum":
        return np.asarray(per_row.sum()), lambda g: g
    if reduction == "none":
        return per_row.reshape(t_shape), lambda g: g.reshape(-1, 1)
    raise ValueError(f"{op}: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def cross_entropy(logits, targets, reduction: str = "mean") -> Tensor:
    """Cross-entropy between ``logits`` (N, C) and integer class ``targets`` (N,), averaged over N.

    ``loss = mean_n(-log_softmax(logits)[n, targets[n]])``, as ``torch.nn.functional.cross_entropy``;
    ``reduction`` may be ``"mean"``, ``"sum"`` or ``"none"``. Also accepts (N, C, d1, ...) with targets
    (N, d1, ...) (the class axis is 1) and (C,) with a 0-d target.

    Fused, because the gradient of the pair is much simpler than either part:
    ``dlogits = (softmax(logits) - onehot(targets)) / N``. Float targets are a TypeError (they are
    almost always a mistake, e.g. one-hot rows or a label array loaded as float); targets outside
    ``0..C-1`` are a ValueError.
    """
    logits = _tensor(logits)
    x = logits.data
    t = _check_targets(x, targets, "cross_entropy")
    x2, t2, unrows = _as_rows(x, t)
    rows = np.arange(len(t2))
    shifted = x2 - x2.max(axis=1, keepdims=True)  # log-sum-exp trick: exp never overflows
    e = np.exp(shifted)
    sum_e = e.sum(axis=1, keepdims=True)
    per_row = np.log(sum_e[:, 0]) - shifted[rows, t2]
    out, dloss = _reduce_loss(per_row, t.shape, reduction, "cross_entropy")

    def backward(g):
        d = e / sum_e  # softmax, reusing the forward's exponentials
        d[rows, t2] -= 1
        d *= dloss(g)
        return (unrows(d),)

    return make_op(out.astype(x.dtype, copy=False), (logits,), backward, "cross_entropy",
                   (("targets", t), ("reduction", reduction)))


def nll_loss(log_probs, targets, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of integer ``targets`` under ``log_probs`` (N, C) (e.g. a log_softmax)."""
    log_probs = _tensor(log_probs)
    x = log_probs.data
    t = _check_targets(x, targets, "nll_loss")
    x2, t2, unrows = _as_rows(x, t)
    rows = np.arange(len(t2))
    out, dloss = _reduce_loss(-x2[rows, t2], t.shape, reduction, "nll_loss")

    def backward(g):
        d = np.zeros_like(x2)
        d[rows, t2] = -1
        d *= dloss(g)
        return (unrows(d),)

    return make_op(out.astype(x.dtype, copy=False), (log_probs,), backward, "nll_loss",
                   (("targets", t), ("reduction", reduction)))


def mse_loss(pred, target, reduction: str = "mean") -> Tensor:
    """Mean squared error ``mean((pred - target)**2)``, composed from Tensor ops."""
    diff = _tensor(pred) - target
    sq = diff * diff
    if reduction == "mean":
        return sq.mean()
    if reduction == "sum":
        return sq.sum()
    if reduction == "none":
        return sq
    raise ValueError(f"mse_loss: reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


# ----------------------------------------------------------------------------------------------------------
# Activations
# ----------------------------------------------------------------------------------------------------------

def relu(x) -> Tensor:
    """max(x, 0); gradient 1 where x > 0, else 0."""
    return _tensor(x).relu()


def sigmoid(x) -> Tensor:
    """1 / (1 + exp(-x)); gradient y * (1 - y)."""
    return _tensor(x).sigmoid()


def tanh(x) -> Tensor:
    """tanh(x); gradient 1 - y**2."""
    return _tensor(x).tanh()


_ERF_TAYLOR = None
_ERFC_CHEB = None
_ERFC_LO, _ERFC_HI = 1.0, 6.0


def _erf_tables():
    # Built on first use from math.erf/erfc, so there are no magic constants to trust.
    global _ERF_TAYLOR, _ERFC_CHEB
    if _ERF_TAYLOR is None:
        from numpy.polynomial import chebyshev

        # erf(x) = 2/sqrt(pi) * sum_k (-1)^k x^(2k+1) / (k! (2k+1)); 18 terms reach double precision on |x|<=1.
        _ERF_TAYLOR = np.array(
            [2 / math.sqrt(math.pi) * (-1) ** k / (math.factorial(k) * (2 * k + 1)) for k in range(18)]
        )[::-1].copy()
        # erfc(x) * exp(x^2) is smooth and slowly varying on [1, 6]: a degree-40 Chebyshev interpolant
        # matches it to ~1e-14 relative. Beyond 6, erf(x) is 1 to double precision.
        lo, hi = _ERFC_LO, _ERFC_HI

        def scaled_erfc(t):
            x = lo + (hi - lo) * (np.asarray(t) + 1) / 2
            return np.array([math.erfc(v) * math.exp(v * v) for v in np.ravel(x)]).reshape(np.shape(x))

        _ERFC_CHEB = chebyshev.chebinterpolate(scaled_erfc, 40)
    return _ERF_TAYLOR, _ERFC_CHEB


def erf(x: np.ndarray) -> np.ndarray:
    """The error function on an ndarray (NumPy has none), accurate to ~1e-14, computed in float64.

    Taylor series for |x| <= 1, ``1 - exp(-x^2) * P(x)`` with a Chebyshev interpolant P on [1, 6], and
    +-1 beyond. Vectorised, so it costs a few dozen array passes instead of a Python call per element.
    """
    from numpy.polynomial import chebyshev

    taylor, cheb = _erf_tables()
    x = np.asarray(x, dtype=np.float64)
    ax = np.abs(x)
    out = np.empty_like(x)
    small = ax <= 1.0
    if small.any():
        xs = x[small]
        z = xs * xs
        p = np.full_like(xs, taylor[0])
        for c in taylor[1:]:
            p = p * z + c
        out[small] = xs * p
    mid = ~small & (ax < _ERFC_HI)
    if mid.any():
        xm = ax[mid]
        t = (2 * xm - (_ERFC_LO + _ERFC_HI)) / (_ERFC_HI - _ERFC_LO)
        out[mid] = np.copysign(1.0 - np.exp(-xm * xm) * chebyshev.chebval(t, cheb), x[mid])
    big = ax >= _ERFC_HI
    if big.any():
        out[big] = np.sign(x[big])
    nan = np.isnan(x)
    if nan.any():
        out[nan] = np.nan
    return out


def gelu(x, approximate: str = "none") -> Tensor:
    """GELU, ``x * Phi(x)`` with Phi the standard normal CDF, as ``torch.nn.functional.gelu``.

    ``approximate="none"``: ``Phi(x) = (1 + erf(x / sqrt(2))) / 2``, gradient ``Phi(x) + x * phi(x)``.
    ``approximate="tanh"``: ``Phi(x) ~ (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2``, with its own
    exact derivative.
    """
    x = _tensor(x)
    d = x.data
    if approximate == "none":
        cdf = (0.5 * (1.0 + erf(d * (1 / math.sqrt(2))))).astype(d.dtype, copy=False)
        out = d * cdf

        def backward(g):
            pdf = np.exp(-0.5 * d * d) * (1 / math.sqrt(2 * math.pi))
            return (g * (cdf + d * pdf),)

    elif approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        t = np.tanh(k * (d + 0.044715 * d ** 3))
        out = 0.5 * d * (1 + t)

        def backward(g):
            du = k * (1 + 3 * 0.044715 * d * d)
            return (g * (0.5 * (1 + t) + 0.5 * d * (1 - t * t) * du),)

    else:
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return make_op(out, (x,), backward, "gelu", (("approximate", approximate),))


def linear(x, weight, bias=None) -> Tensor:
    """``x @ weight.T + bias`` as one node (weight is (out_features, in_features), as in PyTorch).

    One node instead of three, and the weight gradient ``g.T @ x`` comes out contiguous in the
    weight's own layout.
    """
    x, weight = _tensor(x), _tensor(weight)
    xd, w = x.data, weight.data
    if w.ndim != 2 or xd.ndim < 1 or xd.shape[-1] != w.shape[1]:
        raise ValueError(
            f"linear: input of shape {xd.shape} does not fit weight of shape {w.shape} "
            f"(need input[..., {w.shape[1] if w.ndim == 2 else '?'}])"
        )
    out = xd @ w.T
    if bias is None:
        inputs = (x, weight)
    else:
        bias = _tensor(bias)
        if bias.shape != (w.shape[0],):
            raise ValueError(f"linear: bias of shape {bias.shape} does not fit weight of shape {w.shape}")
        out += bias.data
        inputs = (x, weight, bias)

    def backward(g):
        gx = g @ w if x.requires_grad else None
        gw = gb = None
        if weight.requires_grad:
            if xd.ndim == 2:
                gw = g.T @ xd
            else:
                gw = g.reshape(-1, g.shape[-1]).T @ xd.reshape(-1, xd.shape[-1])
        if bias is not None and bias.requires_grad:
            gb = g.sum(axis=tuple(range(g.ndim - 1)))
        return (gx, gw) if bias is None else (gx, gw, gb)

    return make_op(out, inputs, backward, "linear")


# ----------------------------------------------------------------------------------------------------------
# einsum
# ----------------------------------------------------------------------------------------------------------

def _parse_einsum(subscripts, shapes):
    """Validate ``subscripts`` against operand ``shapes``.

    Returns ``(inputs, output, sizes)``: one letter string per operand (ellipses replaced by letters
    not used in the spec), the output letters, and each letter's size (a size-1 axis broadcasts, as in
    NumPy and PyTorch). Raises ValueError naming what is wrong.
    """
    if not isinstance(subscripts, str):
        raise TypeError(f"einsum: subscripts must be a string, got {type(subscripts).__name__}")
    spec = subscripts.replace(" ", "")
    where = f"in einsum subscripts {subscripts!r}"
    if spec.count("->") > 1:
        raise ValueError(f"einsum: more than one '->' {where}")
    explicit = "->" in spec
    lhs, rhs = spec.split("->") if explicit else (spec, None)
    if rhs is not None and "," in rhs:
        raise ValueError(f"einsum: the output (after '->') cannot contain ',' {where}")
    terms = lhs.split(",")
    for term in terms + ([rhs] if rhs is not None else []):
        if term.count("...") > 1 or "." in term.replace("...", "", 1):
            raise ValueError(f"einsum: malformed ellipsis in {term!r} {where} (use exactly '...')")
        for ch in term.replace("...", ""):
            if ch not in string.ascii_letters:
                raise ValueError(f"einsum: invalid character {ch!r} {where} (use letters a-z, A-Z)")
    if len(terms) != len(shapes):
        raise ValueError(
            f"einsum: subscripts {subscripts!r} name {len(terms)} operand(s) but {len(shapes)} were given"
        )

    used = set(c for c in spec if c in string.ascii_letters)
    free = [c for c in string.ascii_uppercase + string.ascii_lowercase if c not in used]
    n_ell = 0
    for i, (term, shape) in enumerate(zip(terms, shapes)):
        named = len(term.replace("...", ""))
        if "..." in term:
            if len(shape) < named:
                raise ValueError(
                    f"einsum: operand {i} has {len(shape)} dimension(s) but {term!r} names at least {named}"
                )
            n_ell = max(n_ell, len(shape) - named)
        elif len(shape) != named:
            raise ValueError(
                f"einsum: operand {i} has {len(shape)} dimension(s) but its subscripts {term!r} name {named}"
            )
    if n_ell > len(free):
        raise ValueError(f"einsum: too many dimensions under '...' {where}")
    ell = "".join(free[:n_ell])

    inputs = []
    for term, shape in zip(terms, shapes):
        if "..." in term:
            k = len(shape) - len(term.replace("...", ""))
            term = term.replace("...", ell[n_ell - k:])
        inputs.append(term)

    if rhs is None:
        counts = {}
        for term in inputs:
            for c in term:
                counts[c] = counts.get(c, 0) + 1
        output = ell + "".join(sorted(c for c, n in counts.items() if n == 1 and c not in ell))
    else:
        output = rhs.replace("...", ell)
        seen = set()
        for c in rhs.replace("...", ""):
            if c in seen:
                raise ValueError(f"einsum: output subscript {c!r} appears more than once {where}")
            seen.add(c)
            if not any(c in term for term in inputs):
                raise ValueError(f"einsum: output subscript {c!r} does not appear in any input {where}")

    sizes = {}
    for i, (term, shape) in enumerate(zip(inputs, shapes)):
        local = {}
        for c, n in zip(term, shape):
            if c in local and local[c] != n:
                raise ValueError(
                    f"einsum: index {c!r} is repeated in operand {i} with different sizes {local[c]} and {n}"
                )
            local[c] = n
            prev = sizes.get(c)
            if prev is None or prev == 1:
                sizes[c] = n
            elif n != 1 and n != prev:
                first = next(j for j, t in enumerate(inputs) if c in t and
                             any(cc == c and s == prev for cc, s in zip(t, shapes[j])))
                label = repr(c) if c not in ell else "under '...'"
                raise ValueError(
                    f"einsum: index {label} has size {prev} in operand {first} but size {n} in operand {i} "
                    f"(shapes {tuple(tuple(s) for s in shapes)}) {where}"
                )
    return inputs, output, sizes


def _squeeze_broadcast(term: str, arr: np.ndarray, sizes: dict):
    """Drop size-1 axes whose letter is larger elsewhere; einsum broadcasts them, and the gradient is
    simpler to compute for the squeezed operand and reshape back."""
    keep = [i for i, c in enumerate(term) if not (arr.shape[i] == 1 and sizes[c] != 1)]
    if len(keep) == len(term):
        return term, arr
    return "".join(term[i] for i in keep), arr.reshape([arr.shape[i] for i in keep])


def _einsum_grad(i, terms, output, g, arrays, sizes):
    """Gradient of an einsum with respect to operand ``i``: one more einsum.

    d out / d operand_i contracts the output gradient with every *other* operand into operand i's
    letters. Letters that only operand i has and the output lacks were summed away in the forward
    pass, so their gradient is a broadcast copy. Repeated letters (a diagonal, a trace) receive the
    gradient on the diagonal only.
    """
    term = terms[i]
    unique = "".join(dict.fromkeys(term))
    others = [(t, a) for j, (t, a) in enumerate(zip(terms, arrays)) if j != i]
    available = set(output).union(*[set(t) for t, _ in others]) if others else set(output)
    target = "".join(c for c in unique if c in available)
    spec = ",".join([output] + [t for t, _ in others]) + "->" + target
    grad = np.einsum(spec, g, *[a for _, a in others], optimize=len(others) >= 1)
    if target != unique:
        missing = [k for k, c in enumerate(unique) if c not in available]
        grad = np.broadcast_to(np.expand_dims(grad, missing), [sizes[c] for c in unique])
    if unique != term:
        full = np.zeros([sizes[c] for c in term], dtype=grad.dtype)
        np.einsum(f"{term}->{unique}", full)[...] = grad  # a writeable view of the diagonal
        grad = full
    return grad


def einsum(subscripts: str, *operands) -> Tensor:
    """Einstein summation, as ``np.einsum`` / ``torch.einsum``, with gradients.

    ``einsum("ij,jk->ik", A, B)`` is ``A @ B``: every letter is an axis; letters shared by inputs are
    multiplied along; letters missing from the output are summed over. Without ``->`` the output is
    every letter that appears once, in alphabetical order. ``...`` stands for broadcast leading axes.
    Errors name what is wrong: an unknown output letter, a repeated output letter, the wrong number of
    operands, a wrong number of letters for an operand, or a size mismatch.

    Backward is more einsums: the gradient of operand i is the output gradient contracted with the
    other operands into operand i's subscripts (``dA = einsum("ik,jk->ij", dC, B)`` for the matmul).
    """
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    tensors = [_tensor(o) for o in operands]
    if not tensors:
        raise ValueError("einsum: needs at least one operand")
    arrays = [t.data for t in tensors]
    terms, output, sizes = _parse_einsum(subscripts, [a.shape for a in arrays])
    squeezed = [_squeeze_broadcast(t, a, sizes) for t, a in zip(terms, arrays)]
    terms = [t for t, _ in squeezed]
    arrays_sq = [a for _, a in squeezed]
    spec = ",".join(terms) + "->" + output
    out = np.asarray(np.einsum(spec, *arrays_sq, optimize=len(arrays_sq) > 1))

    def backward(g):
        grads = []
        for i, t in enumerate(tensors):
            if not t.requires_grad:
                grads.append(None)
                continue
            grads.append(_einsum_grad(i, terms, output, g, arrays_sq, sizes).reshape(arrays[i].shape))
        return grads

    return make_op(out, tensors, backward, "einsum", (("subscripts", subscripts),))


# ----------------------------------------------------------------------------------------------------------
# einsum lowered to batched matmul (NumPy arrays; for the book)
# ----------------------------------------------------------------------------------------------------------

class EinsumLowering:
    """How a two-operand einsum runs as one batched matrix multiply.

    Every letter falls in one class: **batch** (in A, B and the output), **m** (A and output), **n**
    (B and output), **k** (A and B, not output: contracted), or summed away in a single operand before
    anything else. A is permuted to (batch, m, k) and reshaped to one (B, M, K) array, B to (B, K, N);
    one ``matmul`` gives (B, M, N), which is reshaped to the letters' sizes and permuted into the output
    order. Fields hold the letter classes, the permutations and the 3-D shapes; ``steps`` describes them
    in words and ``run(a, b)`` executes them.
    """

    def __init__(self, subscripts, shape_a, shape_b):
        (ta, tb), out, sizes = _parse_einsum(subscripts, [tuple(shape_a), tuple(shape_b)])
        for i, t in enumerate((ta, tb)):
            for c in t:
                if t.count(c) > 1:
                    raise ValueError(
                        f"einsum_via_matmul: index {c!r} is repeated within operand {i} (a diagonal); "
                        f"lowering to matmul does not cover that, use einsum"
                    )
        for i, (t, shape) in enumerate(((ta, shape_a), (tb, shape_b))):
            for c, n in zip(t, shape):
                if n != sizes[c]:
                    raise ValueError(
                        f"einsum_via_matmul: index {c!r} has size {n} in operand {i} but {sizes[c]} elsewhere; "
                        f"broadcasting is not lowered"
                    )
        self.subscripts, self.sizes, self.output = subscripts, sizes, out
        self.terms = (ta, tb)
        self.batch = "".join(c for c in ta if c in tb and c in out)
        self.m = "".join(c for c in ta if c not in tb and c in out)
        self.n = "".join(c for c in tb if c not in ta and c in out)
        self.k = "".join(c for c in ta if c in tb and c not in out)
        self.sum_a = "".join(c for c in ta if c not in tb and c not in out)
        self.sum_b = "".join(c for c in tb if c not in ta and c not in out)
        kept_a = "".join(c for c in ta if c not in self.sum_a)
        kept_b = "".join(c for c in tb if c not in self.sum_b)
        self.perm_a = tuple(kept_a.index(c) for c in self.batch + self.m + self.k)
        self.perm_b = tuple(kept_b.index(c) for c in self.batch + self.k + self.n)
        prod = lambda letters: math.prod(sizes[c] for c in letters)  # noqa: E731
        self.bmk = (prod(self.batch), prod(self.m), prod(self.k))
        self.bkn = (prod(self.batch), prod(self.k), prod(self.n))
        produced = self.batch + self.m + self.n
        self.perm_out = tuple(produced.index(c) for c in out)

    @property
    def steps(self) -> list:
        s = []
        if self.sum_a:
            s.append(f"sum A over {self.sum_a!r} (only A has them and the output does not)")
        if self.sum_b:
            s.append(f"sum B over {self.sum_b!r}")
        s.append(f"A: permute {self.perm_a} to batch+m+k = {self.batch + self.m + self.k!r}, reshape to {self.bmk}")
        s.append(f"B: permute {self.perm_b} to batch+k+n = {self.batch + self.k + self.n!r}, reshape to {self.bkn}")
        s.append(f"C = A @ B: {self.bmk} @ {self.bkn} -> {(self.bmk[0], self.bmk[1], self.bkn[2])}")
        s.append(f"reshape C to the sizes of {self.batch + self.m + self.n!r}, permute {self.perm_out} "
                 f"to the output {self.output!r}")
        return s

    def run(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        ta, tb = self.terms
        if self.sum_a:
            a = a.sum(axis=tuple(ta.index(c) for c in self.sum_a))
        if self.sum_b:
            b = b.sum(axis=tuple(tb.index(c) for c in self.sum_b))
        a3 = a.transpose(self.perm_a).reshape(self.bmk)
        b3 = b.transpose(self.perm_b).reshape(self.bkn)
        c = a3 @ b3
        c = c.reshape([self.sizes[ch] for ch in self.batch + self.m + self.n])
        return c.transpose(self.perm_out)

    def __repr__(self):
        return f"EinsumLowering({self.subscripts!r}: " + "; ".join(self.steps) + ")"


def lower_einsum(subscripts: str, shape_a, shape_b) -> EinsumLowering:
    """Plan a two-operand einsum as transpose + reshape + one batched matmul (see ``EinsumLowering``)."""
    return EinsumLowering(subscripts, shape_a, shape_b)


def einsum_via_matmul(subscripts: str, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Compute a two-operand einsum on ndarrays with one batched ``matmul``; equals ``np.einsum``."""
    a, b = np.asarray(a), np.asarray(b)
    return lower_einsum(subscripts, a.shape, b.shape).run(a, b)
