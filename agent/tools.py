"""The agent's sandbox tools. Each call is announced (``tool_start``/``tool_end``) and recorded.

A tool never raises into the agent loop: a refused or failed operation becomes the tool's answer
(so the model can react) and a ``tool_end`` event with ``error`` set.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from langchain_core.tools import BaseTool, InjectedToolCallId, StructuredTool

from agent.chunk_sink import ChunkSink
from agent.sql_database import SqlRefused
from agentstream.runtime import tracing
from agentstream.runtime.sandbox import Sandbox, SandboxError
from schemas import ToolCall, ToolEnd, ToolStart


class ToolFailed(Exception):
    """The tool ran but failed (a command's non-zero exit): the model still gets all output."""

    def __init__(self, error: str, output: str) -> None:
        super().__init__(error)
        self.error = error
        self.output = output


# Failures that are the tool's answer to the model, not a crash of the run.
TOOL_FAILURES = (SandboxError, SqlRefused, ToolFailed)

# What the events and the result keep of a tool's output; the model gets all of it.
_EVENT_OUTPUT_CHARS = 8_000


class ToolRecorder:
    """Emits a tool call's events and keeps the finished calls for the result."""

    def __init__(self, sink: ChunkSink) -> None:
        self._sink = sink
        self.calls: list[ToolCall] = []

    async def run(
        self,
        name: str,
        call_id: str,
        args: dict[str, Any],
        action: Callable[[], Awaitable[str]],
    ) -> str:
        """Run ``action`` as tool call ``call_id``, announcing its start and end."""
        await self._sink.emit(ToolStart(run="", call_id=call_id, name=name, input=args))
        error: str | None = None
        with tracing.span(
            f"tool {name}", attributes={"agentstream.tool": name, "agentstream.call_id": call_id}
        ):
            try:
                output = await action()
            except ToolFailed as exc:
                error, output = exc.error, exc.output
            except TOOL_FAILURES as exc:
                error = str(exc)
                output = f"error: {error}"
            if error is not None:
                tracing.mark_failed(error)
        shown = output[:_EVENT_OUTPUT_CHARS]
        await self._sink.emit(
            ToolEnd(run="", call_id=call_id, name=name, output=shown, error=error)
        )
        self.calls.append(
            ToolCall(call_id=call_id, name=name, input=args, output=shown, error=error)
        )
        return output


def sandbox_tools(
    sandbox: Sandbox, recorder: ToolRecorder, *, command_timeout_s: float
) -> list[BaseTool]:
    """``write_file``, ``read_file``, ``list_files`` and ``run_command`` on ``sandbox``."""

    async def write_file(
        path: str, content: str, tool_call_id: Annotated[str, InjectedToolCallId]
    ) -> str:
        """Write a text file in the sandbox workspace (path relative to it)."""

        async def action() -> str:
            await sandbox.write_file(path, content)
            return f"wrote {len(content.encode())} bytes to {path}"

        return await recorder.run(
            "write_file", tool_call_id, {"path": path, "content": content}, action
        )

    async def read_file(path: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Read a text file from the sandbox workspace."""
        return await recorder.run(
            "read_file", tool_call_id, {"path": path}, lambda: sandbox.read_file(path)
        )

    async def list_files(tool_call_id: Annotated[str, InjectedToolCallId], path: str = ".") -> str:
        """List the files under a folder of the sandbox workspace."""

        async def action() -> str:
            return "\n".join(await sandbox.list_files(path)) or "(no files)"

        return await recorder.run("list_files", tool_call_id, {"path": path}, action)

    async def run_command(command: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> str:
        """Run a shell command in the sandbox workspace; returns exit code and output."""

        async def action() -> str:
            result = await sandbox.run_command(command, timeout_s=command_timeout_s)
            if result.timed_out:
                raise SandboxError(f"command timed out after {command_timeout_s}s")
            parts = [result.stdout.rstrip()]
            if result.stderr.strip():
                parts.append(f"stderr:\n{result.stderr.rstrip()}")
            if result.truncated:
                parts.append("(output truncated)")
            output = "\n".join(p for p in parts if p) or "(no output)"
            if result.exit_code != 0:
                raise ToolFailed(
                    f"exit code {result.exit_code}", f"{output}\nexit code {result.exit_code}"
                )
            return output

        return await recorder.run("run_command", tool_call_id, {"command": command}, action)

    return [
        StructuredTool.from_function(coroutine=fn)
        for fn in (write_file, read_file, list_files, run_command)
    ]
