"""Scheduling without HTTP: the batching rule, the dynamic batcher's queue policies, instances, the
rate limiter, warm-up, the sequence batcher and ensembles, on small models in temporary repositories.

Timing-dependent checks use generous margins and only lower bounds that timers guarantee (a timer
never fires early), so they do not flake on a loaded machine.
"""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from mlsys_lab.serving import InferenceRequest, InferenceServer, plan_batch
from mlsys_lab.serving.config import config_from_text
from mlsys_lab.serving.ensemble import check_ensemble
from mlsys_lab.serving.errors import ConfigError, InvalidArgument, Unavailable
from mlsys_lab.serving.testing import PROBE_MODEL, copy_example_models, probe_config, write_model

MS = 1_000_000  # ns


# ---------------------------------------------------------------------------------------- plan_batch
def plan(sizes, waited_ms=0.0, keys=None, **kw):
    keys = keys or [0] * len(sizes)
    now = 10_000 * MS
    arrivals = [now - int(waited_ms * MS)] + [now] * (len(sizes) - 1)
    return plan_batch(sizes, keys, arrivals, now, **kw)


def test_plan_batch_rules():
    # No delay: send whatever is queued.
    assert plan([1, 1, 1], max_batch_size=8).take == 3
    # Up to max_batch_size, counting samples, not requests.
    assert plan([4, 3, 2], max_batch_size=8).take == 2
    d = plan([4, 4, 4], max_batch_size=8)
    assert (d.take, d.reason) == (2, "preferred")      # the batch reached its largest size
    # A preferred size is sent at once, the largest one that the queue can fill exactly.
    d = plan([1] * 5, max_batch_size=8, preferred_batch_sizes=[2, 4], max_queue_delay_ns=10 * MS)
    assert (d.take, d.reason) == (4, "preferred")
    # No preferred size reachable: wait for the delay of the oldest request ...
    d = plan([1] * 3, waited_ms=4, max_batch_size=8, preferred_batch_sizes=[4], max_queue_delay_ns=10 * MS)
    assert (d.take, d.reason, d.wait_ns) == (0, "waiting", 6 * MS)
    # ... then send everything that fits.
    d = plan([1] * 3, waited_ms=10, max_batch_size=8, preferred_batch_sizes=[4], max_queue_delay_ns=10 * MS)
    assert (d.take, d.reason) == (3, "delay")
    # Triton's rule: a batch about to pass the largest preferred size goes as it is.
    d = plan([3, 3], max_batch_size=8, preferred_batch_sizes=[4], max_queue_delay_ns=10 * MS)
    assert (d.take, d.reason) == (1, "preferred")
    # Different shapes close the batch.
    d = plan([1, 1, 1], keys=["a", "a", "b"], max_batch_size=8, max_queue_delay_ns=10 * MS)
    assert (d.take, d.reason) == (2, "full")
    assert plan([], max_batch_size=8).reason == "empty"


# ---------------------------------------------------------------------------------------- helpers
def run_server(repo, body, **kwargs):
    async def main():
        server = InferenceServer(repo, **kwargs)
        await server.start()
        try:
            return await body(server)
        finally:
            await server.stop()
    return asyncio.run(main())


def probe(x, delay_ms=None, model="probe", **kw):
    inputs = {"X": np.array([[x]], np.float32)}
    if delay_ms is not None:
        inputs["DELAY_MS"] = np.array([[delay_ms]], np.int32)
    return InferenceRequest(model, inputs, **kw)


async def gather_in_order(server, requests, gap_s=0.0):
    """Submit requests in order (optionally spaced); return (results or exceptions, completion order)."""
    done = []

    async def one(i, r):
        try:
            return await server.infer(r)
        except Exception as exc:
            return exc
        finally:
            done.append(i)

    tasks = []
    for i, r in enumerate(requests):
        tasks.append(asyncio.ensure_future(one(i, r)))
        await asyncio.sleep(gap_s)
    return await asyncio.gather(*tasks), done


def batch_sizes(server, model="probe"):
    return {b["batch_size"]: b["compute_infer"]["count"]
            for b in server.model_statistics(model)["model_stats"][0]["batch_stats"]}


