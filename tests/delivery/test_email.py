"""Invitations by e-mail: a real SMTP server (aiosmtpd), an in-process worker, both databases."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta

import pytest
from sqlalchemy import update

from learndir.core.common import as_utc, utcnow
from learndir.db.engine import Database
from learndir.db.schema import outbox
from learndir.delivery.smtp import NOT_CONFIGURED
from learndir.delivery.worker import Worker
from learndir.settings import Settings
from tests.delivery.conftest import (
    ACCOUNT_NAME,
    PUBLIC_URL,
    ScriptedSmtpServer,
    hours_ago,
    invite,
    make_all_due,
    rows,
    settings,
    smtp_settings,
    token_hash,
    wait_until,
)
from tests.receivers import Mail, SmtpServer
from tests.support import World

StartWorker = Callable[[Database, Settings], Worker]
LINK = re.compile(re.escape(PUBLIC_URL) + r"/invite/([A-Za-z0-9_-]{40,})")


def link_of(mail: Mail) -> str | None:
    found = LINK.findall(mail.message.get_body(("plain",)).get_content())
    return found[0] if found else None


def all_sent(db: Database) -> bool:
    current = rows(db)
    return bool(current) and all(r.status == "sent" for r in current)


def test_each_invitation_arrives_once_with_its_text_login_and_link(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    addresses = invite(account, 3, message="Welcome to the <team> & enjoy")
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: all_sent(ddb), what="every message sent")

    by_id = {r.recipient: r for r in rows(ddb)}
    for address in addresses:
        [mail] = smtp_server.to(address)
        message = mail.message
        row = by_id[address]
        assert mail.recipients == [address]
        assert mail.sender == "learndir@example.com"
        assert message["Subject"] == f"Your invitation to {ACCOUNT_NAME}"
        assert message["From"] == "learndir@example.com"
        assert message["To"] == address
        assert message["Message-ID"] == f"<{row.id}@learndir>"
        assert message["Date"]
        assert message.get_content_type() == "multipart/alternative"
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert "Welcome to the <team> & enjoy" in text
        assert "Welcome to the &lt;team&gt; &amp; enjoy" in html
        login = address.split("@")[0]
        assert f"Your login: {login}" in text and login in html
        assert ACCOUNT_NAME in text and "Acme Ünïcode &amp; Co" in html
        [raw] = LINK.findall(text)
        assert LINK.findall(html) == [raw, raw]  # the href and the visible link
        # Only the hash is stored; the link's expiry is the account's lifetime (7 days).
        assert row.token_hash == token_hash(raw)
        assert abs(as_utc(row.expires_at) - as_utc(row.sent_at) - timedelta(days=7)) < timedelta(
            minutes=1
        )
        assert "expires on" in text
        assert row.attempts == 1 and row.last_error is None and row.provider_id
    assert len(smtp_server.mails) == 3


def test_a_user_with_a_password_is_told_to_sign_in_with_it(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    [address] = invite(account, password="Given-Pass-123")
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: all_sent(ddb))
    [mail] = smtp_server.to(address)
    text = mail.message.get_body(("plain",)).get_content()
    assert "Sign in with the password you were given." in text
    assert "/invite/" not in mail.message.as_string()
    [row] = rows(ddb)
    assert row.token_hash is None


def test_the_smtp_server_down_then_back_delivers_every_message_once(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    addresses = invite(account, 25)
    smtp_server.stop()
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(
        lambda: all(r.attempts >= 1 and r.status == "pending" for r in rows(ddb)),
        what="a failed attempt at every message",
    )
    for row in rows(ddb):
        assert row.last_error.startswith("cannot connect to SMTP")
        # The first retry comes within 30 s.
        assert as_utc(row.next_attempt_at) - utcnow() <= timedelta(seconds=30)
    failed_ids = {r.id for r in rows(ddb)}

    smtp_server.start()
    make_all_due(ddb)
    wait_until(lambda: all_sent(ddb), what="every message sent after the outage")
    for address in addresses:
        [mail] = smtp_server.to(address)
        # The Message-ID is the outbox row's, whichever attempt carried it.
        assert mail.message["Message-ID"][1:].split("@")[0] in failed_ids
    assert len(smtp_server.mails) == 25
    assert all(r.attempts == 2 for r in rows(ddb))


def test_the_message_id_is_stable_across_retries(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    """A message sent twice (the crash window) carries the same Message-ID both times, so a
    receiver can drop the repeat."""
    [address] = invite(account)
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: all_sent(ddb))
    with ddb.write() as conn:  # as if the worker died before marking it sent
        conn.execute(update(outbox).values(status="pending", next_attempt_at=utcnow()))
    wait_until(lambda: len(smtp_server.to(address)) == 2 and all_sent(ddb))
    first, second = smtp_server.to(address)
    [row] = rows(ddb)
    assert first.message["Message-ID"] == second.message["Message-ID"] == f"<{row.id}@learndir>"
    # The repeat carries a new link; only the newest works.
    assert link_of(first) != link_of(second)


def test_without_smtp_settings_messages_wait_and_say_why(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    addresses = invite(account, 2)
    unconfigured = start_worker(ddb, settings(ddb.url))
    wait_until(lambda: all(r.last_error == NOT_CONFIGURED for r in rows(ddb)))
    for row in rows(ddb):
        assert row.status == "pending" and row.attempts == 0 and row.token_hash is None
    unconfigured.stop()

    # Configured later: sent at once, without waiting for a retry.
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: all_sent(ddb))
    assert sorted(m.recipients[0] for m in smtp_server.mails) == sorted(addresses)
    assert all(r.last_error is None for r in rows(ddb))


def test_after_24_hours_of_failures_a_message_is_failed_and_kept(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    invite(account)
    with ddb.write() as conn:
        conn.execute(update(outbox).values(first_attempt_at=hours_ago(24.1), attempts=30))
    smtp_server.stop()
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: rows(ddb)[0].status == "failed")
    [row] = rows(ddb)
    assert row.attempts == 31 and row.last_error.startswith("cannot connect to SMTP")


def test_a_recipient_the_server_refuses_for_good_is_failed_at_once(
    ddb: Database, account: World, start_worker: StartWorker
) -> None:
    server = ScriptedSmtpServer()
    server.start()
    try:
        [refused] = invite(account)
        [accepted] = invite(account)
        server.refuse.add(refused)
        start_worker(ddb, settings(ddb.url, **smtp_settings(server)))
        wait_until(lambda: {r.status for r in rows(ddb)} == {"failed", "sent"})
    finally:
        server.stop()
    by_recipient = {r.recipient: r for r in rows(ddb)}
    row = by_recipient[refused]
    assert row.status == "failed" and row.attempts == 1
    assert row.last_error == "SMTP refused the recipient: 550 5.1.1 no such user"
    assert [m.recipients for m in server.mails] == [[accepted]]


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_the_worker_signs_in_when_a_username_is_set(
    ddb: Database, account: World, start_worker: StartWorker
) -> None:
    server = ScriptedSmtpServer(login=("mailer", "Mail-Secret-1"))
    server.start()
    try:
        [wrong] = invite(account)
        refused = start_worker(
            ddb,
            settings(
                ddb.url, **smtp_settings(server), smtp_username="mailer", smtp_password="nope"
            ),
        )
        wait_until(lambda: rows(ddb)[0].attempts >= 1)
        refused.stop()
        assert rows(ddb)[0].last_error.startswith("SMTP login refused: 535")
        make_all_due(ddb)
        start_worker(
            ddb,
            settings(
                ddb.url,
                **smtp_settings(server),
                smtp_username="mailer",
                smtp_password="Mail-Secret-1",
            ),
        )
        wait_until(lambda: all_sent(ddb))
    finally:
        server.stop()
    assert [m.recipients for m in server.mails] == [[wrong]]
