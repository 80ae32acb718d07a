"""The vendor's /webhook API against a real `learndir serve`, on SQLite and PostgreSQL: the whole
lifecycle as the vendor describes it (register, code/send, confirm, subscribe, events arrive
signed both ways), who may call it, bad parameters, disable/enable, unsubscribe, a new URL that
must be confirmed again, remove, the XML and form bodies, and learndir's replay."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from learndir.db.engine import Database
from tests.api.rest.test_groups import new_user
from tests.receivers import HttpReceiver
from tests.support import Server, World, acme_spec, make_world
from tests.webhook_support import events_of, hook, pump, register_confirmed, to, verify


@pytest.fixture(scope="module")
def world(db: Database) -> World:
    return make_world(db, acme_spec())


def unique(prefix: str = "hr") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_vendor_lifecycle_delivers_signed_user_registered(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name, secret = unique(), "s3cret-Of-The-Receiver"
    register_confirmed(server, world, db, http_receiver, name, secret, "USER_REGISTERED")
    code_request = to(http_receiver, name)[0]
    code_events = verify(code_request, secret)
    assert code_events[0]["type"] == "CONFIRMATION_CODE"
    assert code_events[0]["subscriberName"] == name

    info = hook(server, world, "subscriber/info", params={"subscriberName": name}).json()
    assert info["isConfirmed"] is True and info["isEnabled"] is True
    assert "secret" not in info and info["hasSecret"] is True
    listed = hook(server, world, "subscription/list", params={"subscriberName": name}).json()
    assert listed == [{"subscriptionType": "USER_REGISTERED", "params": []}]

    user_id = new_user(server, world, world.departments["eng"], first_name="Wendy")
    received = pump(db, http_receiver, lambda rs: len([r for r in rs if r.path == f"/{name}"]) == 2)
    request = [r for r in received if r.path == f"/{name}"][1]
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["User-Agent"].startswith("learndir-webhooks/")
    events = verify(request, secret)
    assert len(events) == 1
    event = events[0]
    assert event["type"] == "USER_REGISTERED"
    assert event["accountUrl"] == world.account_url
    assert event["time"].endswith("Z") and event["eventId"]
    assert event["user"]["userId"] == user_id
    assert event["user"]["departmentId"] == world.departments["eng"]
    assert event["user"]["status"] == 1
    assert {"name": "FIRST_NAME", "value": "Wendy"} in event["user"]["fields"]


def test_only_owner_and_account_administrators(
    server: Server, world: World, http_receiver: HttpReceiver
) -> None:
    body = {"subscriberName": unique(), "callbackUrl": http_receiver.url}
    for login in ("jane.doe", "sales.admin", "hr.partner"):
        answer = hook(server, world, "register", body, login=login)
        assert answer.status_code == 403, (login, answer.text)
        assert answer.json()["message"] == "Permission Denied"
    assert hook(server, world, "register", body, login="admin").status_code == 200
    unauthenticated = httpx.post(f"{server.base_url}/webhook/register", json=body, timeout=10)
    assert unauthenticated.status_code == 401


@pytest.mark.parametrize(
    "path", ["code/send", "confirm", "enable", "disable", "remove", "settings/change", "replay"]
)
def test_unknown_subscriber_is_404(server: Server, world: World, path: str) -> None:
    body = {
        "subscriberName": "nobody-" + unique(),
        "code": "x",
        "callbackUrl": "https://example.com/hook",
        "subscription": {"subscriptionType": "USER_REGISTERED"},
    }
    answer = hook(server, world, path, body)
    assert answer.status_code == 404, answer.text
    assert answer.json()["message"] == "Subscriber not found"


def test_unknown_subscriber_is_404_on_reads(server: Server, world: World) -> None:
    for path in ("subscriber/info", "subscription/list"):
        answer = hook(server, world, path, params={"subscriberName": "nobody"})
        assert answer.status_code == 404
        assert answer.json()["message"] == "Subscriber not found"


@pytest.mark.parametrize(
    ("body", "parameter"),
    [
        ({"callbackUrl": "https://example.com"}, "subscriberName"),
        ({"subscriberName": "x" * 256, "callbackUrl": "https://example.com"}, "subscriberName"),
        ({"subscriberName": "a"}, "callbackUrl"),
        ({"subscriberName": "a", "callbackUrl": "ftp://example.com/x"}, "callbackUrl"),
        ({"subscriberName": "a", "callbackUrl": "not a url"}, "callbackUrl"),
        ({"subscriberName": "a", "callbackUrl": "https://e.com/" + "x" * 250}, "callbackUrl"),
        (
            {"subscriberName": "a", "callbackUrl": "https://example.com", "secret": "s" * 256},
            "secret",
        ),
    ],
)
def test_register_bad_parameters(
    server: Server, world: World, body: dict[str, Any], parameter: str
) -> None:
    answer = hook(server, world, "register", body)
    assert answer.status_code == 400, answer.text
    assert answer.json()["message"] == "Wrong parameters"
    assert answer.json()["parameter"] == parameter
    assert hook(server, world, "subscriber/info", params={"subscriberName": "a"}).status_code == 404


def test_duplicate_name_and_bad_subscriptions(
    server: Server, world: World, http_receiver: HttpReceiver
) -> None:
    name = unique()
    body = {"subscriberName": name, "callbackUrl": http_receiver.url}
    assert hook(server, world, "register", body).status_code == 200
    again = hook(server, world, "register", {**body, "subscriberName": name.upper()})
    assert again.status_code == 400 and again.json()["parameter"] == "subscriberName"
    for subscription, parameter in [
        ({"subscriptionType": "COURSE_COMPLETED"}, "subscription.subscriptionType"),
        (None, "subscription"),
        (
            {"subscriptionType": "USER_UPDATED", "params": [{"name": "x", "value": "1"}]},
            "subscription.params[0].name",
        ),
        (
            {"subscriptionType": "USER_UPDATED", "params": [{"name": "userIds", "value": "1"}]},
            "subscription.params[0].value",
        ),
    ]:
        answer = hook(
            server, world, "subscribe", {"subscriberName": name, "subscription": subscription}
        )
        assert answer.status_code == 400, answer.text
        assert answer.json()["parameter"] == parameter
    wrong = hook(server, world, "confirm", {"subscriberName": name, "code": "guess"})
    assert wrong.status_code == 400 and wrong.json()["parameter"] == "code"


def test_disable_unsubscribe_new_url_and_remove(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = unique()
    register_confirmed(server, world, db, http_receiver, name, None, "USER_REGISTERED")
    assert "X-Hub-Signature" not in to(http_receiver, name)[0].headers

    # Disabled: nothing is queued for it.
    assert hook(server, world, "disable", {"subscriberName": name}).status_code == 200
    new_user(server, world, world.root_id)
    assert hook(server, world, "enable", {"subscriberName": name}).status_code == 200
    second = new_user(server, world, world.root_id)
    received = pump(db, http_receiver, lambda rs: len(to(http_receiver, name)) == 2)
    assert [e["user"]["userId"] for e in events_of(to(http_receiver, name)[1])] == [second]
    assert received

    # A new URL must be confirmed again: events wait meanwhile.
    moved = {"subscriberName": name, "callbackUrl": http_receiver.url + "/" + name + "-new"}
    assert hook(server, world, "settings/change", moved).status_code == 200
    info = hook(server, world, "subscriber/info", params={"subscriberName": name}).json()
    assert info["isConfirmed"] is False and info["callbackUrl"].endswith("-new")
    assert hook(server, world, "code/send", {"subscriberName": name}).status_code == 200
    new_path = f"/{name}-new"
    received = pump(db, http_receiver, lambda rs: any(r.path == new_path for r in rs))
    code = events_of(next(r for r in received if r.path == new_path))[0]["code"]
    answer = hook(server, world, "confirm", {"subscriberName": name, "code": code})
    assert answer.status_code == 200
    third = new_user(server, world, world.root_id)
    received = pump(db, http_receiver, lambda rs: len([r for r in rs if r.path == new_path]) == 2)
    assert events_of([r for r in received if r.path == new_path][1])[0]["user"]["userId"] == third

    # Unsubscribed: nothing more.
    answer = hook(
        server,
        world,
        "unsubscribe",
        {"subscriberName": name, "subscriptionType": "USER_REGISTERED"},
    )
    assert answer.status_code == 200
    assert hook(server, world, "subscription/list", params={"subscriberName": name}).json() == []
    assert hook(server, world, "remove", {"subscriberName": name}).status_code == 200
    info = hook(server, world, "subscriber/info", params={"subscriberName": name})
    assert info.status_code == 404


def test_a_new_code_voids_the_previous_one(
    server: Server, world: World, db: Database, http_receiver: HttpReceiver
) -> None:
    name = unique()
    body = {"subscriberName": name, "callbackUrl": http_receiver.url + "/" + name}
    assert hook(server, world, "register", body).status_code == 200
    for n in (1, 2):
        assert hook(server, world, "code/send", {"subscriberName": name}).status_code == 200
        pump(db, http_receiver, lambda rs, n=n: len(to(http_receiver, name)) == n)
    first, second = (events_of(r)[0]["code"] for r in to(http_receiver, name))
    old = hook(server, world, "confirm", {"subscriberName": name, "code": first})
    assert old.status_code == 400
    assert (
        hook(server, world, "confirm", {"subscriberName": name, "code": second}).status_code == 200
    )
    # Used once.
    assert (
        hook(server, world, "confirm", {"subscriberName": name, "code": second}).status_code == 400
    )


def test_xml_and_form_bodies(server: Server, world: World, http_receiver: HttpReceiver) -> None:
    name = unique()
    headers = {"Authorization": f"Bearer {world.token('owner')}"}
    xml = (
        f"<request><subscriberName>{name}</subscriberName>"
        f"<callbackUrl>{http_receiver.url}</callbackUrl><secret>x</secret></request>"
    )
    answer = httpx.post(
        f"{server.base_url}/api/v2/webhook/register",
        content=xml,
        headers={**headers, "Content-Type": "application/xml"},
    )
    assert answer.status_code == 200, answer.text
    user_id = world.users["jane.doe"]
    xml = (
        f"<request><subscriberName>{name}</subscriberName><subscription>"
        "<subscriptionType>USER_UPDATED</subscriptionType><params><param><name>userIds</name>"
        f"<value>{user_id}</value></param></params></subscription></request>"
    )
    answer = httpx.post(
        f"{server.base_url}/webhook/subscribe",
        content=xml,
        headers={**headers, "Content-Type": "application/xml"},
    )
    assert answer.status_code == 200, answer.text
    form = {
        "subscriberName": name,
        "subscription[subscriptionType]": "USER_DELETED",
        "subscription[params][0][name]": "userIds",
        "subscription[params][0][value]": user_id,
    }
    answer = httpx.post(
        f"{server.base_url}/index.php/api/v2/webhook/subscribe", data=form, headers=headers
    )
    assert answer.status_code == 200, answer.text
    as_text = {
        "subscriberName": name,
        "subscription": json.dumps({"subscriptionType": "GROUP_CREATED"}),
    }
    answer = httpx.post(f"{server.base_url}/webhook/subscribe", data=as_text, headers=headers)
    assert answer.status_code == 200, answer.text
    listed = httpx.get(
        f"{server.base_url}/webhook/subscription/list",
        params={"subscriberName": name},
        headers={**headers, "Accept": "application/json"},
    ).json()
    assert listed == [
        {"subscriptionType": "GROUP_CREATED", "params": []},
        {"subscriptionType": "USER_DELETED", "params": [{"name": "userIds", "value": [user_id]}]},
        {"subscriptionType": "USER_UPDATED", "params": [{"name": "userIds", "value": [user_id]}]},
    ]
    as_xml = httpx.get(
        f"{server.base_url}/webhook/subscriber/info",
        params={"subscriberName": name},
        headers=headers,
    )
    assert as_xml.status_code == 200 and b"<subscriberName>" in as_xml.content