def test_the_shipped_repository_loads_and_every_model_answers():
    async def body(server):
        out = {}
        for name in server.model_names:
            cfg = server.model_config(name)
            inputs = {}
            for t in cfg.inputs:
                dtype = np.float32 if t.datatype == "FP32" else np.uint8 if t.datatype == "UINT8" else np.int32
                inputs[t.name] = np.ones((1, *t.dims), dtype)
            extra = {"sequence_id": 1, "sequence_start": True, "sequence_end": True} if cfg.sequence_batching else {}
            result = await server.infer(InferenceRequest(name, inputs, **extra))
            out[name] = {k: v.shape for k, v in result.items()}
        return server.ready, out

    ready, shapes = run_server(None, body)
    assert ready
    assert shapes == {"accumulator": {"OUTPUT": (1, 1)}, "digits_ensemble": {"LOGITS": (1, 10)},
                      "digits_mlp": {"LOGITS": (1, 10)}, "digits_preprocess": {"INPUT": (1, 64)},
                      "mlp_large": {"OUTPUT": (1, 2048)}}


# ---------------------------------------------------------------------------------------- dynamic batcher
def test_requests_arriving_while_the_instance_is_busy_form_one_batch(tmp_path):
    write_model(tmp_path, "probe", probe_config(delay_ms=150), PROBE_MODEL)

    async def body(server):
        results, _ = await gather_in_order(server, [probe(i) for i in range(6)])
        for i, r in enumerate(results):
            assert r["Y"].tolist() == [[2 * i + 1]]
        return batch_sizes(server)

    # The first request runs alone; the other five queue meanwhile and run as one batch.
    assert run_server(tmp_path, body) == {1: 1, 5: 1}


STARTS_MODEL = """
import time

import numpy as np


class Model:
    def execute(self, inputs):
        start = time.monotonic()
        time.sleep(0.1)
        return {"START": np.full((len(inputs["X"]), 1), start)}
"""


def test_the_next_batch_starts_while_the_previous_batch_is_being_answered(tmp_path):
    # Batch A (4 requests) executes while batch B queues. When A ends, each of its 4 callers takes
    # 30 ms to handle its answer on the event loop (as writing a response does, in smaller measure).
    # B must be handed to the instance before those callers run, not queued behind them.
    write_model(tmp_path, "starts", """
name: "starts"
backend: "numpy"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "START" data_type: TYPE_FP64 dims: [ 1 ] } ]
dynamic_batching { preferred_batch_size: [ 4 ] max_queue_delay_microseconds: 2000000 }
""", STARTS_MODEL)

    async def body(server):
        answered = []

        async def call(handling_s):
            result = await server.infer(InferenceRequest("starts", {"X": np.zeros((1, 1), np.float32)}))
            time.sleep(handling_s)        # blocks the event loop, like a slow response
            answered.append(time.monotonic())
            return result["START"][0, 0]

        batch_a = [asyncio.ensure_future(call(0.03)) for _ in range(4)]
        await asyncio.sleep(0.03)          # A is executing
        batch_b = [asyncio.ensure_future(call(0.0)) for _ in range(4)]
        starts_a, starts_b = await asyncio.gather(asyncio.gather(*batch_a), asyncio.gather(*batch_b))
        return starts_a, starts_b, sorted(answered)[3], batch_sizes(server, "starts")

    starts_a, starts_b, a_answered, sizes = run_server(tmp_path, body)
    assert sizes == {4: 2} and len(set(starts_a)) == 1 and len(set(starts_b)) == 1
    assert starts_b[0] >= starts_a[0] + 0.1          # one instance: B after A
    assert starts_b[0] < a_answered                  # ... but while A's answers were still being handled


def test_default_scheduler_without_dynamic_batching_runs_requests_one_by_one(tmp_path):
    write_model(tmp_path, "probe", probe_config(dynamic_batching=None, delay_ms=20), PROBE_MODEL)

    async def body(server):
        await gather_in_order(server, [probe(i) for i in range(4)])
        return batch_sizes(server)

    assert run_server(tmp_path, body) == {1: 4}


