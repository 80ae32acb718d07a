"""What a real iSpring sync script does every night, played against a running server in XML and
in JSON, on SQLite and PostgreSQL: fetch a token, page through everyone, look people up by
login, add new hires, update changed profiles, move people between departments, deactivate
leavers, keep groups in step, and, run again on the same feed, change nothing.

A department administrator running the same script sees and touches only their subtree.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest

from learndir.core.auth import create_api_key
from learndir.db.engine import Database
from tests.support import Server, World, acme_spec, make_world
from tests.transports import Auth, Outcome, RestJson, RestXml

Transport = RestJson | RestXml


@dataclass(frozen=True)
class Employee:
    """One row of the HR system's export."""

    login: str
    employee_id: str
    department: str  # department code
    job_title: str
    groups: tuple[str, ...] = ()

    @property
    def email(self) -> str:
        return f"{self.login}@acme.test"


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    moved: list[str] = field(default_factory=list)
    reactivated: list[str] = field(default_factory=list)
    deactivated: list[str] = field(default_factory=list)
    group_changes: list[str] = field(default_factory=list)

    @property
    def changes(self) -> int:
        return sum(
            len(v)
            for v in (
                self.added,
                self.updated,
                self.moved,
                self.reactivated,
                self.deactivated,
                self.group_changes,
            )
        )


def _field(profile: dict[str, Any], name: str) -> str:
    """A profile value as the published scripts read it: the item of `fields` named so."""
    return next((f["value"] for f in profile["fields"] if f["name"] == name.upper()), "")


def _ok(outcome: Outcome, *statuses: int) -> Outcome:
    assert outcome.status in (statuses or (200, 201, 204)), outcome
    return outcome


class SyncScript:
    """A sync client as iSpring customers write them, speaking one encoding."""

    def __init__(self, transport: Transport, base_url: str, client_id: str, secret: str) -> None:
        self.t = transport
        response = httpx.post(
            f"{base_url}/api/v3/token",
            data={
                "client_id": client_id,
                "client_secret": secret,
                "grant_type": "client_credentials",
            },
        )
        assert response.status_code == 200, response.text
        self.auth = Auth(token=response.json()["access_token"])

    # ---- reads ------------------------------------------------------------------------

    def everyone(self, page_size: int = 7) -> dict[str, dict[str, Any]]:
        """The nightly page-through: every visible user by lower-cased login."""
        result: dict[str, dict[str, Any]] = {}
        token: str | None = None
        while True:
            page = _ok(self.t.page_users({}, self.auth, page_size=page_size, page_token=token))
            for profile in page.data["userProfiles"]:
                login = _field(profile, "login").lower()
                assert login not in result, f"{login} seen twice while paging"
                result[login] = profile
            token = page.data.get("nextPageToken")
            if not token:
                return result

    def lookup(self, login: str) -> list[dict[str, Any]]:
        found = _ok(self.t.list_users({"logins": [login]}, self.auth))
        return list(found.data)

    def departments(self) -> dict[str, str]:
        data = _ok(self.t.request("GET", "/department", self.auth)).data
        items = data if isinstance(data, list) else [{c.tag: c.text for c in d} for d in data]
        return {d["code"]: d["departmentId"] for d in items if d.get("code")}

    def groups(self) -> dict[str, str]:
        data = _ok(self.t.request("GET", "/group", self.auth)).data
        if not isinstance(data, list):
            data = [{c.tag: c.text for c in g} for g in data]
        return {g["name"]: g["groupId"] for g in data}

    def members(self, group_id: str) -> set[str]:
        data = _ok(self.t.request("GET", f"/group/{group_id}", self.auth)).data
        if isinstance(data, dict):
            return set(data["userIds"])
        group = data.find("group")
        holder = group if group is not None else data
        return {i.text for i in holder.find("userIds")}

    # ---- the sync -----------------------------------------------------------------------

    def run(self, feed: list[Employee], protected: set[str]) -> SyncReport:
        report = SyncReport()
        departments = self.departments()
        groups = self.groups()
        directory = self.everyone()
        moves: dict[str, list[str]] = {}
        reactivate: list[str] = []
        ids: dict[str, str] = {}
        for person in feed:
            current = directory.get(person.login.lower())
            if current is None:
                created = _ok(
                    self.t.add_user(
                        {
                            "login": person.login,
                            "email": person.email,
                            "departmentId": departments[person.department],
                            "fields": {
                                "employee_id": person.employee_id,
                                "job_title": person.job_title,
                            },
                        },
                        self.auth,
                    ),
                    200,
                    201,
                )
                assert created.user_id
                ids[person.login] = created.user_id
                report.added.append(person.login)
                continue
            user_id = current["userId"]
            ids[person.login] = user_id
            if _field(current, "job_title") != person.job_title:
                _ok(
                    self.t.update_user(
                        user_id, {"fields": {"job_title": person.job_title}}, self.auth
                    )
                )
                report.updated.append(person.login)
            if current["departmentId"] != departments[person.department]:
                moves.setdefault(departments[person.department], []).append(user_id)
                report.moved.append(person.login)
            if current["status"] != 1:
                reactivate.append(user_id)
                report.reactivated.append(person.login)
        for department_id, user_ids in moves.items():
            _ok(
                self.t.request(
                    "POST",
                    f"/department/{department_id}/user/move",
                    self.auth,
                    {"userIds": user_ids},
                )
            )
        if reactivate:
            _ok(self.t.request("POST", "/users/activate", self.auth, {"userIds": reactivate}))

        in_feed = {p.login.lower() for p in feed}
        leavers = [
            (login, profile["userId"])
            for login, profile in directory.items()
            if login not in in_feed and login not in protected and profile["status"] == 1
        ]
        if leavers:
            _ok(
                self.t.request(
                    "POST", "/users/deactivate", self.auth, {"userIds": [i for _, i in leavers]}
                )
            )
            report.deactivated.extend(login for login, _ in leavers)

        for name, group_id in groups.items():
            wanted = {ids[p.login] for p in feed if name in p.groups}
            if self.members(group_id) != wanted:
                _ok(
                    self.t.request(
                        "POST", f"/group/{group_id}/members", self.auth, {"userIds": sorted(wanted)}
                    )
                )
                report.group_changes.append(name)
        return report


