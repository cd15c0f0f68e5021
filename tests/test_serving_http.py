"""The KServe v2 HTTP front end, driven by the real ``tritonclient`` HTTP client and by raw requests:
metadata, config, statistics, metrics, JSON and binary tensors, every kind of bad input, and a
bounded soak on loopback."""

from __future__ import annotations

import asyncio
import json
import struct

import numpy as np
import pytest
import requests

from mlsys_lab.serving.server import ServerThread
from mlsys_lab.serving.testing import PROBE_MODEL, copy_example_models, probe_config, write_model

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

MAX_BODY = 1 << 20


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    copy_example_models(repo, ["digits_mlp", "digits_preprocess", "digits_ensemble", "accumulator"])
    write_model(repo, "probe", probe_config(max_batch_size=16, instances=2), PROBE_MODEL)
    write_model(repo, "strings", """
name: "strings" backend: "numpy" max_batch_size: 0
input [ { name: "S" data_type: TYPE_STRING dims: [ -1 ] }, { name: "B" data_type: TYPE_BOOL dims: [ -1 ] } ]
output [ { name: "UPPER" data_type: TYPE_STRING dims: [ -1 ] }, { name: "NOT" data_type: TYPE_BOOL dims: [ -1 ] } ]
""", """
import numpy as np
class Model:
    def execute(self, inputs):
        up = np.array([s.upper() for s in inputs["S"]], dtype=object)
        return {"UPPER": up, "NOT": ~inputs["B"]}
""")
    with ServerThread(repo, port=0, max_body_size=MAX_BODY) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server):
    return httpclient.InferenceServerClient(server.url, concurrency=4)


def digits(n=8):
    from mlsys_lab.data import load_digits

    x, y = load_digits()
    return x[:n], y[:n]


# ---------------------------------------------------------------------------------------- tritonclient
def test_health_and_metadata(client, server):
    assert client.is_server_live() and client.is_server_ready()
    meta = client.get_server_metadata()
    assert meta["name"] == "mlsys_lab" and "binary_tensor_data" in meta["extensions"]
    assert client.is_model_ready("digits_mlp") and client.is_model_ready("digits_mlp", "1")
    assert not client.is_model_ready("digits_mlp", "2") and not client.is_model_ready("nope")
    m = client.get_model_metadata("digits_mlp")
    assert m == {"name": "digits_mlp", "versions": ["1"], "platform": "mlp",
                 "inputs": [{"name": "INPUT", "datatype": "FP32", "shape": [-1, 64]}],
                 "outputs": [{"name": "LOGITS", "datatype": "FP32", "shape": [-1, 10]}]}
    assert client.get_model_metadata("digits_ensemble", "1")["platform"] == "ensemble"
    cfg = client.get_model_config("digits_mlp")
    assert cfg["max_batch_size"] == 64 and cfg["dynamic_batching"]["max_queue_delay_microseconds"] == 0
    assert cfg["input"][0]["dims"] == [64] and cfg["instance_group"][0]["count"] == 1
    with pytest.raises(InferenceServerException, match="unknown model: 'nope'"):
        client.get_model_metadata("nope")
    index = client.get_model_repository_index()
    assert {r["name"] for r in index} >= {"digits_mlp", "accumulator"}


@pytest.mark.parametrize("binary", [False, True])
def test_infer_json_and_binary(client, binary):
    x, y = digits()
    inp = httpclient.InferInput("INPUT", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary)
    out = httpclient.InferRequestedOutput("LOGITS", binary_data=binary)
    result = client.infer("digits_mlp", [inp], outputs=[out], request_id="abc")
    logits = result.as_numpy("LOGITS")
    assert logits.shape == (8, 10) and logits.dtype == np.float32
    assert (logits.argmax(1) == y).mean() >= 0.75
    assert result.get_response()["id"] == "abc"
    # Every output when none is named; the same numbers both ways.
    again = client.infer("digits_mlp", [inp], model_version="1", request_compression_algorithm="gzip",
                         response_compression_algorithm="deflate").as_numpy("LOGITS")
    np.testing.assert_allclose(again, logits, rtol=1e-6)


