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
``/metrics``                          GET   Prometheus metrics (:mod:`.metrics`)
====================================  ====  ======================================================

Errors are ``{"error": "<message>"}`` with the status of :mod:`.errors`: 400 for a request that does
not fit (malformed JSON, missing fields, wrong datatype or shape, a bad binary header, a batch over
``max_batch_size``), 404 for an unknown model, version or path, 413 for a body over
``max_body_size`` (default 64 MiB, Triton's), 503 for a model not ready, a full queue or a queue
timeout, 500 if a model raised. A bad request never reaches a model and never affects other requests.

Why aiohttp: a maintained asyncio server whose HTTP parser is in C, with keep-alive and request
decompression. Its connections set ``TCP_NODELAY`` when they open (``aiohttp.tcp_helpers``), which
matters: with Nagle's algorithm on, a response written in two segments waits for the client's
delayed ACK, about 40 ms on Linux, and a server doing 10k requests/s would do 25.
"""

from __future__ import annotations

import json
import logging
import socket
import time

from aiohttp import web

from .errors import PayloadTooLarge, ServingError
from .protocol import HEADER_LENGTH, decode_infer_request, encode_infer_response, parse_header_length

__all__ = ["make_app", "start_http", "stop_http", "DEFAULT_MAX_BODY_SIZE"]

log = logging.getLogger("mlsys_lab.serving.http")

#: Triton's default for --http-max-input-size.
DEFAULT_MAX_BODY_SIZE = 64 * 1024 * 1024

_SERVER_KEY = web.AppKey("server", object)
_MAX_BODY_KEY = web.AppKey("max_body_size", int)
_JSON = "application/json"


def _json(obj, status: int = 200) -> web.Response:
    return web.Response(body=json.dumps(obj, separators=(",", ":")).encode(), status=status, content_type=_JSON)


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message}, status)


def _version(request: web.Request) -> str:
    return request.match_info.get("version", "")


@web.middleware
async def _errors(request: web.Request, handler):
    try:
        return await handler(request)
    except ServingError as exc:
        return _error(exc.status, exc.message)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404:
            return _error(404, f"not found: {request.method} {request.path}")
        if exc.status == 405:
            return _error(405, f"method {request.method} is not allowed on {request.path}")
        if exc.status == 413:
            limit = request.app[_MAX_BODY_KEY]
            return _error(413, f"request body is larger than the server's limit of {limit} bytes")
        return _error(exc.status, exc.reason or "HTTP error")
    except Exception as exc:   # a bug: answer it and keep serving
        log.exception("unhandled error on %s %s", request.method, request.path)
        return _error(500, f"internal server error: {type(exc).__name__}: {exc}")


def make_app(server, max_body_size: int = DEFAULT_MAX_BODY_SIZE) -> web.Application:
    """The aiohttp application serving ``server`` (an :class:`~.server.InferenceServer`)."""
    app = web.Application(middlewares=[_errors], client_max_size=max_body_size)
    app[_SERVER_KEY] = server
    app[_MAX_BODY_KEY] = max_body_size

    async def live(request):
        return web.Response(status=200 if server.live else 400)

    async def ready(request):
        return web.Response(status=200 if server.ready else 400)

    async def metadata(request):
        return _json(server.server_metadata())

    async def model_metadata(request):
        return _json(server.model_metadata(request.match_info["model"], _version(request)))

    async def model_ready(request):
        ok = server.model_ready(request.match_info["model"], _version(request))
        return web.Response(status=200 if ok else 400)

    async def model_config(request):
        return _json(server.model_config(request.match_info["model"], _version(request)).to_dict())

    async def model_stats(request):
        return _json(server.model_statistics(request.match_info["model"], _version(request)))

    async def all_stats(request):
        return _json(server.model_statistics())

    async def repository_index(request):
        return _json(server.repository_index())

    async def metrics(request):
        return web.Response(body=server.metrics_text().encode(),
                            headers={"Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def infer(request: web.Request):
        arrival = time.monotonic_ns()
        name, version = request.match_info["model"], _version(request)
        mv = server.model_version(name, version)
        try:
            try:
                body = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise PayloadTooLarge(f"request body is larger than the server's limit of {max_body_size} "
                                      "bytes") from None
            header_length = parse_header_length(request.headers.get(HEADER_LENGTH), len(body))
            req = decode_infer_request(body, header_length, name, version)
        except ServingError:
            mv.record_invalid(arrival)
            raise
        req.arrival_ns = arrival
        outputs = await mv.infer(req)
        payload, headers = encode_infer_response(mv.config, req, outputs, mv.version)
        return web.Response(body=payload, headers=headers)

    r = app.router
    r.add_get("/v2/health/live", live)
    r.add_get("/v2/health/ready", ready)
    r.add_get("/v2", metadata)
    r.add_get("/v2/models/stats", all_stats)
    r.add_post("/v2/repository/index", repository_index)
    r.add_get("/metrics", metrics)
    for base in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}"):
        r.add_get(base, model_metadata)
        r.add_get(base + "/ready", model_ready)
        r.add_get(base + "/config", model_config)
        r.add_get(base + "/stats", model_stats)
        r.add_post(base + "/infer", infer)
    return app


async def start_http(server, host: str = "127.0.0.1", port: int = 8000,
                     max_body_size: int = DEFAULT_MAX_BODY_SIZE):
    """Listen on ``host:port`` (0 = a free port); returns ``(runner, bound port)``."""
    runner = web.AppRunner(make_app(server, max_body_size), access_log=None, handle_signals=False,
                           shutdown_timeout=60.0)
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
