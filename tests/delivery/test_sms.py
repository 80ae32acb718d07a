"""Invitations by SMS through a Twilio-compatible gateway: a real HTTP receiver."""

from __future__ import annotations

import base64
import re
import urllib.parse
from collections.abc import Callable

from learndir.db.engine import Database
from learndir.delivery.sms import NOT_CONFIGURED
from learndir.delivery.worker import Worker
from learndir.settings import Settings
from tests.delivery.conftest import (
    PUBLIC_URL,
    invite,
    make_all_due,
    rows,
    settings,
    token_hash,
    wait_until,
)
from tests.receivers import HttpReceiver
from tests.support import World

StartWorker = Callable[[Database, Settings], Worker]
SID = "AC0123456789abcdef"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/invite/([A-Za-z0-9_-]{40,})")


def sms_settings(receiver: HttpReceiver) -> dict[str, str]:
    return {
        "sms_url": receiver.url,
        "sms_account_sid": SID,
        "sms_auth_token": "secret-token",
        "sms_from": "+15005550006",
    }


def test_an_sms_invitation_is_posted_to_the_gateway_with_its_link(
    ddb: Database, account: World, http_receiver: HttpReceiver, start_worker: StartWorker
) -> None:
    http_receiver.status = 201
    http_receiver.reply = b'{"sid": "SM42", "status": "queued"}'
    invite(account, sms="+4915123456703", email=False, message="Hello from Acme")
    start_worker(ddb, settings(ddb.url, **sms_settings(http_receiver)))
    wait_until(lambda: rows(ddb)[0].status == "sent")

    [request] = http_receiver.received()
    assert request.method == "POST"
    assert request.path == f"/2010-04-01/Accounts/{SID}/Messages.json"
    expected = "Basic " + base64.b64encode(f"{SID}:secret-token".encode()).decode()
    assert request.headers["Authorization"] == expected
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    form = dict(urllib.parse.parse_qsl(request.body.decode()))
    assert form["To"] == "+4915123456703"
    assert form["From"] == "+15005550006"
    assert form["Body"].startswith("SMS: Hello from Acme\n")
    [raw] = LINK.findall(form["Body"])
    [row] = rows(ddb)
    assert row.token_hash == token_hash(raw)
    assert row.provider_id == "SM42" and row.attempts == 1


def test_a_gateway_error_is_retried_until_it_accepts(
    ddb: Database, account: World, http_receiver: HttpReceiver, start_worker: StartWorker
) -> None:
    http_receiver.status = 500
    http_receiver.reply = b'{"code": 20500, "message": "Internal Server Error"}'
    invite(account, sms="+4915123456704", email=False)
    start_worker(ddb, settings(ddb.url, **sms_settings(http_receiver)))
    wait_until(lambda: rows(ddb)[0].attempts == 1)
    [row] = rows(ddb)
    assert row.status == "pending"
    assert row.last_error == "SMS gateway answered 500: Internal Server Error (code 20500)"

    http_receiver.status = 200
    http_receiver.reply = b'{"sid": "SM43"}'
    make_all_due(ddb)
    wait_until(lambda: rows(ddb)[0].status == "sent")
    [row] = rows(ddb)
    assert row.attempts == 2 and row.provider_id == "SM43" and row.last_error is None
    assert len(http_receiver.received()) == 2


def test_a_number_the_gateway_refuses_is_failed_at_once(
    ddb: Database, account: World, http_receiver: HttpReceiver, start_worker: StartWorker
) -> None:
    http_receiver.status = 400
    http_receiver.reply = b'{"code": 21211, "message": "The \'To\' number is not valid."}'
    invite(account, sms="+4915123456705", email=False)
    start_worker(ddb, settings(ddb.url, **sms_settings(http_receiver)))
    wait_until(lambda: rows(ddb)[0].status == "failed")
    [row] = rows(ddb)
    assert row.attempts == 1
    assert row.last_error == "SMS gateway answered 400: The 'To' number is not valid. (code 21211)"


def test_too_many_requests_is_retried(
    ddb: Database, account: World, http_receiver: HttpReceiver, start_worker: StartWorker
) -> None:
    http_receiver.status = 429
    invite(account, sms="+4915123456706", email=False)
    start_worker(ddb, settings(ddb.url, **sms_settings(http_receiver)))
    wait_until(lambda: rows(ddb)[0].attempts == 1)
    assert rows(ddb)[0].status == "pending"


def test_without_a_gateway_sms_wait_and_say_why(
    ddb: Database, account: World, start_worker: StartWorker
) -> None:
    invite(account, sms="+4915123456707", email=False)
    start_worker(ddb, settings(ddb.url))
    wait_until(lambda: rows(ddb)[0].last_error == NOT_CONFIGURED)
    [row] = rows(ddb)
    assert row.status == "pending" and row.attempts == 0
