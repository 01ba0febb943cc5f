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
from langchain_core.messages.tool import ToolCall
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable

from agent.scripted_analysis import (
    TABLE,
    answer_for,
    is_data_question,
    is_follow_up,
    query_for,
)

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


_DISCLAIMER = (
    "(This answer comes from the offline scripted model: no LLM is configured. "
    "Set AGENT_MODEL to use a real one.)"
)


def _call(name: str, args: dict[str, Any], step: int) -> ToolCall:
    return {"name": name, "args": args, "id": f"call_{name}_{step}", "type": "tool_call"}


class ScriptedChatModel(BaseChatModel):
    """Plays one of two fixed plans, chosen by the question and the tools it was given.

    Sandbox plan: write ``analysis.py`` → run it → answer with its output. Analysis plan (a
    question about the data, SQL tools bound): list tables → describe the table → run a query →
    answer with the rows it returned.
    """

    token_delay_s: float = 0.02
    tool_names: tuple[str, ...] = ()

    @property
    def _llm_type(self) -> str:
        return SCRIPTED_MODEL_NAME

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": SCRIPTED_MODEL_NAME}

    def bind_tools(
        self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Remember which tools exist, so the plan only calls tools it was given."""
        names = tuple(getattr(tool, "name", "") for tool in tools)
        return self.model_copy(update={"tool_names": names})

    def _next_step(self, messages: list[BaseMessage]) -> AIMessage:
        last_human = max(
            (i for i, m in enumerate(messages) if isinstance(m, HumanMessage)), default=-1
        )
        prompt = str(messages[last_human].content) if last_human >= 0 else ""
        results = [str(m.content) for m in messages[last_human + 1 :] if isinstance(m, ToolMessage)]
        # The conversation's earlier questions, newest first: a follow-up takes its subject there.
        earlier = tuple(
            str(m.content) for m in reversed(messages[:last_human]) if isinstance(m, HumanMessage)
        )
        if "run_sql" in self.tool_names and (
            is_data_question(prompt)
            or (is_follow_up(prompt) and any(is_data_question(e) for e in earlier))
        ):
            return self._analysis_step(prompt, results, earlier)
        if "write_file" in self.tool_names and "run_command" in self.tool_names:
            return self._sandbox_step(prompt, results)
        return AIMessage(content=f"I have no tools for this request. {_DISCLAIMER}")

    def _sandbox_step(self, prompt: str, results: list[str]) -> AIMessage:
        if not results:
            return AIMessage(
                content="I'll write a small script about your message in the sandbox. ",
                tool_calls=[
                    _call("write_file", {"path": _SCRIPT_PATH, "content": _script_for(prompt)}, 1)
                ],
            )
        if len(results) == 1:
            return AIMessage(
                content="Now I'll run it. ",
                tool_calls=[_call("run_command", {"command": f"python3 {_SCRIPT_PATH}"}, 2)],
            )
        return AIMessage(
            content=(
                f"I wrote `{_SCRIPT_PATH}` in the sandbox and ran it. It printed:\n\n"
                f"{results[-1].strip()}\n\n{_DISCLAIMER}"
            )
        )

    def _analysis_step(
        self, prompt: str, results: list[str], earlier: tuple[str, ...]
    ) -> AIMessage:
        query = query_for(prompt, earlier)
        plan = [
            ("Let me see which tables I can query. ", _call("list_tables", {}, 1)),
            ("Now the table's columns. ", _call("describe_table", {"table": TABLE}, 2)),
            ("Running the query. ", _call("run_sql", {"query": query.sql}, 3)),
        ]
        if len(results) < len(plan):
            text, call = plan[len(results)]
            return AIMessage(content=text, tool_calls=[call])
        return AIMessage(content=f"{answer_for(query, results[-1])}\n\n{_DISCLAIMER}")

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
