"""``python -m mlsys_lab serve`` in a subprocess (start-up log, graceful shutdown on SIGTERM/SIGINT)
and a short perf_analyzer run against the server (skipped, with the reason, where perf_analyzer
cannot be set up: see scripts/perf_analyzer_env.py)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from mlsys_lab.serving.server import ServerThread
from mlsys_lab.serving.testing import PROBE_MODEL, copy_example_models, probe_config, write_model

ROOT = Path(__file__).resolve().parents[1]


def start_serve(*args, cwd=ROOT):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.Popen([sys.executable, "-m", "mlsys_lab", "serve", "--http-port", "0", *map(str, args)],
                            cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        m = re.search(r"Started HTTPService at 127\.0\.0\.1:(\d+)", line)
        if m:
            return proc, int(m.group(1)), lines
    proc.kill()
    raise AssertionError("server did not start:\n" + "".join(lines) + proc.stdout.read())


@pytest.mark.parametrize("sig, event_loop", [(signal.SIGTERM, "uvloop"), (signal.SIGINT, "asyncio")])
def test_serve_logs_models_and_answers_accepted_requests_on_shutdown(tmp_path, sig, event_loop):
    copy_example_models(tmp_path, ["digits_mlp"])
    write_model(tmp_path, "slow", probe_config("slow", max_batch_size=1, delay_ms=400,
                                               dynamic_batching=""), PROBE_MODEL)
    proc, port, lines = start_serve("--model-repository", tmp_path, "--event-loop", event_loop)
    try:
        log = "".join(lines)
        assert f"on the {event_loop} event loop" in log
        assert re.search(r"\| digits_mlp\s+\| 1\s+\| READY\s+\|", log) and re.search(r"\| slow\s+\|", log)
        url = f"http://127.0.0.1:{port}"
        assert requests.get(url + "/v2/health/ready", timeout=10).status_code == 200
        results = {}

        def call(i):
            body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [float(i)]}]}
            r = requests.post(url + "/v2/models/slow/infer", json=body, timeout=30)
            results[i] = (r.status_code, r.json())

        threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in threads:
            t.start()
        # Wait until all three are inside the server (one executing, two queued), then signal.
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            metrics = requests.get(url + "/metrics", timeout=10).text
            if 'nv_inference_pending_request_count{model="slow",version="1"} 2' in metrics:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("requests never queued")
        proc.send_signal(sig)
        for t in threads:
            t.join(30)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
        assert f"{signal.Signals(sig).name} received" in out and "server stopped" in out
        assert {i: r[0] for i, r in results.items()} == {0: 200, 1: 200, 2: 200}
        assert [results[i][1]["outputs"][0]["data"] for i in range(3)] == [[1.0], [3.0], [5.0]]
        with pytest.raises(requests.ConnectionError):
            requests.get(url + "/v2/health/live", timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_serve_exits_with_an_error_when_a_model_fails_to_load(tmp_path):
    copy_example_models(tmp_path, ["digits_mlp"])
    write_model(tmp_path, "broken", 'name: "broken" backend: "mlp" max_batch_sze: 4')
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mlsys_lab", "serve", "--model-repository", str(tmp_path),
                        "--http-port", "0"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    assert "UNAVAILABLE" in r.stdout and "did you mean 'max_batch_size'" in r.stdout
    assert "failed to load broken" in r.stdout
    r = subprocess.run([sys.executable, "-m", "mlsys_lab", "serve", "--model-repository", str(tmp_path / "nope")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "is not a folder" in r.stderr


def test_serve_writes_request_traces_when_told(tmp_path):
    copy_example_models(tmp_path, ["digits_mlp"])
    trace_file = tmp_path / "trace.json"
    proc, port, _ = start_serve("--model-repository", tmp_path, "--trace-config", "level=TIMESTAMPS",
                                "--trace-config", "rate=2", "--trace-config", f"triton,file={trace_file}")
    try:
        url = f"http://127.0.0.1:{port}"
        settings = requests.get(url + "/v2/trace/setting", timeout=10).json()
        assert settings == {"trace_file": str(trace_file), "trace_level": ["TIMESTAMPS"], "trace_rate": "2",
                            "trace_count": "-1", "log_frequency": "0"}
        body = {"inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [1, 64], "data": [0.0] * 64}]}
        for _ in range(4):
            assert requests.post(url + "/v2/models/digits_mlp/infer", json=body, timeout=30).status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
        assert proc.returncode == 0, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    entries = json.loads(trace_file.read_text())
    assert [e["model_name"] for e in entries if "model_name" in e] == ["digits_mlp", "digits_mlp"]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "mlsys_lab", "serve", "--model-repository", str(tmp_path),
                        "--trace-config", "rate=often"], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 1 and "'trace_rate' must be an integer >= 1, got 'often'" in r.stderr


def _perf_analyzer():
    spec = importlib.util.spec_from_file_location("perf_analyzer_env", ROOT / "scripts" / "perf_analyzer_env.py")
    module = sys.modules.setdefault(spec.name, importlib.util.module_from_spec(spec))
    spec.loader.exec_module(module)   # (dataclasses need the module registered in sys.modules)
    try:
        return module.locate()
    except module.Unavailable as exc:
        pytest.skip(f"perf_analyzer unavailable: {exc}")


@pytest.mark.parametrize("model, extra", [("digits_mlp", ["--async"]), ("digits_ensemble", []),
                                          ("accumulator", [])])
def test_perf_analyzer_smoke(tmp_path, model, extra):
    pa = _perf_analyzer()
    copy_example_models(tmp_path, ["digits_mlp", "digits_preprocess", "digits_ensemble", "accumulator"])
    with ServerThread(tmp_path, port=0) as srv:
        r = pa.run("-m", model, "-u", srv.url, "-i", "http", "--concurrency-range", "2",
                   "-p", "250", "--max-trials", "6", "-s", "100", *extra, timeout=120)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        assert re.search(r"Concurrency: 2, throughput: [\d.]+ infer/sec", r.stdout), r.stdout[-2000:]
        stats = srv.server.model_statistics(model)["model_stats"][0]
        assert stats["inference_count"] > 0 and stats["inference_stats"]["fail"]["count"] == 0
