"""The request shapes of the published iSpring clients, each answer read the way that client
reads it, against a real `learndir serve` on SQLite and PostgreSQL.

The clients (their shapes are described, not copied, in docs/real-clients.md):
- Pipedream's component (JSON, Bearer): `fields.filter(f => f.name === "EMAIL")[0].value`;
- a Laravel package (JSON, `{accountUrl}/index.php/api/v2/...`, X-Auth or Bearer);
- a Node org-sync script (`/api/v2/user/list` with `{page, pageSize}`; the raw token on the
  API host; department XML read with regular expressions);
- a Python lxml script (X-Auth, XML, XPath on `/response/userProfile/fields/field`);
- a Python multipart script (`fields[email]`, `sendLoginEmail=True`, `etree.XML(body).text`);
- two Bitrix24 integrations (SimpleXML turned into arrays, `['userProfile']['fields']['field']`;
  XML bodies with a foreign `<userId>`, case-folded struct parsing);
- a Kotlin proxy (`/api/v2/users` with encoded `[]`, the token by regular expression);
- an Oracle PL/SQL HR integration (lower-case headers, indented XML, the id by a regular
  expression on one line);
- a Groovy HR sync (JSON, X-Return-Object, exact 200/204, `If-None-Match: *`).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from lxml import etree

from learndir.core import departments
from learndir.core.auth import authenticate_token, create_api_key
from learndir.db.engine import Database
from tests.support import Server, World, make_world

UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
OWNER_PASSWORD = "Owner-Pass-1"


def clients_spec() -> dict[str, Any]:
    """An ordinary account: no required custom fields, a few people with full names."""
    return {
        "url": f"http://c-{uuid.uuid4().hex[:10]}.ispringlearn.test",
        "name": "Clients Co",
        "owner": {
            "login": "owner",
            "email": "owner@clients.test",
            "password": OWNER_PASSWORD,
            "fields": {"first_name": "Olga", "last_name": "Owner"},
        },
        "departments": [
            {"name": "Sales", "code": "sales", "departments": [{"name": "Sales EU", "code": "eu"}]},
            {"name": "Support", "code": "support"},
        ],
        "groups": [{"name": "Newcomers"}, {"name": "Managers"}],
        "profileFields": [{"name": "tabnum", "label": "Personnel number", "type": "string"}],
        "users": [
            {
                "login": "kate",
                "email": "kate@clients.test",
                "department": "sales",
                "groups": ["Newcomers"],
                "fields": {"first_name": "Kate", "last_name": "Smith", "job_title": "Rep"},
            },
            {
                "login": "li",
                "email": "li@clients.test",
                "department": "eu",
                "groups": ["Newcomers"],
                "fields": {"first_name": "Li", "last_name": "Wei"},
            },
            {
                "login": "max",
                "email": "max@clients.test",
                "department": "support",
                "fields": {"first_name": "Max", "last_name": "Moe", "phone": "+15550001"},
            },
        ],
    }


class Account:
    """The account, its API key and ids; the Sales department has a manual supervisor."""

    def __init__(self, world: World, server: Server) -> None:
        self.world = world
        self.base = server.base_url
        key = create_api_key(world.db, world.account_url, "owner")
        self.client_id, self.client_secret = key.client_id, key.client_secret
        self.sales = world.departments["sales"]
        self.eu = world.departments["eu"]
        self.support = world.departments["support"]
        self.newcomers = world.groups["Newcomers"]
        owner = authenticate_token(world.db, world.token("owner"))
        departments.set_subordination(
            world.db,
            owner,
            self.sales,
            {"subordinationType": "manual", "supervisorId": world.users["owner"]},
        )

    def x_auth(self, url: str | None = None) -> dict[str, str]:
        return {
            "X-Auth-Account-Url": url or self.world.account_url,
            "X-Auth-Email": "owner",
            "X-Auth-Password": OWNER_PASSWORD,
        }

    def token(self, http: httpx.Client, path: str = "/api/v3/token") -> str:
        response = http.post(
            path,
            data={
                "grant_type": "client_credentials",
                "client_id": self.client_id,
                "client_secret": self.client_secret,
            },
            headers={"Accept": "application/json"},
        )
        assert response.status_code == 200, response.text
        body = response.json()
        assert isinstance(body["access_token"], str) and isinstance(body["expires_in"], int)
        assert body["token_type"] == "bearer"
        return str(body["access_token"])


@pytest.fixture(scope="module")
def acct(db: Database, server: Server) -> Account:
    return Account(make_world(db, clients_spec()), server)


@pytest.fixture
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


# ---- how the clients read answers ---------------------------------------------------------------


def php_array(element: etree._Element) -> Any:
    """What PHP's json_decode(json_encode(simplexml_load_string($xml)), true) makes of an
    element: a leaf's text ([] when empty), else an array by child name, a list only where a
    name repeats."""
    children = list(element)
    if not children:
        return element.text if element.text else []
    grouped: dict[str, list[Any]] = {}
    for child in children:
        grouped.setdefault(child.tag, []).append(php_array(child))
    return {tag: values[0] if len(values) == 1 else values for tag, values in grouped.items()}


def simplexml(body: bytes) -> Any:
    """The root element dropped, as SimpleXML does."""
    return php_array(etree.fromstring(body))


def folded_struct(body: bytes) -> Any:
    """PHP xml_parse_into_struct with its default case folding, as one Bitrix module reads
    answers: element names upper-cased; attributes would change the shape, so there are none."""
    root = etree.fromstring(body)
    for element in root.iter():
        assert not element.attrib, f"<{element.tag}> carries attributes"
        element.tag = element.tag.upper()
    return {root.tag: php_array(root)}


def id_by_regex(text: str) -> str:
    """`<response>(.*)</response>` without DOTALL, as the Python and Oracle clients read ids."""
    found = re.findall(r"<response>(.*)</response>", text)
    assert found, text
    assert UUID.match(found[0]), found
    return str(found[0])


def email_of(profile: dict[str, Any]) -> str:
    """Pipedream: fields.filter(({name}) => name === "EMAIL")[0].value"""
    return str(next(f for f in profile["fields"] if f["name"] == "EMAIL")["value"])


def field_value(fields: list[dict[str, Any]], name: str) -> str:
    """The Node sync's fieldVal: exact, case-sensitive, '' when missing."""
    return next((str(f["value"]) for f in fields if f["name"] == name), "")