def test_preferred_batch_size_and_queue_delay(tmp_path):
    write_model(tmp_path, "probe", probe_config(
        dynamic_batching="preferred_batch_size: [4] max_queue_delay_microseconds: 300000"), PROBE_MODEL)

    async def body(server):
        t0 = time.monotonic()
        await gather_in_order(server, [probe(i) for i in range(4)])
        preferred_s = time.monotonic() - t0
        t0 = time.monotonic()
        await gather_in_order(server, [probe(i) for i in range(2)])
        delayed_s = time.monotonic() - t0
        return preferred_s, delayed_s, batch_sizes(server)

    preferred_s, delayed_s, sizes = run_server(tmp_path, body)
    assert sizes == {4: 1, 2: 1}
    assert preferred_s < 0.3           # a full preferred batch does not wait for the delay
    assert delayed_s >= 0.29           # two requests wait the 300 ms delay for company that never comes


def test_full_queue_rejects_at_once(tmp_path):
    write_model(tmp_path, "probe", probe_config(
        max_batch_size=1, dynamic_batching="default_queue_policy { max_queue_size: 2 }"), PROBE_MODEL)

    async def body(server):
        first = asyncio.ensure_future(server.infer(probe(0, delay_ms=300)))
        await asyncio.sleep(0.05)            # now executing; the queue is empty
        queued = [asyncio.ensure_future(server.infer(probe(i))) for i in (1, 2)]
        await asyncio.sleep(0)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="Exceeds maximum queue size"):
            await server.infer(probe(3))
        rejected_after = time.monotonic() - t0
        results = await asyncio.gather(first, *queued)
        stats = server.model_statistics("probe")["model_stats"][0]
        return rejected_after, results, stats, server.metrics_text()

    rejected_after, results, stats, metrics = run_server(tmp_path, body)
    assert rejected_after < 0.1
    assert [r["Y"][0, 0] for r in results] == [1, 3, 5]
    assert stats["inference_stats"]["fail"]["count"] == 1
    assert 'nv_inference_request_failure{model="probe",version="1",reason="REJECTED"} 1' in metrics


def test_queue_timeout_reject_fires_while_every_instance_is_busy(tmp_path):
    write_model(tmp_path, "probe", probe_config(
        max_batch_size=1, dynamic_batching="default_queue_policy { default_timeout_microseconds: 100000 }"),
        PROBE_MODEL)

    async def body(server):
        return await gather_in_order(server, [probe(0, delay_ms=400), probe(1)], gap_s=0.02)

    (first, second), order = run_server(tmp_path, body)
    assert first["Y"][0, 0] == 1
    assert isinstance(second, Unavailable) and "Request timeout expired" in str(second)
    assert order == [1, 0]          # rejected at its timeout, before the running request finished


def test_timeout_override_and_delay_action(tmp_path):
    write_model(tmp_path, "probe", probe_config(max_batch_size=1, dynamic_batching=(
        "default_queue_policy { timeout_action: DELAY allow_timeout_override: true }")), PROBE_MODEL)

    async def body(server):
        return await gather_in_order(server, [
            probe(0, delay_ms=300),            # occupies the only instance
            probe(1, timeout_us=30_000),       # times out in the queue: moved behind the others
            probe(2)], gap_s=0.05)

    results, order = run_server(tmp_path, body)
    assert [r["Y"][0, 0] for r in results] == [1, 3, 5]   # DELAY still runs it
    assert order == [0, 2, 1]


def test_timeout_override_is_ignored_unless_allowed(tmp_path):
    write_model(tmp_path, "probe", probe_config(max_batch_size=1, dynamic_batching=""), PROBE_MODEL)

    async def body(server):
        return await gather_in_order(server, [probe(0, delay_ms=200), probe(1, timeout_us=1000)], gap_s=0.02)

    results, _ = run_server(tmp_path, body)
    assert [r["Y"][0, 0] for r in results] == [1, 3]


