"""The plain relay agentstream is measured against: what a team writes in an afternoon.

``POST /api/stream/{run}/chunk`` publishes the raw body to core NATS (a JSON array: one publish
per element); ``GET /api/stream/{run}`` gives each SSE client its own NATS subscription. No
durability, no replay, no auth, no ordering or exactly-once guarantee beyond what core NATS
gives one connection. Served by ``agentstream.runtime.serve.serve``, so it runs under exactly the
gateway's uvicorn settings (event loop, HTTP parser).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator

import msgspec
import nats
from fastapi import FastAPI, Request
from nats.aio.client import Client as NatsClient
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.responses import Response

from agentstream.runtime.serve import serve

_ARRAY = msgspec.json.Decoder(list[msgspec.Raw])


def create_app(nats_url: str) -> FastAPI:
    """The relay, publishing to and subscribing from the NATS at ``nats_url``."""
    connection: dict[str, NatsClient] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        connection["nc"] = await nats.connect(nats_url)
        try:
            yield
        finally:
            await connection["nc"].drain()

    app = FastAPI(lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    @app.post("/api/stream/{run}/chunk")
    async def publish(run: str, request: Request) -> Response:
        nc = connection["nc"]
        body = await request.body()
        subject = f"relay.{run}"
        if body.lstrip()[:1] == b"[":
            for event in _ARRAY.decode(body):
                await nc.publish(subject, bytes(event))
        else:
            await nc.publish(subject, body)
        return Response(b'{"ok":true}', media_type="application/json")

    @app.get("/api/stream/{run}")
    async def stream(run: str) -> EventSourceResponse:
        async def events() -> AsyncIterator[ServerSentEvent]:
            nc = connection["nc"]
            sub = await nc.subscribe(f"relay.{run}")
            try:
                # Flushed: once the client sees this comment, the server routes the run to it.
                await nc.flush()
                yield ServerSentEvent(comment="subscribed")
                async for message in sub.messages:
                    yield ServerSentEvent(data=message.data.decode())
            finally:
                await sub.unsubscribe()

        return EventSourceResponse(events())

    return app


def main() -> None:
    """``python -m benchmarks.plain_relay --port P --nats URL``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--nats", required=True)
    args = parser.parse_args()
    serve(create_app(args.nats), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
