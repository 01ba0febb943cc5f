"""The whole path on real servers: message → Temporal → sandbox → agent → NATS → SSE → DB."""

from __future__ import annotations

import asyncpg
import httpx
import nats

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.nats_contract import Producer, publish_event
from schemas import Token
from tests.e2e.runs import assert_complete, read_whole_run, start_run


async def test_run_streams_every_step_in_order_and_stores_the_answer_once(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "Count the words in this message, please.")

    messages = await read_whole_run(http, gateway, run)

    assert_complete(messages)
    types = [m.event for m in messages]
    assert {"status", "token", "tool_start", "tool_end"} <= set(types)
    assert types[-1] == "done"
    stages = [m.json()["stage"] for m in messages if m.event == "status"]
    assert stages == [
        "queued",
        "sandbox_creating",
        "sandbox_ready",
        "waiting_for_agent",
        "agent_started",
        "saving",
    ]
    statuses = [m.json() for m in messages if m.event == "status"]
    started = next(s for s in statuses if s["stage"] == "agent_started")
    assert started["model"] == "offline-scripted"
    tool_starts = [m.json() for m in messages if m.event == "tool_start"]
    tool_ends = [m.json() for m in messages if m.event == "tool_end"]
    assert [t["name"] for t in tool_starts] == ["write_file", "run_command"]
    assert [t["call_id"] for t in tool_ends] == [t["call_id"] for t in tool_starts]
    assert "words: 7" in tool_ends[1]["output"], "the command really ran in the sandbox"
    result = messages[-1].json()["result"]
    assert "words: 7" in result["final_answer"]
    assert result["model"] == "offline-scripted"
    assert [c["name"] for c in result["tool_calls"]] == ["write_file", "run_command"]
    assert result["files"] == ["analysis.py"]
    streamed_text = "".join(m.json()["text"] for m in messages if m.event == "token")
    assert result["final_answer"] in streamed_text

    rows = await db.fetch("SELECT final_answer FROM messages WHERE run_id = $1", run)
    assert [r["final_answer"] for r in rows] == [result["final_answer"]]

    view = (await http.get(f"{gateway}/api/runs/{run}")).json()
    assert view["status"] == "completed"
    assert view["result"]["final_answer"] == result["final_answer"]
    assert not (stack.sandbox_root / run).exists(), "sandbox removed at run end"


async def test_replay_from_another_replica_matches_and_resumes_after_last_event_id(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    first, second = stack.gateway_urls
    run = await start_run(http, first, "Replay me")
    live = await read_whole_run(http, first, run)

    replay = await read_whole_run(http, second, run)
    assert [(m.id, m.event, m.data) for m in replay] == [(m.id, m.event, m.data) for m in live]

    cut = len(live) // 2
    resumed = await read_whole_run(http, second, run, last_event_id=live[cut].id)
    assert [(m.id, m.data) for m in resumed] == [(m.id, m.data) for m in live[cut + 1 :]]

    by_query = await http.get(
        f"{second}/api/stream", params={"workflow_id": run, "last_event_id": live[-2].id}
    )
    assert by_query.status_code == 200
    assert "event: done" in by_query.text and by_query.text.count("event:") == 1


async def test_the_gateway_serves_a_browser_client(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # What the page does in a browser is tests/e2e/test_page.py's; here, that it is served.
    page = await http.get(f"{stack.gateway_urls[0]}/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/static/page.js">' in page.text
    script = await http.get(f"{stack.gateway_urls[0]}/static/page.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert "new EventSource(" in script.text and '"/api/messages"' in script.text
    missing = await http.get(f"{stack.gateway_urls[0]}/static/..%2Fpage.py")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"


async def test_events_another_org_publishes_under_a_runs_id_never_reach_its_readers(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    # A rogue producer (say, another org's on-premises worker with NATS access) publishes into
    # the run's ID under its own org's subject: the run's readers must never see it.
    gateway = stack.gateway_urls[0]
    run = await start_run(http, gateway, "Is anyone else writing here?")
    nc = await nats.connect(stack.nats_url)
    try:
        rogue = Token(run=run, n=999, text="INJECTED by another org")
        await publish_event(nc, "rogue", rogue, producer=Producer.AGENT)
    finally:
        await nc.close()

    live = await read_whole_run(http, gateway, run)
    replay = await read_whole_run(http, stack.gateway_urls[1], run)
    for messages in (live, replay):
        assert messages[-1].event == "done"
        assert not any("INJECTED" in m.data for m in messages)
