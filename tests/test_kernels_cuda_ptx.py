"""Every CUDA kernel compiles to PTX for a real GPU (compute capability 8.0), without needing one.

Compiling needs numba.cuda in GPU mode, which a process running the simulator cannot switch to (and
once tests/test_kernels_cuda.py has imported the kernels on a machine without a GPU, this pytest
process runs the simulator). So ``ptx.report()`` compiles in a child Python process started with
NUMBA_ENABLE_CUDASIM=0 whenever it cannot compile here; one child compiles every kernel for this
whole module. On a GPU machine it compiles in-process. Either way this file runs in the same pytest
call as everything else.
"""

import os
import subprocess
import sys

import pytest

from mlsys_lab.kernels.cuda import device, ptx
from mlsys_lab.kernels.cuda.gemm import TILE
from mlsys_lab.kernels.cuda.reduce import MAX_BLOCK
from mlsys_lab.kernels.cuda.transpose import TILE_DIM

CC = (8, 0)


@pytest.fixture(scope="module")
def reports():
    return {r.name: r for r in ptx.report(cc=CC)}


def test_every_kernel_compiles_for_sm80(reports):
    assert list(reports) == ptx.kernel_names()
    for name, r in reports.items():
        assert ".target sm_80" in r.ptx, name
        assert ".entry" in r.ptx, name
        assert r.cc == CC and r.ptx_lines > 10


def test_static_shared_memory_is_what_the_kernels_declare(reports):
    smem = {name: r.static_shared_bytes for name, r in reports.items()}
    assert smem["vector_add_kernel"] == smem["gemm_naive"] == smem["transpose_naive"] == 0
    assert smem["gemm_tiled"] == 2 * TILE * TILE * 4
    assert smem["transpose_tiled"] == TILE_DIM * TILE_DIM * 4
    assert smem["transpose_padded"] == TILE_DIM * (TILE_DIM + 1) * 4  # the padding costs 128 bytes
    for rung in ["reduce_neighbored", "reduce_less_divergence", "reduce_interleaved", "reduce_unrolled"]:
        assert smem[rung] == MAX_BLOCK * 4
    assert smem["reduce_warp"] == smem["reduce_rows"] == 32 * 4  # one float per warp


def test_the_warp_rung_trades_barriers_for_shuffles(reports):
    interleaved, warp = reports["reduce_interleaved"], reports["reduce_warp"]
    assert interleaved.instructions["shfl.sync"] == 0
    assert warp.instructions["shfl.sync"] >= 5  # log2(32) steps, unrolled by the compiler
    # Counted in the code, not executed: the interleaved tree's one barrier runs log2(threads) times.
    assert 1 <= warp.instructions["bar.sync"] <= interleaved.instructions["bar.sync"]
    assert reports["softmax_rows"].instructions["shfl.sync"] > 0
    assert reports["gemm_tiled"].instructions["ld.shared"] >= TILE  # the inner loop reads the tiles


def test_ptxas_reports_registers_and_occupancy(reports):
    assert ptx.find_ptxas() is not None, "ptxas not found: install the pinned numba-cuda[cu12] wheels"
    for name, r in reports.items():
        assert 0 < r.registers <= 255, name
        assert r.ptxas_shared_bytes == r.static_shared_bytes, name
        assert r.spill_store_bytes >= 0 and r.spill_load_bytes >= 0
        assert 0 < r.occupancy <= 1, name


def test_format_table_lists_every_kernel(reports):
    table = ptx.format_table(list(reports.values()))
    for name in reports:
        assert name in table


def test_occupancy_arithmetic():
    # 256 threads = 8 warps/block; few registers, no shared memory: 8 blocks fill the 64 warps.
    assert ptx.occupancy(32, 0, 256) == 1.0
    # 128 registers: 4096 per warp, 32768 per block, 2 blocks per SM: 16 of 64 warps.
    assert ptx.occupancy(128, 0, 256) == 0.25
    # 48 KiB of shared memory (+1 KiB reserved) per block: 3 blocks, 24 of 64 warps.
    assert ptx.occupancy(32, 48 * 1024, 256) == 24 / 64
    # Tiny blocks hit the 32-blocks-per-SM cap: 32 one-warp blocks.
    assert ptx.occupancy(16, 0, 32) == 0.5


def test_static_shared_bytes_parser():
    text = ".shared .align 4 .b8 _cudapy_smem_1[1024];\n.visible .shared .align 8 .f64 s2[3];\n"
    assert ptx.static_shared_bytes(text) == 1024 + 24


def test_unknown_kernel_is_a_value_error():
    with pytest.raises(ValueError, match="unknown kernel"):
        ptx.report(["no_such_kernel"])


@pytest.mark.skipif(device.configure() != "simulator", reason="this process can compile PTX itself")
def test_a_simulator_process_cannot_compile_here_and_says_so():
    assert not ptx.can_compile_here()
    with pytest.raises(RuntimeError, match="simulator"):
        ptx.compile_ptx("gemm_tiled")


def test_command_line_prints_a_table():
    env = dict(os.environ, **{device.ENV_VAR: "0"})
    proc = subprocess.run(
        [sys.executable, "-m", "mlsys_lab.kernels.cuda.ptx", "transpose_padded", "--cc", "8.0"],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "transpose_padded" in proc.stdout and "4224" in proc.stdout
