"""Service settings read from the environment (agentstream.runtime.settings and each service's)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import msgspec
import pytest

from agent.settings import AgentSettings
from agentstream.devstack.demo_dataset import DEMO_CONNECTION, reader_dsn
from agentstream.runtime.settings import (
    DEFAULT_DATABASE_URL,
    DEV_CALLBACK_SECRET,
    LOCAL_STACK_ENV,
    CommaList,
    ConfigError,
    EnvSettings,
    Flag,
    NatsSettings,
    SandboxSettings,
    TemporalSettings,
    read_env,
)
from gateway.settings import GatewaySettings
from worker.settings import WorkerSettings


@pytest.mark.parametrize("settings", [GatewaySettings, WorkerSettings])
def test_the_local_stack_says_so_to_use_the_development_secret(
    settings: type[GatewaySettings | WorkerSettings],
) -> None:
    local = {LOCAL_STACK_ENV: "1"}
    assert settings.from_env(local).callback_secret == DEV_CALLBACK_SECRET
    real = {"CALLBACK_SECRET": "a-real-secret-0123456789"}
    assert settings.from_env({**local, **real}).callback_secret == real["CALLBACK_SECRET"]
    assert settings.from_env(real).callback_secret == real["CALLBACK_SECRET"], "always works"
    for refused in ({}, {"CALLBACK_SECRET": DEV_CALLBACK_SECRET}, {"CALLBACK_SECRET": "Change-Me"}):
        with pytest.raises(ConfigError, match=f"^CALLBACK_SECRET is .*{LOCAL_STACK_ENV}=1"):
            settings.from_env(refused)


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


# The inventory (settings_inventory.json): every variable each service reads, the attribute it
# sets and the value it parses to, and the documented defaults (README, Configuration). Each row
# is checked alone, so a variable that reached another attribute, or none, fails. Issue 10
# declared these settings anew; this table says nothing changed for users. A section may include
# others, their attribute paths under a prefix ("nats." for the NATS settings of a service).
Row = tuple[str, str, str, object]  # variable, its text, attribute path, parsed value
_SECTIONS: dict[str, dict[str, Any]] = json.loads(
    (Path(__file__).parent / "settings_inventory.json").read_text()
)


def _section(name: str, prefix: str = "") -> tuple[list[Row], dict[str, object]]:
    """A section's rows and defaults with those of what it includes, paths under ``prefix``."""
    section = _SECTIONS[name]
    rows: list[Row] = []
    defaults: dict[str, object] = {}
    for included, under in section.get("includes", {}).items():
        more_rows, more_defaults = _section(included, prefix + under)
        rows += more_rows
        defaults |= more_defaults
    rows += [(var, text, prefix + path, value) for var, text, path, value in section["rows"]]
    defaults |= {prefix + path: value for path, value in section["defaults"].items()}
    return rows, defaults


SERVICES: dict[str, type[EnvSettings]] = {
    "nats": NatsSettings,
    "temporal": TemporalSettings,
    "sandbox": SandboxSettings,
    "gateway": GatewaySettings,
    "worker": WorkerSettings,
    "agent": AgentSettings,
}
INVENTORY = {service: _section(service)[0] for service in SERVICES}
DEFAULTS = {service: _section(service)[1] for service in SERVICES}


def _flat(settings: msgspec.Struct, prefix: str = "") -> dict[str, object]:
    """Every setting by attribute path (``nats.url``), nested settings walked into."""
    flat: dict[str, object] = {}
    for name in settings.__struct_fields__:
        value = getattr(settings, name)
        if isinstance(value, msgspec.Struct):
            flat.update(_flat(value, f"{prefix}{name}."))
        else:
            flat[f"{prefix}{name}"] = value
    return flat


def _typed(flat: dict[str, object]) -> dict[str, tuple[str, object]]:
    """Values with their type's name: 2 and 2.0 are different settings."""
    return {path: (type(value).__name__, value) for path, value in flat.items()}


@pytest.fixture
def environ(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, str]], None]:
    """Replace the whole process environment (restored after the test)."""

    def use(variables: dict[str, str]) -> None:
        for name in list(os.environ):
            monkeypatch.delenv(name)
        for name, value in variables.items():
            monkeypatch.setenv(name, value)

    return use


def _read(service: str) -> dict[str, object]:
    return _flat(SERVICES[service].from_env())


@pytest.mark.parametrize("service", SERVICES)
def test_an_empty_environment_gives_the_documented_defaults(
    service: str, environ: Callable[[dict[str, str]], None]
) -> None:
    # The local stack's flag only lets the trusted services start on the development secret.
    environ({LOCAL_STACK_ENV: "1"})
    assert _typed(_read(service)) == _typed(DEFAULTS[service])
    assert _typed(_flat(SERVICES[service]())) == _typed(DEFAULTS[service]), "field defaults"


INVENTORY_CASES = [
    pytest.param(service, row, id=f"{service}-{row[0]}")
    for service, rows in INVENTORY.items()
    for row in rows
]


