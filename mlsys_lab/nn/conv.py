"""2-D convolution as im2col + one matrix product, and 2-D pooling.

``conv2d`` unfolds every kernel-sized patch of the (padded) input into one row of a matrix
(*im2col*), so that the whole convolution is a single GEMM with the flattened kernels::

    cols   = im2col(x)                      # (N*OH*OW, C*KH*KW)
    out    = cols @ W.reshape(O, -1).T + b  # (N*OH*OW, O)  -> reshaped to (N, O, OH, OW)

Its backward is two more GEMMs and the inverse of the unfolding (*col2im*), which adds every
row's entries back to the input pixels they came from (a pixel inside several patches gets the sum)::

    dW    = dout2d.T @ cols
    dcols = dout2d @ W.reshape(O, -1)
    dx    = col2im(dcols)

The forward unfolding is a strided view (``sliding_window_view``) copied once; ``col2im`` is a loop
over the KH*KW kernel offsets, each a vectorised add of a strided slice.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..autograd import Tensor, make_op
from . import init
from .module import Module, Parameter

__all__ = ["conv2d", "max_pool2d", "avg_pool2d", "im2col", "col2im", "conv_output_size",
           "Conv2d", "MaxPool2d", "AvgPool2d"]


def _pair(value, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        pair = tuple(value)
    else:
        pair = (value, value)
    for v in pair:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
            raise ValueError(f"{name} must be an int >= {minimum} or a pair of them, got {value!r}")
    return int(pair[0]), int(pair[1])


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``floor((size + 2*padding - kernel) / stride) + 1``."""
    return (size + 2 * padding - kernel) // stride + 1


def _check_input(x: np.ndarray, what: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{what} expects an input of shape (N, C, H, W), got shape {x.shape}")


def _windows(x, kernel, stride, padding, pad_value=0.0):
    """The (N, C, OH, OW, KH, KW) strided view of all patches of ``x`` (padded first), and the padded
    shape."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    if h + 2 * ph < kh or w + 2 * pw < kw:
        raise ValueError(f"kernel size {kernel} is larger than the padded input "
                         f"({h + 2 * ph}, {w + 2 * pw}) (input shape {x.shape}, padding {padding})")
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    win = sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    return win, x.shape


def _fold(gwin, padded_shape, kernel, stride, padding, dtype):
    """Inverse of ``_windows`` for gradients: add each patch gradient (N, C, OH, OW, KH, KW) back
    to the input positions it was read from; returns an array of the unpadded input's shape."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    oh, ow = gwin.shape[2], gwin.shape[3]
    out = np.zeros(padded_shape, dtype=dtype)
    for i in range(kh):
        for j in range(kw):
            out[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw] += gwin[:, :, :, :, i, j]
    if ph or pw:
        out = out[:, :, ph:padded_shape[2] - ph, pw:padded_shape[3] - pw]
    return out


def im2col(x: np.ndarray, kernel_size, stride=1, padding=0) -> np.ndarray:
    """Unfold the patches of ``x`` (N, C, H, W) into a matrix of shape (N*OH*OW, C*KH*KW).

    Row ``(n, oh, ow)`` holds the patch under output pixel ``(oh, ow)`` of image ``n``, flattened in
    the order (c, kh, kw), which is the order of a flattened ``Conv2d`` weight (O, C, KH, KW).
    """
    kernel, stride, padding = (_pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
                               _pair(padding, "padding", 0))
    _check_input(x, "im2col")
    win, _ = _windows(x, kernel, stride, padding)
    n, c, oh, ow, kh, kw = win.shape
    return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, c * kh * kw)


def col2im(cols: np.ndarray, x_shape, kernel_size, stride=1, padding=0) -> np.ndarray:
    """The adjoint of :func:`im2col`: sum each row's entries back into an array of shape ``x_shape``."""
    kernel, stride, padding = (_pair(kernel_size, "kernel_size", 1), _pair(stride, "stride", 1),
                               _pair(padding, "padding", 0))
    n, c, h, w = x_shape
    oh = conv_output_size(h, kernel[0], stride[0], padding[0])
    ow = conv_output_size(w, kernel[1], stride[1], padding[1])
    expected = (n * oh * ow, c * kernel[0] * kernel[1])
    if cols.shape != expected:
        raise ValueError(f"col2im: cols has shape {cols.shape}, expected {expected} for input shape "
                         f"{tuple(x_shape)}")
    gwin = cols.reshape(n, oh, ow, c, *kernel).transpose(0, 3, 1, 2, 4, 5)
    padded = (n, c, h + 2 * padding[0], w + 2 * padding[1])
    return _fold(gwin, padded, kernel, stride, padding, cols.dtype)


