"""Checks for Lab 5 (Numba CUDA kernels): one function per exercise.

Each ``check_*`` takes the student's *kernel* (a function decorated with ``@cuda.jit``), launches it
with a fixed launch configuration on small awkward inputs (sizes that are not multiples of the block or
tile size, one element, empty, grids smaller than the data) and compares what it wrote with NumPy:
float64 sums and products (within float32 rounding), and exact copies for the transpose.

Where the kernels run
---------------------
On a GPU when one is usable, else on Numba's CUDA simulator: :mod:`mlsys_lab.kernels.cuda`, imported
here before ``numba.cuda``, makes that choice. The simulator runs one Python thread per CUDA thread, so
every case is small (at most a few hundred threads per launch).

How the checks see mistakes
---------------------------
* **Out-of-bounds accesses.** Every array a kernel receives is a slice of a larger device array whose
  extra rows and columns are a guard: NaN after the inputs (a read past the end poisons the result),
  a sentinel after the outputs (a write past the end changes it). On the simulator the slice itself
  raises ``IndexError`` at such an access, and the check names the thread and block that made it.
* **Elements never written.** Outputs start filled with the sentinel; one left over names the index.
* **Races and uninitialised shared memory.** A missing ``cuda.syncthreads()`` is caught only when a
  launch exposes it. The simulator starts a block's threads one after another, and each runs ahead
  until it waits at a barrier or finishes, so a thread that reads shared memory without a barrier
  reads it before the others have written it. On the simulator the checks also fill fresh shared
  memory with NaN (a GPU leaves whatever was there), so such a read poisons the result every time
  rather than by luck. When a result is wrong, the check launches the same case once more and says
  whether the two results differ: results that change from run to run are the mark of a race.
* **Bank conflicts** (the transpose). The simulator has no banks, so the check reads the shape of the
  shared tile the kernel declared (on a GPU: the bytes of static shared memory the compiler reports)
  and computes which banks a warp reading one column of it would hit.

A wrong answer raises ``AssertionError`` naming the case, what was expected and what came back, with a
hint when the result matches a common mistake; a correct one prints ``✓ <exercise> passed``. A kernel
that is still the student copy's stub (it raises ``NotImplementedError``) makes the check raise
``NotImplementedError`` without launching it.
"""

from __future__ import annotations

import contextlib
import re
import threading

import numpy as np

from ...kernels import cuda as _kc  # first: chooses GPU or simulator before numba.cuda is imported
from . import report_pass

from numba import cuda  # noqa: E402  (after the choice above)

__all__ = [
    "check_vector_add",
    "check_block_sum",
    "check_gemm_tiled",
    "check_transpose_padded",
    "bank_conflict_degree",
    "sequential_addressing_sums",
]

F32 = np.float32
#: Value the outputs (and their guards) start with: a write past the end changes a guard; an element
#: still equal to it afterwards was never written.
SENTINEL = F32(-1234.5)
#: Extra elements (1-D) or rows and columns (2-D) around every array, filled with NaN or the sentinel.
GUARD = 40
WARP_SIZE = 32
NUM_BANKS = 32  # shared memory: 32 banks, 4 bytes wide

_RACE_NOTE = (
    "a second launch of the same case gave different results, so your kernel reads memory that nobody "
    "had written for it yet: a race (a thread reading shared memory that other threads write needs a "
    "cuda.syncthreads() between their writes and its reads, and another before the memory is "
    "overwritten) or shared memory that was never initialised."
)


# ----------------------------------------------------------------------------------------- helpers ----

def backend() -> str:
    """Where the checks launch kernels: ``"gpu"`` or ``"simulator"``."""
    return _kc.backend()


