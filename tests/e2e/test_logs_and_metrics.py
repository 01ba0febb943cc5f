"""Logs and metrics of a live stack: JSON lines naming their run, and the dashboard's metrics.

A stack of its own, every service with ``LOG_FORMAT=json`` and ``LOG_LEVEL=INFO`` (at the
gateway's and agent's default, WARNING, a healthy run logs nothing); one run through it, streamed
as a browser would.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.stacks import stack_fixture

DASHBOARD = Path(__file__).parents[2] / "deploy" / "grafana" / "agentstream.json"
_MAX_MESSAGE_CHARS = 2_000
# Metric names in PromQL: ours, and the process collector's.
_METRIC_NAME = re.compile(r"\b(?:agentstream|process)_[a-z0-9_]+\b")


# One gateway, an agent and a worker, all logging JSON lines at INFO.
json_stack = stack_fixture(
    "json-logs",
    replicas=1,
    token_delay_s="0.005",
    service_env={
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        "MAX_MESSAGE_CHARS": str(_MAX_MESSAGE_CHARS),
    },
)


@pytest.fixture(scope="module")
async def finished_run(json_stack: LocalStack) -> str:
    """A run streamed to its end from the moment it was accepted, and one refused message."""
    gateway = json_stack.gateway_urls[0]
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0, read=30.0)) as http:
        run = await start_run(http, gateway, "Count the words in this message, please.")
        assert_complete(await read_whole_run(http, gateway, run))
        refused = await http.post(
            f"{gateway}/api/messages", json={"message": "x" * (_MAX_MESSAGE_CHARS + 1)}
        )
        assert refused.status_code == 400, refused.text
    return run


def _json_lines(stack: LocalStack, service: str) -> list[dict[str, Any]]:
    """Every line the service wrote (stdout and stderr), each parsed as one JSON object."""
    text = stack.processes[service].log_path.read_text()
    parsed = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            parsed.append(json.loads(line))
        except ValueError:
            pytest.fail(f"{service}.log line {number} is not JSON: {line[:300]!r}")
        assert isinstance(parsed[-1], dict), line
    return parsed


async def test_every_metric_the_dashboard_names_is_served_and_the_histograms_have_samples(
    json_stack: LocalStack, finished_run: str
) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    expressions = [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if "expr" in target
    ]
    assert expressions, "the dashboard has PromQL panels"
    # Its variables' queries (the gateway jobs to pick from) name metrics too.
    expressions += [
        variable["query"]["query"]
        for variable in dashboard["templating"]["list"]
        if isinstance(variable.get("query"), dict)
    ]
    named: set[str] = set()
    for expression in expressions:
        names = set(_METRIC_NAME.findall(expression))
        assert names, f"no metric in {expression!r}"
        named |= names

    async with httpx.AsyncClient(timeout=10.0) as http:
        response = await http.get(f"{json_stack.gateway_urls[0]}/metrics")
    assert response.status_code == 200
    samples: dict[str, float] = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            name = series.split("{", 1)[0]
            samples[name] = samples.get(name, 0.0) + float(value)
    missing = sorted(named - set(samples))
    assert not missing, f"the dashboard names metrics /metrics does not serve: {missing}"

    # The run went through every measured step: each histogram has observations.
    for histogram in (
        "agentstream_bridge_publish_seconds",
        "agentstream_post_to_first_agent_event_seconds",
        "agentstream_delivery_lag_seconds",
        "agentstream_client_queue_wait_seconds",
    ):
        assert histogram in {h.removesuffix("_bucket") for h in named}, histogram
        assert samples[f"{histogram}_count"] >= 1, histogram
    assert samples["agentstream_limit_hits_total"] >= 1


@pytest.mark.parametrize("service", ["gateway-0", "worker", "agent"])
async def test_every_line_of_every_service_is_json_and_lines_about_a_run_name_it(
    json_stack: LocalStack, finished_run: str, service: str
) -> None:
    # Stopped first: everything it had to say is in its log (the stack stops it again, a no-op).
    await json_stack.processes[service].stop()
    lines = _json_lines(json_stack, service)
    assert lines, f"{service} logged nothing"
    for line in lines:
        assert {"ts", "level", "logger", "msg"} <= set(line), line
    tagged = [line for line in lines if line.get("run") == finished_run]
    assert tagged, f"{service} logged nothing for {finished_run}"
    # Lines whose message names the run were logged while working for it: each carries it.
    for line in lines:
        if finished_run in line["msg"]:
            assert line.get("run") == finished_run, line
    for line in tagged:
        assert line["org"] == "default", line
        if service != "gateway-0":
            # The worker and the agent always work for one attempt; the gateway's SSE stream
            # and POST serve every attempt of a run, its bridge posts one.
            assert line["attempt"] == 1, line
