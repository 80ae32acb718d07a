"""SOAP AddUser against a running server: zeep for what a WSDL client does, raw envelopes (httpx)
for what hand-written clients send, the seed's sample among them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import zeep
import zeep.exceptions
from lxml import etree

from learndir.core.auth import authenticate_token
from learndir.core.users.queries import UserView, get_user
from learndir.db.engine import Database
from tests.support import Server, World, acme_spec, make_world

SOAP_ENV = "http://schemas.xmlsoap.org/soap/envelope/"
SERVICE_NS = "http://ispringlearn.com/go/services/api/soap"
SEED = Path("/work/shared/seeds/002_b750eba9fff11883.txt")
SUCCESS_PREFIX = (
    '<?xml version="1.0" encoding="utf-8"?>\n'
    '<SOAP-ENV:Envelope xmlns:SOAP-ENV="http://schemas.xmlsoap.org/soap/envelope/" '
    'xmlns="http://ispringlearn.com/go/services/api/soap"><SOAP-ENV:Body><AddUserResult><userId>'
)


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def soap(server: Server) -> Any:
    return zeep.Client(f"{server.base_url}/soap?wsdl").service


@pytest.fixture(scope="module")
def plain_world(db: Database) -> World:
    """acme without required profile fields or users: the seed's sample fits it as is."""
    return make_world(db, acme_spec(profileFields=[], users=[]))


def owner_credentials(world: World) -> dict[str, str]:
    return {
        "accountUrl": world.account_url,
        "email": "owner@acme.test",
        "password": world.passwords["owner"],
    }


def credentials_xml(world: World, login: str = "owner") -> str:
    return (
        f"<credentials><accountUrl>{world.account_url}</accountUrl><email>{login}</email>"
        f"<password>{world.passwords[login]}</password></credentials>"
    )


def envelope(inner: str, operation: str = "AddUserRequest", qualified: bool = True) -> str:
    default_ns = f' xmlns="{SERVICE_NS}"' if qualified else ""
    return (
        f'<?xml version="1.0" encoding="utf-8"?><SOAP-ENV:Envelope xmlns:SOAP-ENV="{SOAP_ENV}"'
        f"{default_ns}><SOAP-ENV:Body><{operation}>{inner}</{operation}></SOAP-ENV:Body>"
        "</SOAP-ENV:Envelope>"
    )


def post(server: Server, body: str | bytes, **headers: str) -> httpx.Response:
    return httpx.post(
        f"{server.base_url}/soap",
        content=body,
        headers={"Content-Type": "text/xml; charset=utf-8", **headers},
        timeout=30,
    )


def fault_of(response: httpx.Response) -> dict[str, str | None]:
    """faultcode, faultstring and the detail's code, parameter and reason."""
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    root = etree.fromstring(response.content)
    fault = root.find(f"{{{SOAP_ENV}}}Body/{{{SOAP_ENV}}}Fault")
    assert fault is not None, response.text
    error = fault.find(f"detail/{{{SERVICE_NS}}}error")
    result = {
        "faultcode": fault.findtext("faultcode"),
        "faultstring": fault.findtext("faultstring"),
    }
    for name in ("code", "parameter", "reason"):
        result[name] = error.findtext(f"{{{SERVICE_NS}}}{name}") if error is not None else None
    return result


