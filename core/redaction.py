"""Redaction of secrets from anything that is logged or stored.

Two nets: values registered when a credential is resolved (exact match, wherever they
appear in a string), and patterns of well-known secret shapes (bearer tokens, AWS
secret keys, GitHub/Okta/Slack tokens, private keys, passwords in URLs).
"""

from __future__ import annotations

import functools
import re
import threading
from typing import Any

REDACTED = "[REDACTED]"
_lock = threading.Lock()
_known: set[str] = set()

_PATTERNS = [
    re.compile(r"(?i)\b(bearer|token|sswsx?|basic)\s+[A-Za-z0-9._~+/=-]{12,}"),
    re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})\b"),
    re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"),
    re.compile(r"(?<![A-Za-z0-9/+=])[A-Za-z0-9/+=]{40}(?![A-Za-z0-9/+=])"),  # AWS secret key shape
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?-----END [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)(://[^:/@\s]+:)[^@\s]+(@)"),
    re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|token)=([^&\s]+)"),
]
#: The one rule for what a key names a secret, used by stored evidence and by logs.
_SECRET_KEY = re.compile(
    r"(?i)(secret|password|passwd|token|authorization|api_?key|private_?key|credential"
    r"|cookie|session_?key)"
)
# Key names matching the pattern above that carry metadata, not secrets.
_NOT_SECRET = frozenset(
    {
        "PasswordPolicy",
        "password_enabled",
        "password_last_used",
        "password_last_changed",
        "password_next_rotation",
        "PasswordLastUsed",
        "PasswordReusePrevention",
        "MinimumPasswordLength",
        "RequireSymbols",
        "RequireNumbers",
        "RequireUppercaseCharacters",
        "RequireLowercaseCharacters",
        "AllowUsersToChangePassword",
        "ExpirePasswords",
        "MaxPasswordAge",
        "HardExpiry",
        "PasswordLastChanged",
        "token_type",
        "HttpTokens",  # EC2 IMDS setting ("required"/"optional"), not a token
    }
)
# Booleans and timestamps about a secret ("password_enabled") are not secrets.
_ABOUT_A_SECRET = ("_enabled", "_active", "_last_used", "_last_rotated", "_date", "lastused")


@functools.lru_cache(maxsize=8192)
def is_secret_key(key: str) -> bool:
    """Whether a mapping key names a secret, so its string value is never kept.

    Cached: payload key names repeat across millions of items, and this runs per key.
    """
    if key in _NOT_SECRET or key.lower().endswith(_ABOUT_A_SECRET):
        return False
    return bool(_SECRET_KEY.search(key))


def register_secret(value: str) -> None:
    """Remember ``value`` so it is scrubbed from every later log line."""
    if value and len(value) >= 6:
        with _lock:
            _known.add(value)


def scrub_text(text: str) -> str:
    with _lock:
        known = sorted(_known, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, REDACTED)
    for pat in _PATTERNS:
        if pat.groups == 2 and "://" in pat.pattern:
            text = pat.sub(rf"\1{REDACTED}\2", text)
        elif pat.groups == 2:
            text = pat.sub(rf"\1={REDACTED}", text)
        else:
            text = pat.sub(REDACTED, text)
    return text


def scrub(value: Any, key: str | None = None) -> Any:
    """Redact secrets in ``value`` (recursively); keys that name a secret lose their value."""
    if key is not None and is_secret_key(key) and isinstance(value, (str, bytes)) and value:
        return REDACTED
    if isinstance(value, str):
        return scrub_text(value)
    if isinstance(value, dict):
        return {k: scrub(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(scrub(v) for v in value)
    return value
