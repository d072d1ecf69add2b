"""A local RFC 3161 time-stamping authority for the tests, served on 127.0.0.1.

Built with ``cryptography`` (a self-signed root, and a TSA certificate with the
critical timeStamping EKU it issues) and ``asn1crypto`` (TimeStampResp, SignedData,
TSTInfo, the ESS signing-certificate-v2 attribute), following RFC 3161 and RFC 5816.
``rfc3161-client`` — an independent implementation — verifies what it issues.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from asn1crypto import cms, core, tsp
from asn1crypto import x509 as ax509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _usage(**on: bool) -> x509.KeyUsage:
    flags = dict.fromkeys(
        ("digital_signature", "content_commitment", "key_encipherment", "data_encipherment",
         "key_agreement", "key_cert_sign", "crl_sign", "encipher_only", "decipher_only"),
        False,
    )
    return x509.KeyUsage(**{**flags, **on})


class LocalTsa:
    def __init__(self) -> None:
        now = datetime.now(UTC)
        self.root_key = ec.generate_private_key(ec.SECP256R1())
        self.root = (
            x509.CertificateBuilder()
            .subject_name(_name("Annexa test TSA root"))
            .issuer_name(_name("Annexa test TSA root"))
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_usage(key_cert_sign=True, crl_sign=True), critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name("Annexa test TSA"))
            .issuer_name(self.root.subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]),
                           critical=True)
            .add_extension(_usage(digital_signature=True, content_commitment=True),
                           critical=True)
            .sign(self.root_key, hashes.SHA256())
        )
        self.serial = 0
        self.requests = 0
        self.up = True

    def root_pem(self) -> bytes:
        return self.root.public_bytes(serialization.Encoding.PEM)

    def respond(self, request_der: bytes) -> bytes:
        self.serial += 1
        req = tsp.TimeStampReq.load(request_der)
        info = {
            "version": "v1",
            "policy": "1.3.6.1.4.1.4146.2.3",
            "message_imprint": req["message_imprint"],
            "serial_number": self.serial,
            "gen_time": datetime.now(UTC),
        }
        if req["nonce"].native is not None:
            info["nonce"] = req["nonce"].native
        tst_der = tsp.TSTInfo(info).dump()
        cert_der = self.cert.public_bytes(serialization.Encoding.DER)
        cert = ax509.Certificate.load(cert_der)
        ess = tsp.ESSCertIDv2(
            {"hash_algorithm": {"algorithm": "sha256"},
             "cert_hash": hashlib.sha256(cert_der).digest()}
        )
        attrs = cms.CMSAttributes([
            cms.CMSAttribute({"type": "content_type", "values": ["tst_info"]}),
            cms.CMSAttribute({"type": "message_digest",
                              "values": [hashlib.sha256(tst_der).digest()]}),
            cms.CMSAttribute({"type": "signing_certificate_v2",
                              "values": [tsp.SigningCertificateV2({"certs": [ess]})]}),
        ])
        signer = cms.SignerInfo({
            "version": "v1",
            "sid": cms.SignerIdentifier({"issuer_and_serial_number": cms.IssuerAndSerialNumber(
                {"issuer": cert.issuer, "serial_number": cert.serial_number})}),
            "digest_algorithm": {"algorithm": "sha256"},
            "signed_attrs": attrs,
            "signature_algorithm": {"algorithm": "sha256_ecdsa"},
            "signature": self.key.sign(attrs.dump(), ec.ECDSA(hashes.SHA256())),
        })
        signed = cms.SignedData({
            "version": "v3",
            "digest_algorithms": [{"algorithm": "sha256"}],
            "encap_content_info": {"content_type": "tst_info",
                                   "content": core.ParsableOctetString(tst_der)},
            "certificates": [cert] if req["cert_req"].native else [],
            "signer_infos": [signer],
        })
        return tsp.TimeStampResp({
            "status": {"status": "granted"},
            "time_stamp_token": cms.ContentInfo({"content_type": "signed_data",
                                                 "content": signed}),
        }).dump()


@pytest.fixture
def local_tsa(tmp_path: Path) -> Iterator[tuple[LocalTsa, str, Path]]:
    """(the TSA, its URL on 127.0.0.1, a PEM file of its root certificate)."""
    authority = LocalTsa()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            authority.requests += 1
            if not authority.up or self.headers.get("Content-Type") != (
                "application/timestamp-query"
            ):
                self.send_response(503)
                self.end_headers()
                return
            answer = authority.respond(body)
            self.send_response(200)
            self.send_header("Content-Type", "application/timestamp-reply")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    roots = tmp_path / "tsa-root.pem"
    roots.write_bytes(authority.root_pem())
    try:
        yield authority, f"http://127.0.0.1:{server.server_address[1]}/tsr", roots
    finally:
        server.shutdown()
        server.server_close()
