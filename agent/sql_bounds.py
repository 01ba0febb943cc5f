"""A query's output bounded in bytes at the server: PostgreSQL itself cuts huge values.

A value the driver fetches whole is in the agent's memory whole, whatever is done with it
afterwards. So the user's query is read as a subquery, and each of its variable-size columns is
sent as a prefix (``left``) with its full size (``octet_length``), both computed by the server.
Such columns reach the agent as text (arrays as PostgreSQL literals, ``bytea`` as hex); columns
of small fixed-size types reach it as they are.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from asyncpg import Record
from asyncpg.types import Attribute

# Values of these types are a few bytes whatever the query does: they are not cut.
_FIXED_SIZE_TYPES = frozenset(
    {
        "bool",
        "char",
        "int2",
        "int4",
        "int8",
        "float4",
        "float8",
        "oid",
        "money",
        "date",
        "time",
        "timetz",
        "timestamp",
        "timestamptz",
        "interval",
        "uuid",
    }
)
# However many columns a query has, each value may keep this much.
_MIN_VALUE_BYTES = 64
# A subquery cannot end with a semicolon; anything else a single valid statement ends with can.
_TRAILING_SEMICOLONS = re.compile(r"[\s;]+\Z")


@dataclass(frozen=True)
class BoundedQuery:
    """The user's query wrapped so the server cuts its values to ``value_bytes`` bytes."""

    sql: str
    # Per column of the user's query: sent cut (as prefix and size) or as it is.
    cut: tuple[bool, ...]
    value_bytes: int


def bound_query(sql: str, attributes: Sequence[Attribute], max_bytes: int) -> BoundedQuery:
    """Wrap ``sql`` (whose result columns are ``attributes``) to cut its values at the server.

    Every cut column gets an equal share of half of ``max_bytes``: a row then always fits in
    the byte cap with room for JSON quoting and the fixed-size columns.
    """
    cut = tuple(
        not (column.type.schema == "pg_catalog" and column.type.name in _FIXED_SIZE_TYPES)
        for column in attributes
    )
    value_bytes = max(max_bytes // (2 * max(sum(cut), 1)), _MIN_VALUE_BYTES)
    # Positional aliases: the user's column names may repeat or need quoting.
    names = [f"c{i}" for i in range(len(attributes))]
    select: list[str] = []
    for name, is_cut in zip(names, cut, strict=True):
        if is_cut:
            # left() counts characters: up to 4 bytes each in UTF-8, trimmed to bytes on arrival.
            select += [f"left(q.{name}::text, {value_bytes})", f"octet_length(q.{name}::text)"]
        else:
            select.append(f"q.{name}")
    body = _TRAILING_SEMICOLONS.sub("", sql)
    # The newline before ")" ends a trailing line comment of the user's query. OFFSET 0 keeps
    # the planner from inlining the query into both expressions of a column, which would
    # compute each value twice.
    inner = f"SELECT * FROM (\n{body}\n) AS u({', '.join(names)}) OFFSET 0"
    wrapped = f"SELECT {', '.join(select)} FROM ({inner}) AS q"
    return BoundedQuery(sql=wrapped, cut=cut, value_bytes=value_bytes)


def unpack_row(query: BoundedQuery, record: Record) -> tuple[list[Any], int]:
    """The user's row from a record of ``query``, and how many of its values were cut.

    A cut value is its first ``value_bytes`` bytes (whole characters) and a marker giving the
    value's full size.
    """
    values: list[Any] = []
    cut_values = 0
    position = 0
    for is_cut in query.cut:
        if not is_cut:
            values.append(record[position])
            position += 1
            continue
        prefix, size = record[position], record[position + 1]
        position += 2
        if prefix is not None and size > query.value_bytes:
            kept = prefix.encode()[: query.value_bytes].decode(errors="ignore")
            prefix = f"{kept}…[truncated: {size} bytes in all]"
            cut_values += 1
        values.append(prefix)
    return values, cut_values