def _as_kernel(kernel, name: str):
    """The student's kernel, checked to be a launchable ``@cuda.jit`` function (or the stub)."""
    py_func = getattr(kernel, "py_func", None)
    if py_func is None or not hasattr(kernel, "__getitem__"):
        raise AssertionError(
            f"{name}: expected a CUDA kernel (a function decorated with @cuda.jit), got "
            f"{type(kernel).__name__}"
        )
    if getattr(kernel, "_device", False) or getattr(kernel, "targetoptions", {}).get("device"):
        raise AssertionError(
            f"{name}: this is a device function (@cuda.jit(device=True)), which only other kernels can "
            "call; a kernel that the host launches is decorated with plain @cuda.jit"
        )
    code = getattr(py_func, "__code__", None)
    if code is not None and "NotImplementedError" in code.co_names:
        # On a GPU a `raise` inside a kernel is not reported, so the stub is recognised here.
        raise NotImplementedError(
            f"{name} is still the exercise's stub: replace the line that raises NotImplementedError "
            "with your kernel's code"
        )
    return kernel


_SIM_INDEX = re.compile(r"tid=\[(\d+), (\d+), (\d+)\] ctaid=\[(\d+), (\d+), (\d+)\]:?\s*(.*)", re.S)


def _where(exc: Exception) -> str:
    """'thread (x, y, z) of block (x, y, z): message' from a simulator exception, else the message."""
    match = _SIM_INDEX.match(str(exc))
    if not match:
        return str(exc)
    g = match.groups()
    return f"thread ({g[0]}, {g[1]}, {g[2]}) of block ({g[3]}, {g[4]}, {g[5]}): {g[6]}"


def _launch(kernel, grid, block, args, what: str, bounds_hint: str):
    """Launch the student's kernel; return the shared arrays it allocated (simulator) or None (GPU)."""
    try:
        with _simulated_shared_memory() as shared:
            kernel[grid, block](*args)
            cuda.synchronize()
    except NotImplementedError:
        raise
    except IndexError as exc:  # the simulator: an access outside an array (the slice)
        raise AssertionError(
            f"{what}: your kernel accessed an array out of bounds, at {_where(exc)}\n  hint: {bounds_hint}"
        ) from exc
    except Exception as exc:
        raise AssertionError(
            f"{what}: launching your kernel raised {type(exc).__name__}: {_where(exc)}"
        ) from exc
    return shared


class _PoisonedAllocations(dict):
    """The simulator's table of shared arrays, filling each new float array with NaN.

    On a GPU, shared memory starts with whatever the previous block left there; in the simulator it
    is ``np.empty``, which is often harmless zeros or, worse, a copy of the right values. NaN makes a
    read of shared memory before anything was written to it show up in the result every time.
    """

    def __setitem__(self, key, array):
        if isinstance(array, np.ndarray) and array.dtype.kind == "f":
            array.fill(np.nan)
        super().__setitem__(key, array)


_sim_shared_lock = threading.Lock()


@contextlib.contextmanager
def _simulated_shared_memory():
    """On the simulator: poison the shared memory of the launches inside, and collect it.

    Yields the list that, after the block, holds every shared array the launches allocated; on a GPU
    (or a simulator laid out differently) yields None and changes nothing.
    """
    if backend() != "simulator":
        yield None
        return
    try:
        from numba.cuda.simulator import kernelapi

        cls = kernelapi.FakeCUDAShared
    except (ImportError, AttributeError):  # pragma: no cover - a simulator laid out differently
        yield None
        return
    found: list[np.ndarray] = []
    instances = []
    with _sim_shared_lock:
        original = cls.__init__

        def __init__(self, *args, **kwargs):
            original(self, *args, **kwargs)
            if isinstance(getattr(self, "_allocations", None), dict):
                self._allocations = _PoisonedAllocations(self._allocations)
            instances.append(self)

        cls.__init__ = __init__
        try:
            yield found
        finally:
            cls.__init__ = original
            for inst in instances:
                found.extend(getattr(inst, "_allocations", {}).values())


