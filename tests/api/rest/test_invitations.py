"""The invitation endpoints over REST (JSON and XML) against a real `learndir serve`, on SQLite
and PostgreSQL: unauthenticated, forbidden, not found, invalid and valid calls."""

from __future__ import annotations

import uuid

import httpx
import pytest
from lxml import etree

from learndir.db.engine import Database
from tests.invitations import invite_new_user, outbox_ids, send
from tests.support import Server, World, acme_spec, make_world

JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def w(db: Database) -> World:
    return make_world(db, acme_spec(seatLimit=None))


def auth(w: World, login: str = "owner") -> dict[str, str]:
    return {"Authorization": f"Bearer {w.token(login)}", **JSON}


def test_list_in_json_and_xml(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    send(w.db, outbox_ids(w.db, user_id)[0])
    response = httpx.get(f"{server.base_url}/user/{user_id}/invitations", headers=auth(w))
    assert response.status_code == 200, response.text
    [item] = response.json()
    assert (item["channel"], item["status"], item["attempts"]) == ("email", "sent", 1)
    assert item["recipient"].endswith("@acme.test")
    assert {"invitationId", "createdDate", "sentDate", "expiryDate"} <= set(item)
    assert "acceptedDate" not in item and "lastError" not in item

    xml = httpx.get(
        f"{server.base_url}/api/v2/user/{user_id}/invitations",
        headers={"Authorization": f"Bearer {w.token('owner')}"},
    )
    assert xml.status_code == 200
    root = etree.fromstring(xml.content)
    assert root.tag == "response"
    assert [e.findtext("status") for e in root.findall("invitation")] == ["sent"]


def test_resend_and_revoke(server: Server, w: World) -> None:
    user_id = invite_new_user(
        w, fields={"employee_id": f"R{uuid.uuid4().hex[:8]}", "phone": "+49 30 1234567"}
    )
    base = f"{server.base_url}/user/{user_id}"
    resent = httpx.post(f"{base}/invitation/resend", headers=auth(w), json={"channel": "sms"})
    assert resent.status_code == 200, resent.text
    [sms] = resent.json()
    assert (sms["channel"], sms["recipient"], sms["status"]) == ("sms", "+49301234567", "queued")
    # In XML, the channel in the body or as a header.
    owner = {"Authorization": f"Bearer {w.token('owner')}"}
    xml = httpx.post(
        f"{base}/invitation/resend",
        headers={**owner, "Content-Type": "application/xml"},
        content=b"<request><channel>email</channel></request>",
    )
    assert xml.status_code == 200, xml.text
    assert etree.fromstring(xml.content).findtext("invitation/channel") == "email"
    header = httpx.post(f"{base}/invitation/resend", headers={**owner, "X-Channel": "sms"})
    assert etree.fromstring(header.content).findtext("invitation/channel") == "sms"
    listed = httpx.get(f"{base}/invitations", headers=auth(w)).json()
    assert [i["status"] for i in listed] == ["queued", "revoked", "revoked", "revoked"]
    assert all("revokedDate" in i for i in listed[1:])

    revoked = httpx.post(f"{base}/invitation/revoke", headers=auth(w))
    assert (revoked.status_code, revoked.content) == (204, b"")
    listed = httpx.get(f"{base}/invitations", headers=auth(w)).json()
    assert {i["status"] for i in listed} == {"revoked"}


def test_invalid_channel_changes_nothing(server: Server, w: World) -> None:
    user_id = invite_new_user(w)
    base = f"{server.base_url}/user/{user_id}"
    response = httpx.post(f"{base}/invitation/resend", headers=auth(w), json={"channel": "fax"})
    assert response.status_code == 400
    body = response.json()
    assert (body["message"], body["parameter"]) == ("Wrong parameters", "channel")
    no_phone = httpx.post(f"{base}/invitation/resend", headers=auth(w), json={"channel": "sms"})
    assert (no_phone.status_code, no_phone.json()["parameter"]) == (400, "channel")
    listed = httpx.get(f"{base}/invitations", headers=auth(w)).json()
    assert [i["status"] for i in listed] == ["queued"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/invitations"),
        ("POST", "/invitation/resend"),
        ("POST", "/invitation/revoke"),
    ],
)
def test_who_may_call(server: Server, w: World, method: str, path: str) -> None:
    in_eng = invite_new_user(w, "eng")
    url = f"{server.base_url}/user/{in_eng}{path}"
    unauthenticated = httpx.request(method, url, headers=JSON)
    assert unauthenticated.status_code == 401
    # A department administrator of Sales, for a user in Engineering.
    forbidden = httpx.request(method, url, headers=auth(w, "sales.admin"))
    assert forbidden.status_code == 403
    assert forbidden.json()["message"] == "Permission Denied"
    learner = httpx.request(method, url, headers=auth(w, "jane.doe"))
    assert learner.status_code == 403
    unknown = httpx.request(method, f"{server.base_url}/user/{uuid.uuid4()}{path}", headers=auth(w))
    assert unknown.status_code == 404
    # With the X-Auth headers of an administrator whose departments include the user.
    admin = {
        "X-Auth-Account-Url": w.account_url,
        "X-Auth-Email": "admin",
        "X-Auth-Password": w.passwords["admin"],
        **JSON,
    }
    allowed = httpx.request(method, url, headers=admin)
    assert allowed.status_code in (200, 204), allowed.text
    listed = httpx.get(f"{server.base_url}/user/{in_eng}/invitations", headers=auth(w)).json()
    expected = {"GET": ["queued"], "POST /invitation/resend": ["queued", "revoked"]}
    assert [i["status"] for i in listed] == expected.get(
        method if method == "GET" else f"POST {path}", ["revoked"]
    )
