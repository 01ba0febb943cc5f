"""The offline scripted model: a stand-in for an LLM when none is configured.

It is not a language model and never claims to be one: it plays a fixed plan (write a script to
the sandbox, run it, answer with what it printed), streams its answer token by token, and names
itself ``offline-scripted`` in logs, events and results. The tools it calls are real.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

SCRIPTED_MODEL_NAME = "offline-scripted"

_SCRIPT_PATH = "analysis.py"
_TOKEN_RE = re.compile(r"\S+\s*|\s+")


def _script_for(prompt: str) -> str:
    """A small, real program about the user's message, for the sandbox to run."""
    return (
        "import collections\n"
        "import re\n\n"
        f"message = {json.dumps(prompt)}\n"
        'words = re.findall(r"\\w+", message.lower())\n'
        'print(f"characters: {len(message)}")\n'
        'print(f"words: {len(words)}")\n'
        "common = collections.Counter(words).most_common(3)\n"
        'print("most common: " + ", ".join(f"{w} ({n})" for w, n in common))\n'
    )


class ScriptedChatModel(BaseChatModel):
    """Plays: write ``analysis.py`` → run it → answer with its output."""

    token_delay_s: float = 0.02

    @property
    def _llm_type(self) -> str:
        return SCRIPTED_MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": SCRIPTED_MODEL_NAME}

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """The plan already knows its tools; binding changes nothing."""
        return self

    def _next_step(self, messages: list[BaseMessage]) -> AIMessage:
        last_human = max(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1
        )
        prompt = str(messages[last_human].content) if last_human >= 0 else ""
        results = [m for m in messages[last_human + 1 :] if isinstance(m, ToolMessage)]
        if not results:
            return AIMessage(
                content="I'll write a small script about your message in the sandbox. ",
                tool_calls=[
                    {
                        "name": "write_file",
                        "args": {"path": _SCRIPT_PATH, "content": _script_for(prompt)},
                        "id": "call_write_1",
                        "type": "tool_call",
                    }
                ],
            )
        if len(results) == 1:
            return AIMessage(
                content="Now I'll run it. ",
                tool_calls=[
                    {
                        "name": "run_command",
                        "args": {"command": f"python3 {_SCRIPT_PATH}"},
                        "id": "call_run_1",
                        "type": "tool_call",
                    }
                ],
            )
        output = str(results[-1].content).strip()
        return AIMessage(
            content=(
                f"I wrote `{_SCRIPT_PATH}` in the sandbox and ran it. It printed:\n\n"
                f"{output}\n\n"
                "(This answer comes from the offline scripted model: no LLM is configured. "
                "Set AGENT_MODEL to use a real one.)"
            )
        )

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next_step(messages))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        yield from self._chunks(self._next_step(messages))

    async def _astream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: AsyncCallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> AsyncIterator[ChatGenerationChunk]:
        for chunk in self._chunks(self._next_step(messages)):
            if self.token_delay_s > 0:
                await asyncio.sleep(self.token_delay_s)
            if run_manager is not None and chunk.text:
                await run_manager.on_llm_new_token(chunk.text, chunk=chunk)
            yield chunk

    def _chunks(self, message: AIMessage) -> Iterator[ChatGenerationChunk]:
        for piece in _TOKEN_RE.findall(str(message.content)):
            yield ChatGenerationChunk(message=AIMessageChunk(content=piece))
        if message.tool_calls:
            yield ChatGenerationChunk(
                message=AIMessageChunk(
                    content="",
                    tool_call_chunks=[
                        {
                            "name": call["name"],
                            "args": json.dumps(call["args"]),
                            "id": call["id"],
                            "index": i,
                            "type": "tool_call_chunk",
                        }
                        for i, call in enumerate(message.tool_calls)
                    ],
                )
            )
