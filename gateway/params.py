"""Validated request parameters shared by the routes."""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query

from schemas import ID_PATTERN

RunIdPath = Annotated[
    str, Path(pattern=ID_PATTERN, description="Run ID (the Temporal workflow ID)")
]
RunIdQuery = Annotated[
    str, Query(pattern=ID_PATTERN, description="Run ID (the Temporal workflow ID)")
]
