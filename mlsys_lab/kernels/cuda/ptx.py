"""What a real GPU would run: every kernel compiled to PTX, with its registers and shared memory.

The simulator runs kernels as Python, so it says nothing about what the compiler makes of them. This
module compiles each kernel of the package for a real target (default: compute capability 8.0, an
A100-class GPU) with Numba's ``cuda.compile_ptx``, which needs only the NVVM compiler library (from
the ``numba-cuda[cu12]`` wheels), not a GPU. It reports, per kernel:

* the PTX itself (NVIDIA's virtual instruction set) and counts of the instructions the lessons talk
  about: barriers (``bar.sync``), warp shuffles (``shfl.sync``), global and shared loads and stores;
* the **static shared memory** the kernel declares, read from the PTX;
* the **registers per thread**, **spills** and **stack**, from NVIDIA's assembler ``ptxas -v``, which
  turns PTX into machine code (SASS) for the exact target. ``ptxas`` ships in the
  ``nvidia-cuda-nvcc-cu12`` wheel; without it these are ``None``;
* the **theoretical occupancy** those resources allow at the block size the host wrapper launches
  (:func:`occupancy`).

Compiling needs ``numba.cuda`` in GPU mode, and a process that runs the simulator
(``NUMBA_ENABLE_CUDASIM=1``, set by :mod:`mlsys_lab.kernels.cuda.device` when there is no GPU) cannot
switch. :func:`report` therefore compiles in this process when it can, and otherwise in a child
Python process started with ``NUMBA_ENABLE_CUDASIM=0`` (:func:`report_in_subprocess`); the result is
the same list of :class:`KernelReport`. From a shell: ``python -m mlsys_lab.kernels.cuda.ptx``.

Without a GPU, ``numba-cuda`` still asks "the current device" for its compute capability when it
compiles a ``@cuda.jit(device=True)`` helper that a kernel calls; there is none, so while compiling
without a usable GPU this module answers that question with the target's compute capability.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from . import device

#: The default target: compute capability 8.0 (A100). PTX for it also runs on any newer GPU.
DEFAULT_CC = (8, 0)

#: Resource limits of one streaming multiprocessor at compute capability 8.0 (A100), from NVIDIA's
#: CUDA C++ Programming Guide (compute capabilities table) and occupancy calculator.
SM80_LIMITS = {
    "max_threads_per_sm": 2048,
    "max_warps_per_sm": 64,
    "max_blocks_per_sm": 32,
    "registers_per_sm": 65536,
    "register_alloc_unit": 256,  # registers are allocated per warp, in units of 256
    "shared_bytes_per_sm": 167936,  # 164 KiB usable by blocks
    "shared_alloc_unit": 128,
    "shared_reserved_per_block": 1024,  # the system reserves 1 KiB of shared memory per block
}

INSTRUCTIONS = {
    "bar.sync": r"\bbar\.sync\b|\bbarrier\.sync\b",
    "shfl.sync": r"\bshfl\.sync\b",
    "ld.global": r"\bld\.global\b",
    "st.global": r"\bst\.global\b",
    "ld.shared": r"\bld\.shared\b",
    "st.shared": r"\bst\.shared\b",
}


@dataclasses.dataclass
class KernelReport:
    """What the compiler made of one kernel for one target."""

    name: str
    module: str
    cc: tuple[int, int]
    threads_per_block: int
    static_shared_bytes: int
    instructions: dict[str, int]
    ptx_lines: int
    registers: int | None = None
    spill_store_bytes: int | None = None
    spill_load_bytes: int | None = None
    stack_bytes: int | None = None
    ptxas_shared_bytes: int | None = None
    occupancy: float | None = None
    ptx: str = dataclasses.field(default="", repr=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "KernelReport":
        d = dict(d)
        d["cc"] = tuple(d["cc"])
        return cls(**d)


def kernel_specs():
    """Every kernel of the package: ``(name, module, kernel, argument types, threads per block)``.

    The argument types are the ones the host wrappers launch with (C-contiguous float32 arrays), so
    the PTX is what a GPU would compile; the block size is the wrappers' default.
    """
    from numba import float32

    from .gemm import TILE, gemm_naive, gemm_tiled
    from .reduce import (
        MAX_BLOCK,
        reduce_interleaved,
        reduce_less_divergence,
        reduce_neighbored,
        reduce_rows,
        reduce_unrolled,
        reduce_warp,
    )
    from .softmax import MAX_THREADS, softmax_rows
    from .transpose import BLOCK_ROWS, TILE_DIM, transpose_naive, transpose_padded, transpose_tiled
    from .vector_add import vector_add_grid_stride, vector_add_kernel

    vec = float32[::1]
    mat = float32[:, ::1]
    return [
        ("vector_add_kernel", "vector_add", vector_add_kernel, (vec, vec, vec), 256),
        ("vector_add_grid_stride", "vector_add", vector_add_grid_stride, (vec, vec, vec), 256),
        ("reduce_neighbored", "reduce", reduce_neighbored, (vec, vec), MAX_BLOCK),
        ("reduce_less_divergence", "reduce", reduce_less_divergence, (vec, vec), MAX_BLOCK),
        ("reduce_interleaved", "reduce", reduce_interleaved, (vec, vec), MAX_BLOCK),
        ("reduce_unrolled", "reduce", reduce_unrolled, (vec, vec), MAX_BLOCK),
        ("reduce_warp", "reduce", reduce_warp, (vec, vec), 256),
        ("reduce_rows", "reduce", reduce_rows, (mat, vec), 256),
        ("gemm_naive", "gemm", gemm_naive, (mat, mat, mat), TILE * TILE),
        ("gemm_tiled", "gemm", gemm_tiled, (mat, mat, mat), TILE * TILE),
        ("softmax_rows", "softmax", softmax_rows, (mat, mat), MAX_THREADS),
        ("transpose_naive", "transpose", transpose_naive, (mat, mat), TILE_DIM * BLOCK_ROWS),
        ("transpose_tiled", "transpose", transpose_tiled, (mat, mat), TILE_DIM * BLOCK_ROWS),
        ("transpose_padded", "transpose", transpose_padded, (mat, mat), TILE_DIM * BLOCK_ROWS),
    ]


def kernel_names() -> list[str]:
    """The names :func:`report` accepts, in lesson order."""
    return [spec[0] for spec in kernel_specs()]


def can_compile_here() -> bool:
    """True if this process can compile to PTX: ``numba.cuda`` is in GPU mode (with or without a GPU)."""
    return device.configure() == "gpu"


@contextlib.contextmanager
def _target_for_device_functions(cc):
    """Let numba-cuda compile ``device=True`` helpers when no GPU is present (see module docstring)."""
    from numba import cuda

    dispatcher = sys.modules.get("numba.cuda.dispatcher")
    if cuda.is_available() or dispatcher is None or not hasattr(dispatcher, "get_current_device"):
        yield
        return

    class _Target:
        compute_capability = tuple(cc)

    original = dispatcher.get_current_device
    dispatcher.get_current_device = lambda: _Target()
    try:
        yield
    finally:
        dispatcher.get_current_device = original


def compile_ptx(name: str, cc=DEFAULT_CC) -> str:
    """Compile the named kernel (see :func:`kernel_names`) to PTX for compute capability ``cc``."""
    if not can_compile_here():
        raise RuntimeError(
            "this process runs Numba's CUDA simulator (NUMBA_ENABLE_CUDASIM=1), which cannot compile "
            "to PTX; use report(), which compiles in a child process, or run "
            "`NUMBA_ENABLE_CUDASIM=0 python -m mlsys_lab.kernels.cuda.ptx`"
        )
    specs = {spec[0]: spec for spec in kernel_specs()}
    if name not in specs:
        raise ValueError(f"unknown kernel {name!r}; choose one of {list(specs)}")
    from numba import cuda

    _, _, kernel, argtypes, _ = specs[name]
    try:
        with _target_for_device_functions(cc):
            ptx, _ = cuda.compile_ptx(kernel.py_func, argtypes, cc=tuple(cc))
    except Exception as exc:
        if "NVVM" in str(exc) or "libnvvm" in str(exc):
            raise RuntimeError(
                f"compiling {name} to PTX needs NVVM, which was not found: install the pinned "
                f"numba-cuda[cu12] wheels ({exc})"
            ) from exc
        raise
    return ptx


def static_shared_bytes(ptx: str) -> int:
    """Bytes of static shared memory declared in a PTX module (``.shared`` arrays)."""
    total = 0
    for bits, count in re.findall(r"\.shared\s+(?:\.align\s+\d+\s+)?\.[bfsu](\d+)\s+[\w$]+\[(\d+)\]", ptx):
        total += int(bits) // 8 * int(count)
    return total


def count_instructions(ptx: str) -> dict[str, int]:
    """How many times each instruction of :data:`INSTRUCTIONS` appears in the PTX text."""
    return {name: len(re.findall(pattern, ptx)) for name, pattern in INSTRUCTIONS.items()}


def find_ptxas() -> str | None:
    """Path of NVIDIA's ``ptxas`` assembler: from the CUDA wheels if installed, else from PATH."""
    try:
        from cuda.pathfinder import find_nvidia_binary_utility

        found = find_nvidia_binary_utility("ptxas")
        if found:
            return found
    except Exception:  # cuda-pathfinder missing or too old: try PATH
        pass
    return shutil.which("ptxas")


