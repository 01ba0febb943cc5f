"""agentstream.runtime.tracing: which OTEL_* settings turn traces on, and that off costs nothing.

Only the off state is exercised in-process (a tracer provider, once installed, stays for the
process); tests/e2e/test_tracing.py runs the services with tracing on.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from opentelemetry import trace

from agentstream.runtime import tracing
from agentstream.runtime.settings import ConfigError, read_env
from agentstream.runtime.tracing import TracingSettings


@pytest.mark.parametrize(
    ("environ", "exporters"),
    [
        ({}, []),
        ({"OTEL_SERVICE_NAME": "x", "OTEL_BSP_SCHEDULE_DELAY": "100"}, []),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": " Console "}, ["console"]),
        ({"OTEL_TRACES_EXPORTER": "otlp,console,otlp"}, ["otlp", "console"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        # The protocol matters only to the OTLP exporter.
        ({"OTEL_TRACES_EXPORTER": "console", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, ["console"]),
    ],
)
def test_exporters_follow_the_standard_variables(
    environ: dict[str, str], exporters: list[str]
) -> None:
    assert read_env(TracingSettings, environ).exporters() == exporters


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            },
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        ({"OTEL_SDK_DISABLED": "maybe"}, "OTEL_SDK_DISABLED"),
    ],
)
def test_unusable_settings_are_refused_by_name(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        read_env(TracingSettings, environ).exporters()


def test_off_installs_nothing_and_every_helper_is_inert() -> None:
    assert tracing.configure("agentstream-test", {}) is False
    assert not tracing.enabled()
    assert tracing.temporal_interceptors() == []
    headers = {"Authorization": "Bearer t"}
    tracing.inject(headers)
    assert headers == {"Authorization": "Bearer t"}
    assert tracing.caller("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") is None
    with tracing.span("work", new_trace=True) as span:
        assert span is trace.INVALID_SPAN
        assert tracing.current_trace_id() is None
        tracing.annotate({"agentstream.run": "run_1"})
        tracing.mark_failed("nothing records it")
    # OpenTelemetry's own default: no SDK provider was installed by anything above.
    assert not hasattr(trace.get_tracer_provider(), "add_span_processor")
    tracing.shutdown()


def test_a_service_refuses_an_unusable_tracing_setting_at_start() -> None:
    environ = {
        **os.environ,
        "AGENTSTREAM_LOCAL_STACK": "1",
        "OTEL_TRACES_EXPORTER": "zipkin",
        # Were it to start anyway, it would reach nothing (never the system's NATS).
        "NATS_URL": "nats://127.0.0.1:1",
        "TEMPORAL_ADDRESS": "127.0.0.1:1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "agentstream", "gateway", "--port", "0"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "configuration error: OTEL_TRACES_EXPORTER: unsupported exporter zipkin" in done.stderr
