"""The whole journey against a real `learndir serve` (its own worker delivering) with a real SMTP
server, SMS gateway and webhook receiver: users added over SOAP (both generations) and REST get
exactly one message each with the right text, recipient and link; the link opens the
set-password page in a real browser; the new password signs in; webhooks are confirmed and
delivered as the vendor describes."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from playwright.sync_api import Browser

from learndir.db.engine import Database
from tests.conftest import migrated_database
from tests.receivers import HttpReceiver, SmtpServer
from tests.support import (
    Server,
    World,
    acme_spec,
    make_world,
    start_server,
    stop_server,
)
from tests.transports import Auth, RestJson, Soap
from tests.webhook_support import hook, to, verify

PUBLIC_URL = "https://learn.example.test"
LINK = re.compile(re.escape(PUBLIC_URL) + r"/invite/[A-Za-z0-9_\-]+")


@pytest.fixture
def own_database(
    backend: str, tmp_path_factory: pytest.TempPathFactory, _pg_ok: bool
) -> Iterator[str]:
    """A database of its own: no other test's server delivers from its outbox."""
    yield from migrated_database(backend, tmp_path_factory, _pg_ok, prefix="learndir_journey")


@pytest.fixture
def journey(
    own_database: str,
    smtp_server: SmtpServer,
    http_receiver: HttpReceiver,
    tmp_path: Path,
) -> Iterator[tuple[Server, World]]:
    http_receiver.reply = b'{"sid": "SM0001", "status": "queued"}'
    http_receiver.status = 201
    env = {
        **smtp_server.env(),
        "LEARNDIR_PUBLIC_URL": PUBLIC_URL,
        "LEARNDIR_SMS_URL": http_receiver.url,
        "LEARNDIR_SMS_ACCOUNT_SID": "AC123",
        "LEARNDIR_SMS_AUTH_TOKEN": "sms-secret",
        "LEARNDIR_SMS_FROM": "+15550001111",
    }
    db = Database(own_database)
    world = make_world(db, acme_spec(seatLimit=None))
    server = start_server(own_database, tmp_path, env=env)
    yield server, world
    stop_server(server)
    db.dispose()


