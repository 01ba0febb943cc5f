"""A Temporal data converter that speaks msgspec, so workflow inputs are the schemas' Structs.

Payloads stay ``json/plain``, which keeps ``temporal workflow execute --input '{...}'`` working.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec
from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    BinaryNullPayloadConverter,
    BinaryPlainPayloadConverter,
    BinaryProtoPayloadConverter,
    CompositePayloadConverter,
    DataConverter,
    EncodingPayloadConverter,
    JSONProtoPayloadConverter,
)

_ENCODING = b"json/plain"


class MsgspecJSONPayloadConverter(EncodingPayloadConverter):
    """Encodes any msgspec-encodable value; decodes to the type hint Temporal passes."""

    @property
    def encoding(self) -> str:
        return _ENCODING.decode()

    def to_payload(self, value: Any) -> Payload | None:
        try:
            data = msgspec.json.encode(value)
        except TypeError:
            return None
        return Payload(metadata={"encoding": _ENCODING}, data=data)

    def from_payload(self, payload: Payload, type_hint: type | None = None) -> Any:
        return msgspec.json.decode(payload.data, type=type_hint if type_hint else Any)


class MsgspecPayloadConverter(CompositePayloadConverter):
    """Temporal's default converter chain with the JSON step replaced by msgspec."""

    def __init__(self) -> None:
        super().__init__(
            BinaryNullPayloadConverter(),
            BinaryPlainPayloadConverter(),
            JSONProtoPayloadConverter(),
            BinaryProtoPayloadConverter(),
            MsgspecJSONPayloadConverter(),
        )


data_converter = dataclasses.replace(
    DataConverter.default, payload_converter_class=MsgspecPayloadConverter
)
