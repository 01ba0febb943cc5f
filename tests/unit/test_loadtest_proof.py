"""agentstream.devstack.loadtest: its own completeness check and its SSE frame parser."""

from __future__ import annotations

import json
import random

import pytest

from agentstream.devstack.loadtest.proof import Claim, ProofCheck, Verdict, claim_of
from agentstream.devstack.loadtest.sse import FrameParser, MalformedStream
from schemas.completeness import CompletenessTally

# (seq, data) of a run's events before its terminal one; seqs need not be contiguous (the
# stream sequence is shared by every run).
EVENTS = [(3, b'{"type":"status","stage":"queued"}'), (5, b'{"type":"token","text":"hi"}')]
EVENTS += [(9 + i, f'{{"type":"token","text":"t{i}"}}'.encode()) for i in range(8)]


def _claim(events: list[tuple[int, bytes]]) -> Claim:
    """What the server's terminal event says, computed by the server's own code."""
    tally = CompletenessTally()
    for seq, data in events:
        tally.add(seq, data)
    proof = tally.proof()
    return Claim(events=proof.events, sha256=proof.sha256)


def _check(received: list[tuple[int, bytes]]) -> ProofCheck:
    check = ProofCheck()
    for seq, data in received:
        check.add(seq, data)
    return check


def test_every_event_once_in_order_holds() -> None:
    check = _check(EVENTS)
    assert check.verdict(_claim(EVENTS), terminal_seen=True) == Verdict.OK
    assert check.lost(_claim(EVENTS)) == 0


def test_hash_matches_a_known_answer_from_the_contract() -> None:
    check = _check([(1, b'{"a":1}'), (7, '{"b":"é"}'.encode())])
    assert check.digest.hex() == "d12e0ab2800c3dab8e51da4ecef27a3baefd4fcaf51c5c21975aaa9ae78ac906"


def test_agrees_with_the_servers_implementation_on_random_runs() -> None:
    rng = random.Random(8)
    for _ in range(50):
        seqs = sorted(rng.sample(range(1, 10_000), rng.randint(0, 40)))
        events = [(s, rng.randbytes(rng.randint(0, 300))) for s in seqs]
        assert _check(events).verdict(_claim(events), terminal_seen=True) == Verdict.OK


def test_a_missing_event_is_caught_and_counted_lost() -> None:
    received = EVENTS[:4] + EVENTS[5:]
    check = _check(received)
    assert check.verdict(_claim(EVENTS), terminal_seen=True) == Verdict.COUNT
    assert check.lost(_claim(EVENTS)) == 1


def test_a_tampered_event_is_caught() -> None:
    seq, data = EVENTS[6]
    received = [*EVENTS[:6], (seq, data.replace(b"t4", b"t5")), *EVENTS[7:]]
    assert _check(received).verdict(_claim(EVENTS), terminal_seen=True) == Verdict.HASH


def test_a_replaced_sequence_number_is_caught() -> None:
    seq, data = EVENTS[6]
    received = [*EVENTS[:6], (seq + 1000, data), *EVENTS[7:]]
    assert _check(received).verdict(_claim(EVENTS), terminal_seen=True) == Verdict.HASH


def test_a_duplicated_event_is_counted_and_not_folded_twice() -> None:
    received = [*EVENTS[:5], EVENTS[4], *EVENTS[5:]]
    check = _check(received)
    assert check.duplicates == 1
    assert check.events == len(EVENTS)
    # The distinct events still match: the duplicate is reported on its own.
    assert check.verdict(_claim(EVENTS), terminal_seen=True) == Verdict.OK


def test_reordered_events_are_counted_and_fail_the_proof() -> None:
    received = [*EVENTS[:3], EVENTS[4], EVENTS[3], *EVENTS[5:]]
    check = _check(received)
    assert check.reordered == 1
    assert check.verdict(_claim(EVENTS), terminal_seen=True) == Verdict.HASH


def test_a_terminal_without_proof_is_a_failure_not_a_pass() -> None:
    check = _check(EVENTS)
    assert check.verdict(None, terminal_seen=True) == Verdict.MISSING
    assert check.verdict(_claim(EVENTS), terminal_seen=False) == Verdict.NO_TERMINAL


def test_an_event_without_id_makes_the_stream_malformed() -> None:
    check = _check(EVENTS)
    assert not check.add(None, b"{}")
    assert check.verdict(_claim(EVENTS), terminal_seen=True) == Verdict.MALFORMED


def test_claim_is_read_from_the_terminal_event() -> None:
    done = {"type": "done", "completeness": {"events": 4, "sha256": "AB" * 32}}
    assert claim_of(json.dumps(done).encode()) == Claim(events=4, sha256="ab" * 32)
    assert claim_of(json.dumps({"type": "done", "completeness": None}).encode()) is None
    assert claim_of(b'{"type":"done"}') is None
    assert claim_of(b"not json") is None
    assert claim_of(b'{"completeness":{"events":"4","sha256":"x"}}') is None


WIRE = (
    b": run r\r\nretry: 2000\r\n\r\n"
    b'id: 1\r\nevent: status\r\ndata: {"a":1}\r\n\r\n'
    b": ping\r\n\r\n"
    b"id: 2\r\nevent: token\r\ndata: line one\r\ndata: line two\r\n\r\n"
    b'id: 3\nevent: done\ndata: {"z":0}\n\n'
)


@pytest.mark.parametrize("size", [1, 2, 3, 7, 64, len(WIRE)])
def test_frames_parse_whatever_the_chunking(size: int) -> None:
    parser = FrameParser()
    frames = []
    for start in range(0, len(WIRE), size):
        frames += parser.feed(WIRE[start : start + size])
    assert [(f.id, f.event, f.data) for f in frames] == [
        (1, "status", b'{"a":1}'),
        (2, "token", b"line one\nline two"),
        (3, "done", b'{"z":0}'),
    ]


def test_a_non_numeric_id_is_malformed() -> None:
    with pytest.raises(MalformedStream):
        FrameParser().feed(b"id: \xd9\xa3\r\ndata: {}\r\n\r\n")
