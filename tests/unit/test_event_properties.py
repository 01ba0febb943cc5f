"""Properties of the event codec: every event type round-trips; any input decodes or is refused.

The strategies are derived from the Structs' own type information (``msgspec.inspect``), so a
field or an event type added to ``schemas`` is generated without touching this file, and a field
type nobody taught the generator fails loudly instead of being skipped.
"""

from __future__ import annotations

import json
import typing
from typing import Any

import msgspec
import msgspec.inspect as mi
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas import BaseEvent, Event, TerminalEvent, decode_event, decode_event_batch, encode

EVENT_TYPES: tuple[type[BaseEvent], ...] = typing.get_args(Event)
TAGS = [cls.__struct_config__.tag for cls in EVENT_TYPES]

INT64 = st.integers(min_value=-(2**63), max_value=2**63 - 1)
# Arbitrary unicode including NUL and every control character; hypothesis leaves out lone
# surrogates, which a Python str can hold but UTF-8 (hence JSON) cannot.
TEXT = st.text()
FINITE_FLOATS = st.floats(allow_nan=False, allow_infinity=False)
JSON_VALUES: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | INT64 | FINITE_FLOATS | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)

PROPERTY_SETTINGS = settings(max_examples=200, deadline=None)


def strategy_for(t: mi.Type) -> st.SearchStrategy[Any]:
    """Values of the msgspec type ``t``; structs get every optional field present or omitted."""
    if isinstance(t, mi.StructType):
        required = {f.name: strategy_for(f.type) for f in t.fields if f.required}
        optional = {f.name: strategy_for(f.type) for f in t.fields if not f.required}
        cls = t.cls
        return st.fixed_dictionaries(required, optional=optional).map(lambda kw: cls(**kw))
    if isinstance(t, mi.StrType):
        if t.pattern is not None:
            return st.from_regex(t.pattern, fullmatch=True)
        return st.text(min_size=t.min_length or 0, max_size=t.max_length)
    if isinstance(t, mi.IntType):
        # int64 unless the field says otherwise (no event field does today).
        low = t.ge if t.ge is not None else (t.gt + 1 if t.gt is not None else -(2**63))
        high = t.le if t.le is not None else (t.lt - 1 if t.lt is not None else 2**63 - 1)
        return st.integers(min_value=low, max_value=high)
    if isinstance(t, mi.FloatType):
        return FINITE_FLOATS
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.AnyType):
        return JSON_VALUES
    if isinstance(t, mi.EnumType):
        return st.sampled_from(list(t.cls))
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.UnionType):
        return st.one_of(*(strategy_for(member) for member in t.types))
    if isinstance(t, mi.ListType):
        return st.lists(strategy_for(t.item_type), max_size=3)
    if isinstance(t, mi.DictType):
        return st.dictionaries(strategy_for(t.key_type), strategy_for(t.value_type), max_size=4)
    raise NotImplementedError(f"no strategy for msgspec type {t!r}: teach strategy_for about it")


EVENT_STRATEGIES: dict[type[BaseEvent], st.SearchStrategy[Any]] = {
    cls: strategy_for(mi.type_info(cls)) for cls in EVENT_TYPES
}
ANY_EVENT: st.SearchStrategy[Any] = st.one_of(*EVENT_STRATEGIES.values())


