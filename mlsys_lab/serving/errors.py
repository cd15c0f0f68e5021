"""Errors that the server turns into responses, with Triton's error codes and HTTP statuses.

Every failure the server reports is a :class:`ServingError` whose class says which Triton error code
(``TRITONSERVER_ERROR_*``) it is; the HTTP front end answers ``{"error": "<message>"}`` with the status
that Triton's HTTP server gives that code:

=====================  ==================  ======  =============================================
class                  Triton code         HTTP    used for
=====================  ==================  ======  =============================================
``InvalidArgument``    INVALID_ARG         400     a request that does not fit the model's config
``NotFound``           NOT_FOUND           404     an unknown model, version or route
``PayloadTooLarge``    (HTTP only)         413     a body over the server's size limit
``Unavailable``        UNAVAILABLE         503     a model not ready, a full queue, a queue timeout
``Unsupported``        UNSUPPORTED         501     a feature this server does not implement
``InternalError``      INTERNAL            500     a model that raised while executing
=====================  ==================  ======  =============================================
"""

from __future__ import annotations

__all__ = ["ServingError", "InvalidArgument", "NotFound", "PayloadTooLarge", "Unavailable",
           "Unsupported", "InternalError", "ConfigError"]


class ServingError(Exception):
    """Base class: ``status`` is the HTTP status, ``code`` Triton's name for the error."""

    status = 500
    code = "INTERNAL"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InvalidArgument(ServingError):
    status, code = 400, "INVALID_ARG"


class NotFound(ServingError):
    status, code = 404, "NOT_FOUND"


class PayloadTooLarge(ServingError):
    status, code = 413, "INVALID_ARG"


class Unavailable(ServingError):
    status, code = 503, "UNAVAILABLE"


class Unsupported(ServingError):
    status, code = 501, "UNSUPPORTED"


class InternalError(ServingError):
    status, code = 500, "INTERNAL"


class ConfigError(ServingError):
    """A model configuration (``config.pbtxt`` / ``config.json``) that cannot be used; names the file,
    the line where it can and the field."""

    status, code = 400, "INVALID_ARG"
