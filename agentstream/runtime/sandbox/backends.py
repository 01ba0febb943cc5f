"""The configured sandbox backends: new sandboxes on the chosen one, others by their own."""

from __future__ import annotations

from pathlib import Path

from agentstream.runtime.sandbox.base import Sandbox, SandboxError, SandboxProvider
from agentstream.runtime.sandbox.local import LocalSandboxProvider
from schemas import SandboxInfo


class SandboxBackends:
    """A :class:`SandboxProvider` over every configured backend.

    ``create`` uses the configured one; ``connect`` and ``destroy`` follow ``info.backend``, so a
    sandbox is always reached through the backend that made it.
    """

    def __init__(
        self,
        backend: str,
        *,
        root: Path,
        allow_network: bool = False,
        allow_unconfined: bool = False,
        e2b_api_key: str | None = None,
        e2b_template: str = "base",
    ) -> None:
        self._providers: dict[str, SandboxProvider] = {
            "local": LocalSandboxProvider(
                root, allow_network=allow_network, allow_unconfined=allow_unconfined
            )
        }
        if e2b_api_key:
            from agentstream.runtime.sandbox.e2b import E2BSandboxProvider

            self._providers["e2b"] = E2BSandboxProvider(e2b_api_key, template=e2b_template)
        if backend not in self._providers:
            raise ValueError(
                f"SANDBOX={backend!r} is not available"
                + (": set E2B_API_KEY" if backend == "e2b" else ": use local or e2b")
            )
        self._default = backend

    def _for(self, info: SandboxInfo) -> SandboxProvider:
        provider = self._providers.get(info.backend)
        if provider is None:
            raise SandboxError(f"no {info.backend} sandbox backend is configured here")
        return provider

    async def create(self, run: str) -> SandboxInfo:
        """A sandbox on the configured backend."""
        return await self._providers[self._default].create(run)

    async def connect(self, info: SandboxInfo) -> Sandbox:
        """Reach a sandbox through the backend that made it."""
        return await self._for(info).connect(info)

    async def destroy(self, info: SandboxInfo) -> None:
        """Destroy a sandbox through the backend that made it."""
        await self._for(info).destroy(info)

    async def destroy_for_run(self, run: str) -> None:
        """Destroy the sandbox ``create(run)`` made, on the configured backend, by run ID."""
        await self._providers[self._default].destroy_for_run(run)
