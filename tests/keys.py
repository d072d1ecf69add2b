"""Throwaway RSA keys for the fakes that check signed JWT assertions (never stored)."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def throwaway_rsa() -> tuple[str, rsa.RSAPrivateKey]:
    """A fresh 2048-bit RSA key: its private half as unencrypted PKCS#8 PEM, and the key."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return private, key


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    """The key's public half as SubjectPublicKeyInfo PEM."""
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
