"""Lab 1: reverse-mode automatic differentiation on NumPy.

``Tensor`` (in ``tensor.py``) holds the whole engine; ``functional`` adds the ops whose backward is written
by hand (softmax, log_softmax, cross_entropy, einsum, gelu, ...). ``make_op`` builds a graph node for a
custom operation; ``no_grad`` switches graph recording off.

Importing this package also calls ``tune_allocator()`` once (see there; set the environment variable
``MLSYS_LAB_NO_MALLOC_TUNING=1`` to skip it).
"""

import os

from .tensor import Tensor, enable_grad, is_grad_enabled, make_op, no_grad, unbroadcast
from . import functional

__all__ = ["Tensor", "make_op", "no_grad", "enable_grad", "is_grad_enabled", "unbroadcast", "functional",
           "tune_allocator"]

_M_TOP_PAD = -2  # from glibc's <malloc.h>


def tune_allocator(top_pad_bytes: int = 16 << 20) -> bool:
    """Ask glibc's malloc to keep ``top_pad_bytes`` of freed memory instead of returning it to the OS.

    Why: eager execution allocates a fresh ndarray for every op's result and frees it a moment later.
    A training step of a small MLP frees a few MB at the top of the heap; by default glibc hands
    that back to the kernel (it trims once more than about twice its mmap threshold is free), so the
    next step page-faults every page in again. Measured on the Lab 1 MLP (64-256-256-10, batch 256):
    about 530 page faults and 1.66 ms per step before, 3 faults and 1.10 ms after. Production
    frameworks keep caching allocators for the same reason.

    Process-wide and harmless elsewhere (at most ``top_pad_bytes`` stay mapped). Does nothing and
    returns False where the C library is not glibc (macOS, musl, Windows).
    """
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return False
        import ctypes

        return bool(ctypes.CDLL(None).mallopt(_M_TOP_PAD, int(top_pad_bytes)))
    except (AttributeError, OSError, ValueError):
        return False


if not os.environ.get("MLSYS_LAB_NO_MALLOC_TUNING"):
    tune_allocator()