def conv2d(x: Tensor, weight: Tensor, bias: Tensor | None = None, stride=1, padding=0) -> Tensor:
    """2-D cross-correlation (what deep learning calls convolution), as ``torch.nn.functional.conv2d``.

    ``x``: (N, C, H, W); ``weight``: (O, C, KH, KW); ``bias``: (O,) or None. Returns (N, O, OH, OW).
    One recorded op, with a hand-written backward (two GEMMs and col2im).
    """
    if not isinstance(x, Tensor):
        x = Tensor(np.asarray(x))
    xd, wd = x.data, weight.data
    _check_input(xd, "conv2d")
    if wd.ndim != 4:
        raise ValueError(f"conv2d expects a weight of shape (O, C, KH, KW), got shape {wd.shape}")
    if xd.shape[1] != wd.shape[1]:
        raise ValueError(f"conv2d: input has {xd.shape[1]} channels (shape {xd.shape}) but the weight "
                         f"expects {wd.shape[1]} (shape {wd.shape})")
    if bias is not None and bias.shape != (wd.shape[0],):
        raise ValueError(f"conv2d: bias must have shape ({wd.shape[0]},), got {bias.shape}")
    stride, padding = _pair(stride, "stride", 1), _pair(padding, "padding", 0)
    kernel = wd.shape[2:]
    n = xd.shape[0]
    o = wd.shape[0]

    win, padded_shape = _windows(xd, kernel, stride, padding)
    oh, ow = win.shape[2], win.shape[3]
    cols = win.transpose(0, 2, 3, 1, 4, 5).reshape(n * oh * ow, -1)   # the one copy: im2col
    wmat = wd.reshape(o, -1)
    out2d = cols @ wmat.T
    if bias is not None:
        out2d += bias.data
    out = np.ascontiguousarray(out2d.reshape(n, oh, ow, o).transpose(0, 3, 1, 2))

    def backward(g):
        g2d = g.transpose(0, 2, 3, 1).reshape(n * oh * ow, o)
        gx = gw = gb = None
        if x.requires_grad:
            dcols = g2d @ wmat
            gwin = dcols.reshape(n, oh, ow, xd.shape[1], *kernel).transpose(0, 3, 1, 2, 4, 5)
            gx = _fold(gwin, padded_shape, kernel, stride, padding, dcols.dtype)
        if weight.requires_grad:
            gw = (g2d.T @ cols).reshape(wd.shape)
        if bias is not None and bias.requires_grad:
            gb = g2d.sum(axis=0)
        return (gx, gw) if bias is None else (gx, gw, gb)

    inputs = (x, weight) if bias is None else (x, weight, bias)
    return make_op(out, inputs, backward, "conv2d")


def max_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Maximum over each window (as ``torch.nn.functional.max_pool2d``; padding counts as -inf).
    The gradient goes to the first maximum of each window."""
    if not isinstance(x, Tensor):
        x = Tensor(np.asarray(x))
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"padding {padding} must be at most half the kernel size {kernel}")
    xd = x.data
    _check_input(xd, "max_pool2d")
    win, padded_shape = _windows(xd, kernel, stride, padding, pad_value=-np.inf)
    n, c, oh, ow, kh, kw = win.shape
    flat = win.reshape(n, c, oh, ow, kh * kw)
    arg = flat.argmax(axis=-1)
    out = np.take_along_axis(flat, arg[..., None], axis=-1)[..., 0]

    def backward(g):
        onehot = (arg[..., None] == np.arange(kh * kw)).astype(g.dtype)
        gwin = (onehot * g[..., None]).reshape(n, c, oh, ow, kh, kw)
        return (_fold(gwin, padded_shape, kernel, stride, padding, g.dtype),)

    return make_op(out, (x,), backward, "max_pool2d")


def avg_pool2d(x: Tensor, kernel_size, stride=None, padding=0) -> Tensor:
    """Mean over each window (as ``torch.nn.functional.avg_pool2d`` with ``count_include_pad=True``)."""
    if not isinstance(x, Tensor):
        x = Tensor(np.asarray(x))
    kernel = _pair(kernel_size, "kernel_size", 1)
    stride = kernel if stride is None else _pair(stride, "stride", 1)
    padding = _pair(padding, "padding", 0)
    if padding[0] * 2 > kernel[0] or padding[1] * 2 > kernel[1]:
        raise ValueError(f"padding {padding} must be at most half the kernel size {kernel}")
    xd = x.data
    _check_input(xd, "avg_pool2d")
    win, padded_shape = _windows(xd, kernel, stride, padding)
    count = kernel[0] * kernel[1]
    out = win.mean(axis=(-2, -1)).astype(xd.dtype, copy=False)

    def backward(g):
        share = (g / g.dtype.type(count))[..., None, None]
        gwin = np.broadcast_to(share, g.shape + kernel)
        return (_fold(gwin, padded_shape, kernel, stride, padding, g.dtype),)

    return make_op(out, (x,), backward, "avg_pool2d")


class Conv2d(Module):
    """2-D convolution layer: ``weight`` (out_channels, in_channels, KH, KW), ``bias`` (out_channels,).

    Initialised like PyTorch's: uniform on ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` with
    ``fan_in = in_channels * KH * KW``. Computed by :func:`conv2d` (im2col + one GEMM).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, dtype=np.float32, rng=None):
        super().__init__()
        for name, v in (("in_channels", in_channels), ("out_channels", out_channels)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
                raise ValueError(f"{name} must be a positive int, got {v!r}")
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size", 1)
        self.stride = _pair(stride, "stride", 1)
        self.padding = _pair(padding, "padding", 0)
        rng = init.get_rng(rng)
        self.weight = Parameter(np.empty((out_channels, in_channels, *self.kernel_size), dtype=dtype))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5), rng=rng)
        if bias:
            fan_in = in_channels * self.kernel_size[0] * self.kernel_size[1]
            bound = 1.0 / math.sqrt(fan_in)
            self.bias = Parameter(np.empty(out_channels, dtype=dtype))
            init.uniform_(self.bias, -bound, bound, rng=rng)
        else:
            self.bias = None

    def forward(self, x: Tensor) -> Tensor:
        return conv2d(x, self.weight, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding}"
        if self.bias is None:
            s += ", bias=False"
        return s


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: Tensor) -> Tensor:
        return avg_pool2d(x, self.kernel_size, self.stride, self.padding)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"