def ptxas_resources(ptx: str, cc=DEFAULT_CC, ptxas: str | None = None) -> dict[str, int] | None:
    """Assemble PTX for ``sm_<cc>`` with ``ptxas -v``; return registers, spills, stack and shared bytes.

    Returns ``None`` if ``ptxas`` is not available. Raises ``RuntimeError`` if it rejects the PTX.
    """
    ptxas = ptxas or find_ptxas()
    if ptxas is None:
        return None
    arch = f"sm_{cc[0]}{cc[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "kernel.ptx"
        src.write_text(ptx)
        proc = subprocess.run(
            [ptxas, f"-arch={arch}", "-v", str(src), "-o", str(Path(tmp) / "kernel.cubin")],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"ptxas failed for {arch}: {proc.stderr.strip()}")
    info = proc.stderr + proc.stdout

    def grab(pattern: str) -> int:
        match = re.search(pattern, info)
        return int(match.group(1)) if match else 0

    return {
        "registers": grab(r"Used (\d+) registers"),
        "spill_store_bytes": grab(r"(\d+) bytes spill stores"),
        "spill_load_bytes": grab(r"(\d+) bytes spill loads"),
        "stack_bytes": grab(r"(\d+) bytes stack frame"),
        "ptxas_shared_bytes": grab(r"(\d+) bytes smem"),
    }