@pytest.fixture(params=["json", "xml"])
def transport(request: pytest.FixtureRequest, server: Server) -> Iterator[Transport]:
    t: Transport = (
        RestJson(server.base_url) if request.param == "json" else RestXml(server.base_url)
    )
    yield t
    t.client.close()


@pytest.fixture
def account(db: Database) -> World:
    """A fresh acme account per run: the script owns its directory."""
    spec = acme_spec()
    del spec["seatLimit"]
    return make_world(db, spec)


# The account file's own people: administrators the script must never deactivate.
PROTECTED = {"owner", "sales.admin", "hr.partner", "admin"}


def _feed(tag: str, n: int = 24) -> list[Employee]:
    codes = ["sales-eu", "sales-us", "eng", "support"]
    return [
        Employee(
            login=f"emp{i:02d}.{tag}",
            employee_id=f"HR-{tag}-{i}",
            department=codes[i % len(codes)],
            job_title="Engineer" if i % 3 else "Manager",
            groups=(("Managers",) if i % 3 == 0 else ()) + (("Newcomers",) if i < 5 else ()),
        )
        for i in range(n)
    ]


def _script(server: Server, account: World, transport: Transport, login: str) -> SyncScript:
    key = create_api_key(account.db, account.account_url, login)
    return SyncScript(transport, server.base_url, key.client_id, key.client_secret)


