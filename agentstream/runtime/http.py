"""HTTP conventions shared by the gateway and the agent service.

One error base class, mapped to ``{"error": ..., "detail": ...}`` in one place; request bodies
read with a hard size bound before anything decodes them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, TypeVar

import msgspec
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from agentstream.runtime.metrics import LIMIT_HITS, LIMIT_HITS_HELP, Metrics
from schemas import ErrorBody, InvalidIdError, encode

log = logging.getLogger(__name__)

T = TypeVar("T")


class ServiceError(Exception):
    """An error with an HTTP status and a stable machine-readable code."""

    status = 500
    code = "internal_error"

    def __init__(
        self, detail: str = "", *, headers: dict[str, str] | None = None, limit: str | None = None
    ) -> None:
        super().__init__(detail or self.code)
        self.detail = detail
        self.headers = headers
        # Which configured limit refused the request, if any: counted as a metric.
        self.limit = limit

    def body(self) -> ErrorBody:
        """The JSON body answering it."""
        return ErrorBody(error=self.code, detail=self.detail)


class BadRequest(ServiceError):
    status = 400
    code = "bad_request"


class Unauthorized(ServiceError):
    status = 401
    code = "unauthorized"


class Forbidden(ServiceError):
    status = 403
    code = "forbidden"


class NotFound(ServiceError):
    status = 404
    code = "not_found"


class Conflict(ServiceError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ServiceError):
    status = 413
    code = "payload_too_large"


class BadGateway(ServiceError):
    status = 502
    code = "bad_gateway"


class TooManyRequests(ServiceError):
    status = 429
    code = "too_many_requests"


class Unavailable(ServiceError):
    status = 503
    code = "unavailable"


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a ``Retry-After`` header in its delta-seconds form; None if absent or a date."""
    if value is None or not value.strip().isascii() or not value.strip().isdigit():
        return None
    return float(value.strip())


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response encoded by msgspec."""
    return Response(
        encode(value), status_code=status, media_type="application/json", headers=headers
    )


def error_response(
    status: int, error: str, detail: str = "", headers: dict[str, str] | None = None
) -> Response:
    """The one JSON shape of every error."""
    return json_response(ErrorBody(error=error, detail=detail), status, headers)


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes without reading them all."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest("content-length is not a number")
        if int(declared) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", limit="body_size")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise PayloadTooLarge(f"body larger than {limit} bytes", limit="body_size")
    return bytes(body)


def decode_body(body: bytes, type_: type[T]) -> T:
    """Decode and validate a JSON body; any problem is a 400 naming it."""
    return decode_body_with(body, lambda data: msgspec.json.decode(data, type=type_))


def decode_body_with(body: bytes, decode: Callable[[bytes], T]) -> T:
    """Decode a JSON body with ``decode`` (a prebuilt decoder); any problem is a 400."""
    if not body:
        raise BadRequest("empty body, expected JSON")
    try:
        return decode(body)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"invalid body: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise BadRequest("malformed JSON: nested too deeply") from None


def install_error_handlers(app: FastAPI, metrics: Metrics | None = None) -> None:
    """Map every error a request can raise to the JSON error shape, never an HTML page."""

    async def on_service_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, ServiceError)
        if exc.limit is not None and metrics is not None:
            metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit=exc.limit)
        return json_response(exc.body(), exc.status, exc.headers)

    async def on_http_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, str(exc.detail), headers)

    async def on_validation_error(_: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err.get('loc', ()))}: {err.get('msg', '')}"
            for err in exc.errors()
        )
        return error_response(400, "bad_request", problems)

    async def on_invalid_id(_: Request, exc: Exception) -> Response:
        return error_response(400, "bad_request", str(exc))

    async def on_unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unhandled error", exc_info=exc)
        return error_response(500, "internal_error")

    app.add_exception_handler(ServiceError, on_service_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(InvalidIdError, on_invalid_id)
    app.add_exception_handler(Exception, on_unexpected)
