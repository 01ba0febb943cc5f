"""The offline scripted model's analysis plan: a question about the koperasi data becomes SQL.

Not language understanding: a handful of keywords pick the measure, the grouping, the order and
the count of a fixed query shape. The numbers in the answer come from the rows the database
returned, never from the script.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TypeVar

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
_INDONESIAN_WORDS = (
    "tampilkan",
    "yang",
    "dengan",
    "tertinggi",
    "terendah",
    "rata",
    "berapa",
    "dan ",
)


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


T = TypeVar("T")

_LOWEST_WORDS = ("terendah", "lowest", "smallest", "terkecil", "bottom")
_HIGHEST_WORDS = ("tertinggi", "highest", "largest", "terbesar", "top")
_NUMBER_WORDS = {
    "three": 3,
    "five": 5,
    "ten": 10,
    "tiga": 3,
    "lima": 5,
    "sepuluh": 10,
}


def is_follow_up(prompt: str) -> bool:
    """Whether the prompt only changes an earlier question's order or count ("and the five
    lowest?"), so that the earlier question says what it is about."""
    text = prompt.lower()
    return any(w in text for w in (*_LOWEST_WORDS, *_HIGHEST_WORDS)) or _count_in(text) is not None


def _count_in(text: str) -> int | None:
    numbers = [int(n) for n in re.findall(r"\b(\d{1,2})\b", text) if 0 < int(n) <= 50]
    if numbers:
        return numbers[0]
    words = [_NUMBER_WORDS[w] for w in re.findall(r"[a-z]+", text) if w in _NUMBER_WORDS]
    return words[0] if words else None


def _first(texts: list[str], choices: list[tuple[tuple[str, ...], T]], default: T) -> T:
    """The choice whose words the first text naming any choice names; else ``default``."""
    for text in texts:
        for words, choice in choices:
            if any(w in text for w in words):
                return choice
    return default


def query_for(prompt: str, earlier: tuple[str, ...] = ()) -> AnalysisQuery:
    """Map a question to one aggregate query over the koperasi table.

    ``earlier``: the conversation's earlier questions, newest first. What the question does not
    say (the measure, the grouping, the count, the order) is taken from the newest earlier
    question that says it, so "and the five lowest?" keeps the previous question's subject.
    """
    texts = [prompt.lower(), *(text.lower() for text in earlier)]
    count = next((c for c in map(_count_in, texts) if c is not None), 5)
    column, measure, rupiah = _first(
        texts,
        [
            (("aset", "asset"), ("total_aset", ("total aset", "total assets"), True)),
            (("anggota", "member"), ("jumlah_anggota", ("jumlah anggota", "members"), False)),
            (("modal", "capital"), ("modal_awal", ("modal awal", "starting capital"), True)),
        ],
        ("modal_awal", ("modal awal", "starting capital"), True),
    )
    group, groups = _first(
        texts,
        [
            (
                ("kabupaten", "kota", "regency"),
                ("kabupaten_kota", ("kabupaten/kota", "regencies/cities")),
            ),
            (("jenis", "type"), ("jenis", ("jenis koperasi", "cooperative types"))),
            (("provinsi", "province"), ("provinsi", ("provinsi", "provinces"))),
        ],
        ("provinsi", ("provinsi", "provinces")),
    )
    aggregate, agg_label = _first(
        texts,
        [
            (("total ", "sum", "jumlah total"), ("sum", ("total", "total"))),
            (("rata", "average", "mean"), ("avg", ("rata-rata", "average"))),
        ],
        ("avg", ("rata-rata", "average")),
    )
    highest = _first(texts, [(_LOWEST_WORDS, False), (_HIGHEST_WORDS, True)], True)
    indonesian = any(w in texts[0] for w in _INDONESIAN_WORDS)
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
