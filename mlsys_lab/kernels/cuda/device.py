"""Choose where the CUDA kernels run: a real GPU, or Numba's CUDA simulator.

Numba decides between the two once per process, at the moment ``numba.cuda`` is first imported: it
reads the environment variable ``NUMBA_ENABLE_CUDASIM`` then, and never again. Setting the variable
afterwards changes nothing. So the choice has to be made *before* that import, and this module is
what makes it: the package ``mlsys_lab.kernels.cuda`` imports it first, before any kernel module
imports ``numba.cuda``.

The rule, in order:

1. ``numba.cuda`` is already imported (someone imported it before this package): use whatever mode it
   is in; it cannot be changed any more. If it is in GPU mode but no GPU is usable, kernel launches
   raise :class:`CudaUnavailableError` saying how to fix it (import ``mlsys_lab.kernels.cuda`` first,
   or start Python with ``NUMBA_ENABLE_CUDASIM=1``).
2. ``NUMBA_ENABLE_CUDASIM`` is set in the environment (to anything): it is the user's explicit choice
   and is obeyed as Numba reads it (``1``: simulator; ``0``: real GPU mode). ``0`` with no GPU still
   allows compiling kernels to PTX (see :mod:`mlsys_lab.kernels.cuda.ptx`), but not launching them.
3. Otherwise probe for a GPU *without* importing ``numba.cuda``: load the CUDA driver library with
   :mod:`ctypes`, call ``cuInit``, count the devices and check the driver is new enough for the CUDA 12
   bindings that ``numba-cuda[cu12]`` uses. A usable device: GPU mode. Anything else (no driver
   library, no device, driver too old): set ``NUMBA_ENABLE_CUDASIM=1`` and use the simulator.

The variable is set in ``os.environ``, so child processes inherit the same choice; the PTX report
overrides it on purpose for its own child process.

What the simulator can and cannot show
--------------------------------------
The simulator runs every CUDA thread of a block as a Python thread, one block after another. It
executes the *same kernel source*, so it shows whether the indexing, the bounds checks, the barriers
and the algorithm are right. It cannot show:

* **speed**: it is thousands of times slower than a GPU, and its timings say nothing about one;
* **coalescing and bank conflicts**: there are no memory transactions or banks, so a coalesced and a
  strided kernel cost the same, and padding a shared-memory tile changes nothing;
* **races**: threads interleave at the whims of Python's scheduler, not in lock-step warps. A missing
  ``cuda.syncthreads()`` may go unnoticed here and fail on a GPU (or the other way round), and
  warp-synchronous tricks that assume lock-step execution are never exercised faithfully;
* **occupancy, registers, spills**: nothing is compiled; see :mod:`mlsys_lab.kernels.cuda.ptx` for
  the real resource usage from the compiler.

Gaps in the simulator that this module fills
--------------------------------------------
Numba's simulator has no warp shuffles (``cuda.shfl_*_sync``) and no ``cuda.syncwarp`` (numba issue
8433), and its shared-memory allocator is not thread-safe (two threads reaching the first
``cuda.shared.array`` of a launch at the same time can get different arrays). When the simulator is
active, :func:`configure` adds the missing intrinsics to the simulator's fake ``cuda`` module (only
where it lacks them) and makes the allocator take a lock. The shuffles are emulated with a barrier
per warp: every lane named in the mask must reach the same shuffle, as on a GPU. It also shortens
Python's thread switch interval while a simulated kernel runs, which about halves the time of
kernels with many barriers (see :func:`_patch_launch_switch_interval`).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import threading

__all__ = [
    "CudaUnavailableError",
    "backend",
    "configure",
    "describe",
    "require_launchable",
    "selection_reason",
]

ENV_VAR = "NUMBA_ENABLE_CUDASIM"

# The CUDA 12 Python bindings (numba-cuda[cu12]) need a driver that speaks CUDA 12.0 or newer;
# cuDriverGetVersion reports 1000 * major + 10 * minor.
MIN_DRIVER_VERSION = 12000

# How long a simulated warp waits for its lanes at a shuffle before declaring the warp divergent.
# Generous: a slow machine can take a while to schedule 32 Python threads.
_WARP_TIMEOUT_S = 60.0


class CudaUnavailableError(RuntimeError):
    """Raised when a kernel launch is asked for but neither a GPU nor the simulator is available."""


_lock = threading.Lock()
_state: dict[str, object] = {}


def _probe_gpu() -> tuple[bool, str]:
    """Look for a usable CUDA device through the driver API, without importing numba.cuda.

    Returns ``(usable, reason)``. Never raises: any failure means "no usable GPU", with the reason.
    """
    if sys.platform == "darwin":
        return False, "macOS has no CUDA driver"
    names = ["nvcuda.dll"] if sys.platform == "win32" else ["libcuda.so.1", "libcuda.so"]
    found = ctypes.util.find_library("cuda")
    if found:
        names.append(found)
    lib = None
    for name in names:
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return False, "no CUDA driver library (libcuda) found"
    try:
        status = lib.cuInit(0)
        if status != 0:
            return False, f"cuInit failed with CUDA error {status} (no device, or driver not loaded)"
        version = ctypes.c_int(0)
        lib.cuDriverGetVersion(ctypes.byref(version))
        if version.value < MIN_DRIVER_VERSION:
            return False, (
                f"CUDA driver {version.value // 1000}.{version.value % 1000 // 10} is older than the "
                f"12.0 that the pinned CUDA 12 bindings need"
            )
        count = ctypes.c_int(0)
        status = lib.cuDeviceGetCount(ctypes.byref(count))
        if status != 0 or count.value < 1:
            return False, "the CUDA driver reports no devices"
    except (AttributeError, OSError) as exc:  # a stub or broken driver library
        return False, f"the CUDA driver library could not be queried ({exc})"
    return True, f"{count.value} CUDA device(s), driver {version.value // 1000}.{version.value % 1000 // 10}"


def _cuda_is_simulator(cuda_module) -> bool:
    # In simulator mode numba.cuda re-exports the simulator's API, whose jit lives in
    # numba.cuda.simulator; in GPU mode it is the real decorator. This holds for both the
    # numba-cuda package and the target built into older Numba releases.
    return "simulator" in getattr(cuda_module.jit, "__module__", "")


def configure() -> str:
    """Decide GPU or simulator (once per process), import ``numba.cuda`` in that mode, and return it.

    Returns ``"gpu"`` or ``"simulator"``: the *mode* ``numba.cuda`` runs in. Idempotent: later calls
    return the first answer. See the module docstring for the rule.
    """
    with _lock:
        if "mode" in _state:
            return _state["mode"]  # type: ignore[return-value]
        if "numba.cuda" in sys.modules:
            reason = "numba.cuda was imported before mlsys_lab.kernels.cuda; its mode is kept"
        elif ENV_VAR in os.environ:
            reason = f"{ENV_VAR}={os.environ[ENV_VAR]!r} is set in the environment"
        else:
            usable, why = _probe_gpu()
            if usable:
                os.environ[ENV_VAR] = "0"
                reason = f"a GPU was found ({why})"
            else:
                os.environ[ENV_VAR] = "1"
                reason = f"no usable GPU ({why}); using Numba's CUDA simulator"
            # Upstream Numba reads its configuration when `numba` is imported, which may already
            # have happened (the CPU kernels import it). Ask it to re-read the environment so that
            # the built-in CUDA target, if that is the one in use, sees the variable too.
            if "numba" in sys.modules:
                try:
                    from numba.core import config as _numba_config

                    _numba_config.reload_config()
                except Exception:  # pragma: no cover - only a very different Numba would fail here
                    pass

        from numba import cuda

        mode = "simulator" if _cuda_is_simulator(cuda) else "gpu"
        if mode == "simulator":
            _patch_simulator()
        _state["mode"] = mode
        _state["reason"] = reason
        return mode


def _gpu_usable() -> bool:
    if "gpu_usable" not in _state:
        from numba import cuda

        try:
            _state["gpu_usable"] = bool(cuda.is_available())
        except Exception:  # pragma: no cover - depends on the driver
            _state["gpu_usable"] = False
    return bool(_state["gpu_usable"])


def require_launchable() -> str:
    """Return the backend if kernels can be launched in this process, else raise a clear error.

    Host wrappers call this before touching the device.
    """
    mode = configure()
    if mode == "simulator" or _gpu_usable():
        return mode
    raise CudaUnavailableError(
        "numba.cuda is in GPU mode but no GPU is usable in this process "
        f"({_state.get('reason')}). Start Python with {ENV_VAR}=1 to use the simulator, or import "
        "mlsys_lab.kernels.cuda before anything imports numba.cuda so it can choose by itself. "
        "(Compiling to PTX still works in this mode: see mlsys_lab.kernels.cuda.ptx.)"
    )


def backend() -> str:
    """Say where kernels run in this process: ``"gpu"`` or ``"simulator"``.

    Raises :class:`CudaUnavailableError` if ``numba.cuda`` is in GPU mode without a usable GPU
    (possible only when ``NUMBA_ENABLE_CUDASIM=0`` was forced, or ``numba.cuda`` was imported first):
    then kernels cannot run at all.
    """
    return require_launchable()


def selection_reason() -> str:
    """One sentence on why :func:`backend` chose what it chose."""
    configure()
    return str(_state["reason"])


def describe() -> str:
    """A line for notebooks to print: which backend, on what device, and why."""
    mode = backend()
    if mode == "simulator":
        return f"Numba CUDA simulator ({selection_reason()}): results are real, timings are not"
    from numba import cuda

    dev = cuda.get_current_device()
    name = dev.name.decode() if isinstance(dev.name, bytes) else str(dev.name)
    major, minor = dev.compute_capability
    return f"GPU: {name} (compute capability {major}.{minor})"


# --------------------------------------------------------------------------------------------------
# Simulator patches. They touch the simulator's internals (numba.cuda.simulator.kernelapi), so each
# one checks what it relies on and stays out of the way if the simulator already has the feature.

FULL_MASK = 0xFFFFFFFF


class _WarpSlot:
    """Where the lanes of one simulated warp meet, for one mask.

    Values are exchanged through two buffers used in alternate rounds, so one barrier per exchange
    is enough: a lane can only come back to a buffer after every lane has passed the barrier of the
    round in between, that is, after every lane has finished reading it.
    """

    def __init__(self, members: list[int]):
        self.members = frozenset(members)
        self.barrier = threading.Barrier(len(members))
        self.buffers: tuple[list[object], list[object]] = ([None] * 32, [None] * 32)
        self.rounds = [0] * 32


def _current_sim_thread():
    thread = threading.current_thread()
    if not hasattr(thread, "_manager") or not hasattr(thread, "thread_id"):
        raise RuntimeError("warp intrinsics can only be called from inside a simulated CUDA kernel")
    return thread


def _warp_slot(thread, mask: int) -> tuple[_WarpSlot, int]:
    """The meeting place of ``thread``'s warp for ``mask``, and the thread's lane."""
    manager = thread._manager
    warp, lane = divmod(thread.thread_id, 32)
    key = (warp, int(mask) & FULL_MASK)
    slots = manager.__dict__.get("_mlsys_warp_slots")
    slot = slots.get(key) if slots is not None else None
    if slot is None:
        with _warp_lock:
            slots = manager.__dict__.setdefault("_mlsys_warp_slots", {})
            if key not in slots:
                block_size = 1
                for extent in manager._block_dim:
                    block_size *= extent
                lanes_here = min(32, block_size - 32 * warp)
                slots[key] = _WarpSlot([i for i in range(lanes_here) if (key[1] >> i) & 1])
            slot = slots[key]
    if lane not in slot.members:
        raise RuntimeError(f"lane {lane} called a warp intrinsic with a mask {key[1]:#x} that excludes it")
    return slot, lane


def _wait(slot: _WarpSlot, what: str) -> None:
    try:
        slot.barrier.wait(_WARP_TIMEOUT_S)
    except threading.BrokenBarrierError:
        raise RuntimeError(
            f"{what}: not every lane in the mask reached it (a divergent warp?); on a GPU this is "
            "undefined behaviour"
        ) from None


def _exchange(mask, value, source_of, what):
    slot, lane = _warp_slot(_current_sim_thread(), mask)
    buffer = slot.buffers[slot.rounds[lane] & 1]
    slot.rounds[lane] += 1
    buffer[lane] = value
    _wait(slot, what)  # every lane has published its value for this round
    src = source_of(lane)
    return buffer[src] if src in slot.members else value


def _check_width(width):
    if width not in (1, 2, 4, 8, 16, 32):
        raise ValueError(f"shuffle width must be a power of two up to 32, got {width}")


def _sim_shfl_sync(mask, value, src_lane, width=32):
    _check_width(width)
    return _exchange(mask, value, lambda lane: (lane // width) * width + src_lane % width, "shfl_sync")


def _sim_shfl_up_sync(mask, value, delta, width=32):
    _check_width(width)

    def source(lane):
        src = lane - delta
        return src if src >= (lane // width) * width else lane

    return _exchange(mask, value, source, "shfl_up_sync")


def _sim_shfl_down_sync(mask, value, delta, width=32):
    _check_width(width)

    def source(lane):
        src = lane + delta
        return src if src < (lane // width + 1) * width else lane

    return _exchange(mask, value, source, "shfl_down_sync")


def _sim_shfl_xor_sync(mask, value, lane_mask, width=32):
    _check_width(width)

    def source(lane):
        src = lane ^ lane_mask
        return src if src < (lane // width + 1) * width else lane

    return _exchange(mask, value, source, "shfl_xor_sync")


def _sim_syncwarp(mask=FULL_MASK):
    slot, _ = _warp_slot(_current_sim_thread(), mask)
    _wait(slot, "syncwarp")


_shared_lock = threading.Lock()


def _threadsafe_shared_array(self, shape, dtype, alignment=None):
    """The simulator's static shared-array allocator, with a lock around its check-then-create.

    Like the original, an allocation is identified by the source line that declares it, so one
    declaration per line. Dynamic shared memory (shape 0) and alignment go to the original.
    """
    if alignment is not None or shape == 0:
        return _original_shared_array(self, shape, dtype, alignment)
    import numpy as np

    # Convert a Numba type the way the simulator itself does, with the modules it imported.
    kernelapi = sys.modules[type(self).__module__]
    if isinstance(dtype, kernelapi.types.Type):
        dtype = kernelapi.numpy_support.as_dtype(dtype)
    caller = sys._getframe(1)
    key = (caller.f_code.co_filename, caller.f_lineno)
    with _shared_lock:
        array = self._allocations.get(key)
        if array is None:
            array = np.empty(shape, dtype)
            self._allocations[key] = array
    return array


_original_shared_array = None
_warp_lock = threading.Lock()


#: Python's thread switch interval while a simulated kernel runs (the default is 5 ms).
SIM_SWITCH_INTERVAL_S = 0.0005


def _patch_launch_switch_interval() -> None:
    """Make each simulated launch switch Python threads more often, restoring the setting after.

    The simulator's block manager polls its threads in a busy loop. Python hands the interpreter
    lock from a running thread to a waiting one only every "switch interval" (5 ms by default), so
    every time simulated threads are released from a barrier or a warp shuffle they can wait up to
    5 ms for the poller to let go. A shorter interval during launches about halves the time of
    kernels with many barriers; results are unaffected.
    """
    try:
        from numba.cuda.simulator import kernel as sim_kernel
    except ImportError:  # pragma: no cover
        return
    cls = getattr(sim_kernel, "FakeCUDAKernel", None)
    if cls is None or getattr(cls.__call__, "_mlsys_patched", False):
        return
    original = cls.__call__

    def __call__(self, *args):
        if getattr(self, "_device", False) or sim_kernel._get_kernel_context() is not None:
            return original(self, *args)  # a device function, or a call inside a running kernel
        previous = sys.getswitchinterval()
        sys.setswitchinterval(min(previous, SIM_SWITCH_INTERVAL_S))
        try:
            return original(self, *args)
        finally:
            sys.setswitchinterval(previous)

    __call__._mlsys_patched = True
    cls.__call__ = __call__


def _patch_simulator() -> None:
    global _original_shared_array
    try:
        from numba.cuda.simulator import kernelapi
    except ImportError:  # pragma: no cover - a simulator laid out differently: leave it alone
        return
    fake = getattr(kernelapi, "FakeCUDAModule", None)
    if fake is None:  # pragma: no cover
        return
    for name, fn in [
        ("shfl_sync", _sim_shfl_sync),
        ("shfl_up_sync", _sim_shfl_up_sync),
        ("shfl_down_sync", _sim_shfl_down_sync),
        ("shfl_xor_sync", _sim_shfl_xor_sync),
        ("syncwarp", _sim_syncwarp),
    ]:
        if not hasattr(fake, name):
            setattr(fake, name, staticmethod(fn))
    _patch_launch_switch_interval()
    shared = getattr(kernelapi, "FakeCUDAShared", None)
    if (
        shared is not None
        and _original_shared_array is None
        and hasattr(kernelapi, "types")
        and hasattr(kernelapi, "numpy_support")
        and "_allocations" in shared.__init__.__code__.co_names
    ):
        _original_shared_array = shared.array
        shared.array = _threadsafe_shared_array
