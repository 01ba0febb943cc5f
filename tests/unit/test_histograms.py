"""Histograms in Prometheus' text format, and what the gateway's latency histograms read."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import cast

from nats.aio.client import Client
from nats.aio.msg import Msg
from ulid import ULID

from agentstream.runtime.metrics import Histogram, Metrics
from agentstream.runtime.nats_contract import stored_at
from gateway.latency_metrics import (
    BRIDGE_PUBLISH,
    CLIENT_QUEUE_WAIT,
    DELIVERY_LAG,
    POST_TO_FIRST_AGENT_EVENT,
    declare_all,
    live_timings,
    posted_at,
)
from gateway.live_hub import RESYNC, Watcher
from gateway.sse_frames import Frame, live_frames


def test_histogram_renders_cumulative_buckets_sum_and_count() -> None:
    metrics = Metrics()
    latency = metrics.histogram("latency_seconds", "Latency.", (0.1, 1.0, 0.5))
    for value in (0.05, 0.1, 0.3, 0.7, 2.0):
        latency.observe(value)
    assert metrics.render() == (
        "# HELP agentstream_latency_seconds Latency.\n"
        "# TYPE agentstream_latency_seconds histogram\n"
        'agentstream_latency_seconds_bucket{le="0.1"} 2\n'
        'agentstream_latency_seconds_bucket{le="0.5"} 3\n'
        'agentstream_latency_seconds_bucket{le="1"} 4\n'
        'agentstream_latency_seconds_bucket{le="+Inf"} 5\n'
        "agentstream_latency_seconds_sum 3.15\n"
        "agentstream_latency_seconds_count 5\n"
    )
    assert (latency.count, round(latency.sum, 9)) == (5, 3.15)


def test_a_value_on_a_bound_counts_in_that_bucket() -> None:
    histogram = Histogram((1.0, 2.0))
    histogram.observe(1.0)
    assert 'x_bucket{le="1"} 1' in histogram.lines("x")


def test_an_unobserved_histogram_renders_zeroes() -> None:
    metrics = Metrics()
    metrics.histogram("idle_seconds", "Idle.", (1.0,))
    assert metrics.render().splitlines()[2:] == [
        'agentstream_idle_seconds_bucket{le="1"} 0',
        'agentstream_idle_seconds_bucket{le="+Inf"} 0',
        "agentstream_idle_seconds_sum 0",
        "agentstream_idle_seconds_count 0",
    ]


def test_the_same_name_gives_the_same_histogram() -> None:
    metrics = Metrics()
    first = metrics.histogram("h_seconds", "H.", (1.0,))
    assert metrics.histogram("h_seconds", "H.", (1.0,)) is first


def test_histograms_render_after_counters_and_gauges() -> None:
    metrics = Metrics()
    metrics.histogram("a_seconds", "A.", (1.0,))
    metrics.inc("b_total", "B.")
    metrics.add("c", "C.", 1)
    types = [line for line in metrics.render().splitlines() if line.startswith("# TYPE")]
    assert [t.split()[-1] for t in types] == ["counter", "gauge", "histogram"]


def test_the_gateway_declares_its_four_histograms_from_the_start() -> None:
    metrics = Metrics()
    declare_all(metrics)
    text = metrics.render()
    for name in (BRIDGE_PUBLISH, POST_TO_FIRST_AGENT_EVENT, DELIVERY_LAG, CLIENT_QUEUE_WAIT):
        assert f"# TYPE agentstream_{name} histogram\n" in text
        assert f"agentstream_{name}_count 0\n" in text


def test_posted_at_reads_the_time_in_a_minted_run_id() -> None:
    before = time.time()
    run = f"run_{ULID()}"
    assert before - 0.002 <= (posted_at(run) or 0.0) <= time.time()
    # An Idempotency-Key's run, an ID a Temporal client chose: no time in them.
    assert posted_at("run_" + "a" * 40) is None
    assert posted_at("my-own-run") is None
    assert posted_at("run_" + "U" * 26) is None


def test_stored_at_reads_jetstreams_time_stamp_header() -> None:
    assert stored_at({"Nats-Time-Stamp": "2026-11-30T12:00:00.123456789Z"}) == (
        1_796_040_000.123456
    )
    assert stored_at({"Nats-Time-Stamp": "2026-11-30T12:00:00Z"}) == 1_796_040_000.0
    assert stored_at({}) == 0.0
    assert stored_at({"Nats-Time-Stamp": "yesterday"}) == 0.0


def _live_message(stamp: str | None) -> Msg:
    headers = {"Nats-Sequence": "7", "Nats-Last-Sequence": "3", "Agentstream-Type": "token"}
    if stamp is not None:
        headers["Nats-Time-Stamp"] = stamp
    return Msg(cast(Client, None), subject="live.default.run_1", data=b"{}", headers=headers)


def test_a_live_frame_carries_when_it_was_stored_and_received() -> None:
    stored_wall = datetime.now(UTC) - timedelta(seconds=2)
    before = time.monotonic()
    (frame,) = live_frames(_live_message(stored_wall.isoformat().replace("+00:00", "Z")))
    assert before <= frame.received <= time.monotonic()
    assert 1.9 < frame.received - frame.stored < 2.5
    # A server clock ahead of ours: stored no later than received, never a negative lag.
    (ahead,) = live_frames(_live_message((datetime.now(UTC) + timedelta(seconds=5)).isoformat()))
    assert ahead.stored == ahead.received
    (unstamped,) = live_frames(_live_message(None))
    assert unstamped.received and not unstamped.stored


async def test_a_client_counts_the_oldest_live_events_wait_and_lag_of_one_batch_in_8() -> None:
    metrics = Metrics()
    timings = live_timings(metrics)
    watcher = Watcher("run_1", 8, timings=timings)
    now = time.monotonic()
    old = Frame(1000, 1, 0, False, b"a", stored=now - 3.0, received=now - 2.0)
    new = Frame(2000, 2, 1, False, b"b", stored=now - 0.5, received=now)
    watcher.offer_all((old, new))
    assert await watcher.take(1.0) == [old, new]
    assert timings.queue_wait.count == 1 and 2.0 <= timings.queue_wait.sum < 2.5
    assert timings.delivery_lag.count == 1 and 3.0 <= timings.delivery_lag.sum < 3.5
    # The next seven batches are not counted, the one after them is.
    for _ in range(7):
        watcher.offer(new)
        assert await watcher.take(1.0) == [new]
    assert (timings.queue_wait.count, timings.delivery_lag.count) == (1, 1)
    watcher.offer(new)
    await watcher.take(1.0)
    assert (timings.queue_wait.count, timings.delivery_lag.count) == (2, 2)
    # An empty take (a quiet spell) is no batch.
    assert await watcher.take(0.01) == []
    # History frames and signals carry no live times: a counted batch led by one counts nothing.
    for _ in range(8):
        watcher.offer_all((Frame(3000, 3, 2, False, b"c"), RESYNC))
        assert len(await watcher.take(1.0)) == 2
    assert (timings.queue_wait.count, timings.delivery_lag.count) == (2, 2)
