"""Settings read from the environment, each declared once: a field of a frozen Struct.

A field's environment variable is its encode name: the Struct's ``rename`` (``NATS_`` and the
field's name in upper case, …) or ``msgspec.field(name=...)`` for an irregular one. A field whose
type is a settings Struct is read from the same flat environment. :func:`read_env` takes each
variable that is set and non-empty, parses it as its field says (numbers with Python's own
syntax, :data:`Flag`, :data:`CommaList`, or a parser the field names with
:func:`from_env_with`) and reports a malformed value as a :class:`ConfigError` naming it.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal, Self, TypeVar

import msgspec

DEFAULT_NATS_URL = "nats://127.0.0.1:4222"
DEFAULT_TEMPORAL_ADDRESS = "127.0.0.1:7233"
DEFAULT_TEMPORAL_NAMESPACE = "default"
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_GATEWAY_URL = "http://127.0.0.1:8000"
DEFAULT_AGENT_URL = "http://127.0.0.1:8100"
DEFAULT_SANDBOX_ROOT = ".run/sandboxes"
# Agent calls one agent instance runs at once (AGENT_MAX_CONCURRENT_RUNS), hence also what one
# worker in front of one agent sends it (WORKER_AGENT_SLOTS).
DEFAULT_AGENT_CAPACITY = 32
# A development secret for services started by hand on a developer's machine, accepted only where
# LOCAL_STACK_ENV says so; `agentstream up` mints a random one per stack.
DEV_CALLBACK_SECRET = "agentstream-dev-secret-change-me"
# Set to 1 by the local stack (or by hand, on a developer's machine): this is not a deployment.
LOCAL_STACK_ENV = "AGENTSTREAM_LOCAL_STACK"
# The deploy/ templates' placeholder, in any case: never a secret.
_PLACEHOLDER_SECRET = "change-me"


class ConfigError(ValueError):
    """An environment variable holds a value the service cannot use."""


Parse = Callable[[str], Any]


def from_env_with(parse: Parse) -> msgspec.Meta:
    """Field metadata: read the variable's text with ``parse``.

    ``parse`` raises :class:`ValueError` saying what is wrong ("must be …"); the variable's name
    is put in front of it.
    """
    return msgspec.Meta(extra={"env": parse})


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def parse_flag(raw: str) -> bool:
    """``1``, ``true``, ``yes``, ``on`` or ``0``, ``false``, ``no``, ``off``, in any case."""
    word = raw.strip().lower()
    if word in _TRUE or word in _FALSE:
        return word in _TRUE
    raise ValueError(f"must be 1, true, yes, on or 0, false, no, off, got {raw!r}")


def parse_comma_list(raw: str) -> list[str]:
    """Comma-separated items, trimmed; empty items are dropped."""
    return [item.strip() for item in raw.split(",") if item.strip()]


def _integer(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"must be an integer, got {raw!r}") from None


def _number(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"must be a number, got {raw!r}") from None


Flag = Annotated[bool, from_env_with(parse_flag)]
CommaList = Annotated[list[str], from_env_with(parse_comma_list)]
# Plain numbers keep Python's syntax (``.5``, ``1_000``, surrounding blanks), as before.
_BY_TYPE: dict[Any, Parse] = {int: _integer, float: _number}

S = TypeVar("S", bound=msgspec.Struct)


def _parser(field_type: Any) -> Parse | None:
    metadata = getattr(field_type, "__metadata__", ())
    for meta in metadata:
        if isinstance(meta, msgspec.Meta) and meta.extra and "env" in meta.extra:
            parse: Parse = meta.extra["env"]
            return parse
    # Annotated[int, Meta(ge=1)] is still read as an int.
    return _BY_TYPE.get(field_type.__origin__ if metadata else field_type)


def _is_settings(field_type: Any) -> bool:
    return isinstance(field_type, type) and issubclass(field_type, msgspec.Struct)


def _value(field: msgspec.structs.FieldInfo, raw: str) -> Any:
    """The variable's text parsed and checked against its field's type."""
    name = field.encode_name
    parse = _parser(field.type)
    try:
        parsed = raw if parse is None else parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} {exc}") from None
    try:
        return msgspec.convert(parsed, field.type, strict=False)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{name}: {exc}, got {raw!r}") from None


def read_env(cls: type[S], environ: Mapping[str, str] | None = None) -> S:
    """``cls`` filled from ``environ`` (the process environment by default).

    A variable that is unset or empty leaves its field's default; nested settings are read from
    the same environment.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field in msgspec.structs.fields(cls):
        if _is_settings(field.type):
            values[field.name] = read_env(field.type, environ)
        elif raw := environ.get(field.encode_name):
            values[field.name] = _value(field, raw)
    return cls(**values)


class EnvSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Settings read from the environment: subclasses declare their fields."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Read the settings from ``environ`` (the process environment by default)."""
        environ = os.environ if environ is None else environ
        cls.refuse(environ)
        return read_env(cls, environ)

    @classmethod
    def refuse(cls, environ: Mapping[str, str]) -> None:
        """Raise :class:`ConfigError` for an environment the service must not run in."""


LogFormat = Literal["text", "json"]
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def parse_log_level(raw: str) -> str:
    """A level name of Python's logging, in any case."""
    level = raw.strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"must be one of {', '.join(_LOG_LEVELS)}, got {raw!r}")
    return level


class LogSettings(
    EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"LOG_{name.upper()}"
):
    """How every service logs (agentstream.runtime.log_format)."""

    # Empty: the service's own default (INFO for the worker, WARNING otherwise).
    level: Annotated[str, from_env_with(parse_log_level)] = ""
    # ``text`` (the default) or ``json``: one JSON object a line, with the run, org and attempt
    # of every line logged for a run.
    format: LogFormat = "text"


class NatsSettings(
    EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"NATS_{name.upper()}"
):
    """How a service reaches NATS: URL(s), and user/password or a credentials file, over TLS."""

    # Comma-separated for a cluster.
    url: str = DEFAULT_NATS_URL
    user: str | None = None
    password: str | None = None
    creds_file: str | None = msgspec.field(default=None, name="NATS_CREDS")
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None

    def tls_context(self) -> ssl.SSLContext | None:
        """A client TLS context when a CA or client certificate is configured."""
        if not (self.tls_ca or self.tls_cert):
            return None
        context = ssl.create_default_context(cafile=self.tls_ca)
        if self.tls_cert:
            context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class TemporalSettings(
    EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"TEMPORAL_{name.upper()}"
):
    """Which Temporal frontend and namespace a service uses."""

    address: str = DEFAULT_TEMPORAL_ADDRESS
    namespace: str = DEFAULT_TEMPORAL_NAMESPACE


class SandboxSettings(
    EnvSettings, frozen=True, kw_only=True, rename=lambda name: f"SANDBOX_{name.upper()}"
):
    """Sandboxes: the worker creates and destroys them, the agent runs commands in them."""

    # The backend new sandboxes are made on: ``local`` or ``e2b``.
    backend: str = msgspec.field(default="local", name="SANDBOX")
    # Local workspaces, shared by worker and agent (traversable for the per-run uids).
    root: str = DEFAULT_SANDBOX_ROOT
    allow_network: Flag = False
    # Run commands even where they cannot get a private mount view (else they are refused).
    allow_unconfined: Flag = False
    e2b_api_key: str | None = msgspec.field(default=None, name="E2B_API_KEY")
    e2b_template: str = msgspec.field(default="base", name="E2B_TEMPLATE")


def check_callback_secret(environ: Mapping[str, str]) -> None:
    """Refuse a missing or public ``CALLBACK_SECRET``, unless this is the local stack.

    Anyone who knows the secret can forge callback and stream tokens for every run, so a
    deployment must not run with a public one by accident: unset, the development secret or a
    template placeholder is a :class:`ConfigError`, unless ``AGENTSTREAM_LOCAL_STACK=1`` (where an
    unset secret means the development one, the field's default).
    """
    if environ.get(LOCAL_STACK_ENV) == "1":
        return
    secret = environ.get("CALLBACK_SECRET") or ""
    if not secret:
        problem = "is not set"
    elif secret == DEV_CALLBACK_SECRET:
        problem = "is the built-in development secret"
    elif secret.lower() == _PLACEHOLDER_SECRET:
        problem = "is the deploy template's placeholder"
    else:
        return
    raise ConfigError(
        f"CALLBACK_SECRET {problem}: set it to a random secret shared by every gateway and "
        "worker (e.g. `openssl rand -hex 32`); on a development machine, "
        f"{LOCAL_STACK_ENV}=1 accepts the built-in development secret"
    )


class TrustedSettings(EnvSettings, frozen=True, kw_only=True, rename="upper"):
    """What the services holding the callback secret share: the gateway and the worker."""

    nats: NatsSettings = msgspec.field(default_factory=NatsSettings)
    temporal: TemporalSettings = msgspec.field(default_factory=TemporalSettings)
    database_url: str = DEFAULT_DATABASE_URL
    callback_secret: str = DEV_CALLBACK_SECRET

    @classmethod
    def refuse(cls, environ: Mapping[str, str]) -> None:
        """Refuse a missing or public callback secret outside the local stack."""
        check_callback_secret(environ)
