"""A loopback OTLP/HTTP trace receiver for tests: what a collector would get, decoded.

It accepts ``POST /v1/traces`` with protobuf bodies (``ExportTraceServiceRequest``, optionally
gzipped) and keeps every span with the ``service.name`` of the process that sent it. Tests wait
on :meth:`OtlpReceiver.wait_for` until what arrived satisfies them: each export wakes waiters.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

_MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class ReceivedSpan:
    """One exported span, IDs as lower-case hex (``parent_id`` empty for a root)."""

    service: str
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    attributes: dict[str, object] = field(default_factory=dict)
    # (trace ID, span ID) of every span this one links to.
    links: list[tuple[str, str]] = field(default_factory=list)


def _value(value: AnyValue) -> object:
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else None


def decode_export(body: bytes) -> list[ReceivedSpan]:
    """The spans of one ``ExportTraceServiceRequest``."""
    request = ExportTraceServiceRequest.FromString(body)
    spans: list[ReceivedSpan] = []
    for resource_spans in request.resource_spans:
        resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
        service = str(resource.get("service.name", ""))
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                spans.append(
                    ReceivedSpan(
                        service=service,
                        name=span.name,
                        trace_id=span.trace_id.hex(),
                        span_id=span.span_id.hex(),
                        parent_id=span.parent_span_id.hex(),
                        attributes={a.key: _value(a.value) for a in span.attributes},
                        links=[(link.trace_id.hex(), link.span_id.hex()) for link in span.links],
                    )
                )
    return spans


class OtlpReceiver:
    """Spans received so far, and waiters woken on each export."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spans: list[ReceivedSpan] = []
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []
        self.bad_requests = 0

    @property
    def spans(self) -> list[ReceivedSpan]:
        """A snapshot of every span received."""
        with self._lock:
            return list(self._spans)

    def add(self, spans: list[ReceivedSpan]) -> None:
        """Keep ``spans`` and wake every waiter (called from the server's threads)."""
        with self._lock:
            self._spans.extend(spans)
            waiters = list(self._waiters)
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # the waiter's loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait_for(
        self, ready: Callable[[list[ReceivedSpan]], bool], timeout_s: float
    ) -> list[ReceivedSpan]:
        """The spans received, once ``ready`` holds for them; TimeoutError after ``timeout_s``."""
        event = asyncio.Event()
        entry = (asyncio.get_running_loop(), event)
        with self._lock:
            self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    event.clear()
                    spans = self.spans
                    if ready(spans):
                        return spans
                    await event.wait()
        finally:
            with self._lock:
                self._waiters.remove(entry)


def _handler(receiver: OtlpReceiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(min(length, _MAX_BODY_BYTES))
            if self.path != "/v1/traces" or length > _MAX_BODY_BYTES:
                receiver.bad_requests += 1
                self._answer(404, b"")
                return
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            try:
                spans = decode_export(body)
            except Exception:
                receiver.bad_requests += 1
                self._answer(400, b"")
                return
            receiver.add(spans)
            self._answer(200, ExportTraceServiceResponse().SerializeToString())

        def _answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test's output is the assertions'."""

    return Handler


@contextlib.contextmanager
def otlp_receiver() -> Iterator[tuple[str, OtlpReceiver]]:
    """Serve a receiver on a free loopback port; yields its base URL (the
    ``OTEL_EXPORTER_OTLP_ENDPOINT`` to give exporters) and the receiver."""
    receiver = OtlpReceiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(receiver))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, name="otlp-receiver", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
