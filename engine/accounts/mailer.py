"""Outgoing account email (verification, password reset, invitations).

With `SMTP_URL` set (smtp://user:pass@host:587 for STARTTLS, smtps://... for implicit TLS) mail
goes out through aiosmtplib; without it each message is written to `<data_dir>/outbox/` as an
.eml file, which is how `linkrift dev` and the tests read the links.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import unquote, urlsplit

import aiosmtplib

log = logging.getLogger(__name__)


class Mailer:
    def __init__(self, smtp_url: str | None, sender: str, outbox_dir: Path) -> None:
        self._smtp_url = smtp_url
        self._sender = sender
        self.outbox_dir = outbox_dir

    def message(self, to: str, subject: str, body: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self._sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Message-ID"] = f"<{uuid.uuid4().hex}@linkrift>"
        msg.set_content(body)
        return msg

    async def send(self, to: str, subject: str, body: str) -> None:
        msg = self.message(to, subject, body)
        if self._smtp_url is None:
            await asyncio.to_thread(self._write_outbox, msg)
            return
        url = urlsplit(self._smtp_url)
        await aiosmtplib.send(
            msg,
            hostname=url.hostname or "127.0.0.1",
            port=url.port or (465 if url.scheme == "smtps" else 587),
            username=unquote(url.username) if url.username else None,
            password=unquote(url.password) if url.password else None,
            use_tls=url.scheme == "smtps",
            start_tls=True if url.scheme == "smtp+starttls" else None,
            timeout=10,
        )
        log.info("mail sent to=%s subject=%r", to, subject)

    def _write_outbox(self, msg: EmailMessage) -> None:
        self.outbox_dir.mkdir(parents=True, exist_ok=True)
        path = self.outbox_dir / f"{time.time_ns()}-{uuid.uuid4().hex[:8]}.eml"
        path.write_bytes(bytes(msg))
        log.info("mail written to outbox path=%s", path)