def test_ensemble_sequence_bytes_and_async(client):
    from mlsys_lab.data.digits import _raw

    images, labels = _raw()
    inp = httpclient.InferInput("IMAGE", [16, 8, 8], "UINT8")
    inp.set_data_from_numpy(images[:16], binary_data=True)
    logits = client.infer("digits_ensemble", [inp]).as_numpy("LOGITS")
    assert (logits.argmax(1) == labels[:16]).mean() >= 0.9

    outs = []
    for i, v in enumerate([3, 4, 5]):
        a = httpclient.InferInput("INPUT", [1, 1], "INT32")
        a.set_data_from_numpy(np.array([[v]], np.int32))
        r = client.infer("accumulator", [a], sequence_id=77, sequence_start=i == 0, sequence_end=i == 2)
        outs.append(int(r.as_numpy("OUTPUT")[0, 0]))
    assert outs == [3, 7, 12]

    s = httpclient.InferInput("S", [3], "BYTES")
    s.set_data_from_numpy(np.array([b"ab", "c\u00e9".encode(), b""], dtype=object), binary_data=True)
    b = httpclient.InferInput("B", [2], "BOOL")
    b.set_data_from_numpy(np.array([True, False]), binary_data=False)
    for binary in (True, False):
        r = client.infer("strings", [s, b], outputs=[httpclient.InferRequestedOutput("UPPER", binary_data=binary),
                                                     httpclient.InferRequestedOutput("NOT", binary_data=binary)])
        # JSON strings come back as str, binary ones as bytes (as with Triton).
        assert [v.encode() if isinstance(v, str) else bytes(v) for v in r.as_numpy("UPPER")] == [
            b"AB", "c\u00e9".encode().upper(), b""]
        assert r.as_numpy("NOT").tolist() == [False, True]

    x, _ = digits(16)
    pending = []
    for i in range(16):
        a = httpclient.InferInput("INPUT", [1, 64], "FP32")
        a.set_data_from_numpy(x[i:i + 1], binary_data=True)
        pending.append(client.async_infer("digits_mlp", [a], request_id=str(i)))
    for i, p in enumerate(pending):
        r = p.get_result()
        assert r.get_response()["id"] == str(i)
        assert r.as_numpy("LOGITS").shape == (1, 10)


def test_statistics_are_consistent_and_match_metrics(client, server):
    x, _ = digits(4)
    inp = httpclient.InferInput("INPUT", [4, 64], "FP32")
    inp.set_data_from_numpy(x)
    for _ in range(3):
        client.infer("digits_mlp", [inp])
    stats = client.get_inference_statistics("digits_mlp")["model_stats"]
    assert len(stats) == 1
    s = stats[0]
    inf = s["inference_stats"]
    n = inf["success"]["count"]
    assert n >= 3 and s["inference_count"] >= 12 and s["last_inference"] > 0
    for key in ("queue", "compute_input", "compute_infer", "compute_output"):
        assert inf[key]["count"] == n
    assert sum(b["batch_size"] * b["compute_infer"]["count"] for b in s["batch_stats"]) == s["inference_count"]
    assert sum(b["compute_infer"]["count"] for b in s["batch_stats"]) == s["execution_count"]
    assert inf["success"]["ns"] >= inf["queue"]["ns"] + inf["compute_infer"]["ns"]
    all_stats = client.get_inference_statistics()["model_stats"]
    assert {m["name"] for m in all_stats} >= {"digits_mlp", "digits_ensemble", "probe"}

    text = requests.get(f"{server.http_url}/metrics", timeout=10).text
    labels = '{model="digits_mlp",version="1"}'
    values = {line.split(" ")[0]: int(line.split(" ")[1]) for line in text.splitlines()
              if line.startswith("nv_") and labels in line}
    s = client.get_inference_statistics("digits_mlp")["model_stats"][0]
    assert values[f"nv_inference_request_success{labels}"] == s["inference_stats"]["success"]["count"]
    assert values[f"nv_inference_count{labels}"] == s["inference_count"]
    assert values[f"nv_inference_exec_count{labels}"] == s["execution_count"]
    assert values[f"nv_inference_queue_duration_us{labels}"] == s["inference_stats"]["queue"]["ns"] // 1000
    for name in ("nv_inference_request_duration_us", "nv_inference_compute_input_duration_us",
                 "nv_inference_compute_infer_duration_us", "nv_inference_compute_output_duration_us",
                 "nv_inference_pending_request_count"):
        assert f"{name}{labels}" in values
        assert f"# TYPE {name} " in text
    assert 'nv_inference_request_failure{model="digits_mlp",version="1",reason="OTHER"}' in text


# ---------------------------------------------------------------------------------------- bad input
GOOD = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}]}


