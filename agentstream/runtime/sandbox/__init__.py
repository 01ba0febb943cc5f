"""Code sandboxes the agent works in: one interface, a local backend (E2B to come)."""

from agentstream.runtime.sandbox.base import (
    CommandResult,
    Sandbox,
    SandboxBusy,
    SandboxError,
    SandboxProvider,
)
from agentstream.runtime.sandbox.local import LocalSandbox, LocalSandboxProvider

__all__ = [
    "CommandResult",
    "LocalSandbox",
    "LocalSandboxProvider",
    "Sandbox",
    "SandboxBusy",
    "SandboxError",
    "SandboxProvider",
]
