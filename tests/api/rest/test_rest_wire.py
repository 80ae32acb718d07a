"""The iSpring REST wire: token endpoint, every authentication form, every body encoding,
the read endpoints a sync script needs, and both path prefixes. Real server, both databases."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
from lxml import etree

from learndir.core.auth import create_api_key
from tests.support import Server, World, start_server, stop_server
from tests.transports import field_map


@pytest.fixture(scope="module")
def http(server: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.base_url, timeout=30) as client:
        yield client


def bearer(world: World, login: str = "owner") -> dict[str, str]:
    return {"Authorization": f"Bearer {world.token(login)}"}


JSON = {"Accept": "application/json"}


def unique() -> str:
    return uuid.uuid4().hex[:10]


def new_user(world: World, **extra: Any) -> dict[str, Any]:
    u = unique()
    body: dict[str, Any] = {
        "departmentId": world.root_id,
        "fields": {"login": f"r{u}", "employee_id": f"R{u}"},
    }
    body.update(extra)
    return body


class TestToken:
    def test_issues_a_30_minute_bearer_token(self, http: httpx.Client, world: World) -> None:
        key = create_api_key(world.db, world.account_url, "owner")
        response = http.post(
            "/api/v3/token",
            data={
                "client_id": key.client_id,
                "client_secret": key.client_secret,
                "grant_type": "client_credentials",
            },
        )
        assert response.status_code == 200
        body = response.json()
        assert body["expires_in"] == 1800 and body["token_type"] == "bearer"
        me = http.get("/role", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert me.status_code == 200

    def test_wrong_secret_is_401(self, http: httpx.Client, world: World) -> None:
        key = create_api_key(world.db, world.account_url, "owner")
        response = http.post(
            "/api/v3/token",
            data={
                "client_id": key.client_id,
                "client_secret": "nope",
                "grant_type": "client_credentials",
            },
            headers=JSON,
        )
        assert response.status_code == 401
        assert response.json()["code"] == 401

    @pytest.mark.parametrize("missing", ["client_id", "client_secret", "grant_type"])
    def test_missing_parameter_is_400_naming_it(self, http: httpx.Client, missing: str) -> None:
        data = {"client_id": "a", "client_secret": "b", "grant_type": "client_credentials"}
        del data[missing]
        response = http.post("/api/v3/token", data=data, headers=JSON)
        assert response.status_code == 400
        assert response.json()["parameter"] == missing


class TestAuthentication:
    def test_bearer_prefix(self, http: httpx.Client, world: World) -> None:
        assert http.post("/user", json=new_user(world), headers=bearer(world)).status_code == 201

    def test_raw_token_without_bearer(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/user", json=new_user(world), headers={"Authorization": world.token("owner")}
        )
        assert response.status_code == 201

    def test_x_auth_headers(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/user",
            json=new_user(world),
            headers={
                "X-Auth-Account-Url": world.account_url.upper() + "/",
                "X-Auth-Email": "owner@acme.test",
                "X-Auth-Password": "Owner-Pass-1",
            },
        )
        assert response.status_code == 201

    def test_no_credentials(self, http: httpx.Client, world: World) -> None:
        before = world.snapshot()
        response = http.post("/user", json=new_user(world), headers=JSON)
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert world.snapshot() == before

    def test_bad_body_with_no_credentials_is_still_401(self, http: httpx.Client) -> None:
        response = http.post(
            "/user", content=b"{broken", headers={"Content-Type": "application/json", **JSON}
        )
        assert response.status_code == 401

    def test_expired_token(self, database_url: str, world: World, tmp_path: Path) -> None:
        short = start_server(database_url, tmp_path, env={"LEARNDIR_TOKEN_LIFETIME_SECONDS": "1"})
        try:
            key = create_api_key(world.db, world.account_url, "owner")
            token = httpx.post(
                f"{short.base_url}/api/v3/token",
                data={
                    "client_id": key.client_id,
                    "client_secret": key.client_secret,
                    "grant_type": "client_credentials",
                },
            ).json()
            assert token["expires_in"] == 1
            time.sleep(1.5)
            response = httpx.post(
                f"{short.base_url}/user",
                json=new_user(world),
                headers={"Authorization": f"Bearer {token['access_token']}", **JSON},
            )
            assert response.status_code == 401
            assert "expired" in response.json()["reason"]
        finally:
            stop_server(short)


class TestBodies:
    def test_json_answer_is_a_json_string(self, http: httpx.Client, world: World) -> None:
        response = http.post("/user", json=new_user(world), headers={**bearer(world), **JSON})
        assert response.status_code == 201
        assert uuid.UUID(response.json())

    def test_xml_answer_is_compact_for_regex_clients(
        self, http: httpx.Client, world: World
    ) -> None:
        u = unique()
        body = (
            f"<request><departmentId>{world.root_id}</departmentId><fields>"
            f"<login>x{u}</login><email>x{u}@acme.test</email><employee_id>X{u}</employee_id>"
            f"</fields><groupIds><id>{world.groups['Newcomers']}</id></groupIds></request>"
        )
        response = http.post(
            "/user", content=body, headers={**bearer(world), "Content-Type": "application/xml"}
        )
        assert response.status_code == 201
        match = re.search(r"<response>(.*)</response>", response.text)
        assert match and uuid.UUID(match.group(1))

    def test_xml_roles_as_user_roles(self, http: httpx.Client, world: World) -> None:
        u = unique()
        body = (
            f"<request><departmentId>{world.root_id}</departmentId><fields>"
            f"<login>x{u}</login><employee_id>X{u}</employee_id></fields><roles>"
            f"<userRole><roleId>{world.roles['learner']}</roleId></userRole>"
            f"<userRole><roleId>{world.roles['department_administrator']}</roleId>"
            f"<manageableDepartmentIds><id>{world.departments['sales']}</id>"
            f"</manageableDepartmentIds></userRole></roles></request>"
        )
        response = http.post(
            "/user",
            content=body,
            headers={**bearer(world), "Content-Type": "application/xml", **JSON},
        )
        assert response.status_code == 201, response.text
        user = http.get(f"/user/{response.json()}", headers={**bearer(world), **JSON}).json()
        assert {r["roleType"] for r in user["userRoles"]} == {
            "learner",
            "department_administrator",
        }

    def test_seed_style_fields_in_xml(self, http: httpx.Client, world: World) -> None:
        u = unique()
        body = (
            f"<request><departmentId>{world.root_id}</departmentId><fields>"
            f"<field><name>login</name><value>s{u}</value></field>"
            f"<field><name>employee_id</name><value>S{u}</value></field></fields></request>"
        )
        response = http.post(
            "/user", content=body, headers={**bearer(world), "Content-Type": "application/xml"}
        )
        assert response.status_code == 201, response.text

    def test_php_style_form(self, http: httpx.Client, world: World) -> None:
        u = unique()
        form = [
            ("departmentId", world.root_id),
            ("fields[login]", f"f{u}"),
            ("fields[employee_id]", f"F{u}"),
            ("groupIds[]", world.groups["Newcomers"]),
            ("groupIds[]", world.groups["Managers"]),
            ("roles[0][roleId]", world.roles["learner"]),
            ("roles[1][roleId]", world.roles["department_administrator"]),
            ("roles[1][manageableDepartmentIds][]", world.departments["sales"]),
            ("sendLoginEmail", "0"),
        ]
        response = http.post(
            "/user",
            content=urlencode(form),
            headers={**bearer(world), **JSON, "Content-Type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 201, response.text
        user = http.get(f"/user/{response.json()}", headers={**bearer(world), **JSON}).json()
        assert sorted(user["groups"]) == sorted(
            [world.groups["Newcomers"], world.groups["Managers"]]
        )

    def test_seed_top_level_names_in_json(self, http: httpx.Client, world: World) -> None:
        u = unique()
        body = {
            "login": f"t{u}",
            "email": f"t{u}@acme.test",
            "departmentId": world.root_id,
            "groups": [world.groups["Newcomers"]],
            "fields": {"employee_id": f"T{u}"},
        }
        response = http.post("/user", json=body, headers={**bearer(world), **JSON})
        assert response.status_code == 201, response.text

    def test_parameters_as_headers(self, http: httpx.Client, world: World) -> None:
        u = unique()
        response = http.post(
            "/user",
            headers={
                **bearer(world),
                **JSON,
                "X-Department-Id": world.departments["sales"],
                "X-Fields": json.dumps({"login": f"h{u}", "employee_id": f"H{u}"}),
                "X-Role": "department_administrator",
                "X-Manageable-Department-Ids": world.departments["sales-eu"],
                "X-Group-Ids": json.dumps([world.groups["Managers"]]),
            },
        )
        assert response.status_code == 201, response.text

    def test_return_object(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/user",
            json=new_user(world),
            headers={**bearer(world), **JSON, "X-Return-Object": "true"},
        )
        assert response.status_code == 201
        assert response.json()["departmentId"] == world.root_id

    def test_return_object_for_a_role_that_adds_but_cannot_view(
        self, http: httpx.Client, world: World
    ) -> None:
        """HR Partner may add users in Engineering but not list them: the user it just added
        still comes back, and nothing is half-done."""
        response = http.post(
            "/user",
            json=new_user(world, departmentId=world.departments["eng"]),
            headers={**bearer(world, "hr.partner"), **JSON, "X-Return-Object": "true"},
        )
        assert response.status_code == 201, response.text
        created = response.json()
        assert created["departmentId"] == world.departments["eng"]
        other = http.get(f"/user/{world.users['jane.doe']}", headers=bearer(world, "hr.partner"))
        assert other.status_code == 403
        # Moved out of where HR Partner may add users, the user is out of its sight too.
        moved = http.post(
            f"/user/{created['userId']}",
            json={"departmentId": world.departments["sales"]},
            headers={**bearer(world), **JSON},
        )
        assert moved.status_code == 200, moved.text
        again = http.get(f"/user/{created['userId']}", headers=bearer(world, "hr.partner"))
        assert again.status_code == 403

    def test_api_v2_prefix(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/api/v2/user", json=new_user(world), headers={**bearer(world), **JSON}
        )
        assert response.status_code == 201
        assert http.get("/api/v2/role", headers=bearer(world)).status_code == 200

    def test_non_object_json_is_wrong_parameters(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/user",
            content=b"[1, 2]",
            headers={**bearer(world), **JSON, "Content-Type": "application/json"},
        )
        assert response.status_code == 400
        assert response.json()["message"] == "Wrong parameters"

    def test_unknown_parameter_is_named(self, http: httpx.Client, world: World) -> None:
        response = http.post(
            "/user", json=new_user(world, favouriteColour="blue"), headers={**bearer(world), **JSON}
        )
        assert response.status_code == 400
        assert response.json()["parameter"] == "favouriteColour"

    def test_numbers_in_fields_are_text(self, http: httpx.Client, world: World) -> None:
        body = new_user(world)
        body["fields"]["employee_id"] = int(uuid.uuid4().int % 10**12)
        response = http.post("/user", json=body, headers={**bearer(world), **JSON})
        assert response.status_code == 201, response.text


class TestReads:
    def test_roles(self, http: httpx.Client, world: World) -> None:
        roles = http.get("/role", headers={**bearer(world), **JSON}).json()
        types = {r["type"] for r in roles}
        assert {
            "account_owner",
            "administrator",
            "department_administrator",
            "course_author",
            "publisher",
            "supervisor",
            "learner",
            "custom",
        } <= types
        assert {r["title"] for r in roles if r["type"] == "custom"} >= {"HR Partner"}
        xml = etree.fromstring(http.get("/role", headers=bearer(world)).content)
        assert xml.tag == "response" and len(xml.findall("role")) == len(roles)

    def test_departments_and_code_filter(self, http: httpx.Client, world: World) -> None:
        all_ = http.get("/department", headers={**bearer(world), **JSON}).json()
        assert world.departments["sales-eu"] in {d["departmentId"] for d in all_}
        sales = http.get(
            "/department", params={"code": "SALES"}, headers={**bearer(world), **JSON}
        ).json()
        assert [d["departmentId"] for d in sales] == [world.departments["sales"]]

    def test_department_by_id_and_unknown(self, http: httpx.Client, world: World) -> None:
        one = http.get(
            f"/department/{world.departments['sales-eu']}", headers={**bearer(world), **JSON}
        ).json()
        assert one["parentDepartmentId"] == world.departments["sales"]
        missing = http.get(f"/department/{uuid.uuid4()}", headers={**bearer(world), **JSON})
        assert missing.status_code == 404

    def test_department_admin_sees_only_their_subtree(
        self, http: httpx.Client, world: World
    ) -> None:
        seen = http.get("/department", headers={**bearer(world, "sales.admin"), **JSON}).json()
        ids = {d["departmentId"] for d in seen}
        assert ids == {
            world.departments["sales"],
            world.departments["sales-eu"],
            world.departments["sales-us"],
        }
        other = http.get(
            f"/department/{world.departments['eng']}",
            headers={**bearer(world, "sales.admin"), **JSON},
        )
        assert other.status_code == 403

    def test_create_department(self, http: httpx.Client, world: World) -> None:
        code = f"d-{unique()}"
        created = http.post(
            "/department",
            json={
                "name": "Field Sales",
                "parentDepartmentId": world.departments["sales"],
                "code": code,
            },
            headers={**bearer(world, "sales.admin"), **JSON},
        )
        assert created.status_code == 201, created.text
        again = http.post(
            "/department",
            json={"name": "Dup", "parentDepartmentId": world.root_id, "code": code.upper()},
            headers={**bearer(world), **JSON},
        )
        assert again.status_code == 400 and again.json()["parameter"] == "code"
        outside = http.post(
            "/department",
            json={"name": "Nope", "parentDepartmentId": world.departments["eng"]},
            headers={**bearer(world, "sales.admin"), **JSON},
        )
        assert outside.status_code == 403

    def test_groups(self, http: httpx.Client, world: World) -> None:
        created = http.post(
            "/group",
            content=f"<request><name>G {unique()}</name></request>",
            headers={**bearer(world), "Content-Type": "application/xml"},
        )
        assert created.status_code == 201
        group_id = etree.fromstring(created.content).text
        groups = http.get("/group", headers={**bearer(world), **JSON}).json()
        assert group_id in {g["groupId"] for g in groups}
        assert all(g["isSmart"] is False for g in groups)

    def test_user_profile(self, http: httpx.Client, world: World) -> None:
        user = http.get(
            f"/user/{world.users['jane.doe']}", headers={**bearer(world), **JSON}
        ).json()
        assert field_map(user)["LOGIN"] == "jane.doe"
        assert field_map(user)["EMPLOYEE_ID"] == "E-4"
        assert user["role"] == "learner" and user["status"] == 1
        assert user["departmentId"] == world.departments["sales-eu"]

    def test_user_outside_scope_is_403(self, http: httpx.Client, world: World) -> None:
        response = http.get(
            f"/user/{world.users['hr.partner']}", headers={**bearer(world, "sales.admin"), **JSON}
        )
        assert response.status_code == 403

    def test_profile_fields(self, http: httpx.Client, world: World) -> None:
        fields = http.get("/user/profile/fields", headers={**bearer(world), **JSON}).json()
        by_name = {f["name"]: f for f in fields}
        assert by_name["login"]["userFieldInfoId"] == "LOGIN"
        assert by_name["employee_id"]["isRequired"] == 1
        assert by_name["employee_id"]["userFieldInfoId"].startswith("USER_DEFINED_FIELD")

    def test_learner_cannot_read_directory(self, http: httpx.Client, world: World) -> None:
        response = http.get("/role", headers={**bearer(world, "jane.doe"), **JSON})
        assert response.status_code == 403
        assert response.json()["message"] == "Permission Denied"

    def test_unknown_path_is_404_in_api_format(self, http: httpx.Client) -> None:
        response = http.get("/nowhere", headers=JSON)
        assert response.status_code == 404 and response.json()["code"] == 404

    def test_health(self, http: httpx.Client) -> None:
        assert http.get("/health").json()["status"] == "ok"
