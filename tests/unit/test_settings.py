"""Service settings read from the environment (agentstream.env and each service's settings)."""

from __future__ import annotations

import pytest

from agent.settings import AgentSettings
from agentstream.demo_dataset import DEMO_CONNECTION, reader_dsn
from agentstream.env import (
    DEFAULT_DATABASE_URL,
    DEV_CALLBACK_SECRET,
    LOCAL_STACK_ENV,
    callback_secret_from_env,
)


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


def test_the_agent_reads_the_developer_stacks_demo_dataset_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # agent/settings.py writes these out: a service must not import the developer stack.
    for name in ("AGENT_DATABASES", "AGENT_DEFAULT_CONNECTION", "CALLBACK_SECRET", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    settings = AgentSettings.from_env()
    assert settings.databases == {DEMO_CONNECTION: reader_dsn(DEFAULT_DATABASE_URL)}
    assert settings.default_connection == DEMO_CONNECTION
    assert AgentSettings().databases == settings.databases
    assert AgentSettings().default_connection == DEMO_CONNECTION
