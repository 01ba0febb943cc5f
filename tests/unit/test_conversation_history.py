"""A conversation's history for the agent: bounded, turned into chat messages, and read by the
offline scripted model so a follow-up keeps the earlier question's subject."""

from __future__ import annotations

import msgspec
from langchain_core.messages import AIMessage, HumanMessage

from agent.history import history_messages
from agent.scripted_analysis import is_follow_up, query_for
from agentstream.runtime.message_store import bounded
from schemas import AgentRequest, Turn, encode


def _turn(n: int, size: int = 10) -> Turn:
    return Turn(prompt=f"q{n}".ljust(size, "."), answer=f"a{n}".ljust(size, "."), sql=[])


def test_history_keeps_the_newest_turns_that_fit() -> None:
    turns = [_turn(n) for n in range(5)]  # 20 characters each
    assert bounded(turns, 1000) == turns
    assert bounded(turns, 60) == turns[2:]
    # The oldest turn kept is cut when it alone overflows what is left.
    kept = bounded(turns, 70)
    assert kept[1:] == turns[2:]
    assert kept[0] == Turn(prompt="q1........", answer="", sql=[])
    assert bounded(turns, 0) == []
    assert sum(len(t.prompt) + len(t.answer) for t in bounded(turns, 45)) == 45


def test_a_cut_turn_keeps_whole_statements_only() -> None:
    turn = Turn(prompt="p" * 5, answer="a" * 50, sql=["SELECT 1", "SELECT 22222"])
    assert bounded([turn], 15) == [Turn(prompt="p" * 5, answer="aa", sql=["SELECT 1"])]


def test_history_becomes_alternating_messages_with_the_sql_as_context() -> None:
    turns = [
        Turn(prompt="top 5?", answer="Here.", sql=["SELECT 1", "SELECT 2"]),
        Turn(prompt="thanks", answer="You're welcome."),
    ]
    messages = history_messages(turns)
    assert [type(m) for m in messages] == [HumanMessage, AIMessage, HumanMessage, AIMessage]
    assert messages[0].content == "top 5?"
    assert messages[1].content == (
        "Here.\n\nSQL run for this answer:\n```sql\nSELECT 1\n```\n```sql\nSELECT 2\n```"
    )
    assert messages[3].content == "You're welcome."
    assert history_messages([]) == []


def test_an_agent_request_carries_its_history_and_defaults_to_none() -> None:
    request = AgentRequest(
        run="run_1", attempt=1, prompt="and?", callback_url="http://gw", history=[_turn(1)]
    )
    assert msgspec.json.decode(encode(request), type=AgentRequest).history == [_turn(1)]
    old = b'{"run": "run_1", "attempt": 1, "prompt": "x", "callback_url": "http://gw"}'
    assert msgspec.json.decode(old, type=AgentRequest).history == []


FIRST = "Tampilkan top 5 provinsi dengan rata-rata modal awal koperasi tertinggi"


def test_a_follow_up_takes_its_subject_from_the_earlier_question() -> None:
    assert is_follow_up("and the five lowest?")
    assert not is_follow_up("thanks!")
    first = query_for(FIRST)
    assert first.sql.endswith("GROUP BY provinsi ORDER BY nilai DESC LIMIT 5")
    follow = query_for("and the five lowest?", (FIRST,))
    assert follow.sql == first.sql.replace("DESC", "ASC")
    assert not follow.indonesian and not follow.highest
    # What the follow-up says wins; the newest earlier question comes before older ones.
    three = query_for("and the 3 highest by assets?", ("and the five lowest?", FIRST))
    assert "sum(total_aset)" not in three.sql and "avg(total_aset)" in three.sql
    assert three.sql.endswith("ORDER BY nilai DESC LIMIT 3")
    assert query_for("now the lowest", ("and the ten highest", FIRST)).count == 10
