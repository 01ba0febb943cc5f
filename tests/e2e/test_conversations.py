"""Conversations on the whole stack: one org's, one run at a time, indexed in order."""

from __future__ import annotations

import asyncio

import httpx
import nats

from agentstream.devstack.stack import LocalStack
from agentstream.runtime.conversation_index import latest_run, runs_of
from tests.e2e.runs import assert_complete, read_whole_run, start_run


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
    conversation = "conv_busy_e2e"
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
    conversation = "conv_race_e2e"
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
    conversation = "conv_org_e2e"
    run = await start_run(http, gateway, "Mine", conversation_id=conversation)
    assert_complete(await read_whole_run(http, gateway, run))
    # The open local stack lets a caller name its org: another org may not join.
    other = await _post(http, gateway, "Theirs", conversation, org="other_org")
    assert other.status_code == 409, other.text
    assert other.json()["error"] == "conversation_of_another_org"
