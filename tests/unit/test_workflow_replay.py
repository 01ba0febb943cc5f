"""Runs that an earlier ``ChatWorkflow`` began carry on under this one: their histories replay.

A worker replays a run's history whenever it picks the run up (a restart, a deploy, a full
cache), so a change to the commands the workflow issues for the same events breaks every run in
flight. ``workflow_histories/`` holds histories recorded by the workflow tests
(``tests/integration/test_chat_workflow.py``) on the workflow as of commit c4248aa, which raced
its deadline with ``asyncio.wait_for`` on CPython 3.11: an answered run (its deadline timer
cancelled), a run cancelled while the agent works, one whose answer arrived after its
cancellation, and one past its deadline in the agent call; and one cancelled while creating its
sandbox, recorded at 677f339, before a run destroyed a sandbox it never learnt. Replaying needs
no server.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from agentstream.runtime.temporal_codec import data_converter
from worker.workflows import ChatWorkflow

HISTORIES = {
    path.stem: WorkflowHistory.from_json(path.stem, path.read_text())
    for path in sorted((Path(__file__).parent / "workflow_histories").glob("*.json"))
}


def test_the_recorded_histories_are_there() -> None:
    assert list(HISTORIES) == [
        "answer_after_cancellation",
        "answered",
        "cancelled_in_agent_call",
        "cancelled_while_creating",
        "deadline_in_agent_call",
    ]


@pytest.mark.parametrize("name", HISTORIES)
async def test_a_run_begun_by_the_earlier_workflow_replays(name: str) -> None:
    history = HISTORIES[name]
    replayer = Replayer(workflows=[ChatWorkflow], data_converter=data_converter)
    replayed = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert replayed.replay_failure is None, replayed.replay_failure