class _Guarded:
    """A device array ``view`` of the case's shape, cut from a larger array whose rest is a guard."""

    def __init__(self, data: np.ndarray, fill):
        data = np.asarray(data, dtype=F32)
        self.shape = data.shape
        self.fill = F32(fill)
        big = tuple(s + GUARD for s in data.shape)
        full = np.full(big, self.fill, dtype=F32)
        full[tuple(slice(0, s) for s in data.shape)] = data
        self.device = cuda.to_device(full)
        self.view = self.device[tuple(slice(0, s) for s in data.shape)]

    def result(self) -> tuple[np.ndarray, bool]:
        """The view's contents, and whether the guard is intact."""
        full = self.device.copy_to_host()
        inside = tuple(slice(0, s) for s in self.shape)
        mask = np.ones(full.shape, dtype=bool)
        mask[inside] = False
        guard = full[mask]
        intact = bool(np.all(np.isnan(guard))) if np.isnan(self.fill) else bool(np.all(guard == self.fill))
        return full[inside].copy(), intact


def _guarded_inputs(*arrays):
    return [_Guarded(a, np.nan) for a in arrays]


def _guarded_output(shape):
    return _Guarded(np.full(shape, SENTINEL, dtype=F32), SENTINEL)


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and bool(np.all((a == b) | (np.isnan(a) & np.isnan(b))))


def _verify(run, verify) -> None:
    """Run a case and verify it; on failure run it again to tell a race from a plain mistake."""
    got = run()
    try:
        verify(got)
    except AssertionError as err:
        try:
            again = run()
        except AssertionError:
            raise err from None
        if not _same(got, again):
            raise AssertionError(f"{err}\n  note: {_RACE_NOTE}") from None
        raise


def _first_index(mask: np.ndarray) -> tuple:
    return tuple(int(i) for i in np.argwhere(mask)[0])


def _compare(got: np.ndarray, expected: np.ndarray, tol: np.ndarray, what: str, *, out_name: str,
             guard_intact: bool, inputs_have_nan: bool = False, hint: str | None = None) -> None:
    """Compare a kernel's output with float64 ground truth, element by element within ``tol``."""
    suffix = f"\n  hint: {hint}" if hint else ""
    if not guard_intact:
        raise AssertionError(
            f"{what}: your kernel wrote past the end of {out_name} (the check keeps a guard zone after "
            f"it, and it changed): a thread whose index is outside the array must not write"
        )
    unwritten = got == SENTINEL
    if unwritten.any():
        idx = _first_index(unwritten)
        raise AssertionError(
            f"{what}: {out_name}{list(idx)} was never written ({int(unwritten.sum())} of {got.size} "
            f"elements were not){suffix}"
        )
    if np.isnan(got).any() and not inputs_have_nan:
        idx = _first_index(np.isnan(got))
        raise AssertionError(
            f"{what}: {out_name}{list(idx)} is NaN: your kernel used a value that nobody wrote, either "
            f"past the end of an input (the check puts NaN after every input: threads outside the data "
            f"must not read it) or shared memory before it was written (on the simulator the check "
            f"fills fresh shared memory with NaN).{suffix}"
        )
    err = np.abs(got.astype(np.float64) - expected)
    bad = ~(err <= tol)
    if bad.any():
        idx = _first_index(bad)
        with np.printoptions(precision=4, suppress=True, threshold=64, edgeitems=3, linewidth=100):
            raise AssertionError(
                f"{what}: wrong values; first wrong element {out_name}{list(idx)}: expected "
                f"{expected[idx]:.6g}, got {float(got[idx]):.6g} ({int(bad.sum())} of {got.size} "
                f"elements wrong)\n  expected:\n{_indent(expected)}\n  got:\n{_indent(got)}{suffix}"
            )


def _indent(a: np.ndarray) -> str:
    return "\n".join("    " + line for line in np.array2string(np.asarray(a, dtype=np.float64)).splitlines())


def _rand(rng, shape) -> np.ndarray:
    return rng.standard_normal(shape).astype(F32)


def _check_block(threads, name: str, *, pow2: bool = False) -> int:
    if not isinstance(threads, (int, np.integer)) or isinstance(threads, bool) or not 1 <= threads <= 1024:
        raise ValueError(f"{name} must be an int between 1 and 1024, got {threads!r}")
    if pow2 and threads & (threads - 1):
        raise ValueError(f"{name} must be a power of two, got {threads}")
    return int(threads)


# ------------------------------------------------------------------------------------ vector add ----

