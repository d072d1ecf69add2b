"""Helpers the cloud connectors (AWS, Azure, Google Cloud) share.

Their options name cloud objects by id (regions, subscriptions, projects, resource
types…) and each list is checked the same way before anything is read; their key checks
measure the age of credentials the same way.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from core.times import days_since

T = TypeVar("T")


def all_match(values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    """``values`` unchanged when each one matches ``pattern``; otherwise a ``ValueError``
    (an options validator's message) naming those that do not: ``not {what}: a, b``."""
    bad = [v for v in values if not pattern.match(v)]
    if bad:
        raise ValueError(f"not {what}: {', '.join(bad)}")
    return values


def older_than(
    items: Iterable[T], limit: float, created: Callable[[T], Any], name: Callable[[T], str]
) -> list[str]:
    """``name (N days)`` of each item created more than ``limit`` days ago."""
    return [
        f"{name(item)} ({int(age)} days)"
        for item in items
        if (age := days_since(created(item))) > limit
    ]
