"""Auditor comments as signed, append-only decisions (store/comments.py), both engines."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from core.signing import Signer
from store.comments import CommentError, comment_decision, comments, record_comment
from store.decisions import Decision, record_decisions
from store.integrity import verify
from store.schema import runs

SIGNER = Signer.generate()


def record(engine: Engine, text: str, target: str = "A.8.32", kind: str = "comment") -> str:
    d = comment_decision(kind=kind, target_kind="control", target=target, author="alice",
                         role="auditor", text=text)
    return record_comment(engine, d, signer=SIGNER, config_digest="c" * 64,
                          mapping_digest="m" * 64, agent_version="test")


def test_comments_are_signed_chained_and_never_revoked(engine: Engine) -> None:
    first = record(engine, "Where is the CAB record?")
    record(engine, "Please provide the Q2 access review", kind="evidence_request")
    with engine.connect() as conn:
        got = comments(conn, targets=["A.8.32"])
        assert [c.text for c in got] == ["Where is the CAB record?",
                                         "Please provide the Q2 access review"]
        assert got[1].kind == "evidence_request" and got[0].author == "alice"
        before_second = got[1].recorded_at
        assert [c.text for c in comments(conn, got[0].recorded_at)] == [got[0].text]
        row = conn.execute(select(runs).where(runs.c.id == first)).mappings().one()
        assert row["source"] == "@decisions" and row["key_id"] == SIGNER.key_id
    # A decisions sync that reads every other kind in full revokes what it no longer
    # sees — never a comment.
    record_decisions(
        engine, [Decision("decision.files.source", "soa", {"kind": "soa", "file": None,
                                                           "sha256": None})],
        services={"exceptions", "soa", "files", "risks"}, signer=SIGNER,
        config_digest="c" * 64, mapping_digest="m" * 64, agent_version="test",
    )
    with engine.connect() as conn:
        assert len(comments(conn)) == 2
        assert comments(conn, before_second)[-1].kind == "evidence_request"
    result = verify(engine, trusted_keys={SIGNER.key_id: SIGNER.public})
    assert result.ok, result.problems


@pytest.mark.parametrize(
    ("kwargs", "why"),
    [
        ({"text": "   "}, "empty"),
        ({"text": "x" * 4001}, "longer"),
        ({"kind": "verdict"}, "kind"),
        ({"target_kind": "run"}, "control or"),
    ],
)
def test_bad_comments_are_refused_with_a_reason(kwargs: dict, why: str) -> None:
    base = {"kind": "comment", "target_kind": "control", "target": "A.5.1", "author": "a",
            "role": "auditor", "text": "ok"}
    with pytest.raises(CommentError, match=why):
        comment_decision(**(base | kwargs))
