"""One addUser call, three wires: SOAP (through zeep reading the served WSDL), REST XML and REST
JSON. Each transport turns the seed's parameter names into its own format and the answer back
into an Outcome, so one scenario table runs through all of them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import zeep
import zeep.exceptions
from lxml import etree

SOAP_NS = "http://ispringlearn.com/go/services/api/soap"


@dataclass(frozen=True)
class Auth:
    token: str | None = None
    account_url: str | None = None
    login: str | None = None
    password: str | None = None

    @property
    def is_credentials(self) -> bool:
        return self.token is None


@dataclass
class Outcome:
    status: int
    user_id: str | None = None
    code: str | None = None
    message: str | None = None
    parameter: str | None = None
    reason: str | None = None
    # The decoded answer of a successful call that returns more than an id (a profile, a page).
    data: Any = None

    @property
    def ok(self) -> bool:
        return self.user_id is not None


def _rest_headers(auth: Auth) -> dict[str, str]:
    if auth.token is not None:
        return {"Authorization": f"Bearer {auth.token}"}
    return {
        "X-Auth-Account-Url": auth.account_url or "",
        "X-Auth-Email": auth.login or "",
        "X-Auth-Password": auth.password or "",
    }


def _new_user(params: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI's NewUser: login and e-mail inside `fields`, groups as `groupIds`."""
    body = {k: v for k, v in params.items() if k not in ("login", "email", "groups", "fields")}
    fields = dict(params.get("fields") or {})
    for key in ("login", "email"):
        if key in params:
            if key in fields:  # both given: send the seed's top-level name as well
                body[key] = params[key]
            else:
                fields[key] = params[key]
    if fields:
        body["fields"] = fields
    if "groups" in params:
        body["groupIds"] = params["groups"]
    return body


class _UserChanges:
    """Changing users over REST, through the transport's generic `request`: the parameters
    use the OpenAPI's UpdateUser names (departmentId, role, roleId, roles, fields, groupIds,
    manageableDepartmentIds)."""

    request: Callable[..., Outcome]  # each transport's own generic call

    def update_user(self, user_id: str, params: dict[str, Any], auth: Auth) -> Outcome:
        return self.request("POST", f"/user/{user_id}", auth, params)

    def delete_user(self, user_id: str, auth: Auth) -> Outcome:
        return self.request("DELETE", f"/user/{user_id}", auth)

    def change_status(self, user_id: str, status: Any, auth: Auth) -> Outcome:
        return self.request("POST", f"/user/{user_id}/status", auth, {"status": status})


def _php_query(filters: dict[str, Any]) -> dict[str, Any]:
    """Query parameters PHP-style: list values as `name[]`."""
    return {f"{k}[]" if isinstance(v, list) else k: v for k, v in filters.items()}


def _xml_user(element: etree._Element) -> dict[str, Any]:
    """A <userProfile> (or a profile's <response>) as the same dict the JSON answer holds."""
    out: dict[str, Any] = {}
    for child in element:
        tag = child.tag
        if tag in ("manageableDepartmentIds", "groups"):
            out[tag] = [item.text for item in child]
        elif tag == "userRoles":
            out[tag] = [
                {
                    c.tag: [i.text for i in c] if c.tag == "manageableDepartmentIds" else c.text
                    for c in role
                }
                for role in child
            ]
        elif tag == "fields":
            out[tag] = [
                {"name": f.findtext("name"), "value": f.findtext("value") or ""} for f in child
            ]
        elif tag in ("subordination", "coSubordination", "workLeaveStatus"):
            out[tag] = {c.tag: c.text or "" for c in child}
        elif tag == "status":
            out[tag] = int(child.text or "0")
        else:
            out[tag] = child.text or ""
    return out