def occupancy(registers: int, shared_bytes: int, threads_per_block: int, limits: dict | None = None) -> float:
    """Theoretical occupancy: resident warps per SM over the maximum, for one kernel's resources.

    A multiprocessor holds as many blocks as its scarcest resource allows: threads (warps), the
    register file (``registers`` per thread, allocated per warp in units of 256), shared memory
    (``shared_bytes`` per block, plus 1 KiB the system reserves per block, in units of 128 bytes) and
    a cap on blocks. Defaults to the limits of compute capability 8.0 (:data:`SM80_LIMITS`).
    """
    lim = SM80_LIMITS if limits is None else limits
    warps_per_block = math.ceil(threads_per_block / 32)
    by_warps = lim["max_warps_per_sm"] // warps_per_block
    regs_per_warp = math.ceil(max(registers, 1) * 32 / lim["register_alloc_unit"]) * lim["register_alloc_unit"]
    by_registers = lim["registers_per_sm"] // (regs_per_warp * warps_per_block)
    unit = lim["shared_alloc_unit"]
    shared_per_block = math.ceil((shared_bytes + lim["shared_reserved_per_block"]) / unit) * unit
    by_shared = lim["shared_bytes_per_sm"] // shared_per_block
    blocks = min(by_warps, by_registers, by_shared, lim["max_blocks_per_sm"])
    return blocks * warps_per_block / lim["max_warps_per_sm"]