def decode_or_refuse(data: bytes) -> list[Event]:
    """What the bridge relies on: a list of events, or a msgspec error it maps to a 400."""
    try:
        events = decode_event_batch(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return []
    assert isinstance(events, list)
    assert all(isinstance(event, EVENT_TYPES) for event in events), events
    # What was accepted is stored re-encoded: that must read back as the same events.
    assert decode_event_batch(encode(events)) == events
    return events


def test_every_event_class_is_in_the_union() -> None:
    def subclasses(cls: type[BaseEvent]) -> set[type[BaseEvent]]:
        found = set(cls.__subclasses__())
        return found.union(*(subclasses(sub) for sub in found))

    # TerminalEvent only gathers the fields the three terminal types share.
    assert subclasses(BaseEvent) - {TerminalEvent} == set(EVENT_TYPES)
    assert len(set(TAGS)) == len(EVENT_TYPES), "every event type has its own tag"


@pytest.mark.parametrize("cls", EVENT_TYPES, ids=lambda cls: cls.__name__)
@PROPERTY_SETTINGS
@given(data=st.data())
def test_every_event_type_round_trips(cls: type[BaseEvent], data: st.DataObject) -> None:
    event = data.draw(EVENT_STRATEGIES[cls], label="event")
    wire = encode(event)
    decoded = decode_event(wire)
    assert type(decoded) is cls
    assert decoded == event
    assert encode(decoded) == wire, "encoding is stable"
    assert decode_event_batch(wire) == [event], "a bare event is a batch of one"


@PROPERTY_SETTINGS
@given(first=ANY_EVENT, second=ANY_EVENT)
def test_a_pair_of_events_round_trips_as_a_batch(first: Event, second: Event) -> None:
    assert decode_event_batch(encode([first, second])) == [first, second]


@PROPERTY_SETTINGS
@given(events=st.lists(ANY_EVENT, max_size=6))
def test_batches_round_trip_in_order(events: list[Event]) -> None:
    assert decode_event_batch(encode(events)) == events


@PROPERTY_SETTINGS
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_decoded_or_refused(data: bytes) -> None:
    decode_or_refuse(data)


# Text that may hold lone surrogates: JSON escapes them (``\ud800``) or, written raw with
# ``surrogatepass``, they become bytes that are not UTF-8.
WILD_TEXT = st.text(st.characters(codec=None) | st.characters(categories=["Cs"]), max_size=20)
WILD_JSON: st.SearchStrategy[Any] = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | WILD_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(WILD_TEXT, inner, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated_events(draw: st.DrawFn) -> Any:
    """A valid event as JSON data, then perhaps broken: a field dropped, replaced or added."""
    obj: dict[str, Any] = msgspec.to_builtins(draw(ANY_EVENT))
    key = draw(st.sampled_from(sorted(obj)))
    match draw(st.sampled_from(["keep", "drop", "replace", "add", "retag"])):
        case "drop":
            del obj[key]
        case "replace":
            obj[key] = draw(WILD_JSON)
        case "add":
            obj[draw(WILD_TEXT)] = draw(WILD_JSON)
        case "retag":
            obj["type"] = draw(st.sampled_from(TAGS) | WILD_JSON)
    return obj


@st.composite
def json_ish_bodies(draw: st.DrawFn) -> bytes:
    """JSON documents (events, broken events, arrays of them, anything) and near-JSON text."""
    value = draw(
        st.one_of(
            WILD_JSON,
            mutated_events(),
            st.lists(mutated_events(), max_size=4),
            st.lists(st.one_of(mutated_events(), WILD_JSON), max_size=4),
        )
    )
    # NaN and Infinity come out as such: not JSON, so they must be refused.
    text = json.dumps(value, ensure_ascii=draw(st.booleans()))
    edit = draw(st.sampled_from(["none", "truncate", "insert", "delete"]))
    if edit != "none" and text:
        at = draw(st.integers(0, len(text) - 1))
        if edit == "truncate":
            text = text[:at]
        elif edit == "insert":
            text = text[:at] + draw(WILD_TEXT) + text[at:]
        else:
            text = text[:at] + text[at + 1 :]
    return text.encode("utf-8", "surrogatepass")


@PROPERTY_SETTINGS
@given(body=json_ish_bodies())
def test_random_json_is_decoded_or_refused(body: bytes) -> None:
    decode_or_refuse(body)


@PROPERTY_SETTINGS
@given(events=st.lists(ANY_EVENT, min_size=1, max_size=4))
def test_valid_batches_are_decoded_not_refused(events: list[Event]) -> None:
    """The refusal path is not taken for valid input: the properties above are not vacuous."""
    assert decode_or_refuse(encode(events)) == events


# Values typed Any (ToolStart.input) and unknown fields may nest arbitrarily; msgspec raises
# RecursionError past Python's recursion limit. That once escaped decode_event_batch, and the
# bridge answered a 20 kB body with a 500: it must be a DecodeError like any malformed JSON.
_DEEP = 10_000
_DEEP_BODIES = {
    "tool_start_input": b'{"type": "tool_start", "run": "r", "call_id": "c", "name": "n", '
    b'"input": {"a": ' + b"[" * _DEEP + b"]" * _DEEP + b"}}",
    "unknown_field": b'{"type": "token", "run": "r", "text": "t", "extra": '
    + b"[" * _DEEP
    + b"]" * _DEEP
    + b"}",
}


@pytest.mark.parametrize("where", sorted(_DEEP_BODIES))
def test_deeply_nested_json_is_refused_not_crashing(where: str) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_event_batch(_DEEP_BODIES[where])
    with pytest.raises(msgspec.DecodeError):
        decode_event(_DEEP_BODIES[where])


@PROPERTY_SETTINGS
@given(depth=st.integers(min_value=1, max_value=3_000), array=st.booleans())
def test_nesting_at_any_depth_is_decoded_or_refused(depth: int, array: bool) -> None:
    opening, closing = (b"[", b"]") if array else (b'{"k": ', b"}")
    nested = opening * depth + b"1" + closing * depth
    decode_or_refuse(
        b'{"type": "tool_start", "run": "r", "call_id": "c", "name": "n", '
        b'"input": {"a": ' + nested + b"}}"
    )
