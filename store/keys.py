"""The public keys that signed what the store holds (``signing_keys``, append-only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from core.signing import ALGORITHM, PublicKey, Signer, recorded_keys
from store.schema import signing_keys

#: (database, key id) pairs seen already recorded: sealing a run then costs no query for
#: the key. Only a key *found* in the table is cached, never one this process inserted
#: (its transaction could still roll back).
_KNOWN: set[tuple[str, str]] = set()


def record_key(conn: Connection, signer: Signer, at: datetime) -> None:
    """Record ``signer``'s public key the first time it signs (append-only table)."""
    where = (conn.engine.url.render_as_string(hide_password=True), signer.key_id)
    if where in _KNOWN:
        return
    known = conn.execute(
        select(signing_keys.c.public_key).where(signing_keys.c.key_id == signer.key_id)
    ).scalar()
    if known is None:
        conn.execute(
            insert(signing_keys).values(
                key_id=signer.key_id,
                algorithm=ALGORITHM,
                public_key=signer.public.b64,
                first_used_at=at,
            )
        )
    else:
        _KNOWN.add(where)


def stored_keys(conn: Connection) -> dict[str, PublicKey]:
    """Every key the store recorded, by id (a self-check; trust needs keys kept elsewhere)."""
    return recorded_keys(conn.execute(select(signing_keys)).mappings())
