"""Building a proper MIME email from an OutboundMessage.

Used by SMTP (sent as is) and SES (sent as Content.Raw), usable by any provider
that takes raw MIME. What the message gets:

* `multipart/alternative` with text/plain first and text/html last (clients
  show the last part they understand); a plain-text part is derived from the
  HTML when only HTML was given, and a text-only message stays text/plain;
* From, To (with the recipient's display name), Reply-To, Subject (RFC 2047
  encoded when not ASCII), Date, Message-ID (optional: SES sets its own);
* for marketing mail with an unsubscribe URL: `List-Unsubscribe` and, for an
  https URL, `List-Unsubscribe-Post: List-Unsubscribe=One-Click` (RFC 8058),
  which Gmail and Yahoo require of bulk senders;
* `X-Notification-ID`, so a bounce that quotes our headers can be traced back.

Bodies are 7-bit safe (quoted-printable or base64 when needed), so no relay
needs 8BITMIME, and lines end in CRLF as SMTP wants.
"""

from __future__ import annotations

import email.policy
import email.utils
import html as html_lib
import re
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage

from app.providers.base import OutboundMessage

POLICY = email.policy.SMTP.clone(cte_type="7bit")

_BLOCK_END = re.compile(r"(?i)</(p|div|h[1-6]|li|tr|table|blockquote)>|<br\s*/?>")
_DROP = re.compile(r"(?is)<(script|style|head)\b.*?</\1>")
_LINK = re.compile(r"(?is)<a\b[^>]*\bhref\s*=\s*[\"']([^\"']+)[\"'][^>]*>(.*?)</a>")
_TAG = re.compile(r"(?s)<[^>]+>")
_SPACES = re.compile(r"[ \t\r\f\v]+")
_BLANKS = re.compile(r"\n\s*\n+")


def html_to_text(html: str) -> str:
    """A readable plain-text rendering of HTML, for the text/plain alternative."""
    text = _DROP.sub("", html)
    text = _LINK.sub(lambda m: _link_text(m.group(2), m.group(1)), text)
    text = _BLOCK_END.sub("\n", text)
    text = html_lib.unescape(_TAG.sub("", text))
    lines = (_SPACES.sub(" ", line).strip() for line in text.split("\n"))
    return _BLANKS.sub("\n\n", "\n".join(lines)).strip()


def _link_text(label_html: str, href: str) -> str:
    label = _TAG.sub("", label_html).strip()
    return f"{label} ({href})" if label and label != href else href


def address_of(value: str) -> str:
    """The bare addr-spec of "Name <a@b>" or "a@b" (the SMTP envelope address)."""
    return email.utils.parseaddr(value)[1]


def new_message_id(from_address: str) -> str:
    """A unique Message-ID (with angle brackets) on the sender's domain."""
    domain = address_of(from_address).rpartition("@")[2] or "localhost"
    return email.utils.make_msgid(domain=domain)


def build_message(
    message: OutboundMessage,
    *,
    from_address: str,
    reply_to: str | None = None,
    message_id: str | None = None,
) -> EmailMessage:
    """The MIME message for `message`; raises ValueError for unusable input.

    `message_id` is set as given (pass `new_message_id(...)`), or left out when
    None (for services that assign their own, like SES).
    """
    if not message.to.email:
        raise ValueError("email needs a recipient address")
    text, html = message.text, message.html
    if not text and not html:
        raise ValueError("email needs a text or html body")

    mime = EmailMessage(policy=POLICY)
    mime["From"] = from_address
    mime["To"] = Address(display_name=message.to.name or "", addr_spec=message.to.email)
    if reply_to:
        mime["Reply-To"] = reply_to
    mime["Subject"] = message.subject or ""
    mime["Date"] = email.utils.format_datetime(datetime.now(UTC))
    if message_id:
        mime["Message-ID"] = message_id
    mime["X-Notification-ID"] = str(message.notification_id)
    if message.is_marketing and message.unsubscribe_url:
        add_list_unsubscribe(mime, message.unsubscribe_url)

    mime.set_content(text if text else html_to_text(html or ""))
    if html:
        mime.add_alternative(html, subtype="html")
    return mime


def add_list_unsubscribe(mime: EmailMessage, url: str) -> None:
    """RFC 2369 List-Unsubscribe, plus RFC 8058 one-click POST for https URLs."""
    mime["List-Unsubscribe"] = f"<{url}>"
    if url.lower().startswith("https://"):
        mime["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"


def to_bytes(mime: EmailMessage) -> bytes:
    """The wire form: CRLF line ends, 7-bit clean."""
    return mime.as_bytes(policy=POLICY)
