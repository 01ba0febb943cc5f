"""OpenAPI request bodies for routes that decode with msgspec instead of pydantic.

Their schemas come from the same Structs the handlers decode with, so the published contract
and the validation can never drift apart.
"""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import FastAPI

_REF = "#/components/schemas/{name}"
_components: dict[str, Any] = {}


def json_body(type_: Any) -> dict[str, Any]:
    """``openapi_extra`` declaring a required JSON body of ``type_``."""
    (schema,), components = msgspec.json.schema_components([type_], ref_template=_REF)
    _components.update(components)
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def publish_body_schemas(app: FastAPI, paths: dict[str, dict[str, Any]] | None = None) -> None:
    """Add the Structs' schemas to the app's OpenAPI components, and ``paths`` (operations the
    app serves outside FastAPI's router) to its paths."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        spec = build()
        spec.setdefault("components", {}).setdefault("schemas", {}).update(_components)
        for path, operations in (paths or {}).items():
            spec.setdefault("paths", {}).setdefault(path, {}).update(operations)
        return spec

    app.openapi = openapi  # type: ignore[method-assign]
