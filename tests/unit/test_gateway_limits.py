"""gateway.limits: the per-key token bucket and the per-key concurrent stream slots."""

from __future__ import annotations

import pytest

from agentstream.runtime.http import TooManyRequests
from gateway.limits import RateLimiter, StreamSlots


class _Clock:
    """A settable stand-in for ``time.monotonic``."""

    def __init__(self, now: float = 1_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    # gateway.limits reads the clock as ``time.monotonic()``; patched for this test only.
    monkeypatch.setattr("gateway.limits.time.monotonic", fake)
    return fake


def _refused(limiter: RateLimiter, key: str) -> TooManyRequests:
    with pytest.raises(TooManyRequests) as info:
        limiter.check(key)
    return info.value


# --- RateLimiter ---------------------------------------------------------------------------


def test_rate_limiter_allows_a_burst_then_refuses_with_429(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    for _ in range(3):
        limiter.check("k")
    error = _refused(limiter, "k")
    assert error.status == 429
    assert error.limit == "request_rate"
    assert error.headers is not None
    assert int(error.headers["Retry-After"]) >= 1


def test_rate_limiter_retry_after_rounds_up_the_wait(clock: _Clock) -> None:
    # One token every 4 s: an empty bucket must wait 4 s, not 1.
    limiter = RateLimiter(rate=0.25, burst=1)
    limiter.check("k")
    error = _refused(limiter, "k")
    assert error.headers == {"Retry-After": "4"}
    clock.advance(1.5)
    assert _refused(limiter, "k").headers == {"Retry-After": "3"}


def test_rate_limiter_keys_are_independent(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    for _ in range(3):
        limiter.check("a")
    _refused(limiter, "a")
    for _ in range(3):
        limiter.check("b")
    _refused(limiter, "b")


@pytest.mark.parametrize("rate", [0, 0.0, -1.0])
def test_rate_limiter_with_non_positive_rate_is_disabled(clock: _Clock, rate: float) -> None:
    limiter = RateLimiter(rate=rate, burst=1)
    for _ in range(1_000):
        limiter.check("k")
    assert len(limiter._buckets) == 0


def test_rate_limiter_refills_tokens_over_time(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    for _ in range(3):
        limiter.check("k")
    _refused(limiter, "k")
    clock.advance(0.1)  # half a token
    _refused(limiter, "k")
    clock.advance(0.1)  # now a whole one
    limiter.check("k")
    _refused(limiter, "k")


def test_rate_limiter_refill_is_capped_at_the_burst(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    limiter.check("k")
    clock.advance(3_600)
    for _ in range(3):
        limiter.check("k")
    _refused(limiter, "k")


def test_rate_limiter_refused_requests_take_no_token(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=1)
    limiter.check("k")
    for _ in range(10):
        _refused(limiter, "k")
    clock.advance(0.2)
    limiter.check("k")


def test_rate_limiter_memory_is_bounded(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    for i in range(20_000):
        limiter.check(f"key-{i}")
    assert len(limiter._buckets) <= 10_000
    # The most recent keys are the ones kept.
    assert "key-19999" in limiter._buckets
    assert "key-0" not in limiter._buckets


def test_rate_limiter_keeps_recently_used_keys_when_evicting(clock: _Clock) -> None:
    limiter = RateLimiter(rate=5, burst=3)
    for _ in range(3):
        limiter.check("busy")
    for i in range(20_000):
        limiter.check(f"key-{i}")
        if i % 1_000 == 0:
            # Refused, but touched: stays among the most recently used.
            _refused(limiter, "busy")
    assert "busy" in limiter._buckets
    _refused(limiter, "busy")


# --- StreamSlots ---------------------------------------------------------------------------


def test_stream_slots_refuse_beyond_the_limit() -> None:
    slots = StreamSlots(2)
    slots.acquire("k")
    slots.acquire("k")
    with pytest.raises(TooManyRequests) as info:
        slots.acquire("k")
    assert info.value.status == 429
    assert info.value.limit == "streams_per_key"
    assert info.value.headers is not None
    assert int(info.value.headers["Retry-After"]) >= 1


def test_stream_slots_keys_are_independent() -> None:
    slots = StreamSlots(1)
    slots.acquire("a")
    slots.acquire("b")
    with pytest.raises(TooManyRequests):
        slots.acquire("a")


@pytest.mark.parametrize("releases", [1, 2])
def test_a_stream_slot_released_once_or_more_frees_one_slot(releases: int) -> None:
    slots = StreamSlots(2)
    first = slots.acquire("k")
    slots.acquire("k")
    for _ in range(releases):
        first()
    assert slots.open_streams == 1
    slots.acquire("k")
    with pytest.raises(TooManyRequests):
        slots.acquire("k")


def test_stream_slots_count_open_streams() -> None:
    slots = StreamSlots(3)
    assert slots.open_streams == 0
    releases = [slots.acquire("a"), slots.acquire("a"), slots.acquire("b")]
    assert slots.open_streams == 3
    releases.append(slots.acquire("a"))
    assert slots.open_streams == 4
    with pytest.raises(TooManyRequests):
        slots.acquire("a")
    assert slots.open_streams == 4
    for release in releases[1:]:
        release()
    assert slots.open_streams == 1
    # Fully released keys leave nothing behind.
    assert "b" not in slots._open
    releases[0]()
    assert slots.open_streams == 0
    assert len(slots._open) == 0


def test_stream_slots_refusal_does_not_count_as_open() -> None:
    slots = StreamSlots(1)
    release = slots.acquire("k")
    for _ in range(5):
        with pytest.raises(TooManyRequests):
            slots.acquire("k")
    assert slots.open_streams == 1
    release()
    assert slots.open_streams == 0
