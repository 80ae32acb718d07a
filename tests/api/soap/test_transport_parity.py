"""The SOAP operations and the REST API tell the same story: the same profiles, lists, pages,
lookups and rejections, read through the `Soap` and `RestJson` transports that the scenario
tables use. SOAP with a token reads like REST v2; with credentials (the older generation) like
REST v1, where status 5 reads as 3."""

from __future__ import annotations

from typing import Any

import pytest

from learndir.db.engine import Database
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Auth, RestJson, Soap

UNKNOWN_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"


@pytest.fixture(scope="module")
def acme(db: Database) -> World:
    return make_world(db, acme_spec())


@pytest.fixture(scope="module")
def soap(server: Server) -> Soap:
    return Soap(server.base_url)


@pytest.fixture(scope="module")
def rest(server: Server) -> RestJson:
    return RestJson(server.base_url)


def token(world: World, login: str = "owner") -> Auth:
    return Auth(token=world.token(login))


def credentials(world: World, login: str = "owner") -> Auth:
    return Auth(account_url=world.account_url, login=login, password=world.passwords[login])


@pytest.fixture(scope="module")
def terminated(soap: Soap, acme: World) -> str:
    """A user whose employment ended: the generations differ on how they report it."""
    outcome = soap.add_user(
        {
            "login": "leaver",
            "email": "leaver@acme.test",
            "departmentId": acme.departments["sales-us"],
            "fields": {"employee_id": "E-leaver"},
        },
        token(acme),
    )
    assert outcome.user_id is not None
    assert soap.change_status(outcome.user_id, 5, token(acme)).status == 200
    return outcome.user_id


class TestReads:
    def test_every_profile(self, soap: Soap, rest: RestJson, acme: World, terminated: str) -> None:
        for user_id in [*acme.users.values(), terminated]:
            for auth, v2 in ((token(acme), True), (credentials(acme), False)):
                assert soap.get_user(user_id, auth).data == (
                    rest.get_user(user_id, auth, v2=v2).data
                )
        assert soap.get_user(terminated, token(acme)).data["status"] == 5
        assert soap.get_user(terminated, credentials(acme)).data["status"] == 3

    @pytest.mark.parametrize(
        "filters",
        [
            {},
            {"logins": ["jane.doe", "admin"]},
            {"emails": ["owner@acme.test"]},
            {"departments": ["sales"]},
            {"groups": ["Newcomers"]},
        ],
    )
    def test_lists(
        self, soap: Soap, rest: RestJson, acme: World, terminated: str, filters: dict[str, Any]
    ) -> None:
        names = {**acme.departments, **acme.groups}
        resolved = {k: [names.get(v, v) for v in values] for k, values in filters.items()}
        for auth in (token(acme), credentials(acme, "sales.admin")):
            assert soap.list_users(resolved, auth).data == (
                rest.list_users(resolved, auth, v2=auth.token is not None).data
            )

    def test_pages(self, soap: Soap, rest: RestJson, acme: World, terminated: str) -> None:
        pages = {}
        for name, transport in (("soap", soap), ("rest", rest)):
            seen, page_token = [], None
            while True:
                outcome = transport.page_users({}, token(acme), page_size=2, page_token=page_token)
                seen.append(outcome.data)
                page_token = outcome.data.get("nextPageToken")
                if page_token is None:
                    break
            pages[name] = seen
        assert pages["soap"] == pages["rest"]
        assert sum(len(p["userProfiles"]) for p in pages["soap"]) == len(acme.users) + 1

    def test_find_existing(self, soap: Soap, rest: RestJson, acme: World) -> None:
        ids = [acme.users["jane.doe"], UNKNOWN_ID, acme.users["hr.partner"]]
        for auth in (token(acme), token(acme, "sales.admin")):
            assert soap.find_existing(ids, auth).data == rest.find_existing(ids, auth).data


class TestRejections:
    """The same code, message, parameter and HTTP status on both interfaces."""

    @pytest.mark.parametrize(
        "call",
        [
            lambda t, w, a: t.get_user(UNKNOWN_ID, a),
            lambda t, w, a: t.get_user(w.users["hr.partner"], token(w, "sales.admin")),
            lambda t, w, a: t.get_user(w.users["admin"], Auth(token="nope")),
            lambda t, w, a: t.page_users({}, a, page_size=1001),
            lambda t, w, a: t.page_users({}, a, page_token="!!"),
            lambda t, w, a: t.list_users({"departments": ["x y"]}, a),
            lambda t, w, a: t.update_user(w.users["jane.doe"], {"login": "admin"}, a),
            lambda t, w, a: t.update_user(w.users["jane.doe"], {"departmentId": UNKNOWN_ID}, a),
            lambda t, w, a: t.update_user(UNKNOWN_ID, {"fields": {"first_name": "X"}}, a),
            lambda t, w, a: t.delete_user(w.users["owner"], token(w, "admin")),
            lambda t, w, a: t.delete_user(UNKNOWN_ID, a),
            lambda t, w, a: t.change_status(w.users["jane.doe"], 7, a),
            lambda t, w, a: t.change_status(w.users["owner"], 3, token(w, "admin")),
        ],
    )
    def test_same_fault(self, soap: Soap, rest: RestJson, acme: World, call: Any) -> None:
        before = acme.snapshot()
        over_soap = call(soap, acme, token(acme))
        over_rest = call(rest, acme, token(acme))
        assert over_soap.code is not None
        assert (
            over_soap.status,
            over_soap.code,
            over_soap.message,
            over_soap.parameter,
        ) == (over_rest.status, over_rest.code, over_rest.message, over_rest.parameter)
        assert acme.snapshot() == before
