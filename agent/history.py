"""A conversation's earlier turns as the chat history the model reads before the new message.

Each turn is the user's message and the assistant's answer, the SQL that answer ran appended to
it as context: a follow-up ("and the five lowest?") can then be answered by changing the earlier
query. Plain messages, not replayed tool calls, so every chat model accepts them as they are.
"""

from __future__ import annotations

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage

from schemas import Turn

SQL_CONTEXT_HEADING = "SQL run for this answer:"


def history_messages(turns: list[Turn]) -> list[AnyMessage]:
    """The turns, oldest first, as alternating human and assistant messages."""
    messages: list[AnyMessage] = []
    for turn in turns:
        messages.append(HumanMessage(turn.prompt))
        messages.append(AIMessage(_answer_with_sql(turn)))
    return messages


def _answer_with_sql(turn: Turn) -> str:
    if not turn.sql:
        return turn.answer
    queries = "\n".join(f"```sql\n{sql}\n```" for sql in turn.sql)
    return f"{turn.answer}\n\n{SQL_CONTEXT_HEADING}\n{queries}"