@pytest.mark.parametrize(("service", "row"), INVENTORY_CASES)
def test_each_variable_sets_its_one_attribute(
    service: str, row: Row, environ: Callable[[dict[str, str]], None]
) -> None:
    name, text, path, value = row
    environ({LOCAL_STACK_ENV: "1", name: text})
    expected = {**DEFAULTS[service], path: value}
    assert _typed(_read(service)) == _typed(expected)


@pytest.mark.parametrize(("service", "row"), INVENTORY_CASES)
def test_a_variable_set_empty_is_unset(
    service: str, row: Row, environ: Callable[[dict[str, str]], None]
) -> None:
    environ({LOCAL_STACK_ENV: "1", row[0]: ""})
    assert _typed(_read(service)) == _typed(DEFAULTS[service])


@pytest.mark.parametrize(
    ("service", "name", "path"),
    [
        ("worker", "SANDBOX_ALLOW_NETWORK", "sandbox.allow_network"),
        ("agent", "SANDBOX_ALLOW_NETWORK", "sandbox.allow_network"),
        ("agent", "SANDBOX_ALLOW_UNCONFINED", "sandbox.allow_unconfined"),
    ],
)
@pytest.mark.parametrize(
    ("text", "value"),
    [
        *((text, True) for text in ("1", "true", "yes", "on", "TRUE", "Yes", " on ")),
        *((text, False) for text in ("0", "false", "no", "off", "FALSE", "No", " off ")),
    ],
)
def test_a_flag_reads_one_true_yes_on_and_zero_false_no_off_in_any_case(
    service: str,
    name: str,
    path: str,
    text: str,
    value: bool,
    environ: Callable[[dict[str, str]], None],
) -> None:
    environ({LOCAL_STACK_ENV: "1", name: text})
    assert _read(service)[path] is value


@pytest.mark.parametrize(
    ("service", "name", "text", "says"),
    [
        ("gateway", "SSE_PING_S", "abc", "must be a number, got 'abc'"),
        ("gateway", "RUNS_REPLICAS", "1.5", "must be an integer, got '1.5'"),
        ("worker", "WORKER_AGENT_SLOTS", "many", "must be an integer, got 'many'"),
        ("worker", "WORKER_TEST_STAGE_DELAYS", "a", "item must be activity=seconds: 'a'"),
        ("agent", "AGENT_SQL_ROW_CAP", "ten", "must be an integer, got 'ten'"),
        ("agent", "AGENT_DATABASES", "sales", "item must be id=dsn, got 'sales'"),
        (
            "agent",
            "SANDBOX_ALLOW_NETWORK",
            "2",
            "must be 1, true, yes, on or 0, false, no, off, got '2'",
        ),
    ],
)
def test_a_malformed_value_is_a_config_error_naming_its_variable(
    service: str, name: str, text: str, says: str, environ: Callable[[dict[str, str]], None]
) -> None:
    environ({LOCAL_STACK_ENV: "1", name: text})
    with pytest.raises(ConfigError) as raised:
        _read(service)
    assert str(raised.value) == f"{name} {says}"


class _Pool(EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"POOL_{name.upper()}"):
    size: Annotated[int, msgspec.Meta(ge=1)] = 4
    hosts: CommaList = msgspec.field(default_factory=list)


class _Service(EnvSettings, frozen=True, kw_only=True, rename="upper"):
    pool: _Pool = msgspec.field(default_factory=_Pool)
    verbose: Flag = False
    timeout_s: float = msgspec.field(default=1.0, name="SERVICE_TIMEOUT")


def test_nested_settings_are_read_from_the_same_flat_environment() -> None:
    environ = {"POOL_SIZE": "8", "POOL_HOSTS": "a, b", "VERBOSE": "yes", "SERVICE_TIMEOUT": "2"}
    assert read_env(_Service, environ) == _Service(
        pool=_Pool(size=8, hosts=["a", "b"]), verbose=True, timeout_s=2.0
    )
    assert read_env(_Service, {}) == _Service(), "every default from the declaration"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"POOL_SIZE": "x"}, "POOL_SIZE must be an integer, got 'x'"),
        ({"POOL_SIZE": "0"}, "POOL_SIZE: Expected `int` >= 1, got '0'"),
        ({"SERVICE_TIMEOUT": "soon"}, "SERVICE_TIMEOUT must be a number, got 'soon'"),
        ({"VERBOSE": "2"}, "VERBOSE must be 1, true, yes, on or 0, false, no, off, got '2'"),
    ],
)
def test_a_bad_value_names_its_variable_even_when_nested(
    environ: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        read_env(_Service, environ)
    assert str(raised.value) == message


def test_from_env_reads_the_mapping_it_is_given_not_the_process_environment(
    environ: Callable[[dict[str, str]], None],
) -> None:
    environ({"SSE_PING_S": "bad", "CALLBACK_SECRET": DEV_CALLBACK_SECRET})
    given = {"SSE_PING_S": "3", "CALLBACK_SECRET": "a-real-secret-0123456789"}
    assert GatewaySettings.from_env(given).sse_ping_s == 3.0
