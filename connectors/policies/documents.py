"""Policy files of a repository: one evidence per file; the approval and review checks.

``policies.document.policy`` (id = the file's path in the repository): the front matter
(:mod:`connectors.policies.frontmatter`), the file's SHA-256 and, in a git working copy,
the last commit that touched it (``git log -1``), so the auditor sees which text was
approved and when it last changed.
"""

from __future__ import annotations

import fnmatch
import hashlib
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog

from connectors.http import SourceError
from connectors.kit import GLOBAL, require
from connectors.policies.frontmatter import FIELDS, parse
from core.checks import Verdict, check, failed, passed
from core.records import Evidence
from core.times import parse_time

POLICY_TYPE = "policies.document.policy"
log = structlog.get_logger("annexa.connectors.policies")


def policy_files(root: Path, include: Sequence[str], exclude: Sequence[str]) -> list[Path]:
    """Files under ``root`` selected by :func:`matches`, sorted (``.git`` never)."""
    if not root.is_dir():
        raise SourceError(f"policy directory {root} does not exist or is not a directory")
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_file() and ".git" not in p.parts and matches(rel, include, exclude):
            out.append(p)
    return out


def _git(root: Path, *args: str, timeout: float = 30.0) -> str | None:
    """Output of ``git -C root args…``, or None (no git, not a repository, failure).

    Arguments are fixed by this module or are paths found under ``root``; ``--``
    separates paths so a file name can never be read as an option.
    """
    exe = shutil.which("git")
    if exe is None:
        return None
    try:
        out = subprocess.run(  # noqa: S603 - fixed argv, no shell
            [exe, "-C", str(root), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def last_commit(root: Path, rel: str) -> dict[str, str] | None:
    """The last commit touching ``rel`` (sha, committer date), or None outside git."""
    out = _git(root, "log", "-1", "--format=%H%x09%cI", "--", rel)
    if not out:
        return None
    sha, _, when = out.partition("\t")
    return {"sha": sha, "committed_at": parse_time(when).strftime("%Y-%m-%dT%H:%M:%SZ")}


def is_git(root: Path) -> bool:
    return _git(root, "rev-parse", "--is-inside-work-tree") == "true"


def matches(rel: str, include: Sequence[str], exclude: Sequence[str]) -> bool:
    """``rel`` (a POSIX path in the repository) is selected by the patterns; ``**/x``
    also matches ``x`` at the top, and an exclude pattern may name the file alone."""
    name = rel.rsplit("/", 1)[-1]

    def hit(pattern: str) -> bool:
        return fnmatch.fnmatch(rel, pattern) or (
            pattern.startswith("**/") and fnmatch.fnmatch(rel, pattern[3:])
        )

    if not any(hit(p) for p in include):
        return False
    return not any(hit(x) or fnmatch.fnmatch(name, x) for x in exclude)


def policy_evidence(
    scope: str, rel: str, data: bytes | None, error: str | None, commit: dict[str, str] | None
) -> Evidence:
    """The evidence of one policy file, from its bytes (or the reason they are missing)."""
    payload: dict[str, Any]
    if data is not None:
        try:
            payload = parse(rel, data.decode("utf-8"))
            payload["sha256"] = hashlib.sha256(data).hexdigest()
        except UnicodeDecodeError:
            error = "UnicodeDecodeError"
    if data is None or error:
        reason = f"{rel}: cannot be read as UTF-8 text: {error}"
        payload = {"path": rel, "_errors": dict.fromkeys(FIELDS, reason)}
    if "_errors" in payload:
        log.warning("policy front matter problem", file=rel, errors=payload["_errors"])
    if commit is not None:
        payload["last_commit"] = commit
    return Evidence(scope, GLOBAL, POLICY_TYPE, rel, payload)


def read_policies(
    root: Path, scope: str, include: Sequence[str], exclude: Sequence[str], use_git: bool
) -> Iterator[Evidence]:
    """One evidence per policy file of a local directory; a file that cannot be read or
    parsed still yields its evidence, with the reason in ``_errors`` (checks ``error``)."""
    git = use_git and is_git(root)
    for path in policy_files(root, include, exclude):
        rel = path.relative_to(root).as_posix()
        try:
            data: bytes | None = path.read_bytes()
            error = None
        except OSError as exc:
            data, error = None, type(exc).__name__
        yield policy_evidence(scope, rel, data, error, last_commit(root, rel) if git else None)


# --------------------------------------------------------------------------- checks


def _name(p: Mapping[str, Any]) -> str:
    title = p.get("title")
    return f"{p.get('path')} ({title})" if title else str(p.get("path"))


@check("policies.document.approved")
def approved(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    name = _name(payload)
    approver = require(payload, "approver")
    approved_on = require(payload, "approved_on")
    if not approver:
        return failed(f"{name} has no approver")
    if not approved_on:
        return failed(f"{name} names approver {approver} but no approved_on date")
    when = parse_time(approved_on)
    if when > datetime.now(UTC):
        return failed(f"{name}: approved_on {approved_on} is in the future")
    owner = require(payload, "owner")
    if params["approver_differs_from_owner"] and owner and owner.casefold() == approver.casefold():
        return failed(f"{name} is approved by its own owner {owner}")
    return passed(f"{name} approved by {approver} on {approved_on}")


@check("policies.document.reviewed")
def reviewed(payload: Mapping[str, Any], params: Mapping[str, Any]) -> Verdict:
    name = _name(payload)
    approved_on = require(payload, "approved_on")
    require(payload, "review_interval")
    if not approved_on:
        return failed(f"{name} has no approved_on date: it was never reviewed")
    if payload.get("review_due"):
        due = parse_time(payload["review_due"])
        how = str(payload.get("review_interval"))
    else:
        due = parse_time(approved_on) + timedelta(days=params["default_review_days"])
        how = f"{params['default_review_days']} days (no review_interval; the default)"
    # The whole due day still counts as in time.
    if datetime.now(UTC) >= due + timedelta(days=1):
        return failed(
            f"{name}: last approved on {approved_on}; review every {how} was due by "
            f"{due.date().isoformat()}"
        )
    return passed(f"{name}: approved on {approved_on}, next review by {due.date().isoformat()}")
