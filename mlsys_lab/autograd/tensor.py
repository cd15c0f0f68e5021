"""A Tensor that remembers how it was computed, and a reverse-mode engine that walks that memory backwards.

The whole idea of automatic differentiation fits in this file:

1. Every operation on Tensors computes its result with NumPy (the *forward* pass) and, when a gradient
   will be needed, records a node: the result, the input Tensors, and a small ``backward`` function that
   turns the gradient of the result into gradients of the inputs (the chain rule for that one operation).
2. ``loss.backward()`` sorts the recorded nodes so that every node comes before the nodes it was computed
   from, then visits them in that order, calling each node's ``backward`` and adding what it returns to the
   gradients of its inputs.

Everything else is bookkeeping that keeps this correct for NumPy broadcasting, reductions over any axes,
indexing, batched matrix products and dtypes. ``make_op`` is the single entry point that builds nodes; the
built-in operations use it exactly as a custom operation (``nn.Conv2d``'s im2col, a lab exercise) does.

Conventions (the specification the tests check):

* ``Tensor(array)`` keeps the dtype of an ndarray; Python scalars and lists become float32. A Python scalar
  in an expression does not change the dtype (NEP 50): ``float32_tensor * 2.0`` stays float32.
* ``.grad`` has the shape and dtype of ``.data``. Tensors you create (leaves) *accumulate* gradients over
  ``backward`` calls, as in PyTorch; reset them with ``t.grad = None``. Intermediate results keep no
  gradient unless you call ``retain_grad()`` on them first.
* Inside ``with no_grad():`` no graph is recorded.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Tensor", "make_op", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast", "observe_ops"]


# ----------------------------------------------------------------------------------------------------------
# Grad mode
# ----------------------------------------------------------------------------------------------------------

class _GradMode:
    # A module-level mutable flag, read by every op; a class attribute keeps the lookup cheap.
    enabled = True


class _OpObserver:
    # The function called for every op built by ``make_op`` (None: nobody is watching). A class
    # attribute, like the grad-mode flag, so that the check in ``make_op`` costs one lookup.
    fn = None


class observe_ops:
    """Context manager: call ``fn(out, inputs, name, attrs)`` after every op that ``make_op`` builds.

    ``out`` is the result Tensor, ``inputs`` the tuple of input Tensors, ``name`` the op name
    (``"add"``, ``"linear"``, ...) and ``attrs`` the op's static parameters as a tuple of
    ``(key, value)`` pairs, or None (e.g. ``(("axis", (1,)), ("keepdims", False))`` for a sum).
    Ops are observed whether or not they record a graph for ``backward`` (inside ``no_grad`` too).

    This is a generic hook, the idea behind PyTorch's dispatch modes: the engine knows nothing about who
    watches. A tracer uses it to turn an eager program into a graph; a profiler could count ops.
    Observers nest: the innermost one sees the ops, and the outer one is restored on exit.
    """

    __slots__ = ("fn", "_prev")

    def __init__(self, fn):
        self.fn = fn

    def __enter__(self):
        self._prev = _OpObserver.fn
        _OpObserver.fn = self.fn
        return self

    def __exit__(self, *exc):
        _OpObserver.fn = self._prev
        return False


def is_grad_enabled() -> bool:
    """True when operations record a graph (the default); False inside ``no_grad()``."""
    return _GradMode.enabled


class no_grad:
    """Context manager (or decorator) inside which operations record no graph.

    Results computed inside have ``requires_grad=False`` and hold no reference to their inputs, so
    evaluation and optimizer updates cost no memory for a graph::

        with no_grad():
            logits = model(x_test)
    """

    __slots__ = ("_prev",)

    def __enter__(self):
        self._prev = _GradMode.enabled
        _GradMode.enabled = False
        return self

    def __exit__(self, *exc):
        _GradMode.enabled = self._prev
        return False

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper


class enable_grad(no_grad):
    """Context manager that turns graph recording back on (inside a ``no_grad`` block)."""

    __slots__ = ()

    def __enter__(self):
        self._prev = _GradMode.enabled
        _GradMode.enabled = True
        return self

    def __call__(self, fn):
        import functools

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            with enable_grad():
                return fn(*args, **kwargs)

        return wrapper


# ----------------------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------------------

def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` down to ``shape``: the backward of NumPy broadcasting.

    Broadcasting copies an input along new leading axes and along axes of size 1, so every copy
    contributed to the output and the input's gradient is the *sum* over those copies. Returns ``grad``
    itself when the shapes already agree (the common case costs nothing).

    >>> unbroadcast(np.ones((2, 3, 4)), (3, 1)).tolist()
    [[8.0], [8.0], [8.0]]
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra == 1 and grad.shape[1:] == shape:  # a bias broadcast over a batch: the common case
        return grad.sum(axis=0)
    if extra < 0:
        raise ValueError(f"cannot unbroadcast a gradient of shape {grad.shape} to the larger shape {shape}")
    axes = tuple(range(extra)) + tuple(
        extra + i for i, n in enumerate(shape) if n == 1 and grad.shape[extra + i] != 1
    )
    if axes:
        grad = grad.sum(axis=axes, keepdims=True)
    if extra:
        grad = grad.reshape(grad.shape[extra:])
    if grad.shape != shape:
        raise ValueError(f"cannot unbroadcast a gradient of shape {grad.shape} to shape {shape}")
    return grad


def _normalize_axes(axis, ndim: int, op: str):
    """Turn ``axis`` (None, int or tuple, negatives allowed) into a sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, numbers.Integral):
        axis = (axis,)
    elif not isinstance(axis, (tuple, list)):
        raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
    out = []
    for a in axis:
        if not isinstance(a, numbers.Integral) or isinstance(a, bool):
            raise TypeError(f"{op}: axis must be None, an int or a tuple of ints, got {axis!r}")
        if ndim == 0 and a in (0, -1):
            continue  # as in PyTorch, axis 0 of a scalar is the scalar itself
        if not -ndim <= a < ndim:
            raise ValueError(f"{op}: axis {a} is out of range for a tensor with {ndim} dimensions")
        out.append(int(a) % ndim)
    if len(set(out)) != len(out):
        raise ValueError(f"{op}: repeated axis in {axis!r}")
    return tuple(sorted(out))


