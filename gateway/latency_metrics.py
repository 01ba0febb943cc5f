"""The gateway's latency histograms, each declared once: what it measures, its name, its buckets.

``bridge_publish_seconds``
    One callback-bridge post, from its validated events to JetStream's acknowledgement of their
    store (the conditional store, and the read of the run's last message when the replica does
    not know it): what an agent waits for per post. Observed per post stored (a retried post,
    answered ``duplicate``, too).
``post_to_first_agent_event_seconds``
    From ``POST /api/messages`` (the time in the run ID, ``run_<ULID>``, minted by the replica
    that took the POST) to the bridge storing an agent attempt's first event (its event number
    0): how long a run waited for Temporal, a worker, a sandbox and a free agent before its
    answer could start streaming. Observed once per attempt that streams, by the replica storing
    the post; a retried attempt's includes the attempts before it. Runs named by an
    ``Idempotency-Key`` or started through Temporal carry no time in their ID and are not
    counted.
``delivery_lag_seconds``
    From JetStream storing a live event (its ``Nats-Time-Stamp``, by the NATS server's clock,
    which must agree with the gateway's) to this replica's SSE writer for a client taking it
    to write (the write follows at once, in the same task): the whole live path (republish,
    the replica's subscription, its fan-out, the client's queue). Observed for the oldest event
    of a batch a client writes, for one batch in eight of each client's (its first, then every
    eighth: the quantiles of all batches, at an eighth of the cost; ``_count`` is not a count
    of deliveries); history reads (a resume, a late join, a refill) are not counted, their
    events having been stored long before.
``client_queue_wait_seconds``
    The same batch's oldest event, from this replica taking it off its subscription (and
    putting it in every client's queue) to the client's writer taking it: the part of the
    delivery lag spent waiting for this process's event loop. It grows when the replica is
    saturated, before any client falls a whole queue behind
    (``limit_hits_total{limit="client_queue"}``).

Both live-path histograms are observed together, with one clock reading, for one batch in
eight: they cost a live delivery little (the fan-out benchmark's hot path).
"""

from __future__ import annotations

from typing import NamedTuple

from ulid import ULID

from agentstream.runtime.metrics import Histogram, Metrics


class _Spec(NamedTuple):
    help_text: str
    bounds: tuple[float, ...]


# Bounds in seconds: the store and live-path ones around NATS round trips (sub-millisecond to
# seconds), the run-start one around sandbox and agent start-up (tenths of seconds to minutes).
_FAST = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_QUEUE = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
_START = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

BRIDGE_PUBLISH = "bridge_publish_seconds"
POST_TO_FIRST_AGENT_EVENT = "post_to_first_agent_event_seconds"
DELIVERY_LAG = "delivery_lag_seconds"
CLIENT_QUEUE_WAIT = "client_queue_wait_seconds"

_SPECS = {
    BRIDGE_PUBLISH: _Spec("Time to store one callback-bridge post in JetStream.", _FAST),
    POST_TO_FIRST_AGENT_EVENT: _Spec(
        "Time from POST /api/messages to the bridge storing an agent attempt's first event.",
        _START,
    ),
    DELIVERY_LAG: _Spec(
        "Time from JetStream storing a live event to an SSE client's writer taking it (oldest "
        "of a batch, one batch in 8 of each client).",
        _FAST,
    ),
    CLIENT_QUEUE_WAIT: _Spec(
        "Time from the gateway receiving a live event to an SSE client's writer taking it "
        "(oldest of a batch, one batch in 8 of each client).",
        _QUEUE,
    ),
}


def histogram(metrics: Metrics, name: str) -> Histogram:
    """The gateway histogram ``name`` (one of this module's names) in ``metrics``."""
    spec = _SPECS[name]
    return metrics.histogram(name, spec.help_text, spec.bounds)


class LiveTimings(NamedTuple):
    """The histograms a client's live deliveries are counted in."""

    queue_wait: Histogram
    delivery_lag: Histogram


def live_timings(metrics: Metrics) -> LiveTimings:
    """The live-path histograms in ``metrics``."""
    return LiveTimings(histogram(metrics, CLIENT_QUEUE_WAIT), histogram(metrics, DELIVERY_LAG))


class BridgeTimings(NamedTuple):
    """The histograms a callback-bridge post is counted in."""

    publish: Histogram
    post_to_first_agent_event: Histogram


def bridge_timings(metrics: Metrics) -> BridgeTimings:
    """The bridge's histograms in ``metrics``, looked up once rather than on every post."""
    return BridgeTimings(
        histogram(metrics, BRIDGE_PUBLISH), histogram(metrics, POST_TO_FIRST_AGENT_EVENT)
    )


def declare_all(metrics: Metrics) -> None:
    """Make every gateway histogram, so ``/metrics`` shows each from the start."""
    for name in _SPECS:
        histogram(metrics, name)


_ULID_RUN_PREFIX = "run_"
_ULID_CHARS = 26


def posted_at(run: str) -> float | None:
    """When ``run`` was posted (seconds since the epoch), if its ID is the ``run_<ULID>`` that
    ``POST /api/messages`` mints; None for any other ID."""
    if not run.startswith(_ULID_RUN_PREFIX) or len(run) != len(_ULID_RUN_PREFIX) + _ULID_CHARS:
        return None
    try:
        return ULID.from_str(run[len(_ULID_RUN_PREFIX) :]).timestamp
    except ValueError:
        return None