def test_priority_levels(tmp_path):
    write_model(tmp_path, "probe", probe_config(max_batch_size=1, dynamic_batching=(
        "priority_levels: 2 default_priority_level: 2")), PROBE_MODEL)

    async def body(server):
        return await gather_in_order(server, [
            probe(0, delay_ms=200), probe(1), probe(2, priority=1), probe(3, priority=9)], gap_s=0.02)

    _, order = run_server(tmp_path, body)
    # Level 1 overtakes; an out-of-range priority means the default level (Triton's rule).
    assert order == [0, 2, 1, 3]


@pytest.mark.parametrize("preserve", [False, True])
def test_preserve_ordering_with_two_instances(tmp_path, preserve):
    write_model(tmp_path, "probe", probe_config(max_batch_size=1, instances=2, dynamic_batching=(
        f"preserve_ordering: {str(preserve).lower()}")), PROBE_MODEL)

    async def body(server):
        return await gather_in_order(server, [probe(0, delay_ms=300), probe(1, delay_ms=0)], gap_s=0.02)

    results, order = run_server(tmp_path, body)
    assert [r["Y"][0, 0] for r in results] == [1, 3]
    assert order == ([0, 1] if preserve else [1, 0])


def test_instances_execute_at_the_same_time_and_the_rate_limiter_serialises_them(tmp_path):
    write_model(tmp_path, "probe", probe_config(max_batch_size=1, instances=2, delay_ms=150,
                                                rate_limiter='resources [ { name: "R" count: 1 } ]'),
                PROBE_MODEL)

    async def body(server):
        results, _ = await gather_in_order(server, [probe(i) for i in range(4)])
        return max(int(r["ACTIVE"][0, 0]) for r in results)

    assert run_server(tmp_path, body) == 2                                  # rate limiter off
    assert run_server(tmp_path, body, rate_limit="execution_count") == 1    # one R for both instances
    assert run_server(tmp_path, body, rate_limit="execution_count", rate_limit_resources={"R": 2}) == 2


def test_rate_limiter_rejects_an_instance_needing_more_than_the_server_has(tmp_path):
    write_model(tmp_path, "probe", probe_config(rate_limiter='resources [ { name: "R" count: 3 } ]'), PROBE_MODEL)

    async def body(server):
        return server.repository_index()

    index = run_server(tmp_path, body, rate_limit="execution_count", rate_limit_resources={"R": 2})
    assert index[0]["state"] == "UNAVAILABLE" and "needs 3 of resource 'R'" in index[0]["reason"]


# ---------------------------------------------------------------------------------------- validation
def test_requests_are_checked_against_the_config(tmp_path):
    write_model(tmp_path, "probe", probe_config(max_batch_size=4), PROBE_MODEL)
    x = np.zeros((1, 1), np.float32)
    cases = [
        ({"X": np.zeros((5, 1), np.float32)}, "batch-size must be <= 4"),
        ({"X": np.zeros((1, 2), np.float32)}, "Expected [-1,1], got [1,2]"),
        ({"X": np.zeros((1, 1), np.float64)}, "data-type is 'FP64', but model 'probe' expects 'FP32'"),
        ({"X": x, "Z": x}, "unexpected inference input 'Z'"),
        ({"DELAY_MS": np.zeros((1, 1), np.int32)}, "missing required input(s) ['X']"),
        ({"X": x, "DELAY_MS": np.zeros((2, 1), np.int32)}, "does not match the batch size 1"),
        ({"X": np.zeros((0, 1), np.float32)}, "batch-size must be >= 1"),
    ]

    async def body(server):
        messages = []
        for inputs, _ in cases:
            with pytest.raises(InvalidArgument) as err:
                await server.infer(InferenceRequest("probe", inputs))
            messages.append(str(err.value))
        ok = await server.infer(probe(1.0))
        return messages, ok, server.model_statistics("probe")["model_stats"][0]

    messages, ok, stats = run_server(tmp_path, body)
    for (_, expected), got in zip(cases, messages):
        assert expected in got, got
    assert ok["Y"][0, 0] == 3.0
    assert stats["inference_stats"]["fail"]["count"] == len(cases)
    assert stats["inference_stats"]["success"]["count"] == 1