def _expand_reduced(grad: np.ndarray, axes: tuple, keepdims: bool, ndim: int) -> np.ndarray:
    """Put back the axes a reduction removed, as size-1 axes, so ``grad`` broadcasts against the input."""
    if keepdims or grad.ndim == ndim:
        return grad
    return np.expand_dims(grad, axes)


def _broadcast_error(op: str, a: np.ndarray, b: np.ndarray) -> ValueError:
    return ValueError(f"cannot broadcast shapes {a.shape} and {b.shape} for {op}")


def _is_basic_index(index) -> bool:
    items = index if isinstance(index, tuple) else (index,)
    return all(
        i is None or i is Ellipsis or isinstance(i, (slice, numbers.Integral)) and not isinstance(i, bool)
        for i in items
    )


# ----------------------------------------------------------------------------------------------------------
# Tensor
# ----------------------------------------------------------------------------------------------------------

class Tensor:
    """An n-dimensional array (``.data``, a NumPy ndarray) that can compute gradients.

    ``Tensor(array, requires_grad=False)``: an ndarray keeps its dtype; Python scalars, lists and tuples
    become float32; another Tensor's data is shared. ``requires_grad=True`` asks ``backward`` to fill
    ``.grad`` for this tensor and is only allowed for floating-point dtypes.

    A computed Tensor that needs gradients records its node in three private slots: ``_parents`` (the
    input Tensors), ``_backward`` (grad_out -> one gradient or None per parent) and ``_op`` (a name, for
    printing and tracing). Leaves have ``_parents == ()``.
    """

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "_op", "_retain", "__weakref__")

    # NumPy would otherwise treat a Tensor as an array-like scalar in ``ndarray * Tensor``; this makes it
    # defer to Tensor.__rmul__ and friends instead.
    __array_priority__ = 1000.0
    __array_ufunc__ = None

    def __init__(self, data, requires_grad: bool = False):
        if isinstance(data, Tensor):
            data = data.data
        elif not isinstance(data, np.ndarray):
            if isinstance(data, np.generic):
                data = np.asarray(data)
            else:
                data = np.asarray(data, dtype=np.float32)
        self.data = data
        self.grad = None
        self._parents = ()
        self._backward = None
        self._op = "leaf"
        self._retain = False
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_()

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        """Set ``requires_grad`` in place (floating-point tensors only); returns ``self``."""
        if flag and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"only floating-point tensors can require gradients, got dtype {self.data.dtype}"
            )
        self.requires_grad = bool(flag)
        return self

    # -- array-like attributes -----------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self) -> np.dtype:
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    @property
    def size(self) -> int:
        return self.data.size

    @property
    def is_leaf(self) -> bool:
        """True for tensors that were created rather than computed (they accumulate ``.grad``)."""
        return not self._parents

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The underlying ndarray (shared, not copied)."""
        return self.data

    def item(self):
        """The value of a one-element tensor as a Python number."""
        return self.data.item()

    def detach(self) -> "Tensor":
        """A new leaf Tensor sharing ``data``, cut off from the graph."""
        return Tensor(self.data)

    def retain_grad(self) -> "Tensor":
        """Ask ``backward`` to store this intermediate result's gradient in ``.grad`` (for inspection)."""
        self._retain = True
        return self

    def zero_grad(self) -> None:
        self.grad = None

    def __repr__(self) -> str:
        body = np.array2string(self.data, separator=", ", prefix="Tensor(")
        extra = f", dtype={self.data.dtype}" if self.data.dtype != np.float32 else ""
        if self._parents:
            extra += f", op={self._op}"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    # -- the engine -----------------------------------------------------------------------------------
    def backward(self, grad=None) -> None:
        """Compute the gradient of this tensor with respect to every leaf it depends on.

        ``grad`` is d(something)/d(self), the seed of the chain rule; it may be omitted only when
        ``self`` has one element (a loss), in which case it is 1. Leaves that require gradients add the
        result to their ``.grad``.

        Nodes are visited in reverse topological order, so a node's gradient is complete (summed over
        all its consumers) before its own ``backward`` runs. The order comes from an iterative
        depth-first search, so deep graphs (an RNN unrolled 10,000 steps) do not hit Python's
        recursion limit.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward() called on a tensor that does not require grad: no input of the computation "
                "had requires_grad=True, or it was computed inside no_grad()"
            )
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(
                    f"backward() without a gradient works only for a tensor with one element (a loss); "
                    f"this tensor has shape {self.data.shape}: pass grad=<array of that shape>"
                )
            grad = np.ones_like(self.data)
        else:
            if isinstance(grad, Tensor):
                grad = grad.data
            grad = np.asarray(grad, dtype=self.data.dtype)
            if grad.shape != self.data.shape:
                raise ValueError(
                    f"backward(): grad has shape {grad.shape} but the tensor has shape {self.data.shape}"
                )

        # Topological order by iterative post-order DFS; the stack holds (node, children_done).
        order = []
        visited = set()
        stack = [(self, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if node in visited:
                continue
            visited.add(node)
            stack.append((node, True))
            for p in node._parents:
                if p.requires_grad and p not in visited:  # constants need no visit
                    stack.append((p, False))

        grads = {self: grad}
        # Arrays already handed out as a leaf's .grad in this pass (and the caller's seed). A leaf must
        # own its .grad, because later backward calls add to it in place; an array (or the base of a
        # view) seen twice is copied rather than shared.
        handed = {id(grad if grad.base is None else grad.base)}
        for node in reversed(order):
            g = grads.pop(node, None)
            if g is None:
                continue
            if not node._parents:
                _accumulate_leaf(node, g, handed)
                continue
            if node._retain:
                node.grad = g.copy() if node.grad is None else node.grad + g
            in_grads = node._backward(g)
            if isinstance(in_grads, np.ndarray):  # a one-input backward may return a bare array
                in_grads = (in_grads,)
            parents = node._parents
            if len(in_grads) != len(parents):
                raise ValueError(
                    f"backward of op '{node._op}' returned {len(in_grads)} gradients for "
                    f"{len(parents)} inputs"
                )
            for p, pg in zip(parents, in_grads):
                if pg is None or not p.requires_grad:
                    continue
                pdata = p.data
                if type(pg) is not np.ndarray:
                    pg = np.asarray(pg)
                if pg.shape != pdata.shape:
                    raise ValueError(
                        f"backward of op '{node._op}' returned a gradient of shape {pg.shape} for an "
                        f"input of shape {pdata.shape}"
                    )
                if pg.dtype != pdata.dtype:
                    pg = pg.astype(pdata.dtype)
                prev = grads.get(p)
                grads[p] = pg if prev is None else prev + pg

    # -- elementwise arithmetic (broadcasting) ----------------------------------------------------------
    def __add__(self, other):
        other = _lift(other, self)
        a, b = self.data, other.data
        try:
            out = a + b
        except ValueError:
            raise _broadcast_error("add", a, b) from None
        # Keep only the shapes: holding a and b would keep both inputs alive until backward.
        a_shape, b_shape = a.shape, b.shape

        def backward(g):
            return (unbroadcast(g, a_shape) if self.requires_grad else None,
                    unbroadcast(g, b_shape) if other.requires_grad else None)

        return make_op(out, (self, other), backward, "add")

    def __radd__(self, other):
        return _lift(other, self).__add__(self)

    def __sub__(self, other):
        other = _lift(other, self)
        a, b = self.data, other.data
        try:
            out = a - b
        except ValueError:
            raise _broadcast_error("sub", a, b) from None
        a_shape, b_shape = a.shape, b.shape

        def backward(g):
            return (unbroadcast(g, a_shape) if self.requires_grad else None,
                    unbroadcast(-g, b_shape) if other.requires_grad else None)

        return make_op(out, (self, other), backward, "sub")

    def __rsub__(self, other):
        return _lift(other, self).__sub__(self)

    def __mul__(self, other):
        other = _lift(other, self)
        a, b = self.data, other.data
        try:
            out = a * b
        except ValueError:
            raise _broadcast_error("mul", a, b) from None

        def backward(g):
            return (unbroadcast(g * b, a.shape) if self.requires_grad else None,
                    unbroadcast(g * a, b.shape) if other.requires_grad else None)

        return make_op(out, (self, other), backward, "mul")

    def __rmul__(self, other):
        return _lift(other, self).__mul__(self)

    def __truediv__(self, other):
        other = _lift(other, self)
        a, b = self.data, other.data
        try:
            out = a / b
        except ValueError:
            raise _broadcast_error("div", a, b) from None

        def backward(g):
            g_over_b = g / b
            return (unbroadcast(g_over_b, a.shape) if self.requires_grad else None,
                    unbroadcast(-g_over_b * out, b.shape) if other.requires_grad else None)

        return make_op(out, (self, other), backward, "div")

    def __rtruediv__(self, other):
        return _lift(other, self).__truediv__(self)

    def __neg__(self):
        return make_op(-self.data, (self,), lambda g: (-g,), "neg")

    def __pos__(self):
        return self

    def __pow__(self, exponent):
        """``x ** p``. A number ``p`` is a constant; a Tensor ``p`` gets a gradient ``x**p * log(x)``."""
        if isinstance(exponent, Tensor) or isinstance(exponent, np.ndarray) and exponent.ndim > 0:
            return self._pow_tensor(_lift(exponent, self))
        if not isinstance(exponent, (numbers.Number, np.ndarray)):
            return NotImplemented
        x = self.data
        out = x ** exponent

        def backward(g):
            if exponent == 0:
                return (np.zeros_like(x),)
            if exponent == 2:  # the common square, without a second pow
                return (g * (2 * x),)
            return (g * (exponent * x ** (exponent - 1)),)

        return make_op(out, (self,), backward, "pow", (("exponent", exponent),))

    def _pow_tensor(self, other: "Tensor"):
        a, b = self.data, other.data
        try:
            out = a ** b
        except ValueError:
            raise _broadcast_error("pow", a, b) from None

        def backward(g):
            ga = gb = None
            if self.requires_grad:
                with np.errstate(divide="ignore", invalid="ignore"):
                    ga = unbroadcast(g * b * a ** (b - 1), a.shape)
            if other.requires_grad:
                # As PyTorch does: d/db a**b = a**b * log(a), defined as 0 where a == 0 and b >= 0.
                with np.errstate(divide="ignore", invalid="ignore"):
                    d = out * np.log(a)
                d = np.where((a == 0) & (b >= 0), 0, d)
                gb = unbroadcast(g * d, b.shape)
            return ga, gb

        return make_op(out, (self, other), backward, "pow")

    def __rpow__(self, base):
        return _lift(base, self)._pow_tensor(self)

    # -- matrix product -------------------------------------------------------------------------------
    def __matmul__(self, other):
        """Matrix product with NumPy's rules: batched over leading axes, 1-D operands as vectors.

        Backward of ``C = A @ B`` is ``dA = dC @ B^T`` and ``dB = A^T @ dC``, summed over batch axes that
        were broadcast. A 1-D operand is treated as a matrix with a size-1 axis that the result lacks,
        so the gradient is computed with that axis put back and then removed.
        """
        other = _lift(other, self)
        a, b = self.data, other.data
        if a.ndim == 0 or b.ndim == 0:
            raise ValueError(
                f"matmul needs operands with at least 1 dimension, got shapes {a.shape} and {b.shape}"
            )
        try:
            out = a @ b
        except ValueError:
            k_a = a.shape[-1]
            k_b = b.shape[-2] if b.ndim > 1 else b.shape[0]
            if k_a != k_b:
                raise ValueError(
                    f"matmul shape mismatch: {a.shape} @ {b.shape} (inner dimensions {k_a} != {k_b})"
                ) from None
            raise ValueError(
                f"matmul shape mismatch: batch dimensions of {a.shape} and {b.shape} do not broadcast"
            ) from None

        if a.ndim == 2 and b.ndim == 2:
            if other._backward is _transpose2d_backward and not other._retain:
                # ``x @ W.T``, every Linear layer: differentiate with respect to W itself, so that its
                # gradient ``g.T @ x`` comes out in W's own (row-major) layout and the transpose node
                # drops out of the backward pass.
                w = other._parents[0]
                wd = w.data

                def backward_nt(g):
                    return (g @ wd if self.requires_grad else None,
                            g.T @ a if w.requires_grad else None)

                return make_op(out, (self, w), backward_nt, "matmul_t")

            # The plain 2-D case, without the generality below.
            def backward(g):
                return (g @ b.T if self.requires_grad else None,
                        a.T @ g if other.requires_grad else None)

            return make_op(out, (self, other), backward, "matmul")

        def backward(g):
            a2 = a[None, :] if a.ndim == 1 else a
            b2 = b[:, None] if b.ndim == 1 else b
            # Put back the size-1 axes the vector operands lost (B's first: for vec @ vec, g is 0-d).
            if b.ndim == 1:
                g = g[..., None]
            if a.ndim == 1:
                g = g[..., None, :]
            ga = gb = None
            if self.requires_grad:
                ga = unbroadcast(g @ np.swapaxes(b2, -1, -2), a2.shape).reshape(a.shape)
            if other.requires_grad:
                gb = unbroadcast(np.swapaxes(a2, -1, -2) @ g, b2.shape).reshape(b.shape)
            return ga, gb

        return make_op(out, (self, other), backward, "matmul")

    def __rmatmul__(self, other):
        return _lift(other, self).__matmul__(self)

    # -- elementwise functions ------------------------------------------------------------------------
    def exp(self):
        out = np.exp(self.data)
        return make_op(out, (self,), lambda g: (g * out,), "exp")

    def log(self):
        x = self.data
        return make_op(np.log(x), (self,), lambda g: (g / x,), "log")

    def tanh(self):
        out = np.tanh(self.data)
        return make_op(out, (self,), lambda g: (g * (1 - out * out),), "tanh")

    def sigmoid(self):
        """1 / (1 + e^-x). For very negative x, e^-x overflows to inf and the result is correctly 0;
        only the warning is silenced."""
        with np.errstate(over="ignore"):
            out = 1 / (1 + np.exp(-self.data))
        return make_op(out, (self,), lambda g: (g * out * (1 - out),), "sigmoid")

    def relu(self):
        x = self.data
        out = np.maximum(x, 0)
        # The gradient at exactly 0 is taken as 0, as in PyTorch.
        # (astype: NumPy multiplies float by float much faster than float by bool.)
        return make_op(out, (self,), lambda g: (g * (x > 0).astype(g.dtype),), "relu")

    # -- reductions -----------------------------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False):
        """Sum over ``axis`` (None = all, an int, or a tuple; negative axes count from the end).

        Backward: every input element contributed once, so its gradient is the output gradient,
        broadcast back over the reduced axes.
        """
        x = self.data
        axes = _normalize_axes(axis, x.ndim, "sum")
        out = x.sum(axis=axes, keepdims=keepdims)

        def backward(g):
            return (np.broadcast_to(_expand_reduced(g, axes, keepdims, x.ndim), x.shape),)

        return make_op(np.asarray(out), (self,), backward, "sum", (("axis", axes), ("keepdims", keepdims)))

    def mean(self, axis=None, keepdims: bool = False):
        """Mean over ``axis``; backward spreads the gradient evenly over the averaged elements."""
        x = self.data
        axes = _normalize_axes(axis, x.ndim, "mean")
        count = 1
        for a in axes:
            count *= x.shape[a]
        out = x.mean(axis=axes, keepdims=keepdims)

        def backward(g):
            g = _expand_reduced(g, axes, keepdims, x.ndim) / count if count else g
            return (np.broadcast_to(g, x.shape).astype(x.dtype, copy=False),)

        return make_op(np.asarray(out), (self,), backward, "mean", (("axis", axes), ("keepdims", keepdims)))

    def max(self, axis=None, keepdims: bool = False):
        """Maximum over ``axis``. The gradient goes to the maximal elements, split evenly among ties
        (as ``torch.amax`` does), so it stays a valid subgradient and matches finite differences."""
        x = self.data
        axes = _normalize_axes(axis, x.ndim, "max")
        if x.size == 0:
            raise ValueError(f"max of an empty tensor of shape {x.shape}")
        out = x.max(axis=axes, keepdims=True)

        def backward(g):
            mask = x == out
            count = mask.sum(axis=axes, keepdims=True)
            return (mask * (_expand_reduced(g, axes, keepdims, x.ndim) / count),)

        return make_op(out if keepdims else out.squeeze(axis=axes), (self,), backward, "max",
                       (("axis", axes), ("keepdims", keepdims)))

    # -- shape ----------------------------------------------------------------------------------------
    def reshape(self, *shape):
        """``x.reshape(2, 3)`` or ``x.reshape((2, 3))``; one entry may be -1."""
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        x = self.data
        try:
            out = x.reshape(shape)
        except ValueError:
            raise ValueError(f"cannot reshape a tensor of shape {x.shape} into shape {shape}") from None
        return make_op(out, (self,), lambda g: (g.reshape(x.shape),), "reshape", (("shape", out.shape),))

    def transpose(self, *axes):
        """Permute axes: ``x.transpose()`` reverses them, ``x.transpose(1, 0, 2)`` or
        ``x.transpose((1, 0, 2))`` applies a permutation. Backward applies the inverse permutation."""
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        x = self.data
        if not axes:
            axes = tuple(range(x.ndim - 1, -1, -1))
        if len(axes) != x.ndim or sorted(int(a) % x.ndim for a in axes) != list(range(x.ndim)):
            raise ValueError(
                f"transpose: {tuple(axes)} is not a permutation of the {x.ndim} axes of a tensor of shape {x.shape}"
            )
        axes = tuple(int(a) % x.ndim for a in axes)
        if axes == (1, 0):
            return make_op(x.T, (self,), _transpose2d_backward, "transpose", (("axes", (1, 0)),))
        inverse = tuple(np.argsort(axes))
        return make_op(x.transpose(axes), (self,), lambda g: (g.transpose(inverse),), "transpose",
                       (("axes", axes),))

    @property
    def T(self):
        """All axes reversed (a matrix transpose for 2-D)."""
        x = self.data
        if x.ndim < 2:
            return self
        if x.ndim == 2:
            return make_op(x.T, (self,), _transpose2d_backward, "transpose", (("axes", (1, 0)),))
        return self.transpose()

    def __getitem__(self, index):
        """Indexing. Basic indexing (ints, slices, None, ...) returns a view; its backward writes the
        gradient into a zero array at the same positions. Integer/boolean array indexing also works; its
        backward uses ``np.add.at`` so repeated indices add up."""
        if isinstance(index, Tensor):
            index = index.data
        elif isinstance(index, tuple):
            index = tuple(i.data if isinstance(i, Tensor) else i for i in index)
        x = self.data
        out = x[index]
        basic = _is_basic_index(index)

        def backward(g):
            full = np.zeros(x.shape, dtype=g.dtype)
            if basic:
                full[index] = g
            else:
                np.add.at(full, index, g)
            return (full,)

        return make_op(np.asarray(out), (self,), backward, "getitem", (("index", index),))


# ----------------------------------------------------------------------------------------------------------
# Building nodes
# ----------------------------------------------------------------------------------------------------------

def make_op(data, inputs, backward, name: str = "custom", attrs=None) -> Tensor:
    """Wrap the result of a forward computation as a Tensor that knows how to send gradients back.

    ``data``: the result (an ndarray). ``inputs``: the Tensors it was computed from. ``backward``: a
    function ``backward(grad_out) -> sequence with one entry per input``, each an ndarray of that
    input's shape (or None for "no gradient"); a one-input op may return a bare ndarray. It is only
    called if some input requires a gradient, and the engine skips entries for inputs that do not.

    The engine checks the returned shapes and casts to each input's dtype, so a wrong backward fails
    loudly. Return fresh arrays (or views of ``grad_out``): the engine may keep them as a leaf's
    ``.grad``, which it later updates in place.

    Recording happens only if grad mode is on and some input requires a gradient; otherwise the result is
    a plain leaf and ``backward`` is dropped, which is what makes ``no_grad()`` cheap.

    ``attrs`` (optional): the op's static parameters as a tuple of ``(key, value)`` pairs, e.g.
    ``(("axis", (1,)), ("keepdims", False))``. The engine does not use them; it hands them, with the
    result, the inputs and the name, to the function installed by ``observe_ops`` (a tracer), if any.
    """
    out = Tensor.__new__(Tensor)
    out.data = data if type(data) is np.ndarray else np.asarray(data)
    out.grad = None
    out._retain = False
    out._op = name
    if _GradMode.enabled:
        for t in inputs:
            if t.requires_grad:
                out.requires_grad = True
                out._parents = tuple(inputs)
                out._backward = backward
                if _OpObserver.fn is not None:
                    _OpObserver.fn(out, out._parents, name, attrs)
                return out
    out.requires_grad = False
    out._parents = ()
    out._backward = None
    if _OpObserver.fn is not None:
        _OpObserver.fn(out, tuple(inputs), name, attrs)
    return out


def _lift(value, like: Tensor) -> Tensor:
    """Make ``value`` a Tensor for a binary op with ``like``.

    A Python number takes ``like``'s dtype if that is floating point (NEP 50: ``float32 * 2.0`` is
    float32); ndarrays keep their dtype; lists become float32 as in ``Tensor(...)``.
    """
    if isinstance(value, Tensor):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        dt = like.data.dtype
        if dt.kind in "fc":
            return Tensor(np.asarray(value, dtype=dt))
        return Tensor(np.asarray(value))
    if isinstance(value, np.ndarray):
        return Tensor(value)
    if isinstance(value, (np.generic, bool, complex)):
        return Tensor(np.asarray(value))
    if isinstance(value, (list, tuple)):
        return Tensor(value)
    raise TypeError(f"unsupported operand type for a Tensor operation: {type(value).__name__}")


def _transpose2d_backward(g):
    # Module level, so that ``__matmul__`` can recognise a 2-D transpose node (``W.T``) by its backward.
    return (g.T,)


def _accumulate_leaf(leaf: Tensor, g: np.ndarray, handed: set) -> None:
    if leaf.grad is not None:
        if leaf.grad.flags.writeable and leaf.grad.shape == g.shape and leaf.grad.dtype == g.dtype:
            np.add(leaf.grad, g, out=leaf.grad)
        else:
            leaf.grad = leaf.grad + g
        return
    owner = g if g.base is None else g.base
    if not g.flags.writeable or id(owner) in handed:
        g = g.copy()
        owner = g
    handed.add(id(owner))
    leaf.grad = g
