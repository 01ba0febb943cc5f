"""Medians over repetitions, the comparison table, and its JSON form."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass

from benchmarks.scenarios import Result, Scenario
from benchmarks.systems import AGENTSTREAM, AGENTSTREAM_SYNC, NULL_SINK, RELAY

_COLUMNS = (NULL_SINK, RELAY, AGENTSTREAM)


@dataclass
class Cell:
    """One scenario on one system, over its repetitions."""

    figures: dict[str, float]
    intact: bool | None
    generator_cpu: float
    repetitions: int
    detail: str

    @classmethod
    def of(cls, results: list[Result]) -> Cell:
        """Median of each figure and of the generator's CPU; intact only if every repetition
        was."""
        keys = results[0].figures
        figures = {k: statistics.median(r.figures[k] for r in results) for k in keys}
        checked = [r.intact for r in results if r.intact is not None]
        return cls(
            figures=figures,
            intact=all(checked) if checked else None,
            generator_cpu=statistics.median(r.generator_cpu for r in results),
            repetitions=len(results),
            detail="; ".join(sorted({r.detail for r in results if r.detail})),
        )

    def text(self, scenario: Scenario) -> str:
        """The shown figures, the integrity verdict, the generator's CPU and, where measured,
        the server's CPU per delivery."""
        parts = []
        for key in scenario.shown:
            value = _number(self.figures[key])
            parts.append(
                f"{value} ms" if key.endswith("_ms") else f"{value}/s" if key == "rate" else value
            )
        values = " / ".join(parts)
        if not any(key.endswith("_ms") or key == "rate" for key in scenario.shown):
            values += f" {scenario.unit}"
        verdict = {True: "ok", False: "LOST/DISORDERED", None: "n/a"}[self.intact]
        if self.detail and self.intact is not True:
            verdict += f" ({self.detail})"
        server_us = self.figures.get("server_us_per_delivery", math.nan)
        server = "" if math.isnan(server_us) else f", server {server_us:.1f} us/delivery"
        return f"{values} [{verdict}, gen {self.generator_cpu:.0f}%{server}]"


def _number(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"


def ratio(scenario: Scenario, cells: dict[str, Cell]) -> str:
    """agentstream against the plain relay on the scenario's headline figure."""
    if RELAY not in cells or AGENTSTREAM not in cells:
        return ""
    ours = cells[AGENTSTREAM].figures[scenario.headline]
    theirs = cells[RELAY].figures[scenario.headline]
    if not ours or not theirs or math.isnan(ours) or math.isnan(theirs):
        return "-"
    factor = ours / theirs if scenario.higher_is_better else theirs / ours
    verdict = f"{factor:.2f}x faster" if factor >= 1 else f"{1 / factor:.2f}x slower"
    if "rate" in scenario.shown:
        # Latency at a rate one system did not reach is not comparable: say so.
        our_rate, their_rate = (cells[n].figures["rate"] for n in (AGENTSTREAM, RELAY))
        if our_rate < 0.95 * their_rate:
            verdict += f"; rate NOT sustained ({our_rate:,.0f} vs {their_rate:,.0f}/s)"
    return verdict


def table(rows: list[tuple[Scenario, dict[str, Cell]]]) -> str:
    """The comparison as a Markdown table."""
    lines = [
        "| scenario | " + " | ".join(_COLUMNS) + " | agentstream vs relay |",
        "|---|" + "---|" * (len(_COLUMNS) + 1),
    ]
    for scenario, cells in rows:
        shown = [cells[c].text(scenario) if c in cells else "n/a" for c in _COLUMNS]
        lines.append(
            f"| {scenario.label} | " + " | ".join(shown) + f" | {ratio(scenario, cells)} |"
        )
    return "\n".join(lines)


def _cost(default: float, synced: float) -> str:
    if not default or not synced or math.isnan(default) or math.isnan(synced):
        return "-"
    return f"{default / synced:.2f}x"


def durability_table(rows: list[tuple[Scenario, dict[str, Cell]]]) -> str:
    """The rows measured with and without ``sync_interval: always``, and how many times fewer
    events per second the fsync of every message leaves (stored, delivered)."""
    lines = [
        f"| scenario | {AGENTSTREAM} (sync_interval default, 2 min) | {AGENTSTREAM_SYNC} "
        "| default / always (stored, delivered) |",
        "|---|---|---|---|",
    ]
    for scenario, cells in rows:
        if AGENTSTREAM not in cells or AGENTSTREAM_SYNC not in cells:
            continue
        default, synced = cells[AGENTSTREAM], cells[AGENTSTREAM_SYNC]
        costs = ", ".join(
            _cost(default.figures[key], synced.figures[key]) for key in ("stored", "delivered")
        )
        lines.append(
            f"| {scenario.label} | {default.text(scenario)} | {synced.text(scenario)} | {costs} |"
        )
    return "\n".join(lines)


def as_json(
    rows: list[tuple[Scenario, dict[str, Cell]]], machine: dict[str, object]
) -> dict[str, object]:
    """Everything measured, for tools: per scenario and system, the medians and verdicts."""
    return {
        "machine": machine,
        "scenarios": [
            {
                "key": scenario.key,
                "label": scenario.label,
                "headline": scenario.headline,
                "unit": scenario.unit,
                "ratio": ratio(scenario, cells),
                "systems": {
                    name: {
                        "figures": cell.figures,
                        "intact": cell.intact,
                        "generator_cpu_percent": cell.generator_cpu,
                        "repetitions": cell.repetitions,
                        "detail": cell.detail,
                    }
                    for name, cell in cells.items()
                },
            }
            for scenario, cells in rows
        ],
    }