def post(server, body, path="/v2/models/probe/infer", headers=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return requests.post(server.http_url + path, data=data, headers=headers or {}, timeout=30)


def _with_input(**changes):
    body = json.loads(json.dumps(GOOD))
    body["inputs"][0].update(changes)
    return body


BAD = [
    (b"{not json", 400, "failed to parse the request JSON"),
    (b"[1, 2]", 400, "must be an object"),
    ({}, 400, "Unable to find 'inputs'"),
    ({"inputs": []}, 400, "non-empty list"),
    ({"inputs": [{"datatype": "FP32", "shape": [1, 1], "data": [1]}]}, 400, "needs a 'name'"),
    (_with_input(datatype=None), 400, "needs a 'datatype'"),
    (_with_input(datatype="FP33"), 400, "unsupported datatype 'FP33'"),
    (_with_input(datatype="INT32", data=[1]), 400, "data-type is 'INT32', but model 'probe' expects 'FP32'"),
    (_with_input(shape=None), 400, "needs a 'shape'"),
    (_with_input(shape=[1, -1]), 400, "needs a 'shape'"),
    (_with_input(shape=[1, 2], data=[1.0, 2.0]), 400, "Expected [-1,1], got [1,2]"),
    (_with_input(shape=[1, 1], data=[1.0, 2.0]), 400, "needs 1, the data has 2"),
    (_with_input(data=["a"]), 400, "its data must be numbers"),
    (_with_input(data=[[1.0], 2.0]), 400, "not a rectangular array"),
    (_with_input(data=None), 400, "'data' must be a list of values, got null"),
    ({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1]}]}, 400, "neither 'data' nor a binary_data_size"),
    (_with_input(data=[None]), 400, "got null or mixed values"),
    (_with_input(shape=[17, 1], data=[1.0] * 17), 400, "batch-size must be <= 16"),
    ({"inputs": GOOD["inputs"] * 2}, 400, "given more than once"),
    ({**GOOD, "inputs": GOOD["inputs"] + [{"name": "W", "datatype": "FP32", "shape": [1, 1], "data": [1]}]},
     400, "unexpected inference input 'W'"),
    ({**GOOD, "outputs": [{"name": "NOPE"}]}, 400, "unexpected inference output 'NOPE'"),
    ({**GOOD, "parameters": {"priority": -1}}, 400, "'priority' must be a non-negative integer"),
    ({**GOOD, "parameters": {"sequence_start": "yes"}}, 400, "must be true or false"),
    ({**GOOD, "id": 5}, 400, "'id' must be a string"),
]


@pytest.mark.parametrize("body, status, message", BAD)
def test_bad_json_requests_get_a_clear_4xx(server, body, status, message):
    r = post(server, body)
    assert r.status_code == status, r.text
    assert message in r.json()["error"]


def _binary_request(values: np.ndarray, declared: int | None = None, extra: bytes = b""):
    header = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": list(values.shape),
                                     "parameters": {"binary_data_size": declared if declared is not None
                                                    else values.nbytes}}],
                         "outputs": [{"name": "Y", "parameters": {"binary_data": True}}]}).encode()
    return header, header + values.tobytes() + extra


def test_binary_tensor_extension_and_its_errors(server):
    values = np.array([[1.5], [2.5]], np.float32)
    header, body = _binary_request(values)
    r = post(server, body, headers={"Inference-Header-Content-Length": str(len(header))})
    assert r.status_code == 200, r.text
    n = int(r.headers["Inference-Header-Content-Length"])
    meta = json.loads(r.content[:n])
    y_meta = meta["outputs"][0]
    assert y_meta["name"] == "Y" and y_meta["parameters"]["binary_data_size"] == 8 and "data" not in y_meta
    np.testing.assert_array_equal(np.frombuffer(r.content[n:], np.float32).reshape(2, 1), 2 * values + 1)

    cases = [
        ({"Inference-Header-Content-Length": "abc"}, body, "must be an integer"),
        ({"Inference-Header-Content-Length": str(len(body) + 1)}, body, "but the request body has"),
        ({"Inference-Header-Content-Length": str(len(header) - 1)}, body, "failed to parse the request JSON"),
        ({}, body, "failed to parse the request JSON"),
        ({"Inference-Header-Content-Length": str(len(header))}, _binary_request(values, 4)[1][:-4] + b"\0" * 4,
         "needs 8 bytes, binary_data_size is 4"),
        ({"Inference-Header-Content-Length": str(len(_binary_request(values, 12)[0]))},
         _binary_request(values, 12)[1], "only 8 bytes of binary data remain"),
        ({"Inference-Header-Content-Length": str(len(header))}, _binary_request(values, extra=b"xx")[1],
         "2 bytes of binary data that no input claims"),
    ]
    for headers, data, message in cases:
        r = post(server, data, headers=headers)
        assert r.status_code == 400, (message, r.text)
        assert message in r.json()["error"], r.json()
    # BYTES binary data whose length prefixes do not add up.
    bad = json.dumps({"inputs": [{"name": "S", "datatype": "BYTES", "shape": [1], "parameters": {
        "binary_data_size": 6}}, {"name": "B", "datatype": "BOOL", "shape": [1], "data": [True]}]}).encode()
    r = post(server, bad + struct.pack("<I", 9) + b"ab", path="/v2/models/strings/infer",
             headers={"Inference-Header-Content-Length": str(len(bad))})
    assert r.status_code == 400 and "claims 9 bytes" in r.json()["error"]


