"""SMTP provider against a real SMTP server (aiosmtpd) on 127.0.0.1."""

from __future__ import annotations

import email
import email.policy
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from app.models import Channel, Recipient
from app.providers.base import (
    OutboundMessage,
    PermanentProviderError,
    ProviderAuthError,
    ProviderContext,
    TransientProviderError,
)
from app.providers.email.smtp import SmtpProvider
from tests.fakes.aws import free_port
from tests.fakes.smtp import self_signed_cert, server_tls_context, silent_server, smtp_server

USER, PASSWORD = "mailer", "s3cret-pass"


def message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "notification_id": uuid4(),
        "channel": Channel.EMAIL,
        "to": Recipient(email="ada@example.net", name="Ada Lovelace"),
        "subject": "Ünïcode weekly news ✓",
        "text": "Hello Ada, plain text.",
        "html": "<p>Hello <b>Ada</b>, html.</p>",
        "from_address": "News <news@example.com>",
        "reply_to": "support@example.com",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("smtp-tls"))


@pytest.fixture
def smtp(provider_ctx: Callable[..., ProviderContext]) -> Callable[..., SmtpProvider]:
    def build(port: int, ctx: dict[str, Any] | None = None, **config: Any) -> SmtpProvider:
        base = {"host": "127.0.0.1", "port": port, "starttls": False}
        return SmtpProvider({**base, **config}, provider_ctx(**(ctx or {})))

    return build


@pytest.fixture
def plain_server() -> Iterator[Any]:
    with smtp_server() as server:
        yield server


def parse(raw: bytes) -> email.message.EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, email.message.EmailMessage)
    return parsed


async def test_plain_send_delivers_multipart_alternative_with_headers(
    plain_server: Any, smtp: Callable[..., SmtpProvider]
) -> None:
    msg = message(category="marketing", unsubscribe_url="https://app.example.com/u/123")
    result = await smtp(plain_server.port).send(msg)

    [got] = plain_server.handler.messages
    assert got.mail_from == "news@example.com"
    assert got.rcpt_tos == ["ada@example.net"]
    mail = parse(got.content)
    assert mail.get_content_type() == "multipart/alternative"
    parts = [p.get_content_type() for p in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert mail.get_body(("plain",)).get_content().strip() == "Hello Ada, plain text."  # type: ignore[union-attr]
    assert "<b>Ada</b>" in mail.get_body(("html",)).get_content()  # type: ignore[union-attr]
    assert mail["Subject"] == "Ünïcode weekly news ✓"
    assert b"=?utf-8?" in got.content  # the subject went out RFC 2047 encoded
    assert mail["From"] == "News <news@example.com>"
    assert mail["To"] == "Ada Lovelace <ada@example.net>"
    assert mail["Reply-To"] == "support@example.com"
    assert mail["Date"] is not None
    assert mail["X-Notification-ID"] == str(msg.notification_id)
    assert mail["List-Unsubscribe"] == "<https://app.example.com/u/123>"
    assert mail["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # The provider id is our Message-ID, on the sender's domain.
    assert mail["Message-ID"] == f"<{result.provider_message_id}>"
    assert result.provider_message_id and result.provider_message_id.endswith("@example.com")


async def test_transactional_mail_has_no_list_unsubscribe_and_html_only_gets_text(
    plain_server: Any, smtp: Callable[..., SmtpProvider]
) -> None:
    msg = message(
        category="transactional",
        unsubscribe_url="https://app.example.com/u/1",
        text=None,
        html='<p>Reset: <a href="https://x.example/r">link</a></p>',
    )
    await smtp(plain_server.port).send(msg)
    mail = parse(plain_server.handler.messages[-1].content)
    assert mail["List-Unsubscribe"] is None
    text = mail.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert "Reset: link (https://x.example/r)" in text


@pytest.mark.parametrize("excluded", [["LOGIN"], ["PLAIN"]], ids=["auth-plain", "auth-login"])
async def test_starttls_with_auth_and_validation_off(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider], excluded: list[str]
) -> None:
    context = server_tls_context(*tls_files)
    with smtp_server(
        starttls_context=context, credentials=(USER, PASSWORD), exclude_mechanisms=excluded
    ) as server:
        provider = smtp(
            server.port, starttls=True, user=USER, password=PASSWORD, reject_unauthorized=False
        )
        await provider.send(message())
    [got] = server.handler.messages
    assert got.tls and got.authenticated and got.login == USER
    used = {"LOGIN", "PLAIN"} - set(excluded)
    assert server.authenticator is not None and set(server.authenticator.mechanisms) == used


async def test_starttls_validation_on_rejects_self_signed_cert(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider]
) -> None:
    with smtp_server(starttls_context=server_tls_context(*tls_files)) as server:
        provider = smtp(server.port, starttls=True)  # reject_unauthorized defaults to on
        with pytest.raises(ProviderAuthError, match="certificate"):
            await provider.send(message())
        assert server.handler.messages == []


