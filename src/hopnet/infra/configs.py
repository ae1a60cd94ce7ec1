"""Shared checks for the typed dataclass configs (one error line naming the bad keys)."""

from __future__ import annotations

from dataclasses import fields
from typing import Any

from hopnet.infra.errors import HopnetError


def check_keys(cls: type, data: Any, what: str, error: type[Exception] = HopnetError) -> dict:
    """``data`` as a dict of ``cls``'s fields; raises ``error`` when it is not a mapping or has
    keys ``cls`` does not know (the message lists the known ones)."""
    if not isinstance(data, dict):
        raise error(f"{what} must be a mapping, got {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise error(f"unknown {what} key(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
    return data