def _xml_read(kind: str, doc: etree._Element) -> Any:
    if kind == "profile":
        (profile,) = doc  # <response><userProfile>...</userProfile></response>
        assert profile.tag == "userProfile"
        return _xml_user(profile)
    if kind == "list":
        return [_xml_user(u) for u in doc]
    if kind == "ids":
        return [i.text for i in doc]
    out: dict[str, Any] = {}
    for child in doc:
        if child.tag == "userProfiles":
            out["userProfiles"] = [_xml_user(u) for u in child]
        elif child.tag in ("pageNumber", "totalUsersNumber"):
            out[child.tag] = int(child.text or "0")
        else:
            out[child.tag] = child.text
    return out


class _UserReads:
    """Reading users through either REST encoding; `data` is plain JSON-shaped data for both:
    a profile dict, a list of profiles, a page dict, or a list of ids."""

    request: Callable[..., Outcome]  # each transport's own generic call

    def _read(self, kind: str, method: str, path: str, auth: Auth | None, **kw: Any) -> Outcome:
        outcome = self.request(method, path, auth, **kw)
        if outcome.status == 200 and outcome.data is not None:
            data = outcome.data
            if isinstance(data, etree._Element):
                outcome.data = _xml_read(kind, data)
        elif outcome.status == 200 and kind in ("list", "ids"):
            outcome.data = []
        return outcome

    def get_user(
        self, user_id: str, auth: Auth | None, *, v2: bool = False, prefix: str = ""
    ) -> Outcome:
        return self._read("profile", "GET", f"{prefix}/user/{user_id}{'/v2' if v2 else ''}", auth)

    def list_users(
        self, filters: dict[str, Any], auth: Auth | None, *, v2: bool = False, prefix: str = ""
    ) -> Outcome:
        path = f"{prefix}/user{'/v2' if v2 else ''}"
        return self._read("list", "GET", path, auth, params=_php_query(filters))

    def page_users(
        self,
        filters: dict[str, Any],
        auth: Auth | None,
        *,
        page_size: Any = None,
        page_token: str | None = None,
        v2: bool = True,
        post: bool = False,
        prefix: str = "",
    ) -> Outcome:
        """GET /users/v2 (or /users with v2=False); post=True sends the filters in the body of
        POST /users/v2, paging staying in the query."""
        paging = {
            k: v for k, v in (("pageSize", page_size), ("pageToken", page_token)) if v is not None
        }
        path = f"{prefix}/users{'/v2' if v2 or post else ''}"
        if post:
            return self._read("page", "POST", path, auth, body=filters, params=paging)
        return self._read("page", "GET", path, auth, params={**_php_query(filters), **paging})

    def user_list(
        self,
        body: dict[str, Any],
        auth: Auth | None,
        params: dict[str, Any] | None = None,
        prefix: str = "",
    ) -> Outcome:
        return self._read("numbered", "POST", f"{prefix}/user/list", auth, body=body, params=params)

    def find_existing(
        self, user_ids: list[str], auth: Auth | None, *, header: bool = False, prefix: str = ""
    ) -> Outcome:
        path = f"{prefix}/users/find_existing"
        if header:
            return self._read("ids", "POST", path, auth, headers={"X-User-Ids": ",".join(user_ids)})
        return self._read("ids", "POST", path, auth, body={"userIds": user_ids})


