"""The local stack's port check: a port left in TIME_WAIT by a stopped server is still free.

``agentstream up`` run again within a minute of a stop must get its documented ports back: the
stopped servers' connections linger in TIME_WAIT on them, which a bind without ``SO_REUSEADDR``
counts as taken although uvicorn (which binds with it) can listen there.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import uvicorn

from agentstream.devstack.processes import port_is_free, port_or_free

_TIME_WAIT = "06"


async def _no_app(scope: object, receive: object, send: object) -> None:
    """An ASGI app for uvicorn's configuration; never called (only its bind is used)."""


def _time_wait_on(port: int) -> bool:
    """Whether a TCP socket on 127.0.0.1:``port`` is in TIME_WAIT (``/proc/net/tcp``)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        if local == f"0100007F:{port:04X}" and state == _TIME_WAIT:
            return True
    return False


@contextmanager
def _listening() -> Iterator[socket.socket]:
    """A socket listening on a free port of 127.0.0.1, bound as servers bind."""
    with socket.socket() as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


async def _left_in_time_wait() -> int:
    """A port whose server has stopped after closing a connection first: its side of that
    connection lingers in TIME_WAIT, as a stopped gateway's do."""
    with _listening() as server:
        port = int(server.getsockname()[1])
        with socket.create_connection(("127.0.0.1", port)) as client:
            accepted, _ = server.accept()
            with closing(accepted):
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"
                accepted.sendall(b"pong")
                assert client.recv(4) == b"pong"
            # The server closed first: its end goes to TIME_WAIT once the client's FIN arrives.
            assert client.recv(1) == b""
    # The kernel offers no event for a socket's state change: poll /proc/net/tcp (on loopback
    # the first look already sees it).
    async with asyncio.timeout(10):
        while not _time_wait_on(port):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    return port


async def test_a_port_in_time_wait_is_free_and_uvicorn_binds_it() -> None:
    port = await _left_in_time_wait()
    # The scenario is the one that misled the old check: a plain bind is refused.
    with socket.socket() as plain:
        try:
            plain.bind(("127.0.0.1", port))
        except OSError:
            pass
        else:
            raise AssertionError("TIME_WAIT did not block a plain bind: the test proves nothing")
    assert _time_wait_on(port)
    assert port_is_free(port)
    assert port_or_free(port) == port
    # uvicorn's own bind (SO_REUSEADDR), and a listen on it, succeed.
    config = uvicorn.Config(_no_app, host="127.0.0.1", port=port)
    with config.bind_socket() as bound:
        bound.listen()
        assert bound.getsockname() == ("127.0.0.1", port)


def test_a_port_someone_listens_on_is_taken() -> None:
    with _listening() as server:
        port = int(server.getsockname()[1])
        assert not port_is_free(port)
        other = port_or_free(port)
        assert other != port and port_is_free(other)
