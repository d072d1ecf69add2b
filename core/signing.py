"""Ed25519 signatures over what Annexa seals: run digests, retention entries, packages.

Why a key and not only the digest chain: anyone who can write to the database can
also recompute a chain (the store's own writer does exactly that). A signature made
with a private key that only the collector holds cannot be recomputed; an auditor who
keeps the collector's *public* key (``annexa keys generate`` prints it; every export
carries it) detects any run, retention entry, decision or package not signed by it.

Formats (stable; changing them breaks every stored signature):

* private key: PKCS#8 PEM, unencrypted, file mode 0600 (``annexa keys generate``);
* public key line: ``ed25519 <base64 raw 32 bytes> <key id> [comment]``, the format of
  ``--trusted-keys`` files (one key a line; ``#`` starts a comment);
* key id: the first 16 hex digits of SHA-256 over the raw public key;
* a signature covers ``<domain>\\n<message>``, where the domain names what is signed
  (``annexa-run-v1``…), so a signature over one kind of object is never valid for
  another.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

ALGORITHM = "ed25519"
RUN_DOMAIN = "annexa-run-v1"
RETENTION_DOMAIN = "annexa-retention-v1"
PACKAGE_DOMAIN = "annexa-package-v1"


class SigningKeyError(ValueError):
    """A key file or public-key line is unusable; the message says which and why."""


@functools.lru_cache(maxsize=64)
def _loaded(raw: bytes) -> Ed25519PublicKey:
    # Verifying a year of runs checks thousands of signatures by the same few keys.
    return Ed25519PublicKey.from_public_bytes(raw)


def key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _message(domain: str, message: str) -> bytes:
    return f"{domain}\n{message}".encode()


@dataclass(frozen=True)
class PublicKey:
    """A trusted (or recorded) verification key."""

    raw: bytes
    comment: str = ""

    @property
    def id(self) -> str:
        return key_id(self.raw)

    @property
    def b64(self) -> str:
        return base64.b64encode(self.raw).decode("ascii")

    def line(self) -> str:
        return f"{ALGORITHM} {self.b64} {self.id}" + (f" {self.comment}" if self.comment else "")

    def verify(self, domain: str, message: str, signature: str | None) -> bool:
        """Whether ``signature`` (base64) is this key's over ``domain``/``message``."""
        if not signature:
            return False
        try:
            sig = base64.b64decode(signature, validate=True)
            _loaded(self.raw).verify(sig, _message(domain, message))
        except (InvalidSignature, ValueError):
            return False
        return True

    @classmethod
    def from_b64(cls, value: str, comment: str = "") -> PublicKey:
        try:
            raw = base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise SigningKeyError(f"public key {value[:16]}…: not base64 ({exc})") from None
        if len(raw) != 32:
            raise SigningKeyError(f"public key {value[:16]}…: {len(raw)} bytes, Ed25519 needs 32")
        return cls(raw, comment)


class Signer:
    """Signs with the collector's private key."""

    def __init__(self, private: Ed25519PrivateKey) -> None:
        self._private = private
        raw = private.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        self.public = PublicKey(raw)

    @property
    def key_id(self) -> str:
        return self.public.id

    def sign(self, domain: str, message: str) -> str:
        return base64.b64encode(self._private.sign(_message(domain, message))).decode("ascii")

    @classmethod
    def generate(cls) -> Signer:
        return cls(Ed25519PrivateKey.generate())

    @classmethod
    def from_pem(cls, pem: bytes, *, source: str = "the key") -> Signer:
        try:
            key = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SigningKeyError(
                f"{source}: not an unencrypted PEM private key ({exc}); "
                "create one with `annexa keys generate`"
            ) from None
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError(f"{source}: a {type(key).__name__}, not an Ed25519 key")
        return cls(key)

    def private_pem(self) -> bytes:
        return self._private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def write_private_key(signer: Signer, path: Path) -> None:
    """Write ``signer``'s key to ``path`` (mode 0600); refuse to overwrite a file."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(signer.private_pem())


def parse_public_keys(text: str, *, source: str = "trusted keys") -> dict[str, PublicKey]:
    """Public keys by id from ``ed25519 <base64> [id] [comment]`` lines."""
    keys: dict[str, PublicKey] = {}
    for n, line in enumerate(text.splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if parts[0] != ALGORITHM or len(parts) < 2:
            raise SigningKeyError(
                f"{source}:{n}: expected 'ed25519 <base64 public key> [key id] [comment]'"
            )
        key = PublicKey.from_b64(parts[1], " ".join(parts[3:]))
        if len(parts) >= 3 and parts[2] != key.id:
            raise SigningKeyError(
                f"{source}:{n}: key id {parts[2]} does not match the key (its id is {key.id})"
            )
        keys[key.id] = key
    return keys


def load_public_keys(path: Path) -> dict[str, PublicKey]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise SigningKeyError(f"{path}: {exc.strerror or exc}") from None
    keys = parse_public_keys(text, source=str(path))
    if not keys:
        raise SigningKeyError(f"{path}: no public key in the file")
    return keys


def keys_text(keys: Iterable[PublicKey]) -> str:
    return "".join(k.line() + "\n" for k in keys)


def recorded_keys(rows: Iterable[Mapping[str, str]]) -> dict[str, PublicKey]:
    """Keys as the store records them (``key_id``, ``public_key`` columns)."""
    out: dict[str, PublicKey] = {}
    for r in rows:
        key = PublicKey.from_b64(r["public_key"])
        out[key.id] = key
    return out
