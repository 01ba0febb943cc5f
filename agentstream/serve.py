"""Running an ASGI app under uvicorn from a CLI entry point, and leaving cleanly."""

from __future__ import annotations

import logging
import os
import signal
import sys

import uvicorn
from fastapi import FastAPI


def configure_logging(level: str) -> None:
    """One log format for every service process."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def serve(app: FastAPI, *, host: str, port: int, graceful_s: float = 10.0) -> None:
    """Serve until SIGINT/SIGTERM, then exit without running interpreter teardown.

    temporalio's native runtime can crash during interpreter finalisation, turning a clean stop
    into a failing exit code; everything is closed by the lifespan before ``os._exit``.
    """
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=int(graceful_s),
        lifespan="on",
    )
    server = uvicorn.Server(config)
    # uvicorn re-raises the stop signal after its graceful shutdown, under the handlers it found
    # at start. No-op ones make that a return, so a clean stop exits 0 instead of -SIGTERM.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: None)
    server.run()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0 if server.started else 1)
