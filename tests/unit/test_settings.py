"""Service settings read from the environment (agentstream.env and each service's settings)."""

from __future__ import annotations

import pytest

from agentstream.env import DEV_CALLBACK_SECRET, LOCAL_STACK_ENV, callback_secret_from_env


def test_the_local_stack_says_so_to_use_the_development_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("CALLBACK_SECRET", raising=False)
    monkeypatch.setenv(LOCAL_STACK_ENV, "1")
    assert callback_secret_from_env() == DEV_CALLBACK_SECRET
    monkeypatch.setenv("CALLBACK_SECRET", "a-real-secret-0123456789")
    assert callback_secret_from_env() == "a-real-secret-0123456789"
    monkeypatch.delenv(LOCAL_STACK_ENV)
    assert callback_secret_from_env() == "a-real-secret-0123456789", "a real secret always works"
