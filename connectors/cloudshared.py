"""Helpers the cloud connectors (AWS, Azure, Google Cloud) share.

Their options name cloud objects by id (regions, subscriptions, projects, resource
types…) and each list is checked the same way before anything is read.
"""

from __future__ import annotations

import re


def all_match(values: list[str], pattern: re.Pattern[str], what: str) -> list[str]:
    """``values`` unchanged when each one matches ``pattern``; otherwise a ``ValueError``
    (an options validator's message) naming those that do not: ``not {what}: a, b``."""
    bad = [v for v in values if not pattern.match(v)]
    if bad:
        raise ValueError(f"not {what}: {', '.join(bad)}")
    return values
