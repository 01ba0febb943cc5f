"""The TypeScript client's types are what the msgspec schemas generate, and generated right."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import pytest

from agentstream.devstack import ts_schema


def test_the_committed_typescript_types_are_what_the_schemas_generate() -> None:
    assert ts_schema.OUTPUT.read_text() == ts_schema.generate(), (
        "clients/js/src/generated/schemas.ts is stale: "
        "run .venv/bin/python -m agentstream.devstack.ts_schema and commit it"
    )


def test_check_fails_on_a_stale_file_and_passes_on_a_fresh_one(tmp_path: Path) -> None:
    output = tmp_path / "schemas.ts"
    assert ts_schema.main(["--check", "--output", str(output)]) == 1
    assert ts_schema.main(["--output", str(output)]) == 0
    assert ts_schema.main(["--check", "--output", str(output)]) == 0
    output.write_text(output.read_text().replace("stage: Stage;", "stage: string;"))
    assert ts_schema.main(["--check", "--output", str(output)]) == 1


class Inner(msgspec.Struct):
    """An inner thing."""

    value: int


class Sample(msgspec.Struct, kw_only=True):
    """A struct with every shape the generator meets."""

    name: Annotated[str, msgspec.Meta(pattern="^a$")]
    tags: list[str | int]
    inner: Inner | None = None
    extra: dict[str, Inner] = msgspec.field(default_factory=dict)
    free: Any = None
    kind: Literal["x", "y"] = "x"
    flag: bool = False
    ratio: float = 0.5


def test_each_json_schema_shape_becomes_its_typescript_type() -> None:
    _, components = msgspec.json.schema_components([Sample], ref_template="#/$defs/{name}")
    writer = ts_schema._Writer(components, {"Inner": "InnerThing"})
    assert writer.declaration("Sample").splitlines() == [
        "/** A struct with every shape the generator meets. */",
        "export interface Sample {",
        '  /** pattern: "^a$" */',
        "  name: string;",
        "  tags: (string | number)[];",
        "  /** @default null */",
        "  inner?: InnerThing | null;",
        "  /** @default {} */",
        "  extra?: { [key: string]: InnerThing };",
        "  /** @default null */",
        "  free?: unknown;",
        '  /** @default "x" */',
        '  kind?: "x" | "y";',
        "  /** @default false */",
        "  flag?: boolean;",
        "  /** @default 0.5 */",
        "  ratio?: number;",
        "}",
    ]


def test_a_schema_it_cannot_express_is_refused() -> None:
    with pytest.raises(ValueError, match="no TypeScript type"):
        ts_schema._Writer({}, {}).type_of({"not": {"type": "string"}})
