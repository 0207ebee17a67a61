"""SMTP fakes: an aiosmtpd server that records what it receives, and a silent one.

`smtp_server(...)` runs aiosmtpd's Controller (its own thread and loop) on
127.0.0.1 with the options a real relay has: STARTTLS or implicit TLS with a
self-signed certificate, AUTH PLAIN/LOGIN checked by an authenticator, and
per-recipient answers (`reject@...` gets 550 5.1.1, `busy@...` gets 450 4.2.1),
so tests see the same reply codes a real server sends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.fakes.aws import free_port


def self_signed_cert(directory: Path, host: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate (and key) valid for `host` and localhost."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(host))]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_tls_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    return context


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    authenticated: bool
    login: str | None
    tls: bool


@dataclass
class RecordingHandler:
    """aiosmtpd handler: answers RCPT like a real server and keeps each message."""

    messages: list[Received] = field(default_factory=list)

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        if address.startswith("reject@"):
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        login = session.auth_data.login.decode() if session.auth_data else None
        self.messages.append(
            Received(
                mail_from=envelope.mail_from,
                rcpt_tos=list(envelope.rcpt_tos),
                content=bytes(envelope.original_content or envelope.content),
                authenticated=bool(session.authenticated),
                login=login,
                tls=session.ssl is not None
                or server.transport.get_extra_info("ssl_object") is not None,
            )
        )
        return "250 2.0.0 Message accepted for delivery"


class Authenticator:
    """Accepts exactly one user/password pair (for AUTH PLAIN and LOGIN)."""

    def __init__(self, user: str, password: str) -> None:
        self.user, self.password = user.encode(), password.encode()
        self.mechanisms: list[str] = []

    def __call__(
        self, server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any
    ) -> AuthResult:
        self.mechanisms.append(mechanism)
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
            self.user,
            self.password,
        )
        # handled=False: aiosmtpd itself answers 235 or 535, as a real server does.
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)


@dataclass
class SmtpFake:
    host: str
    port: int
    handler: RecordingHandler
    authenticator: Authenticator | None


@contextmanager
def smtp_server(
    *,
    starttls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
    exclude_mechanisms: list[str] | None = None,
) -> Iterator[SmtpFake]:
    """A running aiosmtpd server on 127.0.0.1; AUTH required when credentials are given."""
    handler = RecordingHandler()
    authenticator = Authenticator(*credentials) if credentials else None
    port = free_port()
    kwargs: dict[str, Any] = {"hostname": "127.0.0.1", "port": port}
    if implicit_tls_context is not None:
        kwargs["ssl_context"] = implicit_tls_context
    if starttls_context is not None:
        kwargs.update(tls_context=starttls_context, require_starttls=True)
    if authenticator is not None:
        kwargs.update(
            authenticator=authenticator,
            auth_required=True,
            auth_require_tls=starttls_context is not None or implicit_tls_context is not None,
            auth_exclude_mechanism=exclude_mechanisms or [],
        )
    controller = Controller(handler, **kwargs)
    controller.start()
    try:
        yield SmtpFake("127.0.0.1", port, handler, authenticator)
    finally:
        controller.stop()


@asynccontextmanager
async def silent_server() -> AsyncIterator[int]:
    """Accepts TCP connections and never says a word (for timeout tests); yields the port."""
    release = asyncio.Event()

    async def hold(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.close()

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    try:
        yield int(server.sockets[0].getsockname()[1])
    finally:
        release.set()
        server.close()
        await server.wait_closed()