#: (n, blocks, threads per block): grids smaller, larger and exactly as large as the data.
VECTOR_ADD_CASES = [(1, 1, 32), (0, 1, 32), (5, 1, 32), (33, 1, 32), (64, 2, 32), (100, 2, 32),
                    (257, 2, 64), (1000, 3, 64)]


def check_vector_add(vector_add, seed: int = 0) -> None:
    """Check a grid-stride kernel ``vector_add(a, b, out)``: ``out[i] = a[i] + b[i]`` for every ``i``.

    Launched with fixed small grids (``kernel[blocks, threads]``), most of them with fewer threads in
    all than elements, so each thread must loop over the array with a stride of the whole grid.
    """
    kernel = _as_kernel(vector_add, "vector_add")
    rng = np.random.default_rng(seed)
    for n, blocks, threads in VECTOR_ADD_CASES:
        a, b = _rand(rng, n), _rand(rng, n)
        grid_threads = blocks * threads
        what = f"vector_add[{blocks}, {threads}] on {n} elements"

        def run(a=a, b=b, blocks=blocks, threads=threads, what=what):
            da, db = _guarded_inputs(a, b)
            out = _guarded_output(n)
            _launch(kernel, blocks, threads, (da.view, db.view, out.view), what,
                    "a grid-stride loop `for i in range(start, out.size, stride)` never leaves the array")
            got, intact = out.result()
            run.intact = intact
            return got

        def verify(got, a=a, b=b, what=what, grid_threads=grid_threads, threads=threads, run=run):
            hint = None
            unwritten = got == SENTINEL
            if unwritten.any():
                idx = np.flatnonzero(unwritten)
                if idx.min() >= grid_threads:
                    hint = (f"only the first {grid_threads} elements (one per thread of the grid) were "
                            "written: each thread must loop, stepping by the number of threads in the "
                            "whole grid, cuda.gridsize(1)")
                elif np.all(idx % grid_threads >= threads) and len(idx) < n:
                    hint = ("the elements left out are those of every block but the first: start each "
                            "thread at its global index cuda.grid(1) = blockIdx.x * blockDim.x + "
                            "threadIdx.x, not at threadIdx.x")
                elif list(idx) == [n - 1]:
                    hint = "the last element was left out: range(start, n, stride) already stops before n"
            tol = 1e-6 * (np.abs(a.astype(np.float64)) + np.abs(b)) + 1e-7
            _compare(got, a.astype(np.float64) + b, tol, what, out_name="out",
                     guard_intact=run.intact, hint=hint or "out[i] must be a[i] + b[i]")

        _verify(run, verify)
    report_pass("vector add (grid-stride loop)", len(VECTOR_ADD_CASES))


# ------------------------------------------------------------------------------------- block sum ----

#: Array sizes for the block reduction: exactly one block, one partial block, one element over, and
#: several blocks whose last one is nearly empty.
BLOCK_SUM_SIZES = [64, 1, 37, 65, 130, 257]