def test_nightly_sync_converges_and_is_idempotent(
    server: Server, account: World, transport: Transport
) -> None:
    script = _script(server, account, transport, "owner")
    tag = uuid.uuid4().hex[:6]
    feed = _feed(tag)
    # jane.doe is in the account file but not in the HR export: a leaver.
    first = script.run(feed, PROTECTED)
    assert sorted(first.added) == sorted(p.login for p in feed)
    assert first.deactivated == ["jane.doe"]
    assert sorted(first.group_changes) == ["Managers", "Newcomers"]

    # The same feed again: nothing to do, and the directory says so.
    before = account.snapshot()
    again = script.run(feed, PROTECTED)
    assert again.changes == 0, again
    assert account.snapshot() == before

    # The next night: a promotion, a transfer, a departure, a rehire, a new hire.
    promoted, transferred, leaving = feed[1], feed[2], feed[3]
    new_hire = Employee(f"new.{tag}", f"HR-{tag}-new", "support", "Engineer", ("Newcomers",))
    changed = [
        Employee(p.login, p.employee_id, p.department, "Director", p.groups)
        if p is promoted
        else Employee(p.login, p.employee_id, "sales-us", p.job_title, ("Managers",))
        if p is transferred
        else p
        for p in feed
        if p is not leaving
    ] + [new_hire]
    third = script.run(changed, PROTECTED)
    assert third.added == [new_hire.login]
    assert third.updated == [promoted.login]
    assert third.moved == [transferred.login]
    assert third.deactivated == [leaving.login]
    assert sorted(third.group_changes) == ["Managers", "Newcomers"]

    # What the directory now holds, read back by lookups as a script would.
    departments = script.departments()
    (profile,) = script.lookup(transferred.login)
    assert profile["departmentId"] == departments["sales-us"]
    (profile,) = script.lookup(promoted.login.upper())
    assert _field(profile, "job_title") == "Director"
    (profile,) = script.lookup(leaving.login)
    assert profile["status"] == 3
    assert script.lookup(f"nobody.{tag}") == []
    groups = script.groups()
    managers = script.members(groups["Managers"])
    assert profile["userId"] not in managers
    assert script.lookup(transferred.login)[0]["userId"] in managers

    # The leaver comes back: reactivated, not added twice.
    fourth = script.run([*changed, leaving], PROTECTED)
    assert fourth.reactivated == [leaving.login]
    assert fourth.added == []
    assert script.lookup(leaving.login)[0]["status"] == 1


def test_department_administrator_runs_the_script_within_their_subtree(
    server: Server, account: World, transport: Transport
) -> None:
    owner = _script(server, account, transport, "owner")
    tag = uuid.uuid4().hex[:6]
    feed = _feed(tag, 12)
    owner.run(feed, PROTECTED)
    everyone = owner.everyone()

    admin = _script(server, account, transport, "sales.admin")
    sales = {account.departments[c] for c in ("sales", "sales-eu", "sales-us")}
    seen = admin.everyone(page_size=3)
    expected = {login for login, p in everyone.items() if p["departmentId"] in sales}
    assert set(seen) == expected
    assert all(p["departmentId"] in sales for p in seen.values())
    assert set(admin.departments()) == {"sales", "sales-eu", "sales-us"}

    outsider = next(p for p in feed if p.department == "eng")
    insider = next(p for p in feed if p.department == "sales-eu")
    outsider_id = everyone[outsider.login]["userId"]
    insider_id = everyone[insider.login]["userId"]
    assert admin.lookup(outsider.login) == []
    assert admin.lookup(insider.login)[0]["userId"] == insider_id

    before = account.snapshot()
    t, auth = admin.t, admin.auth
    refused = [
        t.get_user(outsider_id, auth),
        t.update_user(outsider_id, {"fields": {"job_title": "Hacked"}}, auth),
        # Pulling someone into the subtree, or pushing an insider out of it.
        t.request(
            "POST",
            f"/department/{account.departments['sales-eu']}/user/move",
            auth,
            {"userIds": [outsider_id]},
        ),
        t.update_user(insider_id, {"departmentId": account.departments["eng"]}, auth),
        # One outsider in a batch: the whole batch is refused.
        t.request("POST", "/users/deactivate", auth, {"userIds": [insider_id, outsider_id]}),
        t.delete_user(outsider_id, auth),
        t.request("POST", f"/user/{outsider_id}/status", auth, {"status": 3}),
    ]
    for outcome in refused:
        assert outcome.status == 403, outcome
        assert outcome.message == "Permission Denied"
    assert account.snapshot() == before
    assert owner.lookup(insider.login)[0]["status"] == 1
    assert _field(owner.lookup(outsider.login)[0], "job_title") == outsider.job_title

    # Inside the subtree the same calls work.
    _ok(t.update_user(insider_id, {"fields": {"job_title": "Lead"}}, auth))
    _ok(t.request("POST", "/users/deactivate", auth, {"userIds": [insider_id]}))
    assert owner.lookup(insider.login)[0]["status"] == 3
