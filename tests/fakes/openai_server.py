"""A scripted, OpenAI-compatible Chat Completions server for tests.

The server plays one fixed agent script, chosen from the request's ``messages``
by counting the ``tool`` messages that follow the last ``user`` message:

* 0 tool results: call ``write_file`` to create ``hello.py``;
* 1 tool result: call ``run_command`` to run it;
* 2 or more: answer in text, quoting the last tool result.

With ``run_sql`` offered, a question carrying a line ``SQL: <query>`` runs that query and answers
with its rows; a follow-up with no query of its own takes the last ```` ```sql ```` block of the
earlier assistant messages (the conversation's history), its order turned round when it asks for
the "lowest" or "highest", and does the same: it can only answer from the history it was sent.

A tool is only called if the request offers it in ``tools``; otherwise the
server goes straight to the text answer.  Streaming requests get Server-Sent
Events shaped like OpenAI's ``chat.completion.chunk`` stream, so real clients
(the ``openai`` SDK, LangChain's ``ChatOpenAI``) can be tested offline.

Embed it with :func:`run_openai_server`, or run it as a process::

    python -m tests.fakes.openai_server --port 0
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

JSONObject = dict[str, Any]

MAX_BODY_BYTES = 1024 * 1024
HOST = "127.0.0.1"

WRITE_FILE_ARGS: JSONObject = {"path": "hello.py", "content": "print('hello from the sandbox')\n"}
RUN_COMMAND_ARGS: JSONObject = {"command": "python3 hello.py"}
ANSWER_PREFIX = "The script ran and printed: "
SQL_LINE_PREFIX = "SQL: "
SQL_ANSWER_PREFIX = "The query returned: "
_SQL_BLOCK = re.compile(r"```sql\n(.*?)\n```", re.DOTALL)

# Small enough that every tool call spans several deltas, so clients are
# exercised on reassembling argument fragments as they must with OpenAI.
_ARGUMENT_FRAGMENT_CHARS = 8
# Tests should fail fast rather than hang if uvicorn cannot start or stop.
_STARTUP_TIMEOUT_S = 10.0
_SHUTDOWN_TIMEOUT_S = 10.0
# Bounds how long shutdown waits for in-flight streams before uvicorn cancels them;
# kept below _SHUTDOWN_TIMEOUT_S so uvicorn finishes its own cleanup first.
_GRACEFUL_SHUTDOWN_S = 5


@dataclass(frozen=True)
class ToolCall:
    """A function call the script makes, with arguments JSON-encoded as OpenAI sends them."""

    name: str
    arguments: str


Reply = ToolCall | str


def plan_reply(messages: Sequence[JSONObject], tools: Sequence[JSONObject]) -> Reply:
    """Decide the scripted reply to a conversation, given the tools the request offers."""
    offered = {
        tool["function"].get("name")
        for tool in tools
        if tool.get("type") == "function" and isinstance(tool.get("function"), dict)
    }
    results = _tool_results_since_last_user(messages)
    commands = _commands_in_last_user_message(messages)
    sql = _planned_sql(messages) if "run_sql" in offered and not commands else None
    if sql is not None:
        if not results:
            return ToolCall("run_sql", _compact_json({"query": sql}))
        return SQL_ANSWER_PREFIX + _text_of(results[-1])
    if commands and "run_command" in offered:
        # A prompt made of "$ <command>" lines plays those commands in order, then reports.
        if len(results) < len(commands):
            return ToolCall("run_command", _compact_json({"command": commands[len(results)]}))
        return f"Ran {len(commands)} commands; the last said: {_text_of(results[-1])}"
    if not results and "write_file" in offered:
        return ToolCall("write_file", _compact_json(WRITE_FILE_ARGS))
    if len(results) == 1 and "run_command" in offered:
        return ToolCall("run_command", _compact_json(RUN_COMMAND_ARGS))
    if results:
        return ANSWER_PREFIX + _text_of(results[-1])
    return "There is no tool output to report."


def _planned_sql(messages: Sequence[JSONObject]) -> str | None:
    """The query a question names, or a follow-up's, from the history's last one."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    if last_user < 0:
        return None
    question = _text_of(messages[last_user])
    for line in question.splitlines():
        if line.startswith(SQL_LINE_PREFIX):
            return line.removeprefix(SQL_LINE_PREFIX)
    earlier = [
        block
        for message in messages[:last_user]
        if message["role"] == "assistant"
        for block in _SQL_BLOCK.findall(_text_of(message))
    ]
    if not earlier:
        return None
    if "lowest" in question.lower():
        return earlier[-1].replace(" DESC", " ASC")
    if "highest" in question.lower():
        return earlier[-1].replace(" ASC", " DESC")
    return earlier[-1]


def _commands_in_last_user_message(messages: Sequence[JSONObject]) -> list[str]:
    for message in reversed(messages):
        if message["role"] == "user":
            lines = _text_of(message).splitlines()
            return [line[2:] for line in lines if line.startswith("$ ")]
    return []


