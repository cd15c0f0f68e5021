"""The HTTP front end: the KServe v2 (Open Inference) protocol on aiohttp.

Endpoints (every ``/v2/models/{m}`` path also takes ``/versions/{v}``):

====================================  ====  ======================================================
path                                  verb  answer
====================================  ====  ======================================================
``/v2/health/live``                   GET   200 while the server runs
``/v2/health/ready``                  GET   200 when every model is ready, else 400
``/v2``                               GET   server metadata: name, version, extensions
``/v2/models/{m}``                    GET   model metadata: versions, platform, inputs, outputs
``/v2/models/{m}/ready``              GET   200 if ready, else 400
``/v2/models/{m}/config``             GET   the model's config in Triton's JSON form
``/v2/models/{m}/stats``              GET   statistics (``/v2/models/stats``: every model)
``/v2/models/{m}/infer``              POST  inference, JSON or binary tensors (:mod:`.protocol`)
``/v2/repository/index``              POST  every model with its state
``/v2/trace/setting``                 GET   trace settings (POST: change them); also per model (:mod:`.trace`)
``/metrics``                          GET   Prometheus metrics (:mod:`.metrics`)
====================================  ====  ======================================================

Errors are ``{"error": "<message>"}`` with the status of :mod:`.errors`: 400 for a request that does
not fit (malformed JSON, missing fields, wrong datatype or shape, a bad binary header, a batch over
``max_batch_size``), 404 for an unknown model, version or path, 413 for a body over
``max_body_size`` (default 64 MiB, Triton's), 503 for a model not ready, a full queue or a queue
timeout, 500 if a model raised. A bad request never reaches a model and never affects other requests.

Why aiohttp, and why its low-level server: aiohttp is a maintained asyncio server whose HTTP parser
is in C, with keep-alive, chunked bodies and a body-size limit. Its connections set ``TCP_NODELAY``
when they open (``aiohttp.tcp_helpers``), which matters: with Nagle's algorithm on, a response written
in two segments waits for the client's delayed ACK, about 40 ms on Linux, and a server doing 10k
requests/s would do 25. The front end uses aiohttp's *low-level* ``web.Server`` with the route table
below (:data:`ROUTES`, one regular expression per path) rather than ``web.Application``: the
application's router, middleware chain and per-request app context cost about 20 µs of the ~130 µs
of Python the event loop spends on each inference request, and under load every microsecond of it
is time the model's batch waits (``bench/serving_perf.py``: 2.40 ms -> 2.05 ms of HTTP work between
two batches of 16). Inference is matched first.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import socket
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

from aiohttp import web

from .errors import InvalidArgument, PayloadTooLarge, ServingError
from .protocol import HEADER_LENGTH, decode_infer_request, encode_infer_response, parse_header_length

__all__ = ["Route", "ROUTES", "make_handler", "start_http", "stop_http", "DEFAULT_MAX_BODY_SIZE"]

log = logging.getLogger("mlsys_lab.serving.http")

#: Triton's default for --http-max-input-size.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

_JSON = "application/json"
_MODEL = "/v2/models/{model}"
_MODEL_VERSION = "/v2/models/{model}/versions/{version}"


@dataclass(frozen=True)
class Route:
    """One endpoint: ``GET``/``POST`` on ``template`` (``{model}`` and ``{version}`` are one path
    segment each), answered by the handler named ``endpoint``."""

    method: str
    template: str
    endpoint: str

    @property
    def pattern(self) -> re.Pattern:
        regex = re.escape(self.template).replace(r"\{model\}", "(?P<model>[^/]+)")
        return re.compile("^" + regex.replace(r"\{version\}", "(?P<version>[^/]+)") + "$")


def _model_routes(method: str, suffix: str, endpoint: str) -> list[Route]:
    return [Route(method, base + suffix, endpoint) for base in (_MODEL, _MODEL_VERSION)]


#: Every endpoint, in matching order: inference first, since it is nearly all of the traffic.
ROUTES: list[Route] = [
    *_model_routes("POST", "/infer", "infer"),
    Route("GET", "/v2/health/live", "live"),
    Route("GET", "/v2/health/ready", "ready"),
    Route("GET", "/v2", "server_metadata"),
    Route("GET", "/v2/models/stats", "all_stats"),
    Route("POST", "/v2/repository/index", "repository_index"),
    Route("GET", "/v2/trace/setting", "trace_settings"),
    Route("POST", "/v2/trace/setting", "update_trace_settings"),
    Route("GET", "/metrics", "metrics"),
    *_model_routes("GET", "", "model_metadata"),
    *_model_routes("GET", "/ready", "model_ready"),
    *_model_routes("GET", "/config", "model_config"),
    *_model_routes("GET", "/stats", "model_stats"),
    Route("GET", _MODEL + "/trace/setting", "trace_settings"),
    Route("POST", _MODEL + "/trace/setting", "update_trace_settings"),
]


def _json(obj, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type=_JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _status(ok: bool) -> web.Response:
    return web.Response(status=200 if ok else 400)


#: An endpoint: ``(request, path arguments) -> response``, or an awaitable of one (inference).
Endpoint = Callable[[web.BaseRequest, dict], "web.StreamResponse | Awaitable[web.StreamResponse]"]


def make_handler(server, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> Callable[[web.BaseRequest],
                                                                                Awaitable[web.StreamResponse]]:
    """The request handler serving ``server`` (an :class:`~.server.InferenceServer`) for aiohttp's
    low-level ``web.Server``: routes by :data:`ROUTES` and turns every error into ``{"error": ...}``."""

    async def infer(request, args):
        arrival = time.monotonic_ns()
        name, version = args["model"], args["version"]
        mv = server.model_version(name, version)
        trace = tracer.sample(mv.name, int(mv.version))
        if trace is None:
            return await run_inference(request, mv, version, arrival, None)
        trace.stamp("HTTP_RECV_START", arrival)
        try:
            response = await run_inference(request, mv, version, arrival, trace)
            # Written here rather than by aiohttp after we return, to time the send.
            trace.stamp("HTTP_SEND_START")
            await response.prepare(request)
            await response.write_eof()
            trace.stamp("HTTP_SEND_END")
            return response
        finally:
            trace.finish()

    async def run_inference(request, mv, version, arrival, trace):
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise PayloadTooLarge(f"request body is larger than the server's limit of {max_body_size} "
                                      "bytes") from None
            if trace is not None:
                trace.stamp("HTTP_RECV_END")
            header_length = parse_header_length(request.headers.get(HEADER_LENGTH), len(body))
            req = decode_infer_request(body, header_length, mv.name, version)
        except ServingError:
            mv.record_invalid(arrival)
            raise
        req.arrival_ns = arrival
        req.trace = trace
        if trace is not None:
            trace.request_id = req.id
        outputs = await mv.infer(req)
        payload, headers = encode_infer_response(mv.config, req, outputs, mv.version)
        return web.Response(body=payload, headers=headers)

    async def update_trace_settings(request, args):
        try:
            changes = json.loads(await request.read() or b"{}")
        except ValueError as exc:
            raise InvalidArgument(f"failed to parse the trace settings JSON: {exc}") from None
        return _json(server.update_trace_settings(changes, args.get("model")))

    def metrics(request, args):
        return web.Response(body=server.metrics_text().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    tracer = server.tracer
    endpoints: dict[str, Endpoint] = {
        "infer": infer,
        "update_trace_settings": update_trace_settings,
        "trace_settings": lambda request, args: _json(server.trace_settings(args.get("model"))),
        "metrics": metrics,
        "live": lambda request, args: _status(server.live),
        "ready": lambda request, args: _status(server.ready),
        "server_metadata": lambda request, args: _json(server.server_metadata()),
        "all_stats": lambda request, args: _json(server.model_statistics()),
        "repository_index": lambda request, args: _json(server.repository_index()),
        "model_metadata": lambda request, args: _json(server.model_metadata(args["model"], args["version"])),
        "model_ready": lambda request, args: _status(server.model_ready(args["model"], args["version"])),
        "model_config": lambda request, args: _json(
            server.model_config(args["model"], args["version"]).to_dict()),
        "model_stats": lambda request, args: _json(server.model_statistics(args["model"], args["version"])),
    }
    table = [(route.method, route.pattern, endpoints[route.endpoint]) for route in ROUTES]

    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        path, method = request.path, request.method
        allowed = []
        for route_method, pattern, endpoint in table:
            match = pattern.match(path)
            if match is None:
                continue
            if route_method != method:
                allowed.append(route_method)
                continue
            try:
                args = match.groupdict()
                args.setdefault("version", "")
                response = endpoint(request, args)
                return response if isinstance(response, web.StreamResponse) else await response
            except ServingError as exc:
                return _error(exc.status, exc.message)
            except web.HTTPException as exc:
                return _error(exc.status, exc.reason or "HTTP error")
            except Exception as exc:   # a bug: answer it and keep serving
                log.exception("unhandled error on %s %s", method, path)
                return _error(500, f"internal server error: {type(exc).__name__}: {exc}")
        if allowed:
            response = _error(405, f"method {method} is not allowed on {path}")
            response.headers["Allow"] = ", ".join(sorted(set(allowed)))
            return response
        return _error(404, f"not found: {method} {path}")

    return handle


async def start_http(server, host: str = "127.0.0.1", port: int = 8000,
                     max_body_size: int = DEFAULT_MAX_BODY_SIZE):
    """Listen on ``host:port`` (0 = a free port); returns ``(runner, bound port)``."""
    loop = asyncio.get_running_loop()

    def make_request(message, payload, protocol, writer, task) -> web.BaseRequest:
        # What web.Application does to enforce its client_max_size (default 1 MiB otherwise).
        return web.BaseRequest(message, payload, protocol, writer, task, loop, client_max_size=max_body_size)

    web_server = web.Server(make_handler(server, max_body_size), request_factory=make_request, access_log=None)
    runner = web.ServerRunner(web_server, handle_signals=False, shutdown_timeout=60.0)
    await runner.setup()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this on Linux; aiohttp sets it again on every connection.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        await runner.cleanup()
        raise
    site = web.SockSite(runner, sock)
    await site.start()
    return runner, sock.getsockname()[1]


async def stop_http(runner) -> None:
    """Stop listening, let the handlers of accepted requests finish, close the connections."""
    await runner.cleanup()
