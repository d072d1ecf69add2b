"""A local OpenID provider on 127.0.0.1: discovery, JWKS, authorize, token (RS256).

Shapes from the specifications, not from any vendor's code: OpenID Connect Discovery 1.0
§3 (provider metadata: ``issuer``, ``authorization_endpoint``, ``token_endpoint``,
``jwks_uri``, ``response_types_supported``, ``subject_types_supported``,
``id_token_signing_alg_values_supported``), RFC 7517 (a JWK Set of the RSA public key,
``kid``, ``use: sig``), OpenID Connect Core 1.0 §3.1.2 (the authorization endpoint
redirects back with ``code`` and ``state``), §3.1.3 (the token endpoint: client
authentication ``client_secret_basic`` or ``client_secret_post``, JSON with
``access_token``, ``token_type``, ``expires_in``, ``id_token``) and §2 (ID token claims
``iss``, ``sub``, ``aud``, ``exp``, ``iat``, ``nonce``, plus ``email``).

The user "logs in" by being the next one in ``self.user`` (no login form: the provider
side is not under test). ``audience`` and ``lifetime`` let a test issue a token for
another client or one that has already expired.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.raw_http import send_json


def _b64u(n: int) -> str:
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


class FakeOpenIdProvider:
    def __init__(self, client_id: str, client_secret: str) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.kid = "test-key-1"
        self.user: dict[str, Any] = {"sub": "u-1", "email": "auditor@example.test"}
        self.audience: str | None = None  # None: our client id
        self.lifetime = 300.0  # seconds; negative: already expired when issued
        self.codes: dict[str, dict[str, Any]] = {}
        self.requests: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._get(self)

            def do_POST(self) -> None:
                fake._post(self)

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeOpenIdProvider:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    # -- responses

    def _json(self, h: BaseHTTPRequestHandler, body: Any, status: int = 200) -> None:
        send_json(h, status, body)

    def metadata(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_basic",
                                                      "client_secret_post"],
            "scopes_supported": ["openid", "email", "profile"],
        }

    def jwks(self) -> dict[str, Any]:
        pub = self.key.public_key().public_numbers()
        return {"keys": [{"kty": "RSA", "kid": self.kid, "use": "sig", "alg": "RS256",
                          "n": _b64u(pub.n), "e": _b64u(pub.e)}]}

    def _get(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        self.requests.append(f"GET {url.path}")
        if url.path == "/.well-known/openid-configuration":
            return self._json(h, self.metadata())
        if url.path == "/jwks":
            return self._json(h, self.jwks())
        if url.path == "/authorize":
            q = {k: v[0] for k, v in parse_qs(url.query).items()}
            if q.get("client_id") != self.client_id or q.get("response_type") != "code":
                return self._json(h, {"error": "unauthorized_client"}, 400)
            code = secrets.token_urlsafe(16)
            self.codes[code] = {"nonce": q.get("nonce"), "redirect_uri": q["redirect_uri"]}
            target = q["redirect_uri"] + "?" + urlencode({"code": code, "state": q["state"]})
            h.send_response(302)
            h.send_header("Location", target)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return None
        return self._json(h, {"error": "not_found"}, 404)

    def _client_ok(self, h: BaseHTTPRequestHandler, form: dict[str, str]) -> bool:
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            cid, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
        else:
            cid, secret = form.get("client_id", ""), form.get("client_secret", "")
        from urllib.parse import unquote

        return unquote(cid) == self.client_id and unquote(secret) == self.client_secret

    def _post(self, h: BaseHTTPRequestHandler) -> None:
        url = urlsplit(h.path)
        self.requests.append(f"POST {url.path}")
        length = int(h.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(h.rfile.read(length).decode()).items()}
        if url.path != "/token":
            return self._json(h, {"error": "not_found"}, 404)
        if not self._client_ok(h, form):
            return self._json(h, {"error": "invalid_client"}, 401)
        grant = self.codes.pop(form.get("code", ""), None)
        if (form.get("grant_type") != "authorization_code" or grant is None
                or grant["redirect_uri"] != form.get("redirect_uri")):
            return self._json(h, {"error": "invalid_grant"}, 400)
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": self.audience or self.client_id,
            "iat": now if self.lifetime > 0 else now + int(self.lifetime) - 60,
            "exp": now + int(self.lifetime),
            "nonce": grant["nonce"],
            **self.user,
        }
        id_token = jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": self.kid})
        return self._json(h, {"access_token": secrets.token_urlsafe(24), "token_type": "Bearer",
                              "expires_in": 300, "id_token": id_token})