def user_id_of(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/xml; charset=utf-8"
    assert response.text.startswith(SUCCESS_PREFIX), response.text
    return response.text[len(SUCCESS_PREFIX) :].split("<", 1)[0]


def stored(world: World, user_id: str) -> UserView:
    return get_user(world.db, authenticate_token(world.db, world.token("owner")), user_id)


def fault_call(call: Callable[[], Any]) -> zeep.exceptions.Fault:
    with pytest.raises(zeep.exceptions.Fault) as caught:
        call()
    return caught.value


class TestWsdl:
    @pytest.mark.parametrize("path", ["/soap?wsdl", "/soap?WSDL", "/soap.wsdl"])
    def test_served_with_the_callers_address(self, server: Server, path: str) -> None:
        response = httpx.get(server.base_url + path)
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/xml; charset=utf-8"
        document = etree.fromstring(response.content)
        address = document.find(".//{http://schemas.xmlsoap.org/wsdl/soap/}address")
        assert address is not None and address.get("location") == f"{server.base_url}/soap"
        schema = document.find(
            "{http://schemas.xmlsoap.org/wsdl/}types/{http://www.w3.org/2001/XMLSchema}schema"
        )
        etree.XMLSchema(schema)

    def test_get_without_wsdl_is_a_fault(self, server: Server) -> None:
        response = httpx.get(f"{server.base_url}/soap")
        assert response.status_code == 400
        assert fault_of(response)["faultstring"] == "Wrong parameters"


class TestAddUserValid:
    def test_zeep_with_credentials(self, soap: Any, world: World) -> None:
        login = unique("zeep")
        before = world.snapshot()
        user_id = soap.AddUser(
            credentials=owner_credentials(world),
            login=login,
            email=f"{login}@acme.test",
            departmentId=world.departments["eng"],
            first_name="Zed",
            fields={"field": [{"name": "employee_id", "value": unique("E")}]},
            groups={"id": [world.groups["Newcomers"]]},
            sendLoginEmail=False,
        )
        user = stored(world, user_id)
        assert user.fields["login"] == login and user.fields["first_name"] == "Zed"
        assert user.department_id == world.departments["eng"]
        assert user.groups == [world.groups["Newcomers"]]
        assert world.snapshot()["users"] == before["users"] + 1

    @pytest.mark.parametrize("where", ["credentials", "top-level"])
    def test_zeep_with_token(self, soap: Any, world: World, where: str) -> None:
        token = world.token("owner")
        auth = {"credentials": {"token": token}} if where == "credentials" else {"token": token}
        user_id = soap.AddUser(
            **auth,
            login=unique("token"),
            departmentId=world.departments["sales"],
            role="department_administrator",
            manageableDepartmentIds={"id": [world.departments["sales-eu"]]},
            fields={"field": [{"name": "employee_id", "value": unique("E")}]},
        )
        role, managed = stored(world, user_id).primary_role
        assert role.kind.value == "department_administrator"
        assert managed == [world.departments["sales-eu"]]

    def test_zeep_with_roles(self, soap: Any, world: World) -> None:
        user_id = soap.AddUser(
            token=world.token("owner"),
            login=unique("roles"),
            departmentId=world.departments["sales"],
            roles={
                "id": [world.roles["learner"]],
                "userRole": [
                    {
                        "roleId": world.roles["HR Partner"],
                        "manageableDepartmentIds": {"id": [world.departments["sales"]]},
                    }
                ],
            },
            fields={"field": [{"name": "employee_id", "value": unique("E")}]},
        )
        roles = {role.name: managed for role, managed in stored(world, user_id).roles}
        assert roles == {"Learner": [], "HR Partner": [world.departments["sales"]]}

    def test_seed_sample_as_is(self, server: Server, plain_world: World) -> None:
        w = plain_world
        sample = SEED.read_text().split("Sample Call")[1].split("```")[1].strip()
        sample = (
            sample.replace("http://myaccount.ispringlearn.com", w.account_url)
            .replace("<email>email@email.ru</email>", "<email>owner@acme.test</email>")
            .replace(
                "<password>password</password>\n      </credentials>",
                f"<password>{w.passwords['owner']}</password>\n      </credentials>",
            )
            .replace("8bcda39e-a993-11e9-b267-7ee902e2417c", w.departments["eng"])
            .replace("209b9312-afb3-11e9-aaf2-dabe560e07b1", w.roles["HR Partner"])
            .replace(
                "<id>string</id>\n        <id>string</id>\n      </groups>",
                f"<id>{w.groups['Newcomers']}</id>\n        "
                f"<id>{w.groups['Managers']}</id>\n      </groups>",
            )
            .replace(
                "<id>string</id>\n        <id>string</id>",
                f"<id>{w.departments['eng']}</id>\n        <id>{w.departments['sales-eu']}</id>",
            )
        )
        assert "string" not in sample
        before = w.snapshot()
        user = stored(w, user_id_of(post(server, sample, SOAPAction='"AddUser"')))
        assert user.fields["login"] == "kate.smith@ispringsolutions.com"
        assert user.groups == sorted([w.groups["Newcomers"], w.groups["Managers"]])
        role, managed = user.primary_role
        assert role.name == "HR Partner"
        assert managed == sorted([w.departments["eng"], w.departments["sales-eu"]])
        # Older generation: sendLoginEmail true sends the invitation.
        assert w.snapshot()["outbox"] == before["outbox"] + 1

        again = post(server, sample)
        assert again.status_code == 409
        assert fault_of(again)["faultstring"] == "User with the same login is already registered."

    def test_unqualified_elements_and_top_level_profile_values(
        self, server: Server, world: World
    ) -> None:
        login = unique("raw")
        inner = (
            f"{credentials_xml(world)}<login>{login}</login>"
            f"<departmentId>{world.departments['eng']}</departmentId>"
            "<employee_id>E-raw</employee_id><Country>FR</Country><job_title>QA</job_title>"
        )
        user = stored(world, user_id_of(post(server, envelope(inner, qualified=False))))
        assert user.fields["employee_id"] == "E-raw"
        assert user.fields["country"] == "FR"
        assert user.fields["job_title"] == "QA"

    def test_empty_and_nil_elements_are_absent(self, server: Server, world: World) -> None:
        inner = (
            f"{credentials_xml(world)}<login>{unique('empty')}</login><email/>"
            f"<departmentId>{world.departments['eng']}</departmentId><sendLoginEmail/>"
            '<phone xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xsi:nil="true"/>'
            f"<groups/><employee_id>{unique('E')}</employee_id>"
        )
        user = stored(world, user_id_of(post(server, envelope(inner))))
        assert "email" not in user.fields and "phone" not in user.fields

    @pytest.mark.parametrize(("auth", "invited"), [("credentials", 1), ("token", 0)])
    def test_invitation_default_follows_the_generation(
        self, server: Server, world: World, auth: str, invited: int
    ) -> None:
        login = unique("gen")
        who = (
            credentials_xml(world)
            if auth == "credentials"
            else f"<token>{world.token('owner')}</token>"
        )
        inner = (
            f"{who}<login>{login}</login><email>{login}@acme.test</email>"
            f"<departmentId>{world.departments['eng']}</departmentId>"
            f"<employee_id>{unique('E')}</employee_id>"
        )
        before = world.snapshot()
        user_id_of(post(server, envelope(inner)))
        assert world.snapshot()["outbox"] == before["outbox"] + invited


class TestAddUserRejected:
    """Every rejected call: the exact Fault, its status, and nothing changed."""

    @pytest.mark.parametrize(
        "auth",
        [
            "",
            "<credentials><accountUrl>{url}</accountUrl><email>owner</email>"
            "<password>Wrong-Pass-1</password></credentials>",
            "<credentials><accountUrl>{url}</accountUrl><email>owner</email></credentials>",
            "<token>not-a-token</token>",
            "<credentials><token>not-a-token</token></credentials>",
        ],
    )
    def test_unauthenticated(self, server: Server, world: World, auth: str) -> None:
        inner = (
            auth.format(url=world.account_url) + f"<login>{unique('u')}</login>"
            f"<departmentId>{world.departments['eng']}</departmentId>"
        )
        before = world.snapshot()
        response = post(server, envelope(inner))
        assert response.status_code == 401
        fault = fault_of(response)
        assert (fault["faultcode"], fault["faultstring"], fault["code"]) == (
            "SOAP-ENV:Client",
            "Unauthorized",
            "unauthenticated",
        )
        assert "Wrong-Pass-1" not in response.text and "not-a-token" not in response.text
        assert world.snapshot() == before

    def test_forbidden_outside_managed_departments(self, soap: Any, world: World) -> None:
        before = world.snapshot()
        fault = fault_call(
            lambda: soap.AddUser(
                credentials={
                    "accountUrl": world.account_url,
                    "email": "sales.admin",
                    "password": world.passwords["sales.admin"],
                },
                login=unique("denied"),
                departmentId=world.departments["eng"],
                fields={"field": [{"name": "employee_id", "value": unique("E")}]},
            )
        )
        assert fault.message == "Permission Denied"
        assert fault.code == "SOAP-ENV:Client"
        assert world.snapshot() == before

    @pytest.mark.parametrize(
        ("inner", "parameter"),
        [
            ("<departmentId>{eng}</departmentId><employee_id>{eid}</employee_id>", "login"),
            ("<login>{login}</login><employee_id>{eid}</employee_id>", "departmentId"),
            (
                "<login>{login}</login><departmentId>{missing}</departmentId>"
                "<employee_id>{eid}</employee_id>",
                "departmentId",
            ),
            ("<login>{login}</login><departmentId>{eng}</departmentId>", "fields.employee_id"),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><sendLoginEmail>maybe</sendLoginEmail>",
                "sendLoginEmail",
            ),
            (
                "<login>{login}</login><login>other</login><departmentId>{eng}</departmentId>"
                "<employee_id>{eid}</employee_id>",
                "login",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><shoe_size>44</shoe_size>",
                "fields.shoe_size",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><extra><x>1</x></extra>",
                "extra",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><role>custom</role>",
                "roleId",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><roles><id>{admin}</id><id>{hr}</id></roles>",
                "roles",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                "</employee_id><fields><field><value>x</value></field></fields>",
                "fields.field",
            ),
            (
                "<login>{login}</login><departmentId>{eng}</departmentId><employee_id>{eid}"
                '</employee_id><o:groups xmlns:o="urn:other"/>',
                "groups",
            ),
        ],
    )
    def test_wrong_parameters(
        self, server: Server, world: World, inner: str, parameter: str
    ) -> None:
        inner = inner.format(
            login=unique("bad"),
            eng=world.departments["eng"],
            missing=str(uuid.uuid4()),
            eid=unique("E"),
            admin=world.roles["account_administrator"],
            hr=world.roles["HR Partner"],
        )
        before = world.snapshot()
        response = post(server, envelope(credentials_xml(world) + inner))
        assert response.status_code == 400
        fault = fault_of(response)
        assert (fault["faultcode"], fault["faultstring"], fault["code"], fault["parameter"]) == (
            "SOAP-ENV:Client",
            "Wrong parameters",
            "invalid_parameters",
            parameter,
        )
        assert fault["reason"]
        assert world.snapshot() == before

    @pytest.mark.parametrize(
        ("field", "message"),
        [
            ("login", "User with the same login is already registered."),
            ("email", "User with the same email is already registered."),
            ("employee_id", "User with the same employee_id is already registered."),
        ],
    )
    def test_conflict(self, soap: Any, world: World, field: str, message: str) -> None:
        taken = {
            "login": unique("dup"),
            "email": f"{unique('dup')}@acme.test",
            "employee_id": unique("E"),
        }
        soap.AddUser(
            credentials=owner_credentials(world),
            login=taken["login"],
            email=taken["email"],
            departmentId=world.departments["eng"],
            fields={"field": [{"name": "employee_id", "value": taken["employee_id"]}]},
        )
        fresh = {
            "login": unique("new"),
            "email": f"{unique('new')}@acme.test",
            "employee_id": unique("E"),
        }
        fresh[field] = taken[field].upper() if field == "email" else taken[field]
        before = world.snapshot()
        fault = fault_call(
            lambda: soap.AddUser(
                credentials=owner_credentials(world),
                login=fresh["login"],
                email=fresh["email"],
                departmentId=world.departments["eng"],
                fields={"field": [{"name": "employee_id", "value": fresh["employee_id"]}]},
            )
        )
        assert (fault.code, fault.message) == ("SOAP-ENV:Client", message)
        assert world.snapshot() == before

    def test_seat_limit(self, server: Server, soap: Any, db: Database) -> None:
        full = make_world(db, acme_spec(seatLimit=5))  # the owner and the file's four users
        before = full.snapshot()
        fault = fault_call(
            lambda: soap.AddUser(
                token=full.token("owner"),
                login=unique("seat"),
                departmentId=full.departments["eng"],
                fields={"field": [{"name": "employee_id", "value": unique("E")}]},
            )
        )
        assert (fault.code, fault.message) == (
            "SOAP-ENV:Client",
            "Number of user accounts is exceeded",
        )
        inner = (
            f"<token>{full.token('owner')}</token><login>{unique('seat')}</login>"
            f"<departmentId>{full.departments['eng']}</departmentId>"
            f"<employee_id>{unique('E')}</employee_id>"
        )
        assert post(server, envelope(inner)).status_code == 403
        assert full.snapshot() == before


