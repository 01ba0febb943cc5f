"""The NATS contract: subjects of a run, and their refusal of anything that is not an ID."""

from __future__ import annotations

from typing import Any

import pytest

from agentstream.runtime.nats_contract import live_subject, run_subject, run_subject_any_org
from schemas import InvalidIdError


def test_subject_helpers() -> None:
    assert run_subject("acme", "run_1") == "runs.acme.run_1"
    assert run_subject_any_org("run_1") == "runs.*.run_1"
    assert live_subject("acme", "run_1") == "live.acme.run_1"


@pytest.mark.parametrize(
    ("call", "kind"),
    [
        (lambda: run_subject("a.b", "run_1"), "org"),
        (lambda: run_subject("acme", "run.>"), "run"),
        (lambda: run_subject_any_org("*"), "run"),
        (lambda: live_subject("acme", ">"), "run"),
        (lambda: live_subject("*", "run_1"), "org"),
    ],
)
def test_subject_helpers_reject_subject_tokens(call: Any, kind: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        call()
    assert info.value.kind == kind
