"""Identifiers that become NATS subject tokens, and their validation.

A run ID or org ID is interpolated into subjects such as ``runs.<org>.<run>``; anything
outside this alphabet (``.``, ``*``, ``>``, whitespace) could address other runs.
"""

from __future__ import annotations

import re

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
_ID_RE = re.compile(ID_PATTERN)

DEFAULT_ORG = "default"


class InvalidIdError(ValueError):
    """An identifier that may not be used as a subject token."""

    def __init__(self, kind: str, value: str) -> None:
        super().__init__(f"{kind} must match {ID_PATTERN}")
        self.kind = kind
        self.value = value


def is_valid_id(value: str) -> bool:
    """Return whether ``value`` is safe to use as a run, org or conversation ID."""
    return _ID_RE.fullmatch(value) is not None


def require_id(kind: str, value: str) -> str:
    """Return ``value`` unchanged, or raise :class:`InvalidIdError` naming ``kind``."""
    if not is_valid_id(value):
        raise InvalidIdError(kind, value)
    return value
