"""`learndir outbox list` and `learndir outbox retry`, as an administrator runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

from sqlalchemy import update

from learndir.db.engine import Database
from learndir.db.schema import outbox
from learndir.delivery.worker import Worker
from learndir.settings import Settings
from tests.delivery.conftest import hours_ago, invite, rows, settings, smtp_settings, wait_until
from tests.receivers import SmtpServer
from tests.support import World

StartWorker = Callable[[Database, Settings], Worker]


def learndir(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "learndir", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=dict(os.environ),
    )


def test_list_shows_messages_by_status_without_links(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    sent, waiting = invite(account), invite(account)
    with ddb.write() as conn:
        conn.execute(
            update(outbox)
            .where(outbox.c.recipient == waiting[0])
            .values(next_attempt_at=hours_ago(-1))
        )
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))
    wait_until(lambda: any(r.status == "sent" for r in rows(ddb)))

    table = learndir("outbox", "list", "--database-url", ddb.url)
    assert table.returncode == 0, table.stderr
    header, *lines = table.stdout.splitlines()
    assert header.split()[:5] == ["id", "channel", "recipient", "status", "attempts"]
    assert len(lines) == 2
    assert "/invite/" not in table.stdout

    listed = learndir("outbox", "list", "--status", "sent", "--json", "--database-url", ddb.url)
    [entry] = json.loads(listed.stdout)
    assert entry["recipient"] == sent[0] and entry["status"] == "sent"
    assert entry["attempts"] == 1 and entry["sentAt"]
    assert set(entry) == {
        "id",
        "channel",
        "recipient",
        "status",
        "attempts",
        "lastError",
        "createdAt",
        "sentAt",
        "nextAttemptAt",
    }
    pending = learndir("outbox", "list", "--status", "pending", "--json", "--database-url", ddb.url)
    assert [e["recipient"] for e in json.loads(pending.stdout)] == waiting

    wrong = learndir("outbox", "list", "--status", "lost", "--database-url", ddb.url)
    assert wrong.returncode == 2 and "--status must be one of" in wrong.stderr


def test_retry_sends_a_failed_message_again_with_a_fresh_day(
    ddb: Database, account: World, smtp_server: SmtpServer, start_worker: StartWorker
) -> None:
    [address] = invite(account)
    with ddb.write() as conn:
        conn.execute(
            update(outbox).values(
                status="failed", attempts=31, last_error="boom", first_attempt_at=hours_ago(30)
            )
        )
    [row] = rows(ddb)
    start_worker(ddb, settings(ddb.url, **smtp_settings(smtp_server)))

    done = learndir("outbox", "retry", row.id, "--database-url", ddb.url)
    assert done.returncode == 0, done.stderr
    assert "queued" in done.stdout
    wait_until(lambda: rows(ddb)[0].status == "sent")
    [row] = rows(ddb)
    assert row.attempts == 1 and row.last_error is None
    assert [m.recipients for m in smtp_server.mails] == [[address]]

    again = learndir("outbox", "retry", row.id, "--database-url", ddb.url)
    assert again.returncode == 2 and "is sent" in again.stderr
    missing = learndir("outbox", "retry", "no-such-id", "--database-url", ddb.url)
    assert missing.returncode == 7 and "no message no-such-id" in missing.stderr