class TestEnvelope:
    @pytest.mark.parametrize(
        ("body", "parameter"),
        [
            (b"", None),
            (b"<a><b></a>", None),
            (f'<AddUserRequest xmlns="{SERVICE_NS}"/>'.encode(), "Envelope"),
            (
                b'<e:Envelope xmlns:e="http://www.w3.org/2003/05/soap-envelope"><e:Body>'
                b"<AddUserRequest/></e:Body></e:Envelope>",
                "Envelope",
            ),
            (
                envelope("<x>1</x>", operation="DeleteEverythingRequest").encode(),
                "DeleteEverythingRequest",
            ),
            (envelope("").replace("</SOAP-ENV:Body>", "<More/></SOAP-ENV:Body>").encode(), "Body"),
            (
                b'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                + envelope("<login>&x;</login>").split("?>", 1)[1].encode(),
                None,
            ),
            (
                b'<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;&a;">]>'
                + envelope("<login>&b;</login>").split("?>", 1)[1].encode(),
                None,
            ),
        ],
    )
    def test_rejected_as_wrong_parameters(
        self, server: Server, body: bytes, parameter: str | None
    ) -> None:
        response = post(server, body)
        assert response.status_code == 400
        fault = fault_of(response)
        assert (fault["faultcode"], fault["faultstring"], fault["parameter"]) == (
            "SOAP-ENV:Client",
            "Wrong parameters",
            parameter,
        )
        assert fault["reason"]

    def test_oversized_body_is_a_fault(self, server: Server) -> None:
        response = post(server, b"<a>" + b"x" * 4_000_000 + b"</a>")
        assert response.status_code == 413
        assert fault_of(response)["faultcode"] == "SOAP-ENV:Client"

    def test_parallel_faults_each_name_their_own_parameter(self, server: Server) -> None:
        """Schema validation runs in many threads at once; no request gets another's error."""

        def call(i: int) -> bool:
            name = ("sendLoginEmail", "sendLoginSMS")[i % 2]
            response = post(server, envelope(f"<{name}>maybe-{i}</{name}>"))
            fault = fault_of(response)
            return fault["parameter"] == name and f"'maybe-{i}'" in (fault["reason"] or "")

        with ThreadPoolExecutor(16) as pool:
            assert all(pool.map(call, range(200)))
