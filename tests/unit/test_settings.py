"""Service settings read from the environment (agentstream.runtime.settings and each service's)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Annotated

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


# The inventory: every variable each service reads, the attribute it sets and the value it
# parses to. Each row is checked alone, so a variable that reached another attribute, or none,
# fails. Issue 10 declares these settings anew; this table says nothing changed for users.
Row = tuple[str, str, str, object]  # variable, its text, attribute path, parsed value

NATS_ROWS: list[Row] = [
    ("NATS_URL", "nats://a:4222,nats://b:4222", "url", "nats://a:4222,nats://b:4222"),
    ("NATS_USER", "gateway", "user", "gateway"),
    ("NATS_PASSWORD", "s3cret", "password", "s3cret"),
    ("NATS_CREDS", "/etc/nats/gw.creds", "creds_file", "/etc/nats/gw.creds"),
    ("NATS_TLS_CA", "/tls/ca.pem", "tls_ca", "/tls/ca.pem"),
    ("NATS_TLS_CERT", "/tls/cert.pem", "tls_cert", "/tls/cert.pem"),
    ("NATS_TLS_KEY", "/tls/key.pem", "tls_key", "/tls/key.pem"),
]
# Read by the worker and the agent; the agent never makes a sandbox, so it ignores SANDBOX and
# E2B_TEMPLATE, and the worker runs no command, so it ignores SANDBOX_ALLOW_UNCONFINED.
SANDBOX_ROWS: list[Row] = [
    ("SANDBOX", "e2b", "backend", "e2b"),
    ("SANDBOX_ROOT", "/srv/sandboxes", "root", "/srv/sandboxes"),
    ("SANDBOX_ALLOW_NETWORK", "1", "allow_network", True),
    ("SANDBOX_ALLOW_UNCONFINED", "yes", "allow_unconfined", True),
    ("E2B_API_KEY", "e2b_key", "e2b_api_key", "e2b_key"),
    ("E2B_TEMPLATE", "nextjs", "e2b_template", "nextjs"),
]
TRUSTED_ROWS: list[Row] = [
    *((name, text, f"nats.{path}", value) for name, text, path, value in NATS_ROWS),
    ("TEMPORAL_ADDRESS", "temporal:7233", "temporal.address", "temporal:7233"),
    ("TEMPORAL_NAMESPACE", "prod", "temporal.namespace", "prod"),
    (
        "DATABASE_URL",
        "postgresql://app@db:5432/app",
        "database_url",
        "postgresql://app@db:5432/app",
    ),
    ("CALLBACK_SECRET", "0123456789abcdef", "callback_secret", "0123456789abcdef"),
]
GATEWAY_ROWS: list[Row] = [
    *TRUSTED_ROWS,
    ("PUBLIC_URL", "https://gw.example", "public_url", "https://gw.example"),
    ("RUNS_MAX_AGE_S", "3600.5", "runs_max_age_s", 3600.5),
    ("RUNS_REPLICAS", "3", "runs_replicas", 3),
    ("SSE_PING_S", ".5", "sse_ping_s", 0.5),
    ("SSE_RETRY_MS", "500", "sse_retry_ms", 500),
    ("SSE_CLIENT_QUEUE", "64", "sse_client_queue", 64),
    ("SSE_IDLE_CHECK_S", "2", "sse_idle_check_s", 2.0),
    ("SSE_SEND_TIMEOUT_S", "10", "sse_send_timeout_s", 10.0),
    ("SSE_TERMINAL_CHECK_S", "7.5", "sse_terminal_check_s", 7.5),
    ("SSE_SHUTDOWN_GRACE_S", "0", "sse_shutdown_grace_s", 0.0),
    ("MAX_BODY_BYTES", "2048", "max_body_bytes", 2048),
    ("MAX_EVENTS_PER_POST", "10", "max_events_per_post", 10),
    ("MAX_EVENT_BYTES", "1024", "max_event_bytes", 1024),
    ("MAX_MESSAGE_CHARS", "100", "max_message_chars", 100),
    ("API_KEYS", "acme:abc123", "api_keys", "acme:abc123"),
    ("JWT_HS256_SECRET", "jwt-secret", "jwt_hs256_secret", "jwt-secret"),
    (
        "JWT_PUBLIC_KEY",
        "-----BEGIN PUBLIC KEY-----",
        "jwt_public_key",
        "-----BEGIN PUBLIC KEY-----",
    ),
    ("JWT_JWKS_URL", "https://idp.example/jwks", "jwt_jwks_url", "https://idp.example/jwks"),
    ("JWT_ORG_CLAIM", "tenant", "jwt_org_claim", "tenant"),
    ("JWT_AUDIENCE", "agentstream", "jwt_audience", "agentstream"),
    ("JWT_ISSUER", "https://idp.example", "jwt_issuer", "https://idp.example"),
    ("STREAM_TOKEN_TTL_S", "60", "stream_token_ttl_s", 60),
    ("RATE_LIMIT_RPS", "2.5", "rate_limit_rps", 2.5),
    ("RATE_LIMIT_BURST", "5", "rate_limit_burst", 5),
    ("MAX_STREAMS_PER_KEY", "8", "max_streams_per_key", 8),
    ("RUN_TIMEOUT_S", "600", "run_timeout_s", 600.0),
    ("MAX_OPEN_RUNS_PER_ORG", "12", "max_open_runs_per_org", 12),
    ("START_GRACE_S", "4", "start_grace_s", 4.0),
]
WORKER_ROWS: list[Row] = [
    *TRUSTED_ROWS,
    ("WORKER_ORGS", "acme, beta,", "orgs", ["acme", "beta"]),
    ("AGENT_URL", "http://agent:8100", "agent_url", "http://agent:8100"),
    (
        "GATEWAY_URL",
        "http://gw-0:8000,http://gw-1:8000",
        "gateway_urls",
        ["http://gw-0:8000", "http://gw-1:8000"],
    ),
    *((name, text, f"sandbox.{path}", value) for name, text, path, value in SANDBOX_ROWS),
    ("WORKER_HEARTBEAT_S", "0.5", "heartbeat_s", 0.5),
    ("WORKER_AGENT_SLOTS", "8", "agent_slots", 8),
    (
        "WORKER_TEST_STAGE_DELAYS",
        "create_sandbox=20, save_message=0.5",
        "test_stage_delays",
        {"create_sandbox": 20.0, "save_message": 0.5},
    ),
]
AGENT_ROWS: list[Row] = [
    ("AGENT_MODEL", "openai:gpt-4o-mini", "model", "openai:gpt-4o-mini"),
    ("OPENAI_BASE_URL", "http://llm:11434/v1", "openai_base_url", "http://llm:11434/v1"),
    ("OPENAI_API_KEY", "sk-test", "openai_api_key", "sk-test"),
    *((name, text, f"sandbox.{path}", value) for name, text, path, value in SANDBOX_ROWS),
    ("AGENT_COMMAND_TIMEOUT_S", "12.5", "command_timeout_s", 12.5),
    ("AGENT_MAX_STEPS", "5", "max_steps", 5),
    ("SCRIPTED_TOKEN_DELAY_S", "0", "scripted_token_delay_s", 0.0),
    ("AGENT_FLUSH_INTERVAL_S", "0.1", "flush_interval_s", 0.1),
    ("AGENT_FLUSH_MAX_CHARS", "64", "flush_max_chars", 64),
    ("AGENT_MAX_BODY_BYTES", "1024", "max_body_bytes", 1024),
    ("AGENT_MAX_CONCURRENT_RUNS", "4", "max_concurrent_runs", 4),
    (
        "AGENT_DATABASES",
        "sales=postgresql://r@db/sales;hr=postgresql://r@db/hr?sslmode=require;",
        "databases",
        {"sales": "postgresql://r@db/sales", "hr": "postgresql://r@db/hr?sslmode=require"},
    ),
    ("AGENT_DEFAULT_CONNECTION", "sales", "default_connection", "sales"),
    ("AGENT_SQL_TIMEOUT_MS", "1000", "sql_timeout_ms", 1000),
    ("AGENT_SQL_ROW_CAP", "10", "sql_row_cap", 10),
    ("AGENT_SQL_MAX_BYTES", "4096", "sql_max_bytes", 4096),
]

_NATS_DEFAULTS: dict[str, object] = {
    "url": "nats://127.0.0.1:4222",
    "user": None,
    "password": None,
    "creds_file": None,
    "tls_ca": None,
    "tls_cert": None,
    "tls_key": None,
}
_SANDBOX_DEFAULTS: dict[str, object] = {
    "backend": "local",
    "root": ".run/sandboxes",
    "allow_network": False,
    "allow_unconfined": False,
    "e2b_api_key": None,
    "e2b_template": "base",
}
_TRUSTED_DEFAULTS: dict[str, object] = {
    **{f"nats.{path}": value for path, value in _NATS_DEFAULTS.items()},
    "temporal.address": "127.0.0.1:7233",
    "temporal.namespace": "default",
    "database_url": "postgresql://postgres@127.0.0.1:5432/postgres",
    "callback_secret": "agentstream-dev-secret-change-me",
}
# The documented defaults (README, Configuration), as each service parses them.
DEFAULTS: dict[str, dict[str, object]] = {
    "nats": _NATS_DEFAULTS,
    "temporal": {"address": "127.0.0.1:7233", "namespace": "default"},
    "sandbox": _SANDBOX_DEFAULTS,
    "gateway": {
        **_TRUSTED_DEFAULTS,
        "public_url": "",
        "runs_max_age_s": 86_400.0,
        "runs_replicas": 1,
        "sse_ping_s": 15.0,
        "sse_retry_ms": 2_000,
        "sse_client_queue": 1_024,
        "sse_idle_check_s": 5.0,
        "sse_send_timeout_s": 30.0,
        "sse_terminal_check_s": 30.0,
        "sse_shutdown_grace_s": 1.0,
        "max_body_bytes": 1_048_576,
        "max_events_per_post": 500,
        "max_event_bytes": 65_536,
        "max_message_chars": 32_000,
        "api_keys": "",
        "jwt_hs256_secret": None,
        "jwt_public_key": None,
        "jwt_jwks_url": None,
        "jwt_org_claim": "org",
        "jwt_audience": None,
        "jwt_issuer": None,
        "stream_token_ttl_s": 3_600,
        "rate_limit_rps": 20.0,
        "rate_limit_burst": 40,
        "max_streams_per_key": 64,
        "run_timeout_s": 1_800.0,
        "max_open_runs_per_org": 1_000,
        "start_grace_s": 30.0,
    },
    "worker": {
        **_TRUSTED_DEFAULTS,
        "orgs": ["default"],
        "agent_url": "http://127.0.0.1:8100",
        "gateway_urls": ["http://127.0.0.1:8000"],
        **{f"sandbox.{path}": value for path, value in _SANDBOX_DEFAULTS.items()},
        "heartbeat_s": 2.0,
        "agent_slots": 32,
        "test_stage_delays": {},
    },
    "agent": {
        "model": "",
        "openai_base_url": None,
        "openai_api_key": None,
        **{f"sandbox.{path}": value for path, value in _SANDBOX_DEFAULTS.items()},
        "command_timeout_s": 30.0,
        "max_steps": 25,
        "scripted_token_delay_s": 0.02,
        "flush_interval_s": 0.025,
        "flush_max_chars": 512,
        "max_body_bytes": 262_144,
        "max_concurrent_runs": 32,
        "databases": {"demo": "postgresql://agentstream_reader@127.0.0.1:5432/postgres"},
        "default_connection": "demo",
        "sql_timeout_ms": 5_000,
        "sql_row_cap": 200,
        "sql_max_bytes": 65_536,
    },
}
SERVICES: dict[str, type[EnvSettings]] = {
    "nats": NatsSettings,
    "temporal": TemporalSettings,
    "sandbox": SandboxSettings,
    "gateway": GatewaySettings,
    "worker": WorkerSettings,
    "agent": AgentSettings,
}
INVENTORY: dict[str, list[Row]] = {
    "nats": NATS_ROWS,
    "temporal": [
        ("TEMPORAL_ADDRESS", "temporal:7233", "address", "temporal:7233"),
        ("TEMPORAL_NAMESPACE", "prod", "namespace", "prod"),
    ],
    "sandbox": SANDBOX_ROWS,
    "gateway": GATEWAY_ROWS,
    "worker": WORKER_ROWS,
    "agent": AGENT_ROWS,
}


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
    pytest.param(service, *row, id=f"{service}-{row[0]}")
    for service, rows in INVENTORY.items()
    for row in rows
]


@pytest.mark.parametrize(("service", "name", "text", "path", "value"), INVENTORY_CASES)
def test_each_variable_sets_its_one_attribute(
    service: str,
    name: str,
    text: str,
    path: str,
    value: object,
    environ: Callable[[dict[str, str]], None],
) -> None:
    environ({LOCAL_STACK_ENV: "1", name: text})
    expected = {**DEFAULTS[service], path: value}
    assert _typed(_read(service)) == _typed(expected)


@pytest.mark.parametrize(("service", "name", "text", "path", "value"), INVENTORY_CASES)
def test_a_variable_set_empty_is_unset(
    service: str,
    name: str,
    text: str,
    path: str,
    value: object,
    environ: Callable[[dict[str, str]], None],
) -> None:
    environ({LOCAL_STACK_ENV: "1", name: ""})
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
    ("service", "name", "text", "message"),
    [
        ("gateway", "SSE_PING_S", "abc", "SSE_PING_S must be a number, got 'abc'"),
        ("gateway", "RUNS_REPLICAS", "1.5", "RUNS_REPLICAS must be an integer, got '1.5'"),
        (
            "worker",
            "WORKER_AGENT_SLOTS",
            "many",
            "WORKER_AGENT_SLOTS must be an integer, got 'many'",
        ),
        (
            "worker",
            "WORKER_TEST_STAGE_DELAYS",
            "create_sandbox",
            "WORKER_TEST_STAGE_DELAYS item must be activity=seconds: 'create_sandbox'",
        ),
        ("agent", "AGENT_SQL_ROW_CAP", "ten", "AGENT_SQL_ROW_CAP must be an integer, got 'ten'"),
        ("agent", "AGENT_DATABASES", "sales", "AGENT_DATABASES item must be id=dsn, got 'sales'"),
        (
            "agent",
            "SANDBOX_ALLOW_NETWORK",
            "maybe",
            "SANDBOX_ALLOW_NETWORK must be 1, true, yes, on or 0, false, no, off, got 'maybe'",
        ),
    ],
)
def test_a_malformed_value_is_a_config_error_naming_its_variable(
    service: str, name: str, text: str, message: str, environ: Callable[[dict[str, str]], None]
) -> None:
    environ({LOCAL_STACK_ENV: "1", name: text})
    with pytest.raises(ConfigError) as raised:
        _read(service)
    assert str(raised.value) == message


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