def _wait(condition: Any, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _text(mail: Any) -> str:
    part = mail.message.get_body(preferencelist=("plain",))
    assert part is not None
    return str(part.get_content())


def _html(mail: Any) -> str:
    part = mail.message.get_body(preferencelist=("html",))
    assert part is not None
    return str(part.get_content())


def test_invitations_arrive_once_and_the_link_sets_a_password(
    journey: tuple[Server, World],
    smtp_server: SmtpServer,
    http_receiver: HttpReceiver,
    browser: Browser,
) -> None:
    server, world = journey
    owner = Auth(account_url=world.account_url, login="owner", password="Owner-Pass-1")
    soap = Soap(server.base_url)
    common = {"departmentId": world.departments["eng"]}

    # The older generation (credentials) invites by default, with the account's text.
    old = soap.add_user(
        {
            **common,
            "login": "olga@people.test",
            "fields": {"employee_id": "J-1", "country": "DE"},
        },
        owner,
    )
    assert old.ok, old
    # The newer generation (a token): e-mail and SMS, each with its own text.
    token = Auth(token=world.token("owner"))
    new = soap.add_user(
        {
            **common,
            "login": "nick",
            "email": "nick@people.test",
            "sendLoginEmail": True,
            "invitationMessage": "Welcome aboard, Nick!",
            "sendLoginSMS": True,
            "invitationSMSMessage": "Nick, your Acme account is ready",
            "fields": {"employee_id": "J-2", "country": "DE", "phone": "+49 151 2345 6789"},
        },
        token,
    )
    assert new.ok, new
    # REST with a password: the e-mail says to sign in with it and carries no link.
    rest = RestJson(server.base_url).add_user(
        {
            **common,
            "login": "rita",
            "email": "rita@people.test",
            "password": "Rita-Pass-1",
            "sendLoginEmail": True,
            "invitationMessage": "Hello Rita",
            "fields": {"employee_id": "J-3", "country": "DE"},
        },
        token,
    )
    assert rest.ok, rest

    addresses = ["olga@people.test", "nick@people.test", "rita@people.test"]
    _wait(lambda: all(smtp_server.to(a) for a in addresses), "three e-mails")
    _wait(lambda: len(http_receiver.received()) >= 1, "one SMS")
    time.sleep(1.5)  # a repeat, if the worker were to send one, has had time to arrive
    assert [len(smtp_server.to(a)) for a in addresses] == [1, 1, 1]
    assert len(http_receiver.received()) == 1

    olga, nick, rita = (smtp_server.to(a)[0] for a in addresses)
    assert "You have been invited to Acme." in _text(olga)
    assert "Welcome aboard, Nick!" in _text(nick) and "Welcome aboard, Nick!" in _html(nick)
    assert "Hello Rita" in _text(rita)
    for mail, login in ((olga, "olga@people.test"), (nick, "nick"), (rita, "rita")):
        assert login in _text(mail) and "Acme" in _text(mail)
        assert mail.message["Message-ID"]
    assert LINK.search(_text(olga)) and LINK.search(_text(nick))
    assert not LINK.search(_text(rita))

    sms = http_receiver.received()[0]
    assert sms.path == "/2010-04-01/Accounts/AC123/Messages.json"
    form = {k: v[0] for k, v in parse_qs(sms.body.decode()).items()}
    assert form["To"] == "+4915123456789"
    assert form["From"] == "+15550001111"
    assert form["Body"].startswith("Nick, your Acme account is ready")
    assert LINK.search(form["Body"])

    # Olga follows her link in a browser and chooses a password; then she signs in with it.
    match = LINK.search(_text(olga))
    assert match is not None
    page = browser.new_page()
    page.goto(server.base_url + urlsplit(match.group(0)).path)
    passwords = page.locator("input[type=password]")
    for i in range(passwords.count()):
        passwords.nth(i).fill("Olga-Chosen-1")
    page.locator("button[type=submit], input[type=submit]").first.click()
    page.wait_for_load_state()
    assert page.locator("input[type=password]").count() == 0, page.content()
    page.close()

    answer = httpx.get(
        f"{server.base_url}/user/{old.user_id}",
        headers={
            "X-Auth-Account-Url": world.account_url,
            "X-Auth-Email": "olga@people.test",
            "X-Auth-Password": "Olga-Chosen-1",
            "Accept": "application/json",
        },
    )
    assert answer.status_code == 200, answer.text


def test_the_server_delivers_webhooks_on_its_own(
    journey: tuple[Server, World], http_receiver: HttpReceiver
) -> None:
    """The vendor's lifecycle with nobody but `learndir serve` delivering: the code arrives,
    confirms, and the registration of a user reaches the subscriber, signed both ways."""
    server, world = journey
    http_receiver.status, http_receiver.reply = 200, b"{}"
    body = {"subscriberName": "hr", "callbackUrl": http_receiver.url + "/hr", "secret": "k3y"}
    assert hook(server, world, "register", body).status_code == 200
    assert hook(server, world, "code/send", {"subscriberName": "hr"}).status_code == 200
    _wait(lambda: any(b"CONFIRMATION_CODE" in r.body for r in to(http_receiver, "hr")), "code")
    [code_request] = to(http_receiver, "hr")
    code = verify(code_request, "k3y")[0]["code"]
    assert hook(server, world, "confirm", {"subscriberName": "hr", "code": code}).status_code == 200
    subscription = {"subscriptionType": "USER_REGISTERED", "params": []}
    answer = hook(
        server, world, "subscribe", {"subscriberName": "hr", "subscription": subscription}
    )
    assert answer.status_code == 200, answer.text

    added = RestJson(server.base_url).add_user(
        {
            "departmentId": world.departments["eng"],
            "login": "hook.user",
            "fields": {"employee_id": "J-9", "country": "DE"},
        },
        Auth(token=world.token("owner")),
    )
    assert added.ok, added
    _wait(lambda: len(to(http_receiver, "hr")) == 2, "the event")
    [event] = verify(to(http_receiver, "hr")[1], "k3y")
    assert (event["type"], event["user"]["userId"]) == ("USER_REGISTERED", added.user_id)
