"""agentstream.runtime.temporal: each org's task queues, and the org read back from a queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from agentstream.runtime.temporal import agent_call_queue, org_of_task_queue, task_queue
from schemas import DEFAULT_ORG, InvalidIdError

ORGS = ["acme", "default", "a", "acme-calls", "acme_calls", "A-1_b", "x" * 64]


def test_the_task_queue_is_named_after_the_org() -> None:
    # Part of the interface: `temporal workflow start --task-queue agent-<org>` in the README.
    assert task_queue("acme") == "agent-acme"
    assert agent_call_queue("acme") == "agent-acme.calls"


@pytest.mark.parametrize("org", ORGS)
def test_the_org_is_read_back_from_its_task_queue(org: str) -> None:
    assert org_of_task_queue(task_queue(org)) == org


def test_no_queue_of_one_org_is_a_queue_of_another() -> None:
    queues = [queue(org) for org in ORGS for queue in (task_queue, agent_call_queue)]
    assert len(set(queues)) == len(queues)
    # An agent-call queue is not mistaken for an org's task queue.
    assert org_of_task_queue(agent_call_queue("acme")) == DEFAULT_ORG


@pytest.mark.parametrize("queue", ["", "agent-", "acme", "worker-acme", "agent-a b", "agent-a.b"])
def test_a_queue_that_is_not_an_orgs_belongs_to_the_default_org(queue: str) -> None:
    assert org_of_task_queue(queue) == DEFAULT_ORG


@pytest.mark.parametrize("name", [task_queue, agent_call_queue])
@pytest.mark.parametrize("org", ["", "a b", "a.b", "*", ">", "x" * 65])
def test_an_invalid_org_has_no_queue(name: Callable[[str], str], org: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        name(org)
    assert info.value.kind == "org"
    assert info.value.value == org
