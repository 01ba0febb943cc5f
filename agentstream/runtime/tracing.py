"""OpenTelemetry traces: off unless the standard ``OTEL_*`` variables ask for them.

A run is one trace: the gateway's ``POST /api/messages`` span is its root, Temporal's
``TracingInterceptor`` carries it through the workflow to the worker's activities, the worker's
call to the agent and the agent's chunk posts carry it as a W3C ``traceparent`` header, and the
agent's tools, SQL queries and the bridge's publishes are spans in it.

Off (nothing set), no tracer provider is installed: OpenTelemetry's API answers with its no-op
tracer, Temporal gets no interceptor, and the hot paths (the bridge, the SSE streams) check
:func:`enabled`, one module global, before doing any tracing work at all. On, spans are batched
(``OTEL_BSP_*``) and exported as OTLP over HTTP/protobuf (``OTEL_EXPORTER_OTLP_*``), or printed
(``console``); the SDK reads those variables itself.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import msgspec
from opentelemetry import trace
from opentelemetry.context import Context, get_current
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from agentstream.runtime.settings import ConfigError, Flag, read_env

_EXPORTERS = frozenset({"otlp", "console"})
_PROTOCOL = "http/protobuf"


class TracingSettings(msgspec.Struct, frozen=True, kw_only=True):
    """The ``OTEL_*`` variables that decide whether and where spans go.

    The rest (``OTEL_EXPORTER_OTLP_HEADERS``, ``OTEL_BSP_SCHEDULE_DELAY``,
    ``OTEL_RESOURCE_ATTRIBUTES``, …) the SDK reads itself.
    """

    # Comma-separated: ``otlp``, ``console``, ``none``. Unset means ``otlp`` if an OTLP endpoint
    # is set, else no tracing (the OpenTelemetry default would export to localhost:4318).
    exporter: str = msgspec.field(default="", name="OTEL_TRACES_EXPORTER")
    endpoint: str = msgspec.field(default="", name="OTEL_EXPORTER_OTLP_ENDPOINT")
    traces_endpoint: str = msgspec.field(default="", name="OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    protocol: str = msgspec.field(default=_PROTOCOL, name="OTEL_EXPORTER_OTLP_PROTOCOL")
    traces_protocol: str = msgspec.field(default="", name="OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
    sdk_disabled: Flag = msgspec.field(default=False, name="OTEL_SDK_DISABLED")
    service_name: str = msgspec.field(default="", name="OTEL_SERVICE_NAME")

    def exporters(self) -> list[str]:
        """The exporters to install; empty when tracing is off."""
        if self.sdk_disabled:
            return []
        if self.exporter:
            names = [name.strip().lower() for name in self.exporter.split(",") if name.strip()]
        else:
            names = ["otlp"] if self.endpoint or self.traces_endpoint else []
        unknown = sorted(set(names) - _EXPORTERS - {"none"})
        if unknown:
            raise ConfigError(
                f"OTEL_TRACES_EXPORTER: unsupported exporter {', '.join(unknown)}; "
                "use otlp, console or none"
            )
        chosen = [name for name in names if name in _EXPORTERS]
        protocol = (self.traces_protocol or self.protocol).strip().lower()
        if "otlp" in chosen and protocol != _PROTOCOL:
            raise ConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL: only {_PROTOCOL} is supported, got {protocol!r}"
            )
        return list(dict.fromkeys(chosen))


_enabled = False
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER_NAME = "agentstream"


def configure(service: str, environ: Mapping[str, str] | None = None) -> bool:
    """Install a tracer provider for ``service`` if the environment asks for traces.

    ``service`` names the process (``agentstream-gateway``, …) unless ``OTEL_SERVICE_NAME``
    does. Returns whether tracing is on; raises :class:`ConfigError` for a malformed setting.
    Call once per process, before its clients connect.
    """
    global _enabled
    settings = read_env(TracingSettings, environ)
    exporters = settings.exporters()
    if not exporters:
        return False
    # Imported only when on: the gateway and the worker never load the SDK without tracing (the
    # agent does, through langsmith, which installs no provider with it).
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: settings.service_name or service})
    )
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        else:
            exporter = ConsoleSpanExporter()
        provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    _enabled = True
    return True


def shutdown() -> None:
    """Export the spans still batched; for a process about to exit (a no-op when off)."""
    if not _enabled:
        return
    provider = trace.get_tracer_provider()
    stop = getattr(provider, "shutdown", None)
    if stop is not None:
        stop()


def enabled() -> bool:
    """Whether this process records spans: the hot paths' one check."""
    return _enabled


def temporal_interceptors() -> list[Any]:
    """Temporal client interceptors: the tracing one when on, which workers inherit."""
    if not _enabled:
        return []
    from temporalio.contrib.opentelemetry import TracingInterceptor

    return [TracingInterceptor(trace.get_tracer(_TRACER_NAME))]


def current_trace_id() -> str | None:
    """The current span's trace ID (32 hex digits), or None when no span is recording."""
    if not _enabled:
        return None
    context = trace.get_current_span().get_span_context()
    return trace.format_trace_id(context.trace_id) if context.is_valid else None


def inject(headers: dict[str, str]) -> None:
    """Add the current span's ``traceparent`` (and ``tracestate``) to outgoing ``headers``."""
    if _enabled:
        _PROPAGATOR.inject(headers)


def caller(traceparent: str | None, tracestate: str | None = None) -> Context | None:
    """Whoever called, as a span context: the request span a framework made for the call, if
    one is current (FastAPI traces its requests itself when a tracer provider is installed),
    else the caller's W3C headers. None when neither names a span, or tracing is off."""
    if not _enabled:
        return None
    if trace.get_current_span().get_span_context().is_valid:
        return get_current()
    if not traceparent:
        return None
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    context = _PROPAGATOR.extract(carrier)
    return context if trace.get_current_span(context).get_span_context().is_valid else None


@contextlib.contextmanager
def span(
    name: str,
    *,
    kind: SpanKind = SpanKind.INTERNAL,
    parent: Context | None = None,
    new_trace: bool = False,
    links: Sequence[Context] = (),
    attributes: Mapping[str, str | int | float | bool] | None = None,
) -> Iterator[Span]:
    """A span around the block, current inside it; the no-op span when tracing is off.

    ``parent`` continues a caller's trace (:func:`caller`); ``new_trace`` starts a trace
    of its own whatever is current, linked to ``links`` (e.g. the caller's span).
    An exception leaving the block marks the span failed.
    """
    if not _enabled:
        yield trace.INVALID_SPAN
        return
    tracer = trace.get_tracer(_TRACER_NAME)
    linked = [Link(trace.get_current_span(context).get_span_context()) for context in links]
    with tracer.start_as_current_span(
        name,
        context=Context() if new_trace else parent,
        kind=kind,
        links=linked,
        attributes=dict(attributes or {}),
    ) as current:
        yield current


def mark_failed(description: str) -> None:
    """Mark the current span failed (a refused request, a failed tool call)."""
    if _enabled:
        trace.get_current_span().set_status(StatusCode.ERROR, description)


def annotate(attributes: Mapping[str, str | int | float | bool]) -> None:
    """Set ``attributes`` on the current span (nothing when tracing is off)."""
    if _enabled:
        trace.get_current_span().set_attributes(dict(attributes))
