"""The offline scripted model's analysis plan: a question about the koperasi data becomes SQL.

Not language understanding: a handful of keywords pick the measure, the grouping, the order and
the count of a fixed query shape. The numbers in the answer come from the rows the database
returned, never from the script.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

TABLE = "koperasi.koperasi"
_DATA_WORDS = (
    "koperasi",
    "provinsi",
    "province",
    "modal",
    "aset",
    "asset",
    "anggota",
    "member",
    "sql",
    "database",
    "tabel",
    "table",
    "cooperative",
)
_INDONESIAN_WORDS = ("tampilkan", "yang", "dengan", "tertinggi", "terendah", "rata", "berapa")


@dataclass(frozen=True)
class AnalysisQuery:
    """The query a question maps to, and how to word the answer."""

    sql: str
    group_label: str
    measure_label: str
    rupiah: bool
    count: int
    highest: bool
    indonesian: bool


def is_data_question(prompt: str) -> bool:
    """Whether the prompt asks about the dataset."""
    lowered = prompt.lower()
    return any(word in lowered for word in _DATA_WORDS)


def query_for(prompt: str) -> AnalysisQuery:
    """Map a question to one aggregate query over the koperasi table."""
    text = prompt.lower()
    numbers = [int(n) for n in re.findall(r"\b(\d{1,2})\b", text) if 0 < int(n) <= 50]
    count = numbers[0] if numbers else 5
    if "aset" in text or "asset" in text:
        column, measure, rupiah = "total_aset", ("total aset", "total assets"), True
    elif "anggota" in text or "member" in text:
        column, measure, rupiah = "jumlah_anggota", ("jumlah anggota", "members"), False
    else:
        column, measure, rupiah = "modal_awal", ("modal awal", "starting capital"), True
    if "kabupaten" in text or "kota" in text or "regency" in text:
        group, groups = "kabupaten_kota", ("kabupaten/kota", "regencies/cities")
    elif "jenis" in text or "type" in text:
        group, groups = "jenis", ("jenis koperasi", "cooperative types")
    else:
        group, groups = "provinsi", ("provinsi", "provinces")
    total = any(w in text for w in ("total ", "sum", "jumlah total"))
    aggregate, agg_label = (
        ("sum", ("total", "total")) if total else ("avg", ("rata-rata", "average"))
    )
    highest = not any(w in text for w in ("terendah", "lowest", "smallest", "terkecil"))
    indonesian = any(w in text for w in _INDONESIAN_WORDS)
    lang = 0 if indonesian else 1
    sql = (
        f"SELECT {group}, round({aggregate}({column}), 2) AS nilai, count(*) AS jumlah_koperasi"
        f" FROM {TABLE} GROUP BY {group}"
        f" ORDER BY nilai {'DESC' if highest else 'ASC'} LIMIT {count}"
    )
    return AnalysisQuery(
        sql=sql,
        group_label=groups[lang],
        measure_label=f"{agg_label[lang]} {measure[lang]}",
        rupiah=rupiah,
        count=count,
        highest=highest,
        indonesian=indonesian,
    )


def _number(value: object, rupiah: bool) -> str:
    amount = float(str(value))
    # Indonesian grouping: dots for thousands, comma for decimals.
    whole = f"{amount:,.2f}".replace(",", "_").replace(".", ",").replace("_", ".")
    if not rupiah:
        whole = whole.removesuffix(",00")
    return f"Rp {whole}" if rupiah else whole


def answer_for(query: AnalysisQuery, tool_output: str) -> str:
    """The final answer, worded from the rows the query returned."""
    if tool_output.startswith("error:"):
        return f"The query failed, so I have no figures to report: {tool_output[6:].strip()}"
    result = json.loads(tool_output)
    lines = [
        f"{i}. {row[0]} — {_number(row[1], query.rupiah)} ({row[2]} koperasi)"
        for i, row in enumerate(result["rows"], start=1)
    ]
    if query.indonesian:
        order = "tertinggi" if query.highest else "terendah"
        head = f"Berikut {len(lines)} {query.group_label} dengan {query.measure_label} {order}:"
        tail = f"Angka dihitung langsung dari tabel {TABLE} dengan query:"
    else:
        order = "highest" if query.highest else "lowest"
        head = f"The {len(lines)} {query.group_label} with the {order} {query.measure_label}:"
        tail = f"Figures computed from {TABLE} with:"
    return "\n".join([head, "", *lines, "", tail, "", f"```sql\n{query.sql}\n```"])
