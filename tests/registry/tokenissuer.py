"""A Bearer token issuer for a real `docker-registry` configured with ``auth: token``.

It signs real JWTs (RS256) with a self-signed certificate that the registry trusts
through ``rootcertbundle``; the certificate travels in the JWT header (``x5c``),
which is how docker/distribution 2.8 finds the signing key. The issuer checks
Basic credentials, grants ``pull`` to a read-only user and ``pull,push`` to the
writer, and records every scope it was asked for.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "anybuild-test-issuer"
SERVICE = "anybuild-test-registry"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(slots=True)
class TokenIssuer:
    cert_path: Path
    users: dict[str, tuple[str, frozenset[str]]]  # name -> (password, allowed actions)
    key: rsa.RSAPrivateKey
    cert_der: bytes
    requests: list[dict[str, object]] = field(default_factory=list)
    realm: str = ""
    tokens: list[str] = field(default_factory=list)

    def sign(self, claims: dict[str, object]) -> str:
        header = {"typ": "JWT", "alg": "RS256", "x5c": [base64.b64encode(self.cert_der).decode()]}
        signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def answer(self, query: dict[str, list[str]], authorization: str) -> tuple[int, dict[str, object]]:
        account = ""
        allowed: frozenset[str] = frozenset({"pull"})  # anonymous may pull nothing below
        if authorization.startswith("Basic "):
            user, _, password = base64.b64decode(authorization[6:]).decode().partition(":")
            known = self.users.get(user)
            if known is None or known[0] != password:
                return 401, {"details": "bad credentials"}
            account, allowed = user, known[1]
        else:
            allowed = frozenset()
        access = []
        for scope in query.get("scope", []):
            kind, _, rest = scope.partition(":")
            name, _, actions = rest.rpartition(":")
            granted = sorted(set(actions.split(",")) & allowed)
            access.append({"type": kind, "name": name, "actions": granted})
        self.requests.append({"account": account, "scopes": sorted(query.get("scope", []))})
        now = int(time.time())
        token = self.sign({"iss": ISSUER, "sub": account, "aud": query.get("service", [""])[0], "exp": now + 300,
                           "nbf": now - 10, "iat": now, "jti": secrets.token_hex(8), "access": access})
        self.tokens.append(token)
        return 200, {"token": token, "expires_in": 300}


def make_issuer(directory: Path, users: dict[str, tuple[str, frozenset[str]]]) -> TokenIssuer:
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "anybuild test token signer")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "token-signer.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return TokenIssuer(cert_path=cert_path, users=users, key=key,
                       cert_der=cert.public_bytes(serialization.Encoding.DER))


@contextmanager
def serving(issuer: TokenIssuer) -> Iterator[TokenIssuer]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:
            status, body = issuer.answer(parse_qs(urlparse(self.path).query), self.headers.get("Authorization", ""))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    issuer.realm = f"http://127.0.0.1:{server.server_address[1]}/token"
    thread = threading.Thread(target=server.serve_forever, name="token-issuer", daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
