"""``make bench`` at a tiny size against both systems, so the harness cannot rot unnoticed."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.report import as_json, table
from benchmarks.run import bench
from benchmarks.scenarios import Options, scenarios
from benchmarks.systems import AGENTSTREAM, NULL_SINK, RELAY


async def test_every_scenario_runs_on_both_systems_with_every_event_once_in_order(
    tmp_path: Path,
) -> None:
    options = Options(
        duration_s=0.5, fanout_events=20, readers=5, idle_connections=(20,), messages=1, drain_s=10
    )
    rows = await bench(options, repetitions=1, only=None)

    assert [s.key for s, _ in rows] == [s.key for s in scenarios(options)]
    for scenario, cells in rows:
        expected = set(scenario.only or (NULL_SINK, RELAY, AGENTSTREAM))
        assert set(cells) == expected, scenario.key
        for name, cell in cells.items():
            assert cell.figures[scenario.headline] > 0, (scenario.key, name, cell.figures)
            if scenario.key != "first_event":
                # Events checked at every reader (idle: every connection served).
                assert cell.intact is True, (scenario.key, name, cell.detail)
            assert 0 < cell.generator_cpu < 200, (scenario.key, name)
            if scenario.key.startswith("fanout"):
                # The server's own CPU per delivery, read from its process (at this size it may
                # round to 0: CPU time comes in clock ticks).
                assert cell.figures["server_us_per_delivery"] >= 0, (scenario.key, name)
    rendered = table(rows)
    for scenario, _ in rows:
        assert scenario.label in rendered
    assert "LOST" not in rendered
    report = as_json(rows, {"nproc": 2})
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(report))
    keys = [entry["key"] for entry in json.loads(path.read_text())["scenarios"]]
    assert keys == [s.key for s in scenarios(options)]
