"""Conversations on the whole stack: one org's, one run at a time, indexed in order."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import asyncpg
import httpx
import nats

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.conversation_index import latest_run, runs_of
from tests.e2e.runs import assert_complete, read_whole_run, start_run
from tests.fakes.openai_server import SQL_ANSWER_PREFIX, FakeOpenAIServer, run_openai_server


def _fresh(name: str) -> str:
    """A conversation ID no earlier session used (the stack's database may outlive it)."""
    return f"{name}_{uuid.uuid4().hex[:12]}"


async def _post(
    http: httpx.AsyncClient, gateway: str, message: str, conversation: str, **extra: str
) -> httpx.Response:
    return await http.post(
        f"{gateway}/api/messages",
        json={"message": message, "conversation_id": conversation, **extra},
    )


async def test_a_message_while_the_previous_run_goes_is_refused_naming_it(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    first, second = stack.gateway_urls
    conversation = _fresh("conv_busy_e2e")
    run_1 = await start_run(http, first, "Count the words here", conversation_id=conversation)
    # On the other replica, while run 1 goes: refused, naming run 1.
    busy = await _post(http, second, "And now?", conversation)
    assert busy.status_code == 409, busy.text
    assert busy.json()["error"] == "conversation_busy"
    assert busy.json()["run_id"] == run_1
    assert_complete(await read_whole_run(http, first, run_1))
    # Once it ended, the conversation takes the next message.
    run_2 = await start_run(http, second, "And now?", conversation_id=conversation)
    assert_complete(await read_whole_run(http, second, run_2))
    nc = await nats.connect(stack.nats_url)
    try:
        assert [r.run for r in await runs_of(nc, "default", conversation, limit=10)] == [
            run_1,
            run_2,
        ]
        assert await latest_run(nc, "default", conversation) == run_2
    finally:
        await nc.close()


async def test_racing_messages_into_one_conversation_admit_one(
    stack: LocalStack, http: httpx.AsyncClient
) -> None:
    conversation = _fresh("conv_race_e2e")
    answers = await asyncio.gather(
        *(_post(http, stack.gateway_urls[n % 2], f"question {n}", conversation) for n in range(6))
    )
    admitted = [a for a in answers if a.status_code == 202]
    refused = [a for a in answers if a.status_code == 409]
    assert len(admitted) == 1 and len(refused) == 5, [a.text for a in answers]
    run = admitted[0].json()["workflow_id"]
    assert all(r.json()["error"] == "conversation_busy" for r in refused)
    assert_complete(await read_whole_run(http, stack.gateway_urls[0], run))


async def test_a_conversation_is_its_orgs_only(stack: LocalStack, http: httpx.AsyncClient) -> None:
    gateway = stack.gateway_urls[0]
    conversation = _fresh("conv_org_e2e")
    run = await start_run(http, gateway, "Mine", conversation_id=conversation)
    assert_complete(await read_whole_run(http, gateway, run))
    # The open local stack lets a caller name its org: another org may not join.
    other = await _post(http, gateway, "Theirs", conversation, org="other_org")
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "conversation_of_another_org"


async def _answer(http: httpx.AsyncClient, gateway: str, run: str) -> dict[str, Any]:
    messages = await read_whole_run(http, gateway, run)
    assert_complete(messages)
    assert messages[-1].event == "done", messages[-1].data
    result: dict[str, Any] = messages[-1].json()["result"]
    return result


async def _lowest_provinces(db: asyncpg.Connection) -> list[str]:
    rows = await db.fetch(
        "SELECT provinsi FROM koperasi.koperasi GROUP BY provinsi"
        " ORDER BY round(avg(modal_awal), 2) ASC LIMIT 5"
    )
    return [r["provinsi"] for r in rows]


async def test_a_follow_up_is_answered_from_the_first_turns_context_offline(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    gateway = stack.gateway_urls[0]
    conversation = _fresh("conv_history_offline")
    first = await start_run(http, gateway, FIRST_QUESTION_ID, conversation_id=conversation)
    answer_1 = await _answer(http, gateway, first)
    assert "ORDER BY nilai DESC LIMIT 5" in answer_1["sql_queries"][0]["sql"]
    # Not a question about the data on its own: only the first turn says what it is about.
    second = await start_run(http, gateway, FOLLOW_UP, conversation_id=conversation)
    answer_2 = await _answer(http, gateway, second)
    sql = answer_2["sql_queries"][0]["sql"]
    assert "avg(modal_awal)" in sql and "GROUP BY provinsi" in sql
    assert "ORDER BY nilai ASC LIMIT 5" in sql
    assert answer_2["final_answer"].startswith(
        "The 5 provinces with the lowest average starting capital:"
    )
    for province in await _lowest_provinces(db):
        assert province in answer_2["final_answer"]


FIRST_QUESTION_ID = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"
FOLLOW_UP = "and the five lowest?"
FIRST_SQL = (
    "SELECT provinsi, round(avg(modal_awal), 2) AS nilai FROM koperasi.koperasi"
    " GROUP BY provinsi ORDER BY nilai DESC LIMIT 5"
)
FIRST_QUESTION = f"Which provinces have the highest average starting capital?\nSQL: {FIRST_SQL}"


def _conversation_of(body: dict[str, Any]) -> list[tuple[str, str]]:
    """The request's messages as (role, text), the system prompt and this turn's tool steps
    left out."""
    seen = [(m["role"], m.get("content") or "") for m in body["messages"]]
    last_user = max(i for i, (role, _) in enumerate(seen) if role == "user")
    return [(role, text) for role, text in seen[: last_user + 1] if role != "system"]


def _check_history(body: dict[str, Any]) -> None:
    """The model stand-in's check of every request: the first question comes alone, the
    follow-up after the first turn, its answer carrying the SQL it ran."""
    turns = _conversation_of(body)
    if turns[-1] == ("user", FIRST_QUESTION):
        assert turns == [("user", FIRST_QUESTION)], f"no history for a first turn: {turns}"
        return
    assert turns[-1] == ("user", FOLLOW_UP), turns
    assert len(turns) == 3, f"one earlier turn expected: {turns}"
    assert turns[0] == ("user", FIRST_QUESTION)
    role, answer = turns[1]
    assert role == "assistant"
    assert answer.startswith(SQL_ANSWER_PREFIX), answer
    assert answer.endswith(f"SQL run for this answer:\n```sql\n{FIRST_SQL}\n```"), answer


async def test_a_follow_up_is_answered_from_the_first_turns_context_by_a_real_model_client(
    stack: LocalStack, http: httpx.AsyncClient, db: asyncpg.Connection
) -> None:
    fake = FakeOpenAIServer(check=_check_history)
    model = {"AGENT_MODEL": "openai:gpt-4o-mini", "OPENAI_API_KEY": "test-key"}
    conversation = _fresh("conv_history_openai")
    async with (
        run_openai_server(fake) as base_url,
        stack.dedicated_agent("history", env={**model, "OPENAI_BASE_URL": base_url}),
    ):
        gateway = stack.gateway_urls[1]
        first = await start_run(
            http, gateway, FIRST_QUESTION, conversation_id=conversation, org="history"
        )
        answer_1 = await _answer(http, gateway, first)
        second = await start_run(
            http, gateway, FOLLOW_UP, conversation_id=conversation, org="history"
        )
        answer_2 = await _answer(http, gateway, second)
    assert fake.failed_checks == []
    assert [q["sql"] for q in answer_1["sql_queries"]] == [FIRST_SQL]
    # The follow-up's query is the first turn's, turned round: taken from the history.
    assert [q["sql"] for q in answer_2["sql_queries"]] == [FIRST_SQL.replace(" DESC", " ASC")]
    follow_ups = [r for r in fake.requests if _conversation_of(r)[-1] == ("user", FOLLOW_UP)]
    assert len(follow_ups) == 2, "one call for the query, one for the answer"
    for province in await _lowest_provinces(db):
        assert province in answer_2["final_answer"]
