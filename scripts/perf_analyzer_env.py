#!/usr/bin/env python3
"""Set up Triton's ``perf_analyzer`` load generator on these machines (Debian 12, x86-64).

``pip install perf-analyzer`` gives only a placeholder here, but the real binary ships inside the
``tritonclient==2.51.0`` manylinux1 wheel. It needs two shared libraries the system lacks:

- ``libb64.so.0d``: the Debian package ``libb64-0d`` (installed with apt-get when running as root);
- ``libcudart.so.12``: from the PyPI package ``nvidia-cuda-runtime-cu12`` (pinned in requirements.txt),
  found in the running Python's site-packages and put on ``LD_LIBRARY_PATH`` (no GPU is needed to
  benchmark an HTTP server).

Usage (from the repository root, with the project's venv)::

    .venv/bin/python scripts/perf_analyzer_env.py setup          # download + extract + libraries
    .venv/bin/python scripts/perf_analyzer_env.py check          # exit 0 if usable, else say why
    .venv/bin/python scripts/perf_analyzer_env.py run -- -m digits_mlp -u 127.0.0.1:8000 ...
    eval "$(.venv/bin/python scripts/perf_analyzer_env.py env)"  # PERF_ANALYZER, LD_LIBRARY_PATH

``setup`` needs the package registries (PyPI, Debian); ``check``, ``env`` and ``run`` never download.
The binary goes to ``$MLSYS_PERF_ANALYZER_DIR`` (default ``.venv/perf_analyzer`` next to this
repository's venv). From Python (tests, benchmarks): :func:`locate` returns a :class:`PerfAnalyzer`
or raises :class:`Unavailable` with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

TRITONCLIENT = "tritonclient==2.51.0"
WHEEL_GLOB = "tritonclient-2.51.0-py3-none-manylinux1_x86_64.whl"
MEMBER = "tritonclient-2.51.0.data/data/bin/perf_analyzer"
ROOT = Path(__file__).resolve().parents[1]
LIB_DIRS = ["/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64", "/usr/lib", "/lib"]


class Unavailable(RuntimeError):
    """perf_analyzer cannot run here; the message says why and how to fix it."""


@dataclass
class PerfAnalyzer:
    binary: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        return [str(self.binary), *args]

    def run(self, *args: str, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
        return subprocess.run(self.command(*args), env=self.env, capture_output=True, text=True,
                              timeout=timeout, **kwargs)


def install_dir() -> Path:
    return Path(os.environ.get("MLSYS_PERF_ANALYZER_DIR", ROOT / ".venv" / "perf_analyzer"))


def cudart_dir() -> Path | None:
    """The folder holding libcudart.so.12 from nvidia-cuda-runtime-cu12, if installed."""
    for base in map(Path, sys.path):
        d = base / "nvidia" / "cuda_runtime" / "lib"
        if (d / "libcudart.so.12").exists():
            return d
    return None


def libb64_present() -> bool:
    try:
        out = subprocess.run(["ldconfig", "-p"], capture_output=True, text=True, timeout=10).stdout
        if "libb64.so.0d" in out:
            return True
    except (OSError, subprocess.SubprocessError):
        pass
    return any(glob.glob(os.path.join(d, "libb64.so.0d*")) for d in LIB_DIRS)


def locate() -> PerfAnalyzer:
    """The usable perf_analyzer, or :class:`Unavailable` naming what is missing. Never downloads."""
    binary = install_dir() / "perf_analyzer"
    if not binary.is_file():
        raise Unavailable(f"perf_analyzer is not set up ({binary} missing); run "
                          "`.venv/bin/python scripts/perf_analyzer_env.py setup`")
    if not libb64_present():
        raise Unavailable("libb64.so.0d is missing; install the Debian package libb64-0d "
                          "(`apt-get install libb64-0d`, or run this script's setup as root)")
    cudart = cudart_dir()
    if cudart is None:
        raise Unavailable("libcudart.so.12 is missing; `pip install nvidia-cuda-runtime-cu12==12.9.79` "
                          "(pinned in requirements.txt) into this Python's environment")
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in (str(cudart), env.get("LD_LIBRARY_PATH", "")) if p)
    pa = PerfAnalyzer(binary, env)
    try:
        r = pa.run("--version", timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        raise Unavailable(f"{binary} does not run: {exc}") from None
    if r.returncode != 0 or "Perf Analyzer" not in r.stdout + r.stderr:
        raise Unavailable(f"{binary} --version failed (exit {r.returncode}): {(r.stderr or r.stdout).strip()[:300]}")
    return pa


def _apt_install_libb64() -> None:
    if libb64_present():
        return
    if os.geteuid() != 0:
        raise Unavailable("libb64.so.0d is missing and this is not root: run `sudo apt-get install libb64-0d`")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    cmd = ["apt-get", "install", "-y", "-q", "libb64-0d"]
    if subprocess.run(cmd, env=env).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, check=False)
        if subprocess.run(cmd, env=env).returncode != 0:
            raise Unavailable("apt-get install libb64-0d failed")


def setup() -> PerfAnalyzer:
    """Download and extract the binary if needed, install libb64 if needed, then :func:`locate`."""
    target = install_dir()
    binary = target / "perf_analyzer"
    if not binary.is_file():
        target.mkdir(parents=True, exist_ok=True)
        wheels = target / "wheel"
        found = sorted(wheels.glob(WHEEL_GLOB))
        if not found:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--platform", "manylinux1_x86_64", "--dest", str(wheels), TRITONCLIENT]
            if subprocess.run(cmd).returncode != 0:
                raise Unavailable(f"pip download {TRITONCLIENT} failed")
            found = sorted(wheels.glob(WHEEL_GLOB))
        with zipfile.ZipFile(found[0]) as zf, zf.open(MEMBER) as src, open(binary.with_suffix(".tmp"), "wb") as dst:
            shutil.copyfileobj(src, dst)
        binary.with_suffix(".tmp").chmod(0o755)
        binary.with_suffix(".tmp").replace(binary)
        shutil.rmtree(wheels, ignore_errors=True)   # 14 MB we no longer need
    _apt_install_libb64()
    if cudart_dir() is None:
        raise Unavailable("libcudart.so.12 is missing: `pip install nvidia-cuda-runtime-cu12==12.9.79`")
    return locate()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    cmd = argv.pop(0) if argv else "check"
    try:
        if cmd == "setup":
            pa = setup()
            print(f"perf_analyzer ready: {pa.binary} (LD_LIBRARY_PATH={pa.env['LD_LIBRARY_PATH']})")
            return 0
        if cmd == "check":
            pa = locate()
            print(f"perf_analyzer usable: {pa.binary}")
            return 0
        if cmd == "env":
            pa = locate()
            print(f"export PERF_ANALYZER={pa.binary}")
            print(f"export LD_LIBRARY_PATH={pa.env['LD_LIBRARY_PATH']}")
            return 0
        if cmd == "run":
            if argv[:1] == ["--"]:
                argv = argv[1:]
            pa = locate()
            os.execve(str(pa.binary), [str(pa.binary), *argv], pa.env)
        print(f"usage: {sys.argv[0]} setup|check|env|run -- ARGS...", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"perf_analyzer unavailable: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
