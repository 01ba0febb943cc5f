"""Bad input gets a JSON 4xx naming the problem: never a 500, a hang or a stored event."""

from __future__ import annotations

import time

import httpx
import pytest

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.tokens import TokenClaims, mint_token
from tests.e2e.runs import read_whole_run, start_run


def assert_json_error(response: httpx.Response, status: int) -> dict[str, str]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] and isinstance(body["detail"], str)
    return body


@pytest.mark.parametrize(
    ("body", "status", "names"),
    [
        (b'{"message": ""}', 400, "message"),
        (b'{"message": "' + b"x" * 32_001 + b'"}', 400, "message"),
        (b'{"message": "' + b"x" * 1_100_000 + b'"}', 413, "larger"),
        (b'{"message": "hi"', 400, "malformed"),
        (b"", 400, "empty"),
        (b"[1, 2]", 400, "object"),
        (b'{"message": 5}', 400, "str"),
        (b'{"message": "hi", "org": "a.b"}', 400, "org"),
        (b'{"message": "hi", "surprise": 1}', 400, "surprise"),
    ],
)
async def test_post_message_refuses_bad_bodies(
    stack: LocalStack, http: httpx.AsyncClient, body: bytes, status: int, names: str
) -> None:
    response = await http.post(
        f"{stack.gateway_urls[0]}/api/messages",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    error = assert_json_error(response, status)
    assert names in error["detail"]


@pytest.mark.parametrize("run", ["a.b", "x*", "a>b", "r" * 65, "has space"])
async def test_run_ids_outside_the_subject_alphabet_are_refused(
    stack: LocalStack, http: httpx.AsyncClient, run: str
) -> None:
    gateway = stack.gateway_urls[0]
    for response in (
        await http.get(f"{gateway}/api/stream/{run}"),
        await http.get(f"{gateway}/api/stream", params={"workflow_id": run}),
        await http.get(f"{gateway}/api/runs/{run}"),
        await http.post(f"{gateway}/api/runs/{run}/cancel"),
        await http.post(f"{gateway}/api/stream/{run}/chunk", content=b"{}"),
    ):
        assert_json_error(response, 400)


async def test_unknown_runs_are_404(stack: LocalStack, http: httpx.AsyncClient) -> None:
    gateway = stack.gateway_urls[1]
    unknown = "run_does_not_exist"
    assert_json_error(await http.get(f"{gateway}/api/stream/{unknown}"), 404)
    assert_json_error(await http.get(f"{gateway}/api/runs/{unknown}"), 404)
    assert_json_error(await http.post(f"{gateway}/api/runs/{unknown}/cancel"), 404)
    assert_json_error(await http.get(f"{gateway}/api/nowhere"), 404)


async def test_bad_last_event_id_is_refused(stack: LocalStack, http: httpx.AsyncClient) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "hello")
    for bad in ("abc", "-1", "1e3", "9" * 30):
        response = await http.get(f"{gateway}/api/stream/{run}", headers={"Last-Event-ID": bad})
        assert_json_error(response, 400)
    await read_whole_run(http, gateway, run)


def callback_token(stack: LocalStack, run: str, *, attempt: int = 1, ttl: int = 60) -> str:
    claims = TokenClaims(
        kind="callback", run=run, org="default", attempt=attempt, exp=int(time.time()) + ttl
    )
    return mint_token(stack.callback_secret, claims)


async def test_bridge_refuses_bad_tokens_and_bad_events(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "bridge checks")
    url = f"{gateway}/api/stream/{run}/chunk"
    event = b'{"type": "token", "run": "%s", "text": "injected"}' % run.encode()

    missing = assert_json_error(await http.post(url, content=event), 401)
    assert missing["detail"] == "callback token required: Authorization: Bearer <token>"
    basic = {"Authorization": "Basic eA=="}
    malformed = assert_json_error(await http.post(url, content=event, headers=basic), 401)
    assert malformed["detail"] == "Authorization must be: Bearer <token>"
    forged = callback_token(stack, run)[:-4] + "AAAA"
    assert_json_error(await http.post(url, content=event, headers=_bearer(forged)), 401)
    other = callback_token(stack, "run_someone_else")
    assert_json_error(await http.post(url, content=event, headers=_bearer(other)), 401)
    expired = callback_token(stack, run, ttl=-10)
    assert_json_error(await http.post(url, content=event, headers=_bearer(expired)), 401)

    token = _bearer(callback_token(stack, run))
    bad_bodies = (b"", b"{", b'{"type": "nope", "run": "x"}', b'{"type": "token"}')
    for body in (*bad_bodies, b"[]" + b" " * 2_000_000):
        status = 413 if len(body) > 1_048_576 else 400
        assert_json_error(await http.post(url, content=body, headers=token), status)
    # The scheme in any case: the token is accepted, and the body is what gets refused.
    lower = {"Authorization": token["Authorization"].replace("Bearer", "bearer")}
    assert_json_error(await http.post(url, content=b"{", headers=lower), 400)
    wrong_run = b'{"type": "token", "run": "run_other", "text": "x"}'
    assert_json_error(await http.post(url, content=wrong_run, headers=token), 400)
    too_many = b"[" + b",".join([event] * 501) + b"]"
    assert_json_error(await http.post(url, content=too_many, headers=token), 413)

    messages = await read_whole_run(http, gateway, run)
    texts = [m.json().get("text") for m in messages if m.event == "token"]
    assert "injected" not in texts, "nothing refused was stored"


async def test_agent_service_refuses_bad_bodies(stack: LocalStack, http: httpx.AsyncClient) -> None:
    url = f"{stack.agent_url}/ai/agent"
    assert_json_error(await http.post(url, content=b"{"), 400)
    assert_json_error(await http.post(url, content=b'{"run": "x"}'), 400)
    assert_json_error(await http.post(f"{stack.agent_url}/ai/agent/a.b/cancel"), 400)
    assert_json_error(await http.post(f"{stack.agent_url}/ai/agent/run_idle/cancel"), 404)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
