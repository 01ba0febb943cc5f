"""Running an ASGI app under uvicorn from a CLI entry point, and leaving cleanly."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

from agentstream.runtime import tracing

# Callbacks to run, each on its own event loop, when the process is told to stop.
_on_stop: list[tuple[asyncio.AbstractEventLoop, Callable[[], None]]] = []


def call_on_stop_signal(callback: Callable[[], None]) -> None:
    """Run ``callback`` on the running event loop when SIGTERM or SIGINT arrives.

    It runs as the server begins its graceful shutdown, while open responses (SSE streams)
    can still be ended cleanly; the lifespan's shutdown only comes after they have ended.
    """
    _on_stop.append((asyncio.get_running_loop(), callback))


class _Server(uvicorn.Server):
    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        # A signal handler: the loop is told through its thread-safe door.
        for loop, callback in _on_stop:
            with contextlib.suppress(RuntimeError):  # its loop already closed
                loop.call_soon_threadsafe(callback)


def serve(app: FastAPI, *, host: str, port: int, graceful_s: float = 10.0) -> None:
    """Serve until SIGINT/SIGTERM, then exit without running interpreter teardown.

    temporalio's native runtime can crash during interpreter finalisation, turning a clean stop
    into a failing exit code; everything is closed by the lifespan before ``os._exit``.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        # uvloop's event loop and httptools' parser: both native, both leaner per connection.
        # uvicorn's "auto" picks them too; named here so a missing one is an error, not a
        # silent fall-back to the pure-Python loop and h11.
        loop="uvloop",
        http="httptools",
        log_level="warning",
        # No logging set-up of uvicorn's own: its lines go through the service's (LOG_FORMAT).
        log_config=None,
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )
    server = _Server(config)
    # uvicorn re-raises the stop signal after its graceful shutdown, under the handlers it found
    # at start. No-op ones make that a return, so a clean stop exits 0 instead of -SIGTERM.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    # Spans still batched would be lost to os._exit.
    tracing.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if server.started else 1)
