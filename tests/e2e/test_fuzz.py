"""Property-based fuzzing of both HTTP contracts with schemathesis, against the running stack.

Both services' published OpenAPI documents drive the generation: valid (positive) and invalid
(negative) requests for every operation, a bounded and reproducible number of each
(``derandomize``). Every answer is checked with schemathesis's own checks — no 5xx, the status
code and the content type declared for the operation, negative data refused — and against the
README's error contract (4xx bodies are JSON ``{"error", "detail"}``).

Operations that by design never end, or whose valid requests start real work, are bounded:

* the SSE streams (``GET /api/stream/{run}``, ``GET /api/stream``) are fuzzed only for an
  unknown run, whose stream is refused (404) before it could open; valid runs' streams are
  covered by the pipeline tests; a conversation's stream, which never ends, likewise only for
  an unknown conversation (``tests/e2e/test_conversation_stream.py`` covers real ones);
* ``POST /ai/agent`` gets invalid bodies only: a valid one runs a whole agent attempt;
* the frontend-protocol routes that start a run and stream it (``POST /api/ai-sdk/chat``,
  ``POST /api/ag-ui``) get invalid bodies only, and their run-keyed streams an unknown run;
  ``tests/e2e/test_protocol_clients.py`` drives their valid requests with the real clients;
* ``POST /api/messages`` gets at most :data:`MAX_MESSAGES` valid bodies, each a real workflow,
  terminated afterwards;
* the callback bridge is fuzzed without credentials, then with a valid callback token for one
  run, and once more with the generated events addressed to that run, so they are really
  validated and stored (the run's subject is purged afterwards).

Each campaign runs once per module (in a thread: schemathesis's client is blocking, and the
stack's processes are read by this event loop) and its outcomes feed two tests: no server errors,
and declared status codes, so a contract mismatch (reported, ``xfail``) never hides a 5xx.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import nats
import pytest
import requests
import schemathesis
import schemathesis.checks
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import Case, GenerationMode
from schemathesis.core.failures import FailureGroup
from temporalio.client import Client
from temporalio.service import RPCError

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.nats_contract import STREAM_NAME, run_subject
from agentstream.runtime.run_history import HistoryReader
from agentstream.runtime.temporal_codec import data_converter
from agentstream.runtime.tokens import TokenClaims, mint_token
from schemas import AgentRequest, is_valid_id

POSITIVE = GenerationMode.POSITIVE
NEGATIVE = GenerationMode.NEGATIVE
MAX_EXAMPLES = 25
# Every valid example of POST /api/messages starts a real ChatWorkflow.
MAX_MESSAGES = 10
REQUEST_TIMEOUT_S = 10.0

CHECKS = (
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
)
# Everything but the status code check: what must hold even where the declared codes are wrong.
SOUNDNESS = ("transport", "json_error_body", *(c for c in CHECKS if c != "status_code_conformance"))

# The run whose callback token the bridge campaigns use. It is not a Temporal workflow: the
# bridge only checks the token, the events and the run's last stored event.
CALLBACK_RUN = f"run_fuzz_bridge_{int(time.time())}"
UNKNOWN_RUN = "run_fuzz_unknown"
UNKNOWN_CONVERSATION = "conv_fuzz_unknown"


@dataclass(frozen=True, slots=True)
class Outcome:
    """One generated request and what the service answered."""

    mode: str
    status: int | None
    failures: dict[str, str]
    reproduce: str
    body: bytes = b""

    def describe(self, check: str) -> str:
        return (
            f"[{self.mode}] {self.status}: {self.failures[check][:600]}\n"
            f"    answer: {self.body[:300]!r}\n    reproduce: {self.reproduce[:800]}"
        )


@dataclass(frozen=True, slots=True)
class Plan:
    """A fuzzing campaign: one operation, how many examples of each mode, what it may answer."""

    service: str
    label: str
    modes: tuple[tuple[GenerationMode, int], ...]
    expected: frozenset[int]
    variant: str = ""


BOTH = ((POSITIVE, MAX_EXAMPLES), (NEGATIVE, MAX_EXAMPLES))
ONLY_VALID = ((POSITIVE, MAX_EXAMPLES),)
REFUSED_OR_UNKNOWN = frozenset({400, 404})
PLANS: dict[str, Plan] = {
    "gateway-messages": Plan(
        "gateway",
        "POST /api/messages",
        ((POSITIVE, MAX_MESSAGES), (NEGATIVE, MAX_EXAMPLES)),
        # 409: the fuzzer reuses an Idempotency-Key for another message, which is refused.
        frozenset({202, 400, 409}),
    ),
    "gateway-stream-unknown-run": Plan(
        "gateway", "GET /api/stream/{run}", BOTH, frozenset({400, 401, 404}), "unknown_run"
    ),
    "gateway-stream-query-unknown-run": Plan(
        "gateway", "GET /api/stream", BOTH, frozenset({400, 401, 404}), "unknown_run"
    ),
    "gateway-chunk-no-credentials": Plan(
        "gateway", "POST /api/stream/{run}/chunk", BOTH, frozenset({400, 401})
    ),
    "gateway-chunk-callback-token": Plan(
        "gateway", "POST /api/stream/{run}/chunk", BOTH, frozenset({200, 400, 413}), "callback"
    ),
    "gateway-chunk-own-events": Plan(
        "gateway",
        "POST /api/stream/{run}/chunk",
        ONLY_VALID,
        frozenset({200, 400, 413}),
        "own_events",
    ),
    "gateway-get-run": Plan("gateway", "GET /api/runs/{run}", BOTH, REFUSED_OR_UNKNOWN),
    "gateway-ai-sdk-chat-invalid-bodies": Plan(
        "gateway", "POST /api/ai-sdk/chat", ((NEGATIVE, MAX_EXAMPLES),), frozenset({400})
    ),
    # A generated chat ID names no conversation: nothing to resume; a generated token is no
    # conversation token.
    "gateway-ai-sdk-chat-reconnect": Plan(
        "gateway", "GET /api/ai-sdk/chat/{chat}/stream", BOTH, frozenset({204, 400, 401})
    ),
    "gateway-run-ui-stream-unknown-run": Plan(
        "gateway",
        "GET /api/runs/{run}/ui-stream",
        BOTH,
        frozenset({400, 401, 404}),
        "unknown_run",
    ),
    "gateway-ag-ui-invalid-bodies": Plan(
        "gateway", "POST /api/ag-ui", ((NEGATIVE, MAX_EXAMPLES),), frozenset({400})
    ),
    "gateway-run-ag-ui-unknown-run": Plan(
        "gateway", "GET /api/runs/{run}/ag-ui", BOTH, frozenset({400, 401, 404}), "unknown_run"
    ),
    "gateway-stream-token": Plan(
        "gateway", "POST /api/runs/{run}/stream-token", BOTH, REFUSED_OR_UNKNOWN
    ),
    "gateway-cancel-run": Plan("gateway", "POST /api/runs/{run}/cancel", BOTH, REFUSED_OR_UNKNOWN),
    "gateway-healthz": Plan("gateway", "GET /healthz", ONLY_VALID, frozenset({200})),
    # Generated conversation IDs name no conversation: unknown to every caller.
    "gateway-conversation": Plan(
        "gateway", "GET /api/conversations/{conversation}", BOTH, REFUSED_OR_UNKNOWN
    ),
    "gateway-conversation-stream-token": Plan(
        "gateway", "POST /api/conversations/{conversation}/stream-token", BOTH, REFUSED_OR_UNKNOWN
    ),
    "gateway-conversation-stream-unknown": Plan(
        "gateway",
        "GET /api/conversations/{conversation}/stream",
        BOTH,
        frozenset({400, 401, 404}),
        "unknown_conversation",
    ),
    "gateway-list-runs": Plan("gateway", "GET /api/runs", BOTH, REFUSED_OR_UNKNOWN),
    "agent-run-invalid-bodies": Plan(
        "agent", "POST /ai/agent", ((NEGATIVE, MAX_EXAMPLES),), frozenset({400}), "not_runnable"
    ),
    "agent-cancel": Plan("agent", "POST /ai/agent/{run}/cancel", BOTH, REFUSED_OR_UNKNOWN),
    "agent-runs": Plan("agent", "GET /ai/agent/runs", ONLY_VALID, frozenset({200})),
    "agent-healthz": Plan("agent", "GET /healthz", ONLY_VALID, frozenset({200})),
}


def _error_body_problem(status: int, headers: dict[str, list[str]], content: bytes) -> str:
    """The README's contract: every error is JSON ``{"error": "<code>", "detail": "<text>"}``."""
    if status < 400:
        return ""
    content_type = (headers.get("content-type") or [""])[0]
    if not content_type.startswith("application/json"):
        return f"error answered as {content_type!r}, not JSON"
    try:
        body = json.loads(content)
    except ValueError:
        return "error body is not JSON"
    if not (isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"]):
        return "error body has no 'error' code"
    if not isinstance(body.get("detail"), str):
        return "error body has no 'detail' text"
    return ""


def _own_events(case: Case) -> Case:
    """Address the generated events to the callback token's run and attempt."""

    def own(event: Any) -> Any:
        return {**event, "run": CALLBACK_RUN, "attempt": 1} if isinstance(event, dict) else event

    body = case.body
    case.body = [own(e) for e in body] if isinstance(body, list) else own(body)
    return case


def _would_run_an_attempt(case: Case) -> bool:
    """Whether the agent would accept ``case``'s body and run an agent attempt for it."""
    body = case.body
    try:
        raw = body if isinstance(body, bytes | str) else json.dumps(body)
        request = msgspec.json.decode(raw, type=AgentRequest)
    except (TypeError, ValueError, msgspec.DecodeError):
        return False
    return is_valid_id(request.run)


class Fuzzer:
    """One service's schema, fuzzed with blocking calls (run it in a thread)."""

    def __init__(self, spec: dict[str, Any], base_url: str) -> None:
        self.schema = schemathesis.openapi.from_dict(spec)
        self.schema.config.update(base_url=base_url, request_timeout=REQUEST_TIMEOUT_S)
        self.started_runs: list[str] = []

    def labels(self) -> set[str]:
        return {result.ok().label for result in self.schema.get_all_operations()}

    def fuzz(
        self,
        label: str,
        modes: tuple[tuple[GenerationMode, int], ...],
        *,
        path_parameters: dict[str, str] | None = None,
        query: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        keep: Callable[[Case], bool] | None = None,
        transform: Callable[[Case], Case] | None = None,
    ) -> list[Outcome]:
        operation = self.schema.find_operation_by_label(label)
        assert operation is not None, f"{label} is not in the schema"
        outcomes: list[Outcome] = []
        with requests.Session() as session:
            for mode, examples in modes:
                strategy = operation.as_strategy(
                    generation_mode=mode,
                    path_parameters=path_parameters,
                    query=query,
                    headers=headers,
                )
                if keep is not None:
                    strategy = strategy.filter(keep)
                if transform is not None:
                    strategy = strategy.map(transform)

                self._explore(
                    strategy,
                    examples,
                    lambda case, m=mode: outcomes.append(self._call(case, session, m)),
                )
        return outcomes

    @staticmethod
    def _explore(
        strategy: st.SearchStrategy[Case], examples: int, record: Callable[[Case], None]
    ) -> None:
        @settings(
            max_examples=examples,
            derandomize=True,
            database=None,
            deadline=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        @given(case=strategy)
        def explore(case: Case) -> None:
            record(case)

        explore()

    def _call(self, case: Case, session: requests.Session, mode: GenerationMode) -> Outcome:
        reproduce = case.as_curl_command()
        try:
            response = case.call(session=session)
        except requests.RequestException as exc:
            return Outcome(mode.value, None, {"transport": repr(exc)}, reproduce)
        failures: dict[str, str] = {}
        for name in CHECKS:
            try:
                case.validate_response(response, checks=[getattr(schemathesis.checks, name)])
            except FailureGroup as group:
                failures[name] = "; ".join(
                    f"{failure.title}: {failure.message}" for failure in group.exceptions
                )
        problem = _error_body_problem(response.status_code, response.headers, response.content)
        if problem:
            failures["json_error_body"] = problem
        if response.status_code == 202:
            # A started run, whatever the mode: it is terminated when the module ends.
            with contextlib.suppress(ValueError, AttributeError):
                self.started_runs.append(response.json()["workflow_id"])
        return Outcome(mode.value, response.status_code, failures, reproduce, response.content)


class Campaigns:
    """Runs each plan once, on demand, and cleans up what the plans started."""

    def __init__(self, stack: LocalStack, gateway: Fuzzer, agent: Fuzzer) -> None:
        self.stack = stack
        self.fuzzers = {"gateway": gateway, "agent": agent}
        self._outcomes: dict[str, list[Outcome]] = {}
        self._lock = asyncio.Lock()
        claims = TokenClaims(
            kind="callback",
            run=CALLBACK_RUN,
            org="default",
            attempt=1,
            exp=int(time.time()) + 3_600,
        )
        self.callback_token = mint_token(stack.callback_secret, claims)

    async def outcomes(self, plan_id: str) -> list[Outcome]:
        async with self._lock:
            if plan_id not in self._outcomes:
                self._outcomes[plan_id] = await asyncio.to_thread(self._run, PLANS[plan_id])
            return self._outcomes[plan_id]

    def _run(self, plan: Plan) -> list[Outcome]:
        fuzzer = self.fuzzers[plan.service]
        bearer = {"authorization": f"Bearer {self.callback_token}"}
        match plan.variant:
            case "":
                return fuzzer.fuzz(plan.label, plan.modes)
            case "unknown_run" if "{run}" in plan.label:
                return fuzzer.fuzz(plan.label, plan.modes, path_parameters={"run": UNKNOWN_RUN})
            case "unknown_run":
                return fuzzer.fuzz(plan.label, plan.modes, query={"workflow_id": UNKNOWN_RUN})
            case "unknown_conversation":
                return fuzzer.fuzz(
                    plan.label, plan.modes, path_parameters={"conversation": UNKNOWN_CONVERSATION}
                )
            case "callback":
                return fuzzer.fuzz(
                    plan.label, plan.modes, path_parameters={"run": CALLBACK_RUN}, headers=bearer
                )
            case "own_events":
                return fuzzer.fuzz(
                    plan.label,
                    plan.modes,
                    path_parameters={"run": CALLBACK_RUN},
                    headers=bearer,
                    transform=_own_events,
                )
            case "not_runnable":
                return fuzzer.fuzz(
                    plan.label, plan.modes, keep=lambda case: not _would_run_an_attempt(case)
                )
        raise AssertionError(f"unknown variant {plan.variant!r}")

    async def cleanup(self) -> None:
        started = self.fuzzers["gateway"].started_runs
        if started:
            temporal = await Client.connect(
                self.stack.temporal_address, data_converter=data_converter
            )
            for run in started:
                with contextlib.suppress(RPCError):  # already closed
                    await temporal.get_workflow_handle(run).terminate("fuzz test over")
        nc = await nats.connect(self.stack.nats_url)
        try:
            await nc.jetstream().purge_stream(
                STREAM_NAME, subject=run_subject("default", CALLBACK_RUN)
            )
        finally:
            await nc.close()


async def _fetch_spec(url: str) -> dict[str, Any]:
    async with httpx.AsyncClient(timeout=10.0) as client:
        response = await client.get(url)
    response.raise_for_status()
    spec: dict[str, Any] = response.json()
    return spec


@pytest.fixture(scope="module")
async def campaigns(stack: LocalStack) -> AsyncIterator[Campaigns]:
    gateway = stack.gateway_urls[0]
    gateway_spec = await _fetch_spec(f"{gateway}/openapi.json")
    agent_spec = await _fetch_spec(f"{stack.agent_url}/openapi.json")
    fuzz = Campaigns(stack, Fuzzer(gateway_spec, gateway), Fuzzer(agent_spec, stack.agent_url))
    try:
        yield fuzz
    finally:
        await fuzz.cleanup()


def test_every_operation_has_a_campaign(campaigns: Campaigns) -> None:
    for service, fuzzer in campaigns.fuzzers.items():
        planned = {plan.label for plan in PLANS.values() if plan.service == service}
        assert fuzzer.labels() == planned, (
            f"{service}: operations without a fuzzing plan (add one to PLANS): "
            f"{sorted(fuzzer.labels() - planned)}; plans for missing operations: "
            f"{sorted(planned - fuzzer.labels())}"
        )


def _failures(outcomes: list[Outcome], checks: tuple[str, ...]) -> list[str]:
    return [o.describe(check) for o in outcomes for check in checks if check in o.failures]


@pytest.mark.parametrize("plan_id", list(PLANS))
async def test_no_server_errors_and_sound_answers(campaigns: Campaigns, plan_id: str) -> None:
    """No 5xx or dropped connection; content type, schema, error shape and refusals right."""
    outcomes = await campaigns.outcomes(plan_id)
    assert outcomes, "the campaign sent requests"
    failures = _failures(outcomes, SOUNDNESS)
    assert not failures, f"{len(failures)} failures:\n" + "\n".join(failures[:10])


_STATUS_XFAILS: dict[str, pytest.MarkDecorator] = {}


@pytest.mark.parametrize("plan_id", list(PLANS))
async def test_every_answer_is_an_expected_one(campaigns: Campaigns, plan_id: str) -> None:
    """Random IDs name no run, invalid input is refused: nothing else (409, 429, 503) comes up."""
    outcomes = await campaigns.outcomes(plan_id)
    unexpected = [o for o in outcomes if o.status not in PLANS[plan_id].expected]
    assert not unexpected, "\n".join(
        f"[{o.mode}] {o.status}: {o.body[:300]!r}\n    reproduce: {o.reproduce[:800]}"
        for o in unexpected[:10]
    )


@pytest.mark.parametrize(
    "plan_id", [pytest.param(p, marks=_STATUS_XFAILS.get(p, ())) for p in PLANS]
)
async def test_status_codes_are_declared(campaigns: Campaigns, plan_id: str) -> None:
    outcomes = await campaigns.outcomes(plan_id)
    failures = _failures(outcomes, ("status_code_conformance",))
    assert not failures, f"{len(failures)} undeclared statuses:\n" + "\n".join(failures[:5])


async def test_generated_events_for_the_token_run_are_stored_exactly_when_accepted(
    campaigns: Campaigns,
) -> None:
    outcomes = await campaigns.outcomes("gateway-chunk-own-events")
    acknowledged = {i for o in outcomes if o.status == 200 for i in json.loads(o.body)["ids"]}
    assert acknowledged, "some generated events were valid and stored"
    assert {o.status for o in outcomes} <= {200, 400, 413}, "refused: worker-only or too large"
    nc = await nats.connect(campaigns.stack.nats_url)
    try:
        stored = [
            event.id async for event in HistoryReader(nc).read("default", CALLBACK_RUN, after=0)
        ]
    finally:
        await nc.close()
    assert set(stored) == acknowledged, "stored = acknowledged, nothing refused was stored"


# Targeted regressions for what fuzzing outside schemathesis's reach found. JSON nested deeper
# than the decoder's recursion limit, inside a value typed Any or an unknown field, used to be a
# RecursionError, hence a 500 (bridge with a valid token; POST /ai/agent with no credentials).

_DEEP = 10_000
_NESTED = b"[" * _DEEP + b"]" * _DEEP


@pytest.mark.parametrize(
    ("target", "body"),
    [
        pytest.param(
            "bridge",
            b'{"type": "tool_start", "run": "%s", "call_id": "c", "name": "n", "input": {"a": %s}}'
            % (CALLBACK_RUN.encode(), _NESTED),
            id="bridge-tool-input",
        ),
        pytest.param(
            "bridge",
            b'{"type": "token", "run": "%s", "text": "t", "extra": %s}'
            % (CALLBACK_RUN.encode(), _NESTED),
            id="bridge-unknown-field",
        ),
        pytest.param(
            "agent", b'{"run": "run_deep", "extra": %s}' % _NESTED, id="agent-unknown-field"
        ),
        pytest.param(
            "messages", b'{"message": "hi", "extra": %s}' % _NESTED, id="messages-unknown-field"
        ),
    ],
)
async def test_deeply_nested_json_is_a_400(
    campaigns: Campaigns, http: httpx.AsyncClient, target: str, body: bytes
) -> None:
    stack = campaigns.stack
    url, headers = {
        "bridge": (
            f"{stack.gateway_urls[0]}/api/stream/{CALLBACK_RUN}/chunk",
            {"Authorization": f"Bearer {campaigns.callback_token}"},
        ),
        "agent": (f"{stack.agent_url}/ai/agent", {}),
        "messages": (f"{stack.gateway_urls[0]}/api/messages", {}),
    }[target]
    response = await http.post(url, content=body, headers={**headers, **_JSON})
    assert response.status_code == 400, f"{response.status_code} {response.text}"
    assert response.json()["error"] == "bad_request"


@pytest.mark.parametrize(
    "where", ["header", "query", "query-route"], ids=["header", "query", "workflow_id-query"]
)
async def test_last_event_id_that_is_not_an_integer_is_a_400(
    stack: LocalStack, http: httpx.AsyncClient, where: str
) -> None:
    gateway = stack.gateway_urls[0]
    # The ID is checked before the run is looked up: this run need not (and does not) exist.
    if where == "header":
        request = http.build_request(
            "GET", f"{gateway}/api/stream/{UNKNOWN_RUN}", headers={"Last-Event-ID": b"\xb2"}
        )
    elif where == "query":
        request = http.build_request(
            "GET", f"{gateway}/api/stream/{UNKNOWN_RUN}", params={"last_event_id": "²"}
        )
    else:
        request = http.build_request(
            "GET",
            f"{gateway}/api/stream",
            params={"workflow_id": UNKNOWN_RUN, "last_event_id": "²"},
        )
    response = await http.send(request)
    assert response.status_code == 400, f"{response.status_code} {response.text}"


_JSON = {"Content-Type": "application/json"}