def test_unknown_paths_models_versions_and_oversized_bodies(server):
    base = server.http_url
    cases = [
        (requests.get, "/v2/models/nope", 404, "unknown model: 'nope'"),
        (requests.get, "/v2/models/probe/versions/7", 404, "version 7 is not found"),
        (requests.get, "/v2/models/probe/versions/x/config", 400, "positive integer"),
        (requests.get, "/v2/models/nope/stats", 404, "unknown model"),
        (requests.get, "/v2/nothing/here", 404, "not found"),
        (requests.get, "/v2/models/probe/infer", 405, "not allowed"),
    ]
    for method, path, status, message in cases:
        r = method(base + path, timeout=10)
        assert r.status_code == status, (path, r.text)
        assert message in r.json()["error"]
    assert requests.get(base + "/v2/models/probe/infer", timeout=10).headers["Allow"] == "POST"
    assert requests.post(base + "/v2/health/live", timeout=10).headers["Allow"] == "GET"
    r = post(server, GOOD, path="/v2/models/nope/infer")
    assert r.status_code == 404 and "unknown model" in r.json()["error"]
    r = post(server, GOOD, path="/v2/models/probe/versions/3/infer")
    assert r.status_code == 404
    big = json.dumps({"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [1.0]}],
                      "pad": "x" * (MAX_BODY + 10)}).encode()
    r = post(server, big)
    assert r.status_code == 413 and "larger than the server's limit" in r.json()["error"]
    # After all of that the server still answers.
    r = post(server, GOOD)
    assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0]
    assert requests.get(base + "/v2/health/ready", timeout=10).status_code == 200


@pytest.mark.parametrize("event_loop", ["asyncio", "uvloop"])
def test_either_event_loop_serves(tmp_path, event_loop):
    write_model(tmp_path, "probe", probe_config(max_batch_size=4), PROBE_MODEL)
    with ServerThread(tmp_path, port=0, event_loop=event_loop) as srv:
        assert type(srv.loop).__module__.split(".")[0] == event_loop
        r = post(srv, GOOD)
        assert r.status_code == 200 and r.json()["outputs"][0]["data"] == [3.0]


def test_unknown_event_loop_is_a_clear_error():
    with pytest.raises(ValueError, match="event_loop must be one of auto, asyncio, uvloop, got 'tokio'"):
        ServerThread(event_loop="tokio")


# ---------------------------------------------------------------------------------------- soak
def test_soak_no_response_lost_or_misrouted(server):
    """4,000 requests, 128 at a time, each with its own input and id: every answer must come back,
    exactly once, to the request that asked, with that request's result."""
    import aiohttp

    total, concurrency = 4000, 128

    async def main():
        sem = asyncio.Semaphore(concurrency)
        results = {}
        connector = aiohttp.TCPConnector(limit=concurrency)
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            async def one(i):
                value = float(i) + 0.25
                body = {"id": f"r{i}", "inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1],
                                                   "data": [value]}]}
                async with sem:
                    async with session.post(f"{server.http_url}/v2/models/probe/infer", json=body) as r:
                        assert r.status == 200, await r.text()
                        msg = await r.json()
                assert msg["id"] == f"r{i}"
                outs = {o["name"]: o["data"] for o in msg["outputs"]}
                results[i] = outs["Y"][0]
                return outs["Y"][0] == 2 * value + 1

            oks = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(total))), timeout=90)
        return oks, results

    before = requests.get(f"{server.http_url}/v2/models/probe/stats", timeout=10).json()["model_stats"][0]
    oks, results = asyncio.run(main())
    after = requests.get(f"{server.http_url}/v2/models/probe/stats", timeout=10).json()["model_stats"][0]
    assert all(oks) and len(results) == total
    assert after["inference_count"] - before["inference_count"] == total
    # Under that load the dynamic batcher did batch.
    assert after["execution_count"] - before["execution_count"] < total
