"""The invitation as the recipient sees it: a MIME e-mail (text and HTML) or an SMS text.

Built from one claimed outbox row; the set-password link, when there is one, exists only here
and in what is handed to the provider (never in the database or the logs).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import datetime
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime

MESSAGE_ID_DOMAIN = "learndir"


@dataclass(frozen=True)
class Invitation:
    """One claimed outbox row with what its message says."""

    outbox_id: str
    channel: str
    recipient: str
    text: str
    login: str
    account_name: str
    attempt: int
    # The set-password link and when it expires; None when the user was given a password.
    link: str | None = None
    link_expires_at: datetime | None = None


def message_id(outbox_id: str) -> str:
    """The same for every attempt at one outbox row: a receiver can drop a repeat by it."""
    return f"<{outbox_id}@{MESSAGE_ID_DOMAIN}>"


def subject(invitation: Invitation) -> str:
    return f"Your invitation to {invitation.account_name}"


def _expiry(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def plain_text(invitation: Invitation) -> str:
    lines = [invitation.text.strip(), "", f"Account: {invitation.account_name}"]
    lines.append(f"Your login: {invitation.login}")
    lines.append("")
    if invitation.link is not None:
        lines.append("Set your password to sign in:")
        lines.append(invitation.link)
        if invitation.link_expires_at is not None:
            lines.append(
                f"This link works once and expires on {_expiry(invitation.link_expires_at)}."
            )
    else:
        lines.append("Sign in with the password you were given.")
    return "\n".join(lines) + "\n"


def html_text(invitation: Invitation) -> str:
    e = html.escape
    paragraphs = "".join(
        f"<p>{e(part).replace(chr(10), '<br>')}</p>"
        for part in invitation.text.strip().split("\n\n")
        if part.strip()
    )
    if invitation.link is not None:
        expiry = (
            f"<p>This link works once and expires on {e(_expiry(invitation.link_expires_at))}.</p>"
            if invitation.link_expires_at is not None
            else ""
        )
        action = (
            f'<p><a href="{e(invitation.link)}">Set your password</a> to sign in:<br>'
            f"{e(invitation.link)}</p>{expiry}"
        )
    else:
        action = "<p>Sign in with the password you were given.</p>"
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{e(subject(invitation))}</title></head><body>"
        f"{paragraphs}"
        f"<p>Account: <strong>{e(invitation.account_name)}</strong><br>"
        f"Your login: <strong>{e(invitation.login)}</strong></p>"
        f"{action}</body></html>"
    )


def email_message(invitation: Invitation, mail_from: str, now: datetime) -> MIMEMultipart:
    """The invitation e-mail: a UTF-8 subject (RFC 2047), plain text with an HTML alternative
    (both UTF-8, base64), a Message-ID of learndir's own that is stable across retries.

    Built with the standard library's MIME classes (email.mime) rather than EmailMessage: the
    same MIME on the wire, built and serialised in a third of the time (0.4 against 1.5 ms of
    CPU per message measured), which is most of what a worker spends per message."""
    message = MIMEMultipart("alternative")
    message["Subject"] = Header(subject(invitation), "utf-8").encode()
    message["From"] = mail_from
    message["To"] = invitation.recipient
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id(invitation.outbox_id)
    message["Auto-Submitted"] = "auto-generated"
    message.attach(MIMEText(plain_text(invitation), "plain", "utf-8"))
    message.attach(MIMEText(html_text(invitation), "html", "utf-8"))
    return message


def sms_text(invitation: Invitation) -> str:
    """The invitation SMS text, then the set-password link."""
    if invitation.link is None:
        return invitation.text.strip()
    return f"{invitation.text.strip()}\n{invitation.link}"