def sequential_addressing_sums(x: np.ndarray, threads: int) -> np.ndarray:
    """The partial sums that the sequential-addressing tree computes, bit for bit, in float32.

    Each block's ``threads`` values (zero-padded past the end) are summed by ``s[t] += s[t + stride]``
    for ``t < stride``, with ``stride`` halving from ``threads / 2``: the same additions in the same
    order as the kernel, so the float32 rounding is the same too.
    """
    x = np.asarray(x, dtype=F32)
    blocks = -(-x.size // threads)
    s = np.zeros(blocks * threads, dtype=F32)
    s[: x.size] = x
    s = s.reshape(blocks, threads)
    stride = threads // 2
    while stride > 0:
        s[:, :stride] += s[:, stride: 2 * stride]
        stride //= 2
    return s[:, 0].copy()


def check_block_sum(block_sum, threads_per_block: int = 64, seed: int = 0) -> None:
    """Check ``block_sum(x, partial)``: ``partial[b]`` = the sum of block ``b``'s elements of ``x``.

    Launched as ``block_sum[ceil(n / threads_per_block), threads_per_block]``; block ``b`` owns
    ``x[b * threads_per_block : (b + 1) * threads_per_block]``. The sums must be right (within float32
    rounding) and must be added in the order of sequential addressing (thread ``t`` adds element
    ``t + stride``, ``stride`` halving from ``blockDim.x / 2``), which the check reproduces bit for bit.
    """
    threads = _check_block(threads_per_block, "threads_per_block", pow2=True)
    kernel = _as_kernel(block_sum, "block_sum")
    rng = np.random.default_rng(seed)
    for n in BLOCK_SUM_SIZES:
        x = _rand(rng, n)
        blocks = -(-n // threads)
        what = f"block_sum[{blocks}, {threads}] on {n} elements"
        starts = np.arange(0, n, threads)
        expected = np.add.reduceat(x.astype(np.float64), starts)
        tol = 1e-5 * np.add.reduceat(np.abs(x.astype(np.float64)), starts) + 1e-6

        def run(x=x, blocks=blocks, what=what):
            (dx,) = _guarded_inputs(x)
            out = _guarded_output(blocks)
            _launch(kernel, blocks, threads, (dx.view, out.view), what,
                    "threads past the end of x (in the last block) must put 0 in shared memory instead "
                    "of reading x, and the tree only reads indices below blockDim.x")
            got, intact = out.result()
            run.intact = intact
            return got

        def verify(got, x=x, blocks=blocks, what=what, expected=expected, tol=tol, run=run):
            hint = None
            if blocks > 1 and got[0] != SENTINEL and np.all(got[1:] == SENTINEL):
                hint = "each block writes its own partial sum: partial[cuda.blockIdx.x], not partial[0]"
            elif blocks > 1 and np.allclose(got, got[0]) and not np.allclose(expected, expected[0]):
                hint = ("every block summed the same elements: a thread's element is "
                        "x[cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x]")
            elif x.size % threads and not abs(got[-1] - expected[-1]) <= tol[-1] and np.all(
                    np.abs(got[:-1] - expected[:-1]) <= tol[:-1]):
                hint = ("the last block is only partly filled: its threads past the end of x must put "
                        "0 into shared memory, or the tree adds whatever was there before (and every "
                        "read of shared memory must come after a cuda.syncthreads() that follows the "
                        "writes)")
            _compare(got, expected, tol, what, out_name="partial", guard_intact=run.intact, hint=hint)
            tree = sequential_addressing_sums(x, threads)
            if not np.array_equal(got, tree):
                idx = int(np.flatnonzero(got != tree)[0])
                raise AssertionError(
                    f"{what}: the sums are right to float32 rounding but were not added in the order of "
                    f"sequential addressing (partial[{idx}] is {float(got[idx])!r}, the tree gives "
                    f"{float(tree[idx])!r}).\n  hint: at each step the first `stride` threads add, thread "
                    "t adding element t + stride, with stride = blockDim.x // 2, then halving; the "
                    "neighbour-pairs rung (thread t adds t + stride when t % (2 * stride) == 0) adds in "
                    "another order"
                )

        _verify(run, verify)
    report_pass("block sum (sequential addressing)", len(BLOCK_SUM_SIZES))


# ------------------------------------------------------------------------------------ tiled GEMM ----

#: (m, k, n): one element, exactly one tile, k spanning several tiles with a partial one, and shapes
#: whose every dimension leaves a partial tile.
GEMM_CASES = [(1, 1, 1), (8, 8, 8), (3, 20, 5), (19, 21, 17), (9, 7, 12)]


def check_gemm_tiled(gemm_tiled, tile: int = 8, seed: int = 0) -> None:
    """Check ``gemm_tiled(a, b, c)``: ``c = a @ b`` for float32 ``a`` (m, k) and ``b`` (k, n).

    Launched with blocks of ``(tile, tile)`` threads on a grid of ``(ceil(n / tile), ceil(m / tile))``
    blocks: ``threadIdx.x`` and ``blockIdx.x`` walk the columns, ``.y`` the rows. Ground truth: the
    float64 product, within float32 rounding of the sum of ``|a| @ |b|``.
    """
    tile = _check_block(tile, "tile")
    if tile * tile > 1024:
        raise ValueError(f"tile * tile must be at most 1024 threads, got tile={tile}")
    kernel = _as_kernel(gemm_tiled, "gemm_tiled")
    rng = np.random.default_rng(seed)
    for m, k, n in GEMM_CASES:
        a, b = _rand(rng, (m, k)), _rand(rng, (k, n))
        grid = (-(-n // tile), -(-m // tile))
        what = f"gemm_tiled[{grid}, ({tile}, {tile})] with a.shape={a.shape}, b.shape={b.shape}"
        a64, b64 = a.astype(np.float64), b.astype(np.float64)
        expected = a64 @ b64
        tol = 1e-5 * (np.abs(a64) @ np.abs(b64)) + 1e-6

        def run(a=a, b=b, grid=grid, what=what, m=m, n=n):
            da, db = _guarded_inputs(a, b)
            out = _guarded_output((m, n))
            _launch(kernel, grid, (tile, tile), (da.view, db.view, out.view), what,
                    "a thread whose row or column falls outside a or b must load 0 into the tile "
                    "instead (zeros add nothing to the dot products), and only threads inside c store")
            got, intact = out.result()
            run.intact = intact
            return got

        def verify(got, a64=a64, b64=b64, k=k, what=what, expected=expected, tol=tol, run=run):
            hint = ("each thread loads a[row, t * TILE + tx] into a_tile[ty, tx] and "
                    "b[t * TILE + ty, col] into b_tile[ty, tx], then adds a_tile[ty, p] * b_tile[p, tx] "
                    "over p")
            full = (k // tile) * tile
            if full < k and np.shape(got) == expected.shape:
                short = a64[:, :full] @ b64[:full]
                if np.all(np.abs(got - short) <= tol):
                    hint = (f"k = {k} is not a multiple of TILE = {tile}, and the last, partial tile was "
                            "left out: loop over (k + TILE - 1) // TILE tiles")
            _compare(got, expected, tol, what, out_name="c", guard_intact=run.intact, hint=hint)

        _verify(run, verify)
    report_pass("tiled GEMM", len(GEMM_CASES))


# ----------------------------------------------------------------------------- padded transpose ----

#: (m, n) of x: one element, exactly one tile, and non-square shapes with partial tiles both ways.
TRANSPOSE_CASES = [(1, 1), (32, 32), (33, 35), (5, 70), (70, 3)]


def bank_conflict_degree(row_length: int, rows: int = WARP_SIZE) -> int:
    """How many ways a warp reading one column of a row-major shared tile of 4-byte elements conflicts.

    Lane ``t`` of the warp reads element ``(t, c)``, the 4-byte word ``t * row_length + c``; shared
    memory has 32 banks of 4 bytes, word ``w`` in bank ``w % 32``. Accesses to different words of one
    bank are served one after another, so the degree is the largest number of distinct words the warp
    needs from a single bank (1: no conflict; 32: fully serialised). It equals
    ``gcd(row_length, 32)`` when the tile has at least 32 rows.
    """
    lanes = np.arange(min(rows, WARP_SIZE))
    words = np.unique(lanes * row_length)  # column 0; every column behaves the same
    return int(np.bincount(words % NUM_BANKS, minlength=NUM_BANKS).max())


def _tile_row_length(kernel, tile_dim: int, shared_arrays) -> tuple[int | None, str]:
    """The row length (in 4-byte words) of the kernel's shared tile, and how it was found."""
    if shared_arrays is not None:  # simulator: the arrays themselves
        tiles = [a for a in shared_arrays if a.ndim == 2 and a.shape[0] >= tile_dim]
        if not shared_arrays:
            return 0, "no shared array"
        if not tiles:
            shapes = ", ".join(str(a.shape) for a in shared_arrays)
            return None, f"shared arrays {shapes}, none of them a tile with {tile_dim} rows"
        t = max(tiles, key=lambda a: a.size)
        return t.shape[1] * t.itemsize // 4, f"a {t.shape[0]} x {t.shape[1]} {t.dtype} tile"
    if not hasattr(kernel, "get_shared_mem_per_block"):  # a simulator laid out differently: unknown
        return None, "a shared tile of unknown shape"
    sizes = kernel.get_shared_mem_per_block()  # GPU: static shared memory of the compiled kernel
    nbytes = max(sizes.values()) if isinstance(sizes, dict) else int(sizes)
    if nbytes == 0:
        return 0, "no shared memory"
    if nbytes % (tile_dim * 4):
        return None, f"{nbytes} bytes of shared memory"
    return nbytes // (tile_dim * 4), f"{nbytes} bytes of shared memory ({tile_dim} rows)"


def check_transpose_padded(transpose_padded, tile_dim: int = 32, block_rows: int = 8, seed: int = 0) -> None:
    """Check ``transpose_padded(x, out)``: ``out = x.T`` through a shared tile without bank conflicts.

    ``x`` is float32 (m, n), ``out`` (n, m). Launched with blocks of ``(tile_dim, block_rows)`` threads on
    a grid of ``(ceil(n / tile_dim), ceil(m / tile_dim))`` blocks; block ``(bx, by)`` copies the tile of
    ``x`` at rows ``by * tile_dim ...`` and columns ``bx * tile_dim ...``, each thread
    ``tile_dim / block_rows`` of its elements. The copy must be exact, and a warp reading one column of
    the kernel's shared tile must touch ``tile_dim`` different banks.
    """
    tile_dim = _check_block(tile_dim, "tile_dim")
    block_rows = _check_block(block_rows, "block_rows")
    kernel = _as_kernel(transpose_padded, "transpose_padded")
    rng = np.random.default_rng(seed)
    row_length = description = None
    for m, n in TRANSPOSE_CASES:
        x = _rand(rng, (m, n))
        grid = (-(-n // tile_dim), -(-m // tile_dim))
        what = f"transpose_padded[{grid}, ({tile_dim}, {block_rows})] with x.shape={x.shape}"

        def run(x=x, grid=grid, what=what, m=m, n=n):
            nonlocal row_length, description
            (dx,) = _guarded_inputs(x)
            out = _guarded_output((n, m))
            shared = _launch(kernel, grid, (tile_dim, block_rows), (dx.view, out.view), what,
                             "x has m rows and n columns, out has n rows and m columns: check each "
                             "index against the right one, both when reading x and when writing out")
            got, intact = out.result()
            run.intact = intact
            row_length, description = _tile_row_length(kernel, tile_dim, shared)
            return got

        def verify(got, x=x, what=what, run=run):
            hint = None
            if got.shape == x.T.shape and np.array_equal(got, x) and x.shape[0] == x.shape[1]:
                hint = "out equals x: the tile must be read transposed, tile[threadIdx.x, r]"
            _compare(got, x.T.astype(np.float64), np.zeros(x.T.shape), what, out_name="out",
                     guard_intact=run.intact, hint=hint or (
                         "block (bx, by) reads the tile of x at rows by * TILE_DIM + r, columns "
                         "bx * TILE_DIM + threadIdx.x, and writes it to out at rows bx * TILE_DIM + r, "
                         "columns by * TILE_DIM + threadIdx.x"))

        _verify(run, verify)
    # Correct: now the bank conflicts of the tile it used.
    if row_length == 0:
        raise AssertionError(
            f"transpose_padded: the result is right, but your kernel uses {description}: it is the naive "
            "transpose, whose writes to out are strided (not coalesced). Stage each tile in a shared "
            "array: read x into it row by row, and write out from it row by row."
        )
    if row_length is not None:
        degree = bank_conflict_degree(row_length, rows=tile_dim)
        if degree > 1:
            raise AssertionError(
                f"transpose_padded: the result is right, but your kernel uses {description}: its rows "
                f"are {row_length} words long, so a warp reading one column of it asks {degree} "
                f"different words of the same bank, a {degree}-way bank conflict.\n  hint: pad each row "
                f"by one element, cuda.shared.array((TILE_DIM, TILE_DIM + 1), float32) written with a "
                "constant such as PADDED = TILE_DIM + 1: with rows 33 words long, the 32 elements of a "
                "column fall in 32 different banks"
            )
    report_pass("padded tiled transpose", len(TRANSPOSE_CASES))