# ---------------------------------------------------------------------------------------- warm-up
WARMUP = """model_warmup [ { name: "w" batch_size: 2 count: 3
  inputs { key: "X" value: { data_type: TYPE_FP32 dims: [ 1 ] %s } } } ]"""
COUNTING_MODEL = """
import numpy as np
CALLS = []
class Model:
    def execute(self, inputs):
        CALLS.append(len(inputs["X"]))
        if float(inputs["X"].max()) > 100:
            raise ValueError("input too large")
        return {"Y": inputs["X"] * 2 + 1, "ACTIVE": np.full((len(inputs["X"]), 1), len(CALLS), np.int32)}
"""


def test_warmup_runs_on_every_instance_before_ready_and_is_not_counted(tmp_path):
    write_model(tmp_path, "probe", probe_config(instances=2, extra=WARMUP % "zero_data: true"), COUNTING_MODEL)
    write_model(tmp_path, "bad", probe_config("bad", extra=WARMUP % 'input_data_file: "big"'), COUNTING_MODEL,
                files={"warmup/big": np.array([1000], np.float32).tobytes()})
    write_model(tmp_path, "wrongsize", probe_config("wrongsize", extra=WARMUP % 'input_data_file: "x"'),
                COUNTING_MODEL, files={"warmup/x": b"\0" * 3})

    async def body(server):
        out = await server.infer(probe(1.0))
        return (int(out["ACTIVE"][0, 0]), server.model_statistics("probe")["model_stats"][0]["inference_count"],
                server.repository_index(), server.ready)

    calls, counted, index, ready = run_server(tmp_path, body)
    assert calls == 2 * 3 + 1          # 3 warm-up runs on each of 2 instances, then ours
    assert counted == 1
    states = {r["name"]: r for r in index}
    assert states["probe"]["state"] == "READY"
    assert states["bad"]["state"] == "UNAVAILABLE"
    assert "model_warmup 'w' failed" in states["bad"]["reason"] and "input too large" in states["bad"]["reason"]
    assert "has 3 bytes" in states["wrongsize"]["reason"]
    assert not ready                   # strict readiness: one model failed


# ---------------------------------------------------------------------------------------- sequences
def acc(value, seq, start=False, end=False, model="accumulator"):
    return InferenceRequest(model, {"INPUT": np.array([[value]], np.int32)}, sequence_id=seq,
                            sequence_start=start, sequence_end=end)


def test_sequences_keep_their_own_state_and_share_batches(tmp_path):
    copy_example_models(tmp_path, ["accumulator"])

    async def body(server):
        reqs = []
        for step in range(4):              # three sequences interleaved, one request each per step
            for seq, base in ((1, 1), (2, 10), ("s3", 100)):
                reqs.append(acc(base * (step + 1), seq, start=step == 0, end=step == 3))
        results, _ = await gather_in_order(server, reqs)
        with pytest.raises(InvalidArgument, match="must specify the START flag"):
            await server.infer(acc(1, 1))                   # sequence 1 ended
        with pytest.raises(InvalidArgument, match="non-zero or non-empty correlation ID"):
            await server.infer(acc(1, 0, start=True))
        with pytest.raises(InvalidArgument, match="must specify the START flag"):
            await server.infer(acc(1, 99))                  # never started
        return [int(r["OUTPUT"][0, 0]) for r in results], server.model_statistics("accumulator")

    outputs, stats = run_server(tmp_path, body)
    assert outputs[0::3] == [1, 3, 6, 10]
    assert outputs[1::3] == [10, 30, 60, 100]
    assert outputs[2::3] == [100, 300, 600, 1000]
    s = stats["model_stats"][0]
    assert s["execution_count"] < s["inference_count"] == 12     # sequences were batched together


