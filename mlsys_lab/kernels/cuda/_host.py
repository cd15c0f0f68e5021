"""Host-side helpers shared by the kernel modules: input checks and launch arithmetic.

Every host wrapper takes NumPy arrays, checks them here (so a bad input fails with a message that
names the problem before anything reaches the device), copies them to the device, launches, and
copies the result back.
"""

from __future__ import annotations

import numpy as np

from .device import require_launchable

#: The one element type the kernels are written for. GPUs are built around 32-bit floats (many
#: cards run float64 at 1/32 of the float32 rate), and one dtype keeps every kernel readable.
DTYPE = np.float32

#: Largest block the kernels accept: CUDA's limit on threads per block.
MAX_THREADS_PER_BLOCK = 1024


def check_array(x, name: str = "x", *, min_ndim: int = 0) -> np.ndarray:
    """Check that ``x`` is a float32 NumPy array of at least ``min_ndim`` dimensions.

    Returns it C-contiguous: a non-contiguous view (a transpose, a strided slice) is copied, since it
    is copied to the device anyway. Raises ``TypeError`` for a non-array or another dtype, and
    ``ValueError`` for too few dimensions.
    """
    if not isinstance(x, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray, got {type(x).__name__}")
    if x.dtype != DTYPE:
        raise TypeError(
            f"{name} must have dtype float32, got {x.dtype} "
            f"(convert it with {name}.astype(np.float32))"
        )
    if x.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimension(s), got shape {x.shape}")
    # Not np.ascontiguousarray unconditionally: it turns a 0-d array into a 1-d one.
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def ceil_div(a: int, b: int) -> int:
    """Smallest integer >= a / b, for counting blocks: ``ceil_div(n, threads)`` blocks cover n items."""
    return -(-a // b)


def is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def check_threads(
    threads: int, *, low: int = 1, high: int = MAX_THREADS_PER_BLOCK, pow2: bool = False
) -> int:
    """Validate a threads-per-block argument; return it as an int."""
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool):
        raise TypeError(f"threads_per_block must be an int, got {type(threads).__name__}")
    threads = int(threads)
    if not low <= threads <= high:
        raise ValueError(f"threads_per_block must be between {low} and {high}, got {threads}")
    if pow2 and not is_power_of_two(threads):
        raise ValueError(f"threads_per_block must be a power of two for this kernel, got {threads}")
    return threads


def row_block_size(ncols: int, high: int = 256) -> int:
    """Threads for a one-block-per-row kernel: a whole number of warps, about one per element.

    At least one warp (32), at most ``high``: a short row wastes few threads, and a long row is
    walked with a block-stride loop.
    """
    threads = 32
    while threads < ncols and threads < high:
        threads *= 2
    return threads


__all__ = [
    "DTYPE",
    "MAX_THREADS_PER_BLOCK",
    "ceil_div",
    "check_array",
    "check_threads",
    "is_power_of_two",
    "require_launchable",
    "row_block_size",
]
