"""agentstream.runtime.metrics: counters and gauges in Prometheus' text exposition format."""

from __future__ import annotations

import psutil

from agentstream.devstack.loadtest.usage import parse_process_metrics
from agentstream.runtime.metrics import LIMIT_HITS, LIMIT_HITS_HELP, Metrics, process_metrics


def test_empty_metrics_render_as_a_lone_newline() -> None:
    assert Metrics().render() == "\n"


def test_counter_renders_help_type_and_value() -> None:
    metrics = Metrics()
    metrics.inc("requests_total", "Requests served.")
    metrics.inc("requests_total", "Requests served.")
    assert metrics.render() == (
        "# HELP agentstream_requests_total Requests served.\n"
        "# TYPE agentstream_requests_total counter\n"
        "agentstream_requests_total 2\n"
    )


def test_prefix_is_configurable() -> None:
    metrics = Metrics(prefix="gateway")
    metrics.inc("hits_total", "Hits.")
    assert "gateway_hits_total 1\n" in metrics.render()
    assert "agentstream" not in metrics.render()


def test_labels_render_sorted_by_name_whatever_the_call_order() -> None:
    metrics = Metrics()
    metrics.inc("events_total", "Events.", zeta="z", alpha="a", mid="m")
    metrics.inc("events_total", "Events.", mid="m", alpha="a", zeta="z")
    lines = metrics.render().splitlines()
    assert 'agentstream_events_total{alpha="a",mid="m",zeta="z"} 2' in lines


def test_series_render_sorted_by_labels_and_metrics_by_name() -> None:
    metrics = Metrics()
    metrics.inc("b_total", "B.", kind="y")
    metrics.inc("b_total", "B.", kind="x", amount=3)
    metrics.inc("a_total", "A.")
    assert metrics.render() == (
        "# HELP agentstream_a_total A.\n"
        "# TYPE agentstream_a_total counter\n"
        "agentstream_a_total 1\n"
        "# HELP agentstream_b_total B.\n"
        "# TYPE agentstream_b_total counter\n"
        'agentstream_b_total{kind="x"} 3\n'
        'agentstream_b_total{kind="y"} 1\n'
    )


def test_counters_render_before_gauges_each_with_its_type() -> None:
    metrics = Metrics()
    metrics.add("open_streams", "Streams open now.", 2)
    metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="request_rate")
    assert metrics.render() == (
        f"# HELP agentstream_{LIMIT_HITS} {LIMIT_HITS_HELP}\n"
        f"# TYPE agentstream_{LIMIT_HITS} counter\n"
        f'agentstream_{LIMIT_HITS}{{limit="request_rate"}} 1\n'
        "# HELP agentstream_open_streams Streams open now.\n"
        "# TYPE agentstream_open_streams gauge\n"
        "agentstream_open_streams 2\n"
    )


def test_fractional_amounts_render_as_decimals() -> None:
    metrics = Metrics()
    metrics.inc("seconds_total", "Seconds.", amount=0.25)
    metrics.inc("seconds_total", "Seconds.", amount=1.5)
    assert "agentstream_seconds_total 1.75\n" in metrics.render()


def test_value_looks_up_counters_by_labels() -> None:
    metrics = Metrics()
    metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="request_rate")
    metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="request_rate")
    metrics.inc(LIMIT_HITS, LIMIT_HITS_HELP, limit="streams_per_key")
    assert metrics.value(LIMIT_HITS, limit="request_rate") == 2
    assert metrics.value(LIMIT_HITS, limit="streams_per_key") == 1
    assert metrics.value(LIMIT_HITS, limit="body_size") == 0
    assert metrics.value(LIMIT_HITS) == 0


def test_value_is_independent_of_label_order() -> None:
    metrics = Metrics()
    metrics.inc("x_total", "X.", a="1", b="2")
    assert metrics.value("x_total", b="2", a="1") == 1


def test_value_of_an_untouched_metric_is_zero_and_creates_nothing() -> None:
    metrics = Metrics()
    assert metrics.value("never_total") == 0
    assert metrics.value("never_total", any="label") == 0
    assert metrics.render() == "\n"


def test_gauges_go_up_and_down() -> None:
    metrics = Metrics()
    metrics.add("sse_clients", "Open SSE clients.", 1)
    metrics.add("sse_clients", "Open SSE clients.", 1)
    assert metrics.value("sse_clients") == 2
    metrics.add("sse_clients", "Open SSE clients.", -1)
    assert metrics.value("sse_clients") == 1
    assert "agentstream_sse_clients 1\n" in metrics.render()
    metrics.add("sse_clients", "Open SSE clients.", -1)
    assert metrics.value("sse_clients") == 0
    # A gauge back at zero still renders: it was seen.
    assert "# TYPE agentstream_sse_clients gauge\nagentstream_sse_clients 0\n" in metrics.render()


def test_gauges_with_labels_move_independently() -> None:
    metrics = Metrics()
    metrics.add("queue_depth", "Queued.", 5, queue="a")
    metrics.add("queue_depth", "Queued.", 2, queue="b")
    metrics.add("queue_depth", "Queued.", -3, queue="a")
    assert metrics.value("queue_depth", queue="a") == 2
    assert metrics.value("queue_depth", queue="b") == 2
    rendered = metrics.render()
    assert 'agentstream_queue_depth{queue="a"} 2\n' in rendered
    assert 'agentstream_queue_depth{queue="b"} 2\n' in rendered


def test_instances_share_no_state() -> None:
    one, two = Metrics(), Metrics()
    one.inc("x_total", "X.")
    assert two.value("x_total") == 0
    assert two.render() == "\n"


def test_latest_help_text_is_rendered() -> None:
    metrics = Metrics()
    metrics.inc("x_total", "Old help.")
    metrics.inc("x_total", "New help.")
    assert "# HELP agentstream_x_total New help.\n" in metrics.render()


def test_large_counter_values_render_exactly() -> None:
    metrics = Metrics()
    metrics.inc("bytes_total", "Bytes.", amount=1_234_567)
    assert "agentstream_bytes_total 1234567\n" in metrics.render()


def test_label_values_are_escaped() -> None:
    metrics = Metrics()
    metrics.inc("x_total", "X.", path='a"b\\c\nd')
    assert 'agentstream_x_total{path="a\\"b\\\\c\\nd"} 1\n' in metrics.render()


def test_process_metrics_give_this_processs_memory_and_cpu_in_prometheus_names() -> None:
    values = parse_process_metrics(process_metrics())
    rss = psutil.Process().memory_info().rss
    assert 0.5 * rss < values["process_resident_memory_bytes"] < 2 * rss
    assert values["process_cpu_seconds_total"] > 0