def test_sequence_idle_timeout_and_backlog(tmp_path):
    copy_example_models(tmp_path, ["accumulator"])
    cfg = (tmp_path / "accumulator" / "config.pbtxt").read_text()
    cfg = cfg.replace("max_sequence_idle_microseconds: 5000000", "max_sequence_idle_microseconds: 100000")
    (tmp_path / "accumulator" / "config.pbtxt").write_text(cfg.replace("max_candidate_sequences: 64",
                                                                       "max_candidate_sequences: 1"))

    async def body(server):
        assert (await server.infer(acc(5, 1, start=True)))["OUTPUT"][0, 0] == 5
        # One slot: sequence 2 waits in the backlog until sequence 1 ends.
        second = asyncio.ensure_future(server.infer(acc(7, 2, start=True, end=True)))
        await asyncio.sleep(0.03)
        assert not second.done()
        assert (await server.infer(acc(1, 1, end=True)))["OUTPUT"][0, 0] == 6
        assert (await second)["OUTPUT"][0, 0] == 7
        await server.infer(acc(5, 3, start=True))
        await asyncio.sleep(0.4)           # idle for longer than 100 ms: released
        with pytest.raises(InvalidArgument, match="START flag"):
            await server.infer(acc(1, 3))
        return True

    assert run_server(tmp_path, body)


CONTROL_CONFIG = """
name: "ctl"
backend: "numpy"
max_batch_size: 4
input [ { name: "X" data_type: TYPE_FP32 dims: [ 1 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 4 ] } ]
sequence_batching {
  control_input [
    { name: "S" control [ { kind: CONTROL_SEQUENCE_START fp32_false_true: [ 0, 1 ] } ] },
    { name: "E" control [ { kind: CONTROL_SEQUENCE_END int32_false_true: [ 0, 1 ] } ] },
    { name: "R" control [ { kind: CONTROL_SEQUENCE_READY bool_false_true: [ false, true ] } ] },
    { name: "C" control [ { kind: CONTROL_SEQUENCE_CORRID data_type: TYPE_UINT64 } ] }
  ]
}
"""
CONTROL_MODEL = """
import numpy as np
class Model:
    def execute(self, inputs):
        assert inputs["E"].dtype == np.int32 and inputs["R"].dtype == np.bool_ and inputs["C"].dtype == np.uint64
        cols = [inputs["S"], inputs["E"], inputs["R"], inputs["C"]]
        return {"OUT": np.concatenate([c.astype(np.float32) for c in cols], axis=1)}
"""


def test_sequence_control_inputs(tmp_path):
    write_model(tmp_path, "ctl", CONTROL_CONFIG, CONTROL_MODEL)

    async def body(server):
        outs = []
        for start, end in ((True, False), (False, True)):
            r = InferenceRequest("ctl", {"X": np.zeros((1, 1), np.float32)}, sequence_id=42,
                                 sequence_start=start, sequence_end=end)
            outs.append((await server.infer(r))["OUT"][0].tolist())
        with pytest.raises(InvalidArgument, match="unexpected inference input 'S'"):
            await server.infer(InferenceRequest("ctl", {"X": np.zeros((1, 1), np.float32),
                                                        "S": np.zeros((1, 1), np.float32)}, sequence_id=1,
                                                sequence_start=True))
        return outs

    assert run_server(tmp_path, body) == [[1, 0, 1, 42], [0, 1, 1, 42]]


# ---------------------------------------------------------------------------------------- ensembles
ADD = """
import numpy as np
class Model:
    def initialize(self, args):
        self.k = float(args["parameters"]["k"])
    def execute(self, inputs):
        return {"OUT": inputs["IN"] * self.k}
"""
SUM = """
class Model:
    def execute(self, inputs):
        return {"OUT": inputs["A"] + inputs["B"]}
"""


def _unary(name, k):
    return (f'name: "{name}" backend: "numpy" max_batch_size: 8 dynamic_batching {{ }} '
            'input [{name: "IN" data_type: TYPE_FP32 dims: [2]}] output [{name: "OUT" data_type: TYPE_FP32 dims: [2]}] '
            f'parameters {{ key: "k" value: {{ string_value: "{k}" }} }}')