def _tool_results_since_last_user(messages: Sequence[JSONObject]) -> list[JSONObject]:
    results: list[JSONObject] = []
    for message in reversed(messages):
        if message["role"] == "user":
            break
        if message["role"] == "tool":
            results.append(message)
    results.reverse()
    return results


def _text_of(message: JSONObject) -> str:
    # Content may be a plain string or a list of typed parts; only text parts carry output.
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def _word_count(messages: Sequence[JSONObject]) -> int:
    # Not a real tokenizer: usage only needs to be plausible and deterministic.
    return sum(len(_text_of(message).split()) for message in messages)


def _text_pieces(text: str) -> list[str]:
    # Each word keeps its trailing whitespace so the pieces concatenate back to `text` exactly.
    return re.findall(r"\S+\s*|\s+", text)


def _argument_fragments(arguments: str) -> list[str]:
    step = _ARGUMENT_FRAGMENT_CHARS
    return [arguments[i : i + step] for i in range(0, len(arguments), step)]


def _compact_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


def _usage(prompt_tokens: int, completion_tokens: int) -> JSONObject:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _new_tool_call_id() -> str:
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class _Completion:
    """Identity shared by the message or every chunk of one response."""

    model: str
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))

    def envelope(self, object_type: str) -> JSONObject:
        return {"id": self.id, "object": object_type, "created": self.created, "model": self.model}


