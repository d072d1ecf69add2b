"""Which reviews of a merged pull request count as its approval (pure functions).

GitHub documents the review states ``APPROVED``, ``CHANGES_REQUESTED``, ``COMMENTED``,
``DISMISSED`` and ``PENDING``, eight ``author_association`` values, and the ``commit_id``
each review was given on; see :func:`in_force_approvals`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

#: ``author_association`` values GitHub's OpenAPI description documents.
AUTHOR_ASSOCIATIONS: tuple[str, ...] = (
    "COLLABORATOR",
    "CONTRIBUTOR",
    "FIRST_TIMER",
    "FIRST_TIME_CONTRIBUTOR",
    "MANNEQUIN",
    "MEMBER",
    "NONE",
    "OWNER",
)
#: The associations that can hold write access to the repository.
WRITE_ASSOCIATIONS: tuple[str, ...] = ("OWNER", "MEMBER", "COLLABORATOR")


def in_force_approvals(
    reviews: list[Mapping[str, Any]],
    author: str | None,
    merged_at: str,
    *,
    head_sha: str | None = None,
    associations: Iterable[str] = WRITE_ASSOCIATIONS,
    must_cover_head: bool = True,
) -> tuple[list[Mapping[str, Any]], list[dict[str, Any]]]:
    """(approvals that count, approvals in force that do not, each with its reason).

    Each reviewer's latest deciding review before the merge is in force if it approves;
    it counts only from someone other than the author, with a write-capable
    ``author_association`` and — if ``must_cover_head`` — on the merged head commit.
    """
    latest: dict[str, Mapping[str, Any]] = {}
    for r in sorted(reviews, key=lambda r: (r["at"] or "", int(r.get("id") or 0))):
        who = (r.get("by") or {}).get("id")
        if not who or r["at"] is None or r["at"] > merged_at:
            continue
        if r["state"] in ("APPROVED", "CHANGES_REQUESTED", "DISMISSED"):
            latest[who] = r
    allowed = set(associations)
    counted: list[Mapping[str, Any]] = []
    discounted: list[dict[str, Any]] = []
    for who, r in latest.items():
        if r["state"] != "APPROVED":
            continue
        if who == author:
            reason = "the author approving their own pull request"
        elif r.get("association") not in allowed:
            reason = f"author_association {r.get('association')} (no write access)"
        elif must_cover_head and head_sha and r.get("commit") != head_sha:
            reason = (
                f"approved commit {str(r.get('commit'))[:12]}, not the merged head {head_sha[:12]}"
            )
        else:
            counted.append(r)
            continue
        discounted.append({"by": r["by"], "at": r["at"], "reason": reason})
    return counted, sorted(discounted, key=lambda d: (d["at"], d["by"]["id"]))


def pr_derived(
    process: Any, ticket: Mapping[str, Any], reviews: list[Mapping[str, Any]]
) -> dict[str, Any]:
    """The change facts of a merged pull request (same keys as tickets' ``derived``)."""
    author = ticket.get("requested_by")
    merged_at = ticket["resolved"]
    approvals, discounted = in_force_approvals(
        reviews,
        author["id"] if author else None,
        merged_at,
        head_sha=ticket.get("head_sha"),
        associations=process.approver_associations,
        must_cover_head=process.approval_must_cover_merged_head,
    )
    implementers: list[dict[str, Any]] = []
    for p in (author, ticket.get("merged_by") if process.merger_is_implementer else None):
        if p and p["id"] not in {i["id"] for i in implementers}:
            implementers.append(p)
    approvers = []
    for r in sorted(approvals, key=lambda r: r["at"]):
        if r["by"]["id"] not in {a["id"] for a in approvers}:
            approvers.append(r["by"])
    return {
        "kind": "change",
        "requested_by": author,
        "approved_at": min((r["at"] for r in approvals), default=None),
        "approved_by": approvers,
        "discounted_approvals": discounted,
        "implemented_at": merged_at,
        "implemented_by": implementers,
        "segregated_from": sorted(i["id"] for i in implementers),
        "acknowledged_at": None,
        "resolved_at": merged_at,
        "reviewed_at": None,
        "reviewed_by": [],
        "review_due_at": None,
        "severity": None,
        "sla_days": None,
        "due_at": None,
        "ack_sla_hours": None,
        "ack_due_at": None,
        "review_required": False,
        "reviews": [],
        "history_gap": None,
    }