async def test_implicit_tls_port(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider]
) -> None:
    with smtp_server(implicit_tls_context=server_tls_context(*tls_files)) as server:
        await smtp(server.port, secure=True, reject_unauthorized=False).send(message())
    assert server.handler.messages[0].tls


async def test_wrong_password_is_auth_error(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider]
) -> None:
    context = server_tls_context(*tls_files)
    with smtp_server(starttls_context=context, credentials=(USER, PASSWORD)) as server:
        provider = smtp(
            server.port, starttls=True, user=USER, password="wrong", reject_unauthorized=False
        )
        with pytest.raises(ProviderAuthError, match="535"):
            await provider.send(message())


async def test_password_falls_back_to_email_api_key(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider]
) -> None:
    context = server_tls_context(*tls_files)
    with smtp_server(starttls_context=context, credentials=(USER, PASSWORD)) as server:
        provider = smtp(
            server.port,
            ctx={"email_api_key": PASSWORD},
            starttls=True,
            user=USER,
            reject_unauthorized=False,
        )
        await provider.send(message())
    assert server.handler.messages[0].authenticated


async def test_550_on_rcpt_is_permanent_invalid_recipient(
    plain_server: Any, smtp: Callable[..., SmtpProvider]
) -> None:
    msg = message(to=Recipient(email="reject@example.net"))
    with pytest.raises(PermanentProviderError) as info:
        await smtp(plain_server.port).send(msg)
    assert info.value.invalid_recipient
    assert "550" in str(info.value)


async def test_450_on_rcpt_is_transient(
    plain_server: Any, smtp: Callable[..., SmtpProvider]
) -> None:
    with pytest.raises(TransientProviderError) as info:
        await smtp(plain_server.port).send(message(to=Recipient(email="busy@example.net")))
    assert not isinstance(info.value, ProviderAuthError)


async def test_refused_connection_is_transient(smtp: Callable[..., SmtpProvider]) -> None:
    with pytest.raises(TransientProviderError) as info:
        await smtp(free_port()).send(message())
    assert not isinstance(info.value, ProviderAuthError)


async def test_silent_server_times_out_as_transient(smtp: Callable[..., SmtpProvider]) -> None:
    async with silent_server() as port:
        provider = smtp(port, ctx={"provider_timeout": 0.5})
        started = time.monotonic()
        with pytest.raises(TransientProviderError, match="timed out"):
            await provider.send(message())
    assert time.monotonic() - started < 3


async def test_check_logs_in_and_reports_bad_credentials(
    tls_files: tuple[Path, Path], smtp: Callable[..., SmtpProvider]
) -> None:
    context = server_tls_context(*tls_files)
    with smtp_server(starttls_context=context, credentials=(USER, PASSWORD)) as server:
        good = smtp(
            server.port, starttls=True, user=USER, password=PASSWORD, reject_unauthorized=False
        )
        bad = smtp(
            server.port, starttls=True, user=USER, password="nope", reject_unauthorized=False
        )
        ok, refused = await good.check(), await bad.check()
    assert (ok.reachable, ok.authenticated) == (True, True)
    assert (refused.reachable, refused.authenticated) == (True, False)
    assert server.handler.messages == []  # check() never sends


async def test_check_unreachable(smtp: Callable[..., SmtpProvider]) -> None:
    result = await smtp(free_port()).check()
    assert not result.reachable


def test_config_from_settings(make_settings: Callable[..., Any]) -> None:
    assert SmtpProvider.config_from_settings(make_settings(email_provider="resend")) is None
    assert SmtpProvider.config_from_settings(make_settings(email_provider="smtp")) is None
    config = SmtpProvider.config_from_settings(
        make_settings(
            email_provider="smtp",
            smtp_host="mail.example.com",
            smtp_port=465,
            smtp_secure=True,
            smtp_user="u",
            email_api_key="key-as-password",
        )
    )
    assert config is not None
    assert config["host"] == "mail.example.com" and config["port"] == 465 and config["secure"]
    assert config["password"] == "key-as-password"
    assert config["reject_unauthorized"] is True


async def test_header_injection_is_refused_before_connecting(
    smtp: Callable[..., SmtpProvider],
) -> None:
    # Nothing listens on this port: the error must come from building the message.
    bad = message(reply_to="help@example.com\r\nBcc: victim@example.org")
    with pytest.raises(PermanentProviderError, match="cannot build"):
        await smtp(free_port()).send(bad)