DIAMOND = """
name: "diamond"
platform: "ensemble"
max_batch_size: 8
input [ { name: "X" data_type: TYPE_FP32 dims: [ 2 ] } ]
output [ { name: "Z" data_type: TYPE_FP32 dims: [ 2 ] } ]
ensemble_scheduling { step [
  { model_name: "sum" model_version: -1 input_map { key: "A" value: "a" } input_map { key: "B" value: "b" }
    output_map { key: "OUT" value: "Z" } },
  { model_name: "double" model_version: 1 input_map { key: "IN" value: "X" } output_map { key: "OUT" value: "a" } },
  { model_name: "triple" model_version: -1 input_map { key: "IN" value: "X" } output_map { key: "OUT" value: "b" } }
] }
"""


def _diamond_repo(tmp_path):
    write_model(tmp_path, "double", _unary("double", 2), ADD)
    write_model(tmp_path, "triple", _unary("triple", 3), ADD)
    write_model(tmp_path, "sum", 'name: "sum" backend: "numpy" max_batch_size: 8 input [{name: "A" data_type: '
                'TYPE_FP32 dims: [2]}, {name: "B" data_type: TYPE_FP32 dims: [2]}] output [{name: "OUT" '
                'data_type: TYPE_FP32 dims: [2]}]', SUM)
    write_model(tmp_path, "diamond", DIAMOND)


def test_ensemble_runs_a_dag(tmp_path):
    _diamond_repo(tmp_path)
    copy_example_models(tmp_path, ["digits_mlp", "digits_preprocess", "digits_ensemble"])

    async def body(server):
        x = np.array([[1, 2], [3, 4]], np.float32)
        z = (await server.infer(InferenceRequest("diamond", {"X": x})))["Z"]
        from mlsys_lab.data.digits import _raw

        images, labels = _raw()
        logits = (await server.infer(InferenceRequest("digits_ensemble", {"IMAGE": images[:32]})))["LOGITS"]
        direct = (await server.infer(InferenceRequest(
            "digits_mlp", {"INPUT": images[:32].reshape(32, 64).astype(np.float32) / 16})))["LOGITS"]
        stats = {s["name"]: s for s in server.model_statistics()["model_stats"]}
        return x, z, logits, direct, labels[:32], stats

    x, z, logits, direct, labels, stats = run_server(tmp_path, body)
    np.testing.assert_allclose(z, 5 * x)
    np.testing.assert_allclose(logits, direct, rtol=1e-6)
    assert (logits.argmax(1) == labels).mean() > 0.9
    assert stats["diamond"]["inference_count"] == 2 and stats["diamond"]["execution_count"] == 0
    assert stats["double"]["inference_count"] == 2 and stats["sum"]["execution_count"] == 1


def test_ensemble_wiring_is_checked(tmp_path):
    _diamond_repo(tmp_path)
    from mlsys_lab.serving.config import load_config

    configs = {n: load_config(tmp_path / n) for n in ("double", "triple", "sum")}
    base = DIAMOND

    def check(text):
        cfg = config_from_text(text, model_name="diamond")
        return check_ensemble(cfg, [configs[s["model_name"]] for s in cfg["ensemble_scheduling"]["step"]])

    assert check(base) == [1, 2, 0]
    cycle = base.replace('{ key: "IN" value: "X" } output_map { key: "OUT" value: "a" }',
                         '{ key: "IN" value: "b" } output_map { key: "OUT" value: "a" }').replace(
        '{ key: "IN" value: "X" } output_map { key: "OUT" value: "b" }',
        '{ key: "IN" value: "a" } output_map { key: "OUT" value: "b" }')
    bad = [
        (base.replace('value: "b" }\n    output_map', 'value: "c" }\n    output_map'), "reads tensor 'c'"),
        (base.replace('value: "Z" }', 'value: "W" }'), "output 'Z' is produced by no step"),
        (cycle, "wait on each other"),
        (base.replace('key: "B" value: "b"', 'key: "Q" value: "b"'), "input_map key 'Q' is not an input"),
        (base.replace('input_map { key: "B" value: "b" }', ''), "does not feed required input(s) ['B']"),
        (base.replace('value: "b" } }', 'value: "a" } }'), "tensor 'a' is already produced by step 1"),
    ]
    for text, message in bad:
        assert text != base
        with pytest.raises(ConfigError) as err:
            check(text)
        assert message in str(err.value)