def _report_here(names, cc) -> list[KernelReport]:
    ptxas = find_ptxas()
    specs = {spec[0]: spec for spec in kernel_specs()}
    reports = []
    for name in names:
        _, module, _, _, threads = specs[name]
        ptx = compile_ptx(name, cc)
        rep = KernelReport(
            name=name,
            module=module,
            cc=tuple(cc),
            threads_per_block=threads,
            static_shared_bytes=static_shared_bytes(ptx),
            instructions=count_instructions(ptx),
            ptx_lines=ptx.count("\n"),
            ptx=ptx,
        )
        resources = ptxas_resources(ptx, cc, ptxas) if ptxas else None
        if resources is not None:
            for key, value in resources.items():
                setattr(rep, key, value)
            rep.occupancy = occupancy(rep.registers, rep.ptxas_shared_bytes, threads)
        reports.append(rep)
    return reports


def report_in_subprocess(names=None, cc=DEFAULT_CC, timeout: float = 600) -> list[KernelReport]:
    """Compile in a fresh Python process with ``NUMBA_ENABLE_CUDASIM=0``; see :func:`report`."""
    env = dict(os.environ)
    env[device.ENV_VAR] = "0"
    # The child must import this same package, installed or not.
    root = str(Path(__file__).resolve().parents[3])
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    cmd = [sys.executable, "-m", "mlsys_lab.kernels.cuda.ptx", "--json", "--cc", f"{cc[0]}.{cc[1]}"]
    cmd += list(names or [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"PTX compilation in a child process failed:\n{proc.stderr.strip()}")
    return [KernelReport.from_dict(d) for d in json.loads(proc.stdout)]


def report(names=None, cc=DEFAULT_CC) -> list[KernelReport]:
    """Compile the named kernels (default: all, see :func:`kernel_names`) for ``cc`` and report on each.

    Compiles in this process if it can (:func:`can_compile_here`), else in a child process. Raises
    ``ValueError`` for an unknown kernel name and ``RuntimeError`` if compilation fails.
    """
    names = list(names) if names is not None else kernel_names()
    unknown = [n for n in names if n not in kernel_names()]
    if unknown:
        raise ValueError(f"unknown kernel(s) {unknown}; choose from {kernel_names()}")
    cc = tuple(int(c) for c in cc)
    if can_compile_here():
        return _report_here(names, cc)
    return report_in_subprocess(names, cc)


def format_table(reports: list[KernelReport]) -> str:
    """A plain-text table of the reports, one kernel per line."""

    def show(value, fmt="{}"):
        return "-" if value is None else fmt.format(value)

    header = f"{'kernel':<24}{'threads':>8}{'regs':>6}{'smem B':>8}{'spill B':>8}{'bar':>5}{'shfl':>6}{'occup.':>8}"
    lines = [header, "-" * len(header)]
    for r in reports:
        spill = None if r.spill_store_bytes is None else r.spill_store_bytes + r.spill_load_bytes
        lines.append(
            f"{r.name:<24}{r.threads_per_block:>8}{show(r.registers):>6}{r.static_shared_bytes:>8}"
            f"{show(spill):>8}{r.instructions['bar.sync']:>5}{r.instructions['shfl.sync']:>6}"
            f"{show(r.occupancy, '{:.0%}'):>8}"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlsys_lab.kernels.cuda.ptx",
        description="Compile the course's CUDA kernels to PTX and report their resources.",
    )
    parser.add_argument("names", nargs="*", help="kernels to compile (default: all)")
    parser.add_argument("--cc", default=f"{DEFAULT_CC[0]}.{DEFAULT_CC[1]}", help="compute capability, e.g. 8.0")
    parser.add_argument("--json", action="store_true", help="print JSON (with the PTX) instead of a table")
    args = parser.parse_args(argv)
    try:
        cc = tuple(int(part) for part in args.cc.split("."))
        if len(cc) != 2:
            raise ValueError
    except ValueError:
        parser.error(f"--cc must look like 8.0, got {args.cc!r}")
    reports = report(args.names or None, cc)
    if args.json:
        json.dump([r.to_dict() for r in reports], sys.stdout)
    else:
        print(format_table(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
