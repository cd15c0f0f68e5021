"""Request tracing (Triton's trace extension, level TIMESTAMPS): settings over HTTP with the real
``tritonclient``, sampling by rate and count, the order of the timestamps, batches sharing their
compute timestamps, ensembles' parent ids, trace files, and clear errors for bad settings."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from mlsys_lab.serving.server import ServerThread
from mlsys_lab.serving.testing import PROBE_MODEL, copy_example_models, probe_config, write_model
from mlsys_lab.serving.trace import TIMESTAMP_NAMES, TraceSettings, parse_trace_config

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402

DEFAULT = {"trace_file": "", "trace_level": ["OFF"], "trace_rate": "1000", "trace_count": "-1",
           "log_frequency": "0"}


@pytest.fixture()
def repo(tmp_path):
    copy_example_models(tmp_path, ["digits_mlp", "digits_preprocess", "digits_ensemble"])
    write_model(tmp_path, "probe", probe_config(max_batch_size=8, delay_ms=30,
                                                dynamic_batching="max_queue_delay_microseconds: 20000"), PROBE_MODEL)
    # Waits up to 2 s for a batch of exactly 4, so that four concurrent requests share one batch
    # however slowly a busy machine delivers them.
    write_model(tmp_path, "probe4", probe_config("probe4", max_batch_size=8, delay_ms=30, dynamic_batching=(
        "preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 2000000")), PROBE_MODEL)
    return tmp_path


def infer_probe(url, value=1.0, model="probe"):
    body = {"inputs": [{"name": "X", "datatype": "FP32", "shape": [1, 1], "data": [value]}]}
    r = requests.post(f"http://{url}/v2/models/{model}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()


def test_settings_over_http_with_tritonclient(repo):
    with ServerThread(repo, port=0) as srv:
        client = httpclient.InferenceServerClient(srv.url)
        assert "trace" in client.get_server_metadata()["extensions"]
        assert client.get_trace_settings() == DEFAULT
        new = client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "1"})
        assert new == {**DEFAULT, "trace_level": ["TIMESTAMPS"], "trace_rate": "1"}
        # A model's own settings start from the global ones; clearing them falls back.
        model = client.update_trace_settings("probe", {"trace_rate": "5", "trace_count": "3"})
        assert model == {**new, "trace_rate": "5", "trace_count": "3"}
        assert client.get_trace_settings() == new
        assert client.update_trace_settings("probe", {"trace_rate": None})["trace_rate"] == "1"
        assert client.update_trace_settings("probe", {}) == new
        assert client.update_trace_settings(settings={"trace_level": None}) == {**new, "trace_level": ["OFF"]}


@pytest.mark.parametrize("settings, status, message", [
    ({"trace_rate": "0"}, 400, "'trace_rate' must be an integer >= 1"),
    ({"trace_rate": "often"}, 400, "'trace_rate' must be an integer >= 1, got 'often'"),
    ({"trace_count": "-2"}, 400, "'trace_count' must be an integer >= -1"),
    ({"trace_level": ["LOUD"]}, 400, "unknown trace level 'LOUD'"),
    ({"trace_level": ["TENSORS"]}, 400, "TENSORS is not supported"),
    ({"trace_file": "/tmp/elsewhere.json"}, 400, "trace_file can only be set when the server starts"),
    ({"trace_colour": "red"}, 400, "unknown trace setting 'trace_colour'"),
])
def test_bad_settings_are_rejected_with_the_setting_named(repo, settings, status, message):
    with ServerThread(repo, port=0) as srv:
        r = requests.post(f"{srv.http_url}/v2/trace/setting", json=settings, timeout=10)
        assert r.status_code == status and message in r.json()["error"], r.text
        r = requests.post(f"{srv.http_url}/v2/models/probe/trace/setting", json=settings, timeout=10)
        assert r.status_code == status and message in r.json()["error"], r.text
        assert requests.get(f"{srv.http_url}/v2/trace/setting", timeout=10).json() == DEFAULT
        r = requests.post(f"{srv.http_url}/v2/trace/setting", data=b"{not json", timeout=10)
        assert r.status_code == 400 and "JSON" in r.json()["error"]
        r = requests.get(f"{srv.http_url}/v2/models/nope/trace/setting", timeout=10)
        assert r.status_code == 404 and "unknown model" in r.json()["error"]


def test_rate_and_count_choose_which_requests_are_traced(repo):
    with ServerThread(repo, port=0) as srv:
        tracer = srv.server.tracer
        client = httpclient.InferenceServerClient(srv.url)
        client.update_trace_settings(settings={"trace_level": ["TIMESTAMPS"], "trace_rate": "3"})
        for i in range(10):
            infer_probe(srv.url, float(i))
        assert len(tracer.collected) == 4                       # requests 1, 4, 7 and 10
        client.update_trace_settings(settings={"trace_rate": "1", "trace_count": "2"})
        for i in range(5):
            infer_probe(srv.url, float(i))
        assert len(tracer.collected) == 6                       # two more, then the count ran out
        assert client.get_trace_settings()["trace_count"] == "0"
        assert [t.id for t in tracer.collected] == sorted({t.id for t in tracer.collected})


def test_timestamps_come_in_order_and_a_batch_shares_its_compute(repo):
    settings = TraceSettings(trace_level=("TIMESTAMPS",), trace_rate=1)
    with ServerThread(repo, port=0, trace_settings=settings) as srv:
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda v: infer_probe(srv.url, v, "probe4"), [1.0, 2.0, 3.0, 4.0]))
        traces = list(srv.server.tracer.collected)
    assert len(traces) == 4
    for t in traces:
        assert [n for n, _ in t.timestamps] == list(TIMESTAMP_NAMES)
        ns = [v for _, v in t.timestamps]
        assert ns == sorted(ns), t.timestamps
        assert (t.model_name, t.model_version) == ("probe4", 1)
    # The four concurrent requests form one batch of the preferred size: one set of compute stamps.
    assert len({t.ns("COMPUTE_START") for t in traces}) == 1
    assert len({t.ns("COMPUTE_END") for t in traces}) == 1
    assert traces[0].ns("COMPUTE_END") - traces[0].ns("COMPUTE_START") >= 30e6


def test_an_ensembles_steps_are_traced_under_its_id(repo):
    settings = TraceSettings(trace_level=("TIMESTAMPS",), trace_rate=1)
    with ServerThread(repo, port=0, trace_settings=settings) as srv:
        client = httpclient.InferenceServerClient(srv.url)
        images = np.zeros((2, 8, 8), dtype=np.uint8)
        inp = httpclient.InferInput("IMAGE", list(images.shape), "UINT8")
        inp.set_data_from_numpy(images)
        client.infer("digits_ensemble", [inp], request_id="r-7")
        traces = list(srv.server.tracer.collected)
    parent = next(t for t in traces if t.model_name == "digits_ensemble")
    steps = [t for t in traces if t.parent_id == parent.id]
    assert sorted(t.model_name for t in steps) == ["digits_mlp", "digits_preprocess"]
    assert all(t.request_id == "r-7" for t in traces)
    for t in steps:
        assert [n for n, _ in t.timestamps][:2] == ["REQUEST_START", "QUEUE_START"]
        assert parent.ns("HTTP_RECV_END") <= t.ns("REQUEST_START") <= t.ns("REQUEST_END") <= parent.ns("REQUEST_END")


def test_traces_go_to_files_as_triton_writes_them(repo, tmp_path):
    path = tmp_path / "trace.json"
    settings = parse_trace_config([f"triton,file={path}", "triton,log-frequency=2", "level=TIMESTAMPS",
                                   "rate=1"])
    with ServerThread(repo, port=0, trace_settings=settings) as srv:
        for i in range(5):
            infer_probe(srv.url, float(i))
        assert sorted(p.name for p in tmp_path.glob("trace.json*")) == ["trace.json.0", "trace.json.1"]
    # The fifth trace is written when the server stops.
    files = sorted(tmp_path.glob("trace.json.*"))
    assert [p.name for p in files] == ["trace.json.0", "trace.json.1", "trace.json.2"]
    entries = [e for p in files for e in json.loads(p.read_text())]
    heads = [e for e in entries if "model_name" in e]
    stamps = [e for e in entries if "timestamps" in e]
    assert len(heads) == len(stamps) == 5
    assert {e["model_name"] for e in heads} == {"probe"} and all(e["model_version"] == 1 for e in heads)
    assert [s["name"] for s in stamps[0]["timestamps"]] == list(TIMESTAMP_NAMES)

    single = tmp_path / "once.json"
    settings = parse_trace_config([f"triton,file={single}", "level=TIMESTAMPS", "rate=2"])
    with ServerThread(repo, port=0, trace_settings=settings) as srv:
        for i in range(4):
            infer_probe(srv.url, float(i))
        assert not single.exists()                    # log_frequency 0: only when the server stops
    assert len(json.loads(single.read_text())) == 2 * 2

    empty = tmp_path / "empty.json"
    with ServerThread(repo, port=0, trace_settings=parse_trace_config([f"triton,file={empty}"])):
        pass
    assert json.loads(empty.read_text()) == []        # tracing was off: an empty list, not no file


@pytest.mark.parametrize("items, message", [
    (["rate=0"], "'trace_rate' must be an integer >= 1"),
    (["level=TENSORS"], "TENSORS is not supported"),
    (["file=/tmp/x.json"], "write triton,file=..."),
    (["mode=opentelemetry"], "only the 'triton' trace mode"),
    (["opentelemetry,url=http://x"], "only the 'triton' trace mode"),
    (["speed=fast"], "unknown setting 'speed'"),
    (["rate"], "expected SETTING=VALUE"),
])
def test_trace_config_errors_name_the_item(items, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        parse_trace_config(items)


def test_tracing_is_off_by_default_and_collects_nothing(repo):
    with ServerThread(repo, port=0) as srv:
        infer_probe(srv.url)
        assert not srv.server.tracer.collected


def test_tritonclient_reports_errors_from_trace_settings(repo):
    with ServerThread(repo, port=0) as srv:
        client = httpclient.InferenceServerClient(srv.url)
        with pytest.raises(InferenceServerException, match="trace_rate"):
            client.update_trace_settings(settings={"trace_rate": "-1"})