# ---- Pipedream ----------------------------------------------------------------------------------


class TestPipedream:
    def headers(self, acct: Account, http: httpx.Client) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {acct.token(http)}",
            "Content-Type": "application/json",
            "Accept": "application/json",
            "X-Target-Locale": "en-US",
        }

    def test_user_options_page_through(self, acct: Account, http: httpx.Client) -> None:
        headers = self.headers(acct, http)
        labels: dict[str, str] = {}
        params: dict[str, Any] = {"pageSize": 2}
        while True:
            response = http.get("/users", params=params, headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            for profile in page["userProfiles"]:
                labels[profile["userId"]] = email_of(profile)
            if not page.get("nextPageToken"):
                break
            params = {"pageSize": 2, "pageToken": page["nextPageToken"]}
        assert set(labels.values()) >= {
            "kate@clients.test",
            "li@clients.test",
            "owner@clients.test",
        }

    def test_department_and_group_options(self, acct: Account, http: httpx.Client) -> None:
        headers = self.headers(acct, http)
        found: dict[str, str] = {}
        params: dict[str, Any] = {"pageSize": 2}
        while True:
            page = http.get("/departments", params=params, headers=headers).json()
            found.update({d["departmentId"]: d["name"] for d in page["departments"]})
            if not page.get("nextPageToken"):
                break
            params = {"pageSize": 2, "pageToken": page["nextPageToken"]}
        assert found[acct.sales] == "Sales" and found[acct.eu] == "Sales EU"
        groups = http.get("/groups", params={"pageSize": 5}, headers=headers).json()
        assert {g["groupId"]: g["name"] for g in groups["groups"]}[acct.newcomers] == "Newcomers"

    def test_update_user_action(self, acct: Account, http: httpx.Client) -> None:
        headers = self.headers(acct, http)
        user = acct.world.users["max"]
        for body in (
            {"fields": {"first_name": "Maxim"}},
            {"fields": {}},
            {
                "fields": {"job_title": "Agent"},
                "departmentId": acct.eu,
                "groupIds": [acct.newcomers],
            },
        ):
            response = http.post(f"/user/{user}", json=body, headers=headers)
            assert 200 <= response.status_code < 300, response.text
        profile = http.get(f"/user/{user}", headers=headers).json()
        fields = {f["name"]: f["value"] for f in profile["fields"]}
        assert (fields["FIRST_NAME"], fields["LAST_NAME"], fields["JOB_TITLE"]) == (
            "Maxim",
            "Moe",
            "Agent",
        )
        assert profile["departmentId"] == acct.eu and profile["groups"] == [acct.newcomers]

    def test_older_version_with_x_auth(self, acct: Account, http: httpx.Client) -> None:
        headers = {
            **acct.x_auth(acct.world.account_url.replace("http://", "https://")),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        page = http.get("/users", params={"pageSize": 10}, headers=headers).json()
        assert all(email_of(p) is not None for p in page["userProfiles"])


# ---- Laravel (index.php/api/v2 on the account URL) ----------------------------------------------


class TestLaravel:
    P = "/index.php/api/v2"

    @pytest.fixture(params=["api-key", "login"])
    def headers(self, request: Any, acct: Account, http: httpx.Client) -> dict[str, str]:
        if request.param == "api-key":
            return {"Accept": "application/json", "Authorization": f"Bearer {acct.token(http)}"}
        return {"Accept": "application/json", **acct.x_auth()}

    def test_departments(self, acct: Account, http: httpx.Client, headers: dict[str, str]) -> None:
        listed = http.get(f"{self.P}/department", headers=headers).json()
        assert isinstance(listed, list)  # array_map over the answer itself
        for department in listed:
            assert isinstance(department["departmentId"], str) and department["name"]
            assert isinstance(department["subordination"]["subordinationType"], str)
            assert isinstance(department["coSubordination"]["subordinationType"], str)
        one = http.get(f"{self.P}/department/{acct.sales}", headers=headers).json()
        assert one["departmentId"] == acct.sales and one["name"] == "Sales"
        assert one["subordination"] == {
            "subordinationType": "manual",
            "supervisorId": acct.world.users["owner"],
        }
        page = http.get(f"{self.P}/departments", params={"pageSize": 1}, headers=headers).json()
        assert len(page["departments"]) == 1 and page["nextPageToken"]

    def test_department_lifecycle(
        self, acct: Account, http: httpx.Client, headers: dict[str, str]
    ) -> None:
        created = http.post(
            f"{self.P}/department",
            json={
                "parentDepartmentId": acct.sales,
                "name": unique("Dept "),
                "code": None,
                "subordination": None,
                "coSubordination": None,
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        new_id = json.loads(created.content)
        assert isinstance(new_id, str) and UUID.match(new_id)
        edited = http.post(
            f"{self.P}/department/{new_id}",
            json={
                "name": unique("Renamed "),
                "subordination": {"subordinationType": "no_supervisor"},
            },
            headers=headers,
        )
        assert edited.status_code == 204, edited.text
        shown = http.get(f"{self.P}/department/{new_id}", headers=headers).json()
        assert shown["subordination"] == {"subordinationType": "no_supervisor"}
        assert http.delete(f"{self.P}/department/{new_id}", headers=headers).status_code == 204

    def test_department_with_its_supervisor(
        self, acct: Account, http: httpx.Client, headers: dict[str, str]
    ) -> None:
        owner = acct.world.users["owner"]
        created = http.post(
            f"{self.P}/department",
            json={
                "parentDepartmentId": acct.sales,
                "name": unique("Supervised "),
                "code": None,
                "subordination": {"subordinationType": "manual", "supervisorId": owner},
                "coSubordination": None,
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        shown = http.get(f"{self.P}/department/{created.json()}", headers=headers).json()
        assert shown["subordination"] == {"subordinationType": "manual", "supervisorId": owner}

    def test_users(self, acct: Account, http: httpx.Client, headers: dict[str, str]) -> None:
        page = http.get(
            f"{self.P}/users",
            params={"departments[0]": acct.sales, "pageSize": 10},
            headers=headers,
        ).json()
        assert {p["userId"] for p in page["userProfiles"]} == {acct.world.users["kate"]}
        for profile in page["userProfiles"]:
            self.assert_user_profile_dto(profile)
        by_login = http.get(f"{self.P}/users", params={"logins[0]": "li"}, headers=headers).json()[
            "userProfiles"
        ]
        assert [p["userId"] for p in by_login] == [acct.world.users["li"]]
        by_email = http.get(
            f"{self.P}/users", params={"emails[0]": "max@clients.test"}, headers=headers
        ).json()["userProfiles"]
        assert [p["userId"] for p in by_email] == [acct.world.users["max"]]
        everyone = http.get(f"{self.P}/user/v2", headers=headers).json()
        assert isinstance(everyone, list) and len(everyone) >= 4
        one = http.get(f"{self.P}/user/{acct.world.users['kate']}/v2", headers=headers).json()
        self.assert_user_profile_dto(one)
        assert one["userId"] == acct.world.users["kate"]

    @staticmethod
    def assert_user_profile_dto(profile: dict[str, Any]) -> None:
        """UserProfile::fromJSON: typed strings and ints, fields as non-null string pairs."""
        for key in ("userId", "roleId", "role", "departmentId"):
            assert isinstance(profile[key], str), key
        assert isinstance(profile["status"], int)
        assert isinstance(profile["fields"], list) and profile["fields"]
        for item in profile["fields"]:
            assert isinstance(item["name"], str) and isinstance(item["value"], str)

    def test_add_and_change_a_user(
        self, acct: Account, http: httpx.Client, headers: dict[str, str]
    ) -> None:
        login = unique("lv")
        created = http.post(
            f"{self.P}/user",
            json={
                "departmentId": acct.sales,
                "login": login,
                "fields": [
                    {"name": "email", "value": f"{login}@clients.test"},
                    {"name": "first_name", "value": "Lara"},
                    {"name": "last_name", "value": "Vel"},
                ],
                "email": f"{login}@clients.test",
                "password": None,
                "sendLoginEmail": False,
                "invitationMessage": None,
                "sendLoginSMS": False,
                "invitationSMSMessage": None,
                "role": None,
                "roleId": None,
                "manageableDepartmentIds": None,
                "groups": [acct.newcomers],
                "roles": None,
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        user_id = created.json()
        assert isinstance(user_id, str) and UUID.match(user_id)
        shown = http.get(f"{self.P}/user/{user_id}/v2", headers=headers).json()
        fields = {f["name"]: f["value"] for f in shown["fields"]}
        assert fields["LOGIN"] == login and fields["EMAIL"] == f"{login}@clients.test"
        assert shown["groups"] == [acct.newcomers]
        edited = http.post(
            f"{self.P}/user/{user_id}",
            json={
                "fields": [{"name": "job_title", "value": "Judge"}],
                "groupIds": [acct.newcomers],
            },
            headers=headers,
        )
        assert edited.status_code == 200, edited.text
        for path, body in (
            ("password", {"password": "Secret-123!"}),
            ("status", {"status": 3}),
            ("scheduled_deactivation", {"date": "2031-01-31"}),
        ):
            response = http.post(f"{self.P}/user/{user_id}/{path}", json=body, headers=headers)
            assert response.is_success, (path, response.text)
        cancel = http.delete(f"{self.P}/user/{user_id}/scheduled_deactivation", headers=headers)
        assert cancel.is_success
        activate = http.post(
            f"{self.P}/users/activate", json={"userIds": [user_id]}, headers=headers
        )
        assert activate.is_success, activate.text
        assert http.delete(f"{self.P}/user/{user_id}", headers=headers).status_code == 204

    def test_errors_by_status(self, acct: Account, http: httpx.Client) -> None:
        wrong = {"Accept": "application/json", **acct.x_auth(), "X-Auth-Password": "nope"}
        assert http.get(f"{self.P}/department", headers=wrong).status_code == 401
        bad = http.post(
            f"{self.P}/user",
            json={"departmentId": acct.sales, "fields": []},
            headers={"Accept": "application/json", **acct.x_auth()},
        )
        assert bad.status_code == 400 and bad.json()["message"] == "Wrong parameters"


# ---- Node org-sync ------------------------------------------------------------------------------


class TestNodeOrgSync:
    def test_sweep_by_numbered_pages(self, acct: Account, http: httpx.Client) -> None:
        token = acct.token(http)
        headers = {
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        collected: list[dict[str, Any]] = []
        page = 1
        total = None
        while True:
            response = http.post(
                "/api/v2/user/list", json={"page": page, "pageSize": 2}, headers=headers
            )
            assert response.status_code == 200, response.text
            data = response.json()
            batch = [*data["userProfiles"]]
            total = data["totalUsersNumber"]
            assert data["pageNumber"] == page
            if not batch:
                break
            collected += batch
            if len(collected) >= total:
                break
            page += 1
        assert len(collected) == total and len({u["userId"] for u in collected}) == total
        kate = next(u for u in collected if u["userId"] == acct.world.users["kate"])
        assert int(kate["status"]) == 1 and kate["departmentId"] == acct.sales
        assert [field_value(kate["fields"], n) for n in ("EMAIL", "FIRST_NAME", "LAST_NAME")] == [
            "kate@clients.test",
            "Kate",
            "Smith",
        ]
        everyone = http.post(
            "/api/v2/user/list", json={"page": 1, "pageSize": 1000}, headers=headers
        ).json()
        assert len(everyone["userProfiles"]) == everyone["totalUsersNumber"] == total

    def test_department_cards_by_regex(self, acct: Account, http: httpx.Client) -> None:
        """The raw token, no Accept: XML read with regular expressions, first match wins."""
        token = acct.token(http)
        text = http.get(f"/department/{acct.eu}", headers={"Authorization": token}).text

        def first(tag: str, within: str) -> str | None:
            found = re.search(f"<{tag}>([^<]*)</{tag}>", within)
            return found.group(1) if found else None

        assert first("departmentId", text) == acct.eu
        assert first("name", text) == "Sales EU"
        assert first("parentDepartmentId", text) == acct.sales
        subordination = re.search(r"<subordination>(.*?)</subordination>", text)
        assert subordination and first("subordinationType", subordination.group(1)) == "inherit"
        parent = http.get(f"/department/{acct.sales}", headers={"Authorization": token}).text
        inner = re.search(r"<subordination>(.*?)</subordination>", parent)
        assert inner is not None
        assert first("subordinationType", inner.group(1)) == "manual"
        assert first("supervisorId", inner.group(1)) == acct.world.users["owner"]

    def test_a_bad_token_is_401(self, http: httpx.Client) -> None:
        response = http.post(
            "/api/v2/user/list",
            json={"page": 1, "pageSize": 1000},
            headers={"Authorization": "Bearer expired", "Accept": "application/json"},
        )
        assert response.status_code == 401


# ---- Python lxml reader and multipart writer ----------------------------------------------------


class TestPythonScripts:
    def test_exists_by_xpath(self, acct: Account, http: httpx.Client) -> None:
        response = http.get(
            "/user", headers={"Host": "api-learn.ispringlearn.com", **acct.x_auth()}
        )
        assert response.status_code == 200
        doc = etree.XML(response.content)
        assert doc.xpath(
            '/response/userProfile/fields/field[name = "EMAIL" and value = "kate@clients.test"]'
        )
        assert not doc.xpath(
            '/response/userProfile/fields/field[name = "EMAIL" and value = "nobody@x.test"]'
        )
        found = doc.xpath(
            ".//userProfile[./fields/field/name[contains(text(),'LOGIN')] and "
            "./fields/field/value[contains(text(),'kate@clients.test')]]/userId"
        )
        assert found[0].text == acct.world.users["kate"]
        assert doc.xpath(
            '/response/userProfile/fields/field[name = "PHONE" and value = "+15550001"]'
        )

    def test_errors_by_xpath(self, acct: Account, http: httpx.Client) -> None:
        response = http.get("/user", headers={**acct.x_auth(), "X-Auth-Password": "wrong"})
        assert response.status_code == 401
        assert etree.XML(response.content).xpath("/response/message")[0].text

    def test_multipart_add(self, acct: Account, http: httpx.Client) -> None:
        login = unique("mp")
        parts = {
            "departmentId": (None, acct.support),
            "fields[email]": (None, f"{login}@clients.test"),
            "fields[login]": (None, login),
            "fields[first_name]": (None, "Mia"),
            "fields[last_name]": (None, "Part"),
            "fields[phone]": (None, "+15550002"),
            "sendLoginEmail": (None, "True"),
        }
        response = http.post("/user", files=parts, headers=acct.x_auth())
        assert response.status_code == 201, response.text
        user_id = etree.XML(response.content).text
        assert user_id and UUID.match(user_id)
        again = http.post("/user", files=parts, headers=acct.x_auth())
        assert again.status_code == 409
        assert etree.XML(again.content).xpath("/response/message")[0].text == (
            "User with the same login is already registered."
        )
        minimal = unique("mq")
        response = http.post(
            "/user",
            files={
                "departmentId": (None, acct.support),
                "fields[email]": (None, f"{minimal}@clients.test"),
                "fields[login]": (None, minimal),
            },
            headers=acct.x_auth(),
        )
        assert response.status_code == 201 and UUID.match(etree.XML(response.content).text or "")

    def test_xml_with_a_regex_and_xmltodict_reading(
        self, acct: Account, http: httpx.Client
    ) -> None:
        headers = {**acct.x_auth(), "Content-Type": "application/xml"}
        data = simplexml(http.get("/user", headers=headers).content)
        assert isinstance(data["userProfile"], list) and len(data["userProfile"]) >= 4
        people = {}
        for user in data["userProfile"]:
            assert isinstance(user["fields"]["field"], list)
            for field in user["fields"]["field"]:
                user[field["name"]] = field["value"]
            people[user["userId"]] = user
        assert people[acct.world.users["kate"]]["FIRST_NAME"] == "Kate"
        login = unique("rg")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?><request>    '
            f"<departmentId>{acct.support}</departmentId>    <password>Pw-{login}-1</password>    "
            f"<fields>        <login>{login}</login>        <email>{login}@clients.test</email>"
            "        <first_name>Rita</first_name>        <last_name>Gex</last_name>    </fields>"
            "    <role>learner</role>    <sendLoginEmail>false</sendLoginEmail>    "
            "<invitationMessage>Используйте логин и пароль</invitationMessage></request>"
        )
        created = http.post("/user", content=body.encode(), headers=headers)
        assert created.status_code == 201, created.text
        user_id = id_by_regex(created.text)
        group = http.post(
            "/group",
            content=f"<request><name>{unique('G')}</name><userIds><id>{user_id}</id></userIds></request>",
            headers=headers,
        )
        assert group.status_code == 201 and id_by_regex(group.text)
        password = http.post(
            f"/user/{user_id}/password",
            content="<request>    <password>Another-Pw-1</password></request>",
            headers=headers,
        )
        assert password.status_code == 200, password.text
        assert http.delete(f"/user/{user_id}", headers=headers).status_code == 204


# ---- Bitrix24 -----------------------------------------------------------------------------------


class TestBitrix:
    def test_profile_as_a_php_array(self, acct: Account, http: httpx.Client) -> None:
        """SimpleXML -> json -> array: ['userProfile']['fields']['field'], the root dropped."""
        url = acct.world.account_url.replace("http://", "https://") + "/"
        response = http.get(f"/user/{acct.world.users['kate']}", headers=acct.x_auth(url))
        assert response.status_code == 200, response.text
        profile = simplexml(response.content)["userProfile"]
        emails = [f["value"] for f in profile["fields"]["field"] if f["name"] == "EMAIL"]
        assert emails == ["kate@clients.test"]

    def test_integration_module_in_xml(self, acct: Account, http: httpx.Client) -> None:
        headers = {**acct.x_auth(), "Content-Type": "application/xml"}
        everyone = folded_struct(http.get("/api/v2/user", headers=headers).content)
        profiles = everyone["RESPONSE"]["USERPROFILE"]
        assert isinstance(profiles, list) and len(profiles) >= 4
        kate = next(p for p in profiles if p["USERID"] == acct.world.users["kate"])
        names = {f["NAME"]: f["VALUE"] for f in kate["FIELDS"]["FIELD"]}
        assert names["EMAIL"] == "kate@clients.test"
        filtered = http.get(
            f"/api/v2/user?departments[]={acct.sales}&groups[]={acct.newcomers}", headers=headers
        )
        users = etree.XML(filtered.content).findall("userProfile")
        assert [u.findtext("userId") for u in users] == [acct.world.users["kate"]]

        login = unique("bx")
        body = (
            '<?xml version="1.0" encoding="UTF-8"?>\n<request><userId>17</userId>'
            f"<departmentId>{acct.sales}</departmentId><fields><login>{login}</login><phone></phone>"
            f"<email>{login}@clients.test</email><first_name>B</first_name><last_name>X</last_name>"
            "<job_title></job_title></fields></request>"
        )
        created = http.post("/api/v2/user", content=body, headers=headers)
        assert created.status_code == 201, created.text
        assert re.fullmatch(
            r"(<\?xml[^>]*>\s*)?<response>[0-9a-f-]{36}</response>\s*", created.text
        )
        user_id = folded_struct(created.content)["RESPONSE"]
        assert UUID.match(user_id)

        admin = unique("bxa")
        created = http.post(
            "/api/v2/user",
            content=(
                f"<request><userId>18</userId><departmentId>{acct.sales}</departmentId>"
                "<role>department_administrator</role><manageableDepartmentIds>"
                f"<id>{acct.sales}</id></manageableDepartmentIds><fields><login>{admin}</login>"
                f"<email>{admin}@clients.test</email></fields></request>"
            ),
            headers=headers,
        )
        assert created.status_code == 201, created.text
        profile = etree.XML(
            http.get(f"/api/v2/user/{id_by_regex(created.text)}", headers=headers).content
        )
        assert profile.findtext("userProfile/role") == "department_administrator"
        assert profile.findtext("userProfile/manageableDepartmentIds/id") == acct.sales

        edited = http.post(
            f"/api/v2/user/{user_id}",
            content=body.replace("<first_name>B</first_name>", "<first_name>Bea</first_name>"),
            headers=headers,
        )
        assert edited.status_code == 200, edited.text
        for path, inner in (
            ("password", "<password>Pw12345!x</password>"),
            ("groups/remove", f"<groupIds><id>{acct.newcomers}</id></groupIds>"),
        ):
            response = http.post(
                f"/api/v2/user/{user_id}/{path}",
                content=f"<request>{inner}</request>",
                headers=headers,
            )
            assert response.status_code == 200, (path, response.text)
        assert http.delete(f"/api/v2/user/{user_id}", headers=headers).status_code == 204

    def test_directory_in_xml(self, acct: Account, http: httpx.Client) -> None:
        headers = {**acct.x_auth(), "Content-Type": "application/xml"}
        listed = folded_struct(http.get("/api/v2/department", headers=headers).content)
        names = {d["NAME"]: d["DEPARTMENTID"] for d in listed["RESPONSE"]["DEPARTMENT"]}
        assert names["Sales"] == acct.sales
        new_department = http.post(
            "/api/v2/department",
            content=f"<request><name>{unique('BxD')}</name><parentDepartmentId>{acct.sales}"
            f"</parentDepartmentId><code>{unique('c')}</code></request>",
            headers=headers,
        )
        assert new_department.status_code == 201
        department = folded_struct(new_department.content)["RESPONSE"]
        one = folded_struct(http.get(f"/api/v2/department/{department}", headers=headers).content)
        assert one["RESPONSE"]["PARENTDEPARTMENTID"] == acct.sales
        users = [acct.world.users["kate"], acct.world.users["li"]]
        group = http.post(
            "/api/v2/group",
            content=f"<request><name>{unique('BxG')}</name><userIds><id>{users[0]}</id>"
            f"<id>{users[1]}</id></userIds></request>",
            headers=headers,
        )
        group_id = folded_struct(group.content)["RESPONSE"]
        members = http.post(
            f"/api/v2/group/{group_id}/members",
            content=f"<request><userIds><id>{acct.world.users['max']}</id></userIds></request>",
            headers=headers,
        )
        assert members.is_success
        groups = folded_struct(http.get("/api/v2/group", headers=headers).content)
        assert group_id in {g["GROUPID"] for g in groups["RESPONSE"]["GROUP"]}


# ---- Kotlin proxy -------------------------------------------------------------------------------


class TestKotlinProxy:
    def test_passes_answers_through(self, acct: Account, http: httpx.Client) -> None:
        response = http.post(
            "/api/v3/token",
            content=f"client_id={acct.client_id}&client_secret={acct.client_secret}"
            "&grant_type=client_credentials",
            headers={
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
        )
        token = re.search(r'"access_token"\s*:\s*"([^"]+)"', response.text)
        assert token is not None
        query = f"departments{quote('[]')}={acct.eu}&groups{quote('[]')}={acct.newcomers}"
        for accept, media in (
            ("application/json", "application/json"),
            ("application/xml", "application/xml"),
        ):
            headers = {"Accept": accept, "Authorization": f"Bearer {token.group(1)}"}
            listed = http.get(f"/api/v2/users?{query}", headers=headers)
            assert listed.status_code == 200 and listed.headers["content-type"].startswith(media)
            one = http.get(f"/api/v2/user/{quote(acct.world.users['li'])}", headers=headers)
            assert one.status_code == 200 and one.headers["content-type"].startswith(media)
            assert acct.world.users["li"] in listed.text
        xml = http.get(
            f"/api/v2/users?{query}",
            headers={"Accept": "application/xml", "Authorization": f"Bearer {token.group(1)}"},
        )
        listed_users = list(etree.XML(xml.content).iter("userProfile"))
        assert acct.world.users["li"] in {u.findtext("userId") for u in listed_users}
        for user in listed_users:  # both filters hold
            assert user.findtext("departmentId") == acct.eu
            assert acct.newcomers in {g.text for g in user.iterfind("groups/id")}


# ---- Oracle PL/SQL HR integration ---------------------------------------------------------------


class TestOracleHr:
    def headers(self, acct: Account) -> dict[str, str]:
        return {
            "x-auth-account-url": acct.world.account_url,
            "x-auth-email": "owner",
            "x-auth-password": OWNER_PASSWORD,
            "content-type": "application/xml",
        }

    def test_hire_transfer_dismiss(self, acct: Account, http: httpx.Client) -> None:
        email = f"{unique('hr')}@clients.test"
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            "<request>",
            f"  <departmentId>{acct.sales}</departmentId>",
            "  <password>Acme12345678</password>",
            "  <fields>",
            f"    <login>{email}</login>",
            f"    <email>{email}</email>",
            "    <phone>+998901234567</phone>",
            "    <first_name>Hasan</first_name>",
            "    <last_name></last_name>",
            "    <job_title>Clerk</job_title>",
            "  </fields>",
            "  <role>learner</role>",
            "  <sendLoginEmail>true</sendLoginEmail>",
            f"  <invitationMessage>use email: {email}, password: Acme12345678</invitationMessage>",
            "</request>",
        ]
        created = http.post("/user", content="\n".join(lines), headers=self.headers(acct))
        assert created.status_code == 201, created.text
        code = re.search(r".*<response>(.*)</response>.*", created.text)  # '.' stops at newlines
        assert code is not None and UUID.match(code.group(1))
        user_id = code.group(1)
        moved = http.post(
            f"/user/{user_id}",
            content=f"<request><departmentId>{acct.eu}</departmentId><fields><job_title>Senior"
            "</job_title></fields></request>",
            headers=self.headers(acct),
        )
        assert moved.status_code == 200, moved.text
        for status in ("3", "1"):
            changed = http.post(
                f"/user/{user_id}/status",
                content=f"<request><status>{status}</status></request>",
                headers=self.headers(acct),
            )
            assert changed.status_code == 200, changed.text
        profile = etree.XML(http.get(f"/user/{user_id}", headers=self.headers(acct)).content)
        assert profile.findtext("userProfile/departmentId") == acct.eu
        assert profile.findtext("userProfile/status") == "1"
        assert profile.xpath('string(userProfile/fields/field[name="JOB_TITLE"]/value)') == "Senior"

    def test_unescaped_ampersand_is_a_clear_400(self, acct: Account, http: httpx.Client) -> None:
        response = http.post(
            "/user",
            content=f"<request><departmentId>{acct.sales}</departmentId><fields><login>a&b</login>"
            "</fields></request>",
            headers=self.headers(acct),
        )
        assert response.status_code == 400
        assert etree.XML(response.content).findtext("message") == "Wrong parameters"


# ---- Groovy HR sync -----------------------------------------------------------------------------


class TestGroovyHrSync:
    def headers(self, acct: Account) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Charset": "utf-8",
            "If-None-Match": "*",
            **acct.x_auth(),
        }

    def test_users(self, acct: Account, http: httpx.Client) -> None:
        headers = self.headers(acct)
        listed = http.get("/user", headers=headers)
        assert listed.status_code == 200 and isinstance(listed.json(), list)
        one = http.get(f"/user/{acct.world.users['kate']}", headers=headers)
        assert one.status_code == 200
        kate = one.json()
        assert kate["userId"] == acct.world.users["kate"] and kate["status"] in (1, 3, 5)
        assert isinstance(kate["fields"], list)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", kate["addedDate"])

        login = unique("gv")
        body = {
            "departmentId": acct.sales,
            "fields": {
                "LOGIN": login,
                "EMAIL": f"{login}@clients.test",
                "FIRST_NAME": "G",
                "LAST_NAME": "V",
                "JOB_TITLE": "Dev",
                "TABNUM": "7",
            },
            "groupIds": [acct.newcomers],
            "sendLoginEmail": False,
        }
        created = http.post("/user", json=body, headers={**headers, "X-Return-Object": "true"})
        assert created.status_code == 201, created.text
        user = created.json()
        assert UUID.match(user["userId"])
        assert {f["name"]: f["value"] for f in user["fields"]}["TABNUM"] == "7"
        bare = http.post(
            "/user",
            json={**body, "fields": {"LOGIN": unique("gw")}},
            headers=headers,
        )
        assert bare.status_code == 201 and isinstance(bare.json(), str)
        unknown = http.post(
            "/user",
            json={**body, "fields": {"LOGIN": unique("gx"), "WORKPHONE": "1"}},
            headers=headers,
        )
        assert unknown.status_code == 400 and unknown.json()["parameter"] == "fields.WORKPHONE"

        user_id = user["userId"]
        update = http.post(
            f"/user/{user_id}",
            json={"userId": user_id, "departmentId": acct.eu, "fields": {"LAST_NAME": "W"}},
            headers=headers,
        )
        assert update.status_code == 200, update.text
        assert (
            http.post(f"/user/{user_id}/status", json={"status": 3}, headers=headers).status_code
            == 200
        )
        refused = http.post(f"/user/{user_id}/status", json={"status": 2}, headers=headers)
        assert refused.status_code == 400 and set(refused.json()) >= {"code", "message"}
        removed = http.post(
            f"/user/{user_id}/groups/remove", json={"groupIds": [acct.newcomers]}, headers=headers
        )
        assert removed.status_code == 200
        assert http.delete(f"/user/{user_id}", headers=headers).status_code == 204

    def test_departments(self, acct: Account, http: httpx.Client) -> None:
        headers = self.headers(acct)
        assert "departments" in http.get("/departments", headers=headers).json()
        created = http.post(
            "/department",
            json={"name": unique("GD"), "parentDepartmentId": acct.sales, "code": unique("c")},
            headers={**headers, "X-Return-Object": "true"},
        )
        assert created.status_code == 201, created.text
        department_id = created.json()["departmentId"]
        for path, body in (
            ("", {"departmentId": department_id, "name": unique("GD2")}),
            ("/subordination", {"subordination": {"subordinationType": "no_supervisor"}}),
        ):
            response = http.post(f"/department/{department_id}{path}", json=body, headers=headers)
            assert response.status_code == 204, (path, response.text)
        assert http.delete(f"/department/{department_id}", headers=headers).status_code == 204

    def test_bad_password_is_a_json_401(self, acct: Account, http: httpx.Client) -> None:
        response = http.get("/user", headers={**self.headers(acct), "X-Auth-Password": "no"})
        assert response.status_code == 401
        assert response.json()["code"] == 401 and response.json()["message"]