class RestJson(_UserChanges, _UserReads):
    name = "rest-json"

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def add_user(self, params: dict[str, Any], auth: Auth) -> Outcome:
        response = self.client.post(
            "/user",
            content=json.dumps(_new_user(params)),
            headers={
                **_rest_headers(auth),
                "Content-Type": "application/json",
                "Accept": "application/json",
            },
        )
        assert response.headers["content-type"].startswith("application/json"), response.text
        body = response.json()
        if response.status_code == 201:
            assert isinstance(body, str)
            return Outcome(201, user_id=body)
        assert body["code"] == response.status_code
        return Outcome(
            response.status_code,
            code=body.get("error"),
            message=body["message"],
            parameter=body.get("parameter"),
            reason=body.get("reason"),
        )

    def request(
        self,
        method: str,
        path: str,
        auth: Auth | None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Outcome:
        """Any directory call: `data` is the decoded JSON answer (None for an empty body)."""
        headers = {
            **(_rest_headers(auth) if auth else {}),
            **(headers or {}),
            "Accept": "application/json",
        }
        if body is not None:
            headers["Content-Type"] = "application/json"
        response = self.client.request(
            method,
            path,
            content=json.dumps(body) if body is not None else None,
            params=params,
            headers=headers,
        )
        data = response.json() if response.content else None
        if response.status_code < 400:
            return Outcome(
                response.status_code,
                user_id=data if isinstance(data, str) else None,
                data=data,
            )
        assert data["code"] == response.status_code
        return Outcome(
            response.status_code,
            code=data.get("error"),
            message=data["message"],
            parameter=data.get("parameter"),
            reason=data.get("reason"),
        )


def _xml_value(parent: etree._Element, name: str, value: Any) -> None:
    element = etree.SubElement(parent, name)
    if isinstance(value, dict):
        for key, inner in value.items():
            _xml_value(element, key, inner)
    elif isinstance(value, list):
        for item in value:
            if isinstance(item, dict):
                _xml_value(element, "userRole", item)
            else:
                etree.SubElement(element, "id").text = str(item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


def _xml_item(parent: etree._Element, name: str, value: Any) -> None:
    """Generic request XML: list items of objects are <item>, of values <id>."""
    element = etree.SubElement(parent, name)
    if isinstance(value, dict):
        for key, inner in value.items():
            _xml_item(element, key, inner)
    elif isinstance(value, list):
        for item in value:
            _xml_item(element, "item" if isinstance(item, dict) else "id", item)
    elif isinstance(value, bool):
        element.text = "true" if value else "false"
    elif value is not None:
        element.text = str(value)


class RestXml(_UserChanges, _UserReads):
    name = "rest-xml"

    def __init__(self, base_url: str) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=30)

    def add_user(self, params: dict[str, Any], auth: Auth) -> Outcome:
        root = etree.Element("request")
        for key, value in _new_user(params).items():
            _xml_value(root, key, value)
        response = self.client.post(
            "/user",
            content=etree.tostring(root),
            headers={**_rest_headers(auth), "Content-Type": "application/xml"},
        )
        assert response.headers["content-type"].startswith("application/xml"), response.text
        doc = etree.fromstring(response.content)
        assert doc.tag == "response"
        if response.status_code == 201:
            assert len(doc) == 0
            return Outcome(201, user_id=doc.text)
        assert doc.findtext("code") == str(response.status_code)
        return Outcome(
            response.status_code,
            code=doc.findtext("error"),
            message=doc.findtext("message"),
            parameter=doc.findtext("parameter"),
            reason=doc.findtext("reason"),
        )

    def request(
        self,
        method: str,
        path: str,
        auth: Auth | None,
        body: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Outcome:
        """Any directory call: `data` is the answer's <response> element (None when empty)."""
        headers = {**(_rest_headers(auth) if auth else {}), **(headers or {})}
        content = None
        if body is not None:
            root = etree.Element("request")
            for key, value in body.items():
                _xml_item(root, key, value)
            content = etree.tostring(root)
            headers["Content-Type"] = "application/xml"
        response = self.client.request(
            method, path, content=content, params=params, headers=headers
        )
        if not response.content:
            return Outcome(response.status_code)
        assert response.headers["content-type"].startswith("application/xml"), response.text
        doc = etree.fromstring(response.content)
        assert doc.tag == "response"
        if response.status_code < 400:
            is_id = len(doc) == 0 and bool(doc.text)
            return Outcome(response.status_code, user_id=doc.text if is_id else None, data=doc)
        assert doc.findtext("code") == str(response.status_code)
        return Outcome(
            response.status_code,
            code=doc.findtext("error"),
            message=doc.findtext("message"),
            parameter=doc.findtext("parameter"),
            reason=doc.findtext("reason"),
        )


class _StatusTransport(zeep.Transport):
    """Remembers the HTTP status of the last answer: a Fault's status follows the same table
    as REST's (400, 401, 403, 404, 409), and zeep alone does not tell it."""

    last_status = 0

    def post_xml(self, address: str, envelope: Any, headers: Any) -> Any:
        response = super().post_xml(address, envelope, headers)
        self.last_status = response.status_code
        return response


def _soap_params(params: dict[str, Any]) -> dict[str, Any]:
    """The seed's and the OpenAPI's parameter names as the WSDL's: id lists as `{"id": [...]}`,
    `groupIds` as `groups`, `fields` as name/value items, roles as `id` or `userRole` items."""
    call: dict[str, Any] = {}
    for key, value in params.items():
        if key in ("groups", "groupIds", "manageableDepartmentIds"):
            call["groups" if key == "groupIds" else key] = {"id": value}
        elif key == "fields":
            call[key] = {"field": [{"name": k, "value": v} for k, v in value.items()]}
        elif key == "roles":
            call[key] = _soap_roles(value)
        else:
            call[key] = value
    return call


def _soap_roles(roles: list[Any]) -> dict[str, Any]:
    """Roles by name, as a WSDL client fills them: ids under `id`, roles with their managed
    departments under `userRole`."""
    ids: list[Any] = []
    items: list[dict[str, Any]] = []
    for role in roles:
        if not isinstance(role, dict):
            ids.append(role)
            continue
        item: dict[str, Any] = {"roleId": role["roleId"]}
        if "manageableDepartmentIds" in role:
            item["manageableDepartmentIds"] = {"id": role["manageableDepartmentIds"]}
        items.append(item)
    return {"id": ids, "userRole": items}


def _soap_ids(value: Any) -> list[Any]:
    """An IdList as read by zeep: None when the list was empty."""
    return list(value.id) if value is not None else []


def _soap_subordination(value: Any) -> dict[str, Any]:
    out = {"subordinationType": value.subordinationType}
    if value.supervisorId:
        out["supervisorId"] = value.supervisorId
    return out


def _soap_datetime(value: Any) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else ""


def _soap_profile(profile: Any) -> dict[str, Any]:
    """A UserProfile read by zeep as the same dict the REST JSON answer holds."""
    fields = [
        {"name": f.name, "value": f.value or ""}
        for f in (profile.fields.field if profile.fields else [])
    ]
    out: dict[str, Any] = {
        "userId": profile.userId,
        "role": profile.role,
        "roleId": profile.roleId,
        "departmentId": profile.departmentId,
        "status": profile.status,
        "fields": fields,
        "addedDate": _soap_datetime(profile.addedDate),
        "lastLoginDate": _soap_datetime(profile.lastLoginDate),
        "manageableDepartmentIds": _soap_ids(profile.manageableDepartmentIds),
        "userRoles": [
            {
                "roleId": r.roleId,
                "manageableDepartmentIds": _soap_ids(r.manageableDepartmentIds),
                "roleType": r.roleType,
            }
            for r in (profile.userRoles.userRole if profile.userRoles else [])
        ],
        "groups": _soap_ids(profile.groups),
        "subordination": _soap_subordination(profile.subordination),
        "coSubordination": _soap_subordination(profile.coSubordination),
    }
    leave = profile.workLeaveStatus
    if leave is not None:
        out["workLeaveStatus"] = {
            "workLeaveReason": leave.workLeaveReason,
            "startDate": leave.startDate.isoformat(),
            **({"endDate": leave.endDate.isoformat()} if leave.endDate else {}),
        }
    return out


def _soap_filters(filters: dict[str, Any]) -> dict[str, Any]:
    items = {"logins": "login", "emails": "email"}
    return {k: {items.get(k, "id"): v if isinstance(v, list) else [v]} for k, v in filters.items()}


class Soap:
    """The same calls through the SOAP operations (zeep reading the served WSDL). A token is
    the newer generation; credentials the older one, which reads status 5 as 3 as REST v1
    does. `data` has the shapes of the REST transports' plain data; the REST-only options
    (v2, prefix, post, header) choose nothing here."""

    name = "soap"

    def __init__(self, base_url: str) -> None:
        self.transport = _StatusTransport()
        self.client = zeep.Client(f"{base_url}/soap?wsdl", transport=self.transport)

    def _call(
        self, operation: str, auth: Auth | None, params: dict[str, Any]
    ) -> tuple[Outcome | None, Any]:
        """(None, result) on success; (the Fault as an Outcome, None) otherwise."""
        call = dict(params)
        if auth is not None and auth.token is not None:
            call["credentials"] = {"token": auth.token}
        elif auth is not None:
            call["credentials"] = {
                "accountUrl": auth.account_url,
                "email": auth.login,
                "password": auth.password,
            }
        try:
            return None, getattr(self.client.service, operation)(**call)
        except zeep.exceptions.Fault as fault:
            detail = fault.detail
            error = detail.find(f"{{{SOAP_NS}}}error") if detail is not None else None

            def text(name: str) -> str | None:
                return error.findtext(f"{{{SOAP_NS}}}{name}") if error is not None else None

            return Outcome(
                self.transport.last_status,
                code=text("code"),
                message=fault.message,
                parameter=text("parameter"),
                reason=text("reason"),
            ), None

    def add_user(self, params: dict[str, Any], auth: Auth) -> Outcome:
        fault, result = self._call("AddUser", auth, _soap_params(params))
        if fault is not None:
            return fault
        return Outcome(200, user_id=result if isinstance(result, str) else result.userId)

    def get_user(self, user_id: str, auth: Auth | None, **_rest_only: Any) -> Outcome:
        fault, result = self._call("GetUserProfile", auth, {"userId": user_id})
        return fault or Outcome(200, data=_soap_profile(result))

    def list_users(self, filters: dict[str, Any], auth: Auth | None, **_rest_only: Any) -> Outcome:
        fault, result = self._call("GetUsers", auth, _soap_filters(filters))
        return fault or Outcome(200, data=[_soap_profile(p) for p in result or []])

    def page_users(
        self,
        filters: dict[str, Any],
        auth: Auth | None,
        *,
        page_size: Any = None,
        page_token: str | None = None,
        **_rest_only: Any,
    ) -> Outcome:
        paging = {"pageSize": page_size, "pageToken": page_token}
        fault, result = self._call(
            "ListUsers",
            auth,
            {**_soap_filters(filters), **{k: v for k, v in paging.items() if v is not None}},
        )
        if fault is not None:
            return fault
        data: dict[str, Any] = {"userProfiles": [_soap_profile(p) for p in result.userProfile]}
        if result.nextPageToken is not None:
            data["nextPageToken"] = result.nextPageToken
        return Outcome(200, data=data)

    def find_existing(self, user_ids: list[str], auth: Auth | None, **_rest_only: Any) -> Outcome:
        fault, result = self._call("FindExistingUsers", auth, {"userIds": {"id": user_ids}})
        return fault or Outcome(200, data=list(result or []))

    def update_user(self, user_id: str, params: dict[str, Any], auth: Auth) -> Outcome:
        fault, _ = self._call(
            "UpdateUserProfile", auth, {"userId": user_id, **_soap_params(params)}
        )
        if fault is not None and fault.parameter == "groups" and "groupIds" in params:
            fault.parameter = "groupIds"  # the caller's name for what SOAP calls groups
        return fault or Outcome(200)

    def delete_user(self, user_id: str, auth: Auth) -> Outcome:
        fault, _ = self._call("DeleteUser", auth, {"userId": user_id})
        return fault or Outcome(200)

    def change_status(self, user_id: str, status: Any, auth: Auth) -> Outcome:
        params = {"userId": user_id, "status": None if status is None else str(status)}
        fault, _ = self._call("ChangeUserStatus", auth, params)
        return fault or Outcome(200)


def field_map(profile: dict[str, Any]) -> dict[str, str]:
    """A profile's name/value list as a map, as clients read it (names upper case)."""
    return {f["name"]: f["value"] for f in profile["fields"]}
