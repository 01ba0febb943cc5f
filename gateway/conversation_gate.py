"""Admitting a message into its conversation: the org's own, and one run at a time.

A conversation belongs to the org that first used its ID (``conversations.org`` in PostgreSQL,
claimed here when a client names one): another org's message naming it is refused with 409
``conversation_of_another_org``, and its reads (turns, stream) answer 404.

**One run at a time.** A message sent while the conversation's previous run is still going is
refused with 409 ``conversation_busy`` naming that run (``ConversationBusyBody.run_id``); the
client follows it, waits for its end or cancels it, then sends again. Queueing the message after
the running one instead would need a per-conversation queue that survives gateway restarts and
cancellations, and the next run's history must hold the previous run's answer, which exists
only once that run is saved: refusing keeps every run's history exact with no new moving part.
The check is race-free across replicas: the run's index record is stored on condition that the
conversation's newest record is the one the check saw (``conversation_index``), so of two
messages racing, one is admitted and the other's run is ended ``failed`` before anyone learnt
its ID, and it is answered 409 as well.
"""

from __future__ import annotations

import asyncio
from typing import NamedTuple

from agentstream.runtime import conversation_index
from agentstream.runtime.http import Conflict
from agentstream.runtime.message_store import ConversationOfAnotherOrg
from agentstream.runtime.nats_contract import LastSequenceMoved
from agentstream.runtime.terminal_publisher import publish_terminal
from gateway.state import GatewayState
from gateway.terminal_guard import publish_missing_terminal
from schemas import TERMINAL_EVENT_TYPES, ConversationBusyBody, ErrorBody, Failed

LOST_RACE_REASON = "another message of the conversation was accepted first"


class ConversationBusy(Conflict):
    """409: the conversation's previous run is still going."""

    code = "conversation_busy"

    def __init__(self, conversation: str, run: str) -> None:
        super().__init__(
            f"conversation {conversation} has run {run} still going: follow it, wait for its "
            "end or cancel it, then send the message again"
        )
        self.run_id = run

    def body(self) -> ErrorBody:
        """The error, with the running run's ID."""
        return ConversationBusyBody(error=self.code, detail=self.detail, run_id=self.run_id)


class ConversationTaken(Conflict):
    """409: the conversation ID is another org's."""

    code = "conversation_of_another_org"


class Admission(NamedTuple):
    """What :func:`record` needs from :func:`admit`."""

    # The sequence of the conversation's newest index record when admitted (0: none).
    expected_last: int
    # The run is already the conversation's newest (a retried keyed request).
    recorded: bool


async def admit(
    gw: GatewayState, org: str, conversation: str, run: str, *, named: bool
) -> Admission:
    """Check that ``run`` may join ``org``'s ``conversation``, before its ``queued`` event.

    ``named``: the client named the conversation; otherwise it is the run's own, new one, and
    nothing needs checking. Raises :class:`ConversationTaken` or :class:`ConversationBusy`.
    """
    if not named:
        return Admission(0, recorded=False)
    # Read meanwhile (one round trip less), used only once the claim succeeded.
    reading = asyncio.create_task(conversation_index.latest(gw.nc, org, conversation))
    try:
        await gw.store.claim_conversation(conversation, org)
    except BaseException as exc:
        reading.cancel()
        if isinstance(exc, ConversationOfAnotherOrg):
            raise ConversationTaken(
                f"conversation {conversation} belongs to another org: use another conversation_id"
            ) from None
        raise
    newest = await reading
    if newest is None:
        return Admission(0, recorded=False)
    if newest.run == run:
        return Admission(newest.seq, recorded=True)
    if not await _finished(gw, org, newest.run):
        raise ConversationBusy(conversation, newest.run)
    return Admission(newest.seq, recorded=False)


async def record(
    gw: GatewayState,
    org: str,
    conversation: str,
    run: str,
    prompt: str,
    admission: Admission,
    *,
    end_if_refused: bool,
) -> None:
    """Store ``run`` as the conversation's next run, once its ``queued`` event is stored.

    If another message got in since :func:`admit`, raises :class:`ConversationBusy`, having
    ended ``run`` (nobody has its ID yet) if ``end_if_refused``; a keyed run is left queued
    instead, for a retry of its request to admit it again.
    """
    if admission.recorded:
        return
    try:
        await conversation_index.record_run(
            gw.nc, org, conversation, run, prompt, expected_last=admission.expected_last
        )
        return
    except LastSequenceMoved:
        newest = await conversation_index.latest(gw.nc, org, conversation)
    if end_if_refused:
        await publish_terminal(gw.nc, gw.history, org, Failed(run=run, reason=LOST_RACE_REASON))
    raise ConversationBusy(conversation, newest.run if newest is not None else "")


async def _finished(gw: GatewayState, org: str, run: str) -> bool:
    """Whether ``run`` has ended: its terminal event is stored, or it is ended now because its
    workflow closed without one or never started (``gateway.terminal_guard``)."""
    last = await gw.history.last_event(org, run)
    if last is not None and last.type in TERMINAL_EVENT_TYPES:
        return True
    return await publish_missing_terminal(
        gw.temporal,
        gw.nc,
        gw.history,
        gw.store,
        run,
        org=org,
        start_grace_s=gw.settings.start_grace_s,
    )