def _completion_object(reply: Reply, model: str, prompt_tokens: int) -> JSONObject:
    message: JSONObject = {"role": "assistant", "refusal": None}
    if isinstance(reply, ToolCall):
        message["content"] = None
        message["tool_calls"] = [
            {
                "id": _new_tool_call_id(),
                "type": "function",
                "function": {"name": reply.name, "arguments": reply.arguments},
            }
        ]
        finish_reason, completion_tokens = "tool_calls", len(_argument_fragments(reply.arguments))
    else:
        message["content"] = reply
        finish_reason, completion_tokens = "stop", len(_text_pieces(reply))
    return {
        **_Completion(model).envelope("chat.completion"),
        "choices": [
            {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
        ],
        "usage": _usage(prompt_tokens, completion_tokens),
    }


def _deltas(reply: Reply) -> tuple[list[JSONObject], str]:
    """The content deltas of a streamed reply, and the finish_reason that ends it."""
    if isinstance(reply, ToolCall):
        opening: JSONObject = {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": _new_tool_call_id(),
                    "type": "function",
                    "function": {"name": reply.name, "arguments": ""},
                }
            ],
        }
        fragments = [
            {"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}
            for fragment in _argument_fragments(reply.arguments)
        ]
        return [opening, *fragments], "tool_calls"
    opening = {"role": "assistant", "content": "", "refusal": None}
    return [opening, *({"content": piece} for piece in _text_pieces(reply))], "stop"


def _sse(payload: JSONObject | str) -> bytes:
    data = payload if isinstance(payload, str) else _compact_json(payload)
    return f"data: {data}\n\n".encode()


async def _chunk_stream(
    reply: Reply, model: str, prompt_tokens: int, include_usage: bool
) -> AsyncIterator[bytes]:
    completion = _Completion(model)
    deltas, finish_reason = _deltas(reply)
    # With include_usage OpenAI sends "usage": null on every chunk, then one
    # usage-only chunk with empty choices; without it the key is absent.
    usage_field: JSONObject = {"usage": None} if include_usage else {}

    def chunk(delta: JSONObject, finish: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse(
            {**completion.envelope("chat.completion.chunk"), "choices": [choice], **usage_field}
        )

    for delta in deltas:
        yield chunk(delta, None)
    yield chunk({}, finish_reason)
    if include_usage:
        # The opening delta carries no content, so it is not counted as a token.
        usage = _usage(prompt_tokens, len(deltas) - 1)
        yield _sse({**completion.envelope("chat.completion.chunk"), "choices": [], "usage": usage})
    yield _sse("[DONE]")


def _error(status_code: int, message: str, code: str) -> JSONResponse:
    body = {
        "error": {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    }
    return JSONResponse(body, status_code=status_code)


async def _read_body(request: Request, limit: int) -> bytes | None:
    """The request body, or None as soon as it is known to exceed `limit` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        # Checked while reading so an oversized chunked upload is never buffered whole.
        if len(body) > limit:
            return None
    return bytes(body)


def _validation_problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "The request body must be a JSON object."
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty array."
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages):
        return "Every message must be an object with a string 'role'."
    tools = body.get("tools", [])
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        return "'tools' must be an array of objects."
    return None


class FakeOpenAIServer:
    """The scripted Chat Completions app, recording every accepted request body."""

    def __init__(
        self,
        *,
        rate_limited: frozenset[int] = frozenset(),
        check: Callable[[JSONObject], None] | None = None,
    ) -> None:
        """``rate_limited``: which requests (counted from 1) are refused with 429. ``check``
        asserts on each request's body: one it fails (``AssertionError``) is answered 400 with
        what it said, and recorded in ``failed_checks``."""
        self.requests: list[JSONObject] = []
        self.failed_checks: list[str] = []
        self.rate_limited = rate_limited
        self.check = check
        self.received = 0
        self.app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])

    async def _chat(self, request: Request) -> Response:
        self.received += 1
        if self.received in self.rate_limited:
            response = _error(429, "Rate limit reached for requests.", "rate_limit_exceeded")
            response.headers["Retry-After"] = "1"
            return response
        raw = await _read_body(request, MAX_BODY_BYTES)
        if raw is None:
            return _error(413, f"Request body exceeds {MAX_BODY_BYTES} bytes.", "body_too_large")
        try:
            body = json.loads(raw)
        except ValueError:  # covers both invalid JSON and invalid UTF-8
            return _error(400, "The request body is not valid JSON.", "invalid_json")
        problem = _validation_problem(body)
        if problem is not None:
            return _error(400, problem, "invalid_request")
        self.requests.append(body)
        if self.check is not None:
            try:
                self.check(body)
            except AssertionError as exc:
                self.failed_checks.append(str(exc))
                return _error(400, f"check failed: {exc}", "check_failed")

        messages: list[JSONObject] = body["messages"]
        reply = plan_reply(messages, body.get("tools", []))
        model = str(body.get("model", "gpt-4o-mini"))
        prompt_tokens = _word_count(messages)
        if body.get("stream") is not True:
            return JSONResponse(_completion_object(reply, model, prompt_tokens))
        stream_options = body.get("stream_options")
        include_usage = (
            isinstance(stream_options, dict) and stream_options.get("include_usage") is True
        )
        return StreamingResponse(
            _chunk_stream(reply, model, prompt_tokens, include_usage),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )


class _ScriptedUvicorn(uvicorn.Server):
    """uvicorn server that announces startup through an event.

    When embedded in a test's event loop it must not take over SIGINT/SIGTERM,
    or Ctrl-C would stop the fake server instead of interrupting pytest.
    """

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self.started_event = asyncio.Event()
        self._handle_signals = handle_signals

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.started_event.set()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if not self._handle_signals:
            yield
            return
        with super().capture_signals():
            yield


async def _start(server: _ScriptedUvicorn) -> tuple[asyncio.Task[None], int]:
    """Start serving on a fresh loopback socket; return the serve task and the bound port."""
    # Binding here rather than letting uvicorn do it turns a bind failure into an
    # OSError for the caller, instead of uvicorn's sys.exit() inside a task.
    sock = socket.create_server((HOST, server.config.port))
    serve_task = asyncio.create_task(server.serve(sockets=[sock]))
    started = asyncio.create_task(server.started_event.wait())
    try:
        # Also waiting on serve_task means a crash during startup ends the wait at once.
        await asyncio.wait(
            {started, serve_task}, timeout=_STARTUP_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        started.cancel()
    if not server.started_event.is_set():
        # Awaiting the task re-raises its crash, if that is why startup failed.
        await _stop(server, serve_task)
        raise RuntimeError(f"fake OpenAI server did not start within {_STARTUP_TIMEOUT_S}s")
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return serve_task, port


async def _stop(server: _ScriptedUvicorn, serve_task: asyncio.Task[None]) -> None:
    server.should_exit = True
    await asyncio.wait_for(serve_task, _SHUTDOWN_TIMEOUT_S)


def _config(app: Starlette, port: int, **options: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        port=port,
        lifespan="off",
        access_log=False,
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_S,
        **options,
    )


@contextlib.asynccontextmanager
async def run_openai_server(
    fake: FakeOpenAIServer | None = None, *, port: int = 0
) -> AsyncIterator[str]:
    """Serve `fake` (a fresh one if None) on loopback for the duration of the block.

    Yields the OpenAI base URL, ``http://127.0.0.1:PORT/v1``.  ``port=0`` lets the
    OS pick a free port.  Pass your own `fake` to inspect ``fake.requests``.
    """
    fake = fake if fake is not None else FakeOpenAIServer()
    # log_config=None: an embedded server must not reconfigure the host's logging.
    server = _ScriptedUvicorn(_config(fake.app, port, log_config=None), handle_signals=False)
    serve_task, bound_port = await _start(server)
    try:
        yield f"http://{HOST}:{bound_port}/v1"
    finally:
        await _stop(server, serve_task)


async def _serve_until_signalled(port: int) -> None:
    # The readiness line lets a parent process wait for it without polling the port.
    # Warnings only, so stdout carries nothing but the readiness line.
    server = _ScriptedUvicorn(
        _config(FakeOpenAIServer().app, port, log_level="warning"), handle_signals=True
    )
    serve_task, bound_port = await _start(server)
    print(f"listening on http://{HOST}:{bound_port}", flush=True)
    await serve_task


def main(argv: Sequence[str] | None = None) -> None:
    """Command-line entry point: ``python -m tests.fakes.openai_server [--port N]``."""
    parser = argparse.ArgumentParser(description="Scripted OpenAI-compatible chat server.")
    parser.add_argument("--port", type=int, default=0, help="TCP port; 0 picks a free one")
    args = parser.parse_args(argv)
    try:
        asyncio.run(_serve_until_signalled(args.port))
    except KeyboardInterrupt:
        # uvicorn re-raises SIGINT once its graceful shutdown is done; a traceback would be noise.
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
