"""E-mail over SMTP (the standard library's smtplib): plain, STARTTLS or implicit TLS, with
login when a username is set. One connection is kept per sender thread and reused message
after message; a connection found closed is opened again once before the message counts as
failed."""

from __future__ import annotations

import smtplib
import ssl
from dataclasses import dataclass
from email.message import Message
from email.policy import compat32

from learndir.delivery.errors import DeliveryError
from learndir.settings import Settings

SMTP_TIMEOUT_SECONDS = 10.0
NOT_CONFIGURED = "SMTP is not configured (set LEARNDIR_SMTP_HOST)"
# What goes on the wire: CRLF line ends (smtplib sends bytes as they are).
_WIRE = compat32.clone(linesep="\r\n")


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int
    security: str
    username: str | None
    password: str | None
    mail_from: str

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """None without LEARNDIR_SMTP_HOST."""
        if not settings.smtp_host:
            return None
        port = settings.smtp_port
        security: str = settings.smtp_security or {465: "tls", 587: "starttls"}.get(
            port or 0, "none"
        )
        if port is None:
            port = {"tls": 465, "starttls": 587}.get(security, 25)
        return cls(
            host=settings.smtp_host,
            port=port,
            security=security,
            username=settings.smtp_username,
            password=settings.smtp_password.get_secret_value() if settings.smtp_password else None,
            mail_from=settings.mail_from,
        )


class ConnectError(DeliveryError):
    """No session: the server is unreachable or refused the login. Every message waiting for
    this connection fails the same way, so the rest of a batch is not tried one by one."""


def _reply(code: int, text: bytes | str) -> str:
    decoded = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    return f"{code} {decoded}".strip()


class SmtpConnection:
    """One SMTP session, opened on first use and reopened after an error."""

    def __init__(self, config: SmtpConfig) -> None:
        self.config = config
        self._smtp: smtplib.SMTP | None = None

    def _open(self) -> smtplib.SMTP:
        c = self.config
        smtp: smtplib.SMTP | None = None
        try:
            if c.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    c.host,
                    c.port,
                    timeout=SMTP_TIMEOUT_SECONDS,
                    context=ssl.create_default_context(),
                )
            else:
                smtp = smtplib.SMTP(c.host, c.port, timeout=SMTP_TIMEOUT_SECONDS)
            smtp.ehlo()
            if c.security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            if c.username:
                smtp.login(c.username, c.password or "")
        except (smtplib.SMTPException, OSError) as exc:
            if smtp is not None:
                smtp.close()
            if isinstance(exc, smtplib.SMTPAuthenticationError):
                reason = f"SMTP login refused: {_reply(exc.smtp_code, exc.smtp_error)}"
            else:
                reason = f"cannot connect to SMTP {c.host}:{c.port}: {type(exc).__name__}: {exc}"
            raise ConnectError(reason) from None
        return smtp

    def send(self, message: Message) -> str:
        """Hands `message` to the server; returns the server's final reply (its queue id)."""
        for attempt in (1, 2):
            fresh = self._smtp is None
            if self._smtp is None:
                self._smtp = self._open()
            try:
                return self._transaction(self._smtp, message)
            except (smtplib.SMTPServerDisconnected, OSError) as exc:
                self.close()
                # A kept connection the server has since closed: open a new one, once.
                if fresh or attempt == 2:
                    raise DeliveryError(
                        f"SMTP connection lost: {type(exc).__name__}: {exc}"
                    ) from None
        raise AssertionError("unreachable")

    def _transaction(self, smtp: smtplib.SMTP, message: Message) -> str:
        sender = self.config.mail_from
        recipient = str(message["To"])
        text: bytes | str
        code, text = smtp.mail(sender)
        if code != 250:
            self._reset(smtp)
            # The sender is refused: a setting to fix, not this message's fault; keep retrying.
            raise DeliveryError(f"SMTP refused the sender: {_reply(code, text)}")
        code, text = smtp.rcpt(recipient)
        if code not in (250, 251):
            self._reset(smtp)
            raise DeliveryError(
                f"SMTP refused the recipient: {_reply(code, text)}", permanent=500 <= code < 600
            )
        try:
            code, text = smtp.data(message.as_bytes(policy=_WIRE))
        except smtplib.SMTPDataError as exc:
            code, text = exc.smtp_code, exc.smtp_error
        if code != 250:
            self._reset(smtp)
            raise DeliveryError(
                f"SMTP refused the message: {_reply(code, text)}", permanent=500 <= code < 600
            )
        return _reply(code, text)[:255]

    def _reset(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.rset()
        except (smtplib.SMTPException, OSError):
            self.close()

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            smtp.close()
