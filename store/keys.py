"""The public keys that signed what the store holds (``signing_keys``, append-only)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, insert, select

from core.signing import ALGORITHM, PublicKey, Signer, recorded_keys
from store.schema import signing_keys


def record_key(conn: Connection, signer: Signer, at: datetime) -> None:
    """Record ``signer``'s public key the first time it signs (append-only table)."""
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


def stored_keys(conn: Connection) -> dict[str, PublicKey]:
    """Every key the store recorded, by id (a self-check; trust needs keys kept elsewhere)."""
    return recorded_keys(conn.execute(select(signing_keys)).mappings())
